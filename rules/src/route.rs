//! The operator's route table and the full authorization decision.
//!
//! A route names an operation of the protected API (`DELETE /objects/:id/messages`), the
//! access-flag bits it needs (seed 001: 0x100 … 0x2000, or `-1` for "unlimited only") and
//! its item parameters (`:id`). A request passes only when all of these hold:
//! 1. the token's scopes allow the method and path (a token without scopes allows all);
//! 2. if a route matches and the token has `fl`: `fl == -1`, or `fl` holds every
//!    required bit (a route requiring `-1` admits only `fl == -1`);
//! 3. if a route matches and the token has `items`: every item parameter of the route
//!    is a 64-bit integer in `items` (a non-numeric value is refused, never coerced).
//!
//! Tokens without `fl` or `items` are limited by their scopes alone. A request that no
//! route matches needs no flags and names no items.
//!
//! Precedence: when several routes match, the most specific wins: compare segments left
//! to right; at the first position where they differ a literal beats a parameter. Two
//! routes of the same shape (same method, same literals, params in the same places) are
//! refused at load, so exactly one route is most specific.

use std::fmt;

use serde::Deserialize;

use crate::scope::{Prefix, ScopeError, ScopePattern, ScopeSet, Segment};
use crate::token::TokenKind;

/// The flag bits of seed 001.
pub const FLAG_ONLINE: i64 = 0x100;
pub const FLAG_VIEW: i64 = 0x200;
pub const FLAG_EDIT: i64 = 0x400;
pub const FLAG_EDIT_SENSITIVE: i64 = 0x800;
pub const FLAG_EDIT_CRITICAL: i64 = 0x1000;
pub const FLAG_INTERACT: i64 = 0x2000;
/// Every defined bit.
pub const FLAG_MASK: i64 = 0x3F00;
/// Unlimited access, including token management.
pub const FLAG_UNLIMITED: i64 = -1;

/// Is `fl` a valid flag value: `-1` (unlimited) or a set of the defined bits?
pub fn valid_flags(fl: i64) -> bool {
    fl == FLAG_UNLIMITED || (fl >= 0 && fl & !FLAG_MASK == 0)
}

/// One route as configured (filter plugin config `routes`, control plane catalogue).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub pattern: String,
    /// Required flag bits, or -1 for "only an unlimited token".
    #[serde(default)]
    pub flags: i64,
    /// Names of the pattern's parameters that are item ids.
    #[serde(default)]
    pub items: Vec<String>,
    /// The route takes the short-lived HTTP-server token of a login (`tg-http+jwt`, seed
    /// 002 `tokenForHttpServer`, for example download links) and no other kind; every
    /// other route refuses that kind.
    #[serde(default)]
    pub http_token: bool,
    /// Only voucher access tokens (seed 000: a guest's device on the Wi-Fi network) may
    /// use this route, and every other route refuses them.
    #[serde(default)]
    pub voucher: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub pattern: ScopePattern,
    pub flags: i64,
    /// Only HTTP-server tokens here ([`RouteSpec::http_token`]).
    pub http_token: bool,
    /// Only voucher access tokens here ([`RouteSpec::voucher`]).
    pub voucher: bool,
    /// Segment indices of the item parameters.
    item_segments: Vec<usize>,
    item_names: Vec<Box<str>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteError(pub String);

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RouteError {}

impl From<ScopeError> for RouteError {
    fn from(e: ScopeError) -> Self {
        RouteError(e.to_string())
    }
}

/// The compiled route table, most specific first within each shape length.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: Vec<Route>,
}

/// Ordering key: literals before params, position by position.
fn specificity(p: &ScopePattern) -> Vec<u8> {
    p.segments().iter().map(|s| if matches!(s, Segment::Literal(_)) { 0 } else { 1 }).collect()
}

