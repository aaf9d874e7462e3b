//! The reference verdict our Ed25519 verifier is held to, and the differential check the
//! `verify_diff` fuzz target runs (fuzz/fuzz_targets/verify_diff.rs includes this file, and
//! tests/fuzz_corpus.rs replays its corpus through it).
//!
//! Reference: ed25519-dalek's `VerifyingKey::from_bytes` then `verify_strict` (S < L, R and A
//! not of small order, the cofactorless equation), plus "R is a canonical encoding". Our
//! side: `tokengate_rules::fuzzing::raw_key` (the key loaded as a trusted key is: refused
//! when not a point or of small order) then `VerifyingKey::verify_signature`.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::OnceLock;

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use ed25519_dalek::Signer as _;
use sha2::{Digest, Sha512};
use tokengate_rules::fuzzing::raw_key;
use tokengate_rules::token::VerifyingKey;

/// L = 2^252 + 27742317777372353535851937790883648493, little-endian.
pub const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0x10,
];

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Does the reference refuse this key? `from_bytes` fails (not a point) or the point is
/// of small order (`is_weak`; `verify_strict` refuses every signature under it).
pub fn dalek_refuses_key(key: &[u8; 32]) -> bool {
    ed25519_dalek::VerifyingKey::from_bytes(key).map_or(true, |k| k.is_weak())
}

/// `R` is the canonical encoding of a point: it decompresses and re-compresses to itself.
pub fn r_is_canonical(r: &[u8]) -> bool {
    let Ok(bytes) = <[u8; 32]>::try_from(r) else { return false };
    CompressedEdwardsY(bytes).decompress().is_some_and(|p| p.compress().0 == bytes)
}

/// The expected verdict: ed25519-dalek `verify_strict` (a key `from_bytes` refuses is a
/// refusal) and a canonical `R`.
pub fn expected(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let Ok(vk) = ed25519_dalek::VerifyingKey::from_bytes(key) else { return false };
    vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig)).is_ok() && r_is_canonical(&sig[..32])
}

/// Checks our verifier against the reference on one triple and returns the verdict;
/// panics, naming the triple, on any difference in the key's refusal or the verdict.
pub fn check(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    check_with(raw_key(key).as_ref(), key, msg, sig)
}

/// [`check`] with our key already loaded (`None`: we refused it).
pub fn check_with(ours: Option<&VerifyingKey>, key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    let triple = || format!("key {} msg {} sig {}", hex(key), hex(msg), hex(sig));
    assert_eq!(ours.is_none(), dalek_refuses_key(key), "key refusal differs from ed25519-dalek: {}", triple());
    let ours = ours.is_some_and(|k| k.verify_signature(msg, sig));
    let theirs = expected(key, msg, sig);
    assert_eq!(ours, theirs, "verdict differs from verify_strict + canonical R (ours {ours}): {}", triple());
    theirs
}

/// Every 32-byte encoding that decompresses to a point of small order: the eight points'
/// canonical encodings, then the non-canonical ones (`x = 0` with the sign bit set; `y + p`
/// for `y` in {0, 1}). Each with `true` when canonical.
pub fn small_order_encodings() -> &'static [([u8; 32], bool)] {
    static ALL: OnceLock<Vec<([u8; 32], bool)>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut out: Vec<([u8; 32], bool)> = EIGHT_TORSION.iter().map(|t| (t.compress().0, true)).collect();
        // y = 0, 1, p - 1, p, p + 1 (p = 2^255 - 19), little-endian.
        let high = |low: u8| {
            let mut b = [0xffu8; 32];
            b[0] = low;
            b[31] = 0x7f;
            b
        };
        let mut one = [0u8; 32];
        one[0] = 1;
        for y in [[0u8; 32], one, high(0xec), high(0xed), high(0xee)] {
            for sign in [0u8, 0x80] {
                let mut b = y;
                b[31] |= sign;
                let small = CompressedEdwardsY(b).decompress().is_some_and(|p| p.is_small_order());
                if small && !out.iter().any(|(e, _)| *e == b) {
                    out.push((b, false));
                }
            }
        }
        out
    })
}

/// `k = SHA-512(R || A || msg)` reduced.
pub fn challenge(r: &[u8; 32], a: &[u8; 32], msg: &[u8]) -> Scalar {
    Scalar::from_hash(Sha512::new().chain_update(r).chain_update(a).chain_update(msg))
}

/// A signature `(R, S = r + k·a)` for the secret scalar `a` of the key encoded as
/// `key` and the nonce `r` with `R` encoded as `r_enc`: valid under the cofactorless
/// equation when `key = [a]B` and `R = [r]B`; for keys and nonces with a torsion part,
/// when that part cancels.
pub fn sign_raw(a: &Scalar, key: &[u8; 32], r: &Scalar, r_enc: &[u8; 32], msg: &[u8]) -> [u8; 64] {
    let k = challenge(r_enc, key, msg);
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(r_enc);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// `S + L` (the malleated twin) written over `S`, dropping a carry out of 256 bits.
pub fn add_l(sig: &mut [u8; 64]) {
    let mut carry = 0u16;
    for (b, l) in sig[32..].iter_mut().zip(L) {
        let sum = u16::from(*b) + u16::from(l) + carry;
        *b = sum as u8;
        carry = sum >> 8;
    }
}

/// A key the fuzzer cannot bend (fixed seeds), with its table built once.
pub struct FixedKey {
    pub dalek: ed25519_dalek::SigningKey,
    pub a: Scalar,
    pub bytes: [u8; 32],
    pub ours: VerifyingKey,
}

pub fn fixed_keys() -> &'static [FixedKey] {
    static KEYS: OnceLock<Vec<FixedKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        (1u8..=4)
            .map(|i| {
                let dalek = ed25519_dalek::SigningKey::from_bytes(&[i.wrapping_mul(37); 32]);
                let bytes = dalek.verifying_key().to_bytes();
                let ours = raw_key(&bytes).expect("a real key loads");
                FixedKey { a: dalek.to_scalar(), dalek, bytes, ours }
            })
            .collect()
    })
}

