//! The OpenAPI 3.1 document of the control plane, served at `<prefix>/openapi.json`.
//!
//! Generated, not written: every handler carries `#[utoipa::path]` (method, path,
//! parameters, request body, every status with its error codes) and every wire type
//! derives `ToSchema`. Each module's router is a `utoipa_axum::router::OpenApiRouter`
//! built with `routes!(handler, ...)`, which registers the route and its documentation
//! from the same attribute, so a route cannot exist undocumented (and
//! `tests/api/service.rs` fails if a plain `Router::route` creeps in). This module holds
//! the document's frame (title, security schemes), the error body and the few shapes no
//! handler has a Rust type for (the seeds' dynamic envelopes).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

use crate::limits::MAX_BODY_BYTES;

/// The document's frame; the paths come from the routers (`crate::routes`).
#[derive(OpenApi)]
#[openapi(
    info(title = "tokengate control plane", license(name = "Apache-2.0")),
    modifiers(&Frame),
    components(schemas(ErrorBody, LoginRequest, LoginAnswer, LoginFailure, SessionStarted, Jwks, Jwk)),
    tags(
        (name = "tokens", description = "API tokens (seed 004), seed-001 management, scopes, explain"),
        (name = "identity", description = "Users, logins and accounts (seeds 002 and 003)"),
        (name = "sessions", description = "Sessions from API tokens (seed 003)"),
        (name = "vouchers", description = "Wi-Fi networks, vouchers and the captive portal (seed 000)"),
        (name = "keys", description = "Signing keys and the proxies that apply them"),
        (name = "audit", description = "The audit log: who changed what, when, from where"),
        (name = "sync", description = "The proxies' sync channel (proxy secret)"),
        (name = "service", description = "Health, metrics, public keys, this document"),
    )
)]
pub struct ApiDoc;

/// The description (it names a limit from the code) and the two security schemes.
struct Frame;

impl Modify for Frame {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc.info.description = Some(format!(
            "Issues, amends and revokes tokens, manages users, sessions and Wi-Fi vouchers, and keeps proxies in sync. \
             Times are milliseconds since the epoch unless a field says otherwise (the seeds' `ct`, `ld`, `at` are seconds). \
             Every error is {{\"error\",\"code\",\"message\"}} with a stable `code`; each operation lists its codes per status. \
             Request bodies are JSON (Content-Type: application/json), at most {MAX_BODY_BYTES} bytes; unknown fields are refused."
        ));
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT (EdDSA, typ tg-api+jwt)").build()),
        );
        components.add_security_scheme(
            "proxy",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The bearer derived from the proxy secret (TOKENGATE_PROXY_SECRET)."))
                    .build(),
            ),
        );
    }
}

/// The document, as served.
pub fn document(routes: utoipa_axum::router::OpenApiRouter<crate::AppState>) -> Value {
    let doc = utoipa_axum::router::OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(routes).into_openapi();
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

/// Every error: a stable `code` (snake_case), `error` (the same code, for clients of the
/// seeds) and a `message` for people. Some errors add fields (`Retry-After` travels as a
/// header): `too_many_vouchers` adds `unused`, `remaining` and `limit`; `too_many_keys`
/// adds `oldestKid`, `lastTokenExpiresAt` and `publishedUntil`.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    pub error: String,
    pub code: String,
    pub message: String,
}

/// The refusals every route behind the API-token guard can give.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum Guarded {
    /// invalid_request: a malformed Authorization header (or a token in the query string).
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// missing_token, an invalid token (token_* codes: token_expired, token_bad_signature, ...)
    /// or token_revoked; WWW-Authenticate carries the RFC 6750 challenge.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// insufficient_scope (the token's scopes do not allow this request) or
    /// insufficient_flags (the token's `fl` does not allow it).
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// database_unavailable (Retry-After: 1).
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// The refusals of every JSON request body.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum BodyErrors {
    /// malformed_json, unknown_field, wrong_type or missing_field (the message names the field).
    #[response(status = 400)]
    BadBody(ErrorBody),
    /// body_too_large.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// unsupported_media_type: the body is not Content-Type: application/json.
    #[response(status = 415)]
    MediaType(ErrorBody),
}

