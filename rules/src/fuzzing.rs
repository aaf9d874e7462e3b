//! Fuzz entry points, shared by the `cargo fuzz` targets in `fuzz/` and by the corpus
//! regression test (`tests/fuzz_corpus.rs`), so CI replays every saved input.
//!
//! Each function takes arbitrary bytes and checks invariants; a violated invariant is a
//! panic, which is what the fuzzer reports.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use crate::path;
use crate::route::{authorize, Rights, RouteSpec, RouteTable};
use crate::scope::{Prefix, ScopePattern, ScopeSet};
use crate::sync::{SyncResponse, UsageReport};
use crate::token::{verify, KeySet, TokenKind, VerifyPolicy, VerifyingKey};

/// Input: `<pattern>\n<METHOD> <request target>`.
/// Invariants: parsing never panics; display re-parses to the same pattern; the matcher
/// agrees with [`reference_match`]; a matching request is authorized by a token holding
/// exactly that scope; path splitting never yields empty or dot segments.
pub fn scope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (pattern, request) = text.split_once('\n').unwrap_or((text, "GET /"));
    let (method, target) = request.split_once(' ').unwrap_or(("GET", request));
    let prefix = Prefix::default();
    let split = path::split(target);
    if let Ok((_, segs)) = &split {
        assert!(segs.iter().all(|s| !s.is_empty() && *s != "." && *s != ".."), "split let a bad segment through: {target:?}");
    }
    let Ok(p) = ScopePattern::parse(pattern, &prefix) else { return };
    let shown = p.to_string();
    let again = ScopePattern::parse(&shown, &prefix).expect("the canonical form must parse");
    assert_eq!(p, again, "parse(display(p)) != p for {pattern:?}");
    let Ok((path_only, segs)) = split else { return };
    let ours = prefix.strip(&segs).is_some_and(|rest| p.matches(method, rest));
    assert_eq!(
        ours,
        reference_match(&shown, method, path_only),
        "matcher disagrees with the reference on {pattern:?} vs {method} {target:?}"
    );
    let scopes = ScopeSet::parse(&[pattern], &prefix).expect("parsed once already");
    let rights = Rights::new(Some(scopes), None, None);
    let no_routes = RouteTable::default();
    let decision = authorize(&rights, &no_routes, &prefix, method, &segs);
    assert_eq!(decision.result.is_ok(), ours, "authorize disagrees with the matcher");
    // The pattern used as a route must compile, and its lookup must agree.
    let table = RouteTable::compile(
        &[RouteSpec { pattern: pattern.to_owned(), flags: 0, items: vec![], http_token: false, voucher: false }],
        &prefix,
    )
    .expect("route");
    let looked_up = prefix.strip(&segs).and_then(|rest| table.lookup(method, rest)).is_some();
    assert_eq!(looked_up, ours);
    // Every pattern is within itself, and within the same pattern with all params.
    assert!(p.is_within(&p));
    let widened: String = std::iter::once(format!("{} ", p.method()))
        .chain(p.segments().iter().enumerate().map(|(i, _)| format!("/:p{i}")))
        .collect::<String>();
    let widened = if p.segments().is_empty() { format!("{} /", p.method()) } else { widened };
    // (The widened text can outgrow the 512-byte cap; then there is nothing to compare.)
    if let Ok(wide) = ScopePattern::parse(&widened, &prefix) {
        assert!(p.is_within(&wide), "{shown} not within {widened}");
    }
}

/// An independent matcher over the canonical text: strip the `/api/v1` prefix from the
/// path, then compare segment by segment.
pub fn reference_match(canonical: &str, method: &str, path: &str) -> bool {
    let Some((m, pat)) = canonical.split_once(' ') else { return false };
    if m != method {
        return false;
    }
    let rest = if path == "/api/v1" {
        ""
    } else if let Some(r) = path.strip_prefix("/api/v1/") {
        r
    } else {
        return false;
    };
    let want: Vec<&str> = if pat == "/" { Vec::new() } else { pat[1..].split('/').collect() };
    let got: Vec<&str> = if rest.is_empty() { Vec::new() } else { rest.split('/').collect() };
    want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| if w.starts_with(':') { !g.is_empty() } else { w == g })
}

/// The fixed key the token target verifies against (the fuzzer does not know its
/// private half, so nothing it builds may ever verify).
pub const FUZZ_KID: &str = "fuzz";
pub const FUZZ_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

/// Input: a token string. Invariants: never panics, never verifies.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = crate::denial::bearer(text);
    let _ = crate::token::inspect(text);
    let mut keys = KeySet::new();
    keys.insert(VerifyingKey::from_x(FUZZ_KID, FUZZ_X).expect("fixed key"));
    let policy = VerifyPolicy::new("tokengate", &["tokengate"], &TokenKind::ALL);
    let now = 1_800_000_000;
    assert!(verify(text, &keys, &policy, now).is_err(), "a token built by the fuzzer verified: {text:?}");
}

