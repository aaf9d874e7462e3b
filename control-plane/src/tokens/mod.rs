//! API tokens: issuing (for credentials or from a parent token), listing and revoking
//! (this module); seed-001 management (`manage`), "why was this refused" (`explain`), the
//! scope catalogue (`scopes`), the guard of the control plane's own API (`guard`) and the
//! signing keys (`keys`).

pub mod explain;
pub mod guard;
pub mod keys;
pub mod manage;
pub mod scopes;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use sqlx::AnyConnection;
use tokengate_rules::duration::{self, parse_expires_in};
use tokengate_rules::route::{is_attenuated, Rights};
use tokengate_rules::token::{TokenError, TokenKind, MAX_LIFETIME_SECS};
use tokengate_rules::{Claims, Denial, ScopeSet};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Actor, Event};
use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded};
use crate::http::wire::{CreateTokenRequest, IssuedToken, Propagation, TokenInfo, UserName};
use crate::sync::proxies;
use crate::tokens::guard::Authorized;
use crate::tokens::keys::random_id;
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(revoke))
}

/// What a new token is: who, what it may do, how long.
pub struct NewToken {
    /// Its id (`jti`): [`random_id`]`(12)`.
    pub id: String,
    /// `Api`, or `HttpServer` for a login's `tokenForHttpServer`.
    pub kind: TokenKind,
    pub account_id: String,
    pub user_id: String,
    pub user_name: String,
    pub parent_id: Option<String>,
    pub name: Option<String>,
    /// `None`: all the user's powers.
    pub scopes: Option<ScopeSet>,
    pub fl: Option<i64>,
    pub items: Option<Vec<i64>>,
    pub app: Option<String>,
    pub p: Option<String>,
    pub issued_at_ms: i64,
    /// Activation (JWT `nbf`, seed 001 `at`); usually `issued_at_ms`.
    pub not_before_ms: i64,
    pub expires_at_ms: i64,
    /// Seed 001 `dur` (s) when the token was made through `POST /tokens/update`.
    pub dur: Option<i64>,
    /// `Some("user")`: the token acts in the user role whatever its user's role is (a
    /// seed-002 login in the user role, and every token issued from such a token).
    pub role: Option<String>,
}

/// The `tokens.kind` of a token kind the control plane issues.
fn kind_column(kind: TokenKind) -> Option<&'static str> {
    match kind {
        TokenKind::Api => Some("api"),
        TokenKind::HttpServer => Some("http"),
        TokenKind::Session | TokenKind::VoucherAccess => None,
    }
}

/// Signs the token and stores its row; the row is committed before the value is
/// returned, so an answered token always exists (and can be revoked).
///
/// A child (`parent_id` set) is inserted in one write transaction that first takes the
/// lock every revocation and amendment takes ([`db::lock_sync_state`]; on SQLite the
/// transaction's `BEGIN IMMEDIATE` already serializes writers) and then re-reads the
/// parent's row: a revoked parent is 401 `token_revoked`, an expired one
/// `token_expired`, and the child must be within the parent's rights as they are now
/// (`rules::route::is_attenuated`), else 403 `rights_exceed_caller` (or 400
/// `lifetime_exceeds_parent`). So a cascade revocation's walk and an issuance never
/// interleave: either the child is committed before the walk starts (and the walk
/// revokes it) or the issuance sees the revoked parent. The caller's guard read the
/// parent outside any transaction; that read only gives the early refusal.
///
/// Each token is a `token.issue` entry of the audit log by `actor`, with `extra` entries
/// (a login's `login.ok`), in the same transaction.
pub async fn issue(state: &AppState, new: NewToken, actor: &Actor, extra: &[Event]) -> Result<IssuedToken, ApiError> {
    let mut issued = issue_all(state, vec![new], actor, extra).await?;
    issued.pop().ok_or(ApiError::Internal)
}

