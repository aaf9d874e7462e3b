//! Seed 003 sessions: `POST /token/login` makes one from an API token, `GET /sessions`
//! lists the live ones, `DELETE /sessions/:id` ends one (logout).
//!
//! A session is a `tg-session+jwt` token (`eid` in the answer, the caller's Bearer
//! through the gate) whose claims copy its API token's rights, with `par` = the token's
//! id, `sub`/`unm` = the user it acts as and, with `operateAs`, `opr` = the token's user.
//! The database holds only its row (id, users, token, times), never the value.
//!
//! Proxies admit a session only while its id is in the *live set* they sync (a
//! `session` change-log entry adds it, an `end` entry removes it; a snapshot carries the
//! whole set). An ended session therefore leaves no revocation entry behind, and the
//! proxies' memory follows the number of live sessions, not of the ended ones. The
//! proxies also apply the token's amendments to the session and refuse it once the token
//! is revoked (`par`), so a session never holds more than its token holds now.
//!
//! Idle death (`TOKENGATE_SESSION_IDLE_SECS`, 300 by default): proxies report session
//! use every `session_report_ms` (5 s); the sweeper, every `TOKENGATE_SESSION_SWEEP_MS`,
//! ends the sessions whose last reported use is older than the idle limit plus
//! `TOKENGATE_SESSION_GRACE_MS` (12 s), through the change log as any change. The
//! bound is in ARCHITECTURE.md ("Sessions").

use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Map, Value};
use sqlx::AnyConnection;
use tokengate_rules::token::{self, TokenError, TokenKind};
use tokengate_rules::{Claims, Denial, VerifyPolicy};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Actor, Event};
use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, SessionStarted};
use crate::http::wire::{SessionInfo, SessionUser, TokenLoginRequest};
use crate::identity::directory::{self, is_at_or_below};
use crate::identity::{login, users};
use crate::sync::proxies;
use crate::tokens::guard::{Authorized, Caller};
use crate::tokens::keys::{is_id, random_id};
use crate::tokens::{ListQuery, MAX_PAGE};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token_login)).routes(routes!(list)).routes(routes!(end))
}

/// Seed 003 response flags.
pub const FL_BASIC: u64 = 0x1;
pub const FL_USER: u64 = 0x2;
pub const FL_TOKEN: u64 = 0x4;
pub const FL_ITEMS: u64 = 0x8;
pub const FL_BILLING: u64 = 0x10;
pub const FL_PROPERTIES: u64 = 0x20;
const FL_ALL: u64 = 0x3f;
/// Without `fl`: the basic section and the user.
pub const FL_DEFAULT: u64 = FL_BASIC | FL_USER;
/// Seed 003 `cls`: the id of the superclass "user".
const USER_CLASS: u64 = 1;
/// A login answers once every live proxy admits the new session, or after this long.
const START_WAIT: Duration = Duration::from_secs(2);
/// Sessions ended per sweep at most; the next sweep takes the rest.
const SWEEP_BATCH: i64 = 1000;
/// Ended and expired session rows are kept this long (for the operator's eyes), then removed.
const KEEP_ENDED_MS: i64 = 24 * 3600 * 1000;
/// Ids per `IN (...)` list.
const CHUNK: usize = 500;

/// Why a session ended (`sessions.end_reason`).
#[derive(Clone, Copy, Debug)]
pub enum EndReason {
    Logout,
    Idle,
    TokenRevoked,
    UserDeleted,
    KeyWithdrawn,
}

impl EndReason {
    fn as_str(self) -> &'static str {
        match self {
            EndReason::Logout => "logout",
            EndReason::Idle => "idle",
            EndReason::TokenRevoked => "token_revoked",
            EndReason::UserDeleted => "user_deleted",
            EndReason::KeyWithdrawn => "key_withdrawn",
        }
    }
}

