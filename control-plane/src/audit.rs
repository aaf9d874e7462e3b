//! The audit log: who did what, when, from where. Every issuance, revocation, amendment,
//! key rotation, user change, session end, voucher action, network change, lock and
//! failed login writes one entry with [`record`] inside the transaction that makes the
//! change, so an entry exists exactly when its change does. `GET /audit` pages through
//! an account's entries (admins only).
//!
//! An entry never holds a secret: no token value, password, PIN or voucher code; ids,
//! names, scopes and counts only.
//!
//! Order: [`record`] is the last statement before the commit. On PostgreSQL it takes a
//! transaction-scoped advisory lock first, so entries commit in the order of their ids
//! and a reader tailing with `after=<id>` never skips one that commits late; the lock is
//! held only from the insert to the commit, and taken after every other lock, so it
//! cannot close a cycle. SQLite writers are serialized by `BEGIN IMMEDIATE` already.

use std::net::IpAddr;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::AnyConnection;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::now_ms;
use crate::http::error::ApiError;
use crate::http::openapi::{ErrorBody, Guarded};
use crate::http::wire::{AuditActor, AuditEntry, AuditPage};
use crate::tokens::guard::{is_admin, Authorized, Caller};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Every kind of entry.
pub const KINDS: [&str; 20] = [
    "token.issue",
    "token.revoke",
    "token.revoke_all",
    "token.update",
    "key.rotate",
    "user.create",
    "user.update",
    "user.delete",
    "user.lock",
    "login.failed",
    "login.ok",
    "session.end",
    "voucher.generate",
    "voucher.revoke",
    "voucher.delete",
    "voucher.redeem",
    "network.create",
    "network.update",
    "network.delete",
    "account.update",
];

/// The PostgreSQL advisory lock key that orders audit inserts ("tg-audit").
const ORDER_LOCK: i64 = 0x7467_2d61_7564_6974;

/// Who did it: a user (with the token it used, when it used one), from an address. All
/// `None`: the control plane itself (the idle sweep).
#[derive(Clone, Debug, Default)]
pub struct Actor {
    pub user: Option<String>,
    pub user_id: Option<String>,
    pub token_id: Option<String>,
    pub address: Option<IpAddr>,
}

impl Actor {
    /// The holder of an API token, from the address its request came from.
    pub fn of(caller: &Caller) -> Self {
        Actor {
            user: caller.claims.unm.clone(),
            user_id: Some(caller.claims.sub.clone()),
            token_id: Some(caller.claims.jti.clone()),
            address: caller.address,
        }
    }

    /// A user who proved a password, PIN or token but holds no token yet.
    pub fn user(name: &str, id: &str, address: IpAddr) -> Self {
        Actor { user: Some(name.to_owned()), user_id: Some(id.to_owned()), token_id: None, address: Some(address) }
    }

    /// Someone at an address who proved nothing (a failed login, a guest's voucher).
    pub fn anonymous(address: IpAddr) -> Self {
        Actor { address: Some(address), ..Actor::default() }
    }

    /// The control plane itself.
    pub fn system() -> Self {
        Actor::default()
    }
}

/// One change, for [`record`].
#[derive(Clone, Debug)]
pub struct Event {
    /// The account the change belongs to (`None`: a failed login under an unknown name).
    pub account_id: Option<String>,
    pub kind: &'static str,
    /// `token:<id>`, `user:<id>`, `voucher:<id>`, `network:<id>`, `session:<id>`,
    /// `key:<kid>`, `account:<id>`.
    pub target: Option<String>,
    /// Facts about the change (never a secret).
    pub detail: Value,
}

impl Event {
    pub fn new(account_id: &str, kind: &'static str, target: Option<String>, detail: Value) -> Self {
        debug_assert!(KINDS.contains(&kind), "unknown audit kind {kind}");
        Event { account_id: Some(account_id.to_owned()), kind, target, detail }
    }
}

