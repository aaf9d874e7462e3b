//! `rules::token::verify` (the filter's cold path) as Wasm exports, so that V8 itself can
//! time it without Envoy around it (`bench/v8-verify/run.js`, in Node's V8):
//! - `bench_tg_verify(n)`: the full verification of a real token, n times;
//! - `bench_signature(n)`: only its signature check (`VerifyingKey::verify_signature`,
//!   the per-key fixed-base table);
//! - `bench_dalek_strict(n)`: ed25519-dalek's `verify_strict` over the same bytes with the
//!   key decoded once (what `verify` did before the tables).
//!
//! - `bench_cold_decide(n)` / `bench_warm_decide(n)`: the filter's whole decision
//!   (`Worker::decide`) for a never-seen token or a cached one, with an in-memory host
//!   ([`decide`]).
//!
//! Each returns how many succeeded (n, or the run is wrong). The token is signed once, by
//! the control plane's own signer, from a fixed seed.

mod decide;

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use tokengate_rules::token::{verify, SigningKey, VerifyingKey};
use tokengate_rules::{Claims, KeySet, TokenKind, VerifyPolicy};

const SEED: [u8; 32] = [7; 32];
const NOW: u64 = 1_900_000_000;

struct Fixture {
    token: String,
    keys: KeySet,
    key: VerifyingKey,
    dalek: ed25519_dalek::VerifyingKey,
    policy: VerifyPolicy,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let claims = Claims {
            iss: "tokengate".into(),
            sub: "d46e60caddb8e2339e704aed".into(),
            aud: "tokengate".into(),
            exp: NOW + 3600,
            nbf: NOW,
            iat: NOW,
            jti: "3916f47f794ff961e2f02cc3".into(),
            unm: Some("admin".into()),
            scp: Some(vec!["GET /objects".into(), "POST /objects".into(), "GET /objects/:id".into()]),
            fl: Some(0x600),
            items: Some(vec![42, 43]),
            app: None,
            p: None,
            par: None,
            opr: None,
            dev: None,
        };
        let signer = SigningKey::from_seed("k1", &SEED).unwrap_or_else(|_| std::process::abort());
        let token = signer.sign(TokenKind::Api, &claims).unwrap_or_else(|_| std::process::abort());
        let dalek = ed25519_dalek::SigningKey::from_bytes(&SEED).verifying_key();
        let x = URL_SAFE_NO_PAD.encode(dalek.as_bytes());
        let mut keys = KeySet::new();
        keys.insert(VerifyingKey::from_x("k1", &x).unwrap_or_else(|_| std::process::abort()));
        let key = VerifyingKey::from_x("k1", &x).unwrap_or_else(|_| std::process::abort());
        let policy = VerifyPolicy::new("tokengate", &["tokengate"], &[TokenKind::Api]);
        Fixture { token, keys, key, dalek, policy }
    })
}

fn parts(token: &str) -> (&[u8], [u8; 64]) {
    let (input, sig) = token.rsplit_once('.').unwrap_or_else(|| std::process::abort());
    let sig: [u8; 64] = URL_SAFE_NO_PAD.decode(sig).ok().and_then(|s| s.try_into().ok()).unwrap_or_else(|| std::process::abort());
    (input.as_bytes(), sig)
}

#[no_mangle]
pub extern "C" fn bench_tg_verify(n: u32) -> u32 {
    let f = fixture();
    (0..n).filter(|_| verify(std::hint::black_box(&f.token), &f.keys, &f.policy, NOW).is_ok()).count() as u32
}

#[no_mangle]
pub extern "C" fn bench_signature(n: u32) -> u32 {
    let f = fixture();
    let (input, sig) = parts(&f.token);
    (0..n).filter(|_| f.key.verify_signature(std::hint::black_box(input), &sig)).count() as u32
}

#[no_mangle]
pub extern "C" fn bench_dalek_strict(n: u32) -> u32 {
    let f = fixture();
    let (input, sig) = parts(&f.token);
    let sig = ed25519_dalek::Signature::from_bytes(&sig);
    (0..n).filter(|_| f.dalek.verify_strict(std::hint::black_box(input), &sig).is_ok()).count() as u32
}
