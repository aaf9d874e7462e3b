//! The shared-data layout: a fixed set of keys, because Envoy never frees a
//! shared-data key once written (proxy-wasm-rust-sdk#301, envoy#28339).
//!
//! | key | writer | contents |
//! |---|---|---|
//! | `tokengate/meta` | sync | [`Meta`], 32 bytes |
//! | `tokengate/keys` | sync | JSON list of public keys |
//! | `tokengate/rev/<0..63>` | sync | revocation bucket: 16-byte records sorted by key (`rules::revocation`) |
//! | `tokengate/amend/<0..15>` | sync | amendment bucket: JSON list of [`Amendment`]s |
//! | `tokengate/sess/<0..63>` | sync | live-session bucket: lines `jti exp` |
//! | `tokengate/journal` | sync | JSON [`Journal`]: the latest revocations, amendments and session changes |
//! | `tokengate/claims/<slot>` | gate | verified-claims slot: SHA-256, kind, key generation, claims JSON |
//!
//! The sync service writes `meta` last, so a worker that reads `meta` first and the rest
//! after never sees a generation whose data is not written yet.

use serde::{Deserialize, Serialize};
use tokengate_rules::sync::Amendment;
use tokengate_rules::{Claims, TokenKind};

pub const META_KEY: &str = "tokengate/meta";
pub const KEYS_KEY: &str = "tokengate/keys";
pub const JOURNAL_KEY: &str = "tokengate/journal";
/// Revocation buckets, by `rules::revocation::bucket_of` of the id's key.
pub const REV_BUCKETS: usize = tokengate_rules::revocation::BUCKETS;
/// The shared queue workers put token use on (`<jti> <ms>`); the sync service drains it.
pub const USAGE_QUEUE: &str = "tokengate/usage";
/// The `vm_id` the gate and the sync service share (see envoy/envoy.yaml).
pub const VM_ID: &str = "tokengate";
/// The journal keeps this many latest revocations; a worker further behind reloads.
pub const JOURNAL_CAP: usize = 4096;

pub const AMEND_BUCKETS: usize = 16;
/// Live sessions (seed 003) are kept in as many buckets as revocations, by the same hash.
pub const SESS_BUCKETS: usize = REV_BUCKETS;

pub fn sess_key(i: usize) -> String {
    format!("tokengate/sess/{i}")
}

pub fn amend_key(i: usize) -> String {
    format!("tokengate/amend/{i}")
}

pub fn amend_bucket_of(jti: &str) -> usize {
    bucket_of(jti) % AMEND_BUCKETS
}

pub fn bucket_key(i: usize) -> String {
    format!("tokengate/rev/{i}")
}

pub fn claims_key(slot: u32) -> String {
    format!("tokengate/claims/{slot}")
}

/// FNV-1a, to spread `jti`s over the session and amendment buckets (ids are random; no
/// adversary picks them). Revocations are bucketed by their key instead.
pub fn bucket_of(jti: &str) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in jti.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % REV_BUCKETS as u64) as usize
}

/// The sync state as the service VM last published it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The control plane's change-log version applied.
    pub version: u64,
    /// When the last good answer from the control plane arrived (ms).
    pub synced_at_ms: u64,
    /// Bumped whenever the key set changes.
    pub keys_gen: u64,
    /// Bumped when the revocation buckets are rewritten wholesale (snapshot).
    pub rev_gen: u64,
}

