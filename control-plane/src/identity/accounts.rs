//! `/account`: the caller's account (contract) and its plan. `GET` for any token of the
//! account; `PATCH {"plan": "basic"|"pro"}` only for the account's root admin (the admin
//! at the top of its user tree) with a token that may manage. Pro-only: PIN and
//! unsecured logins (`login.rs`).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::{self, Actor, Event};
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded};
use crate::tokens::guard::{is_admin, may_manage, Authorized, Caller};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(read, update))
}

#[derive(serde::Serialize, serde::Deserialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    pub id: String,
    pub name: String,
    #[schema(value_type = Plan)]
    pub plan: String,
    pub created_at: i64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccountRequest {
    #[schema(value_type = Plan)]
    pub plan: String,
}

/// An account's plan, for the OpenAPI document (the handler reads a string, so another
/// value is 400 `bad_plan`): PIN and unsecured logins need `pro`.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Basic,
    Pro,
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

#[utoipa::path(get, path = "/account", operation_id = "getAccount", tag = "identity", security(("bearer" = [])),
    summary = "Your account and its plan",
    responses((status = 200, description = "The account.", body = AccountInfo), Guarded))]
async fn read(State(state): State<AppState>, Authorized(caller): Authorized) -> Result<Json<AccountInfo>, ApiError> {
    Ok(Json(load(&state, &caller).await?))
}

#[utoipa::path(patch, path = "/account", operation_id = "updateAccount", tag = "identity", security(("bearer" = [])),
    summary = "Change the plan",
    description = "Only the account's first admin, with a token that may manage. PIN and unsecured logins need the `pro` plan.",
    request_body = UpdateAccountRequest,
    responses(
        (status = 200, description = "The account as it is now.", body = AccountInfo),
        Guarded, BodyErrors,
        (status = 400, description = "bad_plan (basic or pro), invalid_request, or a body error.", body = ErrorBody),
        (status = 403, description = "admin_required (not the account's first admin), insufficient_scope or insufficient_flags.", body = ErrorBody),
    ))]
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
    let account = caller.token.account_id.as_str();
    let mut tx = crate::db::begin_write(&state.pool, state.config.backend).await?;
    sqlx::query("UPDATE accounts SET plan = $2 WHERE id = $1").bind(account).bind(&req.plan).execute(&mut *tx).await?;
    let event = Event::new(account, "account.update", Some(format!("account:{account}")), serde_json::json!({ "plan": req.plan }));
    audit::record(&mut tx, &Actor::of(&caller), &event).await?;
    tx.commit().await?;
    tracing::info!(account = %caller.token.account_id, plan = %req.plan, "changed the account's plan");
    Ok(Json(load(&state, &caller).await?))
}
