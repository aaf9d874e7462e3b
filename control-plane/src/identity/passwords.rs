//! Password hashing (argon2id, m = 19 MiB, t = 2, p = 1) with a bound on how many hashes
//! run at once, so a burst of logins cannot exhaust memory or starve the runtime.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore as _;
use tokio::sync::Semaphore;

use crate::http::error::ApiError;

/// OWASP's argon2id minimum (SECURITY.md): 19 MiB, two passes, one lane.
const MEMORY_KIB: u32 = 19_456;
const ITERATIONS: u32 = 2;
const LANES: u32 = 1;

#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    /// The hash an unknown user's attempt is checked against, so it costs the same.
    dummy: Arc<String>,
}

fn argon2() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(MEMORY_KIB, ITERATIONS, LANES, None).map_err(|_| ApiError::Internal)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_now(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|_| ApiError::Internal)?;
    let hash = argon2()?.hash_password(password.as_bytes(), &salt).map_err(|_| ApiError::Internal)?;
    Ok(hash.to_string())
}

fn verify_now(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    // The parameters come from the stored hash, so older hashes keep verifying.
    Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok()
}

impl Passwords {
    /// `concurrency` hashes at most run at once (each holds 19 MiB).
    pub async fn new(concurrency: usize) -> Result<Passwords, ApiError> {
        let mut secret = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let dummy_password = crate::tokens::keys::hex(&secret);
        let dummy = tokio::task::spawn_blocking(move || hash_now(&dummy_password)).await.map_err(|_| ApiError::Internal)??;
        Ok(Passwords { permits: Arc::new(Semaphore::new(concurrency.max(1))), dummy: Arc::new(dummy) })
    }

    pub async fn hash(&self, password: &str) -> Result<String, ApiError> {
        let _permit = self.permits.acquire().await.map_err(|_| ApiError::Internal)?;
        let password = password.to_owned();
        tokio::task::spawn_blocking(move || hash_now(&password)).await.map_err(|_| ApiError::Internal)?
    }

    /// Checks `password` against `phc`, or against a dummy hash when the user is unknown
    /// (`None`), which always fails after the same work.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Result<bool, ApiError> {
        let _permit = self.permits.acquire().await.map_err(|_| ApiError::Internal)?;
        let known = phc.is_some();
        let phc = phc.map_or_else(|| self.dummy.as_str().to_owned(), str::to_owned);
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || verify_now(&password, &phc)).await.map_err(|_| ApiError::Internal)?;
        Ok(ok && known)
    }
}

/// A random password for a generated admin: 24 characters of base64url (144 bits).
pub fn generate() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let p = Passwords::new(2).await.unwrap();
        let h = p.hash("correct horse").await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(p.verify("correct horse", Some(&h)).await.unwrap());
        assert!(!p.verify("wrong", Some(&h)).await.unwrap());
        assert!(!p.verify("correct horse", None).await.unwrap());
    }
}
