//! Seed 000: Wi-Fi networks and identification vouchers.
//!
//! An operator generates vouchers (`POST /vouchers`), prints them (`GET /vouchers/pdf`)
//! and hands one to a guest, who types it into the captive portal (`/portal`, or
//! `POST /vouchers/redeem` for a portal of one's own). Redemption answers an access token
//! (`tg-voucher+jwt`) bound to the guest's device (`dev`) and to the network (`aud`);
//! the gate admits it only from that device, on a proxy that serves that network, and
//! only on routes marked `voucher`.
//!
//! - A voucher never expires before its first activation; it works only on the networks
//!   of the account that generated it. A time-limited one runs `days` from each
//!   activation (each device of a multi-use voucher has its own end).
//! - Single-use: one device; the same device gets its activation back, another is
//!   refused (`voucher_used`). Multi-use: each device gets its own activation (the seed's
//!   "copy" with the device and the time); the code stays usable for the next one.
//! - A device activating on a network revokes its live activations on every other
//!   network, at every proxy.
//! - An activation's id is the `jti` of every access token made for it; tokens live
//!   `TOKENGATE_VOUCHER_TOKEN_SECS` (a day) and are renewed by redeeming again, so a
//!   revocation entry lives at most that long, even for unlimited vouchers.
//! - Guessing: malformed codes are refused before any lookup (a Damm check digit);
//!   every other failure goes through the credential throttle, per source, per device and
//!   per account, with the account's daily budget sized in [`daily_budget`]
//!   (ARCHITECTURE.md, "Vouchers").

pub mod codes;
pub mod pdf;
pub mod portal;

use std::net::IpAddr;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Form, Json};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use sqlx::AnyConnection;
use tokengate_rules::token::TokenKind;
use tokengate_rules::Claims;

use crate::audit::{self, Actor, Event};
use crate::config::Backend;
use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded};
use crate::http::wire::{
    ActivationInfo, GenerateVouchers, GeneratedVouchers, NetworkInfo, NetworkList, NetworkRequest, NewVoucher, RedeemVoucher, Redeemed,
    RenameNetwork, VoucherInfo, VoucherList, VoucherRevoked,
};
use crate::identity::throttle;
use crate::sync::proxies;
use crate::tokens::guard::{Authorized, Caller};
use crate::tokens::keys::{is_id, random_id};
use crate::tokens::ListQuery;
use crate::AppState;

pub use codes::VoucherKeys;

/// Seed 000: at most this many unused vouchers per account (contract).
pub const MAX_UNUSED: i64 = 200;
/// The longest time limit, in days.
pub const MAX_DAYS: i64 = 30;
const DAY_MS: i64 = 24 * 3600 * 1000;
/// A revocation's answer waits this long at most for the live proxies to apply it.
const REVOKE_WAIT: Duration = Duration::from_secs(2);
/// The guessing bound: the chance that failed redemptions hit any live code of an account
/// over [`BUDGET_HORIZON_DAYS`] stays below this.
pub const GUESS_BOUND: f64 = 1e-4;
/// The life the bound is computed over: a year of failures at the daily budget.
pub const BUDGET_HORIZON_DAYS: f64 = 365.0;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_networks, create_network))
        .routes(routes!(delete_network, rename_network))
        .routes(routes!(list, generate))
        .routes(routes!(pdf_sheet))
        .routes(routes!(redeem))
        .routes(routes!(revoke))
        .routes(routes!(remove))
}

/// The captive portal's page, outside the API prefix (`GET/POST /portal`).
pub fn portal_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(portal_page, portal_submit))
}

/// Checks the voucher keys against the database at start: the first start records which
/// keys the vouchers are made with; a later start with other key files is refused.
pub async fn check_keys(pool: &sqlx::AnyPool, keys: &VoucherKeys, dir: &std::path::Path) -> Result<(), String> {
    let check = keys.check_value();
    sqlx::query("INSERT INTO voucher_keys (id, check_value) VALUES (1, $1) ON CONFLICT (id) DO NOTHING")
        .bind(&check)
        .execute(pool)
        .await
        .map_err(|e| format!("recording the voucher keys: {e}"))?;
    let stored: String = sqlx::query_scalar("SELECT check_value FROM voucher_keys WHERE id = 1")
        .fetch_one(pool)
        .await
        .map_err(|e| format!("reading the voucher keys' check value: {e}"))?;
    if stored != check {
        return Err(format!(
            "the voucher keys in {} ({} and {}) are not the ones this database's vouchers were made with; \
             restore the two files from your backup (or point TOKENGATE_DATA_DIR at them)",
            dir.display(),
            codes::LOOKUP_KEY_FILE,
            codes::SEAL_KEY_FILE
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- networks

fn check_network_id(id: &str, state: &AppState) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        return Err(ApiError::BadNetwork("id must be 1 to 63 of [a-z0-9._-], starting with a letter or a digit (e.g. cafe-1)".into()));
    }
    if id == state.config.audience {
        return Err(ApiError::BadNetwork(format!("id {id:?} is the API tokens' audience (TOKENGATE_AUDIENCE); choose another")));
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct NetworkRow {
    id: String,
    name: String,
    created_at: i64,
}

fn network_info(n: &NetworkRow) -> NetworkInfo {
    NetworkInfo { id: n.id.clone(), name: n.name.clone(), created_at: n.created_at }
}

#[utoipa::path(post, path = "/networks", operation_id = "createNetwork", tag = "vouchers", security(("bearer" = [])),
    summary = "Add a Wi-Fi network",
    description = "Its id is what proxies list in `audiences` and voucher tokens carry as `aud`.",
    request_body = NetworkRequest,
    responses(
        (status = 201, description = "Created.", body = NetworkInfo),
        Guarded, BodyErrors,
        (status = 400, description = "bad_network (id: 1 to 63 of [a-z0-9._-], not the API audience; name: 1 to 100 characters), invalid_request, or a body error.", body = ErrorBody),
        (status = 409, description = "network_exists", body = ErrorBody),
    ))]
async fn create_network(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    body: ApiJson<NetworkRequest>,
) -> Result<(StatusCode, Json<NetworkInfo>), ApiError> {
    let ApiJson(req) = body;
    check_network_id(&req.id, &state)?;
    let name = network_name(&req.name)?;
    let now = now_ms();
    let account = caller.token.account_id.as_str();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    let done = sqlx::query("INSERT INTO networks (id, account_id, name, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING")
        .bind(&req.id)
        .bind(account)
        .bind(name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NetworkExists);
    }
    let event = Event::new(account, "network.create", Some(format!("network:{}", req.id)), json!({ "name": name }));
    audit::record(&mut tx, &Actor::of(&caller), &event).await?;
    tx.commit().await?;
    tracing::info!(network = %req.id, account = %caller.token.account_id, "network created");
    Ok((StatusCode::CREATED, Json(network_info(&NetworkRow { id: req.id, name: name.to_owned(), created_at: now }))))
}

/// A network's display name, trimmed: 1 to 100 characters without control characters.
fn network_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadNetwork("name must be 1 to 100 characters without control characters".into()));
    }
    Ok(name)
}