/// Like [`issue`], for several tokens stored in one transaction (a login's `token` and its
/// child `tokenForHttpServer`): all are committed, or none. A token's parent may be an
/// earlier one of the batch.
pub async fn issue_all(state: &AppState, news: Vec<NewToken>, actor: &Actor, extra: &[Event]) -> Result<Vec<IssuedToken>, ApiError> {
    let ring = state.keys.current();
    let kid = ring.signing().kid.clone();
    let mut signed = Vec::with_capacity(news.len());
    for new in &news {
        let claims = Claims {
            iss: state.config.issuer.clone(),
            sub: new.user_id.clone(),
            aud: state.config.audience.clone(),
            exp: db::to_u64(new.expires_at_ms) / 1000,
            nbf: db::to_u64(new.not_before_ms) / 1000,
            iat: db::to_u64(new.issued_at_ms) / 1000,
            jti: new.id.clone(),
            unm: Some(new.user_name.clone()),
            scp: new.scopes.as_ref().map(ScopeSet::to_strings),
            fl: new.fl,
            items: new.items.clone(),
            app: new.app.clone(),
            p: new.p.clone(),
            par: new.parent_id.clone(),
            opr: None,
            dev: None,
        };
        signed.push(ring.signing().sign(new.kind, &claims).map_err(|e| {
            tracing::error!(code = e.code(), "signing a token failed");
            ApiError::Internal
        })?);
    }
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    if news.iter().any(|n| n.parent_id.is_some()) {
        db::lock_sync_state(&mut tx).await?;
    }
    for new in &news {
        if let Some(parent) = new.parent_id.as_deref() {
            check_parent_now(state, &mut tx, parent, new).await?;
        }
        insert_row(&mut tx, new, &kid).await?;
    }
    audit::record_all(&mut tx, actor, extra).await?;
    for new in &news {
        audit::record(&mut tx, actor, &issue_event(new)).await?;
    }
    tx.commit().await?;
    let mut out = Vec::with_capacity(news.len());
    for (new, token) in news.into_iter().zip(signed) {
        state.metrics.tokens_issued.inc();
        tracing::info!(token = %new.id, kind = ?new.kind, user = %new.user_id, parent = ?new.parent_id, "issued a token");
        out.push(IssuedToken {
            id: new.id,
            issued_at: new.issued_at_ms,
            expires_at: new.expires_at_ms,
            user: UserName { name: new.user_name },
            token,
            name: new.name,
            scopes: new.scopes.as_ref().map(ScopeSet::to_strings),
        });
    }
    Ok(out)
}

/// The audit entry of an issuance: what the token holds, never its value.
fn issue_event(new: &NewToken) -> Event {
    let detail = json!({
        "name": new.name,
        "kind": kind_column(new.kind),
        "scopes": new.scopes.as_ref().map(ScopeSet::to_strings),
        "fl": new.fl,
        "items": new.items,
        "app": new.app,
        "user": new.user_name,
        "userId": new.user_id,
        "parent": new.parent_id,
        "expiresAt": new.expires_at_ms,
    });
    Event::new(&new.account_id, "token.issue", Some(format!("token:{}", new.id)), detail)
}

