//! The sync protocol between the control plane and the proxies (wire format v1).
//!
//! ```text
//! GET /sync/v1/changes?since=<version>&wait_ms=<0..=30000>&proxy=<proxy id>&nonce=<nonce>
//! Authorization: Bearer <ProxyKeys::bearer>
//! ```
//!
//! Authentication, both ways, from the one proxy secret the operator gives both sides
//! ([`ProxyKeys`]): the proxy presents a bearer derived from the secret (never the
//! secret itself), and the control plane answers with [`MAC_HEADER`], an HMAC-SHA256
//! under a second key derived from the secret, over the request's nonce and the exact
//! body. Whoever answers on the control plane's address learns the bearer but not the
//! MAC key, so it can neither forge an answer nor replay a recorded one (the nonce is new
//! for every call); a rolled-back version is refused by the proxy on top.
//!
//! The answer is a [`SyncResponse`]. With `since` equal to the current version the
//! control plane holds the request until a change commits or `wait_ms` passes (long
//! poll), so a revocation is sent the moment it is durable. `since=0`, or a `since`
//! older than the change log keeps, yields a snapshot. Every answer carries the whole
//! public key set (a handful of keys), so key rotation needs no delta of its own.
//! Fields are only ever added; a proxy ignores fields it does not know.
//!
//! With `format=bin` (issue 14) snapshot parts come as a [`BinaryAnswer`]: the same answer
//! as JSON without `revoked`, then every revocation as a 16-byte record
//! ([`crate::revocation::Record`]); [`decode_answer`] reads either form.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

pub const PROTOCOL: u32 = 1;
pub const PATH: &str = "/sync/v1/changes";
/// The longest a control plane holds a long-poll.
pub const MAX_WAIT_MS: u64 = 30_000;
/// A proxy's workers see what its sync service applied within this long (they re-read
/// the shared sync state at most this often); confirmed propagation waits it out.
pub const WORKER_LAG_MS: u64 = 5;
/// Revocations per snapshot part by default: about 5 MB of JSON, well inside the buffer
/// Envoy gives a Wasm HTTP call's answer (a single 1M-entry snapshot, ~55 MB, is not).
pub const DEFAULT_SNAPSHOT_PAGE: usize = 100_000;

/// The answer header carrying [`ProxyKeys::answer_mac`], lower-case hex.
pub const MAC_HEADER: &str = "x-tokengate-sync-mac";
/// The shortest proxy secret either side accepts without an explicit development flag.
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest nonce a proxy sends (and the control plane accepts).
pub const MAX_NONCE_BYTES: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// The two keys derived from a proxy secret: the bearer a proxy presents, and the key
/// of the answers' MAC. Each is HMAC-SHA256(secret, label), so knowing one reveals
/// neither the other nor the secret.
#[derive(Clone)]
pub struct ProxyKeys {
    bearer: String,
    mac_key: [u8; 32],
}

impl ProxyKeys {
    pub fn derive(secret: &[u8]) -> ProxyKeys {
        let bearer = hex(&label(secret, b"tokengate sync v1 bearer"));
        ProxyKeys { bearer, mac_key: label(secret, b"tokengate sync v1 answer mac") }
    }

    /// What the proxy sends as `Authorization: Bearer ...` (64 hex digits).
    pub fn bearer(&self) -> &str {
        &self.bearer
    }

    /// The MAC of an answer to the request that carried `nonce`, over the exact body.
    pub fn answer_mac(&self, nonce: &str, body: &[u8]) -> String {
        hex(&self.mac(nonce, body).finalize().into_bytes())
    }

    /// Checks a presented MAC (hex) in constant time.
    pub fn check_answer_mac(&self, nonce: &str, body: &[u8], presented: &str) -> bool {
        let Some(bytes) = unhex(presented) else { return false };
        self.mac(nonce, body).verify_slice(&bytes).is_ok()
    }

    fn mac(&self, nonce: &str, body: &[u8]) -> HmacSha256 {
        let mut m = keyed(&self.mac_key);
        // Length-prefixed, so no (nonce, body) pair reads as another.
        m.update(&(nonce.len() as u64).to_be_bytes());
        m.update(nonce.as_bytes());
        m.update(body);
        m
    }
}

/// HMAC-SHA256 keyed with `key`. HMAC takes a key of any length, so `new_from_slice`
/// cannot fail; the fallback exists only so that no panic path is compiled in.
fn keyed(key: &[u8]) -> HmacSha256 {
    match <HmacSha256 as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()),
    }
}

