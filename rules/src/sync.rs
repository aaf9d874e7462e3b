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
/// A proxy's workers see what its sync service applied within this long (they re-read
/// the shared sync state at most this often); confirmed propagation waits it out.
pub const WORKER_LAG_MS: u64 = 5;
/// Revocations per snapshot part by default: about 5 MB of JSON, well inside the buffer
/// Envoy gives a Wasm HTTP call's answer (a single 1M-entry snapshot, ~55 MB, is not).
pub const DEFAULT_SNAPSHOT_PAGE: usize = 100_000;

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
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey {
    pub kid: String,
    /// Raw Ed25519 public key, base64url without padding (JWK `x`).
    pub x: String,
}

/// The amendable claims of a live token (seed 001 `token/update`), as they are now.
/// Every field is the full current value, not a diff: `None` means "not set" (no flag
/// limit, all items, no app, no params). A proxy replaces these claims of the token with
/// `jti` by these values; `exp` can only bring the signed expiry forward, never extend it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amendment {
    pub jti: String,
    /// Activation time (seed `at`), s since the epoch: the token is refused before it.
    pub nbf: u64,
    /// End of life (seed `at + dur`), s since the epoch; the entry can be dropped after it.
    pub exp: u64,
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
pub struct UsageReport {
    pub proxy: String,
    pub used: Vec<Usage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub jti: String,
    /// When the proxy last saw the token, ms since the epoch.
    pub at: u64,
}

pub const USAGE_PATH: &str = "/sync/v1/usage";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The revoked token's id.
    pub jti: String,
    /// When the token would have expired anyway (s since the epoch); the entry can be
    /// dropped after this.
    pub exp: u64,
}
