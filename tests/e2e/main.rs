//! End-to-end tests: the real Envoy binary with the built `.wasm`, the real control
//! plane binary and the demo upstream, on free ports. One test binary (STYLE.md).
//!
//! Needs `target/debug/tokengate`, `target/debug/demo-upstream`, the release `.wasm` and
//! `envoy` on PATH: `scripts/test.sh` builds and installs them first.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod cascade;
mod configs;
mod console;
mod faults;
mod gate;
mod hardening;
mod harness;
mod login;
mod paths;
mod sessions;
mod vouchers;
