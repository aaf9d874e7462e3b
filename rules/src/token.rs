//! Token claims and strict verification.
//!
//! Every tokengate token is a compact JWS signed with Ed25519 (`alg: EdDSA`) and a `kid`
//! naming the key. Verification follows ../shared/SECURITY.md line by line: a size cap
//! before any decoding, exactly three canonical base64url segments, a header with only
//! `alg`, `typ` and `kid` (so `crit`, `jku`, `x5u`, `jwk`, `x5c` are refused), an explicit
//! `typ` per token kind, one algorithm, required `exp`/`nbf`/`iat`/`aud`/`iss`, a bounded
//! leeway, no `iat` in the future, and a cap on `exp - iat`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hashbrown::HashMap;
use std::sync::{Arc, OnceLock};

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};

use crate::comb::CombTable;

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Leeway for `exp`, `nbf` and `iat`, in seconds (SECURITY.md: 30 to 60 s).
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// The longest lifetime any token may have (`exp - iat`), in seconds: ten years.
pub const MAX_LIFETIME_SECS: u64 = 10 * 366 * 24 * 3600;
/// The one signature algorithm, as it appears in the JWS header.
pub const ALGORITHM: &str = "EdDSA";

/// The kinds of token. Each has its own `typ`, and one is never accepted as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// An API token (seed 004 and seed 001 tokens).
    Api,
    /// A login session (seeds 002 and 003).
    Session,
    /// A short-lived token for the HTTP file server audience (seed 002).
    HttpServer,
    /// A device token obtained by redeeming a Wi-Fi voucher (seed 000).
    VoucherAccess,
}

impl TokenKind {
    pub const ALL: [TokenKind; 4] = [TokenKind::Api, TokenKind::Session, TokenKind::HttpServer, TokenKind::VoucherAccess];

    /// The JWS `typ` header value of this kind.
    pub fn typ(self) -> &'static str {
        match self {
            TokenKind::Api => "tg-api+jwt",
            TokenKind::Session => "tg-session+jwt",
            TokenKind::HttpServer => "tg-http+jwt",
            TokenKind::VoucherAccess => "tg-voucher+jwt",
        }
    }

    pub fn from_typ(typ: &str) -> Option<TokenKind> {
        TokenKind::ALL.into_iter().find(|k| k.typ() == typ)
    }
}

/// The claims of a tokengate token. Times are seconds since the epoch, as JWT requires;
/// the REST API reports them in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user id.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    /// The token id (`_id` in the REST API); revocation and amendments are keyed by it.
    pub jti: String,
    /// The user's name, for the identity headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unm: Option<String>,
    /// Scope patterns; absent means all the powers of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scp: Option<Vec<String>>,
    /// Access flags (seed 001); `-1` is unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fl: Option<i64>,
    /// Ids of the items the token may touch (seed 001); absent means all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<i64>>,
    /// Application name (seed 001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// Arbitrary params (seed 001 `p`), as the JSON text the client gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p: Option<String>,
    /// The id of the token that issued this one, if any. A session's `par` is the API
    /// token it was made from: the session has that token's rights as they are now
    /// (amendments of `par` apply to it) and ends with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub par: Option<String>,
    /// A session made with seed 003 `operateAs`: the name of the user whose token made
    /// it (the operator); `sub`/`unm` then name the user it acts as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opr: Option<String>,
    /// A voucher access token (seed 000): the device it is bound to, as
    /// [`crate::device::normalize`] writes it. The gate admits the token only from that
    /// device (and `aud` names the Wi-Fi network it is bound to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
}

impl Claims {
    /// Checks `nbf`, `exp` and `iat` against `now` with `leeway`, and the lifetime cap.
    /// Used at verification and again on every cache hit.
    pub fn check_time(&self, now: u64, leeway: u64) -> Result<(), TokenError> {
        if self.exp.saturating_add(leeway) <= now {
            return Err(TokenError::Expired);
        }
        if self.nbf > now.saturating_add(leeway) {
            return Err(TokenError::NotYetValid);
        }
        if self.iat > now.saturating_add(leeway) {
            return Err(TokenError::IssuedInFuture);
        }
        if self.exp < self.iat || self.exp - self.iat > MAX_LIFETIME_SECS || self.nbf > self.exp {
            return Err(TokenError::BadLifetime);
        }
        Ok(())
    }
}

