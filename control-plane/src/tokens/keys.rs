//! The Ed25519 signing keys: made at first start, stored, reused on restart, rotated on
//! demand (`POST /keys/rotate`). The published public keys go out in the JWKS and in
//! every sync answer; a retired key stays published while a live token it signed can
//! still be presented, then drops out.
//!
//! Only a user with role `admin` rotates (403 `admin_required` for any other user,
//! however unlimited its token), and a rotation never leaves more than
//! `TOKENGATE_MAX_KEYS` keys published: every published key costs every proxy worker a
//! 640 KiB verification table. A rotation past the cap is 409 `too_many_keys`, saying
//! which key is the oldest and when its last token expires, unless the caller asks with
//! `?retireOldest=true`: then the oldest keys (as many as the cap needs, usually one)
//! are withdrawn (never published nor trusted again) and every live token they signed is
//! revoked with its descendants, in the rotation's transaction, one change-log entry
//! each; the answer says how many (`revokedTokens`).

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::RngCore as _;
use std::sync::{Arc, RwLock};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::AnyPool;
use tokengate_rules::route::Refusal;
use tokengate_rules::sync::PublicKey;
use tokengate_rules::token::{SigningKey, VerifyingKey, DEFAULT_LEEWAY_SECS};
use tokengate_rules::{Denial, KeySet};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Backend;
use crate::db::{self, now_ms};
use crate::http::error::{ApiError, StartError};
use crate::http::openapi::{ErrorBody, Guarded};
use crate::http::wire::{KeyInfo, Rotated};
use crate::tokens::guard::{may_manage, Authorized};
use crate::tokens::{revoke_in, Revoked};
use crate::AppState;

/// The keys this control plane signs with and trusts, as loaded at one moment.
pub struct KeyRing {
    signing: SigningKey,
    trusted: KeySet,
    public: Vec<PublicKey>,
}

/// The current [`KeyRing`], replaced whole after a rotation or a reload.
pub struct Keys(RwLock<Arc<KeyRing>>);

impl Keys {
    pub fn new(ring: KeyRing) -> Keys {
        Keys(RwLock::new(Arc::new(ring)))
    }

    pub fn current(&self) -> Arc<KeyRing> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn replace(&self, ring: KeyRing) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(ring);
    }

    /// Re-reads the keys from the database (a rotation on another replica).
    pub async fn reload(&self, pool: &AnyPool) -> Result<(), String> {
        // Keys still published keep their verification tables (640 KiB each to build).
        let held = self.current();
        let ring = KeyRing::load(pool, Some(held.trusted())).await?;
        self.replace(ring);
        Ok(())
    }
}

impl From<sqlx::Error> for StartError {
    fn from(e: sqlx::Error) -> Self {
        StartError(format!("signing keys: database error: {e}"))
    }
}

/// A retired key stays published at least this long, for replicas that still sign with
/// it until they reload (they reload every [`RELOAD_EVERY`]).
pub const RETIRE_OVERLAP_MS: i64 = 60_000;
/// How often each process re-reads the key set (a rotation on another replica).
pub const RELOAD_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// A rotated-in key is published at once but signs only this long after the rotation,
/// so every proxy holds it before any token signed by it exists (propagation takes
/// milliseconds; the rotation also waits for the live proxies to confirm it).
pub const ACTIVATE_AFTER_MS: i64 = 2_000;

/// A token of a retired key keeps it published until this long after its expiry (twice
/// the verifiers' leeway).
const EXPIRY_GRACE_MS: i64 = DEFAULT_LEEWAY_SECS as i64 * 2000;

