//! Request-target splitting: never panics, never lets an empty or dot segment through.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_rules::fuzzing::path(data));
