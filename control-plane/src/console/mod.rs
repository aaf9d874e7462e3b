//! The admin console (`/console`, outside the API prefix): server-rendered pages (maud)
//! over the REST API, for operators who would rather click than curl.
//!
//! **Every action is an API call.** A page or a form builds an `http::Request` to the API
//! route (`GET {prefix}/tokens`, `DELETE {prefix}/tokens/:id?wait=2000` ...) with the
//! console's token as its Bearer, the browser's address as `ConnectInfo` and its
//! forwarding headers, and dispatches it in-process through the same router `app()` serves
//! ([`Shared::dispatch`]). So the console gets the API's authorization, validation,
//! propagation, throttle and audit, and writes no business logic twice; it renders the
//! JSON answers (the wire types of `http::wire`) and shows the API's refusals (code and
//! message).
//!
//! **Login** posts to `{prefix}/auth` the same way (the credential throttle, the lockout,
//! the constant-time checks are that route's), asking for an ordinary API token named
//! `console` without scopes (the user's full rights) for [`TOKEN_LIFETIME`].
//!
//! **The session** is that token's value in the cookie `tg_console` (`HttpOnly;
//! SameSite=Strict; Path=/console`, and `Secure` when the browser's connection is HTTPS).
//! The server stores no token value: the `console_sessions` row (migration 0016) holds the
//! token's id, its user and the last console request; a console request after
//! `TOKENGATE_SESSION_IDLE_SECS` of silence revokes the token and asks for a new login,
//! and the sweeper revokes idle ones nobody comes back to ([`sweep_idle`]). Only a token
//! with such a row is accepted from the cookie. Logout revokes the token.
//!
//! **CSRF**: every form carries `csrf` = HMAC-SHA256 of the console token's id under a
//! server key (derived from the voucher lookup key, which every replica shares, with its
//! own label), compared in constant time; the login form, before there is a token, carries
//! the HMAC of a random nonce in a short-lived `tg_console_login` cookie. A POST without
//! it or with a wrong one is a 403 page and changes nothing. `SameSite=Strict` is the
//! second line.
//!
//! **Headers** on every console answer: a CSP without inline script or style
//! ([`CSP`]; the CSS and the little JavaScript are files under `assets/`, served from
//! here), `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`,
//! `Cache-Control: no-store` (a page may show a token once).
//!
//! These are HTML pages, not API operations: they are a plain axum `Router` merged in
//! `app()`, kept out of the OpenAPI document (tests/api/service.rs exempts `src/console/`
//! from its "every route is documented" scan for that reason).

mod pages;

use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::Value;
use subtle::ConstantTimeEq;
use tower::ServiceExt;

use crate::db;
use crate::tokens::keys::hex;
use crate::AppState;

pub use pages::Flash;

/// The session cookie: the console token's value.
pub const COOKIE: &str = "tg_console";
/// The login form's nonce cookie (CSRF before there is a session).
const LOGIN_COOKIE: &str = "tg_console_login";
/// The console token's lifetime (`expiresIn`) and name.
pub const TOKEN_LIFETIME: &str = "12 hours";
pub const TOKEN_NAME: &str = "console";
/// How long a revocation waits for the proxies to apply it (`?wait=`).
pub const REVOKE_WAIT_MS: u32 = 2000;
/// The most a console form body may hold.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// The most an API answer read by the console may hold (the voucher PDF is the largest).
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;

/// Every console answer's Content-Security-Policy: nothing inline, nothing from elsewhere.
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// What the console keeps per app: the API router it dispatches to, built once.
#[derive(Default)]
pub struct Shared {
    api: OnceLock<Router<AppState>>,
}

/// An API answer as the console got it.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// An API refusal, as the page shows it.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Answer {
    /// The body as `T` on a 2xx answer, else the API's refusal.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Problem> {
        if !self.status.is_success() {
            return Err(self.problem());
        }
        serde_json::from_slice(&self.body).map_err(|e| Problem {
            status: self.status.as_u16(),
            code: "unexpected_answer".into(),
            message: format!("the API's answer did not have the expected shape: {e}"),
        })
    }

    /// The refusal in a non-2xx answer (`{"error","code","message"}`).
    pub fn problem(&self) -> Problem {
        let body: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        Problem {
            status: self.status.as_u16(),
            code: body["code"].as_str().unwrap_or("error").to_owned(),
            message: body["message"].as_str().map_or_else(|| format!("HTTP {}", self.status.as_u16()), str::to_owned),
        }
    }

    /// Success without a body to read (204, or an answer the page does not show).
    pub fn done(&self) -> Result<(), Problem> {
        if self.status.is_success() {
            Ok(())
        } else {
            Err(self.problem())
        }
    }

    /// `Retry-After` in seconds (a throttled login).
    pub fn retry_after(&self) -> Option<u64> {
        self.headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
    }
}

