//! Request-target safety.
//!
//! Envoy normalizes the path before the filter sees it (`normalize_path`,
//! `merge_slashes`, `path_with_escaped_slashes_action: REJECT_REQUEST`). The filter then
//! authorizes exactly the path the upstream will receive, and refuses whatever it could
//! not match safely instead of guessing what an upstream would make of it.

/// Why a request target was refused (400, code `bad_path`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form (`/...`): absolute-form, authority-form or `*`.
    NotOriginForm,
    /// A fragment (`#`) reached the filter.
    Fragment,
    /// Control bytes, NUL, or bytes outside ASCII.
    BadByte,
    /// `\` or a path parameter (`;`).
    BadCharacter,
    /// An encoded `/`, `\`, `.`, `%` or NUL, or a broken percent-escape.
    BadEscape,
    /// `.`/`..` or empty segments survived normalization.
    BadSegment,
    /// Longer than the cap.
    TooLong,
}

impl PathError {
    pub fn code(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "path_not_origin_form",
            PathError::Fragment => "path_fragment",
            PathError::BadByte => "path_bad_byte",
            PathError::BadCharacter => "path_bad_character",
            PathError::BadEscape => "path_bad_escape",
            PathError::BadSegment => "path_bad_segment",
            PathError::TooLong => "path_too_long",
        }
    }
}

pub const MAX_PATH_LEN: usize = 4096;
/// Paths with more segments are refused (`path_too_long`); no API needs them, and a
/// fixed bound keeps splitting free of allocation.
pub const MAX_SEGMENTS: usize = 32;

/// A path's segments, without allocating.
#[derive(Clone, Copy)]
pub struct Segments<'a> {
    buf: [&'a str; MAX_SEGMENTS],
    len: usize,
}

impl<'a> std::ops::Deref for Segments<'a> {
    type Target = [&'a str];
    fn deref(&self) -> &[&'a str] {
        &self.buf[..self.len]
    }
}

impl std::fmt::Debug for Segments<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq<Vec<&str>> for Segments<'_> {
    fn eq(&self, other: &Vec<&str>) -> bool {
        **self == **other
    }
}

/// Splits `:path` (path plus optional query) into the path and its segments, refusing
/// anything unsafe. `/` yields no segments.
pub fn split(target: &str) -> Result<(&str, Segments<'_>), PathError> {
    if target.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    if !target.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let path = match target.find('?') {
        Some(i) => &target[..i],
        None => target,
    };
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'#' => return Err(PathError::Fragment),
            0..=0x20 | 0x7f..=0xff => return Err(PathError::BadByte),
            b'\\' | b';' => return Err(PathError::BadCharacter),
            b'%' => {
                let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(hex), bytes.get(i + 2).and_then(hex)) else {
                    return Err(PathError::BadEscape);
                };
                let decoded = h * 16 + l;
                // Encoded separators, dots, percent signs (double encoding), controls and
                // anything non-ASCII change meaning when an upstream decodes them.
                if matches!(decoded, b'/' | b'\\' | b'.' | b'%' | b';' | b'#' | b'?') || !(0x20..0x7f).contains(&decoded) {
                    return Err(PathError::BadEscape);
                }
                i += 3;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    let mut segments = Segments { buf: [""; MAX_SEGMENTS], len: 0 };
    if path.len() == 1 {
        return Ok((path, segments));
    }
    for seg in path[1..].split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(PathError::BadSegment);
        }
        if segments.len == MAX_SEGMENTS {
            return Err(PathError::TooLong);
        }
        segments.buf[segments.len] = seg;
        segments.len += 1;
    }
    Ok((path, segments))
}

