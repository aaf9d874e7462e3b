//! The scope catalogue: the operator's API plus the control plane's own scopable routes.
//! A token may only be scoped to patterns within the catalogue.

use axum::extract::State;
use axum::Json;
use tokengate_rules::route::{RouteSpec, RouteTable, FLAG_UNLIMITED};
use tokengate_rules::scope::Prefix;
use tokengate_rules::{ScopePattern, ScopeSet};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::error::ApiError;
use crate::http::openapi::Guarded;
use crate::tokens::guard::Caller;
use crate::AppState;

/// The control plane's own routes a token can be scoped to (prefix-relative), with the
/// access flags each needs: managing tokens takes an unlimited token (seed 001: `fl`
/// -1 is "unlimited, including token management"); a token without `fl` has no flag
/// limits.
/// `POST /explain` needs no flags for the caller's own token; explaining another token
/// is token management, checked by the handler.
pub const OWN_ROUTES: [(&str, i64); 28] = [
    ("GET /tokens", FLAG_UNLIMITED),
    ("POST /tokens", FLAG_UNLIMITED),
    ("DELETE /tokens/:id", FLAG_UNLIMITED),
    ("GET /scopes", 0),
    ("POST /explain", 0),
    ("POST /tokens/update", FLAG_UNLIMITED),
    ("GET /keys", FLAG_UNLIMITED),
    ("POST /keys/rotate", FLAG_UNLIMITED),
    ("GET /proxies", FLAG_UNLIMITED),
    ("GET /users", 0),
    ("POST /users", FLAG_UNLIMITED),
    ("GET /users/:id", 0),
    ("PATCH /users/:id", 0),
    ("DELETE /users/:id", FLAG_UNLIMITED),
    ("GET /account", 0),
    ("PATCH /account", FLAG_UNLIMITED),
    ("GET /sessions", 0),
    ("DELETE /sessions/:id", 0),
    // Seed 000: the account's Wi-Fi networks and vouchers are the operator's to manage.
    ("GET /networks", FLAG_UNLIMITED),
    ("POST /networks", FLAG_UNLIMITED),
    ("PATCH /networks/:id", FLAG_UNLIMITED),
    ("DELETE /networks/:id", FLAG_UNLIMITED),
    ("GET /vouchers", FLAG_UNLIMITED),
    ("POST /vouchers", FLAG_UNLIMITED),
    ("GET /vouchers/pdf", FLAG_UNLIMITED),
    ("POST /vouchers/:id/revoke", FLAG_UNLIMITED),
    ("DELETE /vouchers/:id", FLAG_UNLIMITED),
    // The audit log: admins only (checked by the handler), with a token that may manage.
    ("GET /audit", FLAG_UNLIMITED),
];

/// The route table of [`OWN_ROUTES`], for `rules::route::authorize`.
pub fn own_routes(prefix: &Prefix) -> Result<RouteTable, String> {
    let specs: Vec<RouteSpec> = OWN_ROUTES
        .iter()
        .map(|(p, flags)| RouteSpec { pattern: (*p).to_owned(), flags: *flags, items: Vec::new(), http_token: false, voucher: false })
        .collect();
    RouteTable::compile(&specs, prefix).map_err(|e| format!("own routes: {e}"))
}

pub struct Catalogue {
    patterns: Vec<ScopePattern>,
}

impl Catalogue {
    /// `operator` are the configured patterns (already validated by the config).
    pub fn new(operator: &[String], prefix: &Prefix) -> Result<Catalogue, String> {
        let mut patterns: Vec<ScopePattern> = Vec::new();
        for raw in operator.iter().map(String::as_str).chain(OWN_ROUTES.iter().map(|(p, _)| *p)) {
            let p = ScopePattern::parse(raw, prefix).map_err(|e| format!("scope catalogue: {e}"))?;
            if !patterns.contains(&p) {
                patterns.push(p);
            }
        }
        Ok(Catalogue { patterns })
    }

    /// The canonical patterns, as `GET /scopes` lists them.
    pub fn listing(&self) -> Vec<String> {
        self.patterns.iter().map(ToString::to_string).collect()
    }

    /// Is `p` one of the catalogue's methods, or a narrowing of one
    /// (`GET /objects/42` within `GET /objects/:id`)?
    pub fn admits(&self, p: &ScopePattern) -> bool {
        self.patterns.iter().any(|c| p.is_within(c))
    }

    /// Parses the scopes of a token request: 400 `bad_scope` for a malformed pattern,
    /// 400 `unknown_scope` for one outside the catalogue.
    pub fn parse_request(&self, scopes: &[String], prefix: &Prefix) -> Result<ScopeSet, ApiError> {
        let set = ScopeSet::parse(scopes, prefix).map_err(|e| ApiError::BadScope(e.to_string()))?;
        for raw in scopes {
            let p = ScopePattern::parse(raw, prefix).map_err(|e| ApiError::BadScope(e.to_string()))?;
            if !self.admits(&p) {
                return Err(ApiError::UnknownScope(raw.clone()));
            }
        }
        Ok(set)
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Any valid API token may read the catalogue: it is what a client needs to ask for a
/// narrower token.
#[utoipa::path(get, path = "/scopes", operation_id = "listScopes", tag = "tokens", security(("bearer" = [])),
    summary = "List the methods a token can be scoped to",
    description = "The operator's route catalogue plus the control plane's own scopable routes, as canonical patterns (`GET /objects/:id`). Any valid API token may read it.",
    responses((status = 200, description = "Scope patterns.", body = Vec<String>), Guarded))]
async fn list(State(state): State<AppState>, _caller: Caller) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(state.catalogue.listing()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn catalogue_checks() {
        let prefix = Prefix::default();
        let c = Catalogue::new(&["GET /objects/:id".to_owned()], &prefix).unwrap();
        assert_eq!(c.listing()[..5], ["GET /objects/:id", "GET /tokens", "POST /tokens", "DELETE /tokens/:id", "GET /scopes"]);
        assert_eq!(c.listing().len(), 1 + OWN_ROUTES.len());
        let ok = c.parse_request(&["GET /api/v1/objects/:x".into(), "GET /objects/7".into()], &prefix).unwrap();
        assert_eq!(ok.to_strings(), vec!["GET /objects/:x", "GET /objects/7"]);
        let e = c.parse_request(&["GET /objects//x".into()], &prefix).unwrap_err();
        assert_eq!(e.code(), "bad_scope");
        assert!(e.message().contains("position 13"), "{}", e.message());
        let e = c.parse_request(&["PUT /objects/:id".into()], &prefix).unwrap_err();
        assert_eq!(e.code(), "unknown_scope");
        assert!(e.message().contains("PUT /objects/:id"));
    }
}