/// A raw 32-byte Ed25519 public key loaded as a trusted key is ([`VerifyingKey::from_x`]
/// on its base64url form): `None` when it would be refused (not a point, small order).
pub fn raw_key(key: &[u8; 32]) -> Option<VerifyingKey> {
    VerifyingKey::from_x(FUZZ_KID, &URL_SAFE_NO_PAD.encode(key)).ok()
}

/// Our verdict on a raw (key, message, signature) triple: a refused key verifies
/// nothing, else [`VerifyingKey::verify_signature`]. The Ed25519 test vectors
/// (`tests/ed25519_vectors.rs`) and the `verify_diff` fuzz target hold it against
/// ed25519-dalek's `verify_strict`.
pub fn verify_raw(key: &[u8; 32], msg: &[u8], sig: &[u8; 64]) -> bool {
    raw_key(key).is_some_and(|k| k.verify_signature(msg, sig))
}

/// Input: a request target. Invariants: [`path::split`] never panics; what it accepts is
/// within [`path::MAX_PATH_LEN`], starts with `/`, is the target up to its query, holds
/// only the bytes the filter lets through, and is exactly `/` joined with its segments,
/// none of them empty, `.` or `..`, at most [`path::MAX_SEGMENTS`] of them.
pub fn path(data: &[u8]) {
    let Ok(target) = std::str::from_utf8(data) else { return };
    let _ = path::query_has_access_token(target);
    let Ok((p, segs)) = path::split(target) else { return };
    assert!(target.len() <= path::MAX_PATH_LEN, "over the cap: {target:?}");
    assert!(p.starts_with('/'), "not origin-form: {target:?}");
    assert_eq!(p, target.split('?').next().unwrap_or(""), "the path is not the target up to its query");
    assert!(p.bytes().all(|b| (0x21..0x7f).contains(&b) && !matches!(b, b'#' | b'\\' | b';')), "a refused byte got through: {target:?}");
    assert!(segs.len() <= path::MAX_SEGMENTS);
    assert!(segs.iter().all(|s| !s.is_empty() && *s != "." && *s != ".." && !s.contains('/')), "bad segment in {target:?}: {segs:?}");
    let joined: String = segs.iter().map(|s| format!("/{s}")).collect();
    assert_eq!(if segs.is_empty() { "/" } else { &joined }, p, "the segments do not make up the path");
    // Every escape is two hex digits of a printable byte that is not a separator or a dot.
    for (i, _) in p.match_indices('%') {
        let hex = p.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
        let decoded = hex.unwrap_or_else(|| panic!("a broken escape got through: {target:?}"));
        assert!((0x20..0x7f).contains(&decoded) && !b"/\\.%;#?".contains(&decoded), "escape {decoded:#x} got through: {target:?}");
    }
}

/// Input: JSON. Invariants: decoding a [`SyncResponse`] never panics, and what decodes
/// re-encodes to JSON that decodes to the same answer (and encodes the same again).
///
/// The same input read as a binary answer (`sync::decode_answer`, JSON or the `format=bin`
/// frame) never panics either, holds whole records only, and what decodes re-encodes to
/// an answer that decodes to the same header and records.
pub fn sync_answer(data: &[u8]) {
    round_trip::<SyncResponse>(data);
    let Ok(answer) = crate::sync::decode_answer(data) else { return };
    assert_eq!(answer.records.len() % crate::revocation::RECORD_BYTES, 0, "a partial record");
    let mut header = answer.header.clone();
    let carried: Vec<crate::revocation::Record> = crate::revocation::records(answer.records).expect("whole records").collect();
    let mut all: Vec<crate::revocation::Record> =
        header.revoked.iter().map(|r| crate::revocation::record(&crate::revocation::id_key(&r.jti), r.exp)).collect();
    all.extend(carried);
    header.revoked = all
        .iter()
        .map(|r| crate::sync::Revocation {
            jti: crate::revocation::key_hex(&crate::revocation::record_key(r)),
            exp: crate::revocation::record_exp(r),
        })
        .collect();
    let body = crate::sync::encode_binary(header.clone()).expect("a decoded answer encodes");
    let again = crate::sync::decode_answer(&body).expect("the encoding decodes");
    assert_eq!(again.header, crate::sync::SyncResponse { revoked: Vec::new(), ..header }, "the header changed");
    assert_eq!(again.records, all.concat().as_slice(), "the records changed");
}

/// Input: JSON. Invariants: as [`sync_answer`], for a proxy's [`UsageReport`].
pub fn usage_report(data: &[u8]) {
    round_trip::<UsageReport>(data);
}

fn round_trip<T>(data: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let Ok(value) = serde_json::from_slice::<T>(data) else { return };
    let text = serde_json::to_vec(&value).expect("a decoded value encodes");
    let again: T = serde_json::from_slice(&text).expect("the encoding decodes");
    assert_eq!(again, value, "the round trip changed the value: {}", String::from_utf8_lossy(&text));
    assert_eq!(serde_json::to_vec(&again).expect("encodes"), text, "the encoding is not stable");
}
