//! Confirmed propagation. Each proxy's sync call says which version it has applied
//! (`since`: a proxy polls again at once after applying an answer), so the control plane
//! knows which proxies are current. `GET /proxies` lists them; `DELETE /tokens/:id?wait=`
//! waits until every live proxy has applied the revocation.
//!
//! Contacts are kept in memory ([`Contacts`]) and written to `proxies` in one batch at most
//! every [`FLUSH_EVERY`]: a sync call is not a database write. This replica's view merges
//! its own contacts (fresh) with the table (every replica's, up to a flush old); on
//! PostgreSQL a flush notifies the other replicas so their waiting revocations look again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use tokengate_rules::route::Refusal;
use tokengate_rules::Denial;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::http::openapi::Guarded;
use crate::http::wire::{ProxyCounts, ProxyInfo};
use crate::tokens::guard::{may_manage, Authorized};
use crate::AppState;

/// A proxy is live when it called within this long, or has a long poll held here.
pub const LIVE_MS: i64 = 60_000;
/// The longest `wait` a revocation may ask for.
pub const MAX_WAIT_MS: u64 = 10_000;
/// How often a waiting revocation re-reads the proxies (calls on other replicas).
const RECHECK: Duration = Duration::from_millis(200);

/// How often this replica writes the contacts it has seen to `proxies`.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// Rows per upsert statement in a flush.
const FLUSH_CHUNK: usize = 200;

/// A proxy's latest contact with this replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Contact {
    first_seen_at: i64,
    last_seen_at: i64,
    since: u64,
    /// Not yet written to `proxies`.
    dirty: bool,
}

/// The proxies that called this replica, and whether a flush is scheduled.
#[derive(Default)]
pub struct Contacts {
    seen: Mutex<HashMap<String, Contact>>,
    flush_scheduled: std::sync::atomic::AtomicBool,
}

/// Notes that `proxy` called from version `since` (the version it has applied), wakes the
/// revocations waiting for propagation, and schedules the flush to `proxies`.
pub fn record_contact(state: &AppState, proxy: &str, since: u64) {
    let now = now_ms();
    {
        let mut seen = state.proxy_contacts.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match seen.get_mut(proxy) {
            Some(c) => {
                c.last_seen_at = now;
                c.since = since;
                c.dirty = true;
            }
            None => {
                seen.insert(proxy.to_owned(), Contact { first_seen_at: now, last_seen_at: now, since, dirty: true });
            }
        }
    }
    state.contacts.send_modify(|n| *n = n.wrapping_add(1));
    if !state.proxy_contacts.flush_scheduled.swap(true, std::sync::atomic::Ordering::AcqRel) {
        let state = state.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FLUSH_EVERY).await;
            // Cleared before the flush reads the map: a contact noted from here on
            // schedules the next one.
            state.proxy_contacts.flush_scheduled.store(false, std::sync::atomic::Ordering::Release);
            if let Err(e) = flush_contacts(&state).await {
                tracing::warn!(error = %e, "writing the proxies' contacts failed; will retry with the next contact");
            }
        });
    }
}

/// Writes the contacts not yet written, in batches, newest contact winning (another
/// replica may have written the same proxy). Called by the scheduled flush and at shutdown.
pub async fn flush_contacts(state: &AppState) -> Result<(), sqlx::Error> {
    let dirty: Vec<(String, Contact)> = {
        let mut seen = state.proxy_contacts.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        seen.iter_mut()
            .filter(|(_, c)| c.dirty)
            .map(|(id, c)| {
                c.dirty = false;
                (id.clone(), *c)
            })
            .collect()
    };
    if dirty.is_empty() {
        return Ok(());
    }
    let written = write_contacts(state, &dirty).await;
    if written.is_err() {
        // Not written: mark them again unless a newer contact did already.
        let mut seen = state.proxy_contacts.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, c) in &dirty {
            if let Some(now) = seen.get_mut(id) {
                if now.last_seen_at == c.last_seen_at {
                    now.dirty = true;
                }
            }
        }
    }
    written
}

async fn write_contacts(state: &AppState, dirty: &[(String, Contact)]) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    for chunk in dirty.chunks(FLUSH_CHUNK) {
        let rows: Vec<String> =
            (0..chunk.len()).map(|i| format!("(${}, ${}, ${}, ${})", 4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4)).collect();
        let sql = format!(
            "INSERT INTO proxies (id, first_seen_at, last_seen_at, since_version) VALUES {} ON CONFLICT (id) DO UPDATE SET \
             since_version = CASE WHEN excluded.last_seen_at >= proxies.last_seen_at THEN excluded.since_version ELSE proxies.since_version END, \
             last_seen_at = CASE WHEN excluded.last_seen_at >= proxies.last_seen_at THEN excluded.last_seen_at ELSE proxies.last_seen_at END",
            rows.join(", ")
        );
        let mut q = sqlx::query(&sql);
        for (id, c) in chunk {
            q = q.bind(id.as_str()).bind(c.first_seen_at).bind(c.last_seen_at).bind(db::to_i64(c.since));
        }
        q.execute(&mut *tx).await?;
    }
    if state.config.backend == crate::config::Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)").bind(db::NOTIFY_CHANNEL).bind(CONTACTS_NOTICE).execute(&mut *tx).await?;
    }
    tx.commit().await
}