/// Where a browser's request came from, passed on to the API so that the throttle and the
/// logs see the browser, not the console.
#[derive(Clone)]
pub struct Origin {
    peer: SocketAddr,
    forwarded: Vec<(HeaderName, HeaderValue)>,
    https: bool,
}

impl Origin {
    fn of(parts: &Parts, state: &AppState) -> Origin {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)), |c| c.0);
        let forwarded = ["x-forwarded-for", "x-forwarded-proto"]
            .iter()
            .flat_map(|name| parts.headers.get_all(*name).iter().map(move |v| (HeaderName::from_static(name), v.clone())))
            .collect();
        // The browser's connection is HTTPS when this listener serves TLS to it, or when a
        // trusted proxy in front says so. A control plane serving TLS to Envoy only
        // (the browser on plain HTTP) gets `x-forwarded-proto: http` from Envoy: no
        // `Secure`, else the browser would drop the cookie.
        let trusted = state.config.trusted_proxies.iter().any(|n| n.contains(&peer.ip()));
        let proto = parts.headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()).filter(|_| trusted);
        let https = match proto {
            Some(p) => p.trim().eq_ignore_ascii_case("https"),
            None => state.config.tls.is_some(),
        };
        Origin { peer, forwarded, https }
    }
}

impl Shared {
    /// Sends one API request in-process, as the browser would with curl: `bearer` as the
    /// Authorization, the browser's address and forwarding headers, `body` as JSON.
    pub async fn dispatch(
        state: &AppState,
        origin: &Origin,
        bearer: Option<&str>,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let router = state.console.api.get_or_init(|| crate::api_router(&state.config)).clone();
        let uri = format!("{}{path}", state.config.api_prefix);
        let mut request = Request::new(body.map_or_else(Body::empty, |b| Body::from(b.to_string())));
        *request.method_mut() = method;
        match uri.parse() {
            Ok(uri) => *request.uri_mut() = uri,
            Err(_) => return internal("the console built a bad API path"),
        }
        let headers = request.headers_mut();
        if let Some(token) = bearer {
            match HeaderValue::from_str(&format!("Bearer {token}")) {
                Ok(v) => {
                    headers.insert(header::AUTHORIZATION, v);
                }
                Err(_) => return internal("the session cookie is not a token"),
            }
        }
        if body.is_some() {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in &origin.forwarded {
            headers.append(name.clone(), value.clone());
        }
        request.extensions_mut().insert(ConnectInfo(origin.peer));
        let service = router.layer(middleware::from_fn_with_state(state.clone(), crate::log_request)).with_state(state.clone());
        let response = match service.oneshot(request).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let (parts, body) = response.into_parts();
        match axum::body::to_bytes(body, MAX_ANSWER_BYTES).await {
            Ok(body) => Answer { status: parts.status, headers: parts.headers, body },
            Err(_) => internal("the API's answer was too large"),
        }
    }
}

fn internal(message: &str) -> Answer {
    let body = serde_json::json!({"error": "internal", "code": "internal", "message": message}).to_string();
    Answer { status: StatusCode::INTERNAL_SERVER_ERROR, headers: HeaderMap::new(), body: Bytes::from(body) }
}

/// The console's routes (HTML, outside the API prefix).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/tokens") }))
        .route("/console/", get(|| async { Redirect::to("/console/tokens") }))
        .route("/console/login", get(login_page).post(login_submit))
        .route("/console/logout", post(logout))
        .route("/console/assets/console.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS) }))
        .route("/console/assets/console.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], JS) }))
        .merge(pages::router())
        .route(
            "/console/{*rest}",
            get(|| async { pages::error_page("not_found", "There is no such console page.", StatusCode::NOT_FOUND) }),
        )
        .layer(middleware::map_response(secure_headers))
}

/// The headers every console answer carries.
async fn secure_headers(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// A `Set-Cookie` for the console's path.
fn cookie(name: &str, value: &str, max_age: Option<u64>, https: bool) -> HeaderValue {
    let mut c = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if let Some(secs) = max_age {
        c.push_str(&format!("; Max-Age={secs}"));
    }
    if https {
        c.push_str("; Secure");
    }
    HeaderValue::from_str(&c).unwrap_or_else(|_| HeaderValue::from_static("tg_console=; Path=/console; Max-Age=0"))
}

/// The value of cookie `name` in the request (the first one when several).
fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// HMAC-SHA256 of `data` under the console's key (derived from the voucher lookup key
/// with its own label), hex.
fn mac(state: &AppState, label: &[u8], data: &str) -> String {
    hex(&state.voucher_keys.tag(label, data.as_bytes()))
}

const CSRF_LABEL: &[u8] = b"tokengate console csrf\0";
const LOGIN_LABEL: &[u8] = b"tokengate console login\0";

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Redirects to the login page, clearing the session cookie; `m` says why.
fn to_login(m: Option<&str>, https: bool) -> Response {
    let target = m.map_or_else(|| "/console/login".to_owned(), |m| format!("/console/login?m={m}"));
    let mut response = Redirect::to(&target).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie(COOKIE, "", Some(0), https));
    response
}

/// A console request with a live session: who, with which token, from where.
pub struct Console {
    pub state: AppState,
    pub origin: Origin,
    token: String,
    pub token_id: String,
    pub user_name: String,
    pub csrf: String,
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let origin = Origin::of(parts, state);
        let Some(token) = read_cookie(&parts.headers, COOKIE).map(str::to_owned) else {
            return Err(to_login(None, origin.https));
        };
        let caller = match crate::tokens::guard::caller_of(state, &token).await {
            Ok(c) => c,
            Err(crate::http::error::ApiError::Denied(_)) => return Err(to_login(Some("expired"), origin.https)),
            Err(e) => return Err(pages::error_page(e.code(), &e.message(), e.status())),
        };
        let token_id = caller.token.id.clone();
        let row: Result<Option<i64>, sqlx::Error> = sqlx::query_scalar("SELECT last_seen_at FROM console_sessions WHERE token_id = $1")
            .bind(&token_id)
            .fetch_optional(&state.pool)
            .await;
        let last_seen = match row {
            Ok(Some(t)) => t,
            // Not a console session: an API token pasted into the cookie is not accepted.
            Ok(None) => return Err(to_login(None, origin.https)),
            Err(e) => return Err(database_page(&e)),
        };
        let now = db::now_ms();
        if now.saturating_sub(last_seen) > idle_ms(state) {
            let console =
                Console { state: state.clone(), origin: origin.clone(), token, token_id, user_name: String::new(), csrf: String::new() };
            console.end().await;
            return Err(to_login(Some("expired"), origin.https));
        }
        if let Err(e) = sqlx::query("UPDATE console_sessions SET last_seen_at = $2 WHERE token_id = $1")
            .bind(&token_id)
            .bind(now)
            .execute(&state.pool)
            .await
        {
            return Err(database_page(&e));
        }
        let user_name = caller.claims.unm.clone().unwrap_or_else(|| caller.claims.sub.clone());
        let csrf = mac(state, CSRF_LABEL, &token_id);
        Ok(Console { state: state.clone(), origin, token, token_id, user_name, csrf })
    }
}

fn idle_ms(state: &AppState) -> i64 {
    db::to_i64(state.config.session_idle_secs.saturating_mul(1000))
}

fn database_page(e: &sqlx::Error) -> Response {
    tracing::warn!(error = %e, "console: database error");
    pages::error_page("database_unavailable", "The database did not answer; try again shortly.", StatusCode::SERVICE_UNAVAILABLE)
}

impl Console {
    /// One API call as this session.
    pub async fn api(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        Shared::dispatch(&self.state, &self.origin, Some(&self.token), method, path, body).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.api(Method::GET, path, None).await
    }