/// Renaming changes only what people see (the PDF, lists): tokens carry the id.
#[utoipa::path(patch, path = "/networks/{id}", operation_id = "renameNetwork", tag = "vouchers", security(("bearer" = [])),
    summary = "Rename a Wi-Fi network (its id stays)",
    params(("id" = String, Path, pattern = "^[a-z0-9][a-z0-9._-]{0,62}$", description = "The network's id.")),
    request_body = RenameNetwork,
    responses(
        (status = 200, description = "Renamed.", body = NetworkInfo),
        Guarded, BodyErrors,
        (status = 400, description = "bad_network (name: 1 to 100 characters), or a body error.", body = ErrorBody),
        (status = 404, description = "network_not_found", body = ErrorBody),
    ))]
async fn rename_network(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    id: Result<Path<String>, PathRejection>,
    body: ApiJson<RenameNetwork>,
) -> Result<Json<NetworkInfo>, ApiError> {
    let Ok(Path(id)) = id else { return Err(ApiError::NetworkNotFound) };
    let ApiJson(req) = body;
    let name = network_name(&req.name)?;
    let account = caller.token.account_id.as_str();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    let row: Option<NetworkRow> =
        sqlx::query_as("UPDATE networks SET name = $1 WHERE id = $2 AND account_id = $3 RETURNING id, name, created_at")
            .bind(name)
            .bind(&id)
            .bind(account)
            .fetch_optional(&mut *tx)
            .await?;
    let row = row.ok_or(ApiError::NetworkNotFound)?;
    let event = Event::new(account, "network.update", Some(format!("network:{id}")), json!({ "name": name }));
    audit::record(&mut tx, &Actor::of(&caller), &event).await?;
    tx.commit().await?;
    tracing::info!(network = %id, account = %caller.token.account_id, "network renamed");
    Ok(Json(network_info(&row)))
}

#[utoipa::path(get, path = "/networks", operation_id = "listNetworks", tag = "vouchers", security(("bearer" = [])),
    summary = "The Wi-Fi networks of your account",
    responses((status = 200, description = "Networks by id.", body = NetworkList), Guarded))]
async fn list_networks(State(state): State<AppState>, Authorized(caller): Authorized) -> Result<Json<NetworkList>, ApiError> {
    let rows: Vec<NetworkRow> = sqlx::query_as("SELECT id, name, created_at FROM networks WHERE account_id = $1 ORDER BY id")
        .bind(&caller.token.account_id)
        .fetch_all(&state.pool)
        .await?;
    Ok(Json(NetworkList { networks: rows.iter().map(network_info).collect() }))
}

/// Deleting a network revokes every live activation on it.
#[utoipa::path(delete, path = "/networks/{id}", operation_id = "deleteNetwork", tag = "vouchers", security(("bearer" = [])),
    summary = "Delete a network; its live activations are revoked at every proxy",
    params(("id" = String, Path, pattern = "^[a-z0-9][a-z0-9._-]{0,62}$", description = "The network's id.")),
    responses(
        (status = 200, description = "Deleted.", body = VoucherRevoked),
        Guarded,
        (status = 404, description = "network_not_found", body = ErrorBody),
    ))]
async fn delete_network(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<VoucherRevoked>, ApiError> {
    let Ok(Path(id)) = id else { return Err(ApiError::NetworkNotFound) };
    let now = now_ms();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let done = sqlx::query("DELETE FROM networks WHERE id = $1 AND account_id = $2")
        .bind(&id)
        .bind(&caller.token.account_id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Err(ApiError::NetworkNotFound);
    }
    let live = live_activations(&mut tx, "network_id = $1", &id, now).await?;
    let (revoked, version) = revoke_activations(&mut tx, &live, "network_deleted", now).await?;
    let event =
        Event::new(&caller.token.account_id, "network.delete", Some(format!("network:{id}")), json!({ "revokedActivations": revoked }));
    audit::record(&mut tx, &Actor::of(&caller), &event).await?;
    tx.commit().await?;
    let proxies = announce_and_wait(&state, version).await?;
    Ok(Json(VoucherRevoked { id, state: None, deleted: None, revoked_activations: revoked, version, proxies }))
}

// ---------------------------------------------------------------- generation

#[utoipa::path(post, path = "/vouchers", operation_id = "generateVouchers", tag = "vouchers", security(("bearer" = [])),
    summary = "Generate vouchers: 12-digit codes, listed once in the answer",
    description = "At most 200 unused vouchers per account (single-use ones never activated, and every multi-use one not revoked). A request that would pass it makes nothing.",
    request_body = GenerateVouchers,
    responses(
        (status = 201, description = "The new vouchers with their codes.", body = GeneratedVouchers),
        Guarded, BodyErrors,
        (status = 400, description = "bad_count (1 to 200), bad_voucher_kind (single or multi), bad_days (1 to 30 or null), invalid_request, or a body error.", body = ErrorBody),
        (status = 409, description = "too_many_vouchers: nothing was made; the body adds unused, remaining and limit.", body = ErrorBody),
    ))]
