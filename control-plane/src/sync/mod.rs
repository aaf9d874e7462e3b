//! `GET /sync/v1/changes`: the proxies' channel (wire format in `tokengate_rules::sync`).
//!
//! `since=0`, a `since` behind what the change log keeps, or a `since` ahead of the
//! current version get a snapshot of every live revocation. Otherwise the answer is the
//! changes after `since`; when there are none the call is held (long poll) until a
//! change commits, `wait_ms` passes or the server shuts down.
//!
//! Every answer carries `x-tokengate-sync-mac`: HMAC-SHA256 over the call's `nonce` and
//! the exact body, under a key derived from the proxy secret (`rules::sync::ProxyKeys`);
//! proxies apply nothing whose MAC does not match. Proxies authenticate with a bearer
//! derived from the same secret, never the secret itself.

pub mod proxies;
pub mod usage;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokengate_rules::sync::{
    valid_nonce, Amendment, LiveSession, PublicKey, Revocation, SyncResponse, BINARY_CONTENT_TYPE, BINARY_PAGE_FACTOR, FORMAT_BINARY,
    MAC_HEADER, MAX_WAIT_MS, PATH, PROTOCOL,
};
use tokengate_rules::token::DEFAULT_LEEWAY_SECS;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::http::openapi::ErrorBody;
use crate::tokens::keys;
use crate::AppState;

/// A revocation matters until its token expired beyond every verifier's leeway.
const GRACE_MS: i64 = 2 * DEFAULT_LEEWAY_SECS as i64 * 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(changes))
}

#[derive(Deserialize)]
struct SyncQuery {
    since: Option<String>,
    wait_ms: Option<String>,
    proxy: Option<String>,
    /// The `next` of the previous snapshot part.
    after: Option<String>,
    /// New for every call; the answer's MAC covers it, so no answer can be replayed.
    nonce: Option<String>,
    /// `bin`: snapshot parts as a binary answer (`rules::sync::BinaryAnswer`, 16 bytes a
    /// revocation, [`BINARY_PAGE_FACTOR`] times the JSON page). Anything else: JSON.
    format: Option<String>,
}

