//! Token use and idle expiry (seed 001: "a token unused for 100 days is deleted").
//!
//! `POST /sync/v1/usage`: proxies report, in batches, when they last saw each token
//! (`rules::sync::UsageReport`), with the proxy credential. The control plane keeps
//! `last_used_at = max(stored, reported)` per token; unknown ids are ignored, and a
//! reported time is never taken as later than now. The sweeper revokes every live token
//! whose last use (or, never used, its issue or activation) is older than
//! `TOKENGATE_IDLE_SECS`, with a change-log entry each, so proxies refuse it like any
//! other revocation. An idle token's descendants are revoked with it, in the same
//! transaction (a child never outlives its parent's revocation), even those that were
//! used: a child's use does not count as its parent's.

use std::collections::HashMap;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use tokengate_rules::sync::{UsageReport, USAGE_PATH};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::ErrorBody;
use crate::sync::{authentic, valid_proxy_id};
use crate::tokens::{is_token_id, revoke_in};
use crate::AppState;

/// Rows per `UPDATE` statement.
const CHUNK: usize = 500;
/// Tokens revoked per sweep at most; the next sweep takes the rest.
const SWEEP_BATCH: i64 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    let (schemas, paths, method_router) = routes!(report);
    OpenApiRouter::new().routes((schemas, paths, method_router.layer(DefaultBodyLimit::max(crate::limits::MAX_USAGE_BODY_BYTES))))
}

#[utoipa::path(post, path = USAGE_PATH, operation_id = "syncUsage", tag = "sync", security(("proxy" = [])),
    summary = "Proxy usage report: when each token and session was last seen",
    description = "Sets each token's last use to the later of the stored and the reported time (a time ahead of the server's clock counts as now); unknown ids are ignored. A token unused for TOKENGATE_IDLE_SECS is revoked by the sweeper; a session unused for TOKENGATE_SESSION_IDLE_SECS is ended.",
    request_body = tokengate_rules::sync::UsageReport,
    responses(
        (status = 204, description = "Recorded."),
        (status = 400, description = "bad_usage_report (proxy id), or a body error (malformed_json, missing_field, wrong_type).", body = ErrorBody),
        (status = 401, description = "bad_proxy_credential", body = ErrorBody),
        (status = 413, description = "too_many_entries (more than 10000) or body_too_large", body = ErrorBody),
        (status = 415, description = "unsupported_media_type", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
async fn report(State(state): State<AppState>, headers: HeaderMap, body: ApiJson<UsageReport>) -> Result<StatusCode, ApiError> {
    if !authentic(&state, &headers) {
        tracing::warn!("usage report with a missing or wrong proxy credential");
        return Err(ApiError::BadProxyCredential);
    }
    let ApiJson(report) = body;
    if !valid_proxy_id(&report.proxy) {
        return Err(ApiError::BadUsageReport("proxy must be 1 to 64 characters of [A-Za-z0-9._:-]".into()));
    }
    if report.used.len() > crate::limits::MAX_USAGE_ENTRIES {
        return Err(ApiError::TooManyEntries);
    }
    let now = now_ms();
    // The latest time per token; a proxy's clock running ahead never counts as later use.
    let mut latest: HashMap<&str, i64> = HashMap::new();
    for u in report.used.iter().filter(|u| is_token_id(&u.jti)) {
        let at = db::to_i64(u.at).min(now);
        let entry = latest.entry(u.jti.as_str()).or_insert(at);
        *entry = (*entry).max(at);
    }
    let entries: Vec<(&str, i64)> = latest.into_iter().collect();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    let mut updated = 0;
    for chunk in entries.chunks(CHUNK) {
        let rows =
            (0..chunk.len()).map(|i| format!("SELECT ${} AS id, ${} AS at", 2 * i + 1, 2 * i + 2)).collect::<Vec<_>>().join(" UNION ALL ");
        let sql = format!(
            "UPDATE tokens SET last_used_at = u.at FROM ({rows}) AS u \
             WHERE tokens.id = u.id AND (tokens.last_used_at IS NULL OR tokens.last_used_at < u.at)"
        );
        let mut query = sqlx::query(&sql);
        for (jti, at) in chunk {
            query = query.bind(*jti).bind(*at);
        }
        updated += query.execute(&mut *tx).await?.rows_affected();
        // Sessions (seed 003) share the id space; their last use decides their idle death.
        let sql = format!(
            "UPDATE sessions SET last_used_at = u.at FROM ({rows}) AS u \
             WHERE sessions.id = u.id AND sessions.last_used_at < u.at AND sessions.ended_at IS NULL"
        );
        let mut query = sqlx::query(&sql);
        for (jti, at) in chunk {
            query = query.bind(*jti).bind(*at);
        }
        updated += query.execute(&mut *tx).await?.rows_affected();
    }
    tx.commit().await?;
    state.metrics.usage_reports.inc();
    tracing::debug!(proxy = %report.proxy, entries = report.used.len(), updated, "usage report");
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes the live tokens idle since before `now - TOKENGATE_IDLE_SECS`, and their
/// descendants; returns how many tokens it revoked. Public for the tests.
pub async fn sweep_idle(state: &AppState, now: i64) -> Result<usize, sqlx::Error> {
    let cutoff = now.saturating_sub(db::to_i64(state.config.idle_secs.saturating_mul(1000)));
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let idle: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM tokens WHERE revoked_at IS NULL AND expires_at > $1 \
         AND issued_at < $2 AND not_before < $2 AND (last_used_at IS NULL OR last_used_at < $2) \
         ORDER BY id LIMIT $3",
    )
    .bind(now)
    .bind(cutoff)
    .bind(SWEEP_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let idle_count = idle.len();
    // One change-log entry per token, carrying its signed expiry (`db::live_tree`).
    let revoked = revoke_in(&mut tx, idle, now).await?;
    tx.commit().await?;
    if let Some(version) = revoked.version {
        state.announce(version);
        state.metrics.idle_revocations.add(revoked.count);
        state.metrics.revocations.add(revoked.count);
        tracing::info!(idle = idle_count, revoked = revoked.count, version, "revoked idle tokens and their descendants");
    }
    Ok(revoked.count)
}