async fn insert_row(conn: &mut AnyConnection, new: &NewToken, kid: &str) -> Result<(), ApiError> {
    let Some(kind) = kind_column(new.kind) else {
        tracing::error!(kind = ?new.kind, "the control plane stores no token of this kind");
        return Err(ApiError::Internal);
    };
    let scopes_json = new.scopes.as_ref().map(|s| serde_json::Value::from(s.to_strings()).to_string());
    let items_json = new.items.as_ref().map(|i| serde_json::Value::from(i.clone()).to_string());
    sqlx::query(
        "INSERT INTO tokens (id, account_id, user_id, parent_id, name, scopes, fl, items, app, p, issued_at, not_before, \
         expires_at, signed_expires_at, dur, kid, kind, role) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15, $16, $17)",
    )
    .bind(&new.id)
    .bind(&new.account_id)
    .bind(&new.user_id)
    .bind(&new.parent_id)
    .bind(&new.name)
    .bind(scopes_json)
    .bind(new.fl)
    .bind(items_json)
    .bind(&new.app)
    .bind(&new.p)
    .bind(new.issued_at_ms)
    .bind(new.not_before_ms)
    .bind(new.expires_at_ms)
    .bind(new.dur)
    .bind(kid)
    .bind(kind)
    .bind(&new.role)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The rights and end of a token as its row holds them now (amendments included).
#[derive(sqlx::FromRow)]
pub struct RightsRow {
    pub id: String,
    pub scopes: Option<String>,
    pub fl: Option<i64>,
    pub items: Option<String>,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl RightsRow {
    pub const COLUMNS: &'static str = "id, scopes, fl, items, expires_at, revoked_at";

    pub fn rights(&self, state: &AppState) -> Result<Rights, ApiError> {
        let scopes = match self.scopes.as_deref() {
            None => None,
            Some(text) => Some(ScopeSet::parse(&parse_scopes(&self.id, text)?, &state.prefix).map_err(|_| {
                tracing::error!(token = %self.id, "stored scopes do not parse");
                ApiError::Internal
            })?),
        };
        let items = self.items.as_deref().map(|t| parse_items(&self.id, t)).transpose()?;
        Ok(Rights::new(scopes, self.fl, items.as_deref()))
    }
}

/// Inside the issuing transaction, after the lock: the parent is live and the child is
/// within what it holds now.
async fn check_parent_now(state: &AppState, tx: &mut AnyConnection, parent: &str, new: &NewToken) -> Result<(), ApiError> {
    let sql = format!("SELECT {} FROM tokens WHERE id = $1", RightsRow::COLUMNS);
    let row: Option<RightsRow> = sqlx::query_as(&sql).bind(parent).fetch_optional(&mut *tx).await?;
    let Some(row) = row.filter(|r| r.revoked_at.is_none()) else {
        tracing::info!(parent = %parent, "refused a child of a revoked token");
        return Err(Denial::InvalidToken(TokenError::Revoked).into());
    };
    if row.expires_at <= now_ms() {
        return Err(Denial::InvalidToken(TokenError::Expired).into());
    }
    let child = Rights::new(new.scopes.clone(), new.fl, new.items.as_deref());
    let child_exp = db::to_u64(new.expires_at_ms) / 1000;
    match exceeding(&child, child_exp, &row.rights(state)?, db::to_u64(row.expires_at) / 1000) {
        None => Ok(()),
        Some("lifetime") => Err(ApiError::LifetimeExceedsParent),
        Some(what) => Err(ApiError::RightsExceedCaller(what)),
    }
}

/// The first dimension in which `child` is not within `parent`
/// (`rules::route::is_attenuated`): `"scopes"`, `"flags"`, `"items"` or `"lifetime"`;
/// `None` when it is within.
pub fn exceeding(child: &Rights, child_exp: u64, parent: &Rights, parent_exp: u64) -> Option<&'static str> {
    if is_attenuated(child, child_exp, parent, parent_exp) {
        return None;
    }
    let only = |r: Rights| is_attenuated(&r, 0, parent, parent_exp);
    Some(if !only(Rights { scopes: child.scopes.clone(), ..parent.clone() }) {
        "scopes"
    } else if !only(Rights { flags: child.flags, ..parent.clone() }) {
        "flags"
    } else if !only(Rights { items: child.items.clone(), ..parent.clone() }) {
        "items"
    } else {
        "lifetime"
    })
}

/// `expiresIn` in seconds: 400 `bad_expires_in` listing the accepted forms.
pub fn lifetime_secs(expires_in: Option<&str>) -> Result<Option<u64>, ApiError> {
    expires_in.map(|s| parse_expires_in(s, MAX_LIFETIME_SECS).map_err(ApiError::BadExpiresIn)).transpose()
}

/// The default lifetime, in ms.
pub const DEFAULT_LIFETIME_MS: i64 = duration::DEFAULT_SECS as i64 * 1000;

/// A token name is optional, at most 200 characters, no control characters.
pub fn check_name(name: Option<&str>) -> Result<(), ApiError> {
    match name {
        Some(n) if n.chars().count() > 200 || n.chars().any(char::is_control) => Err(ApiError::BadName),
        _ => Ok(()),
    }
}

pub fn secs_to_ms(secs: u64) -> i64 {
    db::to_i64(secs.saturating_mul(1000))
}

/// Issue a child of the caller's token, never more powerful than it.
///
/// Every asked scope must be within one of the parent's scopes (a parent without scopes
/// has all its user's powers); without `scopes` the child has the parent's. The child
/// expires no later than the parent: an explicit `expiresIn` that would outlive it is
/// refused, the 1-day default is cut to it. The child keeps the parent's `fl`, `items`,
/// `app` and `p`, and records the parent as `par`. A parent revoked while this request was
/// in flight is 401 `token_revoked`: no child outlives a cascade revocation.
#[utoipa::path(post, path = "/tokens", operation_id = "createToken", tag = "tokens", security(("bearer" = [])),
    request_body = CreateTokenRequest,
    responses(
        (status = 200, description = "The token. Its value is never shown again.", body = IssuedToken),
        Guarded, BodyErrors,
        (status = 400, description = "bad_expires_in, bad_scope, unknown_scope, bad_name, lifetime_exceeds_parent, invalid_request, or a body error (malformed_json, unknown_field, wrong_type, missing_field).", body = ErrorBody),
        (status = 403, description = "insufficient_scope, insufficient_flags, scope_exceeds_parent (an asked scope is wider than the caller's), or rights_exceed_caller (the caller's token was narrowed while this request was in flight).", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    ApiJson(req): ApiJson<CreateTokenRequest>,
) -> Result<Json<IssuedToken>, ApiError> {
    check_name(req.name.as_deref())?;
    let lifetime = lifetime_secs(req.expires_in.as_deref())?;
    let parent = &caller.rights;
    let scopes = match &req.scopes {
        // Nothing asked: the parent's own scopes.
        None => parent.scopes.clone(),
        Some(asked) => {
            let set = state.catalogue.parse_request(asked, &state.prefix)?;
            if let Some(held) = &parent.scopes {
                if let Some(wider) = set.patterns().iter().find(|p| !held.patterns().iter().any(|q| p.is_within(q))) {
                    return Err(ApiError::ScopeExceedsParent(wider.to_string()));
                }
            }
            Some(set)
        }
    };
    let now = now_ms();
    let parent_expires = caller.token.expires_at;
    let expires_at_ms = match lifetime {
        Some(secs) => {
            let at = now.saturating_add(secs_to_ms(secs));
            if at > parent_expires {
                return Err(ApiError::LifetimeExceedsParent);
            }
            at
        }
        None => now.saturating_add(DEFAULT_LIFETIME_MS).min(parent_expires),
    };
    // The rule set's own verdict over everything the child holds; the checks above only
    // give the precise refusal.
    let child = Rights::new(scopes.clone(), parent.flags, parent.items.as_deref());
    if !is_attenuated(&child, db::to_u64(expires_at_ms) / 1000, parent, db::to_u64(parent_expires) / 1000) {
        tracing::error!(parent = %caller.claims.jti, "a child token failed the attenuation check");
        return Err(ApiError::Internal);
    }
    let issued = issue(
        &state,
        NewToken {
            id: random_id(12),
            kind: TokenKind::Api,
            role: caller.token.role.clone(),
            account_id: caller.token.account_id.clone(),
            user_id: caller.claims.sub.clone(),
            user_name: caller.claims.unm.clone().unwrap_or_default(),
            parent_id: Some(caller.claims.jti.clone()),
            name: req.name,
            scopes,
            fl: parent.flags,
            items: parent.items.clone(),
            app: caller.token.app.clone(),
            p: caller.token.p.clone(),
            issued_at_ms: now,
            not_before_ms: now,
            expires_at_ms,
            dur: None,
        },
        &Actor::of(&caller),
        &[],
    )
    .await?;
    Ok(Json(issued))
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    after: Option<String>,
}

impl ListQuery {
    /// `?limit=` (1 to [`MAX_PAGE`], default [`MAX_PAGE`]) and `?after=<_id>` (24 hex
    /// digits; default: from the start), or 400 `bad_query` naming the parameter.
    pub fn page(self) -> Result<(i64, String), ApiError> {
        let limit = match self.limit.as_deref() {
            None => MAX_PAGE,
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_PAGE).contains(n))
                .ok_or_else(|| ApiError::BadQuery(format!("limit must be a whole number from 1 to {MAX_PAGE}")))?,
        };
        let after = match self.after {
            None => String::new(),
            Some(id) if is_token_id(&id) => id,
            Some(_) => return Err(ApiError::BadQuery("after must be an _id (24 lower-case hexadecimal digits)".into())),
        };
        Ok((limit, after))
    }
}

