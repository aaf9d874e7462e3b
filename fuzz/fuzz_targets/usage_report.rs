//! A proxy's usage report (UsageReport): decoding never panics and round-trips.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_rules::fuzzing::usage_report(data));