/// The keys proxies and verifiers must trust at `now` (ms), oldest first: the signing
/// key, keys retired within [`RETIRE_OVERLAP_MS`], and retired keys that signed a token
/// that is still live (unrevoked and not yet expired beyond the leeway); never a
/// withdrawn key.
pub async fn published<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(db: E, now: i64) -> Result<Vec<PublicKey>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT k.kid, k.x FROM signing_keys k WHERE k.withdrawn_at IS NULL AND (k.retired_at IS NULL OR k.retired_at > $1 \
         OR EXISTS (SELECT 1 FROM tokens t WHERE t.kid = k.kid AND t.revoked_at IS NULL AND t.expires_at > $2) \
         OR EXISTS (SELECT 1 FROM sessions s WHERE s.kid = k.kid AND s.ended_at IS NULL AND s.expires_at > $2) \
         OR EXISTS (SELECT 1 FROM voucher_activations v WHERE v.kid = k.kid AND v.revoked_at IS NULL AND v.token_expires_at > $2)) \
         ORDER BY k.created_at, k.kid",
    )
    .bind(now.saturating_sub(RETIRE_OVERLAP_MS))
    .bind(now.saturating_sub(EXPIRY_GRACE_MS))
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|(kid, x)| PublicKey { kid, x }).collect())
}

/// Makes a signing key when there is none. Several replicas starting at once make only
/// one: the check and the insert hold the sync lock.
pub async fn ensure_signing_key(pool: &AnyPool, backend: Backend) -> Result<(), StartError> {
    let mut tx = db::begin_write(pool, backend).await?;
    db::lock_sync_state(&mut tx).await?;
    let current: Option<String> =
        sqlx::query_scalar("SELECT kid FROM signing_keys WHERE retired_at IS NULL LIMIT 1").fetch_optional(&mut *tx).await?;
    if current.is_none() {
        let kid = insert_key(&mut tx, now_ms()).await?;
        tracing::info!(kid = %kid, "created a new Ed25519 signing key");
    }
    tx.commit().await?;
    Ok(())
}

/// Inserts a fresh key; returns its kid.
async fn insert_key(tx: &mut sqlx::AnyConnection, now: i64) -> Result<String, sqlx::Error> {
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let mut kid_bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut kid_bytes);
    let kid = hex(&kid_bytes);
    sqlx::query("INSERT INTO signing_keys (kid, seed, x, created_at, retired_at) VALUES ($1, $2, $3, $4, NULL)")
        .bind(&kid)
        .bind(STANDARD.encode(seed))
        .bind(public_x(&seed))
        .bind(now)
        .execute(&mut *tx)
        .await?;
    Ok(kid)
}

impl KeyRing {
    /// Loads the current key, making one first if there is none.
    pub async fn load_or_create(pool: &AnyPool, backend: Backend) -> Result<KeyRing, StartError> {
        ensure_signing_key(pool, backend).await?;
        KeyRing::load(pool, None).await.map_err(StartError)
    }

    /// The newest unretired key signs; the published keys are trusted.
    /// `held`: a key set whose keys (same `kid` and `x`) are reused rather than rebuilt.
    pub async fn load(pool: &AnyPool, held: Option<&KeySet>) -> Result<KeyRing, String> {
        let current: Option<(String, String, String)> = sqlx::query_as(
            "SELECT kid, seed, x FROM signing_keys WHERE created_at <= $1 AND (retired_at IS NULL OR retired_at > $1) \
             AND withdrawn_at IS NULL ORDER BY created_at DESC, kid DESC LIMIT 1",
        )
        .bind(now_ms())
        .fetch_optional(pool)
        .await
        .map_err(|e| format!("signing keys: database error: {e}"))?;
        let Some((kid, seed, x)) = current else { return Err("signing keys: no current key".into()) };
        let seed = decode_seed(&kid, &seed)?;
        if public_x(&seed) != x {
            return Err(format!("signing key {kid}: the stored public key does not match the seed"));
        }
        let signing = SigningKey::from_seed(&kid, &seed).map_err(|e| format!("signing key {kid}: {}", e.code()))?;
        let mut public = published(pool, now_ms()).await.map_err(|e| format!("signing keys: database error: {e}"))?;
        if !public.iter().any(|k| k.kid == kid) {
            public.push(PublicKey { kid: kid.clone(), x });
        }
        let mut trusted = KeySet::new();
        for k in &public {
            let key = match held {
                Some(held) => held.key_for(&k.kid, &k.x),
                None => VerifyingKey::from_x(&k.kid, &k.x),
            };
            trusted.insert(key.map_err(|e| format!("public key {}: {}", k.kid, e.code()))?);
        }
        Ok(KeyRing { signing, trusted, public })
    }