fn label(secret: &[u8], what: &[u8]) -> [u8; 32] {
    let mut m = keyed(secret);
    m.update(what);
    m.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    s.as_bytes().chunks(2).map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?)).collect()
}

/// A nonce as a proxy sends it: 1 to [`MAX_NONCE_BYTES`] of `[A-Za-z0-9._-]`.
pub fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.len() <= MAX_NONCE_BYTES && n.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SyncResponse {
    pub protocol: u32,
    /// The change-log version this answer brings the proxy to.
    pub version: u64,
    /// True: `revoked` is the complete list and replaces the proxy's set.
    pub snapshot: bool,
    /// The complete set of public keys to trust.
    pub keys: Vec<PublicKey>,
    /// Revocations since `since` (or all live ones in a snapshot).
    pub revoked: Vec<Revocation>,
    /// Amendments since `since` (or all live ones in a snapshot): the current amendable
    /// state of each amended token, applied over its signed claims.
    #[serde(default)]
    pub amended: Vec<Amendment>,
    /// The control plane's clock, ms since the epoch.
    pub server_time: u64,
    /// Set on a snapshot that continues: ask again with `since=0&after=<next>` for the
    /// following part (revocations are ordered by `jti`). A proxy applies a snapshot only
    /// when its last part has arrived, at the first part's `version`, and then asks for
    /// the delta since that version, so nothing revoked while it paged is missed.
    /// Amendments come whole in the first part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// Sessions (seed 003) started since `since` and still live (or, in a snapshot, every
    /// live session). A proxy admits a session token only while its id is in this set:
    /// an ended session is simply removed ([`SyncResponse::ended`]), so no revocation
    /// entry has to outlive it. Come whole in the first part of a snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<LiveSession>,
    /// Sessions ended since `since` (logout, idle, token revoked): removed from the live
    /// set. Applied after [`SyncResponse::sessions`]. Never in a snapshot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ended: Vec<String>,
}

/// A live session: its id (the session token's `jti`) and when it ends at the latest
/// (its token's end, s since the epoch); the proxy drops it then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LiveSession {
    pub jti: String,
    pub exp: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PublicKey {
    pub kid: String,
    /// Raw Ed25519 public key, base64url without padding (JWK `x`).
    pub x: String,
}

/// The amendable claims of a live token (seed 001 `token/update`), as they are now.
/// Every field is the full current value, not a diff: `None` means "not set" (no flag
/// limit, all items, no app, no params). A proxy replaces these claims of the token with
/// `jti` by these values; `exp` can only bring the signed expiry forward, never extend it.
/// A proxy keeps an amendment until `signed_exp`: past `exp` it is what refuses the token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Amendment {
    pub jti: String,
    /// Activation time (seed `at`), s since the epoch: the token is refused before it.
    pub nbf: u64,
    /// End of life (seed `at + dur`), s since the epoch.
    pub exp: u64,
    /// The expiry signed into the token, s since the epoch: the entry is kept until then
    /// (plus the leeway), never only until `exp`. Dropping it at `exp` would let the
    /// token live again, with its signed rights, until its signed expiry.
    pub signed_exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fl: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<i64>>,
}

impl Amendment {
    /// Applies the amendment over verified claims.
    pub fn apply(&self, claims: &mut crate::Claims) {
        claims.nbf = self.nbf;
        claims.exp = claims.exp.min(self.exp);
        claims.app.clone_from(&self.app);
        claims.fl = self.fl;
        claims.p.clone_from(&self.p);
        claims.items.clone_from(&self.items);
    }
}

/// Token use reported by a proxy: `POST /sync/v1/usage` with the proxy credential.
/// Batched by the sync service; the control plane keeps the latest time per token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageReport {
    pub proxy: String,
    pub used: Vec<Usage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    pub jti: String,
    /// When the proxy last saw the token, ms since the epoch.
    pub at: u64,
}

pub const USAGE_PATH: &str = "/sync/v1/usage";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Revocation {
    /// The revoked token's id.
    pub jti: String,
    /// When the token would have expired anyway (s since the epoch); the entry can be
    /// dropped after this.
    pub exp: u64,
}