async fn generate(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    body: ApiJson<GenerateVouchers>,
) -> Result<(StatusCode, Json<GeneratedVouchers>), ApiError> {
    let ApiJson(req) = body;
    if !(1..=MAX_UNUSED).contains(&req.count) {
        return Err(ApiError::BadCount);
    }
    let multi = match req.kind.as_str() {
        "single" => false,
        "multi" => true,
        _ => return Err(ApiError::BadVoucherKind),
    };
    if req.days.is_some_and(|d| !(1..=MAX_DAYS).contains(&d)) {
        return Err(ApiError::BadDays);
    }
    let account = &caller.token.account_id;
    let now = now_ms();
    let mut made = Vec::new();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    // One generation per account at a time (SQLite's write transaction already
    // serializes), so two requests cannot both pass the cap.
    if state.config.backend == Backend::Postgres {
        sqlx::query("SELECT id FROM accounts WHERE id = $1 FOR UPDATE").bind(account).execute(&mut *tx).await?;
    }
    let unused = unused_count(&mut tx, account).await?;
    if unused + req.count > MAX_UNUSED {
        return Err(ApiError::TooManyVouchers { unused, remaining: (MAX_UNUSED - unused).max(0) });
    }
    let kind = if multi { "multi" } else { "single" };
    while made.len() < usize::try_from(req.count).unwrap_or(0) {
        let id = random_id(12);
        let code = codes::generate();
        let sealed = state.voucher_keys.seal(&id, &code).map_err(|e| {
            tracing::error!(error = %e, "sealing a voucher code failed");
            ApiError::Internal
        })?;
        // A code already in use anywhere (about 1 in 10^8 at 200 live codes per account
        // and a thousand accounts) is simply drawn again.
        let done = sqlx::query(
            "INSERT INTO vouchers (id, account_id, kind, days, code_mac, code_sealed, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (code_mac) DO NOTHING",
        )
        .bind(&id)
        .bind(account)
        .bind(kind)
        .bind(req.days)
        .bind(state.voucher_keys.mac(&code))
        .bind(&sealed)
        .bind(now)
        .bind(&caller.claims.jti)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 1 {
            made.push(NewVoucher { id, code, kind: kind.to_owned(), days: req.days, created_at: now });
        }
    }
    // The ids, never the codes.
    let detail =
        json!({ "count": made.len(), "kind": kind, "days": req.days, "ids": made.iter().map(|v| v.id.as_str()).collect::<Vec<_>>() });
    audit::record(&mut tx, &Actor::of(&caller), &Event::new(account, "voucher.generate", None, detail)).await?;
    tx.commit().await?;
    state.metrics.vouchers_generated.add(made.len());
    tracing::info!(account = %account, count = made.len(), kind, days = ?req.days, "vouchers generated");
    let unused = unused + req.count;
    Ok((StatusCode::CREATED, Json(GeneratedVouchers { vouchers: made, unused, limit: MAX_UNUSED })))
}

/// Unused vouchers of an account: single-use ones never activated, and every multi-use
/// one (it always keeps an unused copy) that is not revoked.
async fn unused_count(tx: &mut AnyConnection, account: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM vouchers v WHERE v.account_id = $1 AND v.revoked_at IS NULL AND v.deleted_at IS NULL \
         AND (v.kind = 'multi' OR NOT EXISTS (SELECT 1 FROM voucher_activations a WHERE a.voucher_id = v.id))",
    )
    .bind(account)
    .fetch_one(&mut *tx)
    .await
}

// ---------------------------------------------------------------- listing

#[derive(sqlx::FromRow)]
struct VoucherRow {
    id: String,
    kind: String,
    days: Option<i64>,
    code_sealed: String,
    created_at: i64,
    revoked_at: Option<i64>,
}

#[derive(sqlx::FromRow, Clone)]
struct ActivationRow {
    id: String,
    voucher_id: String,
    device: String,
    network_id: String,
    activated_at: i64,
    ends_at: Option<i64>,
    token_expires_at: i64,
    revoked_at: Option<i64>,
    revoke_reason: Option<String>,
}

const ACTIVATION_COLUMNS: &str = "id, voucher_id, device, network_id, activated_at, ends_at, token_expires_at, revoked_at, revoke_reason";

impl ActivationRow {
    fn state(&self, now: i64) -> &'static str {
        if self.revoked_at.is_some() {
            "revoked"
        } else if self.ends_at.is_some_and(|e| e <= now) {
            "expired"
        } else {
            "active"
        }
    }

    fn info(&self, now: i64) -> ActivationInfo {
        ActivationInfo {
            id: self.id.clone(),
            state: self.state(now).to_owned(),
            device: self.device.clone(),
            network: self.network_id.clone(),
            activated_at: self.activated_at,
            ends_at: self.ends_at,
            revoked_at: self.revoked_at,
            revoke_reason: self.revoke_reason.clone(),
        }
    }
}