    pub fn signing(&self) -> &SigningKey {
        &self.signing
    }

    pub fn trusted(&self) -> &KeySet {
        &self.trusted
    }

    /// The public keys proxies and other verifiers should trust.
    pub fn public(&self) -> &[PublicKey] {
        &self.public
    }

    /// The JWKS document (RFC 8037 OKP keys).
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self
                .public
                .iter()
                .map(|k| Jwk { kty: "OKP", crv: "Ed25519", alg: "EdDSA", r#use: "sig", kid: k.kid.clone(), x: k.x.clone() })
                .collect(),
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(rotate))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RotateQuery {
    retire_oldest: Option<String>,
}

/// `POST /keys/rotate`, in two phases: the new key and a `keys` change-log entry commit
/// together, so long-polling proxies are woken with the new key set at once; the new key
/// signs only from [`ACTIVATE_AFTER_MS`] later (every replica's reload switches then),
/// and the old one signs until then and stays published while a token it signed can
/// live. The answer comes once the live proxies have applied the key set (or the
/// activation delay has passed) and says how many have.
///
/// Admin users only, capped at `TOKENGATE_MAX_KEYS` published keys; `?retireOldest=true`
/// withdraws the oldest keys to make room (see the module doc).
#[utoipa::path(post, path = "/keys/rotate", operation_id = "rotateKey", tag = "keys", security(("bearer" = [])),
    summary = "Rotate the signing key",
    description = "Makes a new Ed25519 key and retires the current one, in one transaction with a `keys` change-log entry. Tokens signed by the old key keep working: it stays published while any of them can live. Only an admin user may rotate. At most TOKENGATE_MAX_KEYS keys (default 4) are published: past it the answer is 409 too_many_keys, unless `retireOldest=true` withdraws the oldest keys and revokes every live token they signed.",
    params(("retireOldest" = Option<String>, Query, pattern = "^(true|false)$", description = "true: at the key cap, withdraw the oldest key now and revoke every live token it signed.")),
    responses(
        (status = 200, description = "The new key, and how far its key set reached.", body = Rotated),
        Guarded,
        (status = 400, description = "bad_query (retireOldest is not true or false), or invalid_request.", body = ErrorBody),
        (status = 403, description = "insufficient_scope, insufficient_flags, or admin_required (the caller's user is not an admin).", body = ErrorBody),
        (status = 409, description = "too_many_keys: the rotation would publish more than TOKENGATE_MAX_KEYS keys; the body adds oldestKid, lastTokenExpiresAt and publishedUntil.", body = ErrorBody),
    ))]
