//! The tokengate control plane: issues and revokes API tokens, publishes the signing
//! keys and keeps proxies in sync. HTTP in, SQL out; the token rules themselves are in
//! `tokengate_rules`.
//!
//! [`start`] opens the database, runs the migrations, loads (or makes) the signing key
//! and the first admin; [`app`] builds the router; [`serve`] runs it until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use sqlx::AnyPool;
use tokengate_rules::scope::Prefix;
use tokengate_rules::{TokenKind, VerifyPolicy};
use tokio::sync::watch;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub mod audit;
pub mod cli;
pub mod config;
pub mod console;
pub mod db;
pub mod http;
pub mod identity;
pub mod limits;
pub mod sessions;
pub mod sync;
pub mod tokens;
pub mod vouchers;

pub use config::Config;
use http::error::ApiError;
pub use http::error::StartError;
use http::{metrics, openapi, wire};
use identity::passwords::Passwords;
pub use identity::users::GeneratedAdmin;
use identity::{auth, throttle, users};
use sync::{proxies, usage};
use tokens::keys::{self, KeyRing, Keys};
use tokens::scopes::{self, Catalogue};
use tokens::{explain, manage};

/// Everything a request handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub pool: AnyPool,
    pub config: Config,
    pub prefix: Prefix,
    pub catalogue: Catalogue,
    /// The operator's route table, the one the filter runs (`POST /explain` decides with it).
    pub routes: tokengate_rules::route::RouteTable,
    /// The control plane's own scopable routes and the flags they need.
    pub own_routes: tokengate_rules::route::RouteTable,
    pub keys: Keys,
    pub policy: VerifyPolicy,
    pub passwords: Passwords,
    /// The highest change-log version committed by this process; held sync calls
    /// wake when it moves.
    pub changes: watch::Sender<u64>,
    /// Set once at shutdown, so held sync calls answer at once.
    pub shutdown: watch::Sender<bool>,
    pub openapi: serde_json::Value,
    pub metrics: metrics::Metrics,
    /// The long polls held by this process, by proxy.
    pub held_polls: proxies::HeldPolls,
    /// Bumped on every sync call, so revocations waiting for propagation look again.
    pub contacts: watch::Sender<u64>,
    /// Bumped when another replica wrote its contacts (PostgreSQL notification).
    pub contacts_flushed: watch::Sender<u64>,
    /// The proxies' contacts with this replica, written to `proxies` in batches.
    pub proxy_contacts: proxies::Contacts,
    /// Sync answers shared by the held calls a change wakes.
    pub sync_feed: sync::Feed,
    /// The proxies' bearer and the answers' MAC key, derived from the proxy secret.
    pub proxy_keys: Option<tokengate_rules::sync::ProxyKeys>,
    /// The voucher keys (seed 000), from files in the data directory.
    pub voucher_keys: vouchers::VoucherKeys,
    /// The admin console's router cache.
    pub console: console::Shared,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Wakes held sync calls after a change up to `version` committed.
    pub fn announce(&self, version: u64) {
        self.changes.send_if_modified(|v| {
            let newer = version > *v;
            if newer {
                *v = version;
            }
            newer
        });
    }

    /// Ends held sync calls; the HTTP server stops on its own signal.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }
}

/// How many password hashes run at once (each takes 19 MiB for ~tens of ms).
const HASH_CONCURRENCY: usize = 4;

