//! Confirmed propagation. Each proxy's sync call says which version it has applied
//! (`since`: a proxy polls again at once after applying an answer), so the control plane
//! knows which proxies are current. `GET /proxies` lists them; `DELETE /tokens/:id?wait=`
//! waits until every live proxy has applied the revocation.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use tokengate_rules::route::Refusal;
use tokengate_rules::Denial;

use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::http::openapi::{Guarded};
use crate::tokens::guard::{may_manage, Authorized};
use crate::http::wire::{ProxyInfo, ProxyCounts};
use crate::AppState;

/// A proxy is live when it called within this long, or has a long poll held here.
pub const LIVE_MS: i64 = 60_000;
/// The longest `wait` a revocation may ask for.
pub const MAX_WAIT_MS: u64 = 10_000;
/// How often a waiting revocation re-reads the proxies (calls on other replicas).
const RECHECK: Duration = Duration::from_millis(200);

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

/// Every proxy that has synced, with the version it has applied.
pub async fn proxies(state: &AppState) -> Result<Vec<ProxyInfo>, ApiError> {
    let (version, _) = db::sync_state(&state.pool).await?;
    let rows: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT id, last_seen_at, since_version FROM proxies ORDER BY id").fetch_all(&state.pool).await?;
    let now = now_ms();
    Ok(rows
        .into_iter()
        .map(|(id, last_seen_at, since)| {
            let applied = db::to_u64(since);
            ProxyInfo {
                live: now - last_seen_at < LIVE_MS || state.held_polls.holds(&id),
                id,
                version: applied,
                lag_versions: version.saturating_sub(applied),
                last_seen_at,
            }
        })
        .collect())
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
/// as they are then.
pub async fn await_applied(state: &AppState, version: u64, wait: Duration) -> Result<ProxyCounts, ApiError> {
    let mut contacts = state.contacts.subscribe();
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    loop {
        let list = proxies(state).await?;
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
            _ = tokio::time::sleep_until(deadline.min(now + RECHECK)) => {}
        }
    }
}