fn hex(b: &u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Does the query string carry an `access_token` parameter (RFC 6750 §2.3)? A token
/// there as well as in the header is two credentials, which the gate refuses. The
/// parameter name is compared percent-decoded (`access_tok%65n` is the same name to an
/// upstream that decodes it) and without regard to ASCII case.
pub fn query_has_access_token(target: &str) -> bool {
    let Some(i) = target.find('?') else { return false };
    target[i + 1..].split('&').any(|kv| is_access_token_name(kv.split('=').next().unwrap_or("")))
}

fn is_access_token_name(raw: &str) -> bool {
    const NAME: &[u8] = b"access_token";
    let bytes = raw.as_bytes();
    let (mut i, mut n) = (0, 0);
    while i < bytes.len() {
        let b = match (bytes[i], bytes.get(i + 1).and_then(hex), bytes.get(i + 2).and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                i += 3;
                h << 4 | l
            }
            (b, _, _) => {
                i += 1;
                b
            }
        };
        if NAME.get(n).is_none_or(|c| !c.eq_ignore_ascii_case(&b)) {
            return false;
        }
        n += 1;
    }
    n == NAME.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_paths_split() {
        assert_eq!(split("/").unwrap().1, Vec::<&str>::new());
        let (path, segs) = split("/api/v1/objects/42?x=1").unwrap();
        assert_eq!((path, &*segs), ("/api/v1/objects/42", &["api", "v1", "objects", "42"][..]));
        assert_eq!(split(&"/a".repeat(33)).unwrap_err(), PathError::TooLong);
        assert_eq!(split("/a/b%20c").unwrap().1, vec!["a", "b%20c"]);
    }

    #[test]
    fn security_paths_unsafe_targets_are_refused() {
        let cases = [
            ("http://evil/api/v1/objects", PathError::NotOriginForm),
            ("*", PathError::NotOriginForm),
            ("/a#b", PathError::Fragment),
            ("/a\0b", PathError::BadByte),
            ("/a\tb", PathError::BadByte),
            ("/caf\u{e9}", PathError::BadByte),
            ("/a\\b", PathError::BadCharacter),
            ("/a;b=c/d", PathError::BadCharacter),
            ("/a%2Fb", PathError::BadEscape),
            ("/a%2fb", PathError::BadEscape),
            ("/a%5Cb", PathError::BadEscape),
            ("/a/%2e%2e/b", PathError::BadEscape),
            ("/a/%2E/b", PathError::BadEscape),
            ("/a%252Fb", PathError::BadEscape),
            ("/a%00", PathError::BadEscape),
            ("/a%C0%AF", PathError::BadEscape),
            ("/a%zz", PathError::BadEscape),
            ("/a%2", PathError::BadEscape),
            ("/a//b", PathError::BadSegment),
            ("/a/../b", PathError::BadSegment),
            ("/a/./b", PathError::BadSegment),
            ("/a/", PathError::BadSegment),
        ];
        for (t, want) in cases {
            assert_eq!(split(t).unwrap_err(), want, "{t:?}");
        }
    }

    #[test]
    fn access_token_in_query() {
        assert!(query_has_access_token("/x?access_token=abc"));
        assert!(query_has_access_token("/x?a=1&ACCESS_TOKEN=abc"));
        assert!(!query_has_access_token("/x?token=abc"));
        assert!(!query_has_access_token("/access_token"));
        assert!(!query_has_access_token("/x?access_token2=abc"));
        assert!(!query_has_access_token("/x?access_toke=abc"));
    }

    /// Issue 10 defect 7: the name is compared decoded, so no escape spelling slips a
    /// second credential past the gate.
    #[test]
    fn security_access_token_in_query_is_found_in_any_escape_spelling() {
        for q in [
            "access%5ftoken",
            "access%5Ftoken",
            "access_tok%65n",
            "%61ccess_token",
            "%41%43%43%45%53%53%5F%54%4F%4B%45%4E",
            "a=1&Access_Tok%45n=x",
        ] {
            assert!(query_has_access_token(&format!("/x?{q}=abc")), "{q}");
        }
        for q in ["access_token%00", "access%20token", "access%5", "access%5ftoken%"] {
            assert!(!query_has_access_token(&format!("/x?{q}=abc")), "{q}");
        }
    }
}
