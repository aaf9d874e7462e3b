//! `POST /login`: seed 002's one login call with several security types.
//!
//! The body is the seed's: `{"method":"auth","requestId","type","username","credentials",
//! "role"}`, plus our optional `credentialsKind`. The answer keeps the seed's shape
//! (`previleges` as the seed spells it, and `privileges`), with `resultCode` 0-12 as the
//! seed lists them; a refusal also carries our `error`, `code` and `message` and an HTTP
//! status that fits ([`result_code`] maps one to the other).
//!
//! - `"type": "secured"`: `credentials` is a password, a PIN or a token. The kind is
//!   `credentialsKind` (`password`, `pin` or `token`) when given; otherwise a JWT (three
//!   base64url parts, the first starting `eyJ`) is a token, digits only are the user's PIN
//!   when the user has one, and anything else is the password. A password made of digits
//!   only, for a user with a PIN, needs `"credentialsKind": "password"`. Password and PIN
//!   logins name the user (`username`); a token login may (then it must be the token's).
//! - `"type": "unsecured"`: only when the operator set `TOKENGATE_UNSECURED_LOGIN` to a
//!   user name; it logs in as that user, with no secret.
//! - No `type`, a Bearer API token in `Authorization` and `"role": "user"`: an admin's
//!   switch to the user role, without credentials. Only a connection in the admin role
//!   may switch (code 3).
//! - `role`, when given, is checked: a user asking for `admin` gets code 5; an admin
//!   asking for `user` gets a token in the user role. Without `role`, the user's own.
//! - Pro-only (code 2): PIN and unsecured logins. Password and token logins and the role
//!   switch work on every plan (`GET/PATCH /account`).
//!
//! `token` is an API token. It lives 30 days for password, PIN and unsecured logins; a
//! token login and a role switch make a child of the original token with the original's
//! rights and end (never later), so revoking the original ends it. A token in the user
//! role (`tokens.role`) and all its children stay in the user role whatever the user's
//! own role is. `tokenForHttpServer` is a `tg-http+jwt` token, a child of `token`, for 5
//! minutes (never past `token`): the gate takes it only on routes marked `http_token`,
//! and it is never taken anywhere else, nor is an API token taken there.
//!
//! Every secret goes through the throttle first (`throttle.rs`): passwords and PINs per
//! user name, token logins per token (a token cannot be guessed; the per-source lock is
//! what stops a flood). Unknown names cost the same hash as known ones.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, OriginalUri, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokengate_rules::TokenKind;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::db::now_ms;
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{LoginAnswer, LoginFailure, LoginRequest};
use crate::identity::{throttle, users};
use crate::tokens::guard::{self, Caller};
use crate::tokens::keys::{hex, random_id};
use crate::tokens::{self, NewToken};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}

/// The life of `token` after a password, PIN or unsecured login.
pub const LOGIN_LIFETIME_MS: i64 = 30 * 24 * 3600 * 1000;
/// The life of `tokenForHttpServer`.
pub const HTTP_TOKEN_LIFETIME_MS: i64 = 5 * 60 * 1000;
/// The longest `requestId` echoed back.
pub const MAX_REQUEST_ID_CHARS: usize = 200;