impl RouteTable {
    pub fn compile(specs: &[RouteSpec], prefix: &Prefix) -> Result<RouteTable, RouteError> {
        if specs.len() > 10_000 {
            return Err(RouteError("a route table holds at most 10000 routes".into()));
        }
        let mut routes: Vec<Route> = Vec::with_capacity(specs.len());
        for spec in specs {
            let pattern = ScopePattern::parse(&spec.pattern, prefix)?;
            if !valid_flags(spec.flags) {
                return Err(RouteError(format!(
                    "route {:?}: flags {:#x} has bits outside 0x100..=0x2000 (use -1 for unlimited-only)",
                    spec.pattern, spec.flags
                )));
            }
            if spec.http_token && spec.voucher {
                return Err(RouteError(format!("route {:?}: a route is for http_token or for voucher tokens, not both", spec.pattern)));
            }
            let mut item_segments = Vec::new();
            for name in &spec.items {
                let idx = pattern.segments().iter().position(|s| matches!(s, Segment::Param(p) if **p == **name)).ok_or_else(|| {
                    RouteError(format!("route {:?}: item parameter {name:?} is not a :param of the pattern", spec.pattern))
                })?;
                if item_segments.contains(&idx) {
                    return Err(RouteError(format!("route {:?}: item parameter {name:?} listed twice", spec.pattern)));
                }
                item_segments.push(idx);
            }
            if let Some(other) = routes.iter().find(|r| r.pattern.shape() == pattern.shape()) {
                return Err(RouteError(format!(
                    "routes {:?} and {:?} have the same shape; which one applies would be ambiguous",
                    other.pattern.to_string(),
                    spec.pattern
                )));
            }
            routes.push(Route {
                pattern,
                flags: spec.flags,
                http_token: spec.http_token,
                voucher: spec.voucher,
                item_segments,
                item_names: spec.items.iter().map(|s| s.as_str().into()).collect(),
            });
        }
        routes.sort_by_key(|r| specificity(&r.pattern));
        Ok(RouteTable { routes })
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The most specific route matching the request.
    pub fn lookup(&self, method: &str, segments: &[&str]) -> Option<&Route> {
        // Sorted by specificity, so the first match is the most specific.
        self.routes.iter().find(|r| r.pattern.matches(method, segments))
    }
}

/// What a token may do, compiled once and cached with its verified claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rights {
    /// `None`: all the powers of the user.
    pub scopes: Option<ScopeSet>,
    /// `None`: no flag limits.
    pub flags: Option<i64>,
    /// Sorted; `None`: all items.
    pub items: Option<Vec<i64>>,
}

impl Rights {
    pub fn new(scopes: Option<ScopeSet>, flags: Option<i64>, items: Option<&[i64]>) -> Rights {
        let items = items.map(|i| {
            let mut v = i.to_vec();
            v.sort_unstable();
            v.dedup();
            v
        });
        Rights { scopes, flags, items }
    }
}

/// Why the rule set refused a request (all are 403 `insufficient_scope`, with this code).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The path is not under the API prefix and the token is scoped.
    OutsidePrefix,
    /// No scope allows the method and path.
    NoScope,
    /// The route needs flag bits the token lacks.
    MissingFlags,
    /// An item parameter is not one of the token's items.
    ItemNotAllowed,
    /// An item parameter is not a 64-bit integer.
    ItemNotNumeric,
    /// An HTTP-server or voucher token outside the routes marked for it, or another kind on one.
    WrongTokenKind,
    /// A voucher access token from another device than the one it was redeemed for.
    DeviceMismatch,
    /// A voucher access token on a proxy that does not serve its Wi-Fi network.
    WrongNetwork,
}

impl Refusal {
    pub fn code(self) -> &'static str {
        match self {
            Refusal::OutsidePrefix | Refusal::NoScope => "insufficient_scope",
            Refusal::MissingFlags => "insufficient_flags",
            Refusal::ItemNotAllowed => "item_not_allowed",
            Refusal::ItemNotNumeric => "item_not_numeric",
            Refusal::WrongTokenKind => "wrong_token_kind",
            Refusal::DeviceMismatch => "device_mismatch",
            Refusal::WrongNetwork => "wrong_network",
        }
    }
}

/// The full decision, with what decided it (for `explain` and the identity headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision<'a> {
    pub result: Result<(), Refusal>,
    /// The scope that allowed the request; `None` with all powers or when refused.
    pub scope: Option<&'a ScopePattern>,
    pub route: Option<&'a Route>,
    /// Flag bits the route needs that the token lacks.
    pub missing_flags: i64,
    /// The item parameter that was refused, and its value.
    pub item: Option<(&'a str, String)>,
}

