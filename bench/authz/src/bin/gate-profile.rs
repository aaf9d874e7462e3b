//! A host build of the gate's decision, for profiling what the tokengate filter costs
//! per request outside Envoy and V8 (run it plain for ns per decision, or under
//! `valgrind --tool=callgrind` for where the instructions go).
//!
//! It runs the filter's own `Worker::decide` over [`LocalHost`], after the filter's own
//! `Syncer` has applied a snapshot with `REVOKED` revocations, with tokens shaped like the
//! control plane's (kind `tg-api+jwt`, three scopes, `unm`, 24-hex `jti`), for:
//! - `warm`: 300 tokens rotating (the local-cache path of variant E);
//! - `hot`: one token;
//! - `cold`: a never-seen token each time (the signature path of variant F);
//! - `parts`: pieces of the warm path in isolation;
//! - `voucher`: 300 seed-000 voucher tokens (device 127.0.0.1, network `demo-wifi`) on
//!   `GET /api/v1/wifi/status`, beside `warm` (needs PLUGIN_CONFIG with that network in
//!   `audiences` and a route marked `voucher`, as `envoy/envoy.yaml` has).
//!
//! Usage: `gate-profile [warm|hot|cold|parts|voucher|all] [ITERATIONS] [REVOKED]`; prints JSON.

use std::hint::black_box;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use bench_fixture::{claims, hex_id, LocalHost};
use tokengate_filter::config::PluginConfig;
use tokengate_filter::gate::{Outcome, Request, Worker};
use tokengate_filter::host::Host;
use tokengate_filter::sync::Syncer;
use tokengate_rules::sync::{PublicKey, Revocation, SyncResponse};
use tokengate_rules::token::SigningKey;
use tokengate_rules::TokenKind;

const PATH: &str = "/api/v1/objects/42";

