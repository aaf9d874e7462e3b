//! `POST /explain`: would the gate let this token make this request, and why (issue 3).
//!
//! The answer is computed exactly as the filter decides: token state first (revoked,
//! expired, not yet active), then `rules::path::split`, then `rules::route::authorize`
//! against the operator's route table (the catalogue, with its flags and items), with
//! the token's current rights (amendments applied: they are the stored row).

use axum::extract::State;
use axum::Json;
use sqlx::FromRow;
use tokengate_rules::route::{self, Refusal, Rights};
use tokengate_rules::scope::valid_method;
use tokengate_rules::token::{TokenError, DEFAULT_LEEWAY_SECS};
use tokengate_rules::{Denial, ScopeSet};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::{self, now_ms};
use crate::http::error::ApiError;
use crate::http::json::ApiJson;
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded};
use crate::http::wire::{ExplainRequest, ExplainedItem, ExplainedToken, Explanation};
use crate::tokens::guard::{may_manage, Authorized};
use crate::tokens::{is_token_id, parse_items, parse_scopes};
use crate::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(explain))
}

/// The longest request line accepted (the filter refuses longer paths anyway).
const MAX_REQUEST_LINE: usize = 8 * 1024;

#[derive(FromRow)]
struct Row {
    id: String,
    account_id: String,
    scopes: Option<String>,
    fl: Option<i64>,
    items: Option<String>,
    not_before: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
}

#[utoipa::path(post, path = "/explain", operation_id = "explain", tag = "tokens", security(("bearer" = [])),
    summary = "Why was this refused? Whether the gate would allow a request for a token, and why",
    description = "Decides as the filter does, with the operator's route table and the token's current rights (amendments applied): first the token's state (token_revoked, token_expired, token_not_yet_valid), then the path safety checks (path_* codes), then scopes, flags and items. A refusal is a 200 with allowed=false. Without `token` the caller's own token is explained; another token of the account needs a token that may manage tokens.",
    request_body = ExplainRequest,
    responses(
        (status = 200, description = "The decision.", body = Explanation),
        Guarded, BodyErrors,
        (status = 400, description = "bad_request_line (not \"METHOD /path\"), bad_token_id, invalid_request, or a body error.", body = ErrorBody),
        (status = 403, description = "insufficient_scope, or insufficient_flags (explaining another token needs a token that may manage tokens).", body = ErrorBody),
        (status = 404, description = "token_not_found: no such token in the caller's account.", body = ErrorBody),
    ))]
async fn explain(
    State(state): State<AppState>,
    Authorized(caller): Authorized,
    ApiJson(req): ApiJson<ExplainRequest>,
) -> Result<Json<Explanation>, ApiError> {
    let (method, target) = request_line(&req.request)?;
    let id = match req.token {
        None => caller.claims.jti.clone(),
        Some(id) if !is_token_id(&id) => return Err(ApiError::BadTokenId),
        Some(id) => id,
    };
    // Explaining another token reads its rights: that is token management.
    if id != caller.claims.jti && !may_manage(&caller.rights) {
        return Err(Denial::Refused(Refusal::MissingFlags).into());
    }
    let row: Option<Row> =
        sqlx::query_as("SELECT id, account_id, scopes, fl, items, not_before, expires_at, revoked_at FROM tokens WHERE id = $1")
            .bind(&id)
            .fetch_optional(&state.pool)
            .await?;
    let Some(row) = row.filter(|r| r.account_id == caller.token.account_id) else { return Err(ApiError::TokenNotFound) };
    let scope_list = row.scopes.as_deref().map(|s| parse_scopes(&row.id, s)).transpose()?;
    // Sorted and without repeats, as the gate holds them.
    let items = row.items.as_deref().map(|s| parse_items(&row.id, s)).transpose()?.map(|mut i| {
        i.sort_unstable();
        i.dedup();
        i
    });
    let token = ExplainedToken { id: row.id.clone(), scopes: scope_list.clone(), fl: row.fl, items: items.clone() };
    let refused = |code: &str| Explanation::refused(code, token.clone());

    let now = db::to_u64(now_ms()) / 1000;
    let (nbf, exp) = (db::to_u64(row.not_before) / 1000, db::to_u64(row.expires_at) / 1000);
    if row.revoked_at.is_some() {
        return Ok(Json(refused(TokenError::Revoked.code())));
    }
    if exp.saturating_add(DEFAULT_LEEWAY_SECS) <= now {
        return Ok(Json(refused(TokenError::Expired.code())));
    }
    if nbf > now.saturating_add(DEFAULT_LEEWAY_SECS) {
        return Ok(Json(refused(TokenError::NotYetValid.code())));
    }
    let segments = match tokengate_rules::path::split(target) {
        Ok((_, segments)) => segments,
        Err(e) => return Ok(Json(refused(e.code()))),
    };
    let scopes = match &scope_list {
        None => None,
        Some(list) => Some(ScopeSet::parse(list, &state.prefix).map_err(|_| {
            tracing::error!(token = %row.id, "stored scopes do not parse");
            ApiError::Internal
        })?),
    };
    let rights = Rights::new(scopes, row.fl, items.as_deref());
    let d = route::authorize(&rights, &state.routes, &state.prefix, method, &segments);
    Ok(Json(Explanation {
        allowed: d.result.is_ok(),
        code: d.result.err().map(|r| r.code().to_owned()),
        scope: d.scope.map(ToString::to_string),
        route: d.route.map(|r| r.pattern.to_string()),
        required_flags: d.route.map(|r| r.flags),
        missing_flags: d.route.map(|_| d.missing_flags),
        item: d.item.map(|(param, value)| ExplainedItem { param: param.to_owned(), value }),
        token,
    }))
}

/// `METHOD SP request-target`: an upper-case method, one space, a target without spaces.
fn request_line(line: &str) -> Result<(&str, &str), ApiError> {
    let bad =
        || ApiError::BadRequestLine("request must be \"METHOD /path\": an upper-case method, one space, then the request target".into());
    if line.len() > MAX_REQUEST_LINE {
        return Err(bad());
    }
    let (method, target) = line.split_once(' ').ok_or_else(bad)?;
    if !valid_method(method) || target.is_empty() || target.contains(' ') {
        return Err(bad());
    }
    Ok((method, target))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn request_lines() {
        assert_eq!(request_line("GET /objects/7").unwrap(), ("GET", "/objects/7"));
        assert_eq!(request_line("GET http://x/y").unwrap(), ("GET", "http://x/y"));
        for bad in ["", "GET", "GET ", "get /x", "GET  /x", "GET /x y", " /x", "GET\t/x"] {
            assert_eq!(request_line(bad).unwrap_err().code(), "bad_request_line", "{bad:?}");
        }
    }
}