/// Writes `event` by `actor` inside `tx`, the transaction that makes the change. Call it
/// last, just before the commit (see the module's note on order).
pub async fn record(tx: &mut AnyConnection, actor: &Actor, event: &Event) -> Result<(), sqlx::Error> {
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ORDER_LOCK).execute(&mut *tx).await?;
    }
    sqlx::query(
        "INSERT INTO audit_log (at, account_id, kind, actor_user, actor_user_id, actor_token_id, target, address, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(now_ms())
    .bind(&event.account_id)
    .bind(event.kind)
    .bind(&actor.user)
    .bind(&actor.user_id)
    .bind(&actor.token_id)
    .bind(&event.target)
    .bind(actor.address.map(|a| a.to_string()))
    .bind(event.detail.to_string())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A login's entry: `login.ok` or `login.failed` (`method`: password, pin, token, ...).
/// A failed login under a name no user has belongs to no account and does not carry the
/// name: it may be a password typed into the wrong field.
pub fn login(kind: &'static str, user: Option<&crate::identity::users::User>, method: &'static str, address: IpAddr) -> (Actor, Event) {
    match user {
        Some(u) => (
            Actor::user(&u.name, &u.id, address),
            Event::new(&u.account_id, kind, Some(format!("user:{}", u.id)), json!({ "method": method })),
        ),
        None => (
            Actor::anonymous(address),
            Event { account_id: None, kind, target: None, detail: json!({ "method": method, "reason": "unknown_user" }) },
        ),
    }
}

/// [`record`] for several events by one actor.
pub async fn record_all(tx: &mut AnyConnection, actor: &Actor, events: &[Event]) -> Result<(), sqlx::Error> {
    for event in events {
        record(tx, actor, event).await?;
    }
    Ok(())
}

/// Removes the entries older than `keep_days` (0: none), inside the sweeper's transaction.
pub async fn prune(tx: &mut AnyConnection, keep_days: u64, now: i64) -> Result<u64, sqlx::Error> {
    if keep_days == 0 {
        return Ok(0);
    }
    let cutoff = now.saturating_sub(crate::db::to_i64(keep_days.saturating_mul(86_400_000)));
    let removed = sqlx::query("DELETE FROM audit_log WHERE at < $1").bind(cutoff).execute(&mut *tx).await?.rows_affected();
    if removed > 0 {
        tracing::info!(removed, keep_days, "removed audit entries past TOKENGATE_AUDIT_KEEP_DAYS");
    }
    Ok(removed)
}

/// The default and largest page.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<String>,
    before: Option<String>,
    after: Option<String>,
    user: Option<String>,
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The checked filters of a page.
#[derive(Debug, PartialEq, Eq)]
struct Filters {
    limit: i64,
    before: Option<i64>,
    after: Option<i64>,
    user: Option<String>,
    /// An exact kind, or a prefix ending in '.'.
    kind: Option<String>,
    from: Option<i64>,
    to: Option<i64>,
}

fn whole(name: &str, text: Option<&str>, range: std::ops::RangeInclusive<i64>) -> Result<Option<i64>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    text.parse::<i64>()
        .ok()
        .filter(|n| text.bytes().all(|b| b.is_ascii_digit()) && range.contains(n))
        .map(Some)
        .ok_or_else(|| ApiError::BadQuery(format!("{name} must be a whole number from {} to {}", range.start(), range.end())))
}