/// A role, as the seed numbers it in `previleges`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// Seed 002 `previleges`: 1 user, 2 admin.
    pub fn privileges(self) -> u8 {
        match self {
            Role::User => 1,
            Role::Admin => 2,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Security {
    Secured,
    Unsecured,
    /// No `type`: a role switch.
    Switch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Password,
    Pin,
    Token,
}

impl Kind {
    fn throttle_kind(self) -> &'static str {
        match self {
            Kind::Password => "password",
            Kind::Pin => "pin",
            Kind::Token => "token",
        }
    }
}

struct Request {
    security: Security,
    role: Option<Role>,
    username: Option<String>,
    credentials: Option<String>,
    kind: Option<Kind>,
}

/// The seed's result code for a refusal; `None` for what the seed has no code for (a body
/// that is not JSON, a wrong `method`, a bad `requestId`).
pub fn result_code(e: &ApiError) -> Option<u8> {
    use ApiError as E;
    Some(match e {
        E::Internal | E::DatabaseUnavailable => 1,
        E::PlanNotPro(_) => 2,
        // A switch whose Bearer is refused: the connection is not an admin's.
        E::NotAdmin | E::Denied(_) => 3,
        E::SecurityTypeNotAllowed(_) => 4,
        E::RoleMismatch => 5,
        E::TooManyAttempts { .. } => 6,
        E::EmptyCredentials => 7,
        E::WrongCredentials => 8,
        E::BadRole => 9,
        E::BadType(_) => 10,
        E::MissingType(_) => 11,
        E::MissingCredentials(_) => 12,
        _ => return None,
    })
}

#[utoipa::path(post, path = "/login", operation_id = "login", tag = "identity",
    summary = "Seed 002 login: secured (password, PIN or token), unsecured, or an admin's switch to the user role",
    description = "`type: secured` logs in with `credentials` (a password, a PIN or a token; `credentialsKind` says which, else it is guessed). `type: unsecured` works only when TOKENGATE_UNSECURED_LOGIN names a user. No `type`, a Bearer API token and `role: user` is an admin's switch to the user role. Every secret goes through the credential throttle. Refusals keep the seed's envelope with its resultCode (1 to 12) and add our error, code and message.",
    request_body = LoginRequest,
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "resultCode 0: `token` (an API token) and `tokenForHttpServer`.", body = LoginAnswer),
        (status = 400, description = "7 empty_credentials, 9 bad_role, 10 bad_type, 11 missing_type, 12 missing_credentials; without resultCode: malformed_json, bad_method, bad_request_id, unsupported_media_type's sibling body errors.", body = LoginFailure),
        (status = 401, description = "8 wrong_credentials; 3 with the token's code when a switch's Bearer is refused.", body = LoginFailure),
        (status = 403, description = "2 plan_not_pro, 3 not_admin, 4 security_type_not_allowed, 5 role_mismatch.", body = LoginFailure),
        (status = 413, description = "body_too_large", body = LoginFailure),
        (status = 415, description = "unsupported_media_type", body = LoginFailure),
        (status = 429, description = "6 too_many_attempts, with Retry-After.", body = LoginFailure),
        (status = 503, description = "1 database_unavailable", body = LoginFailure),
    ))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<ApiJson<Value>, ApiError>,
) -> Response {
    let body = match body {
        Ok(ApiJson(body)) => body,
        Err(e) => return refuse(Value::Null, e),
    };
    let request_id = match request_id(&body) {
        Ok(id) => id,
        Err(e) => return refuse(Value::Null, e),
    };
    let result = match parse(&body) {
        Ok(req) => run(&state, peer, &uri, &headers, req).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(answer) => {
            let mut out = envelope(request_id);
            out.extend(answer);
            out.insert("result".into(), true.into());
            out.insert("resultCode".into(), 0.into());
            Json(Value::Object(out)).into_response()
        }
        Err(e) => refuse(request_id, e),
    }
}

fn envelope(request_id: Value) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("method".into(), "auth".into());
    out.insert("requestId".into(), request_id);
    out
}

fn refuse(request_id: Value, e: ApiError) -> Response {
    let mut extra = envelope(request_id);
    extra.insert("result".into(), false.into());
    if let Some(code) = result_code(&e) {
        extra.insert("resultCode".into(), code.into());
    }
    e.into_response_with(extra)
}

/// `requestId`: echoed as given, a string of at most [`MAX_REQUEST_ID_CHARS`] or a number.
fn request_id(body: &Value) -> Result<Value, ApiError> {
    match body.get("requestId") {
        None | Some(Value::Null) => Ok(Value::Null),
        Some(Value::String(s)) if s.chars().count() <= MAX_REQUEST_ID_CHARS && !s.chars().any(char::is_control) => {
            Ok(Value::String(s.clone()))
        }
        Some(n @ Value::Number(_)) => Ok(n.clone()),
        Some(_) => Err(ApiError::BadRequestId(MAX_REQUEST_ID_CHARS)),
    }
}

fn optional_string(body: &Value, field: &str) -> Result<Option<String>, ()> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