/// The `format` a proxy asks for with `format=bin`: snapshot parts as a [`BinaryAnswer`].
pub const FORMAT_BINARY: &str = "bin";
/// The content type of a binary answer (JSON answers are `application/json`).
pub const BINARY_CONTENT_TYPE: &str = "application/vnd.tokengate.sync";
/// The first bytes of a binary answer (no JSON text starts with them); the last byte is
/// the frame's version.
pub const BINARY_MAGIC: [u8; 4] = *b"TGS\x01";
/// A binary snapshot part carries this many times `TOKENGATE_SNAPSHOT_PAGE` revocations
/// (16 bytes each: 400k by default, 6.4 MB, against 5 MB for a JSON part of 100k).
pub const BINARY_PAGE_FACTOR: u64 = 4;

/// A binary answer (`format=bin`, used for snapshot parts):
///
/// ```text
/// "TGS\x01" | header length: u32 LE | header: a SyncResponse as JSON |
/// record count: u32 LE | records: count x 16 bytes (revocation::Record)
/// ```
///
/// The header is a whole [`SyncResponse`]; its `revoked` may hold entries too (a sender
/// puts every revocation in the records). The MAC covers the whole body, exactly as for
/// JSON. A decoder takes exactly this layout: trailing or missing bytes are an error.
#[derive(Debug)]
pub struct BinaryAnswer<'a> {
    pub header: SyncResponse,
    /// Whole records (a multiple of 16 bytes).
    pub records: &'a [u8],
}

/// Encodes `header` (whose `revoked` is moved into the records) as a binary answer.
pub fn encode_binary(mut header: SyncResponse) -> Result<Vec<u8>, String> {
    let revoked = std::mem::take(&mut header.revoked);
    let json = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    let (Ok(hlen), Ok(count)) = (u32::try_from(json.len()), u32::try_from(revoked.len())) else {
        return Err("a binary answer holds at most 4 GiB of header and 2^32 records".into());
    };
    let mut out = Vec::with_capacity(12 + json.len() + revoked.len() * crate::revocation::RECORD_BYTES);
    out.extend_from_slice(&BINARY_MAGIC);
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&count.to_le_bytes());
    for r in &revoked {
        out.extend_from_slice(&crate::revocation::record(&crate::revocation::id_key(&r.jti), r.exp));
    }
    Ok(out)
}

/// Decodes an answer in either form: JSON, or binary when it starts with
/// [`BINARY_MAGIC`]. Never panics; any truncation or trailing byte is an error.
pub fn decode_answer(body: &[u8]) -> Result<BinaryAnswer<'_>, String> {
    let Some(rest) = body.strip_prefix(&BINARY_MAGIC[..]) else {
        if body.starts_with(&BINARY_MAGIC[..3]) {
            return Err(format!("binary sync answer version {} is not supported", body.get(3).copied().unwrap_or(0)));
        }
        let header = serde_json::from_slice(body).map_err(|e| format!("sync answer is not valid JSON: {e}"))?;
        return Ok(BinaryAnswer { header, records: &[] });
    };
    let (hlen, rest) = take_u32(rest).ok_or("binary sync answer: truncated header length")?;
    let (json, rest) = split(rest, hlen).ok_or("binary sync answer: truncated header")?;
    let (count, rest) = take_u32(rest).ok_or("binary sync answer: truncated record count")?;
    let want = count.checked_mul(crate::revocation::RECORD_BYTES).ok_or("binary sync answer: too many records")?;
    if rest.len() != want {
        return Err(format!("binary sync answer: {} bytes of records for {count} records", rest.len()));
    }
    let header = serde_json::from_slice(json).map_err(|e| format!("binary sync answer: header is not valid JSON: {e}"))?;
    Ok(BinaryAnswer { header, records: rest })
}

fn take_u32(b: &[u8]) -> Option<(usize, &[u8])> {
    let (n, rest) = split(b, 4)?;
    Some((usize::try_from(u32::from_le_bytes([n[0], n[1], n[2], n[3]])).ok()?, rest))
}