#[utoipa::path(get, path = PATH, operation_id = "syncChanges", tag = "sync", security(("proxy" = [])),
    summary = "Proxy sync: revocations, amendments, sessions and keys since a version (long poll)",
    description = "since=0, a since older than the change log keeps, or a since ahead of the current version answer a snapshot (in parts: ask again with `after=<next>`). Otherwise the changes after `since`; with none, the call is held up to wait_ms (at most 30000) and then answers the same version. `keys` is always the whole public key set. The answer carries a MAC over the request's nonce (header x-tokengate-mac).",
    params(
        ("since" = Option<u64>, Query, description = "The version the proxy has applied; 0 asks for a snapshot."),
        ("wait_ms" = Option<u64>, Query, maximum = 30000, description = "Hold the call up to this long when nothing changed."),
        ("proxy" = Option<String>, Query, pattern = "^[A-Za-z0-9._:-]{1,64}$", description = "The proxy's id, for GET /proxies."),
        ("after" = Option<String>, Query, description = "The `next` of the previous snapshot part."),
        ("nonce" = Option<String>, Query, pattern = "^[A-Za-z0-9._-]{1,64}$", description = "New for every call; the answer's MAC covers it."),
        ("format" = Option<String>, Query, description = "`bin`: snapshot parts as application/vnd.tokengate.sync (magic `TGS\\x01`, u32 LE header length, the answer as JSON without `revoked`, u32 LE record count, 16-byte records: 12-byte id, u32 LE expiry), with 4 times as many revocations a part. Deltas stay JSON. Default: JSON."),
    ),
    responses(
        (status = 200, description = "Changes, or a snapshot part.", body = tokengate_rules::sync::SyncResponse),
        (status = 400, description = "bad_query", body = ErrorBody),
        (status = 401, description = "bad_proxy_credential (also every call when no proxy secret is configured)", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
async fn changes(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<SyncQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let nonce = query.as_ref().ok().and_then(|q| q.nonce.clone()).unwrap_or_default();
    let binary = query.as_ref().ok().and_then(|q| q.format.as_deref()) == Some(FORMAT_BINARY);
    let answer = serve_changes(&state, &headers, query, binary).await;
    let m = &state.metrics;
    match &answer {
        Ok(a) => match a.kind {
            Kind::Snapshot => m.sync_snapshot.inc(),
            Kind::Unchanged => m.sync_unchanged.inc(),
            Kind::Delta => m.sync_delta.inc(),
        },
        Err(ApiError::BadProxyCredential | ApiError::BadQuery(_)) => m.sync_refused.inc(),
        Err(_) => m.sync_failed.inc(),
    }
    let answer = answer?;
    let Some(keys) = state.proxy_keys.as_ref() else { return Err(ApiError::BadProxyCredential) };
    // The body may be shared by every proxy woken by the same change; the MAC over this
    // call's nonce is the only per-call work.
    let mac = HeaderValue::from_str(&keys.answer_mac(&nonce, &answer.body)).map_err(|_| ApiError::Internal)?;
    Ok((
        [(header::CONTENT_TYPE, HeaderValue::from_static(answer.content_type)), (header::HeaderName::from_static(MAC_HEADER), mac)],
        answer.body.clone(),
    )
        .into_response())
}

/// What an answer is, for the metrics.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Snapshot,
    Delta,
    Unchanged,
}

/// An answer's body, encoded once.
struct Encoded {
    body: Bytes,
    content_type: &'static str,
    kind: Kind,
}

impl Encoded {
    fn new(answer: SyncResponse, binary: bool) -> Result<Encoded, ApiError> {
        let kind = if answer.snapshot {
            Kind::Snapshot
        } else if answer.revoked.is_empty() && answer.amended.is_empty() && answer.sessions.is_empty() && answer.ended.is_empty() {
            Kind::Unchanged
        } else {
            Kind::Delta
        };
        // Snapshot parts in binary when asked: deltas are small, and JSON reads better.
        let (body, content_type) = if binary && answer.snapshot {
            (tokengate_rules::sync::encode_binary(answer).map_err(|e| encoding_failed(&e))?, BINARY_CONTENT_TYPE)
        } else {
            (serde_json::to_vec(&answer).map_err(|e| encoding_failed(&e))?, "application/json")
        };
        Ok(Encoded { body: Bytes::from(body), content_type, kind })
    }
}

fn encoding_failed(e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "encoding a sync answer failed");
    ApiError::Internal
}

/// Counts a held long poll for as long as it lives (also when the client goes away).
struct Held<'a>(&'a AppState, &'a str);

impl<'a> Held<'a> {
    fn new(state: &'a AppState, proxy: &'a str) -> Held<'a> {
        state.metrics.sync_held.inc();
        state.held_polls.add(proxy);
        Held(state, proxy)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.metrics.sync_held.dec();
        self.0.held_polls.remove(self.1);
    }
}

