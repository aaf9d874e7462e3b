//! `/account`: the caller's account (contract) and its plan. `GET` for any token of the
//! account; `PATCH {"plan": "basic"|"pro"}` only for the account's root admin (the admin
//! at the top of its user tree) with a token that may manage. Pro-only: PIN and
//! unsecured logins (`login.rs`).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::tokens::guard::{is_admin, may_manage, Authorized, Caller};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/account", get(read).patch(update))
}

#[derive(serde::Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    pub id: String,
    pub name: String,
    pub plan: String,
    pub created_at: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountRequest {
    pub plan: String,
}

async fn load(state: &AppState, caller: &Caller) -> Result<AccountInfo, ApiError> {
    let row: Option<AccountInfo> = sqlx::query_as("SELECT id, name, plan, created_at FROM accounts WHERE id = $1")
        .bind(&caller.token.account_id)
        .fetch_optional(&state.pool)
        .await?;
    row.ok_or_else(|| {
        tracing::error!(account = %caller.token.account_id, "a live token's account has no row");
        ApiError::Internal
    })
}

async fn read(State(state): State<AppState>, Authorized(caller): Authorized) -> Result<Json<AccountInfo>, ApiError> {
    Ok(Json(load(&state, &caller).await?))
}

async fn update(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    ApiJson(req): ApiJson<UpdateAccountRequest>,
) -> Result<Json<AccountInfo>, ApiError> {
    if !matches!(req.plan.as_str(), "basic" | "pro") {
        return Err(ApiError::BadPlan);
    }
    let root: Option<Option<String>> =
        sqlx::query_scalar("SELECT parent_id FROM users WHERE id = $1").bind(&caller.token.user_id).fetch_optional(&state.pool).await?;
    let is_root = matches!(root, Some(None));
    if !is_root || !is_admin(&state, &caller).await? || !may_manage(&caller.rights) {
        return Err(ApiError::UsersNeedAdmin("change the account's plan (the account's first admin, with a token that may manage)"));
    }
    sqlx::query("UPDATE accounts SET plan = $2 WHERE id = $1").bind(&caller.token.account_id).bind(&req.plan).execute(&state.pool).await?;
    tracing::info!(account = %caller.token.account_id, plan = %req.plan, "changed the account's plan");
    Ok(Json(load(&state, &caller).await?))
}
