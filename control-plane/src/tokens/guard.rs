//! The control plane's own API is guarded by the same rule set as the filter: exactly
//! one Bearer credential, `rules::token::verify`, revocation from the database, then
//! `rules::route::authorize` of the request's method and path against the token's
//! rights and the control plane's own route table. Refusals are the filter's `Denial`
//! answers.

use axum::extract::{ConnectInfo, FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Uri};
use sqlx::FromRow;
use tokengate_rules::route::{self, Rights};
use tokengate_rules::sync::Amendment;
use tokengate_rules::token::{self, TokenError};
use tokengate_rules::{Claims, Denial, ScopeSet};

use crate::db;
use crate::http::error::ApiError;
use crate::AppState;

/// The token row of an authenticated caller.
#[derive(FromRow)]
pub struct TokenRow {
    /// The token's id (`jti`).
    pub id: String,
    pub account_id: String,
    pub user_id: String,
    pub expires_at: i64,
    /// The expiry signed into the JWT; `expires_at` is the effective (amended) end.
    pub signed_expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub app: Option<String>,
    pub p: Option<String>,
    pub not_before: i64,
    pub fl: Option<i64>,
    /// JSON array of item ids.
    pub items: Option<String>,
    /// Set once the token was amended (seed 001 update): the row's values then replace
    /// the signed ones.
    pub amended_at: Option<i64>,
    /// `Some("user")`: the token acts in the user role whatever its user's role is.
    pub role: Option<String>,
}

impl TokenRow {
    /// The columns a [`TokenRow`] is read from.
    pub const COLUMNS: &'static str =
        "id, account_id, user_id, expires_at, signed_expires_at, revoked_at, app, p, not_before, fl, items, amended_at, role";

    /// The token's current amendable state, as proxies get it in the sync stream.
    pub fn amendment(&self) -> Result<Amendment, ApiError> {
        let jti = self.id.as_str();
        Ok(Amendment {
            jti: jti.to_owned(),
            nbf: db::to_u64(self.not_before) / 1000,
            exp: db::to_u64(self.expires_at) / 1000,
            signed_exp: db::to_u64(self.signed_expires_at.unwrap_or(self.expires_at)) / 1000,
            app: self.app.clone(),
            fl: self.fl,
            p: self.p.clone(),
            items: self.items.as_deref().map(|text| crate::tokens::parse_items(jti, text)).transpose()?,
        })
    }
}

/// A caller holding a valid, unrevoked API token (no scope check).
pub struct Caller {
    pub claims: Claims,
    pub token: TokenRow,
    /// Scopes (`None`: all the user's powers), flags and items of the token.
    pub rights: Rights,
    /// The client's address (the forwarded one behind a trusted proxy), for the audit
    /// log; `None` when the caller was not read from a request.
    pub address: Option<std::net::IpAddr>,
}

/// A [`Caller`] whose token's scopes allow this very request.
pub struct Authorized(pub Caller);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let mut caller = caller_of(state, credential(parts)?).await?;
        caller.address = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|ConnectInfo(peer)| crate::http::client::source(&parts.headers, peer.ip(), &state.config.trusted_proxies));
        Ok(caller)
    }
}

/// The caller holding `token`: a valid API token whose row is live, with its amendments
/// applied.
pub async fn caller_of(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    let now = db::to_u64(db::now_ms()) / 1000;
    let (_, mut claims) =
        token::verify(token, state.keys.current().trusted(), &state.policy, now).map_err(|e| ApiError::Denied(Denial::InvalidToken(e)))?;
    let sql = format!("SELECT {} FROM tokens WHERE id = $1 AND kind = 'api'", TokenRow::COLUMNS);
    let row: Option<TokenRow> = sqlx::query_as(&sql).bind(&claims.jti).fetch_optional(&state.pool).await?;
    // A genuine token with no row cannot have been issued by this database: treat it as
    // revoked rather than trust it.
    let token = match row {
        Some(row) if row.revoked_at.is_none() && row.user_id == claims.sub => row,
        _ => return Err(Denial::InvalidToken(TokenError::Revoked).into()),
    };
    // Amendments apply here as at the proxies: over the signed claims, then the times are
    // checked again (an amendment can move activation or bring the end forward).
    if token.amended_at.is_some() {
        token.amendment()?.apply(&mut claims);
        claims.check_time(now, state.policy.leeway_secs).map_err(|e| ApiError::Denied(Denial::InvalidToken(e)))?;
    }
    let scopes = match &claims.scp {
        None => None,
        Some(list) => Some(ScopeSet::parse(list, &state.prefix).map_err(|_| Denial::InvalidToken(TokenError::BadClaims))?),
    };
    let rights = Rights::new(scopes, claims.fl, claims.items.as_deref());
    Ok(Caller { claims, token, rights, address: None })
}

/// Does the caller act in the admin role: its user is an admin, and the token was not made
/// in the user role (a seed-002 login with `"role": "user"`, a role switch, or a token
/// issued from one)?
pub async fn is_admin(state: &AppState, caller: &Caller) -> Result<bool, ApiError> {
    if caller.token.role.is_some() {
        return Ok(false);
    }
    let role: Option<String> = sqlx::query_scalar("SELECT role FROM users WHERE id = $1 AND account_id = $2 AND deleted_at IS NULL")
        .bind(&caller.token.user_id)
        .bind(&caller.token.account_id)
        .fetch_optional(&state.pool)
        .await?;
    Ok(role.as_deref() == Some("admin"))
}

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        // The full path as the client sent it, even inside a nested router.
        let path = parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.path(), |u| u.0.path());
        let (_, segments) = tokengate_rules::path::split(path).map_err(Denial::BadPath)?;
        let decision = route::authorize(&caller.rights, &state.own_routes, &state.prefix, parts.method.as_str(), &segments);
        decision.result.map_err(Denial::Refused)?;
        Ok(Authorized(caller))
    }
}

/// May a token with these rights manage tokens (seed 001: `fl` -1 is "unlimited,
/// including token management"; a token without `fl` is limited by its scopes alone)?
pub fn may_manage(rights: &Rights) -> bool {
    matches!(rights.flags, None | Some(route::FLAG_UNLIMITED))
}

/// The one Bearer token of the request.
fn credential(parts: &Parts) -> Result<&str, Denial> {
    bearer_of(&parts.headers, &parts.uri)
}

/// The one Bearer token of a request with these headers and this URI: one
/// `Authorization` header and no `access_token` in the query.
pub fn bearer_of<'a>(headers: &'a HeaderMap, uri: &Uri) -> Result<&'a str, Denial> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let first = values.next();
    let in_query = uri.path_and_query().is_some_and(|pq| tokengate_rules::path::query_has_access_token(pq.as_str()));
    if values.next().is_some() || in_query {
        return Err(Denial::InvalidRequest("multiple_credentials"));
    }
    let Some(value) = first else { return Err(Denial::MissingToken) };
    let value = value.to_str().map_err(|_| Denial::InvalidRequest("malformed_authorization"))?;
    tokengate_rules::denial::bearer(value)?.ok_or(Denial::MissingToken)
}