async fn serve_changes(
    state: &AppState,
    headers: &HeaderMap,
    query: Result<Query<SyncQuery>, QueryRejection>,
    binary: bool,
) -> Result<Arc<Encoded>, ApiError> {
    let proxy_hint = query.as_ref().ok().and_then(|q| q.proxy.clone()).unwrap_or_default();
    if !authentic(state, headers) {
        // The proxy id helps the operator find the misconfigured proxy; the presented
        // credential is never logged.
        tracing::warn!(proxy = %truncate(&proxy_hint, 64), "sync call with a missing or wrong proxy credential");
        return Err(ApiError::BadProxyCredential);
    }
    let Query(query) = query.map_err(|e| ApiError::BadQuery(format!("bad query string: {}", e.body_text())))?;
    let since = parse_number(query.since.as_deref(), "since")?;
    let wait_ms = parse_number(query.wait_ms.as_deref(), "wait_ms")?.min(MAX_WAIT_MS);
    let proxy = query.proxy.unwrap_or_else(|| "unknown".to_owned());
    if !valid_proxy_id(&proxy) {
        return Err(ApiError::BadQuery("proxy must be 1 to 64 characters of [A-Za-z0-9._:-]".into()));
    }
    // Optional here (curl, tools): a proxy always sends one and applies only answers
    // whose MAC covers its own, so an answer to a call without one is of no use to it.
    if query.nonce.as_deref().is_some_and(|n| !valid_nonce(n)) {
        return Err(ApiError::BadQuery("nonce must be 1 to 64 characters of [A-Za-z0-9._-], new for every call".into()));
    }
    let after = query.after.filter(|a| !a.is_empty());
    if let Some(a) = &after {
        if since != 0 || a.len() > 64 || !a.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ApiError::BadQuery("after must be the `next` of a snapshot part, with since=0".into()));
        }
    }
    proxies::record_contact(state, &proxy, since);

    // The log starts at version 1 (migration 0006), so `since=0` is always a proxy with
    // nothing yet, answered with a snapshot at once.
    if since == 0 || after.is_some() {
        return Ok(Arc::new(snapshot_part(state, after.as_deref(), binary).await?));
    }
    // Subscribe before reading, so a change committed in between is not missed.
    let mut committed = state.changes.subscribe();
    let mut shutdown = state.shutdown.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
    let recheck_every = Duration::from_millis(state.config.sync_recheck_ms);
    let mut held = None;
    loop {
        // The highest version this replica knows committed (its own commits, other
        // replicas' notifications, the shared recheck): a proxy at it is held without
        // reading the database.
        let known = *committed.borrow_and_update();
        if since != known {
            match state.sync_feed.step(state, since, known).await? {
                Step::Answer(answer) => return Ok(answer),
                Step::Snapshot => return Ok(Arc::new(snapshot_part(state, None, binary).await?)),
                Step::Current => {}
            }
        }
        let now = tokio::time::Instant::now();
        if now >= deadline || *shutdown.borrow() {
            break;
        }
        held.get_or_insert_with(|| Held::new(state, &proxy));
        let recheck = deadline.min(now + recheck_every);
        tokio::select! {
            changed = committed.changed() => {
                if changed.is_err() {
                    tokio::time::sleep_until(recheck).await;
                }
            }
            _ = tokio::time::sleep_until(recheck) => state.sync_feed.recheck(state, recheck_every).await?,
            _ = shutdown.changed() => {}
        }
    }
    // Nothing new: the same version, which still tells the proxy it is in sync.
    let keys = keys::published(&state.pool, now_ms()).await?;
    Ok(Arc::new(Encoded::new(response(since, false, keys, Vec::new(), Vec::new()), false)?))
}

/// What a proxy at `since` gets next.
#[derive(Clone)]
enum Step {
    /// The changes after `since`, encoded once for every proxy at `since`.
    Answer(Arc<Encoded>),
    /// `since` is older than the change log keeps, or ahead of the current version.
    Snapshot,
    /// `since` is the current version: hold the call.
    Current,
}

/// How long a shared answer is handed out: the key set in it is read with it, and a key
/// may be published by time alone.
const SHARE_FOR: Duration = Duration::from_secs(1);

/// One read of the change log per version, whatever the number of proxies.
///
/// A commit wakes every held call at once; they all ask for the changes after the same
/// `since`, so the first reads them in one transaction and encodes the answer, and the
/// rest wait for it and send the same bytes (each with its own MAC). Held calls re-read
/// the version through one shared, rate-limited read ([`Feed::recheck`]) rather than one
/// each. Snapshot parts are not shared: they are rare and large.
#[derive(Default)]
pub struct Feed {
    shared: std::sync::Mutex<Shared>,
    rechecked: tokio::sync::Mutex<Option<tokio::time::Instant>>,
    /// Tests only: held (write) to pause every change-log read between its version read
    /// and its range read; `paused` counts the reads that reached that point.
    #[doc(hidden)]
    pub pause: tokio::sync::RwLock<()>,
    #[doc(hidden)]
    pub paused: std::sync::atomic::AtomicUsize,
}

/// The steps read for the known version `known`, by `since`.
#[derive(Default)]
struct Shared {
    known: u64,
    by_since: HashMap<u64, Slot>,
}

type Slot = Arc<tokio::sync::OnceCell<(tokio::time::Instant, Step)>>;

impl Feed {
    /// Where a test can stop a read ([`Feed::pause`]); an uncontended read lock otherwise.
    async fn test_pause(&self) {
        self.paused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        drop(self.pause.read().await);
    }