async fn rotate(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    query: Result<Query<RotateQuery>, QueryRejection>,
) -> Result<Json<Rotated>, ApiError> {
    if !may_manage(&caller.rights) {
        return Err(Denial::Refused(Refusal::MissingFlags).into());
    }
    let Query(query) = query.map_err(|e| ApiError::BadQuery(format!("bad query string: {}", e.body_text())))?;
    let retire_oldest = match query.retire_oldest.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(ApiError::BadQuery("retireOldest must be true or false".into())),
    };
    if !crate::tokens::guard::is_admin(&state, &caller).await? {
        tracing::warn!(user = %caller.token.user_id, "a key rotation by a user who is not an admin was refused");
        return Err(ApiError::AdminRequired);
    }
    let now = now_ms();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    db::lock_sync_state(&mut tx).await?;
    // The rotation publishes one key more than are published now.
    let public = published(&mut *tx, now).await?;
    let max_keys = usize::try_from(state.config.max_keys).unwrap_or(usize::MAX);
    let excess = (public.len() + 1).saturating_sub(max_keys);
    let mut withdrawn = Vec::new();
    let mut revoked = Revoked::default();
    for key in &public[..excess.min(public.len())] {
        let (retired_at, last_token): (Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT k.retired_at, (SELECT MAX(e) FROM ( \
               SELECT t.expires_at AS e FROM tokens t WHERE t.kid = k.kid AND t.revoked_at IS NULL AND t.expires_at > $2 \
               UNION ALL SELECT s.expires_at AS e FROM sessions s WHERE s.kid = k.kid AND s.ended_at IS NULL AND s.expires_at > $2) AS live) \
             FROM signing_keys k WHERE k.kid = $1",
        )
        .bind(&key.kid)
        .bind(now.saturating_sub(EXPIRY_GRACE_MS))
        .fetch_one(&mut *tx)
        .await?;
        let still_signs = retired_at.is_none_or(|at| at > now);
        if !retire_oldest || still_signs {
            return Err(too_many_keys(&public, max_keys, &key.kid, retired_at, last_token, still_signs));
        }
        let roots: Vec<String> =
            sqlx::query_scalar("SELECT id FROM tokens WHERE kid = $1 AND revoked_at IS NULL AND expires_at > $2 ORDER BY id")
                .bind(&key.kid)
                .bind(now.saturating_sub(EXPIRY_GRACE_MS))
                .fetch_all(&mut *tx)
                .await?;
        let done = revoke_in(&mut tx, roots, now).await?;
        revoked.count += done.count;
        revoked.version = done.version.or(revoked.version);
        // Sessions it signed (of tokens another key signed) end too.
        let (_, ended) = crate::sessions::end_signed_by(&mut tx, &key.kid, now).await?;
        revoked.version = revoked.version.max(ended);
        sqlx::query("UPDATE signing_keys SET withdrawn_at = $2 WHERE kid = $1").bind(&key.kid).bind(now).execute(&mut *tx).await?;
        withdrawn.push(key.kid.clone());
    }
    let retired: Vec<String> =
        sqlx::query_scalar("SELECT kid FROM signing_keys WHERE retired_at IS NULL ORDER BY kid").fetch_all(&mut *tx).await?;
    let activate = now + ACTIVATE_AFTER_MS;
    sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL").bind(activate).execute(&mut *tx).await?;
    let kid = insert_key(&mut tx, activate).await?;
    let version = db::append_change(&mut tx, "keys", None, now, now).await?;
    let detail = serde_json::json!({ "retired": retired, "withdrawn": withdrawn, "revokedTokens": revoked.count, "activatesAt": activate });
    let event = crate::audit::Event::new(&caller.token.account_id, "key.rotate", Some(format!("key:{kid}")), detail);
    crate::audit::record(&mut tx, &crate::audit::Actor::of(&caller), &event).await?;
    tx.commit().await?;
    state.keys.reload(&state.pool).await.map_err(|e| {
        tracing::error!(error = %e, "reloading the keys after a rotation failed");
        ApiError::Internal
    })?;
    state.announce(version);
    let proxies =
        crate::sync::proxies::await_applied(&state, version, std::time::Duration::from_millis(db::to_u64(ACTIVATE_AFTER_MS))).await?;
    state.metrics.key_rotations.inc();
    state.metrics.revocations.add(revoked.count);
    tracing::info!(kid = %kid, retired = ?retired, withdrawn = ?withdrawn, revoked = revoked.count, version, "rotated the signing key");
    Ok(Json(Rotated { kid, created_at: activate, retired, version, proxies, withdrawn, revoked_tokens: revoked.count }))
}

