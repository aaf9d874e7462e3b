//! The scope-pattern language.
//!
//! ```text
//! scope    = method SP path
//! method   = 1*20( %x41-5A )            ; upper-case letters only: GET, POST, PATCH ...
//! path     = "/" / 1*( "/" segment )    ; no empty segments, no trailing slash
//! segment  = literal / param
//! literal  = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" ), but not "." or ".."
//! param    = ":" ( ALPHA / "_" ) *( ALPHA / DIGIT / "_" )
//! ```
//!
//! The API prefix (default `/api/v1`) may be left out: when a pattern's path starts with
//! the prefix's segments they are dropped, so `GET /objects` and `GET /api/v1/objects`
//! are the same pattern. Patterns are always relative to the prefix; a request whose
//! path is not under the prefix matches no pattern.
//!
//! A `:param` matches exactly one non-empty path segment. Literals match byte for byte
//! (case-sensitive, as the upstream sees them). Methods are case-sensitive.

use std::fmt;

/// One segment of a pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
}

/// A parsed scope pattern, prefix-relative.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ScopePattern {
    method: Box<str>,
    segments: Vec<Segment>,
}

/// Why a pattern was refused: the pattern, the byte position and the reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopeError {
    pub pattern: String,
    pub position: usize,
    pub reason: &'static str,
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid scope {:?} at position {}: {}", self.pattern, self.position, self.reason)
    }
}

impl std::error::Error for ScopeError {}

/// The API prefix, as segments (`/api/v1` -> `["api", "v1"]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix(Vec<Box<str>>);

impl Prefix {
    /// Parses a prefix such as `/api/v1`; `""` or `/` means no prefix.
    pub fn parse(prefix: &str) -> Result<Prefix, ScopeError> {
        let err = |position, reason| ScopeError { pattern: prefix.to_owned(), position, reason };
        if prefix.is_empty() || prefix == "/" {
            return Ok(Prefix(Vec::new()));
        }
        if !prefix.starts_with('/') {
            return Err(err(0, "the prefix must start with '/'"));
        }
        let mut segs = Vec::new();
        let mut pos = 1;
        for seg in prefix[1..].split('/') {
            if !valid_literal(seg) {
                return Err(err(pos, "prefix segments are literals of [A-Za-z0-9._~-]"));
            }
            segs.push(seg.into());
            pos += seg.len() + 1;
        }
        Ok(Prefix(segs))
    }

    /// Strips the prefix from request segments; `None` when the path is not under it.
    pub fn strip<'a, 'b>(&self, segments: &'a [&'b str]) -> Option<&'a [&'b str]> {
        if segments.len() < self.0.len() {
            return None;
        }
        let (head, rest) = segments.split_at(self.0.len());
        if head.iter().zip(self.0.iter()).all(|(a, b)| *a == &**b) {
            Some(rest)
        } else {
            None
        }
    }
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix(vec!["api".into(), "v1".into()])
    }
}