    async fn step(&self, state: &AppState, since: u64, known: u64) -> Result<Step, ApiError> {
        for _ in 0..2 {
            let slot = {
                let mut shared = self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if known > shared.known {
                    shared.known = known;
                    shared.by_since.clear();
                }
                if known < shared.known {
                    // Woken by an older version than another call already saw: read alone.
                    None
                } else {
                    Some(shared.by_since.entry(since).or_default().clone())
                }
            };
            let Some(slot) = slot else { break };
            let (at, step) =
                slot.get_or_try_init(|| async { Ok::<_, ApiError>((tokio::time::Instant::now(), read_step(state, since).await?)) }).await?;
            if at.elapsed() <= SHARE_FOR {
                return Ok(step.clone());
            }
            // Too old to hand out: drop it (unless another call already replaced it).
            let mut shared = self.shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if shared.by_since.get(&since).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                shared.by_since.remove(&since);
            }
        }
        read_step(state, since).await
    }

    /// Re-reads the version from the database at most once per `every` for all held calls
    /// (a change committed by another replica whose notification was lost, or by a
    /// process that does not notify).
    async fn recheck(&self, state: &AppState, every: Duration) -> Result<(), ApiError> {
        let mut last = self.rechecked.lock().await;
        if last.is_some_and(|at| at.elapsed() < every) {
            return Ok(());
        }
        let (version, _) = db::sync_state(&state.pool).await?;
        *last = Some(tokio::time::Instant::now());
        state.announce(version);
        Ok(())
    }
}

/// The changes after `since` (not 0), read in one transaction that sees one snapshot
/// ([`db::begin_read`]): the sweeper may prune the range's entries between two of its
/// statements, and a delta read partly before and partly after that would miss them with
/// a version that no longer asks for a snapshot (a proxy lagging more than the sweep's
/// grace would never learn of a session's end). In one snapshot the range is whole, or
/// `pruned_through` already says "snapshot".
async fn read_step(state: &AppState, since: u64) -> Result<Step, ApiError> {
    // Read the version first: every change up to it has committed (versions commit in
    // order), so the rows read next include them all.
    state.metrics.sync_reads.inc();
    let mut tx = db::begin_read(&state.pool, state.config.backend).await?;
    let (version, pruned_through) = db::sync_state(&mut *tx).await?;
    state.announce(version);
    if since < pruned_through || since > version {
        tx.commit().await?;
        return Ok(Step::Snapshot);
    }
    if since == version {
        tx.commit().await?;
        return Ok(Step::Current);
    }
    state.sync_feed.test_pause().await;
    let live_after = now_ms().saturating_sub(GRACE_MS);
    // The range's entries in one read, split by kind here; the tokens and sessions they
    // name are read only when there are some (a run of revocations needs no more).
    let entries: Vec<(String, Option<String>, i64)> =
        sqlx::query_as("SELECT kind, token_id, expires_at FROM changes WHERE version > $1 AND version <= $2 ORDER BY version")
            .bind(db::to_i64(since))
            .bind(db::to_i64(version))
            .fetch_all(&mut *tx)
            .await?;
    let (mut rows, mut ended) = (Vec::new(), Vec::new());
    let (mut amended_ids, mut session_ids) = (std::collections::BTreeSet::new(), std::collections::BTreeSet::new());
    for (kind, token_id, expires_at) in entries {
        let Some(id) = token_id else { continue };
        match kind.as_str() {
            "revoke" if expires_at > live_after => rows.push((id, expires_at)),
            "end" => ended.push(id),
            "amend" => {
                amended_ids.insert(id);
            }
            "session" => {
                session_ids.insert(id);
            }
            _ => {}
        }
    }
    // Each amended token once, with its state as it is now (an entry carries the whole
    // amendable state, so the latest supersedes the earlier ones). A token revoked since
    // needs none: its revocation is in this answer or the next.
    let amended: Vec<AmendedRow> = rows_with_ids(
        &mut tx,
        &format!(
            "SELECT {AMENDED_COLUMNS} FROM tokens WHERE revoked_at IS NULL AND COALESCE(signed_expires_at, expires_at) > $1 AND id IN"
        ),
        live_after,
        &amended_ids,
    )
    .await?;
    // Sessions started in the range and still live, and those ended in it (a session
    // started and ended in the range is only in `ended`).
    let sessions: Vec<(String, i64)> = rows_with_ids(
        &mut tx,
        "SELECT id, expires_at FROM sessions WHERE ended_at IS NULL AND expires_at > $1 AND id IN",
        live_after,
        &session_ids,
    )
    .await?;
    let keys = keys::published(&mut *tx, now_ms()).await?;
    tx.commit().await?;
    let mut answer = response(version, false, keys, revocations(rows), amendments(amended)?);
    answer.sessions = live_sessions(sessions);
    answer.ended = ended;
    Ok(Step::Answer(Arc::new(Encoded::new(answer, false)?)))
}

