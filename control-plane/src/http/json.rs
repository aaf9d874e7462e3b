//! The JSON body extractor: `application/json` only, bounded, and every serde failure
//! mapped to a stable code naming the field. Messages never quote a value the client
//! sent (it could be a password or a token).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::http::error::ApiError;

/// A JSON request body of type `T` (whose fields use `deny_unknown_fields`).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok())) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::BodyTooLarge
            } else {
                ApiError::MalformedJson("the request body could not be read".into())
            }
        })?;
        parse(&bytes).map(ApiJson)
    }
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(content_type: Option<&str>) -> bool {
    content_type.and_then(|ct| ct.split(';').next()).is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// Deserializes `bytes`, classifying the failure. The syntax is checked first, so a
/// broken body is `malformed_json` whatever fields it has.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::MalformedJson(format!("the body is not valid JSON: {e}")))?;
    // Every body is an object: serde would otherwise read a struct from an array
    // (`[null, null]` as its first two fields).
    if !value.is_object() {
        return Err(ApiError::WrongType("the body has the wrong type: expected a JSON object".into()));
    }
    serde_path_to_error::deserialize(value).map_err(classify)
}

fn classify(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let text = inner.to_string();
    // serde_json appends " at line L column C"; keep only serde's own words.
    let what = text.split(" at line ").next().unwrap_or(&text);
    match inner.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof | serde_json::error::Category::Io => {
            ApiError::MalformedJson(format!("the body is not valid JSON: {text}"))
        }
        serde_json::error::Category::Data => {
            if let Some(rest) = what.strip_prefix("unknown field ") {
                ApiError::UnknownField(format!("unknown field {rest}"))
            } else if let Some(field) = what.strip_prefix("missing field ") {
                let at = if path == "." { String::new() } else { format!(" in {path}") };
                ApiError::MissingField(format!("missing field {field}{at}"))
            } else {
                // "invalid type: string \"...\", expected u64": keep the expectation, drop
                // the value.
                let expected = what.rsplit_once(", expected ").map(|(_, e)| e).unwrap_or("another type");
                let field = if path == "." { "the body".to_owned() } else { format!("field `{path}`") };
                ApiError::WrongType(format!("{field} has the wrong type: expected {expected}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        username: String,
        password: String,
        scopes: Option<Vec<String>>,
    }

    fn code(body: &str) -> (&'static str, String) {
        let e = parse::<Body>(body.as_bytes()).unwrap_err();
        (e.code(), e.message())
    }

    #[test]
    fn classification() {
        assert_eq!(code("{").0, "malformed_json");
        assert_eq!(code("{} x").0, "malformed_json");
        let (c, m) = code(r#"{"username":"a","password":"b","pasword":"c"}"#);
        assert_eq!(c, "unknown_field");
        assert!(m.contains("pasword"), "{m}");
        let (c, m) = code(r#"{"username":"a"}"#);
        assert_eq!(c, "missing_field");
        assert!(m.contains("password"), "{m}");
        let (c, m) = code(r#"{"username":"a","password":"b","scopes":"hunter2"}"#);
        assert_eq!(c, "wrong_type");
        assert!(m.contains("scopes") && !m.contains("hunter2"), "{m}");
        let (c, m) = code(r#"{"username":"a","password":12345678}"#);
        assert_eq!(c, "wrong_type");
        assert!(m.contains("password") && !m.contains("12345678"), "{m}");
        assert_eq!(code("[]").0, "wrong_type");
    }

    #[test]
    fn content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(None));
    }
}
