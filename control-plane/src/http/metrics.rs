//! Counters for `GET /metrics` (Prometheus text format 0.0.4), kept in the process:
//! plain atomics, no registry.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    pub fn add(&self, n: usize) {
        self.0.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The upper bounds (seconds) of the request-latency histogram.
const BUCKETS: [f64; 10] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
pub struct Metrics {
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
    /// Long polls held right now.
    pub sync_held: AtomicI64,
    latency_buckets: [Counter; BUCKETS.len()],
    latency_count: Counter,
    latency_sum_us: Counter,
}

impl Metrics {
    /// Records one request's latency (long polls are not requests for this histogram:
    /// the caller leaves them out).
    pub fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.inc();
            }
        }
        self.latency_count.inc();
        self.latency_sum_us.add(usize::try_from(elapsed.as_micros()).unwrap_or(usize::MAX));
    }

    /// The text exposition; `version` and `proxies_live` are read from the database by
    /// the caller.
    pub fn render(&self, version: u64, proxies_live: u64) -> String {
        let mut out = String::new();
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}\n");
        };
        counter("tokengate_tokens_issued_total", "Tokens issued.", self.tokens_issued.get());
        counter("tokengate_revocations_total", "Tokens revoked (descendants and idle tokens included).", self.revocations.get());
        counter("tokengate_amendments_total", "Token amendments (seed 001 update).", self.amendments.get());
        counter("tokengate_idle_revocations_total", "Tokens revoked by the idle sweep.", self.idle_revocations.get());
        counter("tokengate_sessions_started_total", "Seed-003 sessions started (POST /token/login).", self.sessions_started.get());
        counter("tokengate_sessions_ended_total", "Sessions ended: logout, idle, token revoked, user deleted.", self.sessions_ended.get());
        counter("tokengate_key_rotations_total", "Signing key rotations.", self.key_rotations.get());
        counter("tokengate_login_failures_total", "Wrong user name or password at POST /auth.", self.login_failures.get());
        counter("tokengate_login_throttled_total", "Credential attempts refused by the throttle (429).", self.login_throttled.get());
        counter("tokengate_usage_reports_total", "Usage reports accepted from proxies.", self.usage_reports.get());
        counter("tokengate_vouchers_generated_total", "Wi-Fi vouchers generated (seed 000).", self.vouchers_generated.get());
        counter("tokengate_vouchers_redeemed_total", "Voucher redemptions that gave an access token.", self.vouchers_redeemed.get());
        counter("tokengate_voucher_failures_total", "Redemptions refused after a lookup (wrong, used, expired or revoked code).", self.voucher_failures.get());
        let _ = write!(out, "# HELP tokengate_sync_calls_total Sync calls by result.\n# TYPE tokengate_sync_calls_total counter\n");
        for (result, c) in [
            ("delta", &self.sync_delta),
            ("snapshot", &self.sync_snapshot),
            ("unchanged", &self.sync_unchanged),
            ("refused", &self.sync_refused),
            ("failed", &self.sync_failed),
        ] {
            let _ = writeln!(out, "tokengate_sync_calls_total{{result=\"{result}\"}} {}", c.get());
        }
        let mut gauge = |name: &str, help: &str, value: i64| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n");
        };
        gauge("tokengate_sync_held", "Long polls held by this process now.", self.sync_held.load(Ordering::Relaxed));
        gauge("tokengate_sync_version", "The change-log version.", i64::try_from(version).unwrap_or(i64::MAX));
        gauge("tokengate_proxies_live", "Proxies seen within the last 60 s.", i64::try_from(proxies_live).unwrap_or(i64::MAX));
        let name = "tokengate_http_request_duration_seconds";
        let _ = write!(out, "# HELP {name} API request latency (long polls excluded).\n# TYPE {name} histogram\n");
        for (bound, bucket) in BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {}", bucket.get());
        }
        let count = self.latency_count.get();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {}", self.latency_sum_us.get() as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {count}");
        out
    }
}
