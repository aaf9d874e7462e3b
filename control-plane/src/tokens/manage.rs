//! `POST /tokens/update`: seed 001 token management. `create` issues a token with the
//! seed's properties (`app`, `at`, `dur`, `fl`, `p`, `items`); `update` amends a live
//! token without changing the string its client holds; `delete` revokes one token or,
//! with `deleteAll`, every token of the user.
//!
//! An update is stored in the token's row and appended to the change log as an `amend`
//! entry in the same transaction, so proxies get the token's whole amendable state
//! (`rules::sync::Amendment`) within the same bound as a revocation, and this control
//! plane's own guard applies it too.
//!
//! The caller must be allowed to manage tokens (the route needs `fl` -1 or no `fl`), and
//! never gives more than it holds: created and updated rights are checked with
//! `rules::route::is_attenuated` against the caller's. An amended token also stays
//! within its parent (the token it was issued from) as the parent is now: more flags or
//! items than the parent holds are 403 `rights_exceed_parent`, and its end is cut to the
//! parent's.
//!
//! `app`, `fl`, `p` and `items` tell absent from `null`: absent keeps the stored value
//! (on create: the caller's `fl` and `items`, no `app`, no `p`), `null` clears it (no
//! app, no flag limit, no params, all items). Clearing `fl` or `items` widens, so it is
//! checked like any other value.
//!
//! A child never holds more than its parent holds now. An update that narrows a token
//! (fewer flags or items, an earlier end) walks its descendants in the same transaction:
//! each one no longer within its (possibly just narrowed) parent, by
//! `rules::route::is_attenuated`, is amended to the intersection (flags `child &
//! parent`, the common items, the earlier end), with an `amend` change-log entry; one
//! that could then never be active (its activation at or after the new end) is revoked
//! with its descendants, a `revoke` entry each. Descendants within their parent are
//! left as they are. Every entry carries the token's signed expiry.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::collections::HashMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use serde_json::json;
use sqlx::{AnyConnection, FromRow};
use tokengate_rules::route::{is_attenuated, valid_flags, Rights, FLAG_UNLIMITED};
use tokengate_rules::token::MAX_LIFETIME_SECS;
use tokengate_rules::{ScopeSet, TokenKind};

use crate::audit::{self, Actor, Event};
use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, ManageAnswer};
use crate::http::wire::{ManageDeleted, ManageRequest, ManagedToken, Patch};
use crate::tokens::guard::{Authorized, Caller};
use crate::tokens::keys::random_id;
use crate::tokens::{self, exceeding, is_token_id, parse_items, parse_scopes, revoke_trees, NewToken, RightsRow, Roots};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(manage))
}

#[utoipa::path(post, path = "/tokens/update", operation_id = "manageTokens", tag = "tokens", security(("bearer" = [])),
    summary = "Seed 001 token management: create, update (amend) or delete tokens",
    description = "callMode `create` issues a token for the caller's user or a child user (`userId`) with `app`, `at` (activation, s; 0 = now), `dur` (s after activation; 0 = no end of its own), `fl`, `p` and `items`, and answers the seed's result plus `token`, shown once. callMode `update` amends `app`, `at`, `dur`, `fl`, `p` and `items` of a live token `h` without changing its string: proxies apply the change over the signed claims within the propagation bound; an update that narrows a token narrows its descendants in the same transaction. Absent fields stay; `null` clears. callMode `delete` revokes `h` and its descendants, or with `deleteAll` every token of the user. Created and updated rights never exceed the caller's.",
    request_body = ManageRequest,
    responses(
        (status = 200, description = "create and update: the token in seed 001 shape (`token` only after create); delete: how many tokens were revoked.", body = ManageAnswer),
        Guarded, BodyErrors,
        (status = 400, description = "bad_call_mode, bad_flags, bad_items, bad_params, bad_app, bad_at, bad_dur, bad_delete_all, bad_token_id, missing_field (h), lifetime_exceeds_parent, invalid_request, or a body error.", body = ErrorBody),
        (status = 403, description = "insufficient_scope, insufficient_flags, user_not_accessible, rights_exceed_caller, or rights_exceed_parent.", body = ErrorBody),
        (status = 404, description = "token_not_found: `h` is not a token of that user.", body = ErrorBody),
        (status = 409, description = "token_not_live: the token to update is revoked or expired.", body = ErrorBody),
    ))]
