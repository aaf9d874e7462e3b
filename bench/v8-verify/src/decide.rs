//! The filter's own `Worker::decide` in V8, with an in-memory host (`bench_fixture::LocalHost`): what the gate's logic
//! costs per request inside Wasm, without Envoy's host calls (shared data here is a map in
//! the VM, so a host call costs a map operation, not a VM exit).
//! - `bench_cold_decide(n)`: every request a token this worker has not seen (a pool of
//!   4096 pre-signed tokens, a local cache of 64 and 16 shared slots, so every request
//!   verifies a signature): the cold path of variant F without its host calls;
//! - `bench_warm_decide(n)`: 300 tokens rotating through the local cache: variant E's logic.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use bench_fixture::{claims, hex_id, LocalHost};
use tokengate_filter::config::PluginConfig;
use tokengate_filter::gate::{Outcome, Request, Worker};
use tokengate_filter::sync::Syncer;
use tokengate_rules::sync::{PublicKey, Revocation, SyncResponse};
use tokengate_rules::token::SigningKey;
use tokengate_rules::TokenKind;

const NOW_MS: u64 = 1_900_000_000_000;
const PATH: &str = "/api/v1/objects/42";
const POOL: usize = 4096;

struct Bench {
    host: LocalHost,
    cold: RefCell<(Worker, usize)>,
    warm: RefCell<(Worker, usize)>,
    pool: Vec<String>,
}

// One thread: Wasm in V8 here has none.
struct Single(Bench);
unsafe impl Sync for Single {}
unsafe impl Send for Single {}

fn bench() -> &'static Bench {
    static B: OnceLock<Single> = OnceLock::new();
    &B.get_or_init(|| Single(setup())).0
}

fn setup() -> Bench {
    let seed = [7u8; 32];
    let x = URL_SAFE_NO_PAD.encode(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().as_bytes());
    let signer = SigningKey::from_seed("bench", &seed).unwrap_or_else(|_| std::process::abort());
    let now = NOW_MS / 1000;
    let cfg = |local: usize, slots: u32| {
        let json = format!(
            r#"{{"audiences":["tokengate"],"local_cache_entries":{local},"shared_cache_slots":{slots},
                "control_plane":{{"cluster":"cp","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p"}}}}"#
        );
        PluginConfig::parse(json.as_bytes()).unwrap_or_else(|_| std::process::abort())
    };
    let host = LocalHost { pinned_ms: Some(NOW_MS), ..LocalHost::default() };
    let base = cfg(4096, 8192);
    let mut syncer = Syncer::new(base.control_plane.clone().unwrap_or_else(|| std::process::abort()));
    let snapshot = SyncResponse {
        protocol: 1,
        version: 2,
        snapshot: true,
        keys: vec![PublicKey { kid: "bench".into(), x }],
        revoked: (0..10_000u64).map(|i| Revocation { jti: hex_id(i + 1_000_000), exp: now + 86_400 }).collect(),
        amended: vec![],
        server_time: NOW_MS,
        next: None,
        sessions: vec![],
        ended: vec![],
    };
    syncer.apply(&host, snapshot).unwrap_or_else(|_| std::process::abort());
    let token = |i: u64| format!("Bearer {}", signer.sign(TokenKind::Api, &claims(now, i)).unwrap_or_else(|_| std::process::abort()));
    let pool = (0..POOL as u64).map(token).collect();
    let worker = |c: PluginConfig| Worker::new(Rc::new(c.gate().unwrap_or_else(|_| std::process::abort())));
    let mut cold = worker(cfg(64, 16));
    let mut warm = worker(base);
    cold.tick(&host, NOW_MS);
    warm.tick(&host, NOW_MS);
    Bench { host, cold: RefCell::new((cold, 0)), warm: RefCell::new((warm, 0)), pool }
}

fn run(w: &RefCell<(Worker, usize)>, n: u32, modulo: usize) -> u32 {
    let b = bench();
    let mut w = w.borrow_mut();
    let mut ok = 0;
    for _ in 0..n {
        let i = w.1 % modulo;
        w.1 += 1;
        let auth = [b.pool[i].as_str()];
        if let Outcome::Allow(a) = w.0.decide(&b.host, &Request { method: "GET", path: PATH, authorization: &auth, device_header: None }) {
            let mut len = 0;
            a.headers(|k, v| len += k.len() + v.len());
            std::hint::black_box(len);
            ok += 1;
        }
    }
    ok
}

#[no_mangle]
pub extern "C" fn bench_cold_decide(n: u32) -> u32 {
    run(&bench().cold, n, POOL)
}

#[no_mangle]
pub extern "C" fn bench_warm_decide(n: u32) -> u32 {
    run(&bench().warm, n, 300)
}