impl Claims {
    /// Everything about already-verified claims that depends on the policy or the
    /// clock: kind, time, audience, issuer. Run at verification and on every cache hit
    /// (a cache may be shared by listeners with different policies).
    pub fn check_policy(&self, kind: TokenKind, policy: &VerifyPolicy, now: u64) -> Result<(), TokenError> {
        if !policy.kinds.contains(&kind) {
            return Err(TokenError::WrongType);
        }
        self.check_time(now, policy.leeway_secs)?;
        if !policy.audiences.contains(&self.aud) {
            return Err(TokenError::WrongAudience);
        }
        if self.iss != policy.issuer {
            return Err(TokenError::WrongIssuer);
        }
        Ok(())
    }
}

/// Why a token was refused. Every variant has a stable code for logs, metrics and the
/// JSON body; all of them are answered with 401 `invalid_token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenError {
    TooLarge,
    Malformed,
    BadEncoding,
    BadHeader,
    ForbiddenHeader,
    BadAlgorithm,
    WrongType,
    BadKid,
    UnknownKey,
    BadSignature,
    BadClaims,
    MissingClaim,
    Expired,
    NotYetValid,
    IssuedInFuture,
    BadLifetime,
    WrongAudience,
    WrongIssuer,
    Revoked,
    /// A session that is no longer live: logged out, idle beyond the limit, or its token
    /// revoked (the gate admits a session only while it is in the synced live set).
    SessionEnded,
}

impl TokenError {
    pub fn code(self) -> &'static str {
        match self {
            TokenError::TooLarge => "token_too_large",
            TokenError::Malformed => "token_malformed",
            TokenError::BadEncoding => "token_bad_encoding",
            TokenError::BadHeader => "token_bad_header",
            TokenError::ForbiddenHeader => "token_forbidden_header",
            TokenError::BadAlgorithm => "token_bad_algorithm",
            TokenError::WrongType => "token_wrong_type",
            TokenError::BadKid => "token_bad_kid",
            TokenError::UnknownKey => "token_unknown_key",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::BadClaims => "token_bad_claims",
            TokenError::MissingClaim => "token_missing_claim",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::IssuedInFuture => "token_issued_in_future",
            TokenError::BadLifetime => "token_bad_lifetime",
            TokenError::WrongAudience => "token_wrong_audience",
            TokenError::WrongIssuer => "token_wrong_issuer",
            TokenError::Revoked => "token_revoked",
            TokenError::SessionEnded => "session_ended",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            TokenError::Expired => "the token has expired",
            TokenError::NotYetValid => "the token is not valid yet",
            TokenError::Revoked => "the token has been revoked",
            TokenError::SessionEnded => "the session has ended (logged out, idle too long, or its token was revoked); log in again",
            TokenError::UnknownKey => "the token is signed by an unknown key",
            TokenError::BadSignature => "the token signature is invalid",
            TokenError::WrongAudience => "the token is not meant for this audience",
            TokenError::WrongType => "this kind of token is not accepted here",
            TokenError::TooLarge => "the token is too large",
            _ => "the token is malformed or invalid",
        }
    }
}

/// What a verifier accepts besides a valid signature.
#[derive(Clone, Debug)]
pub struct VerifyPolicy {
    pub issuer: String,
    /// Accepted audiences; the token's `aud` must be one of them.
    pub audiences: Vec<String>,
    /// Accepted kinds.
    pub kinds: Vec<TokenKind>,
    pub leeway_secs: u64,
}

