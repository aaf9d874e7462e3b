//! The plugin configuration: parsed and validated once, in `on_configure`.

use serde::Deserialize;
use tokengate_rules::route::{RouteSpec, RouteTable};
use tokengate_rules::scope::Prefix;
use tokengate_rules::{TokenKind, VerifyPolicy};

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Beyond `max_staleness_ms` without a sync, deny with 503 (the default).
    #[default]
    Closed,
    /// Beyond `max_staleness_ms`, keep enforcing the last state (explicit opt-in).
    Open,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    #[serde(default = "default_realm")]
    pub realm: String,
    #[serde(default = "default_issuer")]
    pub issuer: String,
    pub audiences: Vec<String>,
    #[serde(default = "default_prefix")]
    pub api_prefix: String,
    #[serde(default = "default_staleness")]
    pub max_staleness_ms: u64,
    #[serde(default)]
    pub fail_mode: FailMode,
    #[serde(default = "default_local_entries")]
    pub local_cache_entries: usize,
    #[serde(default = "default_shared_slots")]
    pub shared_cache_slots: u32,
    /// A worker reports a token's use at most this often (ms); 0 turns reports off.
    #[serde(default = "default_usage_ms")]
    pub usage_report_ms: u64,
    /// A worker reports a session's use at most this often (ms), and the sync service
    /// sends session use to the control plane at least this often: the idle limit of
    /// sessions (seed 003) is only as sharp as this. 100..=60000; the control plane's
    /// `TOKENGATE_SESSION_GRACE_MS` must be at least twice it plus a second.
    #[serde(default = "default_session_report_ms")]
    pub session_report_ms: u64,
    pub control_plane: Option<ControlPlaneConfig>,
    /// The operator's route table: which flags and item parameters each operation needs.
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Voucher access tokens (seed 000) are bound to a device. Without this the device is
    /// the peer's IP address; with it, the device is this request header (for example the
    /// access controller's `x-client-mac`), believed only from the peers in
    /// `device_header_trusted_from` and stripped from every other request.
    #[serde(default)]
    pub device_header: Option<String>,
    /// Addresses or networks (`10.0.0.1`, `10.0.0.0/8`) whose `device_header` is believed.
    #[serde(default)]
    pub device_header_trusted_from: Vec<String>,
    /// The captive portal (seed 000): requests to `path` need no token; the gate passes
    /// them on with `x-tokengate-device` and `x-tokengate-network` (`network`, one of
    /// `audiences`), which the control plane's portal page redeems the guest's code for.
    #[serde(default)]
    pub portal: Option<PortalConfig>,
    /// The identity headers the gate writes for the upstream (names from
    /// [`IdentityHeaders::NAMES`]); absent: all of them, `[]`: none. Headers left out are
    /// still stripped from what the client sent.
    #[serde(default)]
    pub identity_headers: Option<Vec<String>>,
}

/// Which identity headers the gate writes, as one bit per name in [`IdentityHeaders::NAMES`]:
/// decided once in `on_configure`, so a request tests a bit, never a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdentityHeaders(u16);

/// One identity header; its discriminant is its bit and its index in [`IdentityHeaders::NAMES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    Subject,
    TokenId,
    Scope,
    User,
    Operator,
    App,
    Params,
    Flags,
    Session,
    Network,
    Device,
}

impl Identity {
    pub fn name(self) -> &'static str {
        IdentityHeaders::NAMES[self as usize]
    }
}

impl IdentityHeaders {
    pub const NAMES: [&'static str; 11] = [
        "x-tokengate-subject",
        "x-tokengate-token-id",
        "x-tokengate-scope",
        "x-tokengate-user",
        "x-tokengate-operator",
        "x-tokengate-app",
        "x-tokengate-params",
        "x-tokengate-flags",
        "x-tokengate-session",
        "x-tokengate-network",
        "x-tokengate-device",
    ];
    pub const ALL: IdentityHeaders = IdentityHeaders((1 << Self::NAMES.len()) - 1);
    pub const NONE: IdentityHeaders = IdentityHeaders(0);