pub const MAX_PAGE: i64 = 1000;

#[derive(sqlx::FromRow)]
struct ListedRow {
    id: String,
    name: Option<String>,
    issued_at: i64,
    expires_at: i64,
    scopes: Option<String>,
    parent_id: Option<String>,
    app: Option<String>,
    fl: Option<i64>,
    items: Option<String>,
    not_before: i64,
    dur: Option<i64>,
    last_used_at: Option<i64>,
}

/// List the live tokens of the caller's account, by `_id`; never a token value (a login's
/// `tokenForHttpServer` is not listed; it goes with its login token).
#[utoipa::path(get, path = "/tokens", operation_id = "listTokens", tag = "tokens", security(("bearer" = [])),
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 1000)."),
        ("after" = Option<String>, Query, pattern = "^[0-9a-f]{24}$", description = "Return tokens whose `_id` sorts after this one (paging)."),
    ),
    responses(
        (status = 200, description = "Live (not revoked, not expired) tokens.", body = Vec<TokenInfo>),
        Guarded,
        (status = 400, description = "bad_query (limit or after), or invalid_request.", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadQuery(format!("bad query string: {}", e.body_text())))?;
    let (limit, after) = query.page()?;
    let rows: Vec<ListedRow> = sqlx::query_as(
        "SELECT id, name, issued_at, expires_at, scopes, parent_id, app, fl, items, not_before, dur, last_used_at FROM tokens \
         WHERE account_id = $1 AND kind = 'api' AND revoked_at IS NULL AND expires_at > $2 AND id > $3 \
         ORDER BY id LIMIT $4",
    )
    .bind(&caller.token.account_id)
    .bind(now_ms())
    .bind(&after)
    .bind(limit)
    .fetch_all(&state.pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let scopes = row.scopes.as_deref().map(|text| parse_scopes(&row.id, text)).transpose()?;
        let items = row.items.as_deref().map(|text| parse_items(&row.id, text)).transpose()?;
        // Tokens not made through seed 001 have no `dur` of their own: their lifetime.
        let dur = row.dur.unwrap_or_else(|| (row.expires_at - row.not_before).div_euclid(1000));
        out.push(TokenInfo {
            id: row.id,
            name: row.name,
            issued_at: row.issued_at,
            expires_at: row.expires_at,
            scopes,
            parent: row.parent_id,
            app: row.app,
            fl: row.fl,
            items,
            at: row.not_before.div_euclid(1000),
            dur,
            last_used_at: row.last_used_at,
        });
    }
    Ok(Json(out))
}