#[utoipa::path(post, path = "/token/login", operation_id = "tokenLogin", tag = "sessions",
    summary = "Seed 003 token login: a session from an API token",
    description = "The token (seed 004 or 001, never a tokenForHttpServer) goes through the credential throttle like a password. `eid` is a tg-session+jwt token sent as the Bearer through the gate: it has the token's rights as they are now, never outlives it, and dies after TOKENGATE_SESSION_IDLE_SECS (300) without a request through any proxy. The answer comes once every live proxy admits the session, or after 2 s. `fl` chooses the sections: 0x1 basic (au, tm, operator), 0x2 user, 0x4 token, 0x8 items, 0x10 billing, 0x20 custom properties; absent: 0x3.",
    request_body = TokenLoginRequest,
    responses(
        (status = 200, description = "The session.", body = SessionStarted),
        BodyErrors,
        (status = 400, description = "bad_response_flags, empty_credentials, or a body error (malformed_json, unknown_field, wrong_type, missing_field).", body = ErrorBody),
        (status = 401, description = "wrong_credentials: the token is not a valid, live API token.", body = ErrorBody),
        (status = 404, description = "user_not_found: operateAs names no user under the token's user.", body = ErrorBody),
        (status = 429, description = "too_many_attempts, with Retry-After.", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
async fn token_login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: ApiJson<TokenLoginRequest>,
) -> Result<Json<Value>, ApiError> {
    let ApiJson(req) = body;
    let fl = req.fl.unwrap_or(FL_DEFAULT);
    if fl & !FL_ALL != 0 {
        return Err(ApiError::BadResponseFlags);
    }
    if req.token.is_empty() {
        return Err(ApiError::EmptyCredentials);
    }
    let source = crate::http::client::source(&headers, peer.ip(), &state.config.trusted_proxies);
    let caller = login::check_token(&state, source, &req.token, None).await?;
    let operator = users::find_by_id(&state.pool, &caller.claims.sub).await?.ok_or(ApiError::WrongCredentials)?;
    let acting = match req.operate_as.as_deref() {
        None => None,
        Some(name) => {
            // Only a user under the token's user (else 404, which reveals nothing).
            let user = users::find_by_name(&state.pool, name).await?.ok_or(ApiError::UserNotFound)?;
            if user.account_id != operator.account_id || !is_at_or_below(&state.pool, &operator.id, &user.id).await? {
                return Err(ApiError::UserNotFound);
            }
            Some(user).filter(|u| u.id != operator.id)
        }
    };
    let user = acting.as_ref().unwrap_or(&operator);
    let started = start(&state, &caller, user, acting.as_ref().map(|_| &operator)).await?;
    let counts = proxies::await_applied(&state, started.version, START_WAIT).await?;

    let mut out = Map::new();
    out.insert("eid".into(), started.token.into());
    out.insert("_id".into(), started.id.clone().into());
    out.insert("expiresAt".into(), started.expires_at.into());
    out.insert("idleSecs".into(), state.config.session_idle_secs.into());
    out.insert("proxies".into(), json!(counts));
    if fl & FL_BASIC != 0 {
        out.insert("au".into(), user.name.clone().into());
        out.insert("tm".into(), (started.created_at / 1000).into());
        if acting.is_some() {
            out.insert("operator".into(), operator.name.clone().into());
        }
    }
    if fl & (FL_USER | FL_PROPERTIES) != 0 {
        let info = directory::user_info(&state, &user.id).await?.ok_or(ApiError::UserNotFound)?;
        let Value::Object(mut u) = json!(info) else { return Err(ApiError::Internal) };
        u.insert("cls".into(), USER_CLASS.into());
        if fl & FL_USER == 0 {
            u.retain(|k, _| k == "prp");
        } else if fl & FL_PROPERTIES == 0 {
            u.remove("prp");
        }
        out.insert("user".into(), Value::Object(u));
    }
    if fl & (FL_TOKEN | FL_ITEMS) != 0 {
        // The seed's token settings, as escaped JSON: the API token as it is now.
        let t = &caller.token;
        let mut settings = Map::new();
        if fl & FL_TOKEN != 0 {
            settings.insert("app".into(), t.app.clone().into());
            settings.insert("ct".into(), caller.claims.iat.into());
            settings.insert("at".into(), (t.not_before / 1000).into());
            settings.insert("dur".into(), ((t.expires_at - t.not_before).max(0) / 1000).into());
            // No flag limit reads as the seed's unlimited.
            settings.insert("fl".into(), caller.claims.fl.unwrap_or(-1).into());
            settings.insert("p".into(), t.p.clone().into());
        }
        if fl & FL_ITEMS != 0 {
            settings.insert("items".into(), json!(caller.claims.items));
        }
        out.insert("token".into(), Value::Object(settings).to_string().into());
    }
    if fl & FL_BILLING != 0 {
        let pro = operator.plan == "pro";
        out.insert(
            "features".into(),
            json!({
                "unlim": pro,
                "svcs": {
                    "password_login": true,
                    "token_login": true,
                    "sessions": true,
                    "pin_login": pro,
                    "unsecured_login": pro && state.config.unsecured_login.is_some(),
                }
            }),
        );
    }
    tracing::info!(session = %started.id, user = %user.name, operator = %operator.name, token = %caller.claims.jti, "session started");
    Ok(Json(Value::Object(out)))
}

/// A session just made.
struct Started {
    id: String,
    token: String,
    created_at: i64,
    expires_at: i64,
    version: u64,
}

/// Signs the session and stores its row and its `session` change in one transaction,
/// under the lock every revocation takes, after reading the token's row again: a token
/// revoked meanwhile is refused, and a revocation that starts after this commits walks
/// the token and ends this session too.
async fn start(state: &AppState, caller: &Caller, user: &users::User, operator: Option<&users::User>) -> Result<Started, ApiError> {
    let now = now_ms();
    let id = random_id(12);
    let expires_at = caller.token.expires_at;
    let claims = Claims {
        iss: state.config.issuer.clone(),
        sub: user.id.clone(),
        aud: state.config.audience.clone(),
        exp: db::to_u64(expires_at) / 1000,
        nbf: db::to_u64(now) / 1000,
        iat: db::to_u64(now) / 1000,
        jti: id.clone(),
        unm: Some(user.name.clone()),
        scp: caller.claims.scp.clone(),
        fl: caller.claims.fl,
        items: caller.claims.items.clone(),
        app: caller.claims.app.clone(),
        p: caller.claims.p.clone(),
        par: Some(caller.claims.jti.clone()),
        opr: operator.map(|o| o.name.clone()),
        dev: None,
    };
    let ring = state.keys.current();
    let kid = ring.signing().kid.clone();
    let token = ring.signing().sign(TokenKind::Session, &claims).map_err(|e| {
        tracing::error!(code = e.code(), "signing a session failed");
        ApiError::Internal
    })?;
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let row: Option<(Option<i64>, i64)> =
        sqlx::query_as("SELECT revoked_at, expires_at FROM tokens WHERE id = $1").bind(&caller.claims.jti).fetch_optional(&mut *tx).await?;
    match row {
        Some((None, end)) if end > now => {}
        Some((None, _)) => return Err(Denial::InvalidToken(TokenError::Expired).into()),
        _ => return Err(Denial::InvalidToken(TokenError::Revoked).into()),
    }
    sqlx::query(
        "INSERT INTO sessions (id, account_id, user_id, operator_id, token_id, created_at, expires_at, last_used_at, kid) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $6, $8)",
    )
    .bind(&id)
    .bind(&caller.token.account_id)
    .bind(&user.id)
    .bind(&caller.token.user_id)
    .bind(&caller.claims.jti)
    .bind(now)
    .bind(expires_at)
    .bind(&kid)
    .execute(&mut *tx)
    .await?;
    // The change row is kept only as long as deltas need it; the session's end is in its own row.
    let version = db::append_change(&mut tx, "session", Some(&id), now, now).await?;
    sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1").bind(&user.id).bind(now).execute(&mut *tx).await?;
    // A token login is a use of the token (the 100-day idle sweep counts it).
    sqlx::query("UPDATE tokens SET last_used_at = $2 WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)")
        .bind(&caller.claims.jti)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let detail = json!({ "method": "token", "session": id, "actingAs": operator.map(|_| user.name.clone()) });
    let logged_in = Event::new(&caller.token.account_id, "login.ok", Some(format!("user:{}", user.id)), detail);
    audit::record(&mut tx, &Actor::of(caller), &logged_in).await?;
    tx.commit().await?;
    state.announce(version);
    state.metrics.sessions_started.inc();
    Ok(Started { id, token, created_at: now, expires_at, version })
}

/// Ends the live sessions among `ids` inside `tx` (which holds [`db::lock_sync_state`]):
/// one `end` change each. Returns how many ended and the last version. `audited`: who
/// ends them, for a `session.end` audit entry each (`None`: an entry of the cause, such as
/// a token's revocation, covers them).
async fn end_in(
    tx: &mut AnyConnection,
    ids: &[String],
    now: i64,
    reason: EndReason,
    idle_cutoff: Option<i64>,
    audited: Option<&Actor>,
) -> Result<(usize, Option<u64>), sqlx::Error> {
    let mut entries = Vec::new();
    let mut ended = 0;
    let mut version = None;
    for id in ids {
        // The idle sweep re-checks the last use, so a report that landed meanwhile wins.
        let done: Option<(String, String)> = sqlx::query_as(
            "UPDATE sessions SET ended_at = $2, end_reason = $3 WHERE id = $1 AND ended_at IS NULL AND ($4 IS NULL OR last_used_at < $4) \
             RETURNING account_id, user_id",
        )
        .bind(id)
        .bind(now)
        .bind(reason.as_str())
        .bind(idle_cutoff)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((account, user)) = done {
            version = Some(db::append_change(tx, "end", Some(id), now, now).await?);
            ended += 1;
            entries.push(Event::new(
                &account,
                "session.end",
                Some(format!("session:{id}")),
                json!({ "reason": reason.as_str(), "userId": user }),
            ));
        }
    }
    if let Some(actor) = audited {
        audit::record_all(tx, actor, &entries).await?;
    }
    Ok((ended, version))
}

/// The ids of the live sessions `column IN (keys)` matches, for each column of
/// `columns` (OR), in batches of [`CHUNK`].
async fn live_where(tx: &mut AnyConnection, columns: &[&str], keys: &[String]) -> Result<Vec<String>, sqlx::Error> {
    let mut ids = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let marks = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let any = columns.iter().map(|c| format!("{c} IN ({marks})")).collect::<Vec<_>>().join(" OR ");
        let sql = format!("SELECT id FROM sessions WHERE ended_at IS NULL AND ({any})");
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for key in chunk {
            q = q.bind(key);
        }
        ids.extend(q.fetch_all(&mut *tx).await?);
    }
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Ends every live session made from one of `token_ids` (revoked tokens) inside `tx`.
pub async fn end_for_tokens(tx: &mut AnyConnection, token_ids: &[String], now: i64) -> Result<(usize, Option<u64>), sqlx::Error> {
    let ids = live_where(tx, &["token_id"], token_ids).await?;
    end_in(tx, &ids, now, EndReason::TokenRevoked, None, None).await
}

/// Ends every live session signed by the key `kid` (withdrawn) inside `tx`.
pub async fn end_signed_by(tx: &mut AnyConnection, kid: &str, now: i64) -> Result<(usize, Option<u64>), sqlx::Error> {
    let ids = live_where(tx, &["kid"], &[kid.to_owned()]).await?;
    end_in(tx, &ids, now, EndReason::KeyWithdrawn, None, None).await
}

/// Ends every live session acting as one of `user_ids` (deleted users).
pub async fn end_for_users(state: &AppState, user_ids: &[String]) -> Result<usize, ApiError> {
    let now = now_ms();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let ids = live_where(&mut tx, &["user_id", "operator_id"], user_ids).await?;
    let (ended, version) = end_in(&mut tx, &ids, now, EndReason::UserDeleted, None, None).await?;
    tx.commit().await?;
    finish_ending(state, ended, version);
    Ok(ended)
}

fn finish_ending(state: &AppState, ended: usize, version: Option<u64>) {
    if let Some(v) = version {
        state.announce(v);
        state.metrics.sessions_ended.add(ended);
    }
}

/// Ends the sessions idle since before `now` − idle limit − grace; returns how many.
/// Public for the tests.
pub async fn sweep_idle(state: &AppState, now: i64) -> Result<usize, sqlx::Error> {
    let idle_ms = db::to_i64(state.config.session_idle_secs.saturating_mul(1000).saturating_add(state.config.session_grace_ms));
    let cutoff = now.saturating_sub(idle_ms);
    // Read first, outside a write transaction: most sweeps find nothing.
    let idle: Vec<String> =
        sqlx::query_scalar("SELECT id FROM sessions WHERE ended_at IS NULL AND last_used_at < $1 ORDER BY last_used_at LIMIT $2")
            .bind(cutoff)
            .bind(SWEEP_BATCH)
            .fetch_all(&state.pool)
            .await?;
    if idle.is_empty() {
        return Ok(0);
    }
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let (ended, version) = end_in(&mut tx, &idle, now, EndReason::Idle, Some(cutoff), Some(&Actor::system())).await?;
    tx.commit().await?;
    finish_ending(state, ended, version);
    if ended > 0 {
        tracing::info!(ended, version = ?version, "ended idle sessions");
    }
    Ok(ended)
}

/// Removes the rows of sessions ended or expired over a day ago (inside the sweeper's
/// transaction).
pub async fn prune(tx: &mut AnyConnection, now: i64) -> Result<u64, sqlx::Error> {
    let before = now.saturating_sub(KEEP_ENDED_MS);
    Ok(sqlx::query("DELETE FROM sessions WHERE ended_at < $1 OR expires_at < $1").bind(before).execute(&mut *tx).await?.rows_affected())
}

/// Every `TOKENGATE_SESSION_SWEEP_MS`: ends idle sessions. The first sweep waits out the
/// grace after start, so that use the proxies could not report while this process was
/// down arrives first.
pub async fn sweeper(state: AppState) {
    let mut shutdown = state.shutdown.subscribe();
    let first = Duration::from_millis(state.config.session_grace_ms.max(state.config.session_sweep_ms));
    let every = Duration::from_millis(state.config.session_sweep_ms);
    let mut wait = first;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        wait = every;
        if let Err(e) = sweep_idle(&state, now_ms()).await {
            tracing::warn!(error = %e, "ending idle sessions failed; will retry");
        }
    }
}