/// The fields, checked in the seed's order of codes. Unknown fields are ignored: seed
/// clients send more than we read.
fn parse(body: &Value) -> Result<Request, ApiError> {
    if !body.is_object() {
        return Err(ApiError::WrongType("the body must be a JSON object".into()));
    }
    match optional_string(body, "method") {
        Ok(None) => {}
        Ok(Some(m)) if m == "auth" => {}
        _ => return Err(ApiError::BadMethod),
    }
    let role = match optional_string(body, "role") {
        Ok(None) => None,
        Ok(Some(r)) => Some(Role::parse(&r).ok_or(ApiError::BadRole)?),
        Err(()) => return Err(ApiError::BadRole),
    };
    let security = match optional_string(body, "type") {
        Ok(None) => Security::Switch,
        Ok(Some(t)) if t == "secured" => Security::Secured,
        Ok(Some(t)) if t == "unsecured" => Security::Unsecured,
        _ => return Err(ApiError::BadType("type must be \"secured\" or \"unsecured\"")),
    };
    let kind = match optional_string(body, "credentialsKind") {
        Ok(None) => None,
        Ok(Some(k)) if k == "password" => Some(Kind::Password),
        Ok(Some(k)) if k == "pin" => Some(Kind::Pin),
        Ok(Some(k)) if k == "token" => Some(Kind::Token),
        _ => return Err(ApiError::BadType("credentialsKind must be \"password\", \"pin\" or \"token\"")),
    };
    let username = optional_string(body, "username").map_err(|()| ApiError::WrongCredentials)?;
    let credentials = optional_string(body, "credentials")
        .map_err(|()| ApiError::MissingCredentials("credentials must be a string: the password, the PIN or the token"))?;
    Ok(Request { security, role, username, credentials, kind })
}

async fn run(
    state: &AppState,
    peer: SocketAddr,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    req: Request,
) -> Result<Map<String, Value>, ApiError> {
    let source = crate::http::client::source(headers, peer.ip(), &state.config.trusted_proxies);
    match req.security {
        Security::Switch => switch(state, source, uri, headers, &req).await,
        Security::Unsecured => unsecured(state, source, &req).await,
        Security::Secured => secured(state, source, req).await,
    }
}

/// The role a login gets: the one asked for, checked against what the user may have.
fn granted(may: Role, asked: Option<Role>) -> Result<Role, ApiError> {
    match (may, asked) {
        (Role::User, Some(Role::Admin)) => Err(ApiError::RoleMismatch),
        (_, Some(asked)) => Ok(asked),
        (may, None) => Ok(may),
    }
}

/// The role a token acts in: the user's, unless the token was made in the user role.
pub async fn mode(state: &AppState, caller: &Caller) -> Result<Role, ApiError> {
    Ok(if guard::is_admin(state, caller).await? { Role::Admin } else { Role::User })
}

async fn switch(
    state: &AppState,
    source: std::net::IpAddr,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    req: &Request,
) -> Result<Map<String, Value>, ApiError> {
    if req.credentials.is_some() || req.username.is_some() {
        return Err(ApiError::MissingType("a login with credentials names its type: \"secured\" or \"unsecured\""));
    }
    if !headers.contains_key(header::AUTHORIZATION) {
        return Err(ApiError::MissingType(
            "type is missing: \"secured\" or \"unsecured\" (or, for an admin's switch to the user role, a Bearer token and \"role\": \"user\")",
        ));
    }
    let Some(asked) = req.role else {
        return Err(ApiError::MissingType("a role switch names the role it switches to: \"role\": \"user\""));
    };
    let caller = guard::caller_of(state, guard::bearer_of(headers, uri)?).await?;
    if mode(state, &caller).await? != Role::Admin {
        return Err(ApiError::NotAdmin);
    }
    let user = users::find_by_id(&state.pool, &caller.claims.sub).await?.ok_or(ApiError::NotAdmin)?;
    finish(state, &user, asked, Some(&caller), source, "switch").await
}

async fn unsecured(state: &AppState, source: std::net::IpAddr, req: &Request) -> Result<Map<String, Value>, ApiError> {
    let Some(name) = state.config.unsecured_login.as_deref() else {
        return Err(ApiError::SecurityTypeNotAllowed(
            "unsecured logins are off; the operator turns them on with TOKENGATE_UNSECURED_LOGIN=<user name>",
        ));
    };
    if req.username.as_deref().is_some_and(|u| u != name) {
        return Err(ApiError::SecurityTypeNotAllowed("an unsecured login logs in only as the user the operator named"));
    }
    let Some(user) = users::find_by_name(&state.pool, name).await? else {
        tracing::warn!(user = %name, "TOKENGATE_UNSECURED_LOGIN names no user");
        return Err(ApiError::SecurityTypeNotAllowed("the user TOKENGATE_UNSECURED_LOGIN names does not exist"));
    };
    require_pro(&user, "unsecured logins")?;
    let role = granted(user.role(), req.role)?;
    finish(state, &user, role, None, source, "unsecured").await
}

fn require_pro(user: &users::User, what: &'static str) -> Result<(), ApiError> {
    if user.plan == "pro" {
        Ok(())
    } else {
        Err(ApiError::PlanNotPro(what))
    }
}

/// A JWT: three base64url parts, the header's JSON starting `{"` (`eyJ`).
fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.split('.').count() == 3 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