    /// Revokes the session's token (through the API, as a logout would be by curl) and
    /// forgets the session.
    async fn end(&self) {
        let answer = self.api(Method::DELETE, &format!("/tokens/{}", self.token_id), None).await;
        if !answer.status.is_success() {
            // The API refused (say its user was deleted meanwhile): revoke it here anyway.
            let _ = revoke(&self.state, &self.token_id, "console_logout").await;
        }
        let _ = sqlx::query("DELETE FROM console_sessions WHERE token_id = $1").bind(&self.token_id).execute(&self.state.pool).await;
    }
}

/// A console form: its fields, in order (checkboxes repeat a name).
pub struct Form(Vec<(String, String)>);

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The trimmed value, `None` when absent or blank.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }

    async fn read(body: Body) -> Result<Form, Response> {
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| pages::error_page("body_too_large", "The form is too large.", StatusCode::PAYLOAD_TOO_LARGE))?;
        serde_urlencoded::from_bytes(&bytes)
            .map(Form)
            .map_err(|_| pages::error_page("malformed_form", "The form could not be read.", StatusCode::BAD_REQUEST))
    }
}

/// A POST from a console page: the session and the form, whose CSRF token checked.
pub struct Post {
    pub console: Console,
    pub form: Form,
}

impl FromRequest<AppState> for Post {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let console = Console::from_request_parts(&mut parts, state).await?;
        let form = Form::read(body).await?;
        if !form.get("csrf").is_some_and(|t| same(t, &console.csrf)) {
            return Err(csrf_refused());
        }
        Ok(Post { console, form })
    }
}

