//! Test harness: every test gets its own database (a fresh SQLite file, plus a fresh
//! PostgreSQL database when `DATABASE_URL` is `postgres://...`) and the real app on an
//! ephemeral port, spoken to over HTTP.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Connection as _;
use tokengate_control_plane::{serve, start, AppState, Config};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN: &str = "admin";
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
pub const PROXY_SECRET: &str = "test-proxy-secret-0123456789abcdef0123456789";

/// What a proxy presents on the sync channel: a bearer derived from the secret.
pub static PROXY_BEARER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| tokengate_rules::sync::ProxyKeys::derive(PROXY_SECRET.as_bytes()).bearer().to_owned());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The backends every test runs against.
pub fn backends() -> Vec<Backend> {
    let mut out = vec![Backend::Sqlite];
    if std::env::var("DATABASE_URL").is_ok_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://")) {
        out.push(Backend::Postgres);
    }
    out
}

/// A database made for one test.
pub struct TestDb {
    pub backend: Backend,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
    /// `TOKENGATE_DATA_DIR` (the voucher keys), kept across restarts.
    pub data_dir: tempfile::TempDir,
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("tokengate.db").display());
                TestDb { backend, url, _dir: Some(dir), pg: None, data_dir: tempfile::tempdir().unwrap() }
            }
            Backend::Postgres => {
                let base = std::env::var("DATABASE_URL").unwrap();
                let name = format!("tg_{}", tokengate_control_plane::tokens::keys::random_id(8));
                let admin_url = with_database(&base, "postgres");
                let mut conn = sqlx::postgres::PgConnection::connect(&admin_url).await.unwrap();
                sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                TestDb {
                    backend,
                    url: with_database(&base, &name),
                    _dir: None,
                    pg: Some((admin_url, name)),
                    data_dir: tempfile::tempdir().unwrap(),
                }
            }
        }
    }

    /// Drops the PostgreSQL database (the SQLite file goes with its temp dir).
    pub async fn cleanup(&self) {
        if let Some((admin_url, name)) = &self.pg {
            let mut conn = sqlx::postgres::PgConnection::connect(admin_url).await.unwrap();
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
    }
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..host_end])
}

/// The running app.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub db: Arc<TestDb>,
    vars: HashMap<String, String>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

/// Runs `test` once per backend, each time on a fresh database.
pub async fn run<F, Fut>(test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    run_with(&[], test).await;
}

/// Like [`run`], with extra environment variables for the config.
pub async fn run_with<F, Fut>(vars: &[(&str, &str)], test: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    for backend in backends() {
        let db = Arc::new(TestDb::create(backend).await);
        eprintln!("-- on {:?}", db.backend);
        let app = TestApp::spawn(db.clone(), vars).await;
        test(app).await;
        db.cleanup().await;
    }
}

