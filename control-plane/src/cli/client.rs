//! The HTTP client of the command line: endpoint and token resolution (flag > environment
//! > config file), one call per subcommand, and the mapping of answers to exit codes.

use std::path::PathBuf;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The default endpoint: the server's default `TOKENGATE_LISTEN` (config.rs).
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8080";

/// Exit codes (README "Command line"; `tokengate --help`).
pub const EXIT_REFUSED: u8 = 3;
pub const EXIT_UNAUTHENTICATED: u8 = 4;
pub const EXIT_UNREACHABLE: u8 = 5;

/// A failure of the command line: what to print and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub exit: u8,
    pub message: String,
    /// The HTTP status when the API refused.
    pub status: Option<u16>,
}

impl CliError {
    pub fn new(exit: u8, message: impl Into<String>) -> Self {
        CliError { exit, message: message.into(), status: None }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        CliError::new(2, message)
    }

    fn not_logged_in() -> Self {
        CliError::new(EXIT_UNAUTHENTICATED, "not logged in: run `tokengate login`, or set TOKENGATE_TOKEN or --token")
    }
}

/// `config.toml` in the platform config dir (`$XDG_CONFIG_HOME/tokengate/` on Linux).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ConfigFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A PEM file of the CA that signed the control plane's certificate (for https
    /// endpoints with a private CA, such as the one scripts/gen-tls.sh makes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<PathBuf>,
}

impl ConfigFile {
    pub fn path() -> Result<PathBuf, CliError> {
        dirs::config_dir()
            .map(|d| d.join("tokengate").join("config.toml"))
            .ok_or_else(|| CliError::usage("no config directory: set XDG_CONFIG_HOME or HOME"))
    }

    pub fn load() -> Result<Self, CliError> {
        let path = Self::path()?;
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| CliError::usage(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(CliError::usage(format!("{}: {e}", path.display()))),
        }
    }

    /// Writes the file with mode 0600 (it holds a bearer token), replacing it whole.
    pub fn save(&self) -> Result<PathBuf, CliError> {
        let path = Self::path()?;
        let fail = |e: std::io::Error| CliError::new(1, format!("cannot write {}: {e}", path.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = toml::to_string(self).map_err(|e| CliError::new(1, e.to_string()))?;
        let tmp = path.with_extension("toml.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
            options.mode(0o600);
            let file = options.open(&tmp).map_err(fail)?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
            drop(file);
        }
        std::fs::write(&tmp, text).map_err(fail)?;
        #[cfg(not(unix))]
        let _ = options;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        Ok(path)
    }
}

/// An answer of the API that was not refused.
pub struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    /// The body in a wire type, or exit 5 (the endpoint is not a tokengate of this version).
    pub fn typed<T: serde::de::DeserializeOwned>(&self) -> Result<T, CliError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CliError::new(EXIT_UNREACHABLE, format!("unexpected answer from the endpoint ({e}); is it a tokengate control plane?"))
        })
    }

    pub fn json(&self) -> Result<Value, CliError> {
        self.typed()
    }
}

pub struct Client {
    http: reqwest::Client,
    /// Endpoint plus API prefix, without a trailing slash.
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(endpoint: &str, prefix: &str, token: Option<String>, ca_cert: Option<&std::path::Path>) -> Result<Self, CliError> {
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(CliError::usage(format!("the endpoint {endpoint:?} must start with http:// or https://")));
        }
        let mut builder = reqwest::Client::builder().user_agent(concat!("tokengate-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_cert {
            let pem =
                std::fs::read(path).map_err(|e| CliError::usage(format!("cannot read the CA certificate {}: {e}", path.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| CliError::usage(format!("{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| CliError::new(1, e.to_string()))?;
        let base = format!("{}/{}", endpoint.trim_end_matches('/'), prefix.trim_matches('/'));
        Ok(Client { http, base: base.trim_end_matches('/').to_owned(), token })
    }

    /// A call that needs the token.
    pub async fn call(&self, method: Method, path: &str, query: &[(&str, String)], body: Option<&Value>) -> Result<Reply, CliError> {
        let token = self.token.as_deref().ok_or_else(CliError::not_logged_in)?;
        self.send(method, path, query, body, Some(token)).await
    }

    /// A call without a token (`POST /auth`).
    pub async fn open(&self, method: Method, path: &str, body: &Value) -> Result<Reply, CliError> {
        self.send(method, path, &[], Some(body), None).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Reply, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).query(query);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = request.send().await.map_err(|e| CliError::new(EXIT_UNREACHABLE, unreachable(&self.base, &e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| CliError::new(EXIT_UNREACHABLE, format!("the answer from {} broke off: {}", self.base, root_cause(&e))))?
            .to_vec();
        if status.is_success() {
            return Ok(Reply { status, body });
        }
        Err(refusal(status, &body))
    }
}

/// Why a request got no answer, and what to do about it.
fn unreachable(base: &str, e: &reqwest::Error) -> String {
    let cause = root_cause(e);
    let lower = cause.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("invalid peer") {
        format!(
            "cannot reach {base}: its TLS certificate is not trusted ({cause}); give the CA that signed it with --ca-cert <ca.pem> (or TOKENGATE_CA_CERT, or ca_cert in the config file)"
        )
    } else {
        format!("cannot reach {base}: {cause}; check --endpoint / TOKENGATE_ENDPOINT")
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut last = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// The API's `{"error","code","message"}` as an error with the exit code and a hint.
fn refusal(status: StatusCode, body: &[u8]) -> CliError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k)).and_then(Value::as_str).map(str::to_owned);
    let code = field("code").unwrap_or_else(|| status.as_str().to_owned());
    let message = field("message").unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    let (exit, hint) = if status == StatusCode::UNAUTHORIZED {
        (EXIT_UNAUTHENTICATED, "run `tokengate login` (or check TOKENGATE_TOKEN / --token)")
    } else if status == StatusCode::FORBIDDEN {
        (EXIT_REFUSED, "your token lacks the scope or your user the role; ask an admin, or log in with another user")
    } else if status == StatusCode::NOT_FOUND {
        (EXIT_REFUSED, "check the id (list them first), or the endpoint's API prefix (--prefix)")
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        (EXIT_REFUSED, "wait and try again")
    } else if status.is_client_error() {
        (EXIT_REFUSED, "fix the arguments; `tokengate <command> --help` lists them")
    } else {
        (EXIT_UNREACHABLE, "the control plane failed; try again, or see its logs")
    };
    CliError { exit, message: format!("{} {code}: {message}\n  {hint}", status.as_u16()), status: Some(status.as_u16()) }
}
