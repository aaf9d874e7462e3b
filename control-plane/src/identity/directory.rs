//! `/users`: an account's users in a tree (issue 11 §1). Each user has a creator (`crt`,
//! the parent), its account (`bact`), a role, flags (`fl`), custom properties (`prp`), a
//! password and optionally a PIN (both argon2id).
//!
//! A caller reaches only its own user and the users under it. Reading needs a token with
//! the route's scope; creating, deleting and changing another user's role or flags needs
//! the `admin` role and a token that may manage (no `fl`, or `fl` -1). A user changes its
//! own password, PIN and properties, never its own role. Deleting a user revokes every
//! token of it and of every user under it (at every proxy, as any revocation), and marks
//! those users deleted: their rows stay (their tokens' rows refer to them) under a freed
//! name.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use sqlx::FromRow;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Actor, Event};
use crate::config::check_username;
use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded};
use crate::http::wire::{CreateUserRequest, UpdateUserRequest, UserInfo};
use crate::tokens::guard::{is_admin, may_manage, Authorized, Caller};
use crate::tokens::keys::{is_id, random_id};
use crate::tokens::{revoke_trees, Roots};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list, create)).routes(routes!(read, update, remove))
}

/// The shortest password a new or changed one may be.
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Properties: at most this many, each key and value at most [`MAX_PROPERTY_CHARS`].
pub const MAX_PROPERTIES: usize = 64;
pub const MAX_PROPERTY_CHARS: usize = 256;

#[derive(FromRow)]
struct Row {
    id: String,
    account_id: String,
    parent_id: Option<String>,
    name: String,
    role: String,
    fl: i64,
    prp: String,
    pin_hash: Option<String>,
    created_at: i64,
    last_login_at: Option<i64>,
}

const COLUMNS: &str = "id, account_id, parent_id, name, role, fl, prp, pin_hash, created_at, last_login_at";

impl Row {
    fn info(self) -> Result<UserInfo, ApiError> {
        let prp = serde_json::from_str(&self.prp).map_err(|_| {
            tracing::error!(user = %self.id, "stored properties are not JSON");
            ApiError::Internal
        })?;
        Ok(UserInfo {
            id: self.id,
            nm: self.name,
            role: self.role,
            crt: self.parent_id,
            bact: self.account_id,
            fl: self.fl,
            prp,
            ct: self.created_at.div_euclid(1000),
            ld: self.last_login_at.map(|t| t.div_euclid(1000)),
            pin: self.pin_hash.is_some(),
        })
    }
}

/// A live user in seed 003 shape.
pub async fn user_info(state: &AppState, id: &str) -> Result<Option<UserInfo>, ApiError> {
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL"))
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    row.map(Row::info).transpose()
}

/// The caller's user and every live user under it, the caller's first.
async fn reachable(state: &AppState, caller: &Caller) -> Result<Vec<Row>, ApiError> {
    let me: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL"))
        .bind(&caller.claims.sub)
        .fetch_optional(&state.pool)
        .await?;
    let Some(me) = me else { return Err(ApiError::UserNotFound) };
    let mut out = vec![me];
    let mut frontier = vec![out[0].id.clone()];
    while !frontier.is_empty() {
        let marks: Vec<String> = (1..=frontier.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT {COLUMNS} FROM users WHERE parent_id IN ({}) AND deleted_at IS NULL ORDER BY id", marks.join(", "));
        let mut q = sqlx::query_as::<_, Row>(&sql);
        for id in &frontier {
            q = q.bind(id);
        }
        let level = q.fetch_all(&state.pool).await?;
        frontier = level.iter().map(|r| r.id.clone()).collect();
        out.extend(level);
    }
    Ok(out)
}

/// The ids of the caller's user and every live user under it.
pub async fn reachable_ids(state: &AppState, caller: &Caller) -> Result<Vec<String>, ApiError> {
    Ok(reachable(state, caller).await?.into_iter().map(|r| r.id).collect())
}

/// The deepest user tree walked (a loop in `parent_id` would be a broken database).
const MAX_DEPTH: usize = 64;

/// Is `target` the user `from` or a live user under it? Walks up from `target`.
pub async fn is_at_or_below(pool: &sqlx::AnyPool, from: &str, target: &str) -> Result<bool, sqlx::Error> {
    let mut at = target.to_owned();
    for _ in 0..MAX_DEPTH {
        if at == from {
            return Ok(true);
        }
        let parent: Option<Option<String>> =
            sqlx::query_scalar("SELECT parent_id FROM users WHERE id = $1 AND deleted_at IS NULL").bind(&at).fetch_optional(pool).await?;
        match parent.flatten() {
            Some(p) => at = p,
            None => return Ok(false),
        }
    }
    Ok(false)
}

/// The user `id` if the caller reaches it (else 404, which reveals nothing).
async fn reach(state: &AppState, caller: &Caller, id: &str) -> Result<Row, ApiError> {
    if !is_at_or_below(&state.pool, &caller.claims.sub, id).await? {
        return Err(ApiError::UserNotFound);
    }
    let row: Option<Row> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL"))
        .bind(id)
        .fetch_optional(&state.pool)
        .await?;
    row.ok_or(ApiError::UserNotFound)
}

#[utoipa::path(get, path = "/users", operation_id = "listUsers", tag = "identity", security(("bearer" = [])),
    summary = "List your user and every user under it",
    responses((status = 200, description = "Users, yours first (seed 003 fields).", body = Vec<UserInfo>), Guarded))]