impl Meta {
    pub fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[0..8].copy_from_slice(&self.version.to_le_bytes());
        out[8..16].copy_from_slice(&self.synced_at_ms.to_le_bytes());
        out[16..24].copy_from_slice(&self.keys_gen.to_le_bytes());
        out[24..32].copy_from_slice(&self.rev_gen.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Meta> {
        let word = |i: usize| -> Option<u64> { Some(u64::from_le_bytes(bytes.get(i * 8..i * 8 + 8)?.try_into().ok()?)) };
        if bytes.len() != 32 {
            return None;
        }
        Some(Meta { version: word(0)?, synced_at_ms: word(1)?, keys_gen: word(2)?, rev_gen: word(3)? })
    }
}

pub fn encode_bucket<'a>(entries: impl Iterator<Item = (&'a str, u64)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (jti, exp) in entries {
        out.extend_from_slice(jti.as_bytes());
        out.push(b' ');
        out.extend_from_slice(exp.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// Calls `f` for every well-formed line; returns false if any line was malformed.
pub fn decode_bucket(bytes: &[u8], mut f: impl FnMut(&str, u64)) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else { return false };
    let mut ok = true;
    for line in text.lines() {
        match line.split_once(' ').and_then(|(jti, exp)| Some((jti, exp.parse::<u64>().ok()?))) {
            Some((jti, exp)) => f(jti, exp),
            None => ok = false,
        }
    }
    ok
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The journal holds every revocation with a version above `from`.
    pub from: u64,
    pub entries: Vec<JournalEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub v: u64,
    pub jti: String,
    pub exp: u64,
    /// Set: this entry is an amendment of `jti`; unset: a revocation (or a session change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amend: Option<Amendment>,
    /// Set: this entry is a session change, not a revocation: `true` the session `jti`
    /// started (live until `exp`), `false` it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<bool>,
}

fn kind_byte(kind: TokenKind) -> u8 {
    TokenKind::ALL.iter().position(|k| *k == kind).map_or(u8::MAX, |i| i as u8)
}

/// A claims slot: the token's SHA-256, its kind, the key generation (`Meta::keys_gen`)
/// it was verified under, then the claims as JSON.
pub fn encode_slot(digest: &[u8; 32], kind: TokenKind, keys_gen: u64, claims: &Claims) -> Option<Vec<u8>> {
    let json = serde_json::to_vec(claims).ok()?;
    let mut out = Vec::with_capacity(SLOT_HEADER + json.len());
    out.extend_from_slice(digest);
    out.push(kind_byte(kind));
    out.extend_from_slice(&keys_gen.to_le_bytes());
    out.extend_from_slice(&json);
    Some(out)
}

const SLOT_HEADER: usize = 32 + 1 + 8;

/// The slot's claims if it holds exactly the token with `digest`, verified under the
/// key generation `keys_gen`. A slot from an earlier key set is not used: the key that
/// verified it may have left the set (a retired or withdrawn key), and its tokens must
/// then be verified again, and refused.
pub fn decode_slot(bytes: &[u8], digest: &[u8; 32], keys_gen: u64) -> Option<(TokenKind, Claims)> {
    if bytes.len() < SLOT_HEADER || bytes[..32] != digest[..] || bytes[33..41] != keys_gen.to_le_bytes() {
        return None;
    }
    let kind = *TokenKind::ALL.get(usize::from(bytes[32]))?;
    let claims = serde_json::from_slice(&bytes[SLOT_HEADER..]).ok()?;
    Some((kind, claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_round_trip() {
        let m = Meta { version: 7, synced_at_ms: 1_700_000_000_000, keys_gen: 2, rev_gen: 3 };
        assert_eq!(Meta::decode(&m.encode()), Some(m));
        assert_eq!(Meta::decode(&[0u8; 31]), None);
    }

    #[test]
    fn bucket_round_trip() {
        let bytes = encode_bucket([("a", 1u64), ("b", 2)].into_iter());
        let mut got = Vec::new();
        assert!(decode_bucket(&bytes, |j, e| got.push((j.to_owned(), e))));
        assert_eq!(got, vec![("a".to_owned(), 1), ("b".to_owned(), 2)]);
        assert!(!decode_bucket(b"a x\n", |_, _| {}));
    }

    #[test]
    fn buckets_spread() {
        let mut counts = [0usize; REV_BUCKETS];
        for i in 0..6400 {
            counts[bucket_of(&format!("{i:024x}"))] += 1;
        }
        assert!(counts.iter().all(|c| *c > 50 && *c < 150), "{counts:?}");
    }
}
