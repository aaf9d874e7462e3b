//! The tokengate rule set: one implementation of everything the filter and the
//! control plane must agree on.
//!
//! - [`token`]: claims, token kinds, strict JWT verification (EdDSA only).
//! - [`scope`]: the scope-pattern language (`GET /objects/:id`), matching and attenuation.
//! - [`path`]: request-target safety checks and splitting into segments.
//! - [`duration`]: the `expiresIn` forms (`"30 minutes"`, `"8 days"`, ...).
//! - [`denial`]: every refusal the gate can give, with its status and stable code.
//! - [`sync`]: the wire format between the control plane and the proxies.
//! - [`revocation`]: the bounded revocation set both sides keep.
//! - [`device`]: the one spelling of a device id (voucher access tokens, seed 000).
//!
//! Invariant: this crate does no I/O and never reads the clock; callers pass `now`.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod comb;
pub mod denial;
pub mod device;
pub mod duration;
#[doc(hidden)]
pub mod fuzzing;
pub mod path;
pub mod revocation;
pub mod route;
pub mod scope;
pub mod sync;
pub mod token;

pub use denial::Denial;
pub use scope::{ScopeError, ScopePattern, ScopeSet};
pub use token::{Claims, KeySet, TokenError, TokenKind, VerifyPolicy};

/// The default API prefix that scope patterns may leave out.
pub const DEFAULT_API_PREFIX: &str = "/api/v1";
