//! The seam between the filter's logic and the proxy: what the gate and the sync
//! service need from Envoy. `ProxyHost` is the real one; tests use `tests::FakeHost`.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

pub trait Host {
    /// Wall-clock time, ms since the epoch.
    fn now_ms(&self) -> u64;
    fn get_shared(&self, key: &str) -> Option<Vec<u8>>;
    /// Writes a shared-data key; false when the host refused the write.
    fn set_shared(&self, key: &str, value: &[u8]) -> bool;
    fn log(&self, level: Level, msg: &str);
    /// The id of the shared queue `name` registered by the VM with `vm_id`.
    fn resolve_queue(&self, vm_id: &str, name: &str) -> Option<u32>;
    fn enqueue(&self, queue: u32, value: &[u8]) -> bool;
    /// The downstream peer's address (`source.address`, `ip:port`) of the current request.
    fn peer_address(&self) -> Option<String>;
}

/// The real host, over `proxy_wasm::hostcalls`.
pub struct ProxyHost;

impl Host for ProxyHost {
    fn now_ms(&self) -> u64 {
        proxy_wasm::hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as u64)
    }

    fn get_shared(&self, key: &str) -> Option<Vec<u8>> {
        match proxy_wasm::hostcalls::get_shared_data(key) {
            Ok((value, _cas)) => value,
            Err(_) => None,
        }
    }

    fn set_shared(&self, key: &str, value: &[u8]) -> bool {
        // No CAS: the sync service is the only writer of its keys, and claims slots are
        // a cache where the last writer may win.
        proxy_wasm::hostcalls::set_shared_data(key, Some(value), None).is_ok()
    }

    fn log(&self, level: Level, msg: &str) {
        let level = match level {
            Level::Debug => proxy_wasm::types::LogLevel::Debug,
            Level::Info => proxy_wasm::types::LogLevel::Info,
            Level::Warn => proxy_wasm::types::LogLevel::Warn,
            Level::Error => proxy_wasm::types::LogLevel::Error,
        };
        let _ = proxy_wasm::hostcalls::log(level, msg);
    }

    fn resolve_queue(&self, vm_id: &str, name: &str) -> Option<u32> {
        proxy_wasm::hostcalls::resolve_shared_queue(vm_id, name).ok().flatten()
    }

    fn enqueue(&self, queue: u32, value: &[u8]) -> bool {
        proxy_wasm::hostcalls::enqueue_shared_queue(queue, Some(value)).is_ok()
    }

    fn peer_address(&self) -> Option<String> {
        let bytes = proxy_wasm::hostcalls::get_property(vec!["source", "address"]).ok().flatten()?;
        String::from_utf8(bytes).ok()
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::cell::{Cell, RefCell};
    use std::collections::HashMap;

    /// Shared data in a map, a settable clock, and captured logs.
    #[derive(Default)]
    pub struct FakeHost {
        pub now_ms: Cell<u64>,
        pub shared: RefCell<HashMap<String, Vec<u8>>>,
        pub logs: RefCell<Vec<(Level, String)>>,
        pub reads: Cell<usize>,
        pub queue: RefCell<Vec<Vec<u8>>>,
        /// Writes to keys starting with this fail (a full or refusing shared-data store).
        pub fail_writes: RefCell<Option<String>>,
        /// The current request's peer (`ip:port`).
        pub peer: RefCell<Option<String>>,
    }

    impl FakeHost {
        pub fn at(now_ms: u64) -> Self {
            let h = FakeHost::default();
            h.now_ms.set(now_ms);
            h
        }
    }

    impl Host for FakeHost {
        fn now_ms(&self) -> u64 {
            self.now_ms.get()
        }
        fn get_shared(&self, key: &str) -> Option<Vec<u8>> {
            self.reads.set(self.reads.get() + 1);
            self.shared.borrow().get(key).cloned()
        }
        fn set_shared(&self, key: &str, value: &[u8]) -> bool {
            if self.fail_writes.borrow().as_deref().is_some_and(|p| key.starts_with(p)) {
                return false;
            }
            self.shared.borrow_mut().insert(key.to_owned(), value.to_vec());
            true
        }
        fn log(&self, level: Level, msg: &str) {
            self.logs.borrow_mut().push((level, msg.to_owned()));
        }
        fn resolve_queue(&self, _vm_id: &str, name: &str) -> Option<u32> {
            (name == crate::shared::USAGE_QUEUE).then_some(1)
        }
        fn enqueue(&self, _queue: u32, value: &[u8]) -> bool {
            self.queue.borrow_mut().push(value.to_vec());
            true
        }
        fn peer_address(&self) -> Option<String> {
            self.peer.borrow().clone()
        }
    }
}