/// Stored scopes (a JSON array of strings); a broken row is a 500, logged.
pub fn parse_scopes(id: &str, text: &str) -> Result<Vec<String>, ApiError> {
    serde_json::from_str(text).map_err(|_| {
        tracing::error!(token = %id, "stored scopes are not a JSON array of strings");
        ApiError::Internal
    })
}

/// Stored items (a JSON array of integers); a broken row is a 500, logged.
pub fn parse_items(id: &str, text: &str) -> Result<Vec<i64>, ApiError> {
    serde_json::from_str(text).map_err(|_| {
        tracing::error!(token = %id, "stored items are not a JSON array of integers");
        ApiError::Internal
    })
}

/// A token id (`jti`): 24 lower-case hex digits.
pub fn is_token_id(s: &str) -> bool {
    keys::is_id(s)
}

/// Revoke a token and all its descendants.
///
/// One change-log entry each, in one transaction. Answers 204 once the revocations are
/// committed; proxies refuse the tokens within the
/// sync bound. Revoking a revoked token answers 204 again. With `wait` (ms, at most 10000)
/// the answer waits, after the commit, until every live proxy has applied the
/// revocation's version or the time is up, and answers 200 with the propagation.
#[utoipa::path(delete, path = "/tokens/{id}", operation_id = "revokeToken", tag = "tokens", security(("bearer" = [])),
    params(
        ("id" = String, Path, pattern = "^[0-9a-f]{24}$", description = "The token's `_id` (24 hexadecimal digits)."),
        ("wait" = Option<u64>, Query, minimum = 0, maximum = 10000, description = "Wait up to this many ms for the live proxies to apply the revocation."),
    ),
    responses(
        (status = 204, description = "Revoked (no `wait`)."),
        (status = 200, description = "Revoked, with `wait`: the propagation when the answer was given (\"enforced at applied/live proxies\").", body = Propagation),
        Guarded,
        (status = 400, description = "bad_token_id, bad_query (wait), or invalid_request.", body = ErrorBody),
        (status = 404, description = "token_not_found: no such token in the caller's account.", body = ErrorBody),
    ))]
