//! Accounts and users: the first admin and look-up by name (the throttle on wrong
//! credentials is `throttle.rs`).

use sqlx::AnyPool;

use crate::config::{AdminCredentials, Backend};
use crate::db::{self, now_ms};
use crate::identity::login::Role;
use crate::identity::passwords::{self, Passwords};
use crate::tokens::keys::random_id;

/// A user as the logins need it.
#[derive(sqlx::FromRow)]
pub struct User {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub password_hash: String,
    pub pin_hash: Option<String>,
    pub role: String,
    /// The account's plan: `basic` or `pro`.
    pub plan: String,
}

impl User {
    pub fn role(&self) -> Role {
        if self.role == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

const SELECT_USER: &str = "SELECT u.id, u.account_id, u.name, u.password_hash, u.pin_hash, u.role, a.plan \
     FROM users u JOIN accounts a ON a.id = u.account_id WHERE u.deleted_at IS NULL AND ";

/// A live user by name.
pub async fn find_by_name(pool: &AnyPool, name: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT_USER}u.name = $1")).bind(name).fetch_optional(pool).await
}

/// A live user by id.
pub async fn find_by_id(pool: &AnyPool, id: &str) -> Result<Option<User>, sqlx::Error> {
    sqlx::query_as(&format!("{SELECT_USER}u.id = $1")).bind(id).fetch_optional(pool).await
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
    // The operator's own account: every login type is open to it.
    sqlx::query("INSERT INTO accounts (id, name, created_at, plan) VALUES ($1, $2, $3, 'pro')")
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