async fn manage(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    ApiJson(req): ApiJson<ManageRequest>,
) -> Result<Response, ApiError> {
    let mode = req.call_mode.as_str();
    if !matches!(mode, "create" | "update" | "delete") {
        return Err(ApiError::BadCallMode);
    }
    let values = Values::check(&req)?;
    let user = target_user(&state, &caller, req.user_id.as_deref()).await?;
    match mode {
        "create" => Ok(Json(create(&state, &caller, &user, values).await?).into_response()),
        "update" => {
            let h = token_handle(req.h.as_deref())?;
            Ok(Json(update(&state, &caller, &user, h, values).await?).into_response())
        }
        _ => {
            let actor = Actor::of(&caller);
            let account = caller.token.account_id.as_str();
            let revoked = if delete_all(req.delete_all.as_ref())? {
                let event = Event::new(account, "token.revoke_all", Some(format!("user:{}", user.id)), json!({ "user": user.name }));
                revoke_trees(&state, Roots::User(&user.id), Some((&actor, event))).await?
            } else {
                let h = token_handle(req.h.as_deref())?;
                owned_row(&state.pool, &user, h).await?;
                let event = Event::new(account, "token.revoke", Some(format!("token:{h}")), json!({}));
                revoke_trees(&state, Roots::Token(h), Some((&actor, event))).await?
            };
            Ok(Json(ManageDeleted { deleted: revoked.count, version: revoked.version }).into_response())
        }
    }
}

/// The validated properties of a request; `None` = not given, `Some(None)` = `null`.
struct Values {
    app: Patch<String>,
    at: Option<u64>,
    dur: Option<u64>,
    fl: Patch<i64>,
    /// Compact JSON text.
    p: Patch<String>,
    /// Sorted, without repeats.
    items: Patch<Vec<i64>>,
}

impl Values {
    fn check(req: &ManageRequest) -> Result<Values, ApiError> {
        if let Some(Some(app)) = &req.app {
            if app.chars().count() > crate::limits::MAX_APP_CHARS || app.chars().any(char::is_control) {
                return Err(ApiError::BadApp);
            }
        }
        if let Some(Some(fl)) = req.fl {
            if !valid_flags(fl) {
                return Err(ApiError::BadFlags);
            }
        }
        let items = match &req.items {
            Some(Some(list)) if list.len() > crate::limits::MAX_ITEMS => return Err(ApiError::BadItems),
            Some(Some(list)) => {
                let mut v = list.clone();
                v.sort_unstable();
                v.dedup();
                Some(Some(v))
            }
            Some(None) => Some(None),
            None => None,
        };
        let p = match &req.p {
            Some(Some(value)) => Some(Some(params(value)?)),
            Some(None) => Some(None),
            None => None,
        };
        let now = db::to_u64(now_ms()) / 1000;
        if let Some(at) = req.at {
            if at > now.saturating_add(MAX_LIFETIME_SECS) {
                return Err(ApiError::BadAt(
                    "at is the activation time in seconds since the epoch (0 = now), at most ten years ahead".into(),
                ));
            }
        }
        if req.dur.is_some_and(|d| d > MAX_LIFETIME_SECS) {
            return Err(ApiError::BadDur(format!("dur is at most {MAX_LIFETIME_SECS} seconds (0 = no end)")));
        }
        Ok(Values { app: req.app.clone(), at: req.at, dur: req.dur, fl: req.fl, p, items })
    }
}