#[utoipa::path(get, path = "/vouchers", operation_id = "listVouchers", tag = "vouchers", security(("bearer" = [])),
    summary = "Your account's vouchers with their state and activations",
    description = "The code only while the voucher is unused. By id, in pages.",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size (default 1000)."),
        ("after" = Option<String>, Query, pattern = "^[0-9a-f]{24}$", description = "The `next` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of vouchers by id.", body = VoucherList),
        Guarded,
        (status = 400, description = "bad_query (limit or after), or invalid_request.", body = ErrorBody),
    ))]
async fn list(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<VoucherList>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let (limit, after) = query.page()?;
    let account = &caller.token.account_id;
    let now = now_ms();
    let mut tx = state.pool.begin().await?;
    let rows: Vec<VoucherRow> = sqlx::query_as(
        "SELECT id, kind, days, code_sealed, created_at, revoked_at FROM vouchers \
         WHERE account_id = $1 AND deleted_at IS NULL AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(account)
    .bind(&after)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(usize::try_from(limit).unwrap_or(0))];
    let ids: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
    let activations = activations_of(&mut tx, &ids).await?;
    let unused = unused_count(&mut tx, account).await?;
    tx.commit().await?;
    let mut out = Vec::with_capacity(rows.len());
    for v in rows {
        let mine: Vec<&ActivationRow> = activations.iter().filter(|a| a.voucher_id == v.id).collect();
        let state_name = if v.revoked_at.is_some() {
            "revoked"
        } else if v.kind == "multi" || mine.is_empty() {
            "unused"
        } else {
            mine.last().map_or("unused", |a| a.state(now))
        };
        // The code only while the voucher has an unused copy: never the code of a used one.
        let code = (state_name == "unused").then(|| state.voucher_keys.open(&v.id, &v.code_sealed)).flatten();
        out.push(VoucherInfo {
            id: v.id.clone(),
            kind: v.kind.clone(),
            days: v.days,
            state: state_name.to_owned(),
            code,
            created_at: v.created_at,
            revoked_at: v.revoked_at,
            activations: mine.iter().map(|a| a.info(now)).collect(),
        });
    }
    let next = if more { rows.last().map(|r| r.id.clone()) } else { None };
    Ok(Json(VoucherList { vouchers: out, unused, limit: MAX_UNUSED, next }))
}

async fn activations_of(tx: &mut AnyConnection, voucher_ids: &[String]) -> Result<Vec<ActivationRow>, sqlx::Error> {
    let mut out = Vec::new();
    for chunk in voucher_ids.chunks(500) {
        let marks = (1..=chunk.len()).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("SELECT {ACTIVATION_COLUMNS} FROM voucher_activations WHERE voucher_id IN ({marks}) ORDER BY activated_at, id");
        let mut q = sqlx::query_as::<_, ActivationRow>(&sql);
        for id in chunk {
            q = q.bind(id);
        }
        out.extend(q.fetch_all(&mut *tx).await?);
    }
    Ok(out)
}

// ---------------------------------------------------------------- revocation

#[utoipa::path(post, path = "/vouchers/{id}/revoke", operation_id = "revokeVoucher", tag = "vouchers", security(("bearer" = [])),
    summary = "Revoke a voucher and every activation of it at every proxy",
    description = "Waits up to 2 s for the live proxies; `proxies` says how many had applied it. Revoking again is harmless.",
    params(("id" = String, Path, pattern = "^[0-9a-f]{24}$", description = "The voucher's id (24 hexadecimal digits).")),
    responses(
        (status = 200, description = "Revoked.", body = VoucherRevoked),
        Guarded,
        (status = 400, description = "bad_voucher_id, or invalid_request.", body = ErrorBody),
        (status = 404, description = "voucher_not_found", body = ErrorBody),
    ))]
async fn revoke(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<VoucherRevoked>, ApiError> {
    let id = voucher_id(id)?;
    let (revoked, version) = revoke_voucher(&state, &caller, &id, false).await?;
    let proxies = announce_and_wait(&state, version).await?;
    Ok(Json(VoucherRevoked { id, state: Some("revoked".into()), deleted: None, revoked_activations: revoked, version, proxies }))
}

#[utoipa::path(delete, path = "/vouchers/{id}", operation_id = "deleteVoucher", tag = "vouchers", security(("bearer" = [])),
    summary = "Delete a voucher (its activations are revoked first)",
    params(("id" = String, Path, pattern = "^[0-9a-f]{24}$", description = "The voucher's id (24 hexadecimal digits).")),
    responses(
        (status = 200, description = "Deleted.", body = VoucherRevoked),
        Guarded,
        (status = 400, description = "bad_voucher_id, or invalid_request.", body = ErrorBody),
        (status = 404, description = "voucher_not_found", body = ErrorBody),
    ))]
async fn remove(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<VoucherRevoked>, ApiError> {
    let id = voucher_id(id)?;
    let (revoked, version) = revoke_voucher(&state, &caller, &id, true).await?;
    let proxies = announce_and_wait(&state, version).await?;
    Ok(Json(VoucherRevoked { id, state: None, deleted: Some(true), revoked_activations: revoked, version, proxies }))
}

fn voucher_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match id {
        Ok(Path(id)) if is_id(&id) => Ok(id),
        _ => Err(ApiError::BadVoucherId),
    }
}