/// Pool, migrations, signing key, first admin. Returns the state and, when an admin was
/// generated, its credentials (the caller prints them once).
pub async fn start(config: Config) -> Result<(AppState, Option<GeneratedAdmin>), StartError> {
    let prefix = config.prefix().map_err(|e| StartError(e.0))?;
    let catalogue = Catalogue::new(&config.catalogue, &prefix).map_err(StartError)?;
    let own_routes = scopes::own_routes(&prefix).map_err(StartError)?;
    let routes = tokengate_rules::route::RouteTable::compile(&config.routes, &prefix)
        .map_err(|e| StartError(format!("TOKENGATE_CATALOGUE: {e}")))?;
    let pool = db::connect(&config.database_url, config.backend).await?;
    db::migrate(&pool, config.backend).await?;
    let keys = Keys::new(KeyRing::load_or_create(&pool, config.backend).await?);
    let voucher_keys = vouchers::VoucherKeys::load_or_create(&config.data_dir).map_err(StartError)?;
    vouchers::check_keys(&pool, &voucher_keys, &config.data_dir).await.map_err(StartError)?;
    let passwords = Passwords::new(HASH_CONCURRENCY).await.map_err(|e| StartError(format!("password hasher: {}", e.code())))?;
    let generated = users::ensure_admin(&pool, config.backend, &passwords, config.admin.as_ref()).await.map_err(StartError)?;
    if let Some(name) = &config.unsecured_login {
        tracing::warn!(user = %name, "unsecured logins are on: POST /login with \"type\": \"unsecured\" logs in as this user without a secret");
    }
    let (version, _) = db::sync_state(&pool).await.map_err(|e| StartError(format!("reading the sync state: {e}")))?;
    let policy = VerifyPolicy::new(&config.issuer, &[config.audience.as_str()], &[TokenKind::Api]);
    let openapi = openapi::document(crate::routes(&config));
    let state = AppState(Arc::new(Inner {
        pool,
        prefix,
        catalogue,
        routes,
        own_routes,
        keys,
        policy,
        passwords,
        changes: watch::Sender::new(version),
        shutdown: watch::Sender::new(false),
        openapi,
        metrics: metrics::Metrics::default(),
        held_polls: proxies::HeldPolls::default(),
        contacts: watch::Sender::new(0),
        contacts_flushed: watch::Sender::new(0),
        proxy_contacts: proxies::Contacts::default(),
        sync_feed: sync::Feed::default(),
        proxy_keys: config.proxy_secret.as_deref().map(|s| tokengate_rules::sync::ProxyKeys::derive(s.as_bytes())),
        voucher_keys,
        console: console::Shared::default(),
        config,
    }));
    Ok((state, generated))
}

/// Every route with its documentation: the API's under `TOKENGATE_API_PREFIX`, the
/// service's, the sync channel's and the portal's at the root. [`app`] serves them and
/// [`openapi::document`] describes them, from this one list.
pub fn routes(config: &Config) -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .merge(auth::router())
        .merge(identity::login::router())
        .merge(identity::accounts::router())
        .merge(identity::directory::router())
        .merge(sessions::router())
        .merge(tokens::router())
        .merge(scopes::router())
        .merge(explain::router())
        .merge(manage::router())
        .merge(keys::router())
        .merge(proxies::router())
        .merge(vouchers::router())
        .merge(audit::router())
        .routes(routes!(openapi_document));
    let mut root = OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(jwks))
        .merge(sync::router())
        .merge(usage::router())
        .merge(vouchers::portal_router());
    if config.metrics {
        root = root.routes(routes!(metrics_text));
    }
    let prefix = config.api_prefix.as_str();
    if prefix.is_empty() {
        root.merge(api)
    } else {
        root.nest(prefix, api)
    }
}

/// The whole HTTP app: the documented routes and the admin console.
pub fn app(state: AppState) -> Router {
    api_router(&state.config).merge(console::router()).layer(middleware::from_fn_with_state(state.clone(), log_request)).with_state(state)
}

/// The documented routes ([`routes`]) with the API's fallbacks and body limit, without
/// state: what [`app`] serves besides the console, and what the console dispatches its
/// API calls to in-process.
pub(crate) fn api_router(config: &Config) -> Router<AppState> {
    let (router, _) = routes(config).split_for_parts();
    router.method_not_allowed_fallback(method_not_allowed).fallback(not_found).layer(DefaultBodyLimit::max(limits::MAX_BODY_BYTES))
}

