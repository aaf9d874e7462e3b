//! Accounts and users: the first admin, look-up by name, and the per-name throttle on
//! wrong passwords.

use sqlx::AnyPool;

use crate::config::{AdminCredentials, Backend};
use crate::db::{self, now_ms};
use crate::error::ApiError;
use crate::keys::random_id;
use crate::passwords::{self, Passwords};

/// A user as the login needs it.
#[derive(sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub password_hash: String,
    pub role: String,
}

pub async fn find_by_name(pool: &AnyPool, name: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as("SELECT id, account_id, name, password_hash, role FROM users WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// The admin made at first start when the environment named none: print it once.
pub struct GeneratedAdmin {
    pub username: String,
    pub password: String,
}

/// Makes the first account and admin when there is no user yet. Returns the generated
/// credentials when the environment gave none.
pub async fn ensure_admin(
    pool: &AnyPool,
    backend: Backend,
    passwords: &Passwords,
    admin: Option<&AdminCredentials>,
) -> Result<Option<GeneratedAdmin>, String> {
    let db_err = |e: sqlx::Error| format!("creating the first admin: database error: {e}");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(pool).await.map_err(db_err)?;
    if count > 0 {
        if let Some(a) = admin {
            tracing::info!(user = %a.username, "users exist; TOKENGATE_ADMIN_USER/PASSWORD only create the first admin");
        }
        return Ok(None);
    }
    let (username, password, generated) = match admin {
        Some(a) => (a.username.clone(), a.password.clone(), false),
        None => ("admin".to_owned(), passwords::generate(), true),
    };
    let hash = passwords.hash(&password).await.map_err(|e| format!("hashing the admin password: {}", e.code()))?;

    let mut tx = db::begin_write(pool, backend).await.map_err(db_err)?;
    // Another replica may have made it meanwhile; the lock orders us after it.
    db::lock_sync_state(&mut tx).await.map_err(db_err)?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&mut *tx).await.map_err(db_err)?;
    if count > 0 {
        return Ok(None);
    }
    let now = now_ms();
    let account_id = random_id(12);
    sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
        .bind(&account_id)
        .bind("default")
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    sqlx::query(
        "INSERT INTO users (id, account_id, parent_id, name, password_hash, role, created_at) VALUES ($1, $2, NULL, $3, $4, 'admin', $5)",
    )
    .bind(random_id(12))
    .bind(&account_id)
    .bind(&username)
    .bind(&hash)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    tracing::info!(user = %username, "created the first admin user");
    Ok(generated.then_some(GeneratedAdmin { username, password }))
}

/// Wrong attempts allowed within [`WINDOW_MS`] before a lock.
pub const MAX_FAILURES: i64 = 5;
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// The first lock; each further lock doubles, up to [`MAX_LOCK_MS`]. With five attempts
/// per lock this stays far below NIST's 100 failures per 24 h.
pub const FIRST_LOCK_MS: i64 = 60 * 1000;
pub const MAX_LOCK_MS: i64 = 24 * 3600 * 1000;

/// `Some(seconds)` while the name is locked.
pub async fn locked_for(pool: &AnyPool, username: &str, now: i64) -> Result<Option<u64>, ApiError> {
    let until: Option<i64> = sqlx::query_scalar("SELECT locked_until FROM login_throttle WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await?;
    Ok(until.filter(|u| *u > now).map(|u| retry_after_secs(u - now)))
}

fn retry_after_secs(ms: i64) -> u64 {
    db::to_u64(ms).div_ceil(1000).max(1)
}

/// Counts a wrong attempt; returns `Some(seconds)` when it starts a lock. Atomic across
/// workers and replicas: the upsert locks the row until the commit.
pub async fn record_failure(pool: &AnyPool, backend: Backend, username: &str, now: i64) -> Result<Option<u64>, ApiError> {
    let mut tx = db::begin_write(pool, backend).await?;
    let (failures, lock_ms, locked_until): (i64, i64, i64) = sqlx::query_as(
        "INSERT INTO login_throttle (username, failures, window_start, locked_until, lock_ms) VALUES ($1, 1, $2, 0, 0) \
         ON CONFLICT (username) DO UPDATE SET \
           failures = CASE WHEN login_throttle.window_start + $3 < $2 THEN 1 ELSE login_throttle.failures + 1 END, \
           window_start = CASE WHEN login_throttle.window_start + $3 < $2 THEN $2 ELSE login_throttle.window_start END \
         RETURNING failures, lock_ms, locked_until",
    )
    .bind(username)
    .bind(now)
    .bind(WINDOW_MS)
    .fetch_one(&mut *tx)
    .await?;
    let mut lock = None;
    if failures >= MAX_FAILURES {
        // A day after the last lock ended, start again from the first lock length.
        let next = if lock_ms == 0 || locked_until + MAX_LOCK_MS < now {
            FIRST_LOCK_MS
        } else {
            (lock_ms.saturating_mul(2)).min(MAX_LOCK_MS)
        };
        sqlx::query(
            "UPDATE login_throttle SET failures = 0, window_start = $2, locked_until = $3, lock_ms = $4 WHERE username = $1",
        )
        .bind(username)
        .bind(now)
        .bind(now + next)
        .bind(next)
        .execute(&mut *tx)
        .await?;
        lock = Some(retry_after_secs(next));
    }
    tx.commit().await?;
    Ok(lock)
}

/// A good password clears the failures (the lock length is kept for the next lock).
pub async fn record_success(pool: &AnyPool, username: &str) -> Result<(), ApiError> {
    sqlx::query("UPDATE login_throttle SET failures = 0 WHERE username = $1").bind(username).execute(pool).await?;
    Ok(())
}