/// Does the route of this request take tokens of this kind? An HTTP-server token only on
/// a route marked `http_token`, a voucher access token only on a route marked `voucher`,
/// every other kind only elsewhere (a request outside the prefix, or that no route
/// matches, takes neither of those two kinds). Checked before [`authorize`].
pub fn admits_kind(routes: &RouteTable, prefix: &Prefix, method: &str, segments: &[&str], kind: TokenKind) -> Result<(), Refusal> {
    let route = prefix.strip(segments).and_then(|rest| routes.lookup(method, rest));
    let (http, voucher) = route.map_or((false, false), |r| (r.http_token, r.voucher));
    let admitted = match kind {
        TokenKind::HttpServer => http,
        TokenKind::VoucherAccess => voucher,
        TokenKind::Api | TokenKind::Session => !http && !voucher,
    };
    if admitted {
        Ok(())
    } else {
        Err(Refusal::WrongTokenKind)
    }
}

/// Decides a request: `segments` is the whole path (prefix included), as split by
/// [`crate::path::split`].
pub fn authorize<'a>(rights: &'a Rights, routes: &'a RouteTable, prefix: &Prefix, method: &str, segments: &[&str]) -> Decision<'a> {
    let mut d = Decision { result: Ok(()), scope: None, route: None, missing_flags: 0, item: None };
    let rest = prefix.strip(segments);
    if let Some(scopes) = &rights.scopes {
        let Some(rest) = rest else {
            d.result = Err(Refusal::OutsidePrefix);
            return d;
        };
        match scopes.find(method, rest) {
            Some(p) => d.scope = Some(p),
            None => {
                d.result = Err(Refusal::NoScope);
                return d;
            }
        }
    }
    let Some(rest) = rest else { return d };
    let Some(route) = routes.lookup(method, rest) else { return d };
    d.route = Some(route);
    if let Some(fl) = rights.flags {
        if fl != FLAG_UNLIMITED {
            let missing = if route.flags == FLAG_UNLIMITED { FLAG_UNLIMITED } else { route.flags & !fl };
            if missing != 0 {
                d.missing_flags = missing;
                d.result = Err(Refusal::MissingFlags);
                return d;
            }
        }
    }
    if let Some(items) = &rights.items {
        for (idx, name) in route.item_segments.iter().zip(route.item_names.iter()) {
            let raw = rest[*idx];
            let allowed = match parse_item(raw) {
                None => Err(Refusal::ItemNotNumeric),
                Some(id) if items.binary_search(&id).is_ok() => Ok(()),
                Some(_) => Err(Refusal::ItemNotAllowed),
            };
            if let Err(r) = allowed {
                d.item = Some((name, raw.to_owned()));
                d.result = Err(r);
                return d;
            }
        }
    }
    d
}

/// An item id is a decimal 64-bit integer: optional `-`, digits, no leading zeros, no
/// `+`, no spaces, no percent-encoding. Anything else is not an id.
pub fn parse_item(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty()
        || digits.len() > 19
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    if s == "-0" {
        return None;
    }
    s.parse().ok()
}

