//! The floor of any Wasm filter, and the host calls the tokengate filter makes, without
//! its logic.
//!
//! With no plugin configuration (variant B of `bench/run.sh`) it is a VM per worker, a
//! context per request and a header callback that returns `Continue`: what Proxy-Wasm
//! itself costs over plain Envoy.
//!
//! With a configuration it also makes, per request, the host calls the tokengate filter
//! makes on an allowed warm request, so the filter's cost can be split into "host calls"
//! and "its own logic" (variants B1..B3, for the analysis in BENCHMARKS.md):
//! - `read`: read every request header (`get_map_bytes`, as the gate does), the clock,
//!   one shared-data key of 32 bytes (`tokengate/meta`) and three metric updates;
//! - `write`: add the five identity headers the gate sets;
//! - `all`: both.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot { read: false, write: false, metrics: [0; 3] }) });
}}

struct NoopRoot {
    read: bool,
    write: bool,
    metrics: [u32; 3],
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let mode = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(b)) => String::from_utf8_lossy(&b).trim().to_owned(),
            _ => String::new(),
        };
        self.read = mode == "read" || mode == "all";
        self.write = mode == "write" || mode == "all";
        if self.read {
            let _ = hostcalls::set_shared_data("bench/meta", Some(&[7u8; 32]), None);
            for (i, name) in ["bench.a", "bench.b", "bench.c"].iter().enumerate() {
                self.metrics[i] = hostcalls::define_metric(MetricType::Counter, name).unwrap_or(0);
            }
        }
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop { read: self.read, write: self.write, metrics: self.metrics }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Noop {
    read: bool,
    write: bool,
    metrics: [u32; 3],
}

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.read {
            let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
            let _ = hostcalls::get_current_time();
            let meta = hostcalls::get_shared_data("bench/meta").ok();
            std::hint::black_box((headers, meta));
            for id in self.metrics {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
        if self.write {
            for (name, value) in [
                ("x-tokengate-subject", "d46e60caddb8e2339e704aed"),
                ("x-tokengate-token-id", "3916f47f794ff961e2f02cc3"),
                ("x-tokengate-kind", "tg-api+jwt"),
                ("x-tokengate-scope", "GET /objects/:id"),
                ("x-tokengate-user", "admin"),
            ] {
                let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value));
            }
        }
        Action::Continue
    }
}