/// `POST /login` (seed 002). The seed's envelope: the handler reads it field by field to
/// give each mistake the seed's `resultCode`.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct LoginRequest {
    /// `auth`.
    method: Option<String>,
    /// Echoed back: a string (at most 200 characters) or a number.
    #[schema(value_type = Option<Value>)]
    request_id: Option<Value>,
    /// `secured` or `unsecured`; absent for an admin's switch to the user role.
    #[serde(rename = "type")]
    kind: Option<String>,
    username: Option<String>,
    /// A password, a PIN or a token.
    #[schema(format = Password)]
    credentials: Option<String>,
    /// `password`, `pin` or `token`; otherwise a JWT is a token, digits are the PIN of a
    /// user with one, anything else the password.
    credentials_kind: Option<String>,
    /// `admin` or `user`.
    role: Option<String>,
}

/// `POST /login`'s success: resultCode 0.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct LoginAnswer {
    method: String,
    #[schema(value_type = Value)]
    request_id: Value,
    /// 1 user, 2 admin (the seed's spelling).
    previleges: i64,
    /// The same, spelled right.
    privileges: i64,
    /// An API token: 30 days, or the original's end for a token login or a switch.
    token: String,
    /// A `tg-http+jwt` token for 5 minutes, taken only on routes marked `http_token`.
    token_for_http_server: String,
    #[serde(rename = "_id")]
    id: Option<String>,
    expires_at: Option<i64>,
    token_for_http_server_expires_at: Option<i64>,
    result: bool,
    /// 0.
    result_code: i64,
}

/// `POST /login`'s refusal: the seed's envelope with its `resultCode` (1 to 12) and our
/// `error`, `code` and `message`.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct LoginFailure {
    method: Option<String>,
    #[schema(value_type = Option<Value>)]
    request_id: Option<Value>,
    result: Option<bool>,
    result_code: Option<i64>,
    error: String,
    code: String,
    message: String,
}

/// `POST /token/login` (seed 003): the session; which sections appear depends on `fl`.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
pub struct SessionStarted {
    /// The session token (`tg-session+jwt`): the Bearer through the gate. Shown once.
    eid: String,
    #[serde(rename = "_id")]
    id: String,
    expires_at: i64,
    idle_secs: i64,
    proxies: crate::http::wire::ProxyCounts,
    /// 0x1: the account.
    au: Option<String>,
    /// 0x1: the server time, s.
    tm: Option<i64>,
    /// 0x1: the operator's name.
    operator: Option<String>,
    /// 0x2: the user in seed 003 names (0x20 adds `prp`).
    #[schema(value_type = Option<Object>)]
    user: Option<Value>,
    /// 0x4: the token settings as escaped JSON ({app, ct, at, dur, fl, p, items}).
    token: Option<String>,
    /// 0x10: billing ({unlim, svcs}).
    #[schema(value_type = Option<Object>)]
    features: Option<Value>,
}

/// `GET /.well-known/jwks.json`.
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct Jwks {
    keys: Vec<Jwk>,
}

/// An Ed25519 public key (RFC 8037).
#[derive(Serialize, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct Jwk {
    /// `OKP`.
    kty: String,
    /// `Ed25519`.
    crv: String,
    /// `EdDSA`.
    alg: String,
    /// `sig`.
    #[serde(rename = "use")]
    usage: String,
    kid: String,
    x: String,
}

/// `POST /tokens/update`'s answer: the token (create, update) or what was deleted.
#[derive(Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ManageAnswer {
    Token(crate::http::wire::ManagedToken),
    Deleted(crate::http::wire::ManageDeleted),
}