/// The value after a [`Patch`]: absent keeps `stored`, `null` clears, a value replaces.
fn patched<T>(patch: Patch<T>, stored: Option<T>) -> Option<T> {
    match patch {
        None => stored,
        Some(value) => value,
    }
}

/// `p`: a JSON object or an array of objects, given as JSON or as escaped JSON text;
/// returned as compact JSON text.
fn params(value: &serde_json::Value) -> Result<String, ApiError> {
    let parsed;
    let value = match value {
        serde_json::Value::String(text) => {
            parsed = serde_json::from_str::<serde_json::Value>(text).map_err(|_| ApiError::BadParams)?;
            &parsed
        }
        other => other,
    };
    let ok = match value {
        serde_json::Value::Object(_) => true,
        serde_json::Value::Array(list) => list.iter().all(serde_json::Value::is_object),
        _ => false,
    };
    let text = value.to_string();
    if !ok || text.len() > crate::limits::MAX_PARAMS_BYTES {
        return Err(ApiError::BadParams);
    }
    Ok(text)
}

/// `deleteAll`: `true`, `1` or `"true"` (and their negatives) as the seed's clients send it.
fn delete_all(value: Option<&serde_json::Value>) -> Result<bool, ApiError> {
    use serde_json::Value as V;
    match value {
        None | Some(V::Null) => Ok(false),
        Some(V::Bool(b)) => Ok(*b),
        Some(V::Number(n)) if n.as_u64() == Some(1) => Ok(true),
        Some(V::Number(n)) if n.as_u64() == Some(0) => Ok(false),
        Some(V::String(s)) if s == "true" || s == "1" => Ok(true),
        Some(V::String(s)) if s == "false" || s == "0" => Ok(false),
        Some(_) => Err(ApiError::BadDeleteAll),
    }
}

fn token_handle(h: Option<&str>) -> Result<&str, ApiError> {
    match h {
        None => Err(ApiError::MissingField("missing field `h` (the token's _id)".into())),
        Some(h) if !is_token_id(h) => Err(ApiError::BadTokenId),
        Some(h) => Ok(h),
    }
}

/// The user whose tokens are managed.
#[derive(FromRow)]
struct TargetUser {
    id: String,
    name: String,
}

/// `userId` must be the caller's own user or a user under it (in the caller's account,
/// not deleted); anything else, an unknown id included, is 403 `user_not_accessible`.
async fn target_user(state: &AppState, caller: &Caller, user_id: Option<&str>) -> Result<TargetUser, ApiError> {
    let id = user_id.unwrap_or(&caller.claims.sub);
    if !crate::identity::directory::is_at_or_below(&state.pool, &caller.claims.sub, id).await? {
        return Err(ApiError::UserNotAccessible);
    }
    let user: Option<TargetUser> = sqlx::query_as("SELECT id, name FROM users WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL")
        .bind(id)
        .bind(&caller.token.account_id)
        .fetch_optional(&state.pool)
        .await?;
    user.ok_or(ApiError::UserNotAccessible)
}

#[derive(FromRow)]
struct Row {
    id: String,
    parent_id: Option<String>,
    scopes: Option<String>,
    fl: Option<i64>,
    items: Option<String>,
    app: Option<String>,
    p: Option<String>,
    issued_at: i64,
    not_before: i64,
    expires_at: i64,
    signed_expires_at: Option<i64>,
    dur: Option<i64>,
    revoked_at: Option<i64>,
}

/// The token `h` of `user`, revoked or not: 404 `token_not_found` when it is not theirs.
async fn owned_row<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, user: &TargetUser, h: &str) -> Result<Row, ApiError> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, parent_id, scopes, fl, items, app, p, issued_at, not_before, expires_at, signed_expires_at, dur, revoked_at \
         FROM tokens WHERE id = $1 AND user_id = $2",
    )
    .bind(h)
    .bind(&user.id)
    .fetch_optional(db)
    .await?;
    row.ok_or(ApiError::TokenNotFound)
}