async fn revoke(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    id: Result<Path<String>, PathRejection>,
    query: Result<Query<RevokeQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path(id)) = id else { return Err(ApiError::BadTokenId) };
    let Query(query) = query.map_err(|e| ApiError::BadQuery(format!("bad query string: {}", e.body_text())))?;
    let wait = match query.wait.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .ok()
                .filter(|n| s.bytes().all(|b| b.is_ascii_digit()) && *n <= proxies::MAX_WAIT_MS)
                .ok_or_else(|| ApiError::BadQuery(format!("wait must be a whole number of ms from 0 to {}", proxies::MAX_WAIT_MS)))?,
        ),
    };
    if !is_token_id(&id) {
        return Err(ApiError::BadTokenId);
    }
    let account: Option<String> =
        sqlx::query_scalar("SELECT account_id FROM tokens WHERE id = $1").bind(&id).fetch_optional(&state.pool).await?;
    if account.as_deref() != Some(caller.token.account_id.as_str()) {
        return Err(ApiError::TokenNotFound);
    }

    let event = Event::new(&caller.token.account_id, "token.revoke", Some(format!("token:{id}")), json!({}));
    let revoked = revoke_trees(&state, Roots::Token(&id), Some((&Actor::of(&caller), event))).await?;
    let Some(wait) = wait else { return Ok(StatusCode::NO_CONTENT.into_response()) };
    // Already revoked: the current version carries it (it is at least as new).
    let version = match revoked.version {
        Some(v) => v,
        None => db::sync_state(&state.pool).await?.0,
    };
    let counts = proxies::await_applied(&state, version, std::time::Duration::from_millis(wait)).await?;
    Ok(Json(Propagation { version, proxies: counts }).into_response())
}

