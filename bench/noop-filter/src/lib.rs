//! The floor of any Wasm filter, and the host calls the tokengate filter makes, without
//! its logic.
//!
//! With no plugin configuration (variant B of `bench/run.sh`) it is a VM per worker, a
//! context per request and a header callback that returns `Continue`: what Proxy-Wasm
//! itself costs over plain Envoy.
//!
//! With a configuration it also makes, per request, some of the host calls a filter
//! like tokengate makes, so their cost can be told apart from a filter's own logic (the
//! attribution tables in BENCHMARKS.md). The configuration is a comma-separated list of
//! steps, done in this order:
//! - `all_headers`: read every request header (`get_map_bytes`);
//! - `three_headers`: read `:method`, `:path` and `authorization` (`get_map_value`);
//! - `clock`: read the clock;
//! - `peer`: read the peer's address (`get_property(source.address)`, the voucher device check);
//! - `meta`: read one shared-data key of 32 bytes;
//! - `metrics`: three metric updates;
//! - `set5`: set five identity headers (`set_map_value`, which replaces);
//! - `add3`: add three identity headers (`add_map_value`);
//! - `replace_all`: write the whole header map back in one call (`set_map_bytes`): every
//!   header read by `all_headers` (read here if that step is absent) plus three identity
//!   headers.
//!
//! The names `read`, `write` and `all` stand for the tokengate filter's host calls on an
//! allowed warm request before the 2026-11-23 rework: `all_headers,clock,meta,metrics`,
//! `set5`, and both.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot { steps: Steps::default(), metrics: [0; 3] }) });
}}

#[derive(Clone, Copy, Default)]
struct Steps {
    all_headers: bool,
    three_headers: bool,
    clock: bool,
    meta: bool,
    metrics: bool,
    set5: bool,
    add3: bool,
    replace_all: bool,
    peer: bool,
}

impl Steps {
    fn parse(config: &str) -> Result<Steps, String> {
        let mut s = Steps::default();
        let names: Vec<&str> = match config {
            "read" => vec!["all_headers", "clock", "meta", "metrics"],
            "write" => vec!["set5"],
            "all" => vec!["all_headers", "clock", "meta", "metrics", "set5"],
            other => other.split(',').map(str::trim).filter(|n| !n.is_empty()).collect(),
        };
        for n in names {
            match n {
                "all_headers" => s.all_headers = true,
                "three_headers" => s.three_headers = true,
                "clock" => s.clock = true,
                "meta" => s.meta = true,
                "metrics" => s.metrics = true,
                "set5" => s.set5 = true,
                "add3" => s.add3 = true,
                "replace_all" => s.replace_all = true,
                "peer" => s.peer = true,
                other => return Err(format!("unknown step {other:?}")),
            }
        }
        Ok(s)
    }
}

const IDENTITY: [(&str, &str); 5] = [
    ("x-tokengate-subject", "d46e60caddb8e2339e704aed"),
    ("x-tokengate-token-id", "3916f47f794ff961e2f02cc3"),
    ("x-tokengate-scope", "GET /objects/:id"),
    ("x-tokengate-kind", "tg-api+jwt"),
    ("x-tokengate-user", "admin"),
];

struct NoopRoot {
    steps: Steps,
    metrics: [u32; 3],
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => String::from_utf8_lossy(&b).trim().to_owned(),
            _ => String::new(),
        };
        self.steps = match Steps::parse(&config) {
            Ok(s) => s,
            Err(e) => {
                proxy_wasm::hostcalls::log(LogLevel::Error, &format!("noop filter: {e}")).ok();
                return false;
            }
        };
        if self.steps.meta {
            let _ = hostcalls::set_shared_data("bench/meta", Some(&[7u8; 32]), None);
        }
        if self.steps.metrics {
            for (i, name) in ["bench.a", "bench.b", "bench.c"].iter().enumerate() {
                self.metrics[i] = hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0);
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop { steps: self.steps, metrics: self.metrics }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    steps: Steps,
    metrics: [u32; 3],
}

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let s = self.steps;
        let mut headers = None;
        if s.all_headers {
            headers = Some(hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default());
        }
        if s.three_headers {
            for name in [":method", ":path", "authorization"] {
                std::hint::black_box(hostcalls::get_map_value(MapType::HttpRequestHeaders, name).ok());
            }
        }
        if s.clock {
            std::hint::black_box(hostcalls::get_current_time().ok());
        }
        if s.peer {
            std::hint::black_box(hostcalls::get_property(vec!["source", "address"]).ok());
        }
        if s.meta {
            std::hint::black_box(hostcalls::get_shared_data("bench/meta").ok());
        }
        if s.metrics {
            for id in self.metrics {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
        if s.set5 {
            for (name, value) in IDENTITY {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
            }
        }
        if s.add3 {
            for (name, value) in &IDENTITY[..3] {
                let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
            }
        }
        if s.replace_all {
            let read = match headers.take() {
                Some(h) => h,
                None => hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default(),
            };
            let mut map: Vec<(&str, &[u8])> = read.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            map.extend(IDENTITY[..3].iter().map(|(k, v)| (*k, v.as_bytes())));
            let _ = hostcalls::set_map_bytes(MapType::HttpRequestHeaders, map);
        }
        std::hint::black_box(headers);
        Action::Continue
    }
}