fn csrf_refused() -> Response {
    pages::error_page(
        "csrf",
        "This form was not sent from a console page of this session (its CSRF token is missing or wrong). Nothing was changed. Reload the page and try again.",
        StatusCode::FORBIDDEN,
    )
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    m: Option<String>,
    /// `pin`: the PIN form.
    with: Option<String>,
}

/// What the login form asks for: a password (`POST /auth`), or a PIN (seed 002
/// `POST /login`, where the account's plan allows PIN logins).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Secret {
    Password,
    Pin,
}

/// `GET /console/login`: the form, with a fresh nonce for its CSRF token.
async fn login_page(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let origin = Origin::of(&parts, &state);
    let query = axum::extract::Query::<LoginQuery>::try_from_uri(&parts.uri).map(|q| q.0).ok();
    let flash = match query.as_ref().and_then(|q| q.m.as_deref()) {
        Some("expired") => Some(Flash::info(format!(
            "Your session expired (no activity for {} minutes, or the token ended). Please log in again.",
            state.config.session_idle_secs.div_ceil(60)
        ))),
        Some("out") => Some(Flash::ok("You are logged out. The console's token is revoked.".to_owned())),
        _ => None,
    };
    let secret = if query.and_then(|q| q.with).as_deref() == Some("pin") { Secret::Pin } else { Secret::Password };
    login_form(&state, &origin, "", secret, flash, StatusCode::OK)
}

/// The login form with a new nonce cookie.
fn login_form(state: &AppState, origin: &Origin, user: &str, secret: Secret, flash: Option<Flash>, status: StatusCode) -> Response {
    let nonce = crate::tokens::keys::random_id(16);
    let csrf = mac(state, LOGIN_LABEL, &nonce);
    let mut response = (status, pages::login(user, &csrf, secret, flash)).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie(LOGIN_COOKIE, &nonce, Some(3600), origin.https));
    response
}

/// A login's token, from `POST /auth` or seed 002's `POST /login`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoggedIn {
    #[serde(rename = "_id")]
    id: String,
    token: String,
    expires_at: i64,
}

