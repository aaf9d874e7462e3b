//! The control plane's sync answer (SyncResponse): decoding never panics and round-trips.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_rules::fuzzing::sync_answer(data));