#[derive(Deserialize)]
struct RevokeQuery {
    wait: Option<String>,
}

/// Whose tokens [`revoke_trees`] revokes.
#[derive(Clone, Copy, Debug)]
pub enum Roots<'a> {
    /// One token (and its descendants).
    Token(&'a str),
    /// Every live token of a user (and their descendants).
    User(&'a str),
}

/// What a revocation did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Tokens revoked now (already revoked ones are not counted again).
    pub count: usize,
    /// The change-log version of the last revocation, when there was one.
    pub version: Option<u64>,
}

/// Revokes the `roots` and all their descendants, one change-log entry each, in one
/// transaction committed before it returns; wakes held sync calls. `audited`: the audit
/// entry of the revocation, written in that transaction with `revoked` (the count) added
/// to its detail (`None`: the caller's own entry covers it, as a user's deletion).
pub async fn revoke_trees(state: &AppState, roots: Roots<'_>, audited: Option<(&Actor, Event)>) -> Result<Revoked, ApiError> {
    let now = now_ms();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let root_ids: Vec<String> = match roots {
        // The tree's first read finds the token itself (and nothing, for an unknown id).
        Roots::Token(id) => vec![id.to_owned()],
        Roots::User(user) => {
            sqlx::query_scalar("SELECT id FROM tokens WHERE user_id = $1 AND revoked_at IS NULL").bind(user).fetch_all(&mut *tx).await?
        }
    };
    let revoked = revoke_in(&mut tx, root_ids, now).await?;
    if let Some((actor, mut event)) = audited {
        if let Some(detail) = event.detail.as_object_mut() {
            detail.insert("revoked".into(), revoked.count.into());
        }
        audit::record(&mut tx, actor, &event).await?;
    }
    tx.commit().await?;
    if let Some(version) = revoked.version {
        state.announce(version);
        state.metrics.revocations.add(revoked.count);
        tracing::info!(roots = ?roots, revoked = revoked.count, version, "revoked tokens and their descendants");
    }
    Ok(revoked)
}

/// Tokens per `UPDATE ... IN (...)` of [`revoke_in`].
const TREE_CHUNK: usize = 500;

/// Revokes `roots` and all their descendants inside `tx`, which holds
/// [`db::lock_sync_state`]: one change-log entry each, carrying the signed expiry. The
/// caller commits, then announces the version and counts the revocations.
pub async fn revoke_in(tx: &mut AnyConnection, roots: Vec<String>, now: i64) -> Result<Revoked, sqlx::Error> {
    let tree = db::live_tree(tx, roots).await?;
    // The tree was read under the lock every revoker takes, so all of it is still live;
    // RETURNING says so rather than assuming it.
    let mut done = std::collections::HashSet::new();
    for chunk in tree.chunks(TREE_CHUNK) {
        let marks = (2..chunk.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("UPDATE tokens SET revoked_at = $1 WHERE revoked_at IS NULL AND id IN ({marks}) RETURNING id");
        let mut update = sqlx::query_scalar::<_, String>(&sql).bind(now);
        for (id, _) in chunk {
            update = update.bind(id);
        }
        done.extend(update.fetch_all(&mut *tx).await?);
    }
    let entries: Vec<(Option<&str>, i64)> =
        tree.iter().filter(|(id, _)| done.contains(id)).map(|(id, expires_at)| (Some(id.as_str()), *expires_at)).collect();
    let mut revoked = Revoked { count: entries.len(), version: db::append_changes(tx, "revoke", &entries, now).await? };
    // Their sessions end with them (the proxies refuse them already by `par`; this takes
    // them out of the live set too).
    let ids: Vec<String> = tree.into_iter().map(|(id, _)| id).collect();
    let (_, ended) = crate::sessions::end_for_tokens(tx, &ids, now).await?;
    revoked.version = revoked.version.max(ended);
    Ok(revoked)
}