/// The 409 of a rotation past the cap, about the oldest published key.
fn too_many_keys(
    public: &[PublicKey],
    max_keys: usize,
    kid: &str,
    retired_at: Option<i64>,
    last_token: Option<i64>,
    still_signs: bool,
) -> ApiError {
    // It drops out of the published set once its overlap and its last token (plus the
    // grace) have passed, if it no longer signs.
    let published_until = retired_at.filter(|_| !still_signs).map(|at| {
        let overlap = at.saturating_add(RETIRE_OVERLAP_MS);
        last_token.map_or(overlap, |t| overlap.max(t.saturating_add(EXPIRY_GRACE_MS)))
    });
    let head = format!(
        "{} keys are published and a rotation would publish one more; TOKENGATE_MAX_KEYS={max_keys} allows {max_keys}",
        public.len()
    );
    let message = match (still_signs, published_until) {
        (false, Some(until)) => format!(
            "{head}. The oldest key, {kid}, stays published until {} ({}); rotate then, or rotate with ?retireOldest=true to withdraw it now and revoke every live token it signed",
            match last_token {
                Some(t) => format!("its last token expires at {}", iso_utc(t)),
                None => "it has no live token".to_owned(),
            },
            iso_utc(until),
        ),
        _ => format!("{head}. The oldest key, {kid}, still signs (a rotation is activating); retry in {} s", ACTIVATE_AFTER_MS / 1000),
    };
    ApiError::TooManyKeys { message, oldest_kid: kid.to_owned(), last_token_expires_at: last_token, published_until }
}

/// `ms` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (UTC).
pub fn iso_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Proleptic Gregorian (year, month 1..=12, day 1..=31) of a day count since 1970-01-01
/// (Howard Hinnant's `civil_from_days`): the dates in messages, the voucher PDF and the
/// portal page, without a date crate for three format strings.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1); // [1, 31]
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1); // [1, 12]
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `GET /keys`: every key, newest first.
#[utoipa::path(get, path = "/keys", operation_id = "listKeys", tag = "keys", security(("bearer" = [])),
    summary = "List the signing keys",
    description = "Every key, newest first: when it was made and retired, whether it signs new tokens, and whether it is published (JWKS and the proxies' key set). A retired key stays published while a live token it signed can be presented; a withdrawn key is never published again. Needs a token that may manage tokens.",
    responses((status = 200, description = "Keys.", body = Vec<KeyInfo>), Guarded))]
async fn list(State(state): State<AppState>, Authorized(caller): Authorized) -> Result<Json<Vec<KeyInfo>>, ApiError> {
    if !may_manage(&caller.rights) {
        return Err(Denial::Refused(Refusal::MissingFlags).into());
    }
    let rows: Vec<(String, i64, Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT kid, created_at, retired_at, withdrawn_at FROM signing_keys ORDER BY created_at DESC, kid DESC")
            .fetch_all(&state.pool)
            .await?;
    let public = published(&state.pool, now_ms()).await?;
    let signing = state.keys.current().signing().kid.clone();
    Ok(Json(
        rows.into_iter()
            .map(|(kid, created_at, retired_at, withdrawn_at)| KeyInfo {
                published: public.iter().any(|k| k.kid == kid),
                signing: kid == signing,
                kid,
                created_at,
                retired_at,
                withdrawn_at,
            })
            .collect(),
    ))
}

#[derive(Serialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    pub crv: &'static str,
    pub alg: &'static str,
    pub r#use: &'static str,
    pub kid: String,
    pub x: String,
}

fn decode_seed(kid: &str, text: &str) -> Result<[u8; 32], String> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|raw| <[u8; 32]>::try_from(raw.as_slice()).ok())
        .ok_or_else(|| format!("signing key {kid}: the stored seed is not 32 bytes of base64"))
}

/// The JWK `x` of the key with this seed.
fn public_x(seed: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().as_bytes())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of the ids this service makes (tokens, users, accounts): 24 hex digits.
pub const ID_BYTES: usize = 12;

/// Is `s` an id as `random_id(ID_BYTES)` makes them: 24 lower-case hex digits?
pub fn is_id(s: &str) -> bool {
    s.len() == 2 * ID_BYTES && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A fresh random id: `n` bytes as lower-case hex.
pub fn random_id(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::iso_utc;

    #[test]
    fn iso_times() {
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(1_796_165_557_304), "2026-12-01T22:52:37Z");
        assert_eq!(iso_utc(4_102_444_799_999), "2099-12-31T23:59:59Z");
    }
}