fn valid_literal(seg: &str) -> bool {
    !seg.is_empty() && seg != "." && seg != ".." && seg.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn valid_param(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_') && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A method is 1 to 20 upper-case ASCII letters.
pub fn valid_method(method: &str) -> bool {
    !method.is_empty() && method.len() <= 20 && method.bytes().all(|b| b.is_ascii_uppercase())
}

impl ScopePattern {
    /// Parses `"METHOD /path"` relative to `prefix`.
    pub fn parse(pattern: &str, prefix: &Prefix) -> Result<ScopePattern, ScopeError> {
        let err = |position, reason| ScopeError { pattern: pattern.to_owned(), position, reason };
        if pattern.len() > 512 {
            return Err(err(512, "a scope is at most 512 bytes"));
        }
        let Some(space) = pattern.find(' ') else {
            return Err(err(pattern.len(), "expected \"METHOD /path\" with one space"));
        };
        let method = &pattern[..space];
        if !valid_method(method) {
            return Err(err(0, "the method must be 1 to 20 upper-case letters, such as GET"));
        }
        let path = &pattern[space + 1..];
        let base = space + 1;
        if !path.starts_with('/') {
            return Err(err(base, "the path must start with '/' (exactly one space after the method)"));
        }
        let mut segments = Vec::new();
        let mut positions = Vec::new();
        if path != "/" {
            let mut pos = base + 1;
            for seg in path[1..].split('/') {
                positions.push(pos);
                if seg.is_empty() {
                    return Err(err(pos, "empty path segment (no '//' and no trailing '/')"));
                }
                if let Some(name) = seg.strip_prefix(':') {
                    if !valid_param(name) {
                        return Err(err(pos, "a parameter is ':' and a name of [A-Za-z0-9_] not starting with a digit"));
                    }
                    segments.push(Segment::Param(name.into()));
                } else if valid_literal(seg) {
                    segments.push(Segment::Literal(seg.into()));
                } else {
                    return Err(err(pos, "a literal segment is [A-Za-z0-9._~-], and not '.' or '..'"));
                }
                pos += seg.len() + 1;
            }
        }
        // Drop the prefix when the pattern spells it out. A path that then starts with the
        // prefix again is ambiguous (is `GET /api/v1/api/v1/x` one prefix or two?), and its
        // canonical form could not be told apart from the shorter one: refuse it.
        let n = prefix.0.len();
        let starts_with_prefix = |segs: &[Segment]| {
            n > 0 && segs.len() >= n && segs.iter().zip(prefix.0.iter()).all(|(s, p)| matches!(s, Segment::Literal(l) if l == p))
        };
        let mut first = 0;
        if starts_with_prefix(&segments) {
            segments.drain(..n);
            first = n;
        }
        if starts_with_prefix(&segments) {
            let position = positions.get(first).copied().unwrap_or(base);
            return Err(err(position, "the path repeats the API prefix; a pattern names it at most once"));
        }
        Ok(ScopePattern { method: method.into(), segments })
    }

    pub fn method(&self) -> &str {
        &self.method
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Does this pattern allow `method` on the prefix-relative `segments`?
    pub fn matches(&self, method: &str, segments: &[&str]) -> bool {
        *self.method == *method
            && self.segments.len() == segments.len()
            && self.segments.iter().zip(segments).all(|(p, s)| match p {
                Segment::Literal(l) => **l == **s,
                Segment::Param(_) => !s.is_empty(),
            })
    }

    /// Is every request this pattern allows also allowed by `other`?
    pub fn is_within(&self, other: &ScopePattern) -> bool {
        self.method == other.method
            && self.segments.len() == other.segments.len()
            && self.segments.iter().zip(other.segments.iter()).all(|(a, b)| match (a, b) {
                (_, Segment::Param(_)) => true,
                (Segment::Literal(x), Segment::Literal(y)) => x == y,
                (Segment::Param(_), Segment::Literal(_)) => false,
            })
    }

    /// The same pattern with parameter names erased, for comparing shapes.
    pub fn shape(&self) -> String {
        let mut s = String::from(&*self.method);
        s.push(' ');
        if self.segments.is_empty() {
            s.push('/');
        }
        for seg in &self.segments {
            s.push('/');
            match seg {
                Segment::Literal(l) => s.push_str(l),
                Segment::Param(_) => s.push(':'),
            }
        }
        s
    }
}

/// Canonical form: the method, a space, and the prefix-relative path.
impl fmt::Display for ScopePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ", self.method)?;
        if self.segments.is_empty() {
            return f.write_str("/");
        }
        for seg in &self.segments {
            match seg {
                Segment::Literal(l) => write!(f, "/{l}")?,
                Segment::Param(p) => write!(f, "/:{p}")?,
            }
        }
        Ok(())
    }
}

/// The scopes of one token, compiled once and kept with its verified claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeSet {
    patterns: Vec<ScopePattern>,
}

impl ScopeSet {
    pub fn parse<S: AsRef<str>>(scopes: &[S], prefix: &Prefix) -> Result<ScopeSet, ScopeError> {
        if scopes.len() > 256 {
            return Err(ScopeError { pattern: String::new(), position: 0, reason: "a token holds at most 256 scopes" });
        }
        let mut patterns = Vec::with_capacity(scopes.len());
        for s in scopes {
            let p = ScopePattern::parse(s.as_ref(), prefix)?;
            if !patterns.contains(&p) {
                patterns.push(p);
            }
        }
        Ok(ScopeSet { patterns })
    }

    pub fn patterns(&self) -> &[ScopePattern] {
        &self.patterns
    }

    /// The first pattern that allows the request, if any.
    pub fn find(&self, method: &str, segments: &[&str]) -> Option<&ScopePattern> {
        self.patterns.iter().find(|p| p.matches(method, segments))
    }

    /// Is every pattern of `self` within some pattern of `other`?
    pub fn is_within(&self, other: &ScopeSet) -> bool {
        self.patterns.iter().all(|a| other.patterns.iter().any(|b| a.is_within(b)))
    }

