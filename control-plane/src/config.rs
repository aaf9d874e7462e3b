//! Configuration from the environment. Every variable is optional; a bad value stops
//! the start with a message that says what to fix.

use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use tokengate_rules::route::{RouteSpec, RouteTable};
use tokengate_rules::scope::Prefix;
use tokengate_rules::sync::MIN_SECRET_BYTES;
use tokengate_rules::{ScopePattern, DEFAULT_API_PREFIX};

/// The routes of the demo upstream, offered when `TOKENGATE_CATALOGUE` is unset: pattern,
/// required flags and item parameters, the same table `envoy/envoy.yaml` gives the filter
/// (the geofences are not in the filter's table, so they need no flags there either).
pub const DEMO_CATALOGUE: [(&str, i64, &[&str]); 11] = [
    ("GET /objects", 0x200, &[]),
    ("POST /objects", 0x400, &[]),
    ("GET /objects/:id", 0x200, &["id"]),
    ("PATCH /objects/:id", 0x400, &["id"]),
    ("DELETE /objects/:id", 0x1000, &["id"]),
    ("GET /objects/:id/packets", 0x200, &["id"]),
    ("POST /objects/:id/commands/:command", 0x2000, &["id"]),
    ("DELETE /objects/:id/messages", 0x1000, &["id"]),
    ("GET /geofences", 0, &[]),
    ("POST /geofences", 0, &[]),
    ("DELETE /geofences/:id", 0, &[]),
];

/// The demo upstream's download route: it takes a login's `tokenForHttpServer` (and only
/// that kind), as `envoy/envoy.yaml` marks it with `http_token`.
pub const DEMO_HTTP_ROUTES: [&str; 1] = ["GET /files/:name"];

/// The idle lifetime of a token when `TOKENGATE_IDLE_SECS` is unset: 100 days (seed 001).
pub const DEFAULT_IDLE_SECS: u64 = 100 * 24 * 3600;
/// Seed 003: a session with no request for 5 minutes dies.
pub const DEFAULT_SESSION_IDLE_SECS: u64 = 300;
/// Audit entries are kept this many days by default (a year and a month: a yearly
/// review still finds the whole year).
pub const DEFAULT_AUDIT_KEEP_DAYS: u64 = 400;
/// How late a session's last use may reach the control plane: a worker notes a session's
/// use at most every `session_report_ms` (5 s by default), and the sync service sends
/// what it holds every `session_report_ms` on its 200 ms tick, then the HTTP call: at
/// most 2 × 5 s + about 1 s. ARCHITECTURE.md ("Sessions") derives the bound.
pub const DEFAULT_SESSION_GRACE_MS: u64 = 12_000;
/// How often idle sessions are looked for.
pub const DEFAULT_SESSION_SWEEP_MS: u64 = 1_000;
/// How often the sweeper runs when `TOKENGATE_SWEEP_SECS` is unset.
pub const DEFAULT_SWEEP_SECS: u64 = 60;
/// How often a held sync call re-reads the version when `TOKENGATE_SYNC_RECHECK_MS` is unset.
pub const DEFAULT_SYNC_RECHECK_MS: u64 = 1000;
/// The most signing keys published at once when `TOKENGATE_MAX_KEYS` is unset (each one
/// costs every proxy worker a 640 KiB verification table).
pub const DEFAULT_MAX_KEYS: u64 = 4;

/// The credentials of the first admin user.
#[derive(Clone)]
pub struct AdminCredentials {
    pub username: String,
    pub password: String,
}

