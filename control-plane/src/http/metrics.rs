//! `GET /metrics`: the control plane's metrics in the OpenMetrics text format, kept in a
//! `prometheus-client` registry per process (one per [`crate::AppState`], so tests that run
//! several apps in one process do not share counters).
//!
//! What is counted: tokens issued, revocations, amendments, idle revocations, sessions,
//! key rotations, credential attempts by kind and outcome, usage reports, vouchers, sync
//! calls by result, the long polls held, the change-log version and live proxies (set at
//! each scrape), API request latency by route and status, and how long a change took to
//! be applied by every live proxy (`propagation`).

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A counter the handlers bump (a `prometheus-client` counter: cheap to clone, shared).
#[derive(Clone, Default)]
pub struct Counter(PromCounter);

impl Counter {
    pub fn inc(&self) {
        self.0.inc();
    }

    pub fn add(&self, n: usize) {
        self.0.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// Label sets: a few fixed keys with their values.
type Labels = Vec<(&'static str, String)>;

/// The upper bounds (seconds) of the request-latency histogram.
const LATENCY_BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];
/// The upper bounds (seconds) of the propagation histogram: a change applied by every live
/// proxy (BENCHMARKS.md: about 10 ms at p99), up to the 10 s a revocation may wait.
const PROPAGATION_BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    pub tokens_issued: Counter,
    pub revocations: Counter,
    pub amendments: Counter,
    pub idle_revocations: Counter,
    pub sessions_started: Counter,
    pub sessions_ended: Counter,
    pub key_rotations: Counter,
    pub login_failures: Counter,
    pub login_throttled: Counter,
    pub usage_reports: Counter,
    pub vouchers_generated: Counter,
    pub vouchers_redeemed: Counter,
    pub voucher_failures: Counter,
    /// Sync calls by how they ended.
    pub sync_delta: Counter,
    pub sync_snapshot: Counter,
    pub sync_unchanged: Counter,
    pub sync_refused: Counter,
    pub sync_failed: Counter,
    /// Change-log reads made for delta answers (one serves every proxy at the same version).
    pub sync_reads: Counter,
    /// Long polls held right now.
    pub sync_held: Gauge,
    version: Gauge,
    proxies_live: Gauge,
    /// Credential attempts by kind (`password`, `pin`, `token`, `voucher`) and outcome
    /// (`success`, `failure`, `throttled`).
    attempts: Family<Labels, PromCounter>,
    /// API request latency by route (the matched pattern, never the raw path) and status.
    requests: Family<Labels, Histogram, fn() -> Histogram>,
    propagation: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tokengate");
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.0.clone());
            c
        };
        let tokens_issued = counter(&mut registry, "tokens_issued", "Tokens issued.");
        let revocations =
            counter(&mut registry, "revocations", "Tokens revoked (descendants, idle tokens and voucher activations included).");
        let amendments = counter(&mut registry, "amendments", "Token amendments (seed 001 update).");
        let idle_revocations = counter(&mut registry, "idle_revocations", "Tokens revoked by the idle sweep.");
        let sessions_started = counter(&mut registry, "sessions_started", "Seed-003 sessions started (POST /token/login).");
        let sessions_ended = counter(&mut registry, "sessions_ended", "Sessions ended: logout, idle, token revoked, user deleted.");
        let key_rotations = counter(&mut registry, "key_rotations", "Signing key rotations.");
        let login_failures = counter(&mut registry, "login_failures", "Wrong user name or password at POST /auth and POST /login.");
        let login_throttled = counter(&mut registry, "login_throttled", "Credential attempts refused by the throttle (429).");
        let usage_reports = counter(&mut registry, "usage_reports", "Usage reports accepted from proxies.");
        let vouchers_generated = counter(&mut registry, "vouchers_generated", "Wi-Fi vouchers generated (seed 000).");
        let vouchers_redeemed = counter(&mut registry, "vouchers_redeemed", "Voucher redemptions that gave an access token.");
        let voucher_failures =
            counter(&mut registry, "voucher_failures", "Redemptions refused after a lookup (wrong, used, expired or revoked code).");
        let sync_calls: Family<Labels, PromCounter> = Family::default();
        registry.register("sync_calls", "Sync calls by result.", sync_calls.clone());
        let by_result = |result: &str| Counter(sync_calls.get_or_create_owned(&vec![("result", result.to_owned())]));
        let (sync_delta, sync_snapshot, sync_unchanged, sync_refused, sync_failed) =
            (by_result("delta"), by_result("snapshot"), by_result("unchanged"), by_result("refused"), by_result("failed"));
        let sync_reads = counter(
            &mut registry,
            "sync_change_reads",
            "Change-log reads for sync deltas; one is shared by every held proxy at the same version, so this grows with changes, not proxies.",
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let g = Gauge::default();
            registry.register(name, help, g.clone());
            g
        };
        let sync_held = gauge(&mut registry, "sync_held", "Long polls held by this process now.");
        let version = gauge(&mut registry, "sync_version", "The change-log version.");
        let proxies_live = gauge(&mut registry, "proxies_live", "Proxies seen within the last 60 s.");
        let attempts: Family<Labels, PromCounter> = Family::default();
        registry.register(
            "credential_attempts",
            "Credential attempts (passwords, PINs, token logins, voucher codes) by kind and outcome.",
            attempts.clone(),
        );
        let requests: Family<Labels, Histogram, fn() -> Histogram> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "API request latency by route and status (long polls excluded).",
            requests.clone(),
        );
        let propagation = Histogram::new(PROPAGATION_BUCKETS);
        registry.register(
            "propagation_seconds",
            "From a change's commit until every live proxy applied it (revocations, rotations, sessions and voucher revocations that waited for the proxies).",
            propagation.clone(),
        );
        Metrics {
            registry,
            tokens_issued,
            revocations,
            amendments,
            idle_revocations,
            sessions_started,
            sessions_ended,
            key_rotations,
            login_failures,
            login_throttled,
            usage_reports,
            vouchers_generated,
            vouchers_redeemed,
            voucher_failures,
            sync_delta,
            sync_snapshot,
            sync_unchanged,
            sync_refused,
            sync_failed,
            sync_reads,
            sync_held,
            version,
            proxies_live,
            attempts,
            requests,
            propagation,
        }
    }

    /// Records one API request's latency under its route pattern (`None`: no route
    /// matched) and status. Long polls are not requests for this histogram.
    pub fn observe(&self, route: Option<&str>, status: u16, elapsed: Duration) {
        let labels = vec![("route", route.unwrap_or("unmatched").to_owned()), ("status", status.to_string())];
        self.requests.get_or_create(&labels).observe(elapsed.as_secs_f64());
    }

    /// One credential attempt's outcome.
    pub fn attempt(&self, kind: &str, outcome: &str) {
        self.attempts.get_or_create(&vec![("kind", kind.to_owned()), ("outcome", outcome.to_owned())]).inc();
    }

    /// A change applied by every live proxy `elapsed` after its commit.
    pub fn propagated(&self, elapsed: Duration) {
        self.propagation.observe(elapsed.as_secs_f64());
    }

    /// The text exposition (OpenMetrics); `version` and `proxies_live` are read from the
    /// database by the caller.
    pub fn render(&self, version: u64, proxies_live: u64) -> String {
        self.version.set(i64::try_from(version).unwrap_or(i64::MAX));
        self.proxies_live.set(i64::try_from(proxies_live).unwrap_or(i64::MAX));
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            tracing::error!("encoding the metrics failed");
        }
        out
    }
}

/// The content type of [`Metrics::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
