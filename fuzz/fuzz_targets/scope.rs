//! Scope patterns: parser, canonical form, matcher against a reference, route lookup.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| tokengate_rules::fuzzing::scope(data));