/// Is a token with `child` rights and lifetime `child_exp` no more powerful than one with
/// `parent` rights and `parent_exp`? Scopes within, flags a subset, items a subset,
/// and no later expiry.
pub fn is_attenuated(child: &Rights, child_exp: u64, parent: &Rights, parent_exp: u64) -> bool {
    if child_exp > parent_exp {
        return false;
    }
    let scopes_ok = match (&child.scopes, &parent.scopes) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(c), Some(p)) => c.is_within(p),
    };
    let flags_ok = match (child.flags, parent.flags) {
        (_, None) => true,
        (_, Some(FLAG_UNLIMITED)) => true,
        (None, Some(_)) | (Some(FLAG_UNLIMITED), Some(_)) => false,
        (Some(c), Some(p)) => c & !p == 0,
    };
    let items_ok = match (&child.items, &parent.items) {
        (_, None) => true,
        (None, Some(_)) => false,
        (Some(c), Some(p)) => c.iter().all(|i| p.binary_search(i).is_ok()),
    };
    scopes_ok && flags_ok && items_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn table(specs: &[(&str, i64, &[&str])]) -> RouteTable {
        let specs: Vec<RouteSpec> = specs
            .iter()
            .map(|(p, f, i)| RouteSpec {
                pattern: (*p).into(),
                flags: *f,
                items: i.iter().map(|s| (*s).into()).collect(),
                http_token: false,
                voucher: false,
            })
            .collect();
        RouteTable::compile(&specs, &Prefix::default()).unwrap()
    }

    fn segs(path: &str) -> Vec<&str> {
        crate::path::split(path).unwrap().1.to_vec()
    }

    fn rights(scopes: Option<&[&str]>, fl: Option<i64>, items: Option<&[i64]>) -> Rights {
        Rights::new(scopes.map(|s| ScopeSet::parse(s, &Prefix::default()).unwrap()), fl, items)
    }

    #[test]
    fn most_specific_route_wins() {
        let t = table(&[
            ("GET /objects/:id/:sub", FLAG_VIEW, &[]),
            ("GET /objects/:id/messages", FLAG_EDIT_CRITICAL, &[]),
            ("GET /objects/search/:q", FLAG_ONLINE, &[]),
        ]);
        let s = segs("/objects/1/messages");
        assert_eq!(t.lookup("GET", &s).unwrap().flags, FLAG_EDIT_CRITICAL);
        let s = segs("/objects/1/packets");
        assert_eq!(t.lookup("GET", &s).unwrap().flags, FLAG_VIEW);
        // Left-most literal decides: /objects/search/messages matches both
        // `:id/messages` and `search/:q`; `search` (position 1) is the earlier literal.
        let s = segs("/objects/search/messages");
        assert_eq!(t.lookup("GET", &s).unwrap().flags, FLAG_ONLINE);
    }

    #[test]
    fn ambiguous_or_bad_tables_are_refused() {
        let bad = |specs: &[RouteSpec]| RouteTable::compile(specs, &Prefix::default()).unwrap_err();
        let r = |p: &str, f: i64, i: &[&str]| RouteSpec {
            pattern: p.into(),
            flags: f,
            items: i.iter().map(|s| (*s).into()).collect(),
            http_token: false,
            voucher: false,
        };
        assert!(bad(&[r("GET /objects/:id", 0, &[]), r("GET /api/v1/objects/:x", 0, &[])]).0.contains("same shape"));
        assert!(bad(&[r("GET /objects/:id", 0, &["oid"])]).0.contains("oid"));
        assert!(bad(&[r("GET /objects/:id", 0x1, &[])]).0.contains("outside"));
        assert!(bad(&[r("GET /objects/", 0, &[])]).0.contains("position 13"));
    }

    #[test]
    fn security_http_server_tokens_only_on_marked_routes_and_nothing_else_there() {
        let specs = [
            RouteSpec { pattern: "GET /files/:name".into(), flags: 0, items: vec![], http_token: true, voucher: false },
            RouteSpec { pattern: "GET /objects/:id".into(), flags: 0, items: vec![], http_token: false, voucher: false },
        ];
        let t = RouteTable::compile(&specs, &Prefix::default()).unwrap();
        let p = Prefix::default();
        let admits = |path: &str, kind| admits_kind(&t, &p, "GET", &segs(path), kind);
        assert_eq!(admits("/api/v1/files/report.pdf", TokenKind::HttpServer), Ok(()));
        assert_eq!(admits("/api/v1/files/report.pdf", TokenKind::Api), Err(Refusal::WrongTokenKind));
        assert_eq!(admits("/api/v1/files/report.pdf", TokenKind::Session), Err(Refusal::WrongTokenKind));
        assert_eq!(admits("/api/v1/objects/1", TokenKind::HttpServer), Err(Refusal::WrongTokenKind));
        assert_eq!(admits("/api/v1/objects/1", TokenKind::Api), Ok(()));
        // Unrouted and outside the prefix: no HTTP-server token.
        assert_eq!(admits("/api/v1/elsewhere", TokenKind::HttpServer), Err(Refusal::WrongTokenKind));
        assert_eq!(admits("/files/report.pdf", TokenKind::HttpServer), Err(Refusal::WrongTokenKind));
        assert_eq!(admits("/api/v1/elsewhere", TokenKind::Api), Ok(()));
        assert_eq!(admits_kind(&t, &p, "POST", &segs("/api/v1/files/x"), TokenKind::HttpServer), Err(Refusal::WrongTokenKind));
    }

    #[test]
    fn security_voucher_tokens_only_on_voucher_routes_and_nothing_else_there() {
        let spec = |p: &str, http_token, voucher| RouteSpec { pattern: p.into(), flags: 0, items: vec![], http_token, voucher };
        let t = RouteTable::compile(
            &[spec("GET /wifi/status", false, true), spec("GET /files/:name", true, false), spec("GET /objects/:id", false, false)],
            &Prefix::default(),
        )
        .unwrap();
        let p = Prefix::default();
        let admits = |path: &str, kind| admits_kind(&t, &p, "GET", &segs(path), kind);
        assert_eq!(admits("/api/v1/wifi/status", TokenKind::VoucherAccess), Ok(()));
        for kind in [TokenKind::Api, TokenKind::Session, TokenKind::HttpServer] {
            assert_eq!(admits("/api/v1/wifi/status", kind), Err(Refusal::WrongTokenKind), "{kind:?}");
        }
        for path in ["/api/v1/objects/1", "/api/v1/files/a.pdf", "/api/v1/unrouted", "/wifi/status"] {
            assert_eq!(admits(path, TokenKind::VoucherAccess), Err(Refusal::WrongTokenKind), "{path}");
        }
        assert!(RouteTable::compile(&[spec("GET /x", true, true)], &p).unwrap_err().0.contains("not both"));
    }

    #[test]
    fn flags_rule() {
        let t = table(&[("DELETE /objects/:id/messages", FLAG_EDIT_CRITICAL, &["id"]), ("POST /tokens", FLAG_UNLIMITED, &[])]);
        let del = segs("/api/v1/objects/5/messages");
        let p = Prefix::default();
        assert_eq!(authorize(&rights(None, Some(FLAG_VIEW), None), &t, &p, "DELETE", &del).result, Err(Refusal::MissingFlags));
        assert_eq!(authorize(&rights(None, Some(FLAG_VIEW), None), &t, &p, "DELETE", &del).missing_flags, FLAG_EDIT_CRITICAL);
        assert!(authorize(&rights(None, Some(FLAG_EDIT_CRITICAL | FLAG_VIEW), None), &t, &p, "DELETE", &del).result.is_ok());
        assert!(authorize(&rights(None, Some(-1), None), &t, &p, "DELETE", &del).result.is_ok());
        assert!(authorize(&rights(None, None, None), &t, &p, "DELETE", &del).result.is_ok());
        let tok = segs("/api/v1/tokens");
        assert_eq!(authorize(&rights(None, Some(FLAG_MASK), None), &t, &p, "POST", &tok).result, Err(Refusal::MissingFlags));
        assert!(authorize(&rights(None, Some(-1), None), &t, &p, "POST", &tok).result.is_ok());
    }

    #[test]
    fn items_rule() {
        let t = table(&[("GET /objects/:id", FLAG_VIEW, &["id"])]);
        let p = Prefix::default();
        let r = rights(Some(&["GET /objects/:id"]), Some(FLAG_VIEW), Some(&[7, 42]));
        assert!(authorize(&r, &t, &p, "GET", &segs("/api/v1/objects/42")).result.is_ok());
        assert_eq!(authorize(&r, &t, &p, "GET", &segs("/api/v1/objects/43")).result, Err(Refusal::ItemNotAllowed));
        for v in ["042", "+42", "42abc", "4%32", "99999999999999999999", "-0"] {
            let path = format!("/api/v1/objects/{v}");
            assert_eq!(authorize(&r, &t, &p, "GET", &segs(&path)).result, Err(Refusal::ItemNotNumeric), "{v}");
        }
        // No items on the token: all items.
        let all = rights(Some(&["GET /objects/:id"]), None, None);
        assert!(authorize(&all, &t, &p, "GET", &segs("/api/v1/objects/abc")).result.is_ok());
    }

    #[test]
    fn scopes_come_first_and_outside_prefix_is_refused() {
        let t = RouteTable::default();
        let p = Prefix::default();
        let r = rights(Some(&["GET /objects"]), None, None);
        assert_eq!(authorize(&r, &t, &p, "GET", &segs("/objects")).result, Err(Refusal::OutsidePrefix));
        assert_eq!(authorize(&r, &t, &p, "POST", &segs("/api/v1/objects")).result, Err(Refusal::NoScope));
        assert_eq!(authorize(&r, &t, &p, "GET", &segs("/api/v1/objects")).scope.unwrap().to_string(), "GET /objects");
    }

    #[test]
    fn attenuation() {
        let parent = rights(Some(&["GET /objects/:id", "POST /tokens"]), Some(FLAG_VIEW | FLAG_EDIT), Some(&[1, 2, 3]));
        assert!(is_attenuated(&rights(Some(&["GET /objects/1"]), Some(FLAG_VIEW), Some(&[2])), 10, &parent, 10));
        assert!(!is_attenuated(&rights(Some(&["GET /objects/1"]), Some(FLAG_VIEW), Some(&[2])), 11, &parent, 10));
        assert!(!is_attenuated(&rights(None, Some(FLAG_VIEW), Some(&[2])), 10, &parent, 10));
        assert!(!is_attenuated(&rights(Some(&["GET /objects/1"]), Some(FLAG_ONLINE), Some(&[2])), 10, &parent, 10));
        assert!(!is_attenuated(&rights(Some(&["GET /objects/1"]), Some(-1), Some(&[2])), 10, &parent, 10));
        assert!(!is_attenuated(&rights(Some(&["GET /objects/1"]), None, Some(&[2])), 10, &parent, 10));
        assert!(!is_attenuated(&rights(Some(&["GET /objects/1"]), Some(FLAG_VIEW), Some(&[4])), 10, &parent, 10));
        assert!(!is_attenuated(&rights(Some(&["GET /objects/1"]), Some(FLAG_VIEW), None), 10, &parent, 10));
        let unlimited = rights(None, Some(-1), None);
        assert!(is_attenuated(&parent, 10, &unlimited, 10));
    }

    fn arb_rights() -> impl Strategy<Value = Rights> {
        let scope = prop::sample::select(vec![
            "GET /objects",
            "GET /objects/:id",
            "GET /objects/7",
            "POST /objects/:id/commands/:c",
            "DELETE /objects/:id",
        ]);
        (
            prop::option::of(prop::collection::vec(scope, 0..4)),
            prop::option::of(prop_oneof![Just(-1i64), (0i64..64).prop_map(|b| b << 8)]),
            prop::option::of(prop::collection::vec(1i64..6, 0..4)),
        )
            .prop_map(|(s, f, i)| Rights::new(s.map(|s| ScopeSet::parse(&s, &Prefix::default()).unwrap()), f, i.as_deref()))
    }

    proptest! {
        /// An attenuated child never allows a request its parent refuses.
        #[test]
        fn attenuated_child_allows_nothing_more(child in arb_rights(), parent in arb_rights(),
            method in prop::sample::select(vec!["GET", "POST", "DELETE"]),
            path in prop::sample::select(vec!["/api/v1/objects", "/api/v1/objects/7", "/api/v1/objects/3", "/api/v1/objects/3/commands/x", "/api/v1/other"])) {
            let t = table(&[("GET /objects/:id", FLAG_VIEW, &["id"]), ("DELETE /objects/:id", FLAG_EDIT_CRITICAL, &["id"]), ("POST /objects/:id/commands/:c", FLAG_INTERACT, &["id"])]);
            let p = Prefix::default();
            let s = segs(path);
            if is_attenuated(&child, 1, &parent, 1) && authorize(&child, &t, &p, method, &s).result.is_ok() {
                prop_assert!(authorize(&parent, &t, &p, method, &s).result.is_ok());
            }
        }

        #[test]
        fn parse_item_agrees_with_display(n in any::<i64>()) {
            prop_assert_eq!(parse_item(&n.to_string()), Some(n));
        }
    }
}
