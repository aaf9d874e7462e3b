//! `POST /auth`: a token for a user name and password (seed 004).

use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit;
use crate::db::now_ms;
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BodyErrors, ErrorBody};
use crate::http::wire::{AuthRequest, IssuedToken};
use crate::identity::{throttle, users};
use crate::tokens::keys::random_id;
use crate::tokens::{self, NewToken, DEFAULT_LIFETIME_MS};
use crate::AppState;
use tokengate_rules::TokenKind;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(login))
}

#[utoipa::path(post, path = "/auth", operation_id = "auth", tag = "tokens",
    summary = "Issue a token for a user name and password (seed 004)",
    description = "The password goes through the credential throttle (per user name and per source). An unknown user and a wrong password get the same answer and cost the same time.",
    request_body = AuthRequest,
    responses(
        (status = 200, description = "The token. Its value is never shown again.", body = IssuedToken),
        BodyErrors,
        (status = 400, description = "bad_expires_in, bad_scope, unknown_scope, bad_name, or a body error (malformed_json, unknown_field, wrong_type, missing_field).", body = ErrorBody),
        (status = 401, description = "wrong_credentials: an unknown user and a wrong password get the same answer.", body = ErrorBody),
        (status = 429, description = "too_many_attempts: the user name or the source is locked after repeated wrong passwords; Retry-After says when to retry.", body = ErrorBody),
        (status = 503, description = "database_unavailable", body = ErrorBody),
    ))]
async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<AuthRequest>,
) -> Result<Json<IssuedToken>, ApiError> {
    if req.username.is_empty() || req.password.is_empty() {
        return Err(ApiError::EmptyCredentials);
    }
    // The request is checked before the password, so a malformed one costs no hash
    // and no failed attempt.
    tokens::check_name(req.name.as_deref())?;
    let lifetime = tokens::lifetime_secs(req.expires_in.as_deref())?;
    let scopes = req.scopes.as_ref().map(|s| state.catalogue.parse_request(s, &state.prefix)).transpose()?;

    // The attempt is reserved before the hash runs: concurrent wrong attempts are
    // evaluated only up to the limit (throttle.rs has the policy).
    let source = crate::http::client::source(&headers, peer.ip(), &state.config.trusted_proxies);
    let reservation = throttle::reserve(&state, &throttle::Attempt::credential("password", &req.username, source)).await?;
    let user = users::find_by_name(&state.pool, &req.username).await?;
    // An unknown user is checked against a dummy hash: the same work, the same answer.
    let ok = state.passwords.verify(&req.password, user.as_ref().map(|u| u.password_hash.as_str())).await?;
    let user = match user {
        Some(user) if ok => user,
        user => {
            state.metrics.login_failures.inc();
            let locked =
                throttle::failed(&state, reservation, Some(audit::login("login.failed", user.as_ref(), "password", source))).await?;
            // The name is logged (it is not a secret); the password never is.
            tracing::info!(user = %req.username, %source, locked_secs = ?locked, "wrong credentials");
            return Err(match locked {
                // The attempt that starts a lock is refused as throttled too.
                Some(retry_after_secs) => ApiError::TooManyAttempts { retry_after_secs },
                None => ApiError::WrongCredentials,
            });
        }
    };
    throttle::succeeded(&state, reservation).await?;
    // Seed 003 `ld`: the last login.
    sqlx::query("UPDATE users SET last_login_at = $2 WHERE id = $1").bind(&user.id).bind(now_ms()).execute(&state.pool).await?;
    tracing::debug!(user = %user.name, role = %user.role, "logged in");

    let now = now_ms();
    let (actor, logged_in) = audit::login("login.ok", Some(&user), "password", source);
    let issued = tokens::issue(
        &state,
        NewToken {
            id: random_id(12),
            kind: TokenKind::Api,
            role: None,
            account_id: user.account_id,
            user_id: user.id,
            user_name: user.name,
            parent_id: None,
            name: req.name,
            scopes,
            fl: None,
            items: None,
            app: None,
            p: None,
            issued_at_ms: now,
            not_before_ms: now,
            dur: None,
            expires_at_ms: now.saturating_add(lifetime.map_or(DEFAULT_LIFETIME_MS, tokens::secs_to_ms)),
        },
        &actor,
        &[logged_in],
    )
    .await?;
    Ok(Json(issued))
}