fn config() -> Vec<u8> {
    let path = std::env::var("PLUGIN_CONFIG").unwrap_or_default();
    std::fs::read(&path)
        .unwrap_or_else(|_| br#"{"audiences":["tokengate"],"control_plane":{"cluster":"cp","credential":"s","proxy_id":"p"}}"#.to_vec())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let what = args.get(1).map_or("all", String::as_str).to_owned();
    let iterations: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(200_000);
    let revoked: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);

    let cfg = match PluginConfig::parse(&config()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gate-profile: {e}");
            std::process::exit(1);
        }
    };
    let seed = [7u8; 32];
    let x =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().as_bytes());
    let Ok(signer) = SigningKey::from_seed("bench", &seed) else { std::process::exit(1) };
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let now = now_ms / 1000;
    let host = LocalHost::default();
    let Some(cp) = cfg.control_plane.clone() else { std::process::exit(1) };
    let mut syncer = Syncer::new(cp);
    let t = Instant::now();
    // Built from JSON, as it arrives on the wire: fields the protocol adds later default.
    let snapshot: Result<SyncResponse, _> = serde_json::from_value(serde_json::json!({
        "protocol": 1,
        "version": revoked as u64 + 1,
        "snapshot": true,
        "keys": [PublicKey { kid: "bench".into(), x }],
        "revoked": (0..revoked).map(|i| Revocation { jti: hex_id(i as u64 + 1_000_000), exp: now + 86_400 }).collect::<Vec<_>>(),
        "serverTime": now_ms,
    }));
    let applied = snapshot.map_err(|e| e.to_string()).and_then(|s| syncer.apply(&host, s).map_err(|e| e.to_string()));
    if let Err(e) = applied {
        eprintln!("gate-profile: {e}");
        std::process::exit(1);
    }
    let sync_ms = t.elapsed().as_secs_f64() * 1e3;
    let Ok(gate_cfg) = cfg.gate() else { std::process::exit(1) };
    let gate_cfg = Rc::new(gate_cfg);
    let token = |i: u64| -> String { format!("Bearer {}", signer.sign(TokenKind::Api, &claims(now, i)).unwrap_or_default()) };

    let mut out = serde_json::json!({"revocations": revoked, "sync_apply_ms": sync_ms, "iterations": iterations});
    let run_on = |w: &mut Worker, auths: &[String], n: usize, path: &str| -> f64 {
        // First pass fills the caches (and loads keys and revocations into the worker).
        for a in auths.iter().take(n.min(auths.len())) {
            black_box(w.decide(&host, &Request { method: "GET", path, authorization: &[a.as_str()], device_header: None }));
        }
        let t = Instant::now();
        let mut headers = 0usize;
        for i in 0..n {
            let a = &auths[i % auths.len()];
            match w.decide(&host, &Request { method: "GET", path, authorization: &[a.as_str()], device_header: None }) {
                Outcome::Allow(allowed) => allowed.headers(|k, v| headers += k.len() + v.len()),
                Outcome::Deny(d) => {
                    eprintln!("gate-profile: denied: {}", d.code());
                    std::process::exit(1);
                }
                Outcome::Portal(_) => {
                    eprintln!("gate-profile: {path} is the portal's path");
                    std::process::exit(1);
                }
            }
        }
        black_box(headers);
        t.elapsed().as_nanos() as f64 / n as f64
    };
    let run = |w: &mut Worker, auths: &[String], n: usize| -> f64 { run_on(w, auths, n, PATH) };
    if what == "warm" || what == "all" {
        let auths: Vec<String> = (0..300).map(token).collect();
        let mut w = Worker::new(gate_cfg.clone());
        out["warm_ns_per_decision"] = run(&mut w, &auths, iterations).into();
    }
    if what == "voucher" {
        let voucher = |i: u64| -> String {
            let mut c = claims(now, i);
            (c.aud, c.dev, c.unm, c.scp, c.par) = ("demo-wifi".into(), Some("127.0.0.1".into()), None, None, None);
            format!("Bearer {}", signer.sign(TokenKind::VoucherAccess, &c).unwrap_or_default())
        };
        let auths: Vec<String> = (0..300).map(voucher).collect();
        let mut w = Worker::new(gate_cfg.clone());
        out["voucher_ns_per_decision"] = run_on(&mut w, &auths, iterations, "/api/v1/wifi/status").into();
        let auths: Vec<String> = (0..300).map(token).collect();
        let mut w = Worker::new(gate_cfg.clone());
        out["warm_ns_per_decision"] = run(&mut w, &auths, iterations).into();
    }
    if what == "hot" || what == "all" {
        let auths = vec![token(0)];
        let mut w = Worker::new(gate_cfg.clone());
        out["hot_ns_per_decision"] = run(&mut w, &auths, iterations).into();
    }
    if what == "cold" || what == "all" {
        let n = (iterations / 20).clamp(1000, 20_000);
        let auths: Vec<String> = (1000..1000 + n as u64 + 1).map(token).collect();
        let mut w = Worker::new(gate_cfg.clone());
        // Warm the worker's key and revocation mirror with one other token.
        black_box(w.decide(&host, &Request { method: "GET", path: PATH, authorization: &[token(1).as_str()], device_header: None }));
        let t = Instant::now();
        for a in &auths[..n] {
            black_box(w.decide(&host, &Request { method: "GET", path: PATH, authorization: &[a.as_str()], device_header: None }));
        }
        out["cold_ns_per_decision"] = (t.elapsed().as_nanos() as f64 / n as f64).into();
        out["cold_iterations"] = n.into();
    }
    if what == "parts" || what == "all" {
        let a = token(0);
        let tok = a.trim_start_matches("Bearer ");
        let n = iterations;
        let time = |f: &mut dyn FnMut()| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        };
        out["part_bearer_ns"] = time(&mut || {
            black_box(tokengate_rules::denial::bearer(black_box(&a)).ok());
        })
        .into();
        out["part_split_ns"] = time(&mut || {
            black_box(tokengate_rules::path::split(black_box(PATH)).ok());
        })
        .into();
        out["part_get_meta_ns"] = time(&mut || {
            black_box(host.get_shared(black_box("tokengate/meta")));
        })
        .into();
        let mut map = hashbrown::HashMap::new();
        for i in 0..300 {
            map.insert(token(i).into_bytes().into_boxed_slice(), i);
        }
        out["part_cache_lookup_ns"] = time(&mut || {
            black_box(map.get(black_box(a.as_bytes())));
        })
        .into();
        out["token_bytes"] = tok.len().into();
    }
    println!("{out}");
}