async fn secured(state: &AppState, source: std::net::IpAddr, req: Request) -> Result<Map<String, Value>, ApiError> {
    let Some(credentials) = req.credentials.as_deref() else {
        return Err(ApiError::MissingCredentials("a secured login carries credentials: a password, a PIN or a token"));
    };
    if credentials.is_empty() || req.username.as_deref() == Some("") {
        return Err(ApiError::EmptyCredentials);
    }
    if req.kind == Some(Kind::Token) || (req.kind.is_none() && looks_like_jwt(credentials)) {
        return token_login(state, source, credentials, &req).await;
    }
    let Some(username) = req.username.as_deref() else {
        return Err(ApiError::MissingCredentials("a password or PIN login names the user: username"));
    };
    let user = users::find_by_name(&state.pool, username).await?;
    let has_pin = user.as_ref().is_some_and(|u| u.pin_hash.is_some());
    let kind = req.kind.unwrap_or(if has_pin && credentials.bytes().all(|b| b.is_ascii_digit()) { Kind::Pin } else { Kind::Password });
    let reservation = throttle::reserve(state, &throttle::Attempt::credential(kind.throttle_kind(), username, source)).await?;
    let hash = user.as_ref().and_then(|u| if kind == Kind::Pin { u.pin_hash.as_deref() } else { Some(u.password_hash.as_str()) });
    // An unknown user (or one without a PIN) is checked against a dummy hash: the same
    // work, the same answer.
    let ok = state.passwords.verify(credentials, hash).await?;
    let method = if kind == Kind::Pin { "pin" } else { "password" };
    let user = match user {
        Some(user) if ok => user,
        user => {
            let failure = audit::login("login.failed", user.as_ref(), method, source);
            return Err(wrong(state, reservation, username, source, failure).await?);
        }
    };
    throttle::succeeded(state, reservation).await?;
    if kind == Kind::Pin {
        require_pro(&user, "PIN logins")?;
    }
    let role = granted(user.role(), req.role)?;
    finish(state, &user, role, None, source, method).await
}

/// Settles a wrong secret: 401 `wrong_credentials`, or 429 when it started a lock.
async fn wrong(
    state: &AppState,
    reservation: throttle::Reservation,
    name: &str,
    source: std::net::IpAddr,
    failure: (audit::Actor, audit::Event),
) -> Result<ApiError, ApiError> {
    state.metrics.login_failures.inc();
    let locked = throttle::failed(state, reservation, Some(failure)).await?;
    // The name is logged (it is not a secret); the credentials never are.
    tracing::info!(user = %name, %source, locked_secs = ?locked, "wrong credentials");
    Ok(match locked {
        Some(retry_after_secs) => ApiError::TooManyAttempts { retry_after_secs },
        None => ApiError::WrongCredentials,
    })
}

async fn token_login(state: &AppState, source: std::net::IpAddr, token: &str, req: &Request) -> Result<Map<String, Value>, ApiError> {
    let caller = check_token(state, source, token, req.username.as_deref()).await?;
    let user = users::find_by_id(&state.pool, &caller.claims.sub).await?.ok_or(ApiError::WrongCredentials)?;
    let role = granted(mode(state, &caller).await?, req.role)?;
    finish(state, &user, role, Some(&caller), source, "token").await
}

/// A token presented as a credential (a seed-002 token login, a seed-003 `token/login`):
/// a valid, live API token (of the user `username`, when given), through the throttle.
/// Each token is its own throttle account (a hash of it, never the value); a refused
/// token is 401 `wrong_credentials` (or 429 once the source is locked).
pub async fn check_token(state: &AppState, source: std::net::IpAddr, token: &str, username: Option<&str>) -> Result<Caller, ApiError> {
    let digest = Sha256::digest(token.as_bytes());
    let name = format!("token:{}", hex(&digest[..8]));
    let reservation = throttle::reserve(state, &throttle::Attempt::credential(Kind::Token.throttle_kind(), &name, source)).await?;
    let caller = match guard::caller_of(state, token).await {
        Ok(c) if username.is_none_or(|u| c.claims.unm.as_deref() == Some(u)) => c,
        Ok(_) | Err(ApiError::Denied(_)) => {
            let failure = audit::login("login.failed", None, "token", source);
            return Err(wrong(state, reservation, &name, source, failure).await?);
        }
        Err(e) => return Err(e),
    };
    throttle::succeeded(state, reservation).await?;
    Ok(guard::Caller { address: Some(source), ..caller })
}