/// The rows `select` (ending in `id IN`, with `$1` bound to `first`) finds for `ids`, in
/// batches of 500, ordered by id (the set is sorted, and each batch is read in order).
async fn rows_with_ids<T>(
    tx: &mut sqlx::AnyConnection,
    select: &str,
    first: i64,
    ids: &std::collections::BTreeSet<String>,
) -> Result<Vec<T>, sqlx::Error>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    let ids: Vec<&String> = ids.iter().collect();
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let marks = (2..chunk.len() + 2).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ");
        let sql = format!("{select} ({marks}) ORDER BY id");
        let mut query = sqlx::query_as::<_, T>(&sql).bind(first);
        for id in chunk {
            query = query.bind(id.as_str());
        }
        out.extend(query.fetch_all(&mut *tx).await?);
    }
    Ok(out)
}

/// A snapshot part: every live revocation (in parts of `snapshot_page`, ordered by id),
/// and in the first part the amendments, live sessions and revoked voucher activations.
async fn snapshot_part(state: &AppState, after: Option<&str>, binary: bool) -> Result<Encoded, ApiError> {
    let mut tx = state.pool.begin().await?;
    let (version, _) = db::sync_state(&mut *tx).await?;
    let live_after = now_ms().saturating_sub(GRACE_MS);
    // A binary part holds more: 16 bytes a revocation against about 50 in JSON.
    let page = if binary { state.config.snapshot_page.saturating_mul(BINARY_PAGE_FACTOR) } else { state.config.snapshot_page };
    let mut rows = revoked_page(&mut tx, state.config.backend, live_after, after.unwrap_or(""), page.saturating_add(1)).await?;
    let next = if rows.len() as u64 > page {
        rows.truncate(usize::try_from(page).unwrap_or(usize::MAX));
        rows.last().map(|(id, _)| id.clone())
    } else {
        None
    };
    let amended: Vec<AmendedRow> = if after.is_none() {
        sqlx::query_as(&format!(
            "SELECT {AMENDED_COLUMNS} FROM tokens WHERE amended_at IS NOT NULL AND revoked_at IS NULL \
             AND COALESCE(signed_expires_at, expires_at) > $1 ORDER BY id"
        ))
        .bind(live_after)
        .fetch_all(&mut *tx)
        .await?
    } else {
        Vec::new()
    };
    // The live sessions, whole, in the first part.
    let sessions: Vec<(String, i64)> = if after.is_none() {
        sqlx::query_as("SELECT id, expires_at FROM sessions WHERE ended_at IS NULL AND expires_at > $1 ORDER BY id")
            .bind(live_after)
            .fetch_all(&mut *tx)
            .await?
    } else {
        Vec::new()
    };
    // Revoked voucher activations (seed 000), whole, in the first part: their tokens
    // live a day at most, so these are few.
    if after.is_none() {
        let revoked_activations: Vec<(String, i64)> = sqlx::query_as(
            "SELECT id, token_expires_at FROM voucher_activations WHERE revoked_at IS NOT NULL AND token_expires_at > $1 ORDER BY id",
        )
        .bind(live_after)
        .fetch_all(&mut *tx)
        .await?;
        rows.extend(revoked_activations);
    }
    let keys = keys::published(&mut *tx, now_ms()).await?;
    tx.commit().await?;
    let mut answer = response(version, true, keys, revocations(rows), amendments(amended)?);
    answer.next = next;
    answer.sessions = live_sessions(sessions);
    Encoded::new(answer, binary)
}