/// Serves until `shutdown` resolves, then drains: held sync calls answer at once and
/// in-flight requests finish.
pub async fn serve<L>(state: AppState, listener: L, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    std::net::SocketAddr: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let sweeper = tokio::spawn(sweep(state.clone()));
    let key_reloader = tokio::spawn(reload_keys(state.clone()));
    let session_sweeper = tokio::spawn(sessions::sweeper(state.clone()));
    let listener_task = (state.config.backend == config::Backend::Postgres).then(|| tokio::spawn(listen(state.clone())));
    let on_shutdown = state.clone();
    let state_for_flush = state.clone();
    let result = axum::serve(listener, app(state).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(async move {
            shutdown.await;
            on_shutdown.begin_shutdown();
        })
        .await;
    if let Err(e) = proxies::flush_contacts(&state_for_flush).await {
        tracing::warn!(error = %e, "writing the proxies' contacts at shutdown failed");
    }
    sweeper.abort();
    key_reloader.abort();
    session_sweeper.abort();
    if let Some(task) = listener_task {
        task.abort();
    }
    result
}

/// Change-log entries are kept this long past their token's expiry.
const SWEEP_GRACE_MS: i64 = 10 * 60 * 1000;

/// Every `TOKENGATE_SWEEP_SECS`: revokes idle tokens, and keeps the change log bounded
/// (an entry for an expired token can go, and a proxy whose `since` is older than what
/// was removed gets a snapshot instead of a delta).
async fn sweep(state: AppState) {
    let mut shutdown = state.shutdown.subscribe();
    let every = Duration::from_secs(state.config.sweep_secs);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = usage::sweep_idle(&state, db::now_ms()).await {
            tracing::warn!(error = %e, "sweeping idle tokens failed; will retry");
        }
        if let Err(e) = console::sweep_idle(&state, db::now_ms()).await {
            tracing::warn!(error = %e.message(), "revoking idle console sessions failed; will retry");
        }
        if let Err(e) = sweep_once(&state, db::now_ms()).await {
            tracing::warn!(error = %e, "sweeping the change log failed; will retry");
        }
    }
}

/// PostgreSQL replicas: LISTEN for change-log inserts committed by any replica, and wake
/// the sync calls held here at once (a held call still re-reads the version every
/// `TOKENGATE_SYNC_RECHECK_MS`, in case a notification is lost on a reconnect).
async fn listen(state: AppState) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match sqlx::postgres::PgListener::connect(&state.config.database_url).await {
            Ok(mut listener) => match listener.listen(db::NOTIFY_CHANNEL).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    loop {
                        match listener.recv().await {
                            Ok(n) => {
                                if n.payload() == proxies::CONTACTS_NOTICE {
                                    // Another replica wrote contacts: waiting revocations look again.
                                    state.contacts_flushed.send_modify(|c| *c = c.wrapping_add(1));
                                    continue;
                                }
                                let mut parts = n.payload().split(' ');
                                let kind = parts.next().unwrap_or_default();
                                if let Some(version) = parts.next().and_then(|v| v.parse::<u64>().ok()) {
                                    if kind == "keys" {
                                        if let Err(e) = state.keys.reload(&state.pool).await {
                                            tracing::warn!(error = %e, "reloading the keys after a notification failed");
                                        }
                                    }
                                    state.announce(version);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "LISTEN connection lost; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "LISTEN failed; retrying"),
            },
            Err(e) => tracing::warn!(error = %e, "cannot open the LISTEN connection; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Re-reads the key set every [`keys::RELOAD_EVERY`], so a rotation on another replica
/// (and a retired key dropping out) reaches this one.
async fn reload_keys(state: AppState) {
    let mut shutdown = state.shutdown.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(keys::RELOAD_EVERY) => {}
            _ = shutdown.changed() => return,
        }
        if let Err(e) = state.keys.reload(&state.pool).await {
            tracing::warn!(error = %e, "reloading the signing keys failed; will retry");
        }
    }
}

/// One sweep at `now` (ms). Public for the tests.
pub async fn sweep_once(state: &AppState, now: i64) -> Result<u64, sqlx::Error> {
    let cutoff = now.saturating_sub(SWEEP_GRACE_MS);
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let highest: Option<i64> =
        sqlx::query_scalar("SELECT MAX(version) FROM changes WHERE expires_at < $1").bind(cutoff).fetch_one(&mut *tx).await?;
    let mut removed = 0;
    if let Some(highest) = highest {
        removed = sqlx::query("DELETE FROM changes WHERE expires_at < $1").bind(cutoff).execute(&mut *tx).await?.rows_affected();
        sqlx::query("UPDATE sync_state SET pruned_through = $1 WHERE id = 1 AND pruned_through < $1")
            .bind(highest)
            .execute(&mut *tx)
            .await?;
    }
    throttle::sweep(&mut tx, now).await?;
    sessions::prune(&mut tx, now).await?;
    audit::prune(&mut tx, state.config.audit_keep_days, now).await?;
    tx.commit().await?;
    if removed > 0 {
        tracing::info!(removed, "swept expired change-log entries");
    }
    Ok(removed)
}

/// Liveness and database reachability.
#[utoipa::path(get, path = "/healthz", operation_id = "health", tag = "service",
    responses(
        (status = 200, description = "The database answers.", body = wire::Health),
        (status = 503, description = "database_unavailable (Retry-After: 1).", body = openapi::ErrorBody),
    ))]
async fn health(State(state): State<AppState>) -> Result<Json<wire::Health>, ApiError> {
    if db::ping(&state.pool).await {
        Ok(Json(wire::Health { status: "ok".into() }))
    } else {
        Err(ApiError::DatabaseUnavailable)
    }
}

/// The public keys that verify tokengate tokens: a JWK set (RFC 8037 OKP, Ed25519), cached
/// for 60 s.
#[utoipa::path(get, path = "/.well-known/jwks.json", operation_id = "jwks", tag = "service",
    responses((status = 200, description = "The published keys.", body = openapi::Jwks)))]