/// The caller's rights must cover `child` (and, when `child_exp` is given, its end).
fn check_attenuated(caller: &Caller, child: &Rights, child_exp_ms: Option<i64>) -> Result<(), ApiError> {
    let parent_exp = db::to_u64(caller.token.expires_at) / 1000;
    let child_exp = child_exp_ms.map_or(0, |ms| db::to_u64(ms) / 1000);
    match exceeding(child, child_exp, &caller.rights, parent_exp) {
        None => Ok(()),
        Some("lifetime") => Err(ApiError::LifetimeExceedsParent),
        Some(what) => Err(ApiError::RightsExceedCaller(what)),
    }
}

fn seconds(ms: i64) -> i64 {
    ms.div_euclid(1000)
}

async fn create(state: &AppState, caller: &Caller, user: &TargetUser, v: Values) -> Result<ManagedToken, ApiError> {
    let now = now_ms();
    let now_s = seconds(now);
    let at = match v.at {
        None | Some(0) => now_s,
        Some(at) => db::to_i64(at),
    };
    let dur = db::to_i64(v.dur.unwrap_or(0));
    let longest = now_s.saturating_add(db::to_i64(MAX_LIFETIME_SECS));
    let caller_end = seconds(caller.token.expires_at);
    let end = if dur == 0 {
        // No end of its own: the longest lifetime the rules allow, cut to the caller's;
        // the idle sweep ends it sooner when it goes unused.
        longest.min(caller_end)
    } else {
        let end = at.saturating_add(dur);
        if end > longest {
            return Err(ApiError::BadDur("at + dur is more than ten years from now".into()));
        }
        if end > caller_end {
            return Err(ApiError::LifetimeExceedsParent);
        }
        end
    };
    if end <= now_s {
        return Err(ApiError::BadDur("the token would already have ended (at + dur is in the past)".into()));
    }
    if at >= end {
        return Err(ApiError::BadAt("at is after the end of the token's life (the caller's, or at + dur)".into()));
    }
    let parent = &caller.rights;
    let fl = patched(v.fl, parent.flags);
    let items = patched(v.items, parent.items.clone());
    let (app, p) = (v.app.flatten(), v.p.flatten());
    let child = Rights::new(parent.scopes.clone(), fl, items.as_deref());
    check_attenuated(caller, &child, Some(end.saturating_mul(1000)))?;
    let issued = tokens::issue(
        state,
        NewToken {
            id: random_id(12),
            kind: TokenKind::Api,
            // A token made in the user role makes only tokens in the user role.
            role: caller.token.role.clone(),
            account_id: caller.token.account_id.clone(),
            user_id: user.id.clone(),
            user_name: user.name.clone(),
            parent_id: Some(caller.claims.jti.clone()),
            name: None,
            scopes: parent.scopes.clone(),
            fl,
            items: child.items.clone(),
            app: app.clone(),
            p: p.clone(),
            issued_at_ms: now,
            not_before_ms: at.saturating_mul(1000),
            expires_at_ms: end.saturating_mul(1000),
            dur: Some(dur),
        },
        &Actor::of(caller),
        &[],
    )
    .await?;
    Ok(ManagedToken {
        h: issued.id,
        app,
        at,
        ct: now_s,
        dur,
        fl,
        items: child.items,
        p: p.as_deref().map(params_value).transpose()?,
        token: Some(issued.token),
    })
}

fn params_value(text: &str) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(text).map_err(|_| {
        tracing::error!("stored p is not JSON");
        ApiError::Internal
    })
}