impl VerifyPolicy {
    pub fn new(issuer: &str, audiences: &[&str], kinds: &[TokenKind]) -> Self {
        VerifyPolicy {
            issuer: issuer.to_owned(),
            audiences: audiences.iter().map(|a| (*a).to_owned()).collect(),
            kinds: kinds.to_vec(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }
}

/// A public key as the proxies and the JWKS carry it, ready to verify with.
///
/// A verifier trusts a handful of keys and checks many signatures with each, so each key
/// carries a variable-time fixed-base table of `-A` ([`CombTable`], 640 KiB, built once),
/// and the basepoint has one too ([`basepoint_table`]): `[S]B - [k]A` is then at most 64
/// table additions, no doublings. Everything in it is public (key, signature, message),
/// so variable time leaks nothing. The checks are those of ed25519-dalek's
/// `verify_strict`, and R must be canonically encoded (see
/// [`VerifyingKey::verify_signature`]). A clone shares the table.
#[derive(Clone)]
pub struct VerifyingKey {
    pub kid: String,
    /// The raw 32-byte Ed25519 public key, base64url without padding (the JWK `x`).
    pub x: String,
    a: [u8; 32],
    neg_a: Arc<CombTable>,
}

impl VerifyingKey {
    pub fn from_x(kid: &str, x: &str) -> Result<Self, TokenError> {
        let (raw, point) = decode_public_key(kid, x)?;
        // Built with the first key, not on the first token's request.
        basepoint_table();
        Ok(VerifyingKey { kid: kid.to_owned(), x: x.to_owned(), a: raw, neg_a: Arc::new(CombTable::new(&-point)) })
    }

    /// The checks of [`VerifyingKey::from_x`] without building the table (640 KiB, a few
    /// milliseconds in Wasm): for a caller that only validates keys it passes on.
    pub fn check(kid: &str, x: &str) -> Result<(), TokenError> {
        decode_public_key(kid, x).map(|_| ())
    }

    /// Ed25519 verification (RFC 8032 §5.1.7, cofactorless) with the strict checks: `S`
    /// canonical (`S < L`, so no malleated twin), `R` a canonical encoding of a point not
    /// of small order, the key not of small order (checked in [`VerifyingKey::from_x`]),
    /// and `R == [S]B - [k]A` compared as encodings, with `k = SHA-512(R || A || msg)`.
    ///
    /// `R` is never decompressed: when the encodings are equal, `R` is the canonical
    /// encoding of the computed point, so that point's order is `R`'s (a small-order
    /// check costs three doublings; a decompression, a field exponentiation).
    pub fn verify_signature(&self, msg: &[u8], signature: &[u8; 64]) -> bool {
        let mut r_bytes = [0u8; 32];
        let mut s_bytes = [0u8; 32];
        r_bytes.copy_from_slice(&signature[..32]);
        s_bytes.copy_from_slice(&signature[32..]);
        let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
            return false;
        };
        let k = Scalar::from_hash(Sha512::new().chain_update(r_bytes).chain_update(self.a).chain_update(msg));
        let mut expected_r = EdwardsPoint::identity();
        basepoint_table().add_product(&mut expected_r, &s);
        self.neg_a.add_product(&mut expected_r, &k);
        expected_r.compress().0 == r_bytes && !expected_r.is_small_order()
    }
}

/// The basepoint's [`CombTable`], built once per process (or Wasm VM).
fn basepoint_table() -> &'static CombTable {
    static TABLE: OnceLock<CombTable> = OnceLock::new();
    TABLE.get_or_init(|| CombTable::new(&ED25519_BASEPOINT_POINT))
}

/// A `kid` and its JWK `x`: 32 bytes of base64url that decode to a curve point not of small
/// order. A weak (small-order) key is refused before any token meets it: under one, a
/// forged signature can hold for every message.
fn decode_public_key(kid: &str, x: &str) -> Result<([u8; 32], EdwardsPoint), TokenError> {
    if !valid_kid(kid) {
        return Err(TokenError::BadKid);
    }
    let raw: [u8; 32] = URL_SAFE_NO_PAD.decode(x).ok().and_then(|r| r.try_into().ok()).ok_or(TokenError::BadEncoding)?;
    let point = CompressedEdwardsY(raw).decompress().ok_or(TokenError::BadEncoding)?;
    if point.is_small_order() {
        return Err(TokenError::BadEncoding);
    }
    Ok((raw, point))
}

/// The public keys a verifier trusts, by `kid`.
#[derive(Default)]
pub struct KeySet {
    keys: HashMap<String, VerifyingKey>,
}

impl KeySet {
    pub fn new() -> Self {
        KeySet::default()
    }

    pub fn insert(&mut self, key: VerifyingKey) {
        self.keys.insert(key.kid.clone(), key);
    }

    pub fn get(&self, kid: &str) -> Option<&VerifyingKey> {
        self.keys.get(kid)
    }