/// `POST /console/login`: `POST {prefix}/auth` (or, for a PIN, `POST {prefix}/login`)
/// in-process, then the cookie.
async fn login_submit(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let origin = Origin::of(&parts, &state);
    let form = match Form::read(body).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let nonce_ok = read_cookie(&parts.headers, LOGIN_COOKIE)
        .zip(form.get("csrf"))
        .is_some_and(|(nonce, sent)| same(sent, &mac(&state, LOGIN_LABEL, nonce)));
    if !nonce_ok {
        return csrf_refused();
    }
    let secret = if form.get("kind") == Some("pin") { Secret::Pin } else { Secret::Password };
    let user = form.get("username").unwrap_or_default().trim().to_owned();
    let given = form.get(if secret == Secret::Pin { "pin" } else { "password" }).unwrap_or_default();
    if user.is_empty() || given.is_empty() {
        let what = if secret == Secret::Pin { "PIN" } else { "password" };
        return login_form(
            &state,
            &origin,
            &user,
            secret,
            Some(Flash::error(format!("Enter your user name and {what}."))),
            StatusCode::BAD_REQUEST,
        );
    }
    let answer = match secret {
        Secret::Password => {
            let body = serde_json::json!({"username": user, "password": given, "expiresIn": TOKEN_LIFETIME, "name": TOKEN_NAME});
            Shared::dispatch(&state, &origin, None, Method::POST, "/auth", Some(&body)).await
        }
        Secret::Pin => {
            let body =
                serde_json::json!({"method": "auth", "type": "secured", "username": user, "credentials": given, "credentialsKind": "pin"});
            Shared::dispatch(&state, &origin, None, Method::POST, "/login", Some(&body)).await
        }
    };
    let issued: LoggedIn = match answer.json() {
        Ok(t) => t,
        Err(p) => {
            let text = match p.code.as_str() {
                "wrong_credentials" if secret == Secret::Pin => "Wrong user name or PIN.".to_owned(),
                "wrong_credentials" => "Wrong user name or password.".to_owned(),
                "too_many_attempts" => match answer.retry_after() {
                    Some(secs) => format!("Too many wrong attempts. Try again in {secs} s."),
                    None => format!("Too many wrong attempts. {}", p.message),
                },
                _ => format!("{} ({})", p.message, p.code),
            };
            let mut flash = Flash::error(text);
            flash.code = Some(p.code.clone());
            let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::BAD_REQUEST);
            let mut response = login_form(&state, &origin, &user, secret, Some(flash), status);
            if let Some(v) = answer.headers.get(header::RETRY_AFTER) {
                response.headers_mut().insert(header::RETRY_AFTER, v.clone());
            }
            return response;
        }
    };
    let now = db::now_ms();
    let stored = sqlx::query(
        "INSERT INTO console_sessions (token_id, user_id, created_at, expires_at, last_seen_at) \
         SELECT id, user_id, $2, expires_at, $2 FROM tokens WHERE id = $1",
    )
    .bind(&issued.id)
    .bind(now)
    .execute(&state.pool)
    .await;
    if let Err(e) = stored {
        let _ = revoke(&state, &issued.id, "console_login_failed").await;
        return database_page(&e);
    }
    tracing::info!(user = %user, token = %issued.id, "console login");
    let max_age = issued.expires_at.saturating_sub(now) / 1000;
    let mut response = Redirect::to("/console/tokens").into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, cookie(COOKIE, &issued.token, Some(db::to_u64(max_age)), origin.https));
    h.append(header::SET_COOKIE, cookie(LOGIN_COOKIE, "", Some(0), origin.https));
    response
}

/// `POST /console/logout`: revokes the console's token.
async fn logout(Post { console, .. }: Post) -> Response {
    console.end().await;
    to_login(Some("out"), console.origin.https)
}

/// Revokes a console token (and what was issued from it) on the control plane's own
/// authority, audited as such with `reason`: the sweeper's idle ends, and the fallbacks
/// when the API could not be asked.
async fn revoke(state: &AppState, token_id: &str, reason: &str) -> Result<(), crate::http::error::ApiError> {
    let account: Option<String> =
        sqlx::query_scalar("SELECT account_id FROM tokens WHERE id = $1").bind(token_id).fetch_optional(&state.pool).await?;
    let Some(account) = account else { return Ok(()) };
    let event =
        crate::audit::Event::new(&account, "token.revoke", Some(format!("token:{token_id}")), serde_json::json!({"reason": reason}));
    crate::tokens::revoke_trees(state, crate::tokens::Roots::Token(token_id), Some((&crate::audit::Actor::system(), event))).await?;
    Ok(())
}

/// Revokes console tokens idle past the limit that nobody came back to (the sweeper calls
/// it); returns how many.
pub async fn sweep_idle(state: &AppState, now: i64) -> Result<usize, crate::http::error::ApiError> {
    let cutoff = now.saturating_sub(idle_ms(state));
    let idle: Vec<String> = sqlx::query_scalar("SELECT token_id FROM console_sessions WHERE last_seen_at < $1 OR expires_at < $2")
        .bind(cutoff)
        .bind(now)
        .fetch_all(&state.pool)
        .await?;
    for id in &idle {
        revoke(state, id, "console_idle").await?;
        sqlx::query("DELETE FROM console_sessions WHERE token_id = $1").bind(id).execute(&state.pool).await?;
    }
    Ok(idle.len())
}