/// Moves every contact of this replica except `keep`'s `by_ms` into the past, as if those
/// proxies had not called since. For the tests, which cannot wait [`LIVE_MS`]; the table's
/// rows are the caller's to move.
#[doc(hidden)]
pub fn backdate_contacts(state: &AppState, keep: &str, by_ms: i64) {
    let mut seen = state.proxy_contacts.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (_, c) in seen.iter_mut().filter(|(id, _)| id.as_str() != keep) {
        c.last_seen_at -= by_ms;
    }
}

/// The notification a flush sends: other replicas' waiting revocations look again.
pub const CONTACTS_NOTICE: &str = "contacts 0";

/// The long polls held by this process, by proxy id.
#[derive(Default)]
pub struct HeldPolls(Mutex<HashMap<String, usize>>);

impl HeldPolls {
    pub fn add(&self, proxy: &str) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *map.entry(proxy.to_owned()).or_insert(0) += 1;
    }

    pub fn remove(&self, proxy: &str) {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = map.get_mut(proxy) {
            *n -= 1;
            if *n == 0 {
                map.remove(proxy);
            }
        }
    }

    pub fn holds(&self, proxy: &str) -> bool {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(proxy)
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Every proxy that has synced, with the version it has applied: the table (every
/// replica's contacts, as of their last flush) with this replica's newer ones over it.
pub async fn proxies(state: &AppState) -> Result<Vec<ProxyInfo>, ApiError> {
    let (version, _) = db::sync_state(&state.pool).await?;
    Ok(merged(state, &table(state).await?, version))
}

/// Every replica's contacts as of their last flush: (id, last seen ms, version applied).
async fn table(state: &AppState) -> Result<Vec<(String, i64, u64)>, ApiError> {
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT id, last_seen_at, since_version FROM proxies ORDER BY id").fetch_all(&state.pool).await?;
    Ok(rows.into_iter().map(|(id, last_seen_at, since)| (id, last_seen_at, db::to_u64(since))).collect())
}

/// The table's rows with this replica's newer contacts over them, lag against `version`.
fn merged(state: &AppState, table: &[(String, i64, u64)], version: u64) -> Vec<ProxyInfo> {
    let mut merged: std::collections::BTreeMap<&str, (i64, u64)> =
        table.iter().map(|(id, last_seen_at, since)| (id.as_str(), (*last_seen_at, *since))).collect();
    let seen = state.proxy_contacts.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (id, c) in seen.iter() {
        let entry = merged.entry(id.as_str()).or_insert((c.last_seen_at, c.since));
        if c.last_seen_at >= entry.0 {
            *entry = (c.last_seen_at, c.since);
        }
    }
    let now = now_ms();
    merged
        .into_iter()
        .map(|(id, (last_seen_at, applied))| ProxyInfo {
            live: now - last_seen_at < LIVE_MS || state.held_polls.holds(id),
            id: id.to_owned(),
            version: applied,
            lag_versions: version.saturating_sub(applied),
            last_seen_at,
        })
        .collect()
}

#[utoipa::path(get, path = "/proxies", operation_id = "listProxies", tag = "keys", security(("bearer" = [])),
    summary = "List the proxies and the version each has applied",
    description = "`version` is the `since` of the proxy's last sync call: the version it has applied. `live`: it called within the last 60 s, or a long poll of it is held now. Needs a token that may manage tokens.",
    responses((status = 200, description = "Proxies.", body = Vec<ProxyInfo>), Guarded))]
async fn list(State(state): State<AppState>, Authorized(caller): Authorized) -> Result<Json<Vec<ProxyInfo>>, ApiError> {
    if !may_manage(&caller.rights) {
        return Err(Denial::Refused(Refusal::MissingFlags).into());
    }
    Ok(Json(proxies(&state).await?))
}

/// Waits up to `wait` until every live proxy has applied `version`; returns the counts
/// as they are then. A contact with this replica is looked at in memory as it comes; the
/// table (other replicas' contacts) is re-read on their flush notification and every
/// [`RECHECK`], so a thousand proxies calling do not make a thousand reads.
pub async fn await_applied(state: &AppState, version: u64, wait: Duration) -> Result<ProxyCounts, ApiError> {
    let mut contacts = state.contacts.subscribe();
    let mut flushed = state.contacts_flushed.subscribe();
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    let mut rows = table(state).await?;
    let mut reread_at = started + RECHECK;
    loop {
        if tokio::time::Instant::now() >= reread_at {
            rows = table(state).await?;
            reread_at = tokio::time::Instant::now() + RECHECK;
        }
        let list = merged(state, &rows, version);
        let live: Vec<&ProxyInfo> = list.iter().filter(|p| p.live).collect();
        let counts = ProxyCounts { live: live.len(), applied: live.iter().filter(|p| p.version >= version).count() };
        let now = tokio::time::Instant::now();
        if counts.applied == counts.live {
            // Applied by every live proxy's sync service; their workers pick it up
            // within WORKER_LAG_MS, so "applied" means enforced when this returns.
            if counts.live > 0 {
                state.metrics.propagated(started.elapsed());
                tokio::time::sleep(Duration::from_millis(tokengate_rules::sync::WORKER_LAG_MS + 1)).await;
            }
            return Ok(counts);
        }
        if now >= deadline || *state.shutdown.borrow() {
            return Ok(counts);
        }
        tokio::select! {
            _ = contacts.changed() => {}
            _ = flushed.changed() => reread_at = tokio::time::Instant::now(),
            _ = tokio::time::sleep_until(deadline.min(reread_at)) => {}
        }
    }
}