    /// The key `kid` with JWK `x`: this set's own when it has it (sharing its table),
    /// else a new one ([`VerifyingKey::from_x`]).
    pub fn key_for(&self, kid: &str, x: &str) -> Result<VerifyingKey, TokenError> {
        match self.keys.get(kid) {
            Some(held) if held.x == x => Ok(held.clone()),
            _ => VerifyingKey::from_x(kid, x),
        }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// A `kid` is 1 to 64 characters of `[A-Za-z0-9_-]`; anything else is refused before lookup.
pub fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= 64 && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StrictHeader {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
}

const FORBIDDEN_HEADERS: [&str; 5] = ["crit", "jku", "x5u", "jwk", "x5c"];

/// Decodes one base64url segment, refusing padding and non-canonical trailing bits.
fn decode_segment(seg: &str) -> Result<Vec<u8>, TokenError> {
    if seg.is_empty() || !seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(TokenError::BadEncoding);
    }
    // URL_SAFE_NO_PAD refuses padding and non-zero trailing bits, so each token has
    // exactly one encoding (a re-encoded twin cannot slip past a cache or a log).
    URL_SAFE_NO_PAD.decode(seg).map_err(|_| TokenError::BadEncoding)
}

/// Checks everything about a token that needs no key: size, shape, encoding and header.
pub fn inspect(token: &str) -> Result<(TokenKind, String), TokenError> {
    parse(token).map(|p| (p.kind, p.kid))
}

/// A token that passed every check needing no key, with its parts decoded once.
struct Parsed<'a> {
    kind: TokenKind,
    kid: String,
    /// `header.payload`, what the signature covers.
    signing_input: &'a [u8],
    payload: Vec<u8>,
    signature: [u8; 64],
}

fn parse(token: &str) -> Result<Parsed<'_>, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    let header_bytes = decode_segment(h)?;
    let header: StrictHeader = match serde_json::from_slice(&header_bytes) {
        Ok(hd) => hd,
        Err(_) => {
            let forbidden = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&header_bytes)
                .map(|m| FORBIDDEN_HEADERS.iter().any(|f| m.contains_key(*f)))
                .unwrap_or(false);
            return Err(if forbidden { TokenError::ForbiddenHeader } else { TokenError::BadHeader });
        }
    };
    if header.alg != ALGORITHM {
        return Err(TokenError::BadAlgorithm);
    }
    let kind = header.typ.as_deref().and_then(TokenKind::from_typ).ok_or(TokenError::WrongType)?;
    let kid = header.kid.ok_or(TokenError::BadKid)?;
    if !valid_kid(&kid) {
        return Err(TokenError::BadKid);
    }
    let payload = decode_segment(p)?;
    let signature: [u8; 64] = decode_segment(s)?.try_into().map_err(|_| TokenError::BadSignature)?;
    Ok(Parsed { kind, kid, signing_input: &token.as_bytes()[..h.len() + 1 + p.len()], payload, signature })
}

/// Verifies a token completely: [`inspect`]'s checks, the kind against the policy, the
/// Ed25519 signature by the key named by `kid` ([`VerifyingKey::verify_signature`]: no
/// small-order keys or `R`, no non-canonical `S` or `R`), then the claims, parsed once,
/// against the policy and the clock.
/// Nothing of the payload is interpreted before the signature holds.
pub fn verify(token: &str, keys: &KeySet, policy: &VerifyPolicy, now: u64) -> Result<(TokenKind, Claims), TokenError> {
    let p = parse(token)?;
    if !policy.kinds.contains(&p.kind) {
        return Err(TokenError::WrongType);
    }
    let key = keys.get(&p.kid).ok_or(TokenError::UnknownKey)?;
    if !key.verify_signature(p.signing_input, &p.signature) {
        return Err(TokenError::BadSignature);
    }
    let claims: Claims = serde_json::from_slice(&p.payload).map_err(|e| {
        // Every required claim is a field without a default: serde names the missing one.
        if e.is_data() && e.to_string().starts_with("missing field") {
            TokenError::MissingClaim
        } else {
            TokenError::BadClaims
        }
    })?;
    claims.check_policy(p.kind, policy, now)?;
    Ok((p.kind, claims))
}

/// A private signing key with its `kid` (control plane only; proxies never hold one).
pub struct SigningKey {
    pub kid: String,
    encoding: EncodingKey,
}

/// The fixed PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the DER wrapper
/// around the 32-byte seed that jsonwebtoken's EdDSA signer expects.
const ED25519_PKCS8_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

impl SigningKey {
    /// From the 32-byte Ed25519 seed.
    pub fn from_seed(kid: &str, seed: &[u8; 32]) -> Result<Self, TokenError> {
        if !valid_kid(kid) {
            return Err(TokenError::BadKid);
        }
        let mut der = Vec::with_capacity(48);
        der.extend_from_slice(&ED25519_PKCS8_PREFIX);
        der.extend_from_slice(seed);
        Ok(SigningKey { kid: kid.to_owned(), encoding: EncodingKey::from_ed_der(&der) })
    }