    /// The set named by `names` (any letter case); an unknown name is an error.
    pub fn parse(names: &[String]) -> Result<IdentityHeaders, String> {
        names.iter().try_fold(Self::NONE, |set, name| {
            let i = Self::NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)).ok_or_else(|| {
                format!(
                    "plugin configuration: `identity_headers`: {name:?} is not an identity header; the names are {}",
                    Self::NAMES.join(", ")
                )
            })?;
            Ok(IdentityHeaders(set.0 | 1 << i))
        })
    }

    pub fn has(self, h: Identity) -> bool {
        self.0 & 1 << h as u16 != 0
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    pub path: String,
    pub network: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlPlaneConfig {
    pub cluster: String,
    #[serde(default = "default_authority")]
    pub authority: String,
    /// The proxy secret shared with the control plane (`TOKENGATE_PROXY_SECRET`), at
    /// least 32 bytes. It never leaves the proxy: calls carry a bearer derived from it,
    /// and answers are checked with a MAC key derived from it (`rules::sync::ProxyKeys`).
    pub credential: String,
    pub proxy_id: String,
    #[serde(default = "default_wait")]
    pub wait_ms: u64,
    /// Development only: accept a `credential` shorter than 32 bytes.
    #[serde(default)]
    pub insecure_short_credential: bool,
}

fn default_realm() -> String {
    "tokengate".into()
}
fn default_issuer() -> String {
    "tokengate".into()
}
fn default_prefix() -> String {
    tokengate_rules::DEFAULT_API_PREFIX.into()
}
fn default_staleness() -> u64 {
    120_000
}
fn default_local_entries() -> usize {
    4096
}
fn default_shared_slots() -> u32 {
    8192
}
fn default_usage_ms() -> u64 {
    30_000
}
/// Sessions die after 5 minutes idle (seed 003); their use is reported every 5 s.
pub const DEFAULT_SESSION_REPORT_MS: u64 = 5_000;
fn default_session_report_ms() -> u64 {
    DEFAULT_SESSION_REPORT_MS
}
fn default_authority() -> String {
    "control-plane".into()
}
fn default_wait() -> u64 {
    25_000
}

/// What the HTTP filter needs, compiled.
#[derive(Debug)]
pub struct GateConfig {
    pub realm: String,
    pub policy: VerifyPolicy,
    pub prefix: Prefix,
    pub routes: RouteTable,
    pub max_staleness_ms: u64,
    pub fail_mode: FailMode,
    pub local_cache_entries: usize,
    pub shared_cache_slots: u32,
    pub usage_report_ms: u64,
    pub session_report_ms: u64,
    /// Lower-case; `None`: the device is the peer address.
    pub device_header: Option<String>,
    pub device_header_trusted_from: Vec<ipnet::IpNet>,
    pub portal: Option<PortalConfig>,
    pub identity_headers: IdentityHeaders,
}

impl GateConfig {
    /// Is the device header believed from this peer?
    pub fn trusts_device_header_from(&self, peer: Option<std::net::IpAddr>) -> bool {
        peer.is_some_and(|ip| self.device_header_trusted_from.iter().any(|net| net.contains(&ip)))
    }

    /// Is this request target the captive portal's page (with or without a query)?
    pub fn is_portal(&self, path: &str) -> bool {
        self.portal
            .as_ref()
            .is_some_and(|p| path.strip_prefix(p.path.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('?')))
    }
}

/// `10.0.0.1` or `10.0.0.0/8` (and IPv6 likewise).
fn parse_net(text: &str) -> Result<ipnet::IpNet, String> {
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("plugin configuration: `device_header_trusted_from`: {text:?} is not an address or a network like 10.0.0.0/8"))
}