/// Revokes (and with `delete`, deletes) a voucher of `account` and every live activation
/// of it, in one transaction. Revoking twice is harmless; a deleted voucher is 404.
async fn revoke_voucher(state: &AppState, caller: &Caller, id: &str, delete: bool) -> Result<(usize, Option<u64>), ApiError> {
    let account = caller.token.account_id.as_str();
    let now = now_ms();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM vouchers WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL")
        .bind(id)
        .bind(account)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Err(ApiError::VoucherNotFound);
    }
    sqlx::query(
        "UPDATE vouchers SET revoked_at = COALESCE(revoked_at, $2), deleted_at = CASE WHEN $3 THEN $2 ELSE deleted_at END WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(delete)
    .execute(&mut *tx)
    .await?;
    let live = live_activations(&mut tx, "voucher_id = $1", id, now).await?;
    let (revoked, version) = revoke_activations(&mut tx, &live, if delete { "deleted" } else { "revoked" }, now).await?;
    let kind = if delete { "voucher.delete" } else { "voucher.revoke" };
    let event = Event::new(account, kind, Some(format!("voucher:{id}")), json!({ "revokedActivations": revoked }));
    audit::record(&mut tx, &Actor::of(caller), &event).await?;
    tx.commit().await?;
    tracing::info!(voucher = %id, account = %account, revoked, delete, "voucher revoked");
    Ok((revoked, version))
}

/// The live activations (not revoked, token not yet expired) matching `filter` (one `$1`).
async fn live_activations(tx: &mut AnyConnection, filter: &str, value: &str, now: i64) -> Result<Vec<ActivationRow>, sqlx::Error> {
    let sql =
        format!("SELECT {ACTIVATION_COLUMNS} FROM voucher_activations WHERE {filter} AND revoked_at IS NULL AND token_expires_at > $2");
    sqlx::query_as(&sql).bind(value).bind(now).fetch_all(&mut *tx).await
}

/// Revokes activations inside `tx` (which holds [`db::lock_sync_state`]): a `revoke`
/// change each, living until the activation's last token expires.
async fn revoke_activations(
    tx: &mut AnyConnection,
    rows: &[ActivationRow],
    reason: &str,
    now: i64,
) -> Result<(usize, Option<u64>), sqlx::Error> {
    let mut version = None;
    let mut revoked = 0;
    for a in rows {
        let done = sqlx::query("UPDATE voucher_activations SET revoked_at = $2, revoke_reason = $3 WHERE id = $1 AND revoked_at IS NULL")
            .bind(&a.id)
            .bind(now)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            version = Some(db::append_change(tx, "revoke", Some(&a.id), a.token_expires_at, now).await?);
            revoked += 1;
        }
    }
    Ok((revoked, version))
}

async fn announce_and_wait(state: &AppState, version: Option<u64>) -> Result<Option<crate::http::wire::ProxyCounts>, ApiError> {
    match version {
        None => Ok(None),
        Some(v) => {
            state.announce(v);
            state.metrics.revocations.inc();
            Ok(Some(proxies::await_applied(state, v, REVOKE_WAIT).await?))
        }
    }
}

// ---------------------------------------------------------------- the PDF

#[derive(Deserialize)]
struct PdfQuery {}

#[utoipa::path(get, path = "/vouchers/pdf", operation_id = "voucherPdf", tag = "vouchers", security(("bearer" = [])),
    summary = "A printable A4 PDF of the unused vouchers",
    description = "Each voucher twice: the guest's copy with instructions (English and Russian) and the operator's copy with the generation date.",
    responses(
        (status = 200, description = "The PDF (attachment).", body = Vec<u8>, content_type = "application/pdf"),
        Guarded,
        (status = 400, description = "bad_query (the route takes no parameters), or invalid_request.", body = ErrorBody),
    ))]