    /// Signs `claims` as a token of `kind`.
    pub fn sign(&self, kind: TokenKind, claims: &Claims) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(kind.typ().to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|_| TokenError::Malformed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ed25519_dalek::SigningKey as Dalek;

    pub const NOW: u64 = 1_800_000_000;

    pub fn keypair(kid: &str) -> (SigningKey, VerifyingKey) {
        let seed: [u8; 32] = rand::random();
        let dalek = Dalek::from_bytes(&seed);
        let x = URL_SAFE_NO_PAD.encode(dalek.verifying_key().as_bytes());
        (SigningKey::from_seed(kid, &seed).unwrap(), VerifyingKey::from_x(kid, &x).unwrap())
    }

    pub fn claims(now: u64) -> Claims {
        Claims {
            iss: "tokengate".into(),
            sub: "u1".into(),
            aud: "tokengate".into(),
            exp: now + 3600,
            nbf: now,
            iat: now,
            jti: "0123456789abcdef01234567".into(),
            unm: Some("admin".into()),
            scp: Some(vec!["GET /objects/:id".into()]),
            fl: None,
            items: None,
            app: None,
            p: None,
            par: None,
            opr: None,
            dev: None,
        }
    }

    fn real_now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn setup() -> (SigningKey, KeySet, VerifyPolicy) {
        let (sk, vk) = keypair("k1");
        let mut ks = KeySet::new();
        ks.insert(vk);
        (sk, ks, VerifyPolicy::new("tokengate", &["tokengate"], &[TokenKind::Api]))
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn valid_token_verifies() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let t = sk.sign(TokenKind::Api, &claims(now)).unwrap();
        let (kind, c) = verify(&t, &ks, &pol, now).unwrap();
        assert_eq!(kind, TokenKind::Api);
        assert_eq!(c, claims(now));
    }

    #[test]
    fn security_tokens_other_kind_is_refused() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let t = sk.sign(TokenKind::Session, &claims(now)).unwrap();
        assert_eq!(verify(&t, &ks, &pol, now).unwrap_err(), TokenError::WrongType);
    }

    #[test]
    fn security_tokens_size_cap_before_decoding() {
        let (_, ks, pol) = setup();
        let t = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(verify(&t, &ks, &pol, NOW).unwrap_err(), TokenError::TooLarge);
    }

