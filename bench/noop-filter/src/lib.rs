//! The floor of any Wasm filter: a VM per worker, a context per request, and a header
//! callback that returns `Continue`. Variant B of `bench/run.sh` measures what that costs
//! over plain Envoy, so the tokengate filter's own work can be told apart from the
//! price of Proxy-Wasm itself.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
}}

struct Noop;

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}