/// Which database the URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// As given; [`crate::db::connect`] adds `mode=rwc` to a SQLite URL.
    pub database_url: String,
    pub backend: Backend,
    /// The first admin, when the environment names one.
    pub admin: Option<AdminCredentials>,
    /// The credential proxies present on the sync channel; `None` refuses every call.
    pub proxy_secret: Option<String>,
    /// `TOKENGATE_TRUSTED_PROXIES`: peers whose `x-forwarded-for` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `TOKENGATE_TLS_CERT` and `TOKENGATE_TLS_KEY` (PEM files): serve HTTPS.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    pub issuer: String,
    pub audience: String,
    /// The API prefix, `/api/v1` by default; `""` serves the API at the root.
    pub api_prefix: String,
    /// The scope patterns the operator's API offers, canonical.
    pub catalogue: Vec<String>,
    /// The operator's route table (the catalogue with the flags and item parameters of
    /// each route; a plain pattern needs no flags), the table the filter runs.
    pub routes: Vec<RouteSpec>,
    /// A token unused for this long is revoked by the sweeper (seed 001).
    pub idle_secs: u64,
    /// How often the sweeper runs (idle tokens, expired change-log entries).
    pub sweep_secs: u64,
    /// How often a held sync call re-reads the version from the database (the fallback
    /// when a change on another replica is not notified).
    pub sync_recheck_ms: u64,
    /// Serve `GET /metrics` (Prometheus text, no authentication).
    pub metrics: bool,
    /// Revocations per JSON snapshot part (`TOKENGATE_SNAPSHOT_PAGE`); a binary part
    /// (`format=bin`) holds `rules::sync::BINARY_PAGE_FACTOR` times as many.
    pub snapshot_page: u64,
    /// The most keys a rotation may leave published (`TOKENGATE_MAX_KEYS`, at least 2).
    pub max_keys: u64,
    /// `TOKENGATE_UNSECURED_LOGIN`: the user a seed-002 `"type": "unsecured"` login logs in
    /// as, with no secret; `None` (the default) refuses unsecured logins.
    pub unsecured_login: Option<String>,
    /// `TOKENGATE_SESSION_IDLE_SECS`: a session unused through every proxy this long ends.
    pub session_idle_secs: u64,
    /// `TOKENGATE_AUDIT_KEEP_DAYS`: audit entries older than this are removed by the
    /// sweeper; 0 keeps them forever.
    pub audit_keep_days: u64,
    /// `TOKENGATE_SESSION_GRACE_MS`: how long after the idle limit a session is ended, so
    /// that a use the proxies have not reported yet still counts (at least twice the
    /// proxies' `session_report_ms` plus a second).
    pub session_grace_ms: u64,
    /// `TOKENGATE_SESSION_SWEEP_MS`: how often idle sessions are ended.
    pub session_sweep_ms: u64,
    /// `TOKENGATE_DATA_DIR`: where the voucher keys live (default: the SQLite file's
    /// directory, else the working directory).
    pub data_dir: std::path::PathBuf,
    /// `TOKENGATE_VOUCHER_TOKEN_SECS`: the lifetime of a voucher's access token (a day);
    /// the guest's device renews it by redeeming the code again.
    pub voucher_token_secs: u64,
    /// `TOKENGATE_PORTAL_URL`: the captive portal's address, printed on the voucher PDF.
    pub portal_url: Option<String>,
}

/// A voucher's access token lives a day unless `TOKENGATE_VOUCHER_TOKEN_SECS` says otherwise.
pub const DEFAULT_VOUCHER_TOKEN_SECS: u64 = 24 * 3600;

/// The default data directory: the SQLite file's directory, else the working directory.
fn default_data_dir(database_url: &str) -> std::path::PathBuf {
    let file = database_url
        .strip_prefix("sqlite://")
        .or_else(|| database_url.strip_prefix("sqlite:"))
        .map(|rest| rest.split('?').next().unwrap_or(rest));
    match file.filter(|f| !f.is_empty() && !f.starts_with(':')).and_then(|f| Path::new(f).parent()) {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    }
}

/// What is wrong with the configuration, phrased as what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

// Secrets never reach a log line, even through `{:?}`.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database_url))
            .field("backend", &self.backend)
            .field("admin", &self.admin.as_ref().map(|a| &a.username))
            .field("proxy_secret", &self.proxy_secret.as_ref().map(|_| "<set>"))
            .field("tls", &self.tls)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("api_prefix", &self.api_prefix)
            .field("catalogue", &self.catalogue.len())
            .field("idle_secs", &self.idle_secs)
            .field("sweep_secs", &self.sweep_secs)
            .field("sync_recheck_ms", &self.sync_recheck_ms)
            .field("snapshot_page", &self.snapshot_page)
            .field("max_keys", &self.max_keys)
            .field("metrics", &self.metrics)
            .field("unsecured_login", &self.unsecured_login)
            .field("session_idle_secs", &self.session_idle_secs)
            .field("audit_keep_days", &self.audit_keep_days)
            .field("session_grace_ms", &self.session_grace_ms)
            .field("session_sweep_ms", &self.session_sweep_ms)
            .finish()
    }
}

