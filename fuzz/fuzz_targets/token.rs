//! Token parsing and verification: never panics, never accepts a forgery.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_rules::fuzzing::token(data));