fn split(b: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    (b.len() >= n).then(|| b.split_at(n))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn security_sync_answer_mac_binds_nonce_and_body() {
        let k = ProxyKeys::derive(b"0123456789abcdef0123456789abcdef");
        let mac = k.answer_mac("n1", b"{\"version\":2}");
        assert!(k.check_answer_mac("n1", b"{\"version\":2}", &mac));
        assert!(!k.check_answer_mac("n2", b"{\"version\":2}", &mac), "a replay under another nonce");
        assert!(!k.check_answer_mac("n1", b"{\"version\":3}", &mac), "another body");
        assert!(!k.check_answer_mac("n1x", b"\"version\":2}", &mac), "the nonce/body boundary moved");
        assert!(!k.check_answer_mac("n1", b"{\"version\":2}", &mac.to_uppercase()));
        assert!(!k.check_answer_mac("n1", b"{\"version\":2}", &mac[..62]));
        let other = ProxyKeys::derive(b"0123456789abcdef0123456789abcdeX");
        assert!(!other.check_answer_mac("n1", b"{\"version\":2}", &mac), "another secret");
    }

    #[test]
    fn security_sync_bearer_reveals_neither_secret_nor_mac_key() {
        let secret = b"0123456789abcdef0123456789abcdef";
        let k = ProxyKeys::derive(secret);
        assert_eq!(k.bearer().len(), 64);
        assert!(!k.bearer().contains("0123456789abcdef0123"));
        // The bearer used as a MAC key (what an impostor holds) does not make valid MACs.
        let forged = ProxyKeys { bearer: String::new(), mac_key: label(k.bearer().as_bytes(), b"x") };
        assert!(!k.check_answer_mac("n", b"{}", &forged.answer_mac("n", b"{}")));
        assert_ne!(hex(&k.mac_key), k.bearer());
    }

    fn part(revoked: &[(&str, u64)]) -> SyncResponse {
        SyncResponse {
            protocol: PROTOCOL,
            version: 9,
            snapshot: true,
            keys: vec![PublicKey { kid: "k1".into(), x: "AAAA".into() }],
            revoked: revoked.iter().map(|(j, e)| Revocation { jti: (*j).into(), exp: *e }).collect(),
            amended: vec![],
            server_time: 1,
            next: Some("0123456789abcdef01234567".into()),
            sessions: vec![LiveSession { jti: "s".into(), exp: 3 }],
            ended: vec![],
        }
    }

    #[test]
    fn binary_answers_round_trip_and_carry_every_entry_as_a_record() {
        use crate::revocation::{id_key, record, records};
        let r = part(&[("0123456789abcdef01234567", 1_800_000_000), ("not-hex", 5)]);
        let body = encode_binary(r.clone()).unwrap();
        assert!(body.starts_with(&BINARY_MAGIC));
        assert_eq!(body.len(), 12 + serde_json::to_vec(&SyncResponse { revoked: vec![], ..r.clone() }).unwrap().len() + 32);
        let a = decode_answer(&body).unwrap();
        assert_eq!(a.header, SyncResponse { revoked: vec![], ..r.clone() });
        let got: Vec<_> = records(a.records).unwrap().collect();
        assert_eq!(got, vec![record(&id_key("0123456789abcdef01234567"), 1_800_000_000), record(&id_key("not-hex"), 5)]);
        // JSON is still read, with no records.
        let json = serde_json::to_vec(&r).unwrap();
        let a = decode_answer(&json).unwrap();
        assert_eq!((a.header, a.records.len()), (r, 0));
    }

    #[test]
    fn truncated_or_garbled_binary_answers_are_refused_without_panic() {
        let body = encode_binary(part(&[("0123456789abcdef01234567", 7), ("b", 8)])).unwrap();
        for n in 0..body.len() {
            assert!(decode_answer(&body[..n]).is_err(), "truncated at {n}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert!(decode_answer(&longer).is_err(), "a trailing byte");
        let mut v2 = body.clone();
        v2[3] = 2;
        assert!(decode_answer(&v2).unwrap_err().contains("version 2"));
        let mut huge = BINARY_MAGIC.to_vec();
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_answer(&huge).is_err());
        let mut count = body.clone();
        let at = body.len() - 32 - 4;
        count[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_answer(&count).is_err(), "a count the body does not hold");
        // Every single-byte change either decodes to a well-formed answer or is refused.
        for i in 0..body.len() {
            let mut b = body.clone();
            b[i] ^= 0x5a;
            if let Ok(a) = decode_answer(&b) {
                assert_eq!(a.records.len() % 16, 0);
            }
        }
    }

    #[test]
    fn nonces() {
        assert!(valid_nonce("18c2f-1"));
        for bad in ["", "a b", "a&b", &"a".repeat(65)] {
            assert!(!valid_nonce(bad), "{bad:?}");
        }
    }
}