/// `TOKENGATE_PROXY_SECRET`, or the first line of the file `TOKENGATE_PROXY_SECRET_FILE`
/// names; at least [`MIN_SECRET_BYTES`] bytes unless `TOKENGATE_INSECURE_SHORT_PROXY_SECRET=1`
/// (development only).
fn proxy_secret(get: &impl Fn(&str) -> Option<String>) -> Result<Option<String>, ConfigError> {
    let secret = match (get("TOKENGATE_PROXY_SECRET"), get("TOKENGATE_PROXY_SECRET_FILE")) {
        (Some(_), Some(_)) => {
            return Err(ConfigError("set TOKENGATE_PROXY_SECRET or TOKENGATE_PROXY_SECRET_FILE, not both".into()));
        }
        (Some(s), None) => s,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("TOKENGATE_PROXY_SECRET_FILE={path:?}: cannot read it: {e}")))?;
            text.lines().next().unwrap_or_default().trim().to_owned()
        }
        (None, None) => return Ok(None),
    };
    let insecure = matches!(get("TOKENGATE_INSECURE_SHORT_PROXY_SECRET").as_deref(), Some("1" | "true"));
    if secret.len() < MIN_SECRET_BYTES && !insecure {
        return Err(ConfigError(format!(
            "the proxy secret is {} bytes; use a random one of at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`), \
             the same as every proxy's control_plane.credential (TOKENGATE_INSECURE_SHORT_PROXY_SECRET=1 allows a short one, for development only)",
            secret.len()
        )));
    }
    Ok(Some(secret))
}