#[derive(sqlx::FromRow)]
struct ListRow {
    id: String,
    user_id: String,
    user_name: String,
    operator_id: String,
    operator_name: String,
    token_id: String,
    created_at: i64,
    last_used_at: i64,
    expires_at: i64,
}

/// `GET /sessions`: the live sessions of the caller's user and the users under it (as
/// the user they act as, or as the operator who made them), by id, in pages
/// (`?limit=&after=<_id>`, as `GET /tokens`).
#[utoipa::path(get, path = "/sessions", operation_id = "listSessions", tag = "sessions", security(("bearer" = [])),
    summary = "The live sessions of your user and the users under it",
    description = "Never their values. By id, in pages, as GET /tokens.",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 1000)."),
        ("after" = Option<String>, Query, pattern = "^[0-9a-f]{24}$", description = "The last `_id` of the previous page."),
    ),
    responses(
        (status = 200, description = "Live sessions.", body = Vec<SessionInfo>),
        Guarded,
        (status = 400, description = "bad_query (limit or after), or invalid_request.", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<SessionInfo>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadQuery(format!("bad query string: {}", e.body_text())))?;
    let (limit, mut after) = query.page()?;
    let reach: std::collections::HashSet<String> = directory::reachable_ids(&state, &caller).await?.into_iter().collect();
    let now = now_ms();
    let idle_ms = db::to_i64(state.config.session_idle_secs.saturating_mul(1000));
    let mut out = Vec::new();
    // The account's live sessions in id order, a batch at a time, keeping those the caller
    // reaches until the page is full.
    loop {
        let rows: Vec<ListRow> = sqlx::query_as(
            "SELECT s.id, s.user_id, u.name AS user_name, s.operator_id, o.name AS operator_name, s.token_id, s.created_at, \
             s.last_used_at, s.expires_at FROM sessions s JOIN users u ON u.id = s.user_id JOIN users o ON o.id = s.operator_id \
             WHERE s.account_id = $1 AND s.ended_at IS NULL AND s.expires_at > $2 AND s.id > $3 ORDER BY s.id LIMIT $4",
        )
        .bind(&caller.token.account_id)
        .bind(now)
        .bind(&after)
        .bind(MAX_PAGE)
        .fetch_all(&state.pool)
        .await?;
        let full_batch = rows.len() as i64 == MAX_PAGE;
        for r in rows {
            after.clone_from(&r.id);
            if !(reach.contains(&r.user_id) || reach.contains(&r.operator_id)) {
                continue;
            }
            out.push(SessionInfo {
                id: r.id,
                user: SessionUser { id: r.user_id, nm: r.user_name },
                operator: SessionUser { id: r.operator_id, nm: r.operator_name },
                token: r.token_id,
                created_at: r.created_at,
                last_used_at: r.last_used_at,
                expires_at: r.expires_at,
                idle_ends_at: r.last_used_at.saturating_add(idle_ms).min(r.expires_at),
            });
            if out.len() as i64 == limit {
                return Ok(Json(out));
            }
        }
        if !full_batch {
            return Ok(Json(out));
        }
    }
}

