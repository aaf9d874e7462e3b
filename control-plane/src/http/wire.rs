//! Request and response bodies of the REST API (seed 004 field names; times in ms).
//! The sync protocol's types live in `tokengate_rules::sync`, shared with the filter.
//!
//! Request types have no `Debug`: they carry passwords.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

/// A request field that may be absent (`None`: keep what is stored, or the default),
/// `null` (`Some(None)`: clear it) or a value (`Some(Some(v))`).
pub type Patch<T> = Option<Option<T>>;

/// Deserializes a [`Patch`] field; with `#[serde(default)]` an absent field stays
/// `None`. A value of the wrong type is still the field's type error.
fn patch<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Patch<T>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `POST /auth`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthRequest {
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub expires_in: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// At most 200 characters, no control characters.
    #[serde(default)]
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: Option<String>,
}

/// `POST /tokens`: a child of the caller's token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateTokenRequest {
    #[serde(default)]
    pub expires_in: Option<String>,
    /// At most 200 characters, no control characters.
    #[serde(default)]
    #[schema(max_length = 200, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: Option<String>,
    /// Absent or `null`: the parent's scopes.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
}

/// The answer of `POST /auth` and `POST /tokens`: the only time the token value is seen.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserName {
    pub name: String,
}

/// One entry of `GET /tokens`. Never the token value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
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
    /// Seed 001 properties, as amended: application, flags, items.
    pub app: Option<String>,
    pub fl: Option<i64>,
    pub items: Option<Vec<i64>>,
    /// Activation, s since the epoch (seed 001 `at`).
    pub at: i64,
    /// Lifetime after activation, s (seed 001 `dur`; 0 = no end of its own).
    pub dur: i64,
    /// When a proxy last reported the token used (ms), `null` if never.
    pub last_used_at: Option<i64>,
}

/// `POST /tokens/update`: seed 001 token management (`token/update`), one call for
/// create, update and delete. `app`, `fl`, `p` and `items` tell absent (keep the stored
/// value; on create, the caller's `fl` and `items`) from `null` (none: no app, no flag
/// limit, no params, all items).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ManageRequest {
    /// `create`, `update` or `delete`.
    #[schema(value_type = CallMode)]
    pub call_mode: String,
    /// The id of the user whose tokens are managed: the caller's own user (the default)
    /// or a child user of it.
    #[serde(default)]
    pub user_id: Option<String>,
    /// The token (`_id`) to update or delete.
    #[serde(default)]
    pub h: Option<String>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub app: Patch<String>,
    /// Activation, s since the epoch; 0 = now.
    #[serde(default)]
    pub at: Option<u64>,
    /// Lifetime after activation, s; 0 = no end (the longest lifetime; idle expiry ends it).
    #[serde(default)]
    pub dur: Option<u64>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<i64>)]
    pub fl: Patch<i64>,
    /// A JSON object or array of objects, as JSON or as escaped JSON text.
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Value>)]
    pub p: Patch<serde_json::Value>,
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<Vec<i64>>)]
    pub items: Patch<Vec<i64>>,
    /// `true`, `1` or `"true"`: delete every token of the user.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub delete_all: Option<serde_json::Value>,
}

/// A token in seed 001 shape. Times in seconds since the epoch, as the seed has them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ManagedToken {
    /// The token's id (`_id`).
    pub h: String,
    pub app: Option<String>,
    /// Activation.
    pub at: i64,
    /// Created.
    pub ct: i64,
    /// Lifetime after activation (0: no end of its own).
    pub dur: i64,
    pub fl: Option<i64>,
    pub items: Option<Vec<i64>>,
    #[schema(value_type = Option<Value>)]
    pub p: Option<serde_json::Value>,
    /// The token value: only in the answer to `create`, never again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// The answer to a seed 001 `delete`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ManageDeleted {
    /// How many tokens were revoked now (descendants included).
    pub deleted: usize,
    /// The change-log version of the last revocation (`null` when nothing was live).
    pub version: Option<u64>,
}

/// `POST /explain`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// `"METHOD /path"`, the path as the gate would see it (prefix included).
    pub request: String,
    /// The `_id` of a token of the caller's account; absent: the caller's own token.
    #[serde(default)]
    pub token: Option<String>,
}

/// The answer of `POST /explain`: the gate's decision and the reason.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub allowed: bool,
    /// The refusal's code (`token_revoked`, `path_bad_escape`, `insufficient_flags` ...).
    pub code: Option<String>,
    /// The scope pattern that allowed the request (`null` for a token without scopes).
    pub scope: Option<String>,
    /// The most specific route of the operator's table that matched.
    pub route: Option<String>,
    pub required_flags: Option<i64>,
    /// The flags the token lacks (0 when none), once a route matched.
    pub missing_flags: Option<i64>,
    /// The item parameter that was refused.
    pub item: Option<ExplainedItem>,
    pub token: ExplainedToken,
}

