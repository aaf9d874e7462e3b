//! What the benchmark's native gate shares: a [`Host`] over process memory, so the
//! filter's own `Worker` and `Syncer` (the exact decision code of the Wasm filter, with
//! `tokengate-rules`) run outside Envoy.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use tokengate_filter::host::{Host, Level};

/// Shared data in a map; the clock is the wall clock unless pinned.
#[derive(Default)]
pub struct LocalHost {
    pub data: RefCell<HashMap<String, Vec<u8>>>,
}

impl Host for LocalHost {
    fn now_ms(&self) -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
    }

    fn get_shared(&self, key: &str) -> Option<Vec<u8>> {
        self.data.borrow().get(key).cloned()
    }

    fn set_shared(&self, key: &str, value: &[u8]) {
        self.data.borrow_mut().insert(key.to_owned(), value.to_vec());
    }

    fn log(&self, level: Level, msg: &str) {
        if level != Level::Debug {
            eprintln!("{level:?}: {msg}");
        }
    }

    // No shared queues outside Envoy: whatever the filter would enqueue (usage reports)
    // is dropped, as with no consumer.
    fn resolve_queue(&self, _vm_id: &str, _name: &str) -> Option<u32> {
        None
    }

    fn enqueue(&self, _queue: u32, _value: &[u8]) -> bool {
        false
    }
}