/// Reads `N` bytes off the front of `data`, zero-padded when it runs out.
fn take<const N: usize>(data: &mut &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    let n = N.min(data.len());
    out[..n].copy_from_slice(&data[..n]);
    *data = &data[n..];
    out
}

fn take1(data: &mut &[u8]) -> u8 {
    take::<1>(data)[0]
}

/// The edge-case rewrites of a signature a mode can ask for (Chalkias et al. 2020).
fn tweak(sig: &mut [u8; 64], op: u8) {
    match op % 8 {
        1 => add_l(sig),
        2 => sig[63] |= 0xe0, // S ≥ 2^253
        3 => sig[32..].copy_from_slice(&L),
        4 => sig[31] ^= 0x80, // R's sign bit: -R, or a non-canonical x = 0
        5 => {
            let all = small_order_encodings();
            sig[..32].copy_from_slice(&all[usize::from(op >> 3) % all.len()].0);
        }
        _ => {}
    }
}

/// Flips bytes of `key || sig || msg` (or of `sig || msg` when `with_key` is false): up to
/// three `(position, xor)` pairs read from `data`.
fn mutate(data: &mut &[u8], key: &mut [u8; 32], sig: &mut [u8; 64], msg: &mut [u8], with_key: bool) {
    let n = take1(data) % 4;
    for _ in 0..n {
        let [pos, xor] = take::<2>(data);
        let mut pos = usize::from(pos);
        if !with_key {
            pos += 32;
        }
        if pos < 32 {
            key[pos] ^= xor;
        } else if pos < 96 {
            sig[pos - 32] ^= xor;
        } else if !msg.is_empty() {
            let i = (pos - 96) % msg.len();
            msg[i] ^= xor;
        }
    }
}

/// The differential fuzz target. The first byte picks how the rest makes a triple:
///
/// - 0: raw: key (32), signature (64), message (the rest);
/// - 1: one of four fixed keys signs the message (ed25519-dalek), then byte flips and an
///   edge-case rewrite of the signature;
/// - 2: a key from a seed in the input signs, then flips over key, signature and message;
/// - 3: a mixed-order key `[a]B + T` and nonce point `[r]B + T'` (T, T' of small order)
///   sign with `S = r + k·a`: accepted exactly when the torsion cancels, else refused;
/// - 4: a small-order `R` (any of its 14 encodings) under a fixed key, with `S = k·a + e`
///   (for `R` = identity and `e = 0` the cofactorless equation holds), or a small-order
///   key with a signature from the input.
///
/// Panics on any difference from [`expected`]; returns the verdict.
pub fn verify_diff(data: &[u8]) -> bool {
    let Some((&mode, mut rest)) = data.split_first() else { return false };
    let data = &mut rest;
    match mode % 5 {
        0 => {
            let key = take::<32>(data);
            let sig = take::<64>(data);
            check(&key, data, &sig)
        }
        1 => {
            let fixed = &fixed_keys()[usize::from(take1(data)) % fixed_keys().len()];
            let op = take1(data);
            let muts = take::<7>(data);
            let mut msg = data.to_vec();
            let mut sig = fixed.dalek.sign(&msg).to_bytes();
            let mut key = fixed.bytes;
            mutate(&mut &muts[..], &mut key, &mut sig, &mut msg, false);
            tweak(&mut sig, op);
            check_with(Some(&fixed.ours), &fixed.bytes, &msg, &sig)
        }
        2 => {
            let seed = take::<32>(data);
            let op = take1(data);
            let muts = take::<7>(data);
            let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
            let mut msg = data.to_vec();
            let mut sig = dalek.sign(&msg).to_bytes();
            let mut key = dalek.verifying_key().to_bytes();
            mutate(&mut &muts[..], &mut key, &mut sig, &mut msg, true);
            tweak(&mut sig, op);
            check(&key, &msg, &sig)
        }
        3 => {
            let a = Scalar::from_bytes_mod_order(take::<32>(data));
            let r = Scalar::from_bytes_mod_order(take::<32>(data));
            let [ta, tr, op] = take::<3>(data);
            let key = ((B * a) + EIGHT_TORSION[usize::from(ta % 8)]).compress().0;
            let r_point: EdwardsPoint = (B * r) + EIGHT_TORSION[usize::from(tr % 8)];
            let mut sig = sign_raw(&a, &key, &r, &r_point.compress().0, data);
            tweak(&mut sig, op);
            check(&key, data, &sig)
        }
        _ => {
            let [which, enc, e, op] = take::<4>(data);
            let all = small_order_encodings();
            let (r_enc, _) = all[usize::from(enc) % all.len()];
            if which & 0x80 == 0 {
                let fixed = &fixed_keys()[usize::from(which) % fixed_keys().len()];
                let mut sig = sign_raw(&fixed.a, &fixed.bytes, &Scalar::ZERO, &r_enc, data);
                let s = Scalar::from_bytes_mod_order(sig[32..].try_into().expect("32 bytes")) + Scalar::from(e);
                sig[32..].copy_from_slice(s.as_bytes());
                tweak(&mut sig, op);
                check_with(Some(&fixed.ours), &fixed.bytes, data, &sig)
            } else {
                let (key, _) = all[usize::from(which & 0x7f) % all.len()];
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&r_enc);
                sig[32] = e;
                tweak(&mut sig, op);
                check(&key, data, &sig)
            }
        }
    }
}