impl Explanation {
    /// A refusal before the route table was consulted.
    pub fn refused(code: &str, token: ExplainedToken) -> Explanation {
        Explanation {
            allowed: false,
            code: Some(code.to_owned()),
            scope: None,
            route: None,
            required_flags: None,
            missing_flags: None,
            item: None,
            token,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExplainedItem {
    pub param: String,
    pub value: String,
}

/// The rights the explanation was computed with (amendments applied).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExplainedToken {
    #[serde(rename = "_id")]
    pub id: String,
    pub scopes: Option<Vec<String>>,
    pub fl: Option<i64>,
    pub items: Option<Vec<i64>>,
}

/// `POST /keys/rotate`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Rotated {
    /// The new signing key.
    pub kid: String,
    pub created_at: i64,
    /// The keys retired by this rotation (published while their tokens live).
    pub retired: Vec<String>,
    /// The change-log version that carries the new key set to the proxies.
    pub version: u64,
    /// Live proxies, and how many had applied `version` when the rotation answered.
    pub proxies: ProxyCounts,
    /// The keys withdrawn by `?retireOldest=true` (never published again).
    pub withdrawn: Vec<String>,
    /// How many live tokens the withdrawn keys had signed, descendants included: all
    /// revoked by this rotation.
    pub revoked_tokens: usize,
}

/// One entry of `GET /keys`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyInfo {
    pub kid: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// Withdrawn by a rotation with `retireOldest` (its tokens were revoked then).
    pub withdrawn_at: Option<i64>,
    /// Signs new tokens (in this process).
    pub signing: bool,
    /// In the JWKS and the proxies' key set.
    pub published: bool,
}

/// One entry of `GET /proxies`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProxyInfo {
    pub id: String,
    /// The version the proxy has applied (the `since` of its last sync call).
    pub version: u64,
    /// How many versions it is behind the current one.
    pub lag_versions: u64,
    pub last_seen_at: i64,
    /// Called within the last 60 s, or has a long poll held now.
    pub live: bool,
}

/// The answer of `DELETE /tokens/:id?wait=`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Propagation {
    /// The version that carries the revocation.
    pub version: u64,
    pub proxies: ProxyCounts,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct ProxyCounts {
    pub live: usize,
    /// Live proxies that have applied `version`.
    pub applied: usize,
}

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(body: &str) -> Result<ManageRequest, crate::http::error::ApiError> {
        crate::http::json::parse(body.as_bytes())
    }

    #[test]
    fn patch_fields_tell_absent_from_null() {
        let absent = parse(r#"{"callMode":"update"}"#).unwrap();
        assert_eq!((absent.fl, absent.items, absent.app, absent.p), (None, None, None, None));
        let null = parse(r#"{"callMode":"update","fl":null,"items":null,"app":null,"p":null}"#).unwrap();
        assert_eq!((null.fl, null.items, null.app, null.p), (Some(None), Some(None), Some(None), Some(None)));
        let set = parse(r#"{"callMode":"update","fl":512,"items":[2,1],"app":"a","p":{"k":1}}"#).unwrap();
        assert_eq!((set.fl, set.items, set.app), (Some(Some(512)), Some(Some(vec![2, 1])), Some(Some("a".to_owned()))));
        assert_eq!(set.p, Some(Some(serde_json::json!({"k": 1}))));
        for (body, field) in [(r#"{"callMode":"update","fl":"x"}"#, "fl"), (r#"{"callMode":"update","items":[null]}"#, "items")] {
            let e = parse(body).err().unwrap();
            assert_eq!(e.code(), "wrong_type");
            assert!(e.message().contains(field), "{}", e.message());
        }
    }
}

// Closed sets of strings, for the OpenAPI document only: the handlers read these fields
// as strings, so a value outside the set is a 400 with the field's own code
// (bad_call_mode, bad_user, bad_voucher_kind) rather than a generic body error.

/// Seed 001's `callMode`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum CallMode {
    Create,
    Update,
    Delete,
}

/// A user's role.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

/// A voucher's kind (seed 000): one device, or any number.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VoucherKind {
    Single,
    Multi,
}

/// `POST /users`: a child user of the caller's user.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    /// The login name (seed 003 `nm`): 1 to 128 characters, no control characters.
    #[schema(min_length = 1, max_length = 128, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: String,
    /// 8 characters to 1024 bytes.
    #[schema(min_length = 8, max_length = 1024, format = Password)]
    pub password: String,
    /// 6 to 12 digits.
    #[serde(default)]
    #[schema(pattern = "^[0-9]{6,12}$", format = Password)]
    pub pin: Option<String>,
    /// `user` (the default) or `admin`.
    #[serde(default)]
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
    /// User flags (seed 003 `fl`), not negative.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub fl: Option<i64>,
    /// Custom properties: a JSON object of strings (`language`, `tz`, ...).
    #[serde(default)]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub prp: Option<serde_json::Map<String, serde_json::Value>>,
}