/// `DELETE /sessions/:id`: logout. With the session itself as the Bearer, or with an API
/// token (scope `DELETE /sessions/:id`) of a user at or above the session's user or its
/// operator. Ending an ended session is a 204 again.
#[utoipa::path(delete, path = "/sessions/{id}", operation_id = "endSession", tag = "sessions", security(("bearer" = [])),
    summary = "End a session (logout)",
    description = "With the session itself as the Bearer, or an API token of a user at or above the session's user or operator. Ending an ended session is a 204 again; every proxy refuses it once it has synced (milliseconds).",
    params(("id" = String, Path, pattern = "^[0-9a-f]{24}$", description = "The session's `_id` (24 hex digits).")),
    responses(
        (status = 204, description = "Ended."),
        Guarded,
        (status = 400, description = "bad_session_id, or invalid_request.", body = ErrorBody),
        (status = 404, description = "session_not_found: no such session among the caller's.", body = ErrorBody),
    ))]
async fn end(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    authorized: Result<Authorized, ApiError>,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    // Who is asking comes first: without a credential the answer is 401 whatever the id.
    let caller = match authorized {
        Ok(Authorized(caller)) => Ok(caller),
        // Not an API token: the session itself may log out.
        Err(refused) => {
            let bearer = crate::tokens::guard::bearer_of(&headers, &uri)?;
            let now = db::to_u64(now_ms()) / 1000;
            let policy = VerifyPolicy::new(&state.config.issuer, &[state.config.audience.as_str()], &[TokenKind::Session]);
            match token::verify(bearer, state.keys.current().trusted(), &policy, now) {
                Ok((_, claims)) => Err(claims.jti),
                Err(_) => return Err(refused),
            }
        }
    };
    let Ok(Path(id)) = id else { return Err(ApiError::BadSessionId) };
    if !is_id(&id) {
        return Err(ApiError::BadSessionId);
    }
    let row: Option<(String, String, String)> =
        sqlx::query_as("SELECT account_id, user_id, operator_id FROM sessions WHERE id = $1").bind(&id).fetch_optional(&state.pool).await?;
    let address = crate::http::client::source(&headers, peer.ip(), &state.config.trusted_proxies);
    // An API token's holder, or the session's own user logging out.
    let actor = match &caller {
        Ok(c) => Actor::of(c),
        Err(_) => Actor { user_id: row.as_ref().map(|(_, user, _)| user.clone()), ..Actor::anonymous(address) },
    };
    let allowed = match caller {
        Ok(caller) => match &row {
            Some((account, user, operator)) if *account == caller.token.account_id => {
                is_at_or_below(&state.pool, &caller.claims.sub, user).await?
                    || is_at_or_below(&state.pool, &caller.claims.sub, operator).await?
            }
            _ => false,
        },
        Err(session) => session == id,
    };
    if !allowed || row.is_none() {
        return Err(ApiError::SessionNotFound);
    }
    let now = now_ms();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let (ended, version) = end_in(&mut tx, std::slice::from_ref(&id), now, EndReason::Logout, None, Some(&actor)).await?;
    tx.commit().await?;
    finish_ending(&state, ended, version);
    if ended > 0 {
        tracing::info!(session = %id, "session ended (logout)");
    }
    Ok(StatusCode::NO_CONTENT)
}
