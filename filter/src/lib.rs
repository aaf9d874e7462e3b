//! tokengate's Proxy-Wasm module: a thin adapter from proxy-wasm callbacks to
//! `tokengate-rules` and the logic in [`gate`] and [`sync`].
//!
//! One module, two roles, chosen by `vm_config.configuration`:
//! - `"gate"`: the HTTP filter, one VM per Envoy worker ([`GateRoot`] / [`Gate`]);
//! - `"sync"`: the singleton service VM (`envoy.bootstrap.wasm`) ([`SyncRoot`]).
//!
//! Both use the same `vm_id`, so they share Envoy's shared data.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod config;
pub mod gate;
pub mod headers;
pub mod host;
pub mod shared;
pub mod sync;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MapType, MetricType};

use crate::config::PluginConfig;
use crate::gate::{CacheResult, Outcome, Request, Worker};
use crate::host::{Host, Level, ProxyHost};
use crate::sync::{SyncState, Syncer};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::Unconfigured(None)) });
}}

/// Request headers a client may not send: identity is ours to set, the original path
/// is Envoy's, and method overrides would make an upstream act on another method than
/// the one authorized; `x-original-url`, `x-rewrite-url` and `x-forwarded-prefix` make
/// some frameworks (IIS, Symfony, Spring, ASP.NET) route by another path than the one
/// the gate decided on.
const STRIPPED_HEADERS: [&str; 7] = [
    "x-envoy-original-path",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-forwarded-prefix",
];
const IDENTITY_PREFIX: &str = "x-tokengate-";

/// The root context, whichever role the VM has.
enum Root {
    /// Role from `on_vm_start`, not yet configured.
    Unconfigured(Option<String>),
    Gate(GateRoot),
    Sync(Box<SyncRoot>),
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body_size: usize, _trailers: usize) {
        if let Root::Sync(s) = self {
            s.on_response(token, body_size);
        }
    }
}

impl RootContext for Root {
    fn on_vm_start(&mut self, _size: usize) -> bool {
        let role = match hostcalls::get_buffer(proxy_wasm::types::BufferType::VmConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => String::from_utf8_lossy(&b).trim().to_owned(),
            _ => String::new(),
        };
        if role != "gate" && role != "sync" {
            ProxyHost.log(Level::Error, &format!("tokengate: vm_config.configuration must be \"gate\" or \"sync\", got {role:?}"));
            return false;
        }
        *self = Root::Unconfigured(Some(role));
        true
    }