/// Up to `limit` live revoked tokens with an id above `after`, in id order: (id, expiry ms).
///
/// Read as one aggregated row rather than a row per token: through sqlx's `Any` driver a
/// row costs about 1 µs, most of a 1M snapshot's time (issue 14), while the database
/// concatenates 400k ids in a few milliseconds. The partial index `tokens_revoked_by_id`
/// (migration 0017) covers the inner query.
async fn revoked_page(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: crate::config::Backend,
    live_after: i64,
    after: &str,
    limit: u64,
) -> Result<Vec<(String, i64)>, ApiError> {
    let concat = match backend {
        crate::config::Backend::Sqlite => "group_concat(id || ':' || exp, ',')",
        crate::config::Backend::Postgres => "string_agg(id || ':' || exp::text, ',')",
    };
    let (count, text): (i64, Option<String>) = sqlx::query_as(&format!(
        "SELECT COUNT(*), {concat} FROM (SELECT id, COALESCE(signed_expires_at, expires_at) AS exp FROM tokens \
         WHERE revoked_at IS NOT NULL AND COALESCE(signed_expires_at, expires_at) > $1 AND id > $2 ORDER BY id LIMIT $3) page"
    ))
    .bind(live_after)
    .bind(after)
    .bind(db::to_i64(limit))
    .fetch_one(&mut **tx)
    .await?;
    let text = text.unwrap_or_default();
    let mut rows = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
    for entry in text.split(',').filter(|e| !e.is_empty()) {
        // Ids are `[0-9a-f]` and expiries digits, so the last ':' splits them.
        let parsed = entry.rsplit_once(':').and_then(|(id, exp)| Some((id.to_owned(), exp.parse::<i64>().ok()?)));
        let Some(row) = parsed else {
            tracing::error!("a revoked token's row did not read back as id:expiry");
            return Err(ApiError::Internal);
        };
        rows.push(row);
    }
    // Token ids are hex (`tokens::is_token_id`); one with a ',' would be lost, so refuse
    // to answer rather than send a snapshot without it.
    if i64::try_from(rows.len()).ok() != Some(count) {
        tracing::error!(count, read = rows.len(), "the revoked tokens did not read back one for one");
        return Err(ApiError::Internal);
    }
    // The aggregate's order is the database's; the page is ordered by id.
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(rows)
}

fn live_sessions(rows: Vec<(String, i64)>) -> Vec<LiveSession> {
    rows.into_iter().map(|(jti, expires_at)| LiveSession { jti, exp: db::to_u64(expires_at) / 1000 }).collect()
}

const AMENDED_COLUMNS: &str = AmendedRow::COLUMNS;

/// An amended token's row (the guard's shape, which knows how to make the amendment).
type AmendedRow = crate::tokens::guard::TokenRow;

fn amendments(rows: Vec<AmendedRow>) -> Result<Vec<Amendment>, ApiError> {
    rows.iter().map(crate::tokens::guard::TokenRow::amendment).collect()
}

fn revocations(rows: Vec<(String, i64)>) -> Vec<Revocation> {
    rows.into_iter().map(|(jti, expires_at)| Revocation { jti, exp: db::to_u64(expires_at) / 1000 }).collect()
}

/// The key set is read in the same transaction as the version, so an answer that brings a
/// proxy to a version always carries the keys committed by then (a rotation's new key
/// included), whichever replica answers.
fn response(version: u64, snapshot: bool, keys: Vec<PublicKey>, revoked: Vec<Revocation>, amended: Vec<Amendment>) -> SyncResponse {
    SyncResponse {
        protocol: PROTOCOL,
        version,
        snapshot,
        keys,
        revoked,
        amended,
        server_time: db::to_u64(now_ms()),
        next: None,
        sessions: Vec::new(),
        ended: Vec::new(),
    }
}

/// Compares the presented bearer with the one derived from the proxy secret, in constant
/// time (over SHA-256 digests, so the length leaks nothing either).
pub(crate) fn authentic(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(secret) = state.proxy_keys.as_ref().map(tokengate_rules::sync::ProxyKeys::bearer) else { return false };
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else { return false };
    let Some(presented) = value.to_str().ok().and_then(|v| tokengate_rules::denial::bearer(v).ok().flatten()) else {
        return false;
    };
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(secret.as_bytes());
    a.ct_eq(&b).into()
}

fn parse_number(raw: Option<&str>, name: &str) -> Result<u64, ApiError> {
    match raw {
        None => Ok(0),
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|_| s.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| ApiError::BadQuery(format!("{name} must be a whole number"))),
    }
}

pub(crate) fn valid_proxy_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).filter(|c| !c.is_control()).collect()
}
