//! Every refusal the gate gives, with its HTTP status, RFC 6750 error and stable code.
//! The filter and the control plane answer with the same bodies.

use crate::path::PathError;
use crate::route::Refusal;
use crate::token::TokenError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No `Authorization: Bearer` credential (401, challenge without an error).
    MissingToken,
    /// More than one credential, or a malformed `Authorization` header (400).
    InvalidRequest(&'static str),
    /// The token is malformed, forged, expired, revoked ... (401 `invalid_token`).
    InvalidToken(TokenError),
    /// The token does not allow this method on this path (403 `insufficient_scope`).
    InsufficientScope,
    /// The rule set refused: scope, flags or items (403 `insufficient_scope`, with the
    /// refusal's own code).
    Refused(Refusal),
    /// The request target cannot be matched safely (400).
    BadPath(PathError),
    /// The proxy has no synced state yet, or it is too old (503, fail closed).
    Unavailable(&'static str),
}

impl Denial {
    pub fn status(self) -> u16 {
        match self {
            Denial::MissingToken | Denial::InvalidToken(_) => 401,
            Denial::InvalidRequest(_) | Denial::BadPath(_) => 400,
            Denial::InsufficientScope | Denial::Refused(_) => 403,
            Denial::Unavailable(_) => 503,
        }
    }

    /// The `error` field: the RFC 6750 error code where one applies.
    pub fn error(self) -> &'static str {
        match self {
            Denial::MissingToken => "unauthorized",
            Denial::InvalidRequest(_) | Denial::BadPath(_) => "invalid_request",
            Denial::InvalidToken(_) => "invalid_token",
            Denial::InsufficientScope | Denial::Refused(_) => "insufficient_scope",
            Denial::Unavailable(_) => "unavailable",
        }
    }

    /// The stable, specific code.
    pub fn code(self) -> &'static str {
        match self {
            Denial::MissingToken => "missing_token",
            Denial::InvalidRequest(code) | Denial::Unavailable(code) => code,
            Denial::InvalidToken(e) => e.code(),
            Denial::InsufficientScope => "insufficient_scope",
            Denial::Refused(r) => r.code(),
            Denial::BadPath(e) => e.code(),
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            Denial::MissingToken => "send the token as 'Authorization: Bearer <token>'",
            Denial::InvalidRequest("multiple_credentials") => "send exactly one credential: one Authorization header and no access_token in the query",
            Denial::InvalidRequest(_) => "the Authorization header must be 'Bearer <token>'",
            Denial::InvalidToken(e) => e.message(),
            Denial::InsufficientScope | Denial::Refused(Refusal::NoScope | Refusal::OutsidePrefix) => {
                "the token does not allow this method on this path"
            }
            Denial::Refused(Refusal::MissingFlags) => "the token lacks the access flags this operation needs",
            Denial::Refused(Refusal::ItemNotAllowed) => "the token does not allow this item",
            Denial::Refused(Refusal::ItemNotNumeric) => "the item id in the path is not a 64-bit integer",
            Denial::Refused(Refusal::WrongTokenKind) => {
                "this route takes another kind of token (a login's tokenForHttpServer only where the route table marks http_token, a Wi-Fi voucher's token only where it marks voucher, an API token everywhere else)"
            }
            Denial::Refused(Refusal::DeviceMismatch) => "this voucher token belongs to another device; redeem a voucher on this device",
            Denial::Refused(Refusal::WrongNetwork) => "this voucher token is for another Wi-Fi network; redeem a voucher on this network",
            Denial::BadPath(_) => "the request path contains sequences the gate refuses (encoded separators or dots, '\\', ';', control bytes, or dot segments)",
            Denial::Unavailable("gate_not_synced") => "the gate has not synced with the control plane yet; retry shortly",
            Denial::Unavailable(_) => "the gate's state is stale because the control plane is unreachable; retry later",
        }
    }

    /// The `WWW-Authenticate` value for 401 and 403 answers.
    pub fn www_authenticate(self, realm: &str) -> Option<String> {
        match self {
            Denial::MissingToken => Some(format!("Bearer realm=\"{realm}\"")),
            Denial::InvalidToken(e) => {
                Some(format!("Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"{}\"", e.message()))
            }
            Denial::InsufficientScope | Denial::Refused(_) => Some(format!("Bearer realm=\"{realm}\", error=\"insufficient_scope\"")),
            Denial::InvalidRequest(_) => Some(format!("Bearer realm=\"{realm}\", error=\"invalid_request\"")),
            Denial::BadPath(_) | Denial::Unavailable(_) => None,
        }
    }

    /// `{"error","code","message"}`; never contains the token.
    pub fn body(self) -> String {
        serde_json::json!({"error": self.error(), "code": self.code(), "message": self.message()}).to_string()
    }
}

/// Extracts the token from an `Authorization` header value (RFC 6750 §2.1): the scheme
/// `Bearer` in any case, one or more spaces, then a token68. `None` means the scheme is
/// not Bearer (treated as no token); `Err` means a Bearer header that is malformed.
pub fn bearer(value: &str) -> Result<Option<&str>, Denial> {
    let token = bearer_unchecked(value)?;
    match token {
        Some(t) if !valid_token68(t) => Err(Denial::InvalidRequest("malformed_authorization")),
        other => Ok(other),
    }
}

/// Like [`bearer`] but without checking the token's alphabet, for a caller that first
/// looks the exact bytes up among tokens it has already validated (and calls
/// [`valid_token68`] on a miss): the byte-by-byte check is most of the warm path's logic.
pub fn bearer_unchecked(value: &str) -> Result<Option<&str>, Denial> {
    let Some((scheme, rest)) = value.split_once(' ') else {
        return if value.eq_ignore_ascii_case("bearer") { Err(Denial::InvalidRequest("malformed_authorization")) } else { Ok(None) };
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = rest.trim_start_matches(' ');
    // Envoy joins repeated headers with ","; a token68 never contains one, so a comma
    // means a second credential.
    if token.contains(',') {
        return Err(Denial::InvalidRequest("multiple_credentials"));
    }
    if token.is_empty() {
        return Err(Denial::InvalidRequest("malformed_authorization"));
    }
    Ok(Some(token))
}

/// RFC 6750 token68: `[A-Za-z0-9-._~+/]+` then `=*`.
pub fn valid_token68(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    let token68 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    !body.is_empty() && body.bytes().all(token68)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_forms() {
        assert_eq!(bearer("Bearer abc.def.ghi"), Ok(Some("abc.def.ghi")));
        assert_eq!(bearer("bearer   abc"), Ok(Some("abc")));
        assert_eq!(bearer("Basic dXNlcjpwdw=="), Ok(None));
        assert!(bearer("Bearer").is_err());
        assert!(bearer("Bearer a b").is_err());
        assert!(bearer("Bearer a\"b").is_err());
        assert_eq!(bearer("Bearer a,Bearer b"), Err(Denial::InvalidRequest("multiple_credentials")));
    }

    #[test]
    fn body_never_echoes_and_has_three_fields() {
        let d = Denial::InvalidToken(TokenError::Expired);
        let v: serde_json::Value = serde_json::from_str(&d.body()).unwrap();
        assert_eq!(v["error"], "invalid_token");
        assert_eq!(v["code"], "token_expired");
        assert_eq!(v.as_object().unwrap().len(), 3);
        assert!(d.www_authenticate("tokengate").unwrap().contains("error=\"invalid_token\""));
        assert_eq!(Denial::MissingToken.www_authenticate("r").unwrap(), "Bearer realm=\"r\"");
    }
}