async fn list(State(state): State<AppState>, Authorized(caller): Authorized) -> Result<Json<Vec<UserInfo>>, ApiError> {
    let rows = reachable(&state, &caller).await?;
    Ok(Json(rows.into_iter().map(Row::info).collect::<Result<_, _>>()?))
}

fn user_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match id {
        Ok(Path(id)) if is_id(&id) => Ok(id),
        _ => Err(ApiError::BadUser("a user id is 24 lower-case hexadecimal digits".into())),
    }
}

#[utoipa::path(get, path = "/users/{id}", operation_id = "getUser", tag = "identity", security(("bearer" = [])),
    summary = "Read a user",
    params(("id" = String, Path, pattern = "^[0-9a-f]{24}$", description = "The user's id (24 hexadecimal digits).")),
    responses((status = 200, description = "The user.", body = UserInfo), Guarded,
        (status = 404, description = "user_not_found: not your user nor one under it.", body = ErrorBody),
    ))]
async fn read(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<UserInfo>, ApiError> {
    let id = user_id(id)?;
    Ok(Json(reach(&state, &caller, &id).await?.info()?))
}

/// Only an admin with a managing token acts on other users.
async fn require_admin(state: &AppState, caller: &Caller, what: &'static str) -> Result<(), ApiError> {
    if !is_admin(state, caller).await? || !may_manage(&caller.rights) {
        return Err(ApiError::UsersNeedAdmin(what));
    }
    Ok(())
}

fn check_password(p: &str) -> Result<(), ApiError> {
    if p.chars().count() < MIN_PASSWORD_CHARS || p.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::BadUser(format!("a password is {MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes")));
    }
    Ok(())
}

/// A PIN is 6 to 12 digits.
fn check_pin(p: &str) -> Result<(), ApiError> {
    if !(6..=12).contains(&p.len()) || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::BadUser("a PIN is 6 to 12 digits".into()));
    }
    Ok(())
}

fn check_role(r: &str) -> Result<(), ApiError> {
    if r != "admin" && r != "user" {
        return Err(ApiError::BadUser("role is admin or user".into()));
    }
    Ok(())
}

fn check_fl(fl: i64) -> Result<(), ApiError> {
    if fl < 0 {
        return Err(ApiError::BadUser("fl (user flags) is a non-negative integer".into()));
    }
    Ok(())
}

/// Properties: a JSON object of strings, bounded; returned as compact JSON text.
fn check_prp(prp: &serde_json::Map<String, serde_json::Value>) -> Result<String, ApiError> {
    let bad = || {
        ApiError::BadUser(format!(
            "prp is an object of at most {MAX_PROPERTIES} string values, keys and values at most {MAX_PROPERTY_CHARS} characters"
        ))
    };
    if prp.len() > MAX_PROPERTIES {
        return Err(bad());
    }
    for (k, v) in prp {
        let Some(v) = v.as_str() else { return Err(bad()) };
        if k.is_empty()
            || k.chars().count() > MAX_PROPERTY_CHARS
            || v.chars().count() > MAX_PROPERTY_CHARS
            || k.chars().any(char::is_control)
        {
            return Err(bad());
        }
    }
    Ok(serde_json::Value::Object(prp.clone()).to_string())
}

#[utoipa::path(post, path = "/users", operation_id = "createUser", tag = "identity", security(("bearer" = [])),
    summary = "Create a user under yours",
    description = "Needs the admin role and a token that may manage. The password is stored as an argon2id hash; a PIN (6 to 12 digits) too.",
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created.", body = UserInfo),
        Guarded, BodyErrors,
        (status = 400, description = "bad_user (the message names the field), invalid_request, or a body error.", body = ErrorBody),
        (status = 403, description = "admin_required, insufficient_scope or insufficient_flags.", body = ErrorBody),
        (status = 409, description = "user_exists", body = ErrorBody),
    ))]