/// The URL without a password (`postgres://user:secret@host` -> `postgres://user:***@host`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `var` (the tests pass a map).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| var(name).filter(|v| !v.is_empty());

        let listen_raw = get("TOKENGATE_LISTEN").unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen = listen_raw
            .parse()
            .map_err(|_| ConfigError(format!("TOKENGATE_LISTEN={listen_raw:?} is not an address; use host:port such as 127.0.0.1:8080")))?;

        let database_url = get("DATABASE_URL").unwrap_or_else(|| "sqlite://tokengate.db".to_owned());
        let backend = backend_of(&database_url)?;

        let admin = match (get("TOKENGATE_ADMIN_USER"), var("TOKENGATE_ADMIN_PASSWORD")) {
            (None, None) => None,
            (Some(username), Some(password)) if !password.is_empty() => {
                check_username(&username).map_err(|e| ConfigError(format!("TOKENGATE_ADMIN_USER: {e}")))?;
                Some(AdminCredentials { username, password })
            }
            _ => {
                return Err(ConfigError(
                    "set both TOKENGATE_ADMIN_USER and TOKENGATE_ADMIN_PASSWORD (non-empty), or neither to have an admin generated".into(),
                ))
            }
        };

        let proxy_secret = proxy_secret(&get)?;
        let trusted_proxies =
            crate::http::client::parse_trusted(&get("TOKENGATE_TRUSTED_PROXIES").unwrap_or_else(|| "127.0.0.1,::1".to_owned()))
                .map_err(|e| ConfigError(format!("TOKENGATE_TRUSTED_PROXIES: {e}")))?;
        let tls = match (get("TOKENGATE_TLS_CERT"), get("TOKENGATE_TLS_KEY")) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert.into(), key.into())),
            _ => {
                return Err(ConfigError(
                    "set both TOKENGATE_TLS_CERT and TOKENGATE_TLS_KEY (PEM files), or neither to serve plain HTTP".into(),
                ))
            }
        };
        let issuer = get("TOKENGATE_ISSUER").unwrap_or_else(|| "tokengate".to_owned());
        let audience = get("TOKENGATE_AUDIENCE").unwrap_or_else(|| "tokengate".to_owned());

        let api_prefix = normalize_prefix(&get("TOKENGATE_API_PREFIX").unwrap_or_else(|| DEFAULT_API_PREFIX.to_owned()))?;
        let prefix = prefix_of(&api_prefix)?;

        let routes = match get("TOKENGATE_CATALOGUE") {
            Some(path) => load_catalogue(Path::new(&path), &prefix)?,
            None => canonical(
                DEMO_CATALOGUE
                    .iter()
                    .map(|(p, flags, items)| RouteSpec {
                        pattern: (*p).to_owned(),
                        flags: *flags,
                        items: items.iter().map(|i| (*i).to_owned()).collect(),
                        http_token: false,
                        voucher: false,
                    })
                    .chain(DEMO_HTTP_ROUTES.iter().map(|p| RouteSpec {
                        pattern: (*p).to_owned(),
                        flags: 0,
                        items: Vec::new(),
                        http_token: true,
                        voucher: false,
                    })),
                &prefix,
                "the built-in catalogue",
            )?,
        };
        RouteTable::compile(&routes, &prefix).map_err(|e| ConfigError(format!("TOKENGATE_CATALOGUE: {e}")))?;
        let catalogue = routes.iter().map(|r| r.pattern.clone()).collect();

        let idle_secs = number(&get, "TOKENGATE_IDLE_SECS", DEFAULT_IDLE_SECS, 1)?;
        let sweep_secs = number(&get, "TOKENGATE_SWEEP_SECS", DEFAULT_SWEEP_SECS, 1)?;
        let sync_recheck_ms = number(&get, "TOKENGATE_SYNC_RECHECK_MS", DEFAULT_SYNC_RECHECK_MS, 10)?;
        let snapshot_page = number(&get, "TOKENGATE_SNAPSHOT_PAGE", tokengate_rules::sync::DEFAULT_SNAPSHOT_PAGE as u64, 1)?;
        let max_keys = number(&get, "TOKENGATE_MAX_KEYS", DEFAULT_MAX_KEYS, 2)?;
        let session_idle_secs = number(&get, "TOKENGATE_SESSION_IDLE_SECS", DEFAULT_SESSION_IDLE_SECS, 1)?;
        let audit_keep_days = number(&get, "TOKENGATE_AUDIT_KEEP_DAYS", DEFAULT_AUDIT_KEEP_DAYS, 0)?;
        let session_grace_ms = number(&get, "TOKENGATE_SESSION_GRACE_MS", DEFAULT_SESSION_GRACE_MS, 0)?;
        let session_sweep_ms = number(&get, "TOKENGATE_SESSION_SWEEP_MS", DEFAULT_SESSION_SWEEP_MS, 50)?;
        let data_dir = get("TOKENGATE_DATA_DIR").map_or_else(|| default_data_dir(&database_url), std::path::PathBuf::from);
        let voucher_token_secs = number(&get, "TOKENGATE_VOUCHER_TOKEN_SECS", DEFAULT_VOUCHER_TOKEN_SECS, 60)?;
        if voucher_token_secs > 30 * 24 * 3600 {
            return Err(ConfigError(
                "TOKENGATE_VOUCHER_TOKEN_SECS must be at most 2592000 (30 days): a voucher's revocation lives as long as its token".into(),
            ));
        }
        let portal_url = get("TOKENGATE_PORTAL_URL");
        let metrics = match get("TOKENGATE_METRICS").as_deref() {
            None | Some("on" | "true" | "1") => true,
            Some("off" | "false" | "0") => false,
            Some(other) => return Err(ConfigError(format!("TOKENGATE_METRICS={other:?}: use on or off"))),
        };

        let unsecured_login = get("TOKENGATE_UNSECURED_LOGIN").filter(|v| !v.is_empty());
        if let Some(name) = &unsecured_login {
            check_username(name).map_err(|e| ConfigError(format!("TOKENGATE_UNSECURED_LOGIN names a user: {e}")))?;
        }

        Ok(Config {
            data_dir,
            voucher_token_secs,
            portal_url,
            unsecured_login,
            session_idle_secs,
            audit_keep_days,
            session_grace_ms,
            session_sweep_ms,
            listen,
            database_url,
            backend,
            admin,
            proxy_secret,
            tls,
            trusted_proxies,
            issuer,
            audience,
            api_prefix,
            catalogue,
            routes,
            idle_secs,
            sweep_secs,
            sync_recheck_ms,
            snapshot_page,
            max_keys,
            metrics,
        })
    }

    /// The parsed API prefix.
    pub fn prefix(&self) -> Result<Prefix, ConfigError> {
        prefix_of(&self.api_prefix)
    }
}