async fn update(state: &AppState, caller: &Caller, user: &TargetUser, h: &str, v: Values) -> Result<ManagedToken, ApiError> {
    let now = now_ms();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    // Every amendment, revocation and child issuance takes this lock first: the token,
    // its parent and its descendants read below stay as read until the commit.
    db::lock_sync_state(&mut tx).await?;
    let row = owned_row(&mut *tx, user, h).await?;
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(ApiError::TokenNotLive);
    }
    let parent = match row.parent_id.as_deref() {
        None => None,
        Some(id) => {
            let sql = format!("SELECT {} FROM tokens WHERE id = $1", RightsRow::COLUMNS);
            let parent: Option<RightsRow> = sqlx::query_as(&sql).bind(id).fetch_optional(&mut *tx).await?;
            match parent {
                Some(p) if p.revoked_at.is_none() => Some(p),
                // A live token under a revoked parent is revoked in all but its row.
                _ => return Err(ApiError::TokenNotLive),
            }
        }
    };
    let signed_end = seconds(row.signed_expires_at.unwrap_or(row.expires_at));
    // The latest end this token may have: its signed expiry (the JWT carries that one),
    // and never past its parent's end as it is now.
    let latest_end = parent.as_ref().map_or(signed_end, |p| signed_end.min(seconds(p.expires_at)));
    let at = match v.at {
        None => seconds(row.not_before),
        Some(0) => seconds(now),
        Some(at) => db::to_i64(at),
    };
    let dur = match (v.dur, row.dur) {
        (Some(d), _) => Some(db::to_i64(d)),
        (None, stored) => stored,
    };
    // The end: at + dur, cut to the latest end; a token never managed through seed 001
    // keeps its end unless dur is given.
    let end = match dur {
        Some(0) => latest_end,
        Some(d) if v.dur.is_some() || v.at.is_some() => at.saturating_add(d).min(latest_end),
        _ => seconds(row.expires_at).min(latest_end),
    };
    if end <= seconds(now) {
        return Err(ApiError::BadDur("the token would end in the past; use callMode delete to end it".into()));
    }
    if at >= end {
        return Err(ApiError::BadAt("at is after the end of the token's life (at + dur, or its signed expiry)".into()));
    }
    let stored_items = row.items.as_deref().map(|t| parse_items(&row.id, t)).transpose()?;
    let fl = patched(v.fl, row.fl);
    let items = patched(v.items, stored_items.clone());
    let app = patched(v.app, row.app);
    let p = patched(v.p, row.p);
    let scopes = match row.scopes.as_deref() {
        None => None,
        Some(text) => Some(ScopeSet::parse(&parse_scopes(&row.id, text)?, &state.prefix).map_err(|_| {
            tracing::error!(token = %row.id, "stored scopes do not parse");
            ApiError::Internal
        })?),
    };
    let rights = Rights::new(scopes, fl, items.as_deref());
    // Bringing the end forward takes nothing; extending it must stay within the caller's.
    let end_ms = end.saturating_mul(1000);
    let extends = end_ms > row.expires_at;
    check_attenuated(caller, &rights, extends.then_some(end_ms))?;
    if let Some(parent) = &parent {
        // The end is already cut to the parent's.
        match exceeding(&rights, 0, &parent.rights(state)?, u64::MAX) {
            None => {}
            Some(what) => return Err(ApiError::RightsExceedParent(what)),
        }
    }

    let items_json = rights.items.as_ref().map(|i| serde_json::Value::from(i.clone()).to_string());
    let done = sqlx::query(
        "UPDATE tokens SET app = $2, fl = $3, items = $4, p = $5, not_before = $6, expires_at = $7, dur = $8, amended_at = $9 \
         WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(&row.id)
    .bind(&app)
    .bind(fl)
    .bind(&items_json)
    .bind(&p)
    .bind(at.saturating_mul(1000))
    .bind(end_ms)
    .bind(dur)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if done.rows_affected() != 1 {
        // Revoked meanwhile.
        return Err(ApiError::TokenNotLive);
    }
    // The entry lives until the signed expiry: past the amended end it is what keeps the
    // token refused (a proxy that starts later must still learn of it).
    let signed_end_ms = row.signed_expires_at.unwrap_or(row.expires_at);
    let mut version = db::append_change(&mut tx, "amend", Some(&row.id), signed_end_ms, now).await?;
    let before = Limits { fl: row.fl, items: stored_items, end_ms: row.expires_at };
    let after = Limits { fl, items: rights.items.clone(), end_ms };
    // Only a narrowing can leave a descendant holding more than this token.
    let cascade = if before.within(&after) { Cascade::default() } else { narrow_descendants(&mut tx, &row.id, after, now).await? };
    version = cascade.version.map_or(version, |v| v.max(version));
    let detail = json!({
        "app": app, "fl": fl, "items": rights.items, "notBefore": at.saturating_mul(1000), "expiresAt": end_ms,
        "descendantsNarrowed": cascade.amended, "descendantsRevoked": cascade.revoked,
    });
    let event = Event::new(&caller.token.account_id, "token.update", Some(format!("token:{}", row.id)), detail);
    audit::record(&mut tx, &Actor::of(caller), &event).await?;
    tx.commit().await?;
    state.announce(version);
    state.metrics.amendments.add(1 + cascade.amended);
    state.metrics.revocations.add(cascade.revoked);
    tracing::info!(token = %row.id, version, narrowed = cascade.amended, revoked = cascade.revoked, "amended a token and narrowed its descendants");
    Ok(ManagedToken {
        h: row.id,
        app,
        at,
        ct: seconds(row.issued_at),
        dur: dur.unwrap_or_else(|| end - at),
        fl,
        items: rights.items,
        p: p.as_deref().map(params_value).transpose()?,
        token: None,
    })
}