async fn create(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    ApiJson(req): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserInfo>), ApiError> {
    require_admin(&state, &caller, "create users").await?;
    check_username(&req.name).map_err(|e| ApiError::BadUser(format!("name: {e}")))?;
    check_password(&req.password)?;
    if let Some(pin) = &req.pin {
        check_pin(pin)?;
    }
    let role = req.role.unwrap_or_else(|| "user".to_owned());
    check_role(&role)?;
    let fl = req.fl.unwrap_or(0);
    check_fl(fl)?;
    let prp = check_prp(&req.prp.unwrap_or_default())?;
    // Hashes before the transaction: a write lock is never held across argon2id.
    let password_hash = state.passwords.hash(&req.password).await?;
    let pin_hash = match &req.pin {
        Some(pin) => Some(state.passwords.hash(pin).await?),
        None => None,
    };
    let id = random_id(12);
    let now = now_ms();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    let taken: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE name = $1").bind(&req.name).fetch_one(&mut *tx).await?;
    if taken > 0 {
        return Err(ApiError::UserExists);
    }
    sqlx::query(
        "INSERT INTO users (id, account_id, parent_id, name, password_hash, role, created_at, fl, prp, pin_hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&id)
    .bind(&caller.token.account_id)
    .bind(&caller.claims.sub)
    .bind(&req.name)
    .bind(&password_hash)
    .bind(&role)
    .bind(now)
    .bind(fl)
    .bind(&prp)
    .bind(&pin_hash)
    .execute(&mut *tx)
    .await
    .map_err(|e| if is_unique_violation(&e) { ApiError::UserExists } else { e.into() })?;
    let detail = json!({ "name": req.name, "role": role, "fl": fl, "pin": pin_hash.is_some() });
    audit::record(&mut tx, &Actor::of(&caller), &Event::new(&caller.token.account_id, "user.create", Some(format!("user:{id}")), detail))
        .await?;
    tx.commit().await?;
    tracing::info!(user = %id, name = %req.name, role = %role, creator = %caller.claims.sub, "created a user");
    let row = reach(&state, &caller, &id).await?;
    Ok((StatusCode::CREATED, Json(row.info()?)))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    // PostgreSQL 23505; SQLite 2067 (SQLITE_CONSTRAINT_UNIQUE) / 1555 (primary key).
    matches!(e, sqlx::Error::Database(d) if matches!(d.code().as_deref(), Some("23505" | "2067" | "1555")))
}

#[utoipa::path(patch, path = "/users/{id}", operation_id = "updateUser", tag = "identity", security(("bearer" = [])),
    summary = "Change a user",
    description = "Your own password, PIN (null removes it) and properties; an admin also changes the role and flags of users under it. A password change revokes nothing; deleting the user does.",
    params(("id" = String, Path, pattern = "^[0-9a-f]{24}$", description = "The user's id (24 hexadecimal digits).")),
    request_body = UpdateUserRequest,
    responses(
        (status = 200, description = "The user as it is now.", body = UserInfo),
        Guarded, BodyErrors,
        (status = 400, description = "bad_user (the message names the field), invalid_request, or a body error.", body = ErrorBody),
        (status = 403, description = "admin_required, insufficient_scope or insufficient_flags.", body = ErrorBody),
        (status = 404, description = "user_not_found: not your user nor one under it.", body = ErrorBody),
    ))]