impl AuditQuery {
    fn filters(self) -> Result<Filters, ApiError> {
        let limit = whole("limit", self.limit.as_deref(), 1..=MAX_LIMIT)?.unwrap_or(DEFAULT_LIMIT);
        let before = whole("before", self.before.as_deref(), 1..=i64::MAX)?;
        let after = whole("after", self.after.as_deref(), 0..=i64::MAX)?;
        if before.is_some() && after.is_some() {
            return Err(ApiError::BadQuery("give before (older entries) or after (newer entries), not both".into()));
        }
        let from = whole("from", self.from.as_deref(), 0..=i64::MAX)?;
        let to = whole("to", self.to.as_deref(), 0..=i64::MAX)?;
        if let (Some(f), Some(t)) = (from, to) {
            if f >= t {
                return Err(ApiError::BadQuery("from must be earlier than to".into()));
            }
        }
        let kind = match self.kind {
            None => None,
            Some(k) if KINDS.contains(&k.as_str()) => Some(k),
            Some(k) if k.ends_with('.') && KINDS.iter().any(|known| known.starts_with(k.as_str())) => Some(k),
            Some(_) => {
                return Err(ApiError::BadQuery(format!("kind must be one of {} or a prefix such as token.", KINDS.join(", "))));
            }
        };
        let user = match self.user {
            Some(u) if u.is_empty() || u.len() > 128 => {
                return Err(ApiError::BadQuery("user must be a user name (1 to 128 characters)".into()))
            }
            other => other,
        };
        Ok(Filters { limit, before, after, user, kind, from, to })
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    id: i64,
    at: i64,
    kind: String,
    actor_user: Option<String>,
    actor_user_id: Option<String>,
    actor_token_id: Option<String>,
    target: Option<String>,
    address: Option<String>,
    detail: String,
}

impl Row {
    fn entry(self) -> AuditEntry {
        AuditEntry {
            id: self.id,
            at: self.at,
            kind: self.kind,
            actor: AuditActor { user: self.actor_user, user_id: self.actor_user_id, token_id: self.actor_token_id },
            target: self.target,
            address: self.address,
            // Written by `record` from a `Value`; an unreadable one shows as null rather
            // than failing the page.
            detail: serde_json::from_str(&self.detail).unwrap_or(Value::Null),
        }
    }
}

/// The audit log of the caller's account.
#[utoipa::path(get, path = "/audit", operation_id = "listAudit", tag = "audit", security(("bearer" = [])),
    summary = "The audit log (admins)",
    description = "Entries of the caller's account (and failed logins under names no account has), newest first; `before=<id>` pages back (the answer's `next`), `after=<id>` reads forward, oldest first, for tailing. Filters: `user` (the actor's user name), `kind` (exact, or a prefix ending in '.' such as `token.`), `from`/`to` (ms, inclusive/exclusive). No entry holds a secret.",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Entries per page (default 100)."),
        ("before" = Option<i64>, Query, minimum = 1, description = "Entries older than this id."),
        ("after" = Option<i64>, Query, minimum = 0, description = "Entries newer than this id, oldest first."),
        ("user" = Option<String>, Query, description = "The actor's user name."),
        ("kind" = Option<String>, Query, description = "A kind (token.revoke) or a prefix ending in '.' (token.)."),
        ("from" = Option<i64>, Query, minimum = 0, description = "From this time (ms, inclusive)."),
        ("to" = Option<i64>, Query, minimum = 0, description = "Up to this time (ms, exclusive)."),
    ),
    responses(
        (status = 200, description = "A page; `next` is the `before` of the next older page (null: none), or with `after` the last id read.", body = AuditPage),
        Guarded,
        (status = 400, description = "bad_query: a filter is malformed (the message names it).", body = ErrorBody),
        (status = 403, description = "admin_required: only an admin reads the audit log; or insufficient_scope / insufficient_flags.", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let f = query.filters()?;
    if !is_admin(&state, &caller).await? {
        return Err(ApiError::AdminRequired);
    }
    // Fixed SQL with every filter bound; an absent one is NULL and matches all.
    let kind_exact = f.kind.as_deref().filter(|k| !k.ends_with('.'));
    let kind_prefix = f.kind.as_deref().filter(|k| k.ends_with('.')).map(|k| format!("{k}%"));
    let forward = f.after.is_some();
    let sql = format!(
        "SELECT id, at, kind, actor_user, actor_user_id, actor_token_id, target, address, detail FROM audit_log \
         WHERE (account_id = $1 OR account_id IS NULL) \
         AND ($2 IS NULL OR id < $2) AND ($3 IS NULL OR id > $3) \
         AND ($4 IS NULL OR actor_user = $4) \
         AND ($5 IS NULL OR kind = $5) AND ($6 IS NULL OR kind LIKE $6) \
         AND ($7 IS NULL OR at >= $7) AND ($8 IS NULL OR at < $8) \
         ORDER BY id {} LIMIT $9",
        if forward { "ASC" } else { "DESC" }
    );
    let rows: Vec<Row> = sqlx::query_as(&sql)
        .bind(&caller.token.account_id)
        .bind(f.before)
        .bind(f.after)
        .bind(&f.user)
        .bind(kind_exact)
        .bind(&kind_prefix)
        .bind(f.from)
        .bind(f.to)
        .bind(f.limit + 1)
        .fetch_all(&state.pool)
        .await?;
    let more = rows.len() as i64 > f.limit;
    let entries: Vec<AuditEntry> = rows.into_iter().take(usize::try_from(f.limit).unwrap_or(0)).map(Row::entry).collect();
    let next = if forward {
        // The last id read: the next tail's `after` (the same `after` when nothing is new).
        Some(entries.last().map_or(f.after.unwrap_or(0), |e| e.id))
    } else if more {
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(AuditPage { entries, next }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> AuditQuery {
        let text = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
        let uri: axum::http::Uri = format!("/audit?{text}").parse().unwrap();
        Query::<AuditQuery>::try_from_uri(&uri).unwrap().0
    }

    #[test]
    fn filters_accept_the_contract() {
        let f =
            query(&[("limit", "5"), ("before", "9"), ("user", "alice"), ("kind", "token."), ("from", "1"), ("to", "2")]).filters().unwrap();
        assert_eq!(
            f,
            Filters {
                limit: 5,
                before: Some(9),
                after: None,
                user: Some("alice".into()),
                kind: Some("token.".into()),
                from: Some(1),
                to: Some(2)
            }
        );
        assert_eq!(query(&[]).filters().unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(query(&[("kind", "login.failed")]).filters().unwrap().kind.as_deref(), Some("login.failed"));
    }

    #[test]
    fn filters_refuse_bad_values() {
        for pairs in [
            &[("limit", "0")][..],
            &[("limit", "1001")],
            &[("limit", "+5")],
            &[("before", "x")],
            &[("after", "-1")],
            &[("before", "3"), ("after", "1")],
            &[("kind", "token")],
            &[("kind", "nope.")],
            &[("kind", "token.explode")],
            &[("from", "5"), ("to", "5")],
            &[("user", "")],
        ] {
            assert!(matches!(query(pairs).filters(), Err(ApiError::BadQuery(_))), "{pairs:?}");
        }
    }
}