    #[test]
    fn security_tokens_exactly_three_segments() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let t = sk.sign(TokenKind::Api, &claims(now)).unwrap();
        assert_eq!(verify(&format!("{t}.x"), &ks, &pol, now).unwrap_err(), TokenError::Malformed);
        let two: Vec<&str> = t.split('.').take(2).collect();
        assert_eq!(verify(&two.join("."), &ks, &pol, now).unwrap_err(), TokenError::Malformed);
    }

    #[test]
    fn security_tokens_non_canonical_base64_is_refused() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let t = sk.sign(TokenKind::Api, &claims(now)).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        // Flip the unused low bits of the last signature character: same bytes, other text.
        let sig = parts[2];
        let last = sig.chars().last().unwrap();
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let idx = alphabet.iter().position(|&c| c as char == last).unwrap();
        let twin = alphabet[idx ^ 1] as char;
        let forged = format!("{}.{}.{}{}", parts[0], parts[1], &sig[..sig.len() - 1], twin);
        assert_eq!(verify(&forged, &ks, &pol, now).unwrap_err(), TokenError::BadEncoding);
        let padded = format!("{}.{}.{}=", parts[0], parts[1], sig);
        assert_eq!(verify(&padded, &ks, &pol, now).unwrap_err(), TokenError::BadEncoding);
    }

    #[test]
    fn security_tokens_alg_none_and_hs256_are_refused() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let t = sk.sign(TokenKind::Api, &claims(now)).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        for alg in ["none", "HS256", "RS256", "ES256", "eddsa"] {
            let h = b64(&serde_json::json!({"alg": alg, "typ": "tg-api+jwt", "kid": "k1"}));
            let forged = format!("{h}.{}.{}", parts[1], parts[2]);
            assert_eq!(verify(&forged, &ks, &pol, now).unwrap_err(), TokenError::BadAlgorithm, "{alg}");
        }
    }

    #[test]
    fn security_tokens_crit_jku_x5u_jwk_x5c_are_refused() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let t = sk.sign(TokenKind::Api, &claims(now)).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        for (name, val) in [
            ("crit", serde_json::json!(["exp"])),
            ("jku", serde_json::json!("https://evil/jwks")),
            ("x5u", serde_json::json!("https://evil/cert")),
            ("jwk", serde_json::json!({"kty": "OKP"})),
            ("x5c", serde_json::json!(["MII"])),
        ] {
            let mut h = serde_json::json!({"alg": "EdDSA", "typ": "tg-api+jwt", "kid": "k1"});
            h[name] = val;
            let forged = format!("{}.{}.{}", b64(&h), parts[1], parts[2]);
            assert_eq!(verify(&forged, &ks, &pol, now).unwrap_err(), TokenError::ForbiddenHeader, "{name}");
        }
    }

    #[test]
    fn security_tokens_bad_or_unknown_kid_is_refused() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let t = sk.sign(TokenKind::Api, &claims(now)).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let h = b64(&serde_json::json!({"alg": "EdDSA", "typ": "tg-api+jwt", "kid": "../../etc/passwd"}));
        assert_eq!(verify(&format!("{h}.{}.{}", parts[1], parts[2]), &ks, &pol, now).unwrap_err(), TokenError::BadKid);
        let (other, _) = keypair("k2");
        let t2 = other.sign(TokenKind::Api, &claims(now)).unwrap();
        assert_eq!(verify(&t2, &ks, &pol, now).unwrap_err(), TokenError::UnknownKey);
        // Same kid, other key: the signature fails.
        let (imposter, _) = keypair("k1");
        let t3 = imposter.sign(TokenKind::Api, &claims(now)).unwrap();
        assert_eq!(verify(&t3, &ks, &pol, now).unwrap_err(), TokenError::BadSignature);
    }

    #[test]
    fn security_tokens_tampered_payload_is_refused() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let t = sk.sign(TokenKind::Api, &claims(now)).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let mut c = claims(now);
        c.scp = None;
        let forged = format!("{}.{}.{}", parts[0], b64(&serde_json::to_value(&c).unwrap()), parts[2]);
        assert_eq!(verify(&forged, &ks, &pol, now).unwrap_err(), TokenError::BadSignature);
    }

    #[test]
    fn security_tokens_time_claims() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let mut c = claims(now);
        c.exp = now - 120;
        c.iat = now - 3600;
        c.nbf = now - 3600;
        assert_eq!(verify(&sk.sign(TokenKind::Api, &c).unwrap(), &ks, &pol, now).unwrap_err(), TokenError::Expired);
        let mut c = claims(now);
        c.nbf = now + 600;
        assert_eq!(verify(&sk.sign(TokenKind::Api, &c).unwrap(), &ks, &pol, now).unwrap_err(), TokenError::NotYetValid);
        let mut c = claims(now);
        c.iat = now + 600;
        c.nbf = now;
        assert_eq!(verify(&sk.sign(TokenKind::Api, &c).unwrap(), &ks, &pol, now).unwrap_err(), TokenError::IssuedInFuture);
        let mut c = claims(now);
        c.exp = now + MAX_LIFETIME_SECS + 10;
        assert_eq!(verify(&sk.sign(TokenKind::Api, &c).unwrap(), &ks, &pol, now).unwrap_err(), TokenError::BadLifetime);
        // Within the leeway: still accepted.
        let mut c = claims(now);
        c.exp = now - 5;
        c.iat = now - 100;
        c.nbf = now - 100;
        assert!(verify(&sk.sign(TokenKind::Api, &c).unwrap(), &ks, &pol, now).is_ok());
    }

    #[test]
    fn security_tokens_required_claims_and_types() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let parts: Vec<String> = sk.sign(TokenKind::Api, &claims(now)).unwrap().split('.').map(String::from).collect();
        // exp as a string (CVE-2026-25537 shape) must not skip the check.
        let mut v = serde_json::to_value(claims(now)).unwrap();
        v["exp"] = serde_json::json!("9999999999");
        let t = format!("{}.{}.{}", parts[0], b64(&v), parts[2]);
        assert!(verify(&t, &ks, &pol, now).is_err());
        // Missing nbf: signed properly, still refused.
        let mut v = serde_json::to_value(claims(now)).unwrap();
        v.as_object_mut().unwrap().remove("nbf");
        let header = Header { typ: Some("tg-api+jwt".into()), kid: Some("k1".into()), ..Header::new(Algorithm::EdDSA) };
        let t = jsonwebtoken::encode(&header, &v, &sk.encoding).unwrap();
        assert!(verify(&t, &ks, &pol, now).is_err());
    }

    #[test]
    fn security_tokens_duplicate_claims_are_refused() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let parts: Vec<String> = sk.sign(TokenKind::Api, &claims(now)).unwrap().split('.').map(String::from).collect();
        let body = serde_json::to_string(&claims(now)).unwrap();
        let dup = format!("{{\"sub\":\"root\",{}", &body[1..]);
        let t = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(dup), parts[2]);
        assert!(verify(&t, &ks, &pol, now).is_err());
    }

    /// A compact JWS over exactly these header and payload bytes, signed with `seed`.
    fn sign_bytes(seed: &[u8; 32], header: &str, payload: &[u8]) -> String {
        use ed25519_dalek::Signer as _;
        let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
        let sig = Dalek::from_bytes(seed).sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    fn seeded_setup() -> ([u8; 32], KeySet, VerifyPolicy) {
        let seed: [u8; 32] = rand::random();
        let x = URL_SAFE_NO_PAD.encode(Dalek::from_bytes(&seed).verifying_key().as_bytes());
        let mut ks = KeySet::new();
        ks.insert(VerifyingKey::from_x("k1", &x).unwrap());
        (seed, ks, VerifyPolicy::new("tokengate", &["tokengate"], &[TokenKind::Api]))
    }

    const API_HEADER: &str = r#"{"alg":"EdDSA","typ":"tg-api+jwt","kid":"k1"}"#;

    /// Properly signed payloads that are still not valid claims, each with its code.
    #[test]
    fn security_tokens_signed_bad_claims_are_refused_with_their_codes() {
        let (seed, ks, pol) = seeded_setup();
        let now = real_now();
        let good = serde_json::to_value(claims(now)).unwrap();
        assert!(verify(&sign_bytes(&seed, API_HEADER, good.to_string().as_bytes()), &ks, &pol, now).is_ok());
        for claim in ["exp", "nbf", "iat", "aud", "iss", "sub", "jti"] {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove(claim);
            let t = sign_bytes(&seed, API_HEADER, v.to_string().as_bytes());
            assert_eq!(verify(&t, &ks, &pol, now).unwrap_err(), TokenError::MissingClaim, "without {claim}");
        }
        let body = good.to_string();
        let duplicate = format!("{{\"sub\":\"root\",{}", &body[1..]);
        let mut exp_text = good.clone();
        exp_text["exp"] = serde_json::json!("9999999999");
        for bad in [duplicate.into_bytes(), exp_text.to_string().into_bytes(), b"[1,2]".to_vec(), b"\xff{}".to_vec()] {
            let t = sign_bytes(&seed, API_HEADER, &bad);
            assert_eq!(verify(&t, &ks, &pol, now).unwrap_err(), TokenError::BadClaims, "{}", String::from_utf8_lossy(&bad));
        }
    }

    /// `verify_strict`: a non-canonical `S` (S + L, the same signature for the plain check
    /// of old) is refused, and so is the all-messages forgery under a small-order key
    /// (R = identity, S = 0), which a non-strict Ed25519 check accepts.
    #[test]
    fn security_tokens_malleable_and_small_order_signatures_are_refused() {
        let (seed, ks, pol) = seeded_setup();
        let now = real_now();
        let t = sign_bytes(&seed, API_HEADER, serde_json::to_string(&claims(now)).unwrap().as_bytes());
        let (input, sig) = t.rsplit_once('.').unwrap();
        let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        // L = 2^252 + 27742317777372353535851937790883648493, little-endian.
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (b, l) in sig[32..].iter_mut().zip(L) {
            let sum = u16::from(*b) + u16::from(l) + carry;
            *b = sum as u8;
            carry = sum >> 8;
        }
        let malleated = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
        assert_eq!(verify(&malleated, &ks, &pol, now).unwrap_err(), TokenError::BadSignature);

        // The identity as the public key: with R = identity and S = 0 the cofactorless
        // equation holds for every message. Such a key is refused when loaded.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(VerifyingKey::from_x("k1", &URL_SAFE_NO_PAD.encode(identity)).err(), Some(TokenError::BadEncoding));
        assert_eq!(VerifyingKey::check("k1", &URL_SAFE_NO_PAD.encode(identity)).err(), Some(TokenError::BadEncoding));
        // A public key that is not a curve point (y = 2: x² would not be a square) is
        // refused when the key set is built.
        let mut off_curve = [0u8; 32];
        off_curve[0] = 2;
        assert_eq!(VerifyingKey::from_x("k1", &URL_SAFE_NO_PAD.encode(off_curve)).err(), Some(TokenError::BadEncoding));
    }

    #[test]
    fn a_held_key_keeps_its_table_and_a_changed_one_is_rebuilt() {
        let (_, vk) = keypair("k1");
        let (_, other) = keypair("k2");
        let mut held = KeySet::new();
        held.insert(vk.clone());
        let again = held.key_for("k1", &vk.x).unwrap();
        assert!(Arc::ptr_eq(&again.neg_a, &vk.neg_a));
        let moved = held.key_for("k1", &other.x).unwrap();
        assert!(!Arc::ptr_eq(&moved.neg_a, &vk.neg_a));
        assert_eq!(moved.x, other.x);
        assert_eq!(held.key_for("k1", "not base64!").err(), Some(TokenError::BadEncoding));
    }

    /// A key with a small-order component (`A = [a]B + T`, T of order 8: not itself of
    /// small order, so it loads) admits signatures whose `R` is a small-order point and
    /// that satisfy the cofactorless equation `[S]B - [k]A = R`. `verify_strict` refuses
    /// them for their `R`; so must we, although we never decompress `R`.
    #[test]
    fn security_tokens_small_order_r_is_refused_even_when_the_equation_holds() {
        use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
        let a = Scalar::from(0x1234_5678_9abc_def1u64);
        let t = EIGHT_TORSION[1];
        let key = (B * a) + t;
        assert!(!key.is_small_order());
        let a_bytes = key.compress().0;
        let ours = VerifyingKey::from_x("k1", &URL_SAFE_NO_PAD.encode(a_bytes)).unwrap();
        let mut forged = 0;
        for r in EIGHT_TORSION {
            let r_bytes = r.compress().0;
            for n in 0u32..64 {
                let msg = n.to_le_bytes();
                let k = Scalar::from_hash(Sha512::new().chain_update(r_bytes).chain_update(a_bytes).chain_update(msg));
                // With S = k·a: [S]B - [k]A = -[k]T, small order; it is R for some messages.
                if -(t * k) != r {
                    continue;
                }
                let s = k * a;
                assert_eq!((B * s) - (key * k), r, "the cofactorless equation holds");
                let mut sig = [0u8; 64];
                sig[..32].copy_from_slice(&r_bytes);
                sig[32..].copy_from_slice(s.as_bytes());
                assert!(!ours.verify_signature(&msg, &sig), "small-order R accepted");
                forged += 1;
            }
        }
        assert!(forged > 8, "only {forged} forgeries tried");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The table-based verifier agrees with ed25519-dalek's `verify_strict` on valid
        /// signatures and on every single-byte corruption of the signature or message.
        #[test]
        fn signature_check_agrees_with_dalek_verify_strict(
            seed: [u8; 32],
            msg in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            at: usize,
            flip in 1u8..=255,
            in_sig: bool,
        ) {
            let dalek = Dalek::from_bytes(&seed);
            let ours = VerifyingKey::from_x("k1", &URL_SAFE_NO_PAD.encode(dalek.verifying_key().as_bytes())).unwrap();
            let sig = ed25519_dalek::Signer::sign(&dalek, &msg).to_bytes();
            proptest::prop_assert!(ours.verify_signature(&msg, &sig));
            let (mut sig2, mut msg2) = (sig, msg.clone());
            if in_sig || msg2.is_empty() {
                sig2[at % 64] ^= flip;
            } else {
                let i = at % msg2.len();
                msg2[i] ^= flip;
            }
            let theirs = dalek.verifying_key().verify_strict(&msg2, &ed25519_dalek::Signature::from_bytes(&sig2)).is_ok();
            proptest::prop_assert_eq!(ours.verify_signature(&msg2, &sig2), theirs);
            proptest::prop_assert!(!theirs);
        }
    }

    #[test]
    fn wrong_audience_and_issuer_are_refused() {
        let (sk, ks, pol) = setup();
        let now = real_now();
        let mut c = claims(now);
        c.aud = "other-network".into();
        assert_eq!(verify(&sk.sign(TokenKind::Api, &c).unwrap(), &ks, &pol, now).unwrap_err(), TokenError::WrongAudience);
        let mut c = claims(now);
        c.iss = "evil".into();
        assert_eq!(verify(&sk.sign(TokenKind::Api, &c).unwrap(), &ks, &pol, now).unwrap_err(), TokenError::WrongIssuer);
    }
}