    /// Canonical strings, in order.
    pub fn to_strings(&self) -> Vec<String> {
        self.patterns.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> ScopePattern {
        ScopePattern::parse(s, &Prefix::default()).unwrap()
    }

    fn segs(path: &str) -> Vec<&str> {
        path.trim_start_matches('/').split('/').filter(|s| !s.is_empty()).collect()
    }

    #[test]
    fn prefix_is_optional() {
        assert_eq!(p("GET /objects"), p("GET /api/v1/objects"));
        assert_eq!(p("GET /api/v1").to_string(), "GET /");
        assert_eq!(p("POST /objects/:id/commands/:command").to_string(), "POST /objects/:id/commands/:command");
    }

    #[test]
    fn params_match_one_segment() {
        let pat = p("GET /objects/:id");
        assert!(pat.matches("GET", &segs("/objects/42")));
        assert!(!pat.matches("GET", &segs("/objects")));
        assert!(!pat.matches("GET", &segs("/objects/42/packets")));
        assert!(!pat.matches("get", &segs("/objects/42")));
        assert!(!pat.matches("POST", &segs("/objects/42")));
        assert!(!pat.matches("GET", &["objects", ""]));
        assert!(!pat.matches("GET", &segs("/Objects/42")));
    }

    #[test]
    fn bad_patterns_name_the_position() {
        let cases = [
            ("get /objects", 0),
            ("GET objects", 4),
            ("GET  /objects", 4),
            ("GET /objects/", 13),
            ("GET //objects", 5),
            ("GET /objects/:", 13),
            ("GET /objects/:1d", 13),
            ("GET /objects/../tokens", 13),
            ("GET /obj%2Fects", 5),
            ("GET /objects/*", 13),
            ("GET", 3),
            ("", 0),
            ("GET /api/v1/api/v1/objects", 12),
        ];
        for (s, pos) in cases {
            let e = ScopePattern::parse(s, &Prefix::default()).unwrap_err();
            assert_eq!(e.position, pos, "{s}: {e}");
            assert!(e.to_string().contains(s), "{e}");
        }
    }

    #[test]
    fn within() {
        assert!(p("GET /objects/42").is_within(&p("GET /objects/:id")));
        assert!(p("GET /objects/:x").is_within(&p("GET /objects/:id")));
        assert!(!p("GET /objects/:id").is_within(&p("GET /objects/42")));
        assert!(!p("POST /objects/:id").is_within(&p("GET /objects/:id")));
        assert!(!p("GET /objects").is_within(&p("GET /objects/:id")));
        let parent = ScopeSet::parse(&["GET /objects", "GET /objects/:id", "POST /tokens"], &Prefix::default()).unwrap();
        let child = ScopeSet::parse(&["GET /objects/7"], &Prefix::default()).unwrap();
        assert!(child.is_within(&parent));
        assert!(!parent.is_within(&child));
    }

    fn arb_pattern() -> impl Strategy<Value = String> {
        let method = prop::sample::select(vec!["GET", "POST", "PUT", "PATCH", "DELETE"]);
        let seg = prop_oneof!["[a-z]{1,6}", ":[a-z][a-z0-9_]{0,5}"];
        (method, prop::collection::vec(seg, 0..5)).prop_map(|(m, segs)| {
            if segs.is_empty() {
                format!("{m} /")
            } else {
                format!("{m} /{}", segs.join("/"))
            }
        })
    }

    proptest! {
        #[test]
        fn parse_display_parse(s in arb_pattern()) {
            let a = ScopePattern::parse(&s, &Prefix::default()).unwrap();
            let b = ScopePattern::parse(&a.to_string(), &Prefix::default()).unwrap();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn within_implies_every_match(a in arb_pattern(), b in arb_pattern(), path in prop::collection::vec("[a-z]{1,6}", 0..5)) {
            let a = ScopePattern::parse(&a, &Prefix::default()).unwrap();
            let b = ScopePattern::parse(&b, &Prefix::default()).unwrap();
            let s: Vec<&str> = path.iter().map(String::as_str).collect();
            if a.is_within(&b) && a.matches(a.method(), &s) {
                prop_assert!(b.matches(a.method(), &s));
            }
        }

        /// The matcher agrees with the independent reference matcher (and the route
        /// table and `authorize` agree with both): see `crate::fuzzing::scope`.
        #[test]
        fn matcher_agrees_with_reference(pat in arb_pattern(), m in prop::sample::select(vec!["GET", "POST", "DELETE"]),
            path in prop::collection::vec(prop_oneof!["[a-z]{1,3}", Just("objects".to_owned()), Just("1".to_owned())], 0..5),
            prefixed in any::<bool>()) {
            let target = format!("{}/{}", if prefixed { "/api/v1" } else { "" }, path.join("/"));
            crate::fuzzing::scope(format!("{pat}\n{m} {target}").as_bytes());
        }

        #[test]
        fn parser_never_panics(s in ".{0,64}") {
            let _ = ScopePattern::parse(&s, &Prefix::default());
        }
    }
}