/// `PATCH /users/:id`: absent fields stay; `pin: null` removes the PIN.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUserRequest {
    /// 8 characters to 1024 bytes.
    #[serde(default)]
    #[schema(min_length = 8, max_length = 1024, format = Password)]
    pub password: Option<String>,
    /// 6 to 12 digits; `null` removes the PIN.
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]{6,12}$", format = Password)]
    pub pin: Patch<String>,
    #[serde(default)]
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
    /// Not negative.
    #[serde(default)]
    #[schema(minimum = 0)]
    pub fl: Option<i64>,
    /// Replaces the properties whole.
    #[serde(default)]
    #[schema(value_type = Option<HashMap<String, String>>)]
    pub prp: Option<serde_json::Map<String, serde_json::Value>>,
}

/// A user in seed 003 shape (times in seconds since the epoch, as the seed has them),
/// plus `role` and whether a PIN is set. Never a credential.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserInfo {
    pub id: String,
    pub nm: String,
    #[schema(value_type = Role)]
    pub role: String,
    /// The creator's id (`null` for an account's first admin).
    pub crt: Option<String>,
    /// The account (contract).
    pub bact: String,
    pub fl: i64,
    #[schema(value_type = HashMap<String, String>)]
    pub prp: serde_json::Value,
    pub ct: i64,
    /// The last login, `null` before the first.
    pub ld: Option<i64>,
    pub pin: bool,
}

/// `POST /token/login` (seed 003): a session from an API token.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenLoginRequest {
    pub token: String,
    /// The name of a user under the token's user: the session acts as that user.
    #[serde(default)]
    pub operate_as: Option<String>,
    /// Response flags: 0x1 basic, 0x2 user, 0x4 token, 0x8 items, 0x10 billing, 0x20
    /// custom properties. Absent: 0x3.
    #[serde(default)]
    pub fl: Option<u64>,
}

/// A user named in a session listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SessionUser {
    pub id: String,
    pub nm: String,
}

/// `GET /sessions`: a live session, never its value.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The session id (the session token's `jti`).
    #[serde(rename = "_id")]
    pub id: String,
    /// The user the session acts as.
    pub user: SessionUser,
    /// The user whose token made it (the same as `user` unless `operateAs` was used).
    pub operator: SessionUser,
    /// The API token it was made from.
    pub token: String,
    pub created_at: i64,
    /// The latest use the proxies reported (ms).
    pub last_used_at: i64,
    /// Ended at the latest then (its token's end), ms.
    pub expires_at: i64,
    /// When it ends if it is not used again: `lastUsedAt` + the idle limit (the control
    /// plane ends it within `TOKENGATE_SESSION_GRACE_MS` after that).
    pub idle_ends_at: i64,
}

/// `POST /networks` (seed 000): a Wi-Fi network of the caller's account.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkRequest {
    /// The id proxies list in `audiences` (`cafe-1`): 1 to 63 of `[a-z0-9._-]`, starting
    /// with a letter or digit.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    pub id: String,
    /// 1 to 100 characters, no control characters.
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: String,
}

/// `PATCH /networks/:id`: a new display name (the id, which tokens carry, stays).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenameNetwork {
    /// 1 to 100 characters, no control characters.
    #[schema(min_length = 1, max_length = 100, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*$")]
    pub name: String,
}

/// `POST /vouchers` (seed 000): generate vouchers.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerateVouchers {
    /// 1 to 200.
    #[schema(minimum = 1, maximum = 200)]
    pub count: i64,
    /// `single` (one device) or `multi` (any number of devices).
    #[schema(value_type = VoucherKind)]
    pub kind: String,
    /// 1 to 30 days from each activation; `null` or absent: unlimited.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 30)]
    pub days: Option<i64>,
}

/// `POST /vouchers/redeem` (seed 000, open): a device-bound access token for a code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedeemVoucher {
    pub code: String,
    /// The device (its MAC address, as the access controller names it, or another id).
    pub device: String,
    /// The network id.
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,62}$")]
    pub network: String,
}