/// A whole number of at least `min`, or `default` when unset.
fn number(get: &impl Fn(&str) -> Option<String>, name: &str, default: u64, min: u64) -> Result<u64, ConfigError> {
    match get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= min && *n <= 10 * 366 * 24 * 3600 * 1000)
            .ok_or_else(|| ConfigError(format!("{name}={raw:?} is not a whole number of at least {min}"))),
    }
}

fn backend_of(url: &str) -> Result<Backend, ConfigError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(ConfigError(format!("DATABASE_URL={:?} is not supported; use sqlite://<file> or postgres://user@host/db", redact_url(url))))
    }
}

/// `/api/v1/` and `api/v1` become `/api/v1`; `/` becomes `""` (no prefix).
fn normalize_prefix(raw: &str) -> Result<String, ConfigError> {
    let trimmed = raw.trim_matches('/');
    let prefix = if trimmed.is_empty() { String::new() } else { format!("/{trimmed}") };
    prefix_of(&prefix)?;
    Ok(prefix)
}

fn prefix_of(prefix: &str) -> Result<Prefix, ConfigError> {
    Prefix::parse(prefix).map_err(|e| ConfigError(format!("TOKENGATE_API_PREFIX: {e}")))
}

fn load_catalogue(path: &Path, prefix: &Prefix) -> Result<Vec<RouteSpec>, ConfigError> {
    let what = format!("TOKENGATE_CATALOGUE={}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{what}: cannot read the file: {e}")))?;
    let list: Vec<CatalogueEntry> = serde_json::from_str(&text).map_err(|e| {
        ConfigError(format!(
            "{what}: expected a JSON array of scope patterns such as [\"GET /objects\"] (or of the filter's routes, {{\"pattern\": ...}}): {e}"
        ))
    })?;
    canonical(
        list.into_iter().map(|e| match e {
            CatalogueEntry::Pattern(pattern) => RouteSpec { pattern, flags: 0, items: Vec::new(), http_token: false, voucher: false },
            CatalogueEntry::Route(r) => r,
        }),
        prefix,
        &what,
    )
}

/// A catalogue entry: a pattern (no flags, no items), or a route of the filter's route
/// table.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum CatalogueEntry {
    Pattern(String),
    Route(RouteSpec),
}

/// The routes with canonical patterns; a repeated pattern keeps its first entry.
fn canonical(list: impl IntoIterator<Item = RouteSpec>, prefix: &Prefix, what: &str) -> Result<Vec<RouteSpec>, ConfigError> {
    let mut out: Vec<RouteSpec> = Vec::new();
    for spec in list {
        let pattern = ScopePattern::parse(&spec.pattern, prefix).map_err(|e| ConfigError(format!("{what}: {e}")))?;
        let text = pattern.to_string();
        if !out.iter().any(|r| r.pattern == text) {
            out.push(RouteSpec { pattern: text, ..spec });
        }
    }
    Ok(out)
}

