//! The sync protocol between the control plane and the proxies (wire format v1).
//!
//! ```text
//! GET /sync/v1/changes?since=<version>&wait_ms=<0..=30000>&proxy=<proxy id>
//! Authorization: Bearer <proxy credential>
//! ```
//!
//! The answer is a [`SyncResponse`]. With `since` equal to the current version the
//! control plane holds the request until a change commits or `wait_ms` passes (long
//! poll), so a revocation is sent the moment it is durable. `since=0`, or a `since`
//! older than the change log keeps, yields a snapshot. Every answer carries the whole
//! public key set (a handful of keys), so key rotation needs no delta of its own.
//! Fields are only ever added; a proxy ignores fields it does not know.

use serde::{Deserialize, Serialize};

pub const PROTOCOL: u32 = 1;
pub const PATH: &str = "/sync/v1/changes";
/// The longest a control plane holds a long-poll.
pub const MAX_WAIT_MS: u64 = 30_000;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// The control plane's clock, ms since the epoch.
    pub server_time: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub kid: String,
    /// Raw Ed25519 public key, base64url without padding (JWK `x`).
    pub x: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked token's id.
    pub jti: String,
    /// When the token would have expired anyway (s since the epoch); the entry can be
    /// dropped after this.
    pub exp: u64,
}
