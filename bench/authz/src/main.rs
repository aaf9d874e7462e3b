//! An Envoy `ext_authz` HTTP service that makes the gate's decision out of process, with
//! the same rule set: Bearer extraction, `rules::token::verify` (cached per token like the
//! filter's local map), `check_time`, revocation by `jti`, `rules::path::split`, prefix
//! strip and scope match. It syncs keys and revocations from the control plane's
//! `GET /sync/v1/changes` (snapshot at start, then long-polls), like the filter's sync VM.
//!
//! Variant G of `bench/run.sh`: the comparison point for "why not ext_authz". One thread
//! (tokio current-thread), HTTP/1.1 keep-alive.
//!
//! Usage: `bench-authz LISTEN CP_ADDR PROXY_SECRET` (addresses as `127.0.0.1:port`).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use hashbrown::HashMap;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokengate_rules::denial::bearer;
use tokengate_rules::path::{query_has_access_token, split};
use tokengate_rules::revocation::RevocationSet;
use tokengate_rules::scope::Prefix;
use tokengate_rules::sync::SyncResponse;
use tokengate_rules::token::{verify, VerifyingKey, MAX_TOKEN_LEN};
use tokengate_rules::{Claims, Denial, KeySet, ScopeSet, TokenError, TokenKind, VerifyPolicy};

struct Verified {
    claims: Claims,
    scopes: Option<ScopeSet>,
}

struct Gate {
    policy: VerifyPolicy,
    prefix: Prefix,
    keys: KeySet,
    revoked: RevocationSet,
    version: u64,
    cache: HashMap<Box<[u8]>, Arc<Verified>>,
}

const CACHE_ENTRIES: usize = 4096;

impl Gate {
    fn apply(&mut self, resp: SyncResponse) {
        let mut keys = KeySet::new();
        for k in &resp.keys {
            if let Ok(vk) = VerifyingKey::from_x(&k.kid, &k.x) {
                keys.insert(vk);
            }
        }
        self.keys = keys;
        if resp.snapshot {
            self.revoked.clear();
        }
        self.revoked.extend(&resp.revoked);
        self.version = resp.version;
    }

    fn check(&mut self, method: &str, path: &str, auth: &[&str], now: u64) -> Result<Vec<(&'static str, String)>, Denial> {
        if auth.len() > 1 || query_has_access_token(path) {
            return Err(Denial::InvalidRequest("multiple_credentials"));
        }
        let token = match auth.first() {
            None => return Err(Denial::MissingToken),
            Some(v) => bearer(v)?.ok_or(Denial::MissingToken)?,
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(Denial::InvalidToken(TokenError::TooLarge));
        }
        let leeway = self.policy.leeway_secs;
        let verified = match self.cache.get(token.as_bytes()) {
            Some(v) => {
                v.claims.check_time(now, leeway).map_err(Denial::InvalidToken)?;
                v.clone()
            }
            None => {
                let (_, claims) = verify(token, &self.keys, &self.policy, now).map_err(Denial::InvalidToken)?;
                let scopes = match &claims.scp {
                    None => None,
                    Some(list) => Some(
                        ScopeSet::parse(list, &self.prefix).map_err(|_| Denial::InvalidToken(TokenError::BadClaims))?,
                    ),
                };
                let v = Arc::new(Verified { claims, scopes });
                if self.cache.len() >= CACHE_ENTRIES {
                    self.cache.clear();
                }
                self.cache.insert(token.as_bytes().into(), v.clone());
                v
            }
        };
        if self.revoked.contains(&verified.claims.jti) {
            return Err(Denial::InvalidToken(TokenError::Revoked));
        }
        let (_, segments) = split(path).map_err(Denial::BadPath)?;
        let scope = match &verified.scopes {
            None => "*".to_owned(),
            Some(set) => self
                .prefix
                .strip(&segments)
                .and_then(|rest| set.find(method, rest))
                .map(ToString::to_string)
                .ok_or(Denial::InsufficientScope)?,
        };
        let c = &verified.claims;
        let mut h = vec![
            ("x-tokengate-subject", c.sub.clone()),
            ("x-tokengate-token-id", c.jti.clone()),
            ("x-tokengate-scope", scope),
        ];
        if let Some(u) = &c.unm {
            h.push(("x-tokengate-user", u.clone()));
        }
        Ok(h)
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

async fn handle(gate: Arc<Mutex<Gate>>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Envoy's HTTP ext_authz keeps the original method and sends the original path.
    let method = req.method().as_str().to_owned();
    let path = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_owned();
    let auth: Vec<&str> = req.headers().get_all("authorization").iter().filter_map(|v| v.to_str().ok()).collect();
    let decision = match gate.lock() {
        Ok(mut g) => g.check(&method, &path, &auth, now_secs()),
        Err(_) => Err(Denial::Unavailable("gate_poisoned")),
    };
    let resp = match decision {
        Ok(headers) => {
            let mut b = Response::builder().status(StatusCode::OK);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Full::new(Bytes::new()))
        }
        Err(d) => {
            let mut b = Response::builder().status(d.status()).header("content-type", "application/json");
            if let Some(w) = d.www_authenticate("tokengate") {
                b = b.header("www-authenticate", w);
            }
            b.body(Full::new(Bytes::from(d.body())))
        }
    };
    Ok(resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new()))))
}

/// One `GET /sync/v1/changes` to the control plane.
async fn fetch_changes(cp: &str, secret: &str, since: u64, wait_ms: u64) -> Result<SyncResponse, String> {
    let stream = tokio::net::TcpStream::connect(cp).await.map_err(|e| format!("connect {cp}: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(format!("/sync/v1/changes?since={since}&wait_ms={wait_ms}&proxy=bench-authz"))
        .header("host", "control-plane")
        .header("authorization", format!("Bearer {secret}"))
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if status != StatusCode::OK {
        return Err(format!("sync answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: bench-authz LISTEN CP_ADDR PROXY_SECRET");
        std::process::exit(2);
    }
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench-authz: runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args[1].clone(), args[2].clone(), args[3].clone())) {
        eprintln!("bench-authz: {e}");
        std::process::exit(1);
    }
}

async fn run(listen: String, cp: String, secret: String) -> Result<(), String> {
    let prefix = Prefix::parse(tokengate_rules::DEFAULT_API_PREFIX).map_err(|e| e.to_string())?;
    let mut gate = Gate {
        policy: VerifyPolicy::new("tokengate", &["tokengate"], &[TokenKind::Api, TokenKind::Session]),
        prefix,
        keys: KeySet::new(),
        revoked: RevocationSet::new(),
        version: 0,
        cache: HashMap::new(),
    };
    gate.apply(fetch_changes(&cp, &secret, 0, 0).await?);
    eprintln!("bench-authz: synced version {} with {} revocations", gate.version, gate.revoked.len());
    let gate = Arc::new(Mutex::new(gate));

    let poller = gate.clone();
    tokio::spawn(async move {
        loop {
            let since = poller.lock().map(|g| g.version).unwrap_or(0);
            match fetch_changes(&cp, &secret, since, 25_000).await {
                Ok(resp) => {
                    if let Ok(mut g) = poller.lock() {
                        if resp.version >= g.version {
                            g.apply(resp);
                        }
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("bind {listen}: {e}"))?;
    eprintln!("bench-authz: listening on {listen}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(_) => continue,
        };
        let _ = stream.set_nodelay(true);
        let gate = gate.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(gate.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