/// What a token holds that an amendment can change, and a descendant must stay within:
/// flags, items, end (ms). Scopes are not amendable, so an amendment never narrows them.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Limits {
    fl: Option<i64>,
    /// Sorted.
    items: Option<Vec<i64>>,
    end_ms: i64,
}

impl Limits {
    /// `rules::route::is_attenuated` on flags and items, and no later end.
    fn within(&self, parent: &Limits) -> bool {
        let rights = |l: &Limits| Rights { scopes: None, flags: l.fl, items: l.items.clone() };
        self.end_ms <= parent.end_ms && is_attenuated(&rights(self), 0, &rights(parent), 0)
    }

    /// The most of `self` that is within `parent`.
    fn meet(&self, parent: &Limits) -> Limits {
        let fl = match (self.fl, parent.fl) {
            (own, None | Some(FLAG_UNLIMITED)) => own,
            (None | Some(FLAG_UNLIMITED), limit) => limit,
            (Some(own), Some(limit)) => Some(own & limit),
        };
        let items = match (&self.items, &parent.items) {
            (own, None) => own.clone(),
            (None, Some(limit)) => Some(limit.clone()),
            (Some(own), Some(limit)) => Some(own.iter().copied().filter(|i| limit.binary_search(i).is_ok()).collect()),
        };
        Limits { fl, items, end_ms: self.end_ms.min(parent.end_ms) }
    }
}

/// What narrowing the descendants did.
#[derive(Default)]
struct Cascade {
    amended: usize,
    revoked: usize,
    /// The change-log version of the last entry written, if any.
    version: Option<u64>,
}

#[derive(FromRow)]
struct Descendant {
    id: String,
    parent_id: String,
    fl: Option<i64>,
    items: Option<String>,
    not_before: i64,
    expires_at: i64,
    signed_expires_at: Option<i64>,
    dur: Option<i64>,
    revoked_at: Option<i64>,
}