/// A user name is 1 to 128 characters, none of them a control character.
pub fn check_username(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        Err("a user name is 1 to 128 characters without control characters")
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://tokengate.db");
        assert_eq!(c.backend, Backend::Sqlite);
        assert_eq!(c.api_prefix, "/api/v1");
        assert_eq!(c.issuer, "tokengate");
        assert_eq!(c.catalogue.len(), DEMO_CATALOGUE.len() + DEMO_HTTP_ROUTES.len());
        assert!(c.proxy_secret.is_none() && c.admin.is_none());
        assert_eq!((c.idle_secs, c.sweep_secs, c.sync_recheck_ms, c.metrics), (8_640_000, 60, 1000, true));
    }

    #[test]
    fn bad_values_say_what_to_fix() {
        assert!(config(&[("TOKENGATE_LISTEN", "nope")]).unwrap_err().0.contains("TOKENGATE_LISTEN"));
        assert!(config(&[("DATABASE_URL", "mysql://x")]).unwrap_err().0.contains("DATABASE_URL"));
        assert!(config(&[("TOKENGATE_ADMIN_USER", "a")]).unwrap_err().0.contains("TOKENGATE_ADMIN_PASSWORD"));
        assert!(config(&[("TOKENGATE_API_PREFIX", "/a b")]).unwrap_err().0.contains("TOKENGATE_API_PREFIX"));
        assert!(config(&[("TOKENGATE_CATALOGUE", "/nonexistent/x.json")]).unwrap_err().0.contains("cannot read"));
        assert!(config(&[("TOKENGATE_IDLE_SECS", "0")]).unwrap_err().0.contains("TOKENGATE_IDLE_SECS"));
        assert!(config(&[("TOKENGATE_SWEEP_SECS", "x")]).unwrap_err().0.contains("TOKENGATE_SWEEP_SECS"));
        assert!(config(&[("TOKENGATE_METRICS", "maybe")]).unwrap_err().0.contains("TOKENGATE_METRICS"));
        assert!(config(&[("TOKENGATE_TLS_CERT", "/x.pem")]).unwrap_err().0.contains("TOKENGATE_TLS_KEY"));
        assert!(config(&[("TOKENGATE_TLS_KEY", "/x.key")]).unwrap_err().0.contains("TOKENGATE_TLS_CERT"));
    }

    /// Issue 10 defect 4: a short (or default-looking) proxy secret is refused unless the
    /// development flag says otherwise; the secret can come from a file.
    #[test]
    fn security_short_proxy_secret_is_refused() {
        let e = config(&[("TOKENGATE_PROXY_SECRET", "tokengate-compose-change-me")]).unwrap_err();
        assert!(e.0.contains("at least 32 bytes"), "{e}");
        let c = config(&[("TOKENGATE_PROXY_SECRET", "short"), ("TOKENGATE_INSECURE_SHORT_PROXY_SECRET", "1")]).unwrap();
        assert_eq!(c.proxy_secret.as_deref(), Some("short"));
        let file = std::env::temp_dir().join(format!("tg-secret-{}", std::process::id()));
        std::fs::write(&file, format!("{}\n", "ab".repeat(32))).unwrap();
        let c = config(&[("TOKENGATE_PROXY_SECRET_FILE", file.to_str().unwrap())]).unwrap();
        assert_eq!(c.proxy_secret.unwrap(), "ab".repeat(32));
        let both = config(&[("TOKENGATE_PROXY_SECRET_FILE", file.to_str().unwrap()), ("TOKENGATE_PROXY_SECRET", &"x".repeat(40))]);
        assert!(both.unwrap_err().0.contains("not both"));
        std::fs::remove_file(&file).unwrap();
        assert!(config(&[("TOKENGATE_PROXY_SECRET_FILE", "/nonexistent/secret")]).unwrap_err().0.contains("cannot read"));
    }

    #[test]
    fn prefix_forms() {
        assert_eq!(config(&[("TOKENGATE_API_PREFIX", "/api/v2/")]).unwrap().api_prefix, "/api/v2");
        assert_eq!(config(&[("TOKENGATE_API_PREFIX", "/")]).unwrap().api_prefix, "");
    }

    #[test]
    fn catalogue_file_takes_patterns_or_routes() {
        let dir = std::env::temp_dir().join(format!("tg-catalogue-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.json");
        std::fs::write(&file, r#"["GET /api/v1/rooms", {"pattern": "DELETE /rooms/:id", "flags": 4096, "items": ["id"]}, "GET /rooms"]"#)
            .unwrap();
        let c = config(&[("TOKENGATE_CATALOGUE", file.to_str().unwrap())]).unwrap();
        assert_eq!(c.catalogue, vec!["GET /rooms", "DELETE /rooms/:id"]);
        assert_eq!(c.routes[1].flags, 4096);
        assert_eq!(c.routes[0].flags, 0);
        std::fs::write(&file, r#"["GET /rooms/:id", {"pattern": "GET /rooms/:x", "flags": 512}]"#).unwrap();
        let e = config(&[("TOKENGATE_CATALOGUE", file.to_str().unwrap())]).unwrap_err();
        assert!(e.0.contains("same shape"), "{e}");
        std::fs::write(&file, r#"["GET /rooms/"]"#).unwrap();
        let e = config(&[("TOKENGATE_CATALOGUE", file.to_str().unwrap())]).unwrap_err();
        assert!(e.0.contains("TOKENGATE_CATALOGUE") && e.0.contains("position"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn debug_hides_secrets() {
        let c = config(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("TOKENGATE_PROXY_SECRET", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t"),
            ("TOKENGATE_ADMIN_USER", "root"),
            ("TOKENGATE_ADMIN_PASSWORD", "pw-pw-pw"),
        ])
        .unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("hunter2") && !text.contains("s3cr3t") && !text.contains("pw-pw-pw"), "{text}");
    }
}