async fn pdf_sheet(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    query: Result<Query<PdfQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let account = &caller.token.account_id;
    let mut tx = state.pool.begin().await?;
    let rows: Vec<VoucherRow> = sqlx::query_as(
        "SELECT id, kind, days, code_sealed, created_at, revoked_at FROM vouchers v \
         WHERE v.account_id = $1 AND v.revoked_at IS NULL AND v.deleted_at IS NULL \
         AND (v.kind = 'multi' OR NOT EXISTS (SELECT 1 FROM voucher_activations a WHERE a.voucher_id = v.id)) \
         ORDER BY v.created_at, v.id",
    )
    .bind(account)
    .fetch_all(&mut *tx)
    .await?;
    let networks: Vec<String> =
        sqlx::query_scalar("SELECT name FROM networks WHERE account_id = $1 ORDER BY id").bind(account).fetch_all(&mut *tx).await?;
    let account_name: String =
        sqlx::query_scalar("SELECT name FROM accounts WHERE id = $1").bind(account).fetch_optional(&mut *tx).await?.unwrap_or_default();
    tx.commit().await?;
    let mut plain = Vec::with_capacity(rows.len());
    for v in &rows {
        let Some(code) = state.voucher_keys.open(&v.id, &v.code_sealed) else {
            tracing::error!(voucher = %v.id, "a voucher code does not open with the seal key");
            return Err(ApiError::Internal);
        };
        plain.push((code, v));
    }
    let cards: Vec<pdf::Card> = plain
        .iter()
        .map(|(code, v)| pdf::Card {
            code,
            multi: v.kind == "multi",
            days: v.days.and_then(|d| u32::try_from(d).ok()),
            created_at_ms: v.created_at,
        })
        .collect();
    let sheet = pdf::Sheet { account: &account_name, networks: &networks, portal_url: state.config.portal_url.as_deref() };
    let bytes = tokio::task::block_in_place(|| pdf::render(&sheet, &cards)).map_err(|e| {
        tracing::error!(error = %e, "rendering the voucher PDF failed");
        ApiError::Internal
    })?;
    let day = crate::tokens::keys::iso_utc(now_ms());
    let filename = format!("vouchers-{}.pdf", day.get(..10).unwrap_or("today"));
    Ok((
        [
            (header::CONTENT_TYPE, "application/pdf".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

// ---------------------------------------------------------------- redemption

/// The failed redemptions an account may have in any 24 hours, given how many codes of
/// it can still grant access (`live`): over [`BUDGET_HORIZON_DAYS`] of failures at this
/// rate, the chance of hitting any of them stays under [`GUESS_BOUND`]:
/// `days × budget × live / CODE_SPACE < GUESS_BOUND`. At least one; counted as if the
/// account held at least [`MAX_UNUSED`] codes (123 a day at 200 live codes, 24 at 1000).
pub fn daily_budget(live: i64) -> i64 {
    let live = live.max(MAX_UNUSED) as f64;
    let budget = (GUESS_BOUND * codes::CODE_SPACE / (BUDGET_HORIZON_DAYS * live)).floor();
    (budget as i64).max(1)
}

#[utoipa::path(post, path = "/vouchers/redeem", operation_id = "redeemVoucher", tag = "vouchers",
    summary = "Redeem a code: an access token bound to the device and the network (open: the portal calls it)",
    description = "Malformed codes (length, characters, the check digit) are refused before any lookup. Every other failure counts toward the credential throttle per source, per device and per account. Redeeming again from the same device renews the token.",
    request_body = RedeemVoucher,
    responses(
        (status = 200, description = "The access token (tg-voucher+jwt).", body = Redeemed),
        BodyErrors,
        (status = 400, description = "voucher_malformed, bad_device, or a body error.", body = ErrorBody),
        (status = 404, description = "network_not_found, or voucher_not_found (no such code for this network's account).", body = ErrorBody),
        (status = 409, description = "voucher_used: a single-use voucher in use on another device.", body = ErrorBody),
        (status = 410, description = "voucher_expired or voucher_revoked.", body = ErrorBody),
        (status = 429, description = "too_many_attempts, with Retry-After.", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
async fn redeem(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: ApiJson<RedeemVoucher>,
) -> Result<Json<Redeemed>, ApiError> {
    let ApiJson(req) = body;
    let source = crate::http::client::source(&headers, peer.ip(), &state.config.trusted_proxies);
    Ok(Json(redeem_code(&state, source, &req.code, &req.device, &req.network).await?))
}

#[derive(sqlx::FromRow)]
struct FoundVoucher {
    id: String,
    account_id: String,
    kind: String,
    days: Option<i64>,
    revoked_at: Option<i64>,
}

/// Redeems `code` for `device` on `network`, from `source`: the portal and the API.
pub async fn redeem_code(state: &AppState, source: IpAddr, code: &str, device: &str, network: &str) -> Result<Redeemed, ApiError> {
    // Malformed codes are refused before any lookup (and cost no throttle entry).
    let code = codes::parse(code).map_err(|m| ApiError::VoucherMalformed(m.message()))?;
    let device = tokengate_rules::device::normalize(device).ok_or(ApiError::BadDevice)?;
    let account: Option<String> =
        sqlx::query_scalar("SELECT account_id FROM networks WHERE id = $1").bind(network).fetch_optional(&state.pool).await?;
    let account = account.ok_or(ApiError::NetworkNotFound)?;
    let now = now_ms();
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM vouchers v WHERE v.account_id = $1 AND v.revoked_at IS NULL AND v.deleted_at IS NULL \
         AND (v.kind = 'multi' OR NOT EXISTS (SELECT 1 FROM voucher_activations a WHERE a.voucher_id = v.id \
              AND (a.revoked_at IS NOT NULL OR (a.ends_at IS NOT NULL AND a.ends_at <= $2))))",
    )
    .bind(&account)
    .bind(now)
    .fetch_one(&state.pool)
    .await?;
    let attempt = throttle::Attempt { kind: "voucher", name: &account, source, device: Some(&device), daily_cap: daily_budget(live) };
    let reservation = throttle::reserve(state, &attempt).await?;
    match activate(state, source, &code, &device, network, &account).await {
        Ok(redeemed) => {
            throttle::succeeded(state, reservation).await?;
            state.metrics.vouchers_redeemed.inc();
            Ok(redeemed)
        }
        Err(e) if matches!(e, ApiError::VoucherNotFound | ApiError::VoucherUsed | ApiError::VoucherExpired | ApiError::VoucherRevoked) => {
            state.metrics.voucher_failures.inc();
            match throttle::failed(state, reservation, None).await? {
                Some(retry_after_secs) => Err(ApiError::TooManyAttempts { retry_after_secs }),
                None => Err(e),
            }
        }
        Err(e) => {
            // Not a verdict on the code (the database, say): give the attempt back.
            throttle::given_back(state, reservation).await?;
            Err(e)
        }
    }
}

/// The activation itself, in one transaction under the revocation lock.
async fn activate(state: &AppState, source: IpAddr, code: &str, device: &str, network: &str, account: &str) -> Result<Redeemed, ApiError> {
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let now = now_ms();
    let found: Option<FoundVoucher> =
        sqlx::query_as("SELECT id, account_id, kind, days, revoked_at FROM vouchers WHERE code_mac = $1 AND deleted_at IS NULL")
            .bind(state.voucher_keys.mac(code))
            .fetch_optional(&mut *tx)
            .await?;
    // Only the networks of the account that generated it; elsewhere it does not exist.
    let v = found.filter(|v| v.account_id == account).ok_or(ApiError::VoucherNotFound)?;
    if v.revoked_at.is_some() {
        return Err(ApiError::VoucherRevoked);
    }
    // This device's activations of this voucher only: a multi-use code may serve thousands
    // of devices, and a redemption must not read them all (index on voucher and device).
    let mine: Vec<ActivationRow> = sqlx::query_as(&format!(
        "SELECT {ACTIVATION_COLUMNS} FROM voucher_activations WHERE voucher_id = $1 AND device = $2 ORDER BY activated_at, id"
    ))
    .bind(&v.id)
    .bind(device)
    .fetch_all(&mut *tx)
    .await?;
    let multi = v.kind == "multi";
    // The activation this device already has of this voucher, if any.
    let existing = mine.iter().rev().find(|a| a.revoked_at.is_none()).cloned();
    if !multi {
        // A single-use voucher belongs to the device that activated it first.
        let holder: Option<String> =
            sqlx::query_scalar("SELECT device FROM voucher_activations WHERE voucher_id = $1 ORDER BY activated_at, id LIMIT 1")
                .bind(&v.id)
                .fetch_optional(&mut *tx)
                .await?;
        if holder.is_some_and(|h| h != device) {
            return Err(ApiError::VoucherUsed);
        }
        // Moved away to another network (or revoked by hand): the voucher is spent.
        if !mine.is_empty() && existing.is_none() {
            return Err(ApiError::VoucherRevoked);
        }
    }
    // Its time ran out: the guest needs a new voucher (seed 000), whichever the kind.
    if existing.as_ref().is_some_and(|a| a.ends_at.is_some_and(|e| e <= now)) {
        return Err(ApiError::VoucherExpired);
    }
    // A device activating here loses its activations on every other network (seed 000).
    let elsewhere: Vec<ActivationRow> =
        live_activations(&mut tx, "device = $1", device, now).await?.into_iter().filter(|a| a.network_id != network).collect();
    let (revoked_elsewhere, version) = revoke_activations(&mut tx, &elsewhere, "other_network", now).await?;

    let ring = state.keys.current();
    let signer = ring.signing();
    let live_here = existing.filter(|a| a.network_id == network && a.ends_at.is_none_or(|e| e > now));
    let (activation, renewed) = match live_here {
        // The same device again: its activation back, with a fresh token.
        Some(a) => (a, true),
        None => {
            // A single-use voucher moving with its device keeps its end; otherwise the time runs from now.
            let (activated_at, ends_at) = match mine.first().filter(|_| !multi) {
                Some(first) => (first.activated_at, first.ends_at),
                None => (now, v.days.map(|d| now + d * DAY_MS)),
            };
            if ends_at.is_some_and(|e| e <= now) {
                return Err(ApiError::VoucherExpired);
            }
            let a = ActivationRow {
                id: random_id(12),
                voucher_id: v.id.clone(),
                device: device.to_owned(),
                network_id: network.to_owned(),
                activated_at,
                ends_at,
                token_expires_at: 0,
                revoked_at: None,
                revoke_reason: None,
            };
            sqlx::query(
                "INSERT INTO voucher_activations (id, voucher_id, account_id, device, network_id, activated_at, ends_at, token_expires_at, kid) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&a.id)
            .bind(&a.voucher_id)
            .bind(account)
            .bind(&a.device)
            .bind(&a.network_id)
            .bind(a.activated_at)
            .bind(a.ends_at)
            .bind(now)
            .bind(&signer.kid)
            .execute(&mut *tx)
            .await?;
            (a, false)
        }
    };
    // Short-lived, renewed by redeeming again: a revocation never has to live long.
    let token_end = activation.ends_at.map_or(now + db::to_i64(state.config.voucher_token_secs) * 1000, |e| {
        e.min(now + db::to_i64(state.config.voucher_token_secs) * 1000)
    });
    let claims = Claims {
        iss: state.config.issuer.clone(),
        sub: v.id.clone(),
        aud: network.to_owned(),
        exp: db::to_u64(token_end) / 1000,
        nbf: db::to_u64(now) / 1000,
        iat: db::to_u64(now) / 1000,
        jti: activation.id.clone(),
        unm: None,
        scp: None,
        fl: None,
        items: None,
        app: None,
        p: None,
        par: None,
        opr: None,
        dev: Some(device.to_owned()),
    };
    let token = signer.sign(TokenKind::VoucherAccess, &claims).map_err(|e| {
        tracing::error!(code = e.code(), "signing a voucher token failed");
        ApiError::Internal
    })?;
    // The revocation of this activation must outlive every token of it.
    sqlx::query("UPDATE voucher_activations SET token_expires_at = CASE WHEN token_expires_at > $2 THEN token_expires_at ELSE $2 END, kid = $3 WHERE id = $1")
        .bind(&activation.id)
        .bind(db::to_i64(claims.exp) * 1000)
        .bind(&signer.kid)
        .execute(&mut *tx)
        .await?;
    // A new activation is audited; a renewal (the same device again, every few minutes
    // while it stays online) is not, or it would bury every other entry.
    if !renewed {
        let detail = json!({ "activation": activation.id, "device": device, "network": network, "revokedElsewhere": revoked_elsewhere });
        audit::record(
            &mut tx,
            &Actor::anonymous(source),
            &Event::new(account, "voucher.redeem", Some(format!("voucher:{}", v.id)), detail),
        )
        .await?;
    }
    tx.commit().await?;
    if let Some(changed) = version {
        state.announce(changed);
    }
    tracing::info!(voucher = %v.id, activation = %activation.id, device, network, renewed, revoked_elsewhere, "voucher redeemed");
    Ok(Redeemed {
        token,
        expires_at: db::to_i64(claims.exp) * 1000,
        ends_at: activation.ends_at,
        activated_at: activation.activated_at,
        activation_id: activation.id,
        voucher_id: v.id,
        kind: v.kind,
        days: v.days,
        network: network.to_owned(),
        device: device.to_owned(),
        renewed,
        revoked_elsewhere,
    })
}

// ---------------------------------------------------------------- the portal page

#[derive(Deserialize)]
struct PortalQuery {
    lang: Option<String>,
}

/// The portal form's fields, as documented (the handler reads them leniently).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct PortalFormDoc {
    /// The 12-digit code.
    code: String,
    /// en or ru.
    lang: Option<String>,
}

#[derive(Deserialize)]
struct PortalForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    lang: Option<String>,
}

/// The device and network the gate found for this request (`x-tokengate-device`,
/// `x-tokengate-network`), believed only from a trusted proxy (`TOKENGATE_TRUSTED_PROXIES`).
fn portal_client(state: &AppState, headers: &HeaderMap, peer: IpAddr) -> Option<(String, String)> {
    if !state.config.trusted_proxies.iter().any(|net| net.contains(&peer)) {
        return None;
    }
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Some((get("x-tokengate-device")?, get("x-tokengate-network")?))
}

fn portal_response(status: StatusCode, html: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        Html(html),
    )
        .into_response()
}

fn accept_language(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok())
}

#[utoipa::path(get, path = "/portal", operation_id = "portalPage", tag = "vouchers",
    summary = "The captive portal page (HTML, English or Russian)",
    description = "The language comes from ?lang= or Accept-Language; the device and network from the gate (x-tokengate-device, x-tokengate-network, believed from TOKENGATE_TRUSTED_PROXIES only).",
    params(("lang" = Option<String>, Query, description = "en or ru.")),
    responses((status = 200, description = "The form, or how to reach it through the Wi-Fi.", body = String, content_type = "text/html")))]
async fn portal_page(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    query: Result<Query<PortalQuery>, QueryRejection>,
) -> Response {
    let lang = portal::Lang::choose(query.ok().and_then(|Query(q)| q.lang).as_deref(), accept_language(&headers));
    match portal_client(&state, &headers, peer.ip()) {
        None => portal_response(StatusCode::OK, portal::page(lang, &portal::View::NoDevice)),
        Some((_, network)) => {
            portal_response(StatusCode::OK, portal::page(lang, &portal::View::Form { network: &network, problem: None, code: "" }))
        }
    }
}

#[utoipa::path(post, path = "/portal", operation_id = "portalRedeem", tag = "vouchers",
    summary = "The portal's form: redeem `code` for this device and network",
    request_body(content = PortalFormDoc, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Connected, until when.", body = String, content_type = "text/html"),
        (status = 400, description = "Malformed code or no device.", body = String, content_type = "text/html"),
        (status = 403, description = "A cross-site form post (Sec-Fetch-Site).", body = String, content_type = "text/html"),
        (status = 404, description = "Wrong code.", body = String, content_type = "text/html"),
        (status = 409, description = "Used on another device.", body = String, content_type = "text/html"),
        (status = 410, description = "Expired or revoked.", body = String, content_type = "text/html"),
        (status = 429, description = "Too many attempts (Retry-After).", body = String, content_type = "text/html"),
        (status = 503, description = "The database is unavailable.", body = String, content_type = "text/html"),
    ))]
