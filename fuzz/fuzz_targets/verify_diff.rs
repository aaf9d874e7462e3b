//! Differential Ed25519: our verifier (rules::comb behind VerifyingKey::verify_signature)
//! against ed25519-dalek's verify_strict plus a canonical R, on raw, signed-then-mutated,
//! mixed-order and small-order triples. Any difference panics.
#![no_main]

#[path = "../../rules/tests/support/ed25519_oracle.rs"]
mod ed25519_oracle;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ed25519_oracle::verify_diff(data);
});