/// A Wi-Fi network (seed 000): `POST /networks` answers one, `GET /networks` a list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

/// `GET /networks`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct NetworkList {
    pub networks: Vec<NetworkInfo>,
}

/// One redemption of a voucher: the device-bound access tokens it makes share its id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActivationInfo {
    /// The `jti` of the access tokens made for it.
    pub id: String,
    /// `active`, `expired` or `revoked`.
    pub state: String,
    pub device: String,
    pub network: String,
    pub activated_at: i64,
    /// `null`: unlimited.
    pub ends_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `revoked`, `deleted`, `other_network` or `network_deleted`.
    pub revoke_reason: Option<String>,
}

/// A voucher in `GET /vouchers`: its code only while it is unused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoucherInfo {
    pub id: String,
    /// `single` or `multi`.
    #[schema(value_type = VoucherKind)]
    pub kind: String,
    pub days: Option<i64>,
    /// `unused`, `active`, `expired` or `revoked`.
    pub state: String,
    pub code: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub activations: Vec<ActivationInfo>,
}

/// `GET /vouchers`: a page by id.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VoucherList {
    pub vouchers: Vec<VoucherInfo>,
    /// The account's unused vouchers now.
    pub unused: i64,
    /// At most this many unused vouchers per account.
    pub limit: i64,
    /// The `after` of the next page; `null` on the last one.
    pub next: Option<String>,
}

/// A voucher just made: the only answer besides the listing and the PDF with its code.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NewVoucher {
    pub id: String,
    /// 12 digits, the last a Damm check digit.
    #[schema(pattern = "^[1-9][0-9]{11}$")]
    pub code: String,
    #[schema(value_type = VoucherKind)]
    pub kind: String,
    pub days: Option<i64>,
    pub created_at: i64,
}

/// `POST /vouchers`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GeneratedVouchers {
    pub vouchers: Vec<NewVoucher>,
    pub unused: i64,
    pub limit: i64,
}

/// The answer of a voucher's revocation or deletion and of a network's deletion: what was
/// revoked and how far it reached (`proxies` is `null` when nothing had to propagate).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VoucherRevoked {
    pub id: String,
    /// `revoked` after a revocation; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `true` after a deletion; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted: Option<bool>,
    pub revoked_activations: usize,
    pub version: Option<u64>,
    pub proxies: Option<ProxyCounts>,
}

/// `POST /vouchers/redeem`: what a redemption gave.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redeemed {
    /// The access token (`tg-voucher+jwt`), bound to the device and the network.
    pub token: String,
    /// When this token expires (ms); redeem again before then to renew it.
    pub expires_at: i64,
    /// When the activation ends (ms); `None`: unlimited.
    pub ends_at: Option<i64>,
    pub activated_at: i64,
    pub activation_id: String,
    pub voucher_id: String,
    #[schema(value_type = VoucherKind)]
    pub kind: String,
    pub days: Option<i64>,
    pub network: String,
    pub device: String,
    /// This device already had this activation: the answer is a fresh token for it.
    pub renewed: bool,
    /// Activations of this device on other networks revoked by this one.
    pub revoked_elsewhere: usize,
}

/// `GET /audit`: one entry of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Increases with every entry; `before`/`after` page by it.
    pub id: i64,
    /// When (ms since the epoch).
    pub at: i64,
    /// `token.issue`, `token.revoke`, `token.revoke_all`, `token.update`, `key.rotate`,
    /// `user.create`, `user.update`, `user.delete`, `user.lock`, `login.failed`,
    /// `login.ok`, `session.end`, `voucher.generate`, `voucher.revoke`,
    /// `voucher.delete`, `voucher.redeem`, `network.create`, `network.update`,
    /// `network.delete`, `account.update`.
    pub kind: String,
    pub actor: AuditActor,
    /// What was changed: `token:<id>`, `user:<id>`, `voucher:<id>`, `network:<id>`,
    /// `session:<id>`, `key:<kid>`, `account:<id>`; null when nothing in particular.
    pub target: Option<String>,
    /// The client's address (behind trusted proxies, the forwarded one).
    pub address: Option<String>,
    /// Facts about the change (names, scopes, counts); never a secret.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Who made an audited change. All null: the control plane itself (an idle session's
/// end); only `user` and `userId`: a login that holds no token yet.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditActor {
    pub user: Option<String>,
    pub user_id: Option<String>,
    pub token_id: Option<String>,
}

/// `GET /audit`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    /// Without `after`: the `before` of the next older page (null: no older entry).
    /// With `after`: the last id read, the next tail's `after`.
    pub next: Option<i64>,
}