async fn update(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    id: Result<Path<String>, PathRejection>,
    ApiJson(req): ApiJson<UpdateUserRequest>,
) -> Result<Json<UserInfo>, ApiError> {
    let id = user_id(id)?;
    let row = reach(&state, &caller, &id).await?;
    let own = row.id == caller.claims.sub;
    if req.role.is_some() || req.fl.is_some() {
        if own {
            return Err(ApiError::UsersNeedAdmin("change a user's role or flags, and never their own"));
        }
        require_admin(&state, &caller, "change a user's role or flags").await?;
    }
    if !own && (req.password.is_some() || req.pin.is_some() || req.prp.is_some()) {
        require_admin(&state, &caller, "change another user's credentials or properties").await?;
    }
    if let Some(r) = &req.role {
        check_role(r)?;
    }
    if let Some(fl) = req.fl {
        check_fl(fl)?;
    }
    if let Some(p) = &req.password {
        check_password(p)?;
    }
    if let Some(Some(pin)) = &req.pin {
        check_pin(pin)?;
    }
    let prp = req.prp.as_ref().map(check_prp).transpose()?;
    let password_hash = match &req.password {
        Some(p) => Some(state.passwords.hash(p).await?),
        None => None,
    };
    let pin_hash = match &req.pin {
        Some(Some(pin)) => Some(Some(state.passwords.hash(pin).await?)),
        Some(None) => Some(None),
        None => None,
    };
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    sqlx::query(
        "UPDATE users SET role = COALESCE($2, role), fl = COALESCE($3, fl), prp = COALESCE($4, prp), \
         password_hash = COALESCE($5, password_hash), pin_hash = CASE WHEN $6 = 1 THEN $7 ELSE pin_hash END \
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(&row.id)
    .bind(&req.role)
    .bind(req.fl)
    .bind(&prp)
    .bind(&password_hash)
    .bind(i64::from(pin_hash.is_some()))
    .bind(pin_hash.clone().flatten())
    .execute(&mut *tx)
    .await?;
    // What changed, never the new secrets: `password`/`pin` say only that they did.
    let pin = pin_hash.as_ref().map(|h| if h.is_some() { "changed" } else { "removed" });
    let fields = [
        ("role", req.role.as_ref().map(|r| json!(r))),
        ("fl", req.fl.map(|fl| json!(fl))),
        ("password", req.password.as_ref().map(|_| json!("changed"))),
        ("pin", pin.map(|p| json!(p))),
        ("prp", prp.as_deref().map(|p| serde_json::from_str(p).unwrap_or(serde_json::Value::Null))),
    ];
    let changed: serde_json::Map<String, serde_json::Value> = fields.into_iter().filter_map(|(k, v)| Some((k.to_owned(), v?))).collect();
    let event = Event::new(
        &caller.token.account_id,
        "user.update",
        Some(format!("user:{}", row.id)),
        json!({ "name": row.name, "changed": changed }),
    );
    audit::record(&mut tx, &Actor::of(&caller), &event).await?;
    tx.commit().await?;
    tracing::info!(user = %row.id, by = %caller.claims.sub, "changed a user");
    Ok(Json(reach(&state, &caller, &row.id).await?.info()?))
}

#[utoipa::path(delete, path = "/users/{id}", operation_id = "deleteUser", tag = "identity", security(("bearer" = [])),
    summary = "Delete a user under yours and every user under it",
    description = "Revokes all their tokens and ends their sessions at every proxy.",
    params(("id" = String, Path, pattern = "^[0-9a-f]{24}$", description = "The user's id (24 hexadecimal digits).")),
    responses(
        (status = 204, description = "Deleted."),
        Guarded,
        (status = 403, description = "admin_required (also for your own user), insufficient_scope or insufficient_flags.", body = ErrorBody),
        (status = 404, description = "user_not_found: not your user nor one under it.", body = ErrorBody),
    ))]
async fn remove(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    id: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let id = user_id(id)?;
    require_admin(&state, &caller, "delete users").await?;
    if id == caller.claims.sub {
        return Err(ApiError::UsersNeedAdmin("delete users under them, not their own user"));
    }
    let all = reachable(&state, &caller).await?;
    if !all.iter().any(|r| r.id == id) {
        return Err(ApiError::UserNotFound);
    }
    // The user and everyone under it.
    let mut doomed = vec![id.clone()];
    let mut i = 0;
    while i < doomed.len() {
        let parent = doomed[i].clone();
        doomed.extend(all.iter().filter(|r| r.parent_id.as_deref() == Some(parent.as_str())).map(|r| r.id.clone()));
        i += 1;
    }
    // Marked deleted first: from then on nobody logs in as them, and a token issued from
    // one of theirs meanwhile is in the tree the revocation below walks (or its parent is
    // revoked by then, and it is refused).
    let now = now_ms();
    let mut tx = db::begin_write(&state.pool, state.config.backend).await?;
    for user in &doomed {
        sqlx::query("UPDATE users SET deleted_at = $2, name = $3, pin_hash = NULL WHERE id = $1 AND deleted_at IS NULL")
            .bind(user)
            .bind(now)
            .bind(format!("deleted:{user}"))
            .execute(&mut *tx)
            .await?;
    }
    // The revocations below are part of the deletion: this entry covers them.
    let detail = json!({ "users": doomed, "revokesTheirTokens": true });
    audit::record(&mut tx, &Actor::of(&caller), &Event::new(&caller.token.account_id, "user.delete", Some(format!("user:{id}")), detail))
        .await?;
    tx.commit().await?;
    let mut revoked = 0;
    for user in &doomed {
        revoked += revoke_trees(&state, Roots::User(user), None).await?.count;
    }
    // Sessions acting as them (`operateAs`) from a token of a user above them.
    crate::sessions::end_for_users(&state, &doomed).await?;
    tracing::info!(user = %id, users = doomed.len(), revoked, by = %caller.claims.sub, "deleted users and revoked their tokens");
    Ok(StatusCode::NO_CONTENT)
}