async fn portal_submit(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    form: Result<Form<PortalForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = form.map(|Form(f)| f).unwrap_or(PortalForm { code: String::new(), lang: None });
    let lang = portal::Lang::choose(form.lang.as_deref(), accept_language(&headers));
    let Some((device, network)) = portal_client(&state, &headers, peer.ip()) else {
        return portal_response(StatusCode::BAD_REQUEST, portal::page(lang, &portal::View::NoDevice));
    };
    // A form posted from another site (a page the guest was lured to) redeems nothing:
    // browsers say so in Sec-Fetch-Site, and the form's own posts are same-origin.
    if headers.get("sec-fetch-site").is_some_and(|v| v.as_bytes() == b"cross-site") {
        return portal_response(
            StatusCode::FORBIDDEN,
            portal::page(lang, &portal::View::Form { network: &network, problem: Some(portal::Problem::Unavailable), code: "" }),
        );
    }
    let source = crate::http::client::source(&headers, peer.ip(), &state.config.trusted_proxies);
    let typed: String = form.code.chars().take(64).collect();
    match redeem_code(&state, source, &typed, &device, &network).await {
        Ok(r) => portal_response(
            StatusCode::OK,
            portal::page(
                lang,
                &portal::View::Connected { network: &network, ends_at_ms: r.ends_at, token: &r.token, token_expires_at_ms: r.expires_at },
            ),
        ),
        Err(e) => {
            let problem = match &e {
                ApiError::VoucherMalformed(_) => portal::Problem::Malformed,
                ApiError::VoucherNotFound => portal::Problem::NotFound,
                ApiError::VoucherUsed => portal::Problem::UsedElsewhere,
                ApiError::VoucherExpired => portal::Problem::Expired,
                ApiError::VoucherRevoked => portal::Problem::Revoked,
                ApiError::TooManyAttempts { retry_after_secs } => portal::Problem::TooManyAttempts { retry_after_secs: *retry_after_secs },
                ApiError::NetworkNotFound => portal::Problem::NetworkUnknown,
                ApiError::BadDevice => return portal_response(StatusCode::BAD_REQUEST, portal::page(lang, &portal::View::NoDevice)),
                _ => portal::Problem::Unavailable,
            };
            let mut response = portal_response(
                e.status(),
                portal::page(lang, &portal::View::Form { network: &network, problem: Some(problem), code: &typed }),
            );
            if let ApiError::TooManyAttempts { retry_after_secs } = e {
                response.headers_mut().insert(header::RETRY_AFTER, retry_after_secs.into());
            }
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guessing_budget_keeps_the_bound() {
        for live in [0, 1, 200, 201, 1000, 10_000, 1_000_000] {
            let b = daily_budget(live);
            assert!(b >= 1);
            let p = BUDGET_HORIZON_DAYS * b as f64 * (live.max(1) as f64) / codes::CODE_SPACE;
            assert!(p < GUESS_BOUND || b == 1, "live {live}: budget {b} gives {p}");
        }
        assert_eq!(daily_budget(200), 123);
        assert_eq!(daily_budget(1000), 24);
    }
}
