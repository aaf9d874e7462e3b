//! The Ed25519 signing key: made at first start, stored, reused on restart. The public
//! keys go out in the JWKS and in every sync answer.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use rand::RngCore as _;
use serde::Serialize;
use sqlx::AnyPool;
use tokengate_rules::sync::PublicKey;
use tokengate_rules::token::{SigningKey, VerifyingKey, MAX_LIFETIME_SECS};
use tokengate_rules::KeySet;

use crate::config::Backend;
use crate::db::{self, now_ms};
use crate::error::StartError;

/// The keys this control plane signs with and trusts.
pub struct KeyRing {
    signing: SigningKey,
    trusted: KeySet,
    public: Vec<PublicKey>,
}

impl From<sqlx::Error> for StartError {
    fn from(e: sqlx::Error) -> Self {
        StartError(format!("signing keys: database error: {e}"))
    }
}

impl KeyRing {
    /// Loads the current key, making one first if there is none. Several replicas
    /// starting at once make only one: the check and the insert hold the sync lock.
    pub async fn load_or_create(pool: &AnyPool, backend: Backend) -> Result<KeyRing, StartError> {
        let mut tx = db::begin_write(pool, backend).await?;
        db::lock_sync_state(&mut tx).await?;
        let current: Option<(String, String, String)> = sqlx::query_as(
            "SELECT kid, seed, x FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC, kid LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let (kid, seed) = match current {
            Some((kid, seed, x)) => {
                let seed = decode_seed(&kid, &seed)?;
                if public_x(&seed) != x {
                    return Err(StartError(format!("signing key {kid}: the stored public key does not match the seed")));
                }
                (kid, seed)
            }
            None => {
                let mut seed = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut seed);
                let mut kid_bytes = [0u8; 8];
                rand::rngs::OsRng.fill_bytes(&mut kid_bytes);
                let kid = hex(&kid_bytes);
                sqlx::query("INSERT INTO signing_keys (kid, seed, x, created_at, retired_at) VALUES ($1, $2, $3, $4, NULL)")
                    .bind(&kid)
                    .bind(STANDARD.encode(seed))
                    .bind(public_x(&seed))
                    .bind(now_ms())
                    .execute(&mut *tx)
                    .await?;
                tracing::info!(kid = %kid, "created a new Ed25519 signing key");
                (kid, seed)
            }
        };
        tx.commit().await?;

        let signing = SigningKey::from_seed(&kid, &seed).map_err(|e| StartError(format!("signing key {kid}: {}", e.code())))?;
        // Retired keys stay trusted while a token they signed can still be alive.
        let horizon = now_ms().saturating_sub(db::to_i64(MAX_LIFETIME_SECS.saturating_mul(1000)));
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT kid, x FROM signing_keys WHERE retired_at IS NULL OR retired_at > $1 ORDER BY created_at, kid",
        )
        .bind(horizon)
        .fetch_all(pool)
        .await?;
        let mut trusted = KeySet::new();
        let mut public = Vec::with_capacity(rows.len());
        for (kid, x) in rows {
            let key = VerifyingKey::from_x(&kid, &x).map_err(|e| StartError(format!("public key {kid}: {}", e.code())))?;
            trusted.insert(key);
            public.push(PublicKey { kid, x });
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

fn decode_seed(kid: &str, text: &str) -> Result<[u8; 32], StartError> {
    STANDARD
        .decode(text)
        .ok()
        .and_then(|raw| <[u8; 32]>::try_from(raw.as_slice()).ok())
        .ok_or_else(|| StartError(format!("signing key {kid}: the stored seed is not 32 bytes of base64")))
}

/// The JWK `x` of the key with this seed.
fn public_x(seed: &[u8; 32]) -> String {
    URL_SAFE_NO_PAD.encode(ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().as_bytes())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh random id: `n` bytes as lower-case hex.
pub fn random_id(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}
