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
//! `rules::route::is_attenuated` against the caller's.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use axum::response::{IntoResponse, Response};
use sqlx::FromRow;
use tokengate_rules::route::{is_attenuated, valid_flags, Rights};
use tokengate_rules::token::MAX_LIFETIME_SECS;
use tokengate_rules::ScopeSet;

use crate::db::{self, now_ms};
use crate::error::ApiError;
use crate::guard::{Authorized, Caller};
use crate::json::ApiJson;
use crate::tokens::{self, is_token_id, parse_items, parse_scopes, revoke_trees, NewToken, Roots};
use crate::wire::{ManageDeleted, ManageRequest, ManagedToken};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/tokens/update", post(manage))
}

/// The most item ids a token may carry.
pub const MAX_ITEMS: usize = 1000;
/// The largest `p`, as compact JSON text.
pub const MAX_PARAMS_BYTES: usize = 4096;
/// The longest `app`, in characters.
pub const MAX_APP_CHARS: usize = 200;

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
            let revoked = if delete_all(req.delete_all.as_ref())? {
                revoke_trees(&state, Roots::User(&user.id)).await?
            } else {
                let h = token_handle(req.h.as_deref())?;
                owned_row(&state, &user, h).await?;
                revoke_trees(&state, Roots::Token(h)).await?
            };
            Ok(Json(ManageDeleted { deleted: revoked.count, version: revoked.version }).into_response())
        }
    }
}

/// The validated properties of a request; `None` = not given.
struct Values {
    app: Option<String>,
    at: Option<u64>,
    dur: Option<u64>,
    fl: Option<i64>,
    /// Compact JSON text.
    p: Option<String>,
    /// Sorted, without repeats.
    items: Option<Vec<i64>>,
}