impl TestApp {
    pub async fn spawn(db: Arc<TestDb>, extra: &[(&str, &str)]) -> TestApp {
        let mut vars: HashMap<String, String> = [
            ("DATABASE_URL", db.url.as_str()),
            ("TOKENGATE_ADMIN_USER", ADMIN),
            ("TOKENGATE_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("TOKENGATE_PROXY_SECRET", PROXY_SECRET),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        vars.insert("TOKENGATE_DATA_DIR".into(), db.data_dir.path().display().to_string());
        for (k, v) in extra {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        TestApp::spawn_vars(db, vars).await
    }

    async fn spawn_vars(db: Arc<TestDb>, vars: HashMap<String, String>) -> TestApp {
        let config = Config::from_lookup(|k| vars.get(k).cloned()).unwrap();
        let (state, _generated) = start(config).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server_state = state.clone();
        let server = tokio::spawn(async move {
            serve(server_state, listener, async move {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().unwrap();
        TestApp { base, client, state, db, vars, stop: Some(stop), server: Some(server) }
    }

    /// Stops this app and starts a new one on the same database.
    pub async fn restart(mut self) -> TestApp {
        self.shutdown().await;
        let db = self.db.clone();
        let vars = self.vars.clone();
        TestApp::spawn_vars(db, vars).await
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap();
        }
        self.state.pool.close().await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; `body` as JSON when given. Returns the status, headers and JSON
    /// body (`Value::Null` when empty).
    pub async fn call(&self, method: Method, path: &str, token: Option<&str>, body: Option<&Value>) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        Reply::from(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> Reply {
        self.call(Method::DELETE, path, Some(token), None).await
    }

    /// `POST /api/v1/auth`.
    pub async fn auth(&self, body: &Value) -> Reply {
        self.post("/api/v1/auth", None, body).await
    }

    /// An admin token with these scopes (`None`: all powers) and lifetime.
    pub async fn admin_token(&self, scopes: Option<&[&str]>, expires_in: Option<&str>) -> Value {
        let mut body = json!({"username": ADMIN, "password": ADMIN_PASSWORD});
        if let Some(s) = scopes {
            body["scopes"] = json!(s);
        }
        if let Some(e) = expires_in {
            body["expiresIn"] = json!(e);
        }
        let r = self.auth(&body).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body
    }

    /// A child of `parent` (`POST /api/v1/tokens`).
    pub async fn child(&self, parent: &str, body: &Value) -> Reply {
        self.post("/api/v1/tokens", Some(parent), body).await
    }

    /// The `_id`s `GET /api/v1/tokens` lists for `token`.
    pub async fn listed_ids(&self, token: &str) -> Vec<String> {
        let r = self.get("/api/v1/tokens", token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body.as_array().unwrap().iter().map(|t| t["_id"].as_str().unwrap().to_owned()).collect()
    }

    /// How many token rows exist, revoked or not (to prove nothing was written).
    pub async fn token_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM tokens").fetch_one(&self.state.pool).await.unwrap()
    }

    /// `GET /sync/v1/changes` with the proxy secret.
    pub async fn sync(&self, since: u64, wait_ms: u64) -> Reply {
        self.sync_as(since, wait_ms, Some(&PROXY_BEARER)).await
    }

    /// A sync call presenting `bearer`; a 200 answer's MAC is checked as a proxy does.
    pub async fn sync_as(&self, since: u64, wait_ms: u64, bearer: Option<&str>) -> Reply {
        let nonce = format!("t.{:x}", rand::random::<u64>());
        let mut req =
            self.client.get(self.url(&format!("/sync/v1/changes?since={since}&wait_ms={wait_ms}&proxy=test-proxy&nonce={nonce}")));
        if let Some(s) = bearer {
            req = req.bearer_auth(s);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        let bytes = r.bytes().await.unwrap();
        if status == StatusCode::OK {
            let mac = headers.get(tokengate_rules::sync::MAC_HEADER).map(|v| v.to_str().unwrap().to_owned());
            let keys = tokengate_rules::sync::ProxyKeys::derive(PROXY_SECRET.as_bytes());
            assert!(keys.check_answer_mac(&nonce, &bytes, mac.as_deref().unwrap_or_default()), "the sync answer's MAC does not check");
        }
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Reply { status, headers, body }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub async fn from(r: reqwest::Response) -> Reply {
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&bytes)))
        };
        Reply { status, headers, body }
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Asserts an error answer: status, code and the three-field body.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.code(), code, "{}", self.body);
        let obj = self.body.as_object().unwrap();
        assert_eq!(obj.len(), 3, "{}", self.body);
        assert!(obj["error"].is_string() && obj["message"].is_string(), "{}", self.body);
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A token of the admin user issued with flags and items (seed 001) straight through
/// `tokens::issue`; `expires_in_ms` may be negative (an expired token).
pub async fn issue_limited(
    app: &TestApp,
    scopes: Option<&[&str]>,
    fl: Option<i64>,
    items: Option<Vec<i64>>,
    expires_in_ms: i64,
) -> tokengate_control_plane::http::wire::IssuedToken {
    let (account_id, user_id): (String, String) =
        sqlx::query_as("SELECT account_id, id FROM users WHERE name = 'admin'").fetch_one(&app.state.pool).await.unwrap();
    let now = now_ms();
    let scopes = scopes.map(|s| tokengate_rules::ScopeSet::parse(s, &app.state.prefix).unwrap());
    tokengate_control_plane::tokens::issue(
        &app.state,
        tokengate_control_plane::tokens::NewToken {
            id: tokengate_control_plane::tokens::keys::random_id(12),
            kind: tokengate_rules::TokenKind::Api,
            role: None,
            account_id,
            user_id,
            user_name: ADMIN.into(),
            parent_id: None,
            name: None,
            scopes,
            fl,
            items,
            app: Some("tracker".into()),
            p: None,
            issued_at_ms: now - 3_600_000,
            not_before_ms: now - 3_600_000,
            expires_at_ms: now + expires_in_ms,
            dur: None,
        },
        &tokengate_control_plane::audit::Actor::system(),
        &[],
    )
    .await
    .unwrap()
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    tokengate_control_plane::db::now_ms()
}

/// Declares tests that each run once per backend: `each_db!(name, ...)` wraps the async
/// functions `name(app: TestApp)` of the calling module.
#[macro_export]
macro_rules! each_db {
    ($($name:ident),* $(,)?) => {
        mod each_db {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    $crate::helpers::run(super::$name).await;
                }
            )*
        }
    };
}