/// Walks the descendants of `root` (now holding `limits`) level by level, with batched
/// `IN` lists on the `parent_id` index, and narrows or revokes each one that is no
/// longer within its parent as narrowed; see the module doc. Inside the amendment's
/// transaction, which holds [`db::lock_sync_state`].
async fn narrow_descendants(tx: &mut AnyConnection, root: &str, limits: Limits, now: i64) -> Result<Cascade, ApiError> {
    const BATCH: usize = 500;
    let mut cascade = Cascade::default();
    let mut level: HashMap<String, Limits> = HashMap::from([(root.to_owned(), limits)]);
    while !level.is_empty() {
        let parents: Vec<&String> = level.keys().collect();
        let mut next = HashMap::new();
        for chunk in parents.chunks(BATCH) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, parent_id, fl, items, not_before, expires_at, signed_expires_at, dur, revoked_at FROM tokens \
                 WHERE parent_id IN ({}) ORDER BY id",
                marks.join(", ")
            );
            let mut query = sqlx::query_as::<_, Descendant>(&sql);
            for id in chunk {
                query = query.bind(id.as_str());
            }
            for d in query.fetch_all(&mut *tx).await? {
                // A revoked token's descendants were revoked with it.
                let (Some(parent), None) = (level.get(&d.parent_id), d.revoked_at) else { continue };
                let items = d.items.as_deref().map(|t| parse_items(&d.id, t)).transpose()?;
                let held = Limits { fl: d.fl, items, end_ms: d.expires_at };
                if held.within(parent) {
                    next.insert(d.id, held);
                    continue;
                }
                let narrowed = held.meet(parent);
                if d.expires_at <= now {
                    // Ended already: nothing to tell the proxies; its descendants are
                    // still held to what it would have.
                    next.insert(d.id, narrowed);
                } else if narrowed.end_ms <= d.not_before || narrowed.end_ms <= now {
                    // Nothing of it is left: it could never be active again.
                    let revoked = tokens::revoke_in(tx, vec![d.id.clone()], now).await?;
                    cascade.revoked += revoked.count;
                    cascade.version = revoked.version.or(cascade.version);
                } else {
                    let dur = match d.dur {
                        Some(_) if narrowed.end_ms != d.expires_at => Some((narrowed.end_ms - d.not_before).div_euclid(1000)),
                        stored => stored,
                    };
                    let items_json = narrowed.items.as_ref().map(|i| serde_json::Value::from(i.clone()).to_string());
                    sqlx::query(
                        "UPDATE tokens SET fl = $2, items = $3, expires_at = $4, dur = $5, amended_at = $6 WHERE id = $1 AND revoked_at IS NULL",
                    )
                    .bind(&d.id)
                    .bind(narrowed.fl)
                    .bind(&items_json)
                    .bind(narrowed.end_ms)
                    .bind(dur)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    let signed_end_ms = d.signed_expires_at.unwrap_or(d.expires_at);
                    cascade.version = Some(db::append_change(tx, "amend", Some(&d.id), signed_end_ms, now).await?);
                    cascade.amended += 1;
                    next.insert(d.id, narrowed);
                }
            }
        }
        level = next;
    }
    Ok(cascade)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn params_forms() {
        assert_eq!(params(&json!({"a": 1})).unwrap(), r#"{"a":1}"#);
        assert_eq!(params(&json!([{"a": 1}, {}])).unwrap(), r#"[{"a":1},{}]"#);
        assert_eq!(params(&json!("{\"a\": [1, 2]}")).unwrap(), r#"{"a":[1,2]}"#);
        for bad in [json!(1), json!("x"), json!([1]), json!("[1]"), json!(null), json!({"a": "x".repeat(5000)})] {
            assert_eq!(params(&bad).unwrap_err().code(), "bad_params", "{bad}");
        }
    }

    #[test]
    fn delete_all_forms() {
        for yes in [json!(true), json!(1), json!("true"), json!("1")] {
            assert!(delete_all(Some(&yes)).unwrap());
        }
        for no in [json!(false), json!(0), json!("false"), json!(null)] {
            assert!(!delete_all(Some(&no)).unwrap());
        }
        assert!(!delete_all(None).unwrap());
        for bad in [json!(2), json!("yes"), json!([true])] {
            assert_eq!(delete_all(Some(&bad)).unwrap_err().code(), "bad_delete_all");
        }
    }
}