impl Values {
    fn check(req: &ManageRequest) -> Result<Values, ApiError> {
        if let Some(app) = &req.app {
            if app.chars().count() > MAX_APP_CHARS || app.chars().any(char::is_control) {
                return Err(ApiError::BadApp);
            }
        }
        if let Some(fl) = req.fl {
            if !valid_flags(fl) {
                return Err(ApiError::BadFlags);
            }
        }
        let items = match &req.items {
            Some(list) if list.len() > MAX_ITEMS => return Err(ApiError::BadItems),
            Some(list) => {
                let mut v = list.clone();
                v.sort_unstable();
                v.dedup();
                Some(v)
            }
            None => None,
        };
        let p = req.p.as_ref().map(params).transpose()?;
        let now = db::to_u64(now_ms()) / 1000;
        if let Some(at) = req.at {
            if at > now.saturating_add(MAX_LIFETIME_SECS) {
                return Err(ApiError::BadAt("at is the activation time in seconds since the epoch (0 = now), at most ten years ahead".into()));
            }
        }
        if req.dur.is_some_and(|d| d > MAX_LIFETIME_SECS) {
            return Err(ApiError::BadDur(format!("dur is at most {MAX_LIFETIME_SECS} seconds (0 = no end)")));
        }
        Ok(Values { app: req.app.clone(), at: req.at, dur: req.dur, fl: req.fl, p, items })
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
    if !ok || text.len() > MAX_PARAMS_BYTES {
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

/// `userId` must be the caller's own user or a child of it (in the caller's account);
/// anything else, an unknown id included, is 403 `user_not_accessible`.
async fn target_user(state: &AppState, caller: &Caller, user_id: Option<&str>) -> Result<TargetUser, ApiError> {
    let id = user_id.unwrap_or(&caller.claims.sub);
    let user: Option<TargetUser> = sqlx::query_as(
        "SELECT id, name FROM users WHERE id = $1 AND account_id = $2 AND (id = $3 OR parent_id = $3)",
    )
    .bind(id)
    .bind(&caller.token.account_id)
    .bind(&caller.claims.sub)
    .fetch_optional(&state.pool)
    .await?;
    user.ok_or(ApiError::UserNotAccessible)
}

#[derive(FromRow)]
struct Row {
    id: String,
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
async fn owned_row(state: &AppState, user: &TargetUser, h: &str) -> Result<Row, ApiError> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT id, scopes, fl, items, app, p, issued_at, not_before, expires_at, signed_expires_at, dur, revoked_at \
         FROM tokens WHERE id = $1 AND user_id = $2",
    )
    .bind(h)
    .bind(&user.id)
    .fetch_optional(&state.pool)
    .await?;
    row.ok_or(ApiError::TokenNotFound)
}

/// The caller's rights must cover `child` (and, when `child_exp` is given, its end).
fn check_attenuated(caller: &Caller, child: &Rights, child_exp_ms: Option<i64>) -> Result<(), ApiError> {
    let parent = &caller.rights;
    let parent_exp = db::to_u64(caller.token.expires_at) / 1000;
    let child_exp = child_exp_ms.map_or(0, |ms| db::to_u64(ms) / 1000);
    if is_attenuated(child, child_exp, parent, parent_exp) {
        return Ok(());
    }
    // Name the first dimension that exceeds, for the message.
    let only = |r: Rights| is_attenuated(&r, 0, parent, parent_exp);
    let what = if !only(Rights { scopes: child.scopes.clone(), ..parent.clone() }) {
        "scopes"
    } else if !only(Rights { flags: child.flags, ..parent.clone() }) {
        "flags"
    } else if !only(Rights { items: child.items.clone(), ..parent.clone() }) {
        "items"
    } else {
        return Err(ApiError::LifetimeExceedsParent);
    };
    Err(ApiError::RightsExceedCaller(what))
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
    let fl = v.fl.or(parent.flags);
    let items = v.items.or_else(|| parent.items.clone());
    let child = Rights::new(parent.scopes.clone(), fl, items.as_deref());
    check_attenuated(caller, &child, Some(end.saturating_mul(1000)))?;
    let issued = tokens::issue(
        state,
        NewToken {
            account_id: caller.token.account_id.clone(),
            user_id: user.id.clone(),
            user_name: user.name.clone(),
            parent_id: Some(caller.claims.jti.clone()),
            name: None,
            scopes: parent.scopes.clone(),
            fl,
            items: child.items.clone(),
            app: v.app.clone(),
            p: v.p.clone(),
            issued_at_ms: now,
            not_before_ms: at.saturating_mul(1000),
            expires_at_ms: end.saturating_mul(1000),
            dur: Some(dur),
        },
    )
    .await?;
    Ok(ManagedToken {
        h: issued.id,
        app: v.app,
        at,
        ct: now_s,
        dur,
        fl,
        items: child.items,
        p: v.p.as_deref().map(params_value).transpose()?,
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
    let row = owned_row(state, user, h).await?;
    let now = now_ms();
    if row.revoked_at.is_some() || row.expires_at <= now {
        return Err(ApiError::TokenNotLive);
    }
    let signed_end = seconds(row.signed_expires_at.unwrap_or(row.expires_at));
    let at = match v.at {
        None => seconds(row.not_before),
        Some(0) => seconds(now),
        Some(at) => db::to_i64(at),
    };
    let dur = match (v.dur, row.dur) {
        (Some(d), _) => Some(db::to_i64(d)),
        (None, stored) => stored,
    };
    // The end: at + dur, never past the signed expiry (the JWT carries that one); a token
    // never managed through seed 001 keeps its end unless dur is given.
    let end = match dur {
        Some(0) => signed_end,
        Some(d) if v.dur.is_some() || v.at.is_some() => at.saturating_add(d).min(signed_end),
        _ => seconds(row.expires_at),
    };
    if end <= seconds(now) {
        return Err(ApiError::BadDur("the token would end in the past; use callMode delete to end it".into()));
    }
    if at >= end {
        return Err(ApiError::BadAt("at is after the end of the token's life (at + dur, or its signed expiry)".into()));
    }
    let fl = v.fl.or(row.fl);
    let stored_items = row.items.as_deref().map(|t| parse_items(&row.id, t)).transpose()?;
    let items = v.items.or(stored_items);
    let app = v.app.or(row.app);
    let p = v.p.or(row.p);
    let scopes = match row.scopes.as_deref() {
        None => None,
        Some(text) => Some(ScopeSet::parse(&parse_scopes(&row.id, text)?, &state.prefix).map_err(|_| {
            tracing::error!(token = %row.id, "stored scopes do not parse");
            ApiError::Internal
        })?),
    };
    let rights = Rights::new(scopes, fl, items.as_deref());
    // Bringing the end forward takes nothing; extending it must stay within the caller's.
    let extends = end.saturating_mul(1000) > row.expires_at;
    check_attenuated(caller, &rights, extends.then(|| end.saturating_mul(1000)))?;

    let end_ms = end.saturating_mul(1000);
    let items_json = rights.items.as_ref().map(|i| serde_json::Value::from(i.clone()).to_string());
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
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
    let version = db::append_change(&mut tx, "amend", Some(&row.id), signed_end_ms, now).await?;
    tx.commit().await?;
    state.announce(version);
    state.metrics.amendments.inc();
    tracing::info!(token = %row.id, version, "amended a token");
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