/// Issues `token` and `tokenForHttpServer` in one transaction and builds the answer.
/// `from`: the token this login derives from (a token login, a role switch).
async fn finish(
    state: &AppState,
    user: &users::User,
    role: Role,
    from: Option<&Caller>,
    source: std::net::IpAddr,
    method: &'static str,
) -> Result<Map<String, Value>, ApiError> {
    let now = now_ms();
    let login = NewToken {
        id: random_id(12),
        kind: TokenKind::Api,
        account_id: user.account_id.clone(),
        user_id: user.id.clone(),
        user_name: user.name.clone(),
        parent_id: from.map(|c| c.claims.jti.clone()),
        name: None,
        scopes: from.and_then(|c| c.rights.scopes.clone()),
        fl: from.and_then(|c| c.rights.flags),
        items: from.and_then(|c| c.rights.items.clone()),
        app: from.and_then(|c| c.token.app.clone()),
        p: from.and_then(|c| c.token.p.clone()),
        role: (role == Role::User).then(|| "user".to_owned()),
        issued_at_ms: now,
        not_before_ms: now,
        dur: None,
        expires_at_ms: from.map_or(now.saturating_add(LOGIN_LIFETIME_MS), |c| c.token.expires_at),
    };
    let http = NewToken {
        id: random_id(12),
        kind: TokenKind::HttpServer,
        parent_id: Some(login.id.clone()),
        expires_at_ms: now.saturating_add(HTTP_TOKEN_LIFETIME_MS).min(login.expires_at_ms),
        account_id: login.account_id.clone(),
        user_id: login.user_id.clone(),
        user_name: login.user_name.clone(),
        name: None,
        scopes: login.scopes.clone(),
        fl: login.fl,
        items: login.items.clone(),
        app: login.app.clone(),
        p: login.p.clone(),
        role: login.role.clone(),
        issued_at_ms: now,
        not_before_ms: now,
        dur: None,
    };
    // A login from a token is by that token's holder; a login with a secret by the user.
    let (mut actor, logged_in) = audit::login("login.ok", Some(user), method, source);
    if let Some(caller) = from {
        actor = audit::Actor { address: Some(source), ..audit::Actor::of(caller) };
    }
    let mut issued = tokens::issue_all(state, vec![login, http], &actor, &[logged_in]).await?;
    let (Some(http), Some(login)) = (issued.pop(), issued.pop()) else {
        tracing::error!("issuing a login's tokens returned fewer tokens than asked");
        return Err(ApiError::Internal);
    };
    sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1").bind(&user.id).bind(now).execute(&state.pool).await?;
    tracing::info!(user = %user.name, role = ?role, token = %login.id, "logged in");
    let Value::Object(answer) = json!({
        "previleges": role.privileges(),
        "privileges": role.privileges(),
        "token": login.token,
        "tokenForHttpServer": http.token,
        "expiresAt": login.expires_at,
        "tokenForHttpServerExpiresAt": http.expires_at,
        "_id": login.id,
    }) else {
        return Err(ApiError::Internal);
    };
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_granted_as_the_seed_says() {
        assert_eq!(granted(Role::User, None).ok(), Some(Role::User));
        assert_eq!(granted(Role::Admin, None).ok(), Some(Role::Admin));
        assert_eq!(granted(Role::Admin, Some(Role::User)).ok(), Some(Role::User));
        assert!(matches!(granted(Role::User, Some(Role::Admin)), Err(ApiError::RoleMismatch)));
    }

    #[test]
    fn jwt_shape_tells_a_token_from_a_password() {
        assert!(looks_like_jwt("eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("eyJ-is-my-password"));
        assert!(!looks_like_jwt("eyJ a.b.c"));
        assert!(!looks_like_jwt("hunter2.a.b"));
    }

    #[test]
    fn every_seed_code_has_a_refusal() {
        use ApiError as E;
        let cases: [(ApiError, u8); 12] = [
            (E::Internal, 1),
            (E::PlanNotPro("PIN logins"), 2),
            (E::NotAdmin, 3),
            (E::SecurityTypeNotAllowed("x"), 4),
            (E::RoleMismatch, 5),
            (E::TooManyAttempts { retry_after_secs: 1 }, 6),
            (E::EmptyCredentials, 7),
            (E::WrongCredentials, 8),
            (E::BadRole, 9),
            (E::BadType("x"), 10),
            (E::MissingType("x"), 11),
            (E::MissingCredentials("x"), 12),
        ];
        for (e, code) in cases {
            assert_eq!(result_code(&e), Some(code), "{}", e.code());
        }
        assert_eq!(result_code(&E::MalformedJson("x".into())), None);
    }
}