    fn on_configure(&mut self, _size: usize) -> bool {
        let role = match self {
            Root::Unconfigured(Some(r)) => r.clone(),
            Root::Gate(_) => "gate".to_owned(),
            Root::Sync(_) => "sync".to_owned(),
            Root::Unconfigured(None) => "gate".to_owned(),
        };
        let bytes = match hostcalls::get_buffer(proxy_wasm::types::BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => b,
            _ => Vec::new(),
        };
        let parsed = PluginConfig::parse(&bytes);
        let result = parsed.and_then(|cfg| -> Result<Root, String> {
            if role == "sync" {
                let cp = cfg.control_plane.clone().ok_or("plugin configuration: the sync service needs `control_plane`")?;
                let mut syncer = Syncer::new(cp);
                // Session use must reach the control plane within `session_report_ms`.
                syncer.usage_every_ms = cfg.session_report_ms.min(sync::USAGE_EVERY_MS);
                Ok(Root::Sync(Box::new(SyncRoot::new(syncer))))
            } else {
                Ok(Root::Gate(GateRoot::new(Rc::new(cfg.gate()?))))
            }
        });
        match result {
            Ok(root) => {
                *self = root;
                match self {
                    Root::Sync(s) => {
                        let _ = hostcalls::set_tick_period(Duration::from_millis(200));
                        s.poll();
                    }
                    // The gate's tick keeps the clock and the sync state off the request
                    // path, and flushes the counters.
                    Root::Gate(g) => {
                        let _ = hostcalls::set_tick_period(Duration::from_millis(gate::TICK_MS));
                        g.on_tick();
                    }
                    Root::Unconfigured(_) => {}
                }
                true
            }
            Err(e) => {
                ProxyHost.log(Level::Error, &format!("tokengate: refusing configuration ({role}): {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        match self {
            Root::Sync(s) => s.on_tick(),
            Root::Gate(g) => g.on_tick(),
            Root::Unconfigured(_) => {}
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        if let Root::Sync(s) = self {
            s.drain_usage(queue_id);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        match self {
            Root::Gate(g) => Some(Box::new(Gate { worker: g.worker.clone(), metrics: g.metrics.clone(), cfg: g.cfg.clone() })),
            // An HTTP context on an unconfigured or sync VM: deny everything.
            _ => Some(Box::new(DenyAll)),
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Envoy stats of the gate (`wasmcustom.tokengate.*`). Requests only bump counters in
/// the VM; the root's tick flushes them to Envoy once a second, which keeps host calls
/// off the request path.
struct GateMetrics {
    ids: [Option<u32>; 6],
    counts: [Cell<u64>; 6],
    revocations: Option<u32>,
    denied_by: RefCell<hashbrown::HashMap<&'static str, (Option<u32>, u64)>>,
}

const ALLOWED: usize = 0;
const DENIED: usize = 1;
const CACHE_LOCAL: usize = 2;
const CACHE_SHARED: usize = 3;
const CACHE_MISS: usize = 4;
const PORTAL: usize = 5;

impl GateMetrics {
    fn new() -> Self {
        let counter = |n: &str| hostcalls::define_metric(MetricType::Counter, n).ok();
        GateMetrics {
            ids: [
                counter("tokengate.allowed"),
                counter("tokengate.denied"),
                counter("tokengate.cache.local_hit"),
                counter("tokengate.cache.shared_hit"),
                counter("tokengate.cache.miss"),
                counter("tokengate.portal"),
            ],
            counts: Default::default(),
            revocations: hostcalls::define_metric(MetricType::Gauge, "tokengate.revocations").ok(),
            denied_by: RefCell::new(hashbrown::HashMap::new()),
        }
    }

    fn inc(&self, which: usize) {
        if let Some(c) = self.counts.get(which) {
            c.set(c.get() + 1);
        }
    }

    fn deny(&self, code: &'static str) {
        self.inc(DENIED);
        self.denied_by.borrow_mut().entry(code).or_insert((None, 0)).1 += 1;
    }

    fn flush(&self, revocations: usize) {
        for (id, count) in self.ids.iter().zip(self.counts.iter()) {
            let n = count.replace(0);
            if let (Some(id), true) = (id, n > 0) {
                let _ = hostcalls::increment_metric(*id, n as i64);
            }
        }
        for (code, (id, n)) in self.denied_by.borrow_mut().iter_mut() {
            if *n == 0 {
                continue;
            }
            if id.is_none() {
                *id = hostcalls::define_metric(MetricType::Counter, &format!("tokengate.denied.{code}")).ok();
            }
            if let Some(id) = id {
                let _ = hostcalls::increment_metric(*id, std::mem::take(n) as i64);
            }
        }
        if let Some(id) = self.revocations {
            let _ = hostcalls::record_metric(id, revocations as u64);
        }
    }
}

struct GateRoot {
    worker: Rc<RefCell<Worker>>,
    metrics: Rc<GateMetrics>,
    cfg: Rc<config::GateConfig>,
    flushed_ms: u64,
}

impl GateRoot {
    fn new(cfg: Rc<config::GateConfig>) -> Self {
        GateRoot { worker: Rc::new(RefCell::new(Worker::new(cfg.clone()))), metrics: Rc::new(GateMetrics::new()), cfg, flushed_ms: 0 }
    }

    /// Every [`gate::TICK_MS`]: the worker's clock and sync state; once a second, the
    /// counters into Envoy's stats.
    fn on_tick(&mut self) {
        let now_ms = ProxyHost.now_ms();
        let mut w = self.worker.borrow_mut();
        w.tick(&ProxyHost, now_ms);
        if now_ms.saturating_sub(self.flushed_ms) >= METRICS_FLUSH_MS {
            self.flushed_ms = now_ms;
            self.metrics.flush(w.revocations());
        }
    }
}

const METRICS_FLUSH_MS: u64 = 1000;

/// The per-request context.
struct Gate {
    worker: Rc<RefCell<Worker>>,
    metrics: Rc<GateMetrics>,
    cfg: Rc<config::GateConfig>,
}

impl Context for Gate {}

impl HttpContext for Gate {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Every header in one host call, walked in place (no allocation per header).
        let Some(buf) = headers::request_headers() else {
            return self.deny_with(tokengate_rules::Denial::InvalidRequest("unreadable_headers"));
        };
        let Some(pairs) = headers::Pairs::new(&buf) else {
            return self.deny_with(tokengate_rules::Denial::InvalidRequest("unreadable_headers"));
        };
        let mut method = None;
        let mut path = None;
        // Envoy joins repeated `authorization` headers into one value (refused for its
        // ","); two slots still tell a second one apart if it ever arrives separately.
        let mut auth: [&str; 2] = [""; 2];
        let mut auth_count = 0;
        let mut bad_bytes = false;
        let mut forged = false;
        // The access controller's device header (seed 000 vouchers), when configured.
        let device_name = self.cfg.device_header.as_deref().map(str::as_bytes);
        let mut device: Option<&str> = None;
        let mut devices = 0;
        for pair in pairs {
            let Ok((name, value)) = pair else {
                return self.deny_with(tokengate_rules::Denial::InvalidRequest("unreadable_headers"));
            };
            // Only the headers the decision reads are checked as text.
            if !matches!(name, b":method" | b":path" | b"authorization") {
                if device_name == Some(name) {
                    devices += 1;
                    device = std::str::from_utf8(value).ok();
                    continue;
                }
                forged |= is_forged(name);
                continue;
            }
            match (name, std::str::from_utf8(value)) {
                (b":method", Ok(v)) => method = Some(v),
                (b":path", Ok(v)) => path = Some(v),
                (b"authorization", Ok(v)) => {
                    if let Some(slot) = auth.get_mut(auth_count) {
                        *slot = v;
                    }
                    auth_count += 1;
                }
                _ => bad_bytes = true,
            }
        }
        // Strip forged identity first, whatever the outcome (rare: a name-by-name pass).
        if forged {
            strip_forged(&buf);
        }
        // The device header is believed only from the configured access controllers and
        // only once; from anyone else it is removed, so the upstream cannot be fooled either.
        if let Some(name) = self.cfg.device_header.as_deref().filter(|_| devices > 0) {
            let peer = ProxyHost.peer_address().and_then(|a| tokengate_rules::device::peer_ip(&a));
            if devices > 1 || !self.cfg.trusts_device_header_from(peer) {
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
                device = None;
            }
        }
        let (Some(method), Some(path), false) = (method, path, bad_bytes) else {
            return self.deny_with(tokengate_rules::Denial::InvalidRequest("malformed_request"));
        };
        self.decide(method, path, &auth[..auth_count.min(2)], device)
    }
}

/// A request header a client may not send.
fn is_forged(name: &[u8]) -> bool {
    name.starts_with(IDENTITY_PREFIX.as_bytes()) || STRIPPED_HEADERS.iter().any(|h| h.as_bytes() == name)
}

fn strip_forged(buf: &[u8]) {
    for (name, _) in headers::Pairs::new(buf).into_iter().flatten().flatten() {
        if let (true, Ok(name)) = (is_forged(name), std::str::from_utf8(name)) {
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
        }
    }
}

impl Gate {
    fn decide(&mut self, method: &str, path: &str, authorization: &[&str], device_header: Option<&str>) -> Action {
        #[cfg(feature = "panic-probe")]
        #[allow(clippy::panic)]
        if path == "/__tokengate/panic" {
            panic!("tokengate panic probe");
        }
        let outcome = {
            let mut w = self.worker.borrow_mut();
            let out = w.decide(&ProxyHost, &Request { method, path, authorization, device_header });
            self.metrics.inc(match w.last_cache {
                CacheResult::Local => CACHE_LOCAL,
                CacheResult::Shared => CACHE_SHARED,
                CacheResult::Miss => CACHE_MISS,
            });
            out
        };
        match outcome {
            Outcome::Allow(allowed) => {
                // Forged identity headers were removed before the decision, so adding is
                // enough: no replace.
                allowed.headers(|name, value| {
                    let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
                });
                self.metrics.inc(ALLOWED);
                Action::Continue
            }
            Outcome::Portal(headers) => {
                for (name, value) in &headers {
                    let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
                }
                self.metrics.inc(PORTAL);
                Action::Continue
            }
            Outcome::Deny(d) => self.deny_with(d),
        }
    }

    fn deny_with(&self, d: tokengate_rules::Denial) -> Action {
        self.metrics.deny(d.code());
        let realm = self.worker.borrow().realm().to_owned();
        send_denial(d, &realm)
    }
}

fn send_denial(d: tokengate_rules::Denial, realm: &str) -> Action {
    let body = d.body();
    let challenge = d.www_authenticate(realm);
    let mut headers = vec![("content-type", "application/json"), ("cache-control", "no-store")];
    if let Some(c) = challenge.as_deref() {
        headers.push(("www-authenticate", c));
    }
    let _ = hostcalls::send_http_response(u32::from(d.status()), headers, Some(body.as_bytes()));
    Action::Pause
}

/// Used where no configured gate exists: nothing passes.
struct DenyAll;

impl Context for DenyAll {}

impl HttpContext for DenyAll {
    fn on_http_request_headers(&mut self, _n: usize, _eos: bool) -> Action {
        send_denial(tokengate_rules::Denial::Unavailable("gate_not_configured"), "tokengate")
    }
}

/// The sync service's root context: drives [`Syncer`] with timers and HTTP calls.
struct SyncRoot {
    syncer: Syncer,
    usage_queue: Option<u32>,
    /// The outstanding usage report: its call token and body (kept to retry).
    usage_call: Option<(u32, Vec<u8>)>,
    synced_at_ms: u64,
    version_gauge: Option<u32>,
    revocations_gauge: Option<u32>,
    amendments_gauge: Option<u32>,
    sessions_gauge: Option<u32>,
    synced_at_gauge: Option<u32>,
    age_gauge: Option<u32>,
    failures: Option<u32>,
    rejected: Option<u32>,
    write_failures: Option<u32>,
    usage_sent: Option<u32>,
}

impl SyncRoot {
    fn new(syncer: Syncer) -> Self {
        let gauge = |n: &str| hostcalls::define_metric(MetricType::Gauge, n).ok();
        let usage_queue = hostcalls::register_shared_queue(shared::USAGE_QUEUE).ok();
        SyncRoot {
            syncer,
            usage_queue,
            usage_call: None,
            synced_at_ms: 0,
            version_gauge: gauge("tokengate.sync.version"),
            revocations_gauge: gauge("tokengate.sync.revocations"),
            amendments_gauge: gauge("tokengate.sync.amendments"),
            sessions_gauge: gauge("tokengate.sync.sessions"),
            synced_at_gauge: gauge("tokengate.sync.synced_at_ms"),
            age_gauge: gauge("tokengate.sync.age_ms"),
            failures: hostcalls::define_metric(MetricType::Counter, "tokengate.sync.failures").ok(),
            rejected: hostcalls::define_metric(MetricType::Counter, "tokengate.sync.rejected").ok(),
            write_failures: hostcalls::define_metric(MetricType::Counter, "tokengate.sync.write_failures").ok(),
            usage_sent: hostcalls::define_metric(MetricType::Counter, "tokengate.usage.reported").ok(),
        }
    }

    fn drain_usage(&mut self, queue_id: u32) {
        if Some(queue_id) != self.usage_queue {
            return;
        }
        while let Ok(Some(msg)) = hostcalls::dequeue_shared_queue(queue_id) {
            self.syncer.note_usage(&msg);
        }
    }

    /// Sends the pending usage as one report, unless one is already on its way.
    fn send_usage(&mut self, now: u64) {
        if self.usage_call.is_some() {
            return;
        }
        let Some((path, body)) = self.syncer.usage_batch(now) else { return };
        let cp = &self.syncer.cfg;
        let auth = format!("Bearer {}", self.syncer.bearer());
        let headers = vec![
            (":method", "POST"),
            (":path", path.as_str()),
            (":authority", cp.authority.as_str()),
            (":scheme", "http"),
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ];
        match hostcalls::dispatch_http_call(&cp.cluster, headers, Some(&body), vec![], Duration::from_secs(10)) {
            Ok(token) => self.usage_call = Some((token, body)),
            Err(_) => self.syncer.usage_failed(&body),
        }
    }

    fn on_tick(&mut self) {
        let now = ProxyHost.now_ms();
        if let Some(id) = self.age_gauge {
            if self.synced_at_ms > 0 {
                let _ = hostcalls::record_metric(id, now.saturating_sub(self.synced_at_ms));
            }
        }
        if let Some(q) = self.usage_queue {
            self.drain_usage(q);
        }
        self.send_usage(now);
        match self.syncer.state {
            SyncState::Idle => self.poll(),
            SyncState::Backoff { until_ms } if now >= until_ms => self.poll(),
            SyncState::InFlight { since_ms, .. } if now.saturating_sub(since_ms) > self.syncer.cfg.wait_ms + 15_000 => {
                // Envoy's own timeout should have answered; do not wait forever.
                self.fail("long-poll overdue");
            }
            _ => {}
        }
    }

    fn poll(&mut self) {
        let (_, headers) = self.syncer.request(ProxyHost.now_ms());
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let timeout = Duration::from_millis(self.syncer.cfg.wait_ms + 5_000);
        match hostcalls::dispatch_http_call(&self.syncer.cfg.cluster, headers, None, vec![], timeout) {
            Ok(token) => self.syncer.state = SyncState::InFlight { token, since_ms: ProxyHost.now_ms() },
            Err(e) => self.fail(&format!("dispatch to cluster {:?} failed: {e:?}", self.syncer.cfg.cluster)),
        }
    }

    fn fail(&mut self, why: &str) {
        let now = ProxyHost.now_ms();
        let seed = now.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ u64::from(self.syncer.failures);
        let delay = self.syncer.back_off(now, seed);
        if let Some(id) = self.failures {
            let _ = hostcalls::increment_metric(id, 1);
        }
        let level = if self.syncer.failures <= 1 || self.syncer.failures.is_multiple_of(20) { Level::Warn } else { Level::Debug };
        ProxyHost.log(level, &format!("tokengate sync: {why}; retrying in {delay} ms (failure {})", self.syncer.failures));
    }

    fn on_response(&mut self, token: u32, body_size: usize) {
        if let Some((t, body)) = self.usage_call.take() {
            if t == token {
                let ok = matches!(header(&call_headers(), ":status").as_deref(), Some("200" | "204"));
                if ok {
                    if let Some(id) = self.usage_sent {
                        let _ = hostcalls::increment_metric(id, 1);
                    }
                } else {
                    self.syncer.usage_failed(&body);
                }
                return;
            }
            self.usage_call = Some((t, body));
        }
        if !matches!(self.syncer.state, SyncState::InFlight { token: t, .. } if t == token) {
            return;
        }
        // A failed call arrives as a local reply with no headers and no :status.
        // The answer's headers, read once (status, then the MAC).
        let headers = call_headers();
        let status = header(&headers, ":status").unwrap_or_default();
        if status != "200" {
            // A 503 may be Envoy's own local reply (the control plane unreachable, or the
            // held call cancelled at shutdown), not the control plane's.
            let why =
                if status.is_empty() { "no answer from the control plane".to_owned() } else { format!("sync call answered {status}") };
            return self.fail(&why);
        }
        let body = match hostcalls::get_buffer(proxy_wasm::types::BufferType::HttpCallResponseBody, 0, body_size) {
            Ok(Some(b)) => b,
            _ => Vec::new(),
        };
        let mac = header(&headers, tokengate_rules::sync::MAC_HEADER);
        let (rejected, write_failures) = (self.syncer.rejected, self.syncer.write_failures);
        let applied = self.syncer.accept(&ProxyHost, &body, mac.as_deref());
        for (id, n) in
            [(self.rejected, self.syncer.rejected - rejected), (self.write_failures, self.syncer.write_failures - write_failures)]
        {
            if let (Some(id), true) = (id, n > 0) {
                let _ = hostcalls::increment_metric(id, i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        match applied {
            Ok(false) => {
                // A snapshot part: ask for the next one at once.
                self.syncer.state = SyncState::Idle;
                self.poll();
            }
            Ok(true) => {
                for (id, v) in [
                    (self.version_gauge, self.syncer.version()),
                    (self.revocations_gauge, self.syncer.revocations() as u64),
                    (self.synced_at_gauge, ProxyHost.now_ms()),
                    (self.amendments_gauge, self.syncer.amendments() as u64),
                    (self.sessions_gauge, self.syncer.sessions() as u64),
                ] {
                    if let Some(id) = id {
                        let _ = hostcalls::record_metric(id, v);
                    }
                }
                self.synced_at_ms = ProxyHost.now_ms();
                self.syncer.state = SyncState::Idle;
                self.poll();
            }
            Err(e) => self.fail(&e.to_string()),
        }
    }
}

/// The headers of the answer to a dispatched call; none for a failed call, which arrives
/// as a local reply with no headers at all (so no `:status` either).
fn call_headers() -> Vec<(String, Vec<u8>)> {
    hostcalls::get_map_bytes(MapType::HttpCallResponseHeaders).unwrap_or_default()
}

fn header(headers: &[(String, Vec<u8>)], name: &str) -> Option<String> {
    headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| String::from_utf8(v.clone()).ok())
}