async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys.current().jwks()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    response
}

/// Prometheus metrics (OpenMetrics text, prometheus-client), no authentication
/// (`TOKENGATE_METRICS=off` removes the route). Counters are this process's; the version
/// and the live proxies are GET /proxies's count. README "Metrics" lists the families.
#[utoipa::path(get, path = "/metrics", operation_id = "metrics", tag = "service",
    responses(
        (status = 200, description = "Metrics.", body = String, content_type = "application/openmetrics-text"),
        (status = 503, description = "database_unavailable (Retry-After: 1).", body = openapi::ErrorBody),
    ))]
async fn metrics_text(State(state): State<AppState>) -> Result<Response, ApiError> {
    let (version, _) = db::sync_state(&state.pool).await?;
    // Live as GET /proxies says: this replica's contacts merged over every replica's.
    let live = proxies::proxies(&state).await?.iter().filter(|p| p.live).count();
    let body = state.metrics.render(version, u64::try_from(live).unwrap_or(u64::MAX));
    let mut response = body.into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(metrics::CONTENT_TYPE));
    Ok(response)
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", operation_id = "openapi", tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document of this control plane.", body = Object)))]
async fn openapi_document(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.openapi.clone())
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// One line per request: method, path (never the query, which could hold a token),
/// status and time.
pub(crate) async fn log_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // The route's pattern (`/api/v1/tokens/{id}`), never the raw path: a label per token
    // id would grow without bound.
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_owned());
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let elapsed = started.elapsed();
    // A long poll's time is the proxy's wait, not the server's latency.
    if path != tokengate_rules::sync::PATH {
        state.metrics.observe(route.as_deref(), status.as_u16(), elapsed);
    }
    let ms = elapsed.as_millis();
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), ms, "request");
    } else if status == StatusCode::OK && (path == "/healthz" || path == tokengate_rules::sync::PATH) {
        // Health probes and the proxies' sync calls (one per proxy per change) would
        // drown the log at info.
        tracing::debug!(%method, %path, status = status.as_u16(), ms, "request");
    } else {
        tracing::info!(%method, %path, status = status.as_u16(), ms, "request");
    }
    response
}