impl PluginConfig {
    pub fn parse(bytes: &[u8]) -> Result<PluginConfig, String> {
        let cfg: PluginConfig = serde_json::from_slice(bytes).map_err(|e| format!("plugin configuration is not valid: {e}"))?;
        if cfg.audiences.is_empty() || cfg.audiences.iter().any(String::is_empty) {
            return Err("plugin configuration: `audiences` must list at least one non-empty audience".into());
        }
        if cfg.realm.is_empty() || cfg.realm.bytes().any(|b| b == b'"' || b == b'\\' || !(0x20..=0x7e).contains(&b)) {
            return Err("plugin configuration: `realm` must be printable ASCII without quotes or backslashes".into());
        }
        if !(1..=1_000_000).contains(&cfg.local_cache_entries) {
            return Err("plugin configuration: `local_cache_entries` must be 1..=1000000".into());
        }
        if !(1..=65_536).contains(&cfg.shared_cache_slots) {
            return Err("plugin configuration: `shared_cache_slots` must be 1..=65536".into());
        }
        if !(100..=60_000).contains(&cfg.session_report_ms) {
            return Err("plugin configuration: `session_report_ms` must be 100..=60000".into());
        }
        if cfg.max_staleness_ms < 1000 {
            return Err("plugin configuration: `max_staleness_ms` must be at least 1000".into());
        }
        match &cfg.device_header {
            Some(h)
                if h.is_empty()
                    || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    || h.to_ascii_lowercase().starts_with("x-tokengate-") =>
            {
                return Err(
                    "plugin configuration: `device_header` must be a header name of letters, digits and '-' (and not x-tokengate-*)".into(),
                );
            }
            Some(_) if cfg.device_header_trusted_from.is_empty() => {
                return Err("plugin configuration: `device_header` needs `device_header_trusted_from`: the addresses of the access controllers that set it (from anyone else it is stripped)".into());
            }
            None if !cfg.device_header_trusted_from.is_empty() => {
                return Err("plugin configuration: `device_header_trusted_from` without `device_header`".into());
            }
            _ => {}
        }
        for net in &cfg.device_header_trusted_from {
            parse_net(net)?;
        }
        let identity = cfg.identity()?;
        if let Some(portal) = &cfg.portal {
            // The portal page redeems the guest's code for the device on this network: it
            // cannot work without both headers.
            if !identity.has(Identity::Network) || !identity.has(Identity::Device) {
                return Err("plugin configuration: `portal` needs x-tokengate-network and x-tokengate-device in `identity_headers`".into());
            }
            if !portal.path.starts_with('/') || portal.path.len() < 2 || portal.path.contains(['?', '#']) {
                return Err("plugin configuration: `portal.path` must be a path like /portal".into());
            }
            if !cfg.audiences.contains(&portal.network) {
                return Err(format!(
                    "plugin configuration: `portal.network` {:?} must be one of `audiences` (the networks this proxy serves)",
                    portal.network
                ));
            }
        }
        let prefix = Prefix::parse(&cfg.api_prefix).map_err(|e| format!("plugin configuration: `api_prefix`: {e}"))?;
        RouteTable::compile(&cfg.routes, &prefix).map_err(|e| format!("plugin configuration: `routes`: {e}"))?;
        if let Some(cp) = &cfg.control_plane {
            if cp.cluster.is_empty() || cp.credential.is_empty() || cp.proxy_id.is_empty() {
                return Err("plugin configuration: `control_plane` needs `cluster`, `credential` and `proxy_id`".into());
            }
            if cp.credential.len() < tokengate_rules::sync::MIN_SECRET_BYTES && !cp.insecure_short_credential {
                return Err(format!(
                    "plugin configuration: `control_plane.credential` is {} bytes; use a random secret of at least {} bytes \
                     (e.g. `openssl rand -hex 32`), the same as the control plane's TOKENGATE_PROXY_SECRET",
                    cp.credential.len(),
                    tokengate_rules::sync::MIN_SECRET_BYTES
                ));
            }
            if !cp.proxy_id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')) {
                return Err("plugin configuration: `control_plane.proxy_id` must be [A-Za-z0-9._-]".into());
            }
            if cp.wait_ms > tokengate_rules::sync::MAX_WAIT_MS {
                return Err("plugin configuration: `control_plane.wait_ms` must be at most 30000".into());
            }
            // An idle control plane answers a long poll only every `wait_ms`; a staleness
            // bound under twice that would fail a healthy proxy closed between answers.
            if cfg.max_staleness_ms < 2 * cp.wait_ms {
                return Err(format!(
                    "plugin configuration: `max_staleness_ms` ({}) must be at least twice `control_plane.wait_ms` ({})",
                    cfg.max_staleness_ms, cp.wait_ms
                ));
            }
        }
        Ok(cfg)
    }

    /// The identity headers to write: all of them unless `identity_headers` names some.
    fn identity(&self) -> Result<IdentityHeaders, String> {
        self.identity_headers.as_deref().map_or(Ok(IdentityHeaders::ALL), IdentityHeaders::parse)
    }

    pub fn gate(&self) -> Result<GateConfig, String> {
        let audiences: Vec<&str> = self.audiences.iter().map(String::as_str).collect();
        let prefix = Prefix::parse(&self.api_prefix).map_err(|e| e.to_string())?;
        let routes = RouteTable::compile(&self.routes, &prefix).map_err(|e| e.to_string())?;
        Ok(GateConfig {
            realm: self.realm.clone(),
            // Every kind; the route table decides which kind a route takes (`admits_kind`).
            policy: VerifyPolicy::new(&self.issuer, &audiences, &TokenKind::ALL),
            prefix,
            routes,
            max_staleness_ms: self.max_staleness_ms,
            fail_mode: self.fail_mode,
            local_cache_entries: self.local_cache_entries,
            shared_cache_slots: self.shared_cache_slots,
            usage_report_ms: self.usage_report_ms,
            session_report_ms: self.session_report_ms,
            device_header: self.device_header.as_ref().map(|h| h.to_ascii_lowercase()),
            device_header_trusted_from: self.device_header_trusted_from.iter().map(|n| parse_net(n)).collect::<Result<_, _>>()?,
            portal: self.portal.clone(),
            identity_headers: self.identity()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_and_bad_configs() {
        let ok = PluginConfig::parse(br#"{"audiences":["tokengate"]}"#).unwrap();
        assert_eq!(ok.fail_mode, FailMode::Closed);
        assert!(ok.gate().is_ok());
        for bad in [
            &br#"{"audiences":[]}"#[..],
            br#"{"audiences":["a"],"unknown":1}"#,
            br#"{"audiences":["a"],"fail_mode":"sometimes"}"#,
            br#"{"audiences":["a"],"api_prefix":"api"}"#,
            br#"{"audiences":["a"],"realm":"a\"b"}"#,
            br#"{"audiences":["a"],"control_plane":{"cluster":"c","credential":"","proxy_id":"p"}}"#,
            br#"{"audiences":["a"],"control_plane":{"cluster":"c","credential":"short-secret","proxy_id":"p"}}"#,
            br#"not json"#,
            br#"{"audiences":["a"],"session_report_ms":0}"#,
            br#"{"audiences":["a"],"session_report_ms":600000}"#,
            br#"{"audiences":["a"],"max_staleness_ms":30000,"control_plane":{"cluster":"c","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p","wait_ms":25000}}"#,
            br#"{"audiences":["a"],"routes":[{"pattern":"GET /objects/:id","flags":256},{"pattern":"GET /objects/:x"}]}"#,
            br#"{"audiences":["a"],"routes":[{"pattern":"GET /objects/:id","items":["oid"]}]}"#,
            br#"{"audiences":["a"],"routes":[{"pattern":"get /objects"}]}"#,
            br#"{"audiences":["a"],"device_header":"x-client-mac"}"#,
            br#"{"audiences":["a"],"device_header":"x client","device_header_trusted_from":["10.0.0.1"]}"#,
            br#"{"audiences":["a"],"device_header":"x-tokengate-device","device_header_trusted_from":["10.0.0.1"]}"#,
            br#"{"audiences":["a"],"device_header":"x-client-mac","device_header_trusted_from":["10.0.0.0/33"]}"#,
            br#"{"audiences":["a"],"device_header_trusted_from":["10.0.0.1"]}"#,
            br#"{"audiences":["a"],"portal":{"path":"/portal","network":"cafe-1"}}"#,
            br#"{"audiences":["a","cafe-1"],"portal":{"path":"portal","network":"cafe-1"}}"#,
            br#"{"audiences":["a"],"identity_headers":"x-tokengate-subject"}"#,
            br#"{"audiences":["a"],"identity_headers":["x-tokengate-subject","x-tokengate-nobody"]}"#,
            br#"{"audiences":["a"],"identity_headers":["x-forwarded-user"]}"#,
            br#"{"audiences":["a"],"identity_headers":["subject"]}"#,
            br#"{"audiences":["a"],"identity_headers":[""]}"#,
            br#"{"audiences":["a","cafe-1"],"portal":{"path":"/portal","network":"cafe-1"},"identity_headers":["x-tokengate-network"]}"#,
        ] {
            assert!(PluginConfig::parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // A short secret only with the explicit development flag.
        assert!(PluginConfig::parse(
            br#"{"audiences":["a"],"control_plane":{"cluster":"c","credential":"short","proxy_id":"p","insecure_short_credential":true}}"#
        )
        .is_ok());
    }

    #[test]
    fn device_header_and_portal() {
        let cfg = PluginConfig::parse(
            br#"{"audiences":["a","cafe-1"],"device_header":"X-Client-MAC","device_header_trusted_from":["10.0.0.0/8","127.0.0.1"],"portal":{"path":"/portal","network":"cafe-1"}}"#,
        )
        .unwrap()
        .gate()
        .unwrap();
        assert_eq!(cfg.device_header.as_deref(), Some("x-client-mac"));
        assert!(cfg.trusts_device_header_from(Some("10.1.2.3".parse().unwrap())));
        assert!(cfg.trusts_device_header_from(Some("127.0.0.1".parse().unwrap())));
        assert!(!cfg.trusts_device_header_from(Some("127.0.0.2".parse().unwrap())));
        assert!(!cfg.trusts_device_header_from(None));
        assert!(cfg.is_portal("/portal") && cfg.is_portal("/portal?lang=ru"));
        assert!(!cfg.is_portal("/portals") && !cfg.is_portal("/portal/x") && !cfg.is_portal("/api/v1/portal"));
    }

    #[test]
    fn identity_headers_default_subset_empty_and_unknown() {
        let set = |json: &str| PluginConfig::parse(json.as_bytes()).and_then(|c| c.gate()).map(|g| g.identity_headers);
        // Absent: every header, as before the option existed.
        let all = set(r#"{"audiences":["a"]}"#).unwrap();
        assert_eq!(all, IdentityHeaders::ALL);
        assert!(IdentityHeaders::NAMES.iter().enumerate().all(|(i, _)| all.0 & 1 << i != 0));
        let some = set(r#"{"audiences":["a"],"identity_headers":["x-tokengate-subject","X-Tokengate-Flags"]}"#).unwrap();
        assert!(some.has(Identity::Subject) && some.has(Identity::Flags));
        assert!(!some.has(Identity::TokenId) && !some.has(Identity::Scope) && !some.has(Identity::Device));
        assert_eq!(set(r#"{"audiences":["a"],"identity_headers":[]}"#).unwrap(), IdentityHeaders::NONE);
        let err = set(r#"{"audiences":["a"],"identity_headers":["x-tokengate-subjet"]}"#).unwrap_err();
        assert!(
            err.contains("\"x-tokengate-subjet\" is not an identity header") && err.contains("x-tokengate-subject, x-tokengate-token-id"),
            "{err}"
        );
        // The portal keeps working with the two headers it needs.
        let portal = set(
            r#"{"audiences":["a","c"],"portal":{"path":"/portal","network":"c"},"identity_headers":["x-tokengate-network","x-tokengate-device"]}"#,
        );
        assert!(portal.is_ok_and(|s| s.has(Identity::Network) && !s.has(Identity::Subject)));
        assert_eq!((Identity::Subject.name(), Identity::Device.name()), ("x-tokengate-subject", "x-tokengate-device"));
        for (i, name) in IdentityHeaders::NAMES.iter().enumerate() {
            assert!(name.starts_with("x-tokengate-"));
            assert_eq!(set(&format!(r#"{{"audiences":["a"],"identity_headers":["{name}"]}}"#)).unwrap().0, 1 << i);
        }
    }
}
