//! Request and response bodies of the REST API (seed 004 field names; times in ms).
//! The sync protocol's types live in `tokengate_rules::sync`, shared with the filter.
//!
//! Request types have no `Debug`: they carry passwords.

use serde::{Deserialize, Serialize};

/// `POST /auth`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthRequest {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub expires_in: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub name: Option<String>,
}

/// `POST /tokens`: a child of the caller's token.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateTokenRequest {
    #[serde(default)]
    pub expires_in: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Absent or `null`: the parent's scopes.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

/// The answer of `POST /auth` and `POST /tokens`: the only time the token value is seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedToken {
    #[serde(rename = "_id")]
    pub id: String,
    pub issued_at: i64,
    pub expires_at: i64,
    pub user: UserName,
    pub token: String,
    pub name: Option<String>,
    /// Canonical patterns; `null` means all the user's powers.
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserName {
    pub name: String,
}

/// One entry of `GET /tokens`. Never the token value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: Option<String>,
    pub issued_at: i64,
    pub expires_at: i64,
    pub scopes: Option<Vec<String>>,
    /// The `_id` of the token that issued this one.
    pub parent: Option<String>,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
}
