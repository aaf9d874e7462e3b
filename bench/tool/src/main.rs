//! `tg-bench`: the benchmark's helper binary (see `bench/run.sh`).
//!
//! ```text
//! tg-bench login  --cp ADDR --user U --password P [--expires E] [--scopes "A,B"]  -> "id token"
//! tg-bench issue  --cp ADDR --token T --count N --concurrency C --out TOKENS --ids IDS [--scopes "A,B"] [--expires E]
//! tg-bench revoke --cp ADDR --token T --ids IDS --count N --concurrency C
//! tg-bench list   --cp ADDR --token T
//! tg-bench logins --cp ADDR --user U --credentials C --kind password|pin|token --count N --concurrency C  (seed-002 POST /login)
//!   [--credentials-file F (one login per line instead of --credentials/--count)] [--out F (each tokenForHttpServer)]
//! tg-bench redeem --cp ADDR --codes FILE --network N --count N --concurrency C --mode new|renew --run K  (seed-000 vouchers, see vouchers.rs)
//! tg-bench load   --addr ADDR --rate R --secs S --connections C --tokens FILE [--offset K] --path P
//! tg-bench propagate --cp ADDR --token T --proxies A,B,C --admins A,B,C --ids IDS --tokens FILE --warm FILE --path P --out FILE  (see propagate.rs)
//! tg-bench fanout --cp A1[,A2] --write-cp ADDR --token T --secret S --proxies N --ids IDS --rate R --secs S --cp-pids P1[,P2]  (see fanout.rs)
//! tg-bench soak   --cp ADDR --token T --proxy ADDR --admin ADDR --envoy-pid PID --secs S --csv FILE --revocations FILE --path P  (see soak.rs)
//! tg-bench render --variant A..G --template envoy/envoy.yaml --out FILE ...
//! tg-bench report --results FILE
//! ```
//! Every measuring subcommand prints one JSON object on stdout.

mod fanout;
mod http;
mod load;
mod propagate;
mod render;
mod report;
mod soak;
mod vouchers;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use http::Conn;
use serde_json::{json, Value};

pub struct Args(HashMap<String, String>);

impl Args {
    fn parse(list: &[String]) -> Result<Args, String> {
        let mut m = HashMap::new();
        let mut it = list.iter();
        while let Some(k) = it.next() {
            let key = k.strip_prefix("--").ok_or_else(|| format!("expected --option, got {k}"))?;
            let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            m.insert(key.to_owned(), v.clone());
        }
        Ok(Args(m))
    }
    pub fn get(&self, k: &str) -> Result<&str, String> {
        self.0.get(k).map(String::as_str).ok_or_else(|| format!("missing --{k}"))
    }
    pub fn opt(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    pub fn num<T: std::str::FromStr>(&self, k: &str) -> Result<T, String> {
        self.get(k)?.parse().map_err(|_| format!("--{k} must be a number"))
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let Some(cmd) = argv.get(1).cloned() else {
        eprintln!("usage: tg-bench login|issue|revoke|list|logins|redeem|load|propagate|fanout|soak|render|report --option value ...");
        std::process::exit(2);
    };
    let result = Args::parse(&argv[2..]).and_then(|args| run(&cmd, &args));
    match result {
        Ok(Some(v)) => println!("{v}"),
        Ok(None) => {}
        Err(e) => {
            eprintln!("tg-bench {cmd}: {e}");
            std::process::exit(1);
        }
    }
}

fn run(cmd: &str, args: &Args) -> Result<Option<Value>, String> {
    match cmd {
        "render" => render::render(args).map(|_| None),
        "report" => report::report(args).map(|_| None),
        _ => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async {
                match cmd {
                    "login" => login(args).await,
                    "issue" => issue(args).await.map(Some),
                    "revoke" => revoke(args).await.map(Some),
                    "list" => list(args).await.map(Some),
                    "logins" => logins(args).await.map(Some),
                    "redeem" => vouchers::redeem(args).await.map(Some),
                    "load" => load::load(args).await.map(Some),
                    "propagate" => propagate::propagate(args).await.map(Some),
                    "soak" => soak::soak(args).await.map(Some),
                    "fanout" => fanout::fanout(args).await.map(Some),
                    _ => Err(format!("unknown subcommand {cmd}")),
                }
            })
        }
    }
}

fn scopes(args: &Args) -> Option<Vec<String>> {
    args.opt("scopes").map(|s| s.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect())
}

fn ok_json(a: &http::Answer, what: &str) -> Result<Value, String> {
    if !(200..300).contains(&a.status) {
        return Err(format!("{what} answered {}: {}", a.status, String::from_utf8_lossy(&a.body)));
    }
    serde_json::from_slice(&a.body).map_err(|e| format!("{what}: {e}"))
}

async fn login(args: &Args) -> Result<Option<Value>, String> {
    let mut body = json!({"username": args.get("user")?, "password": args.get("password")?});
    if let Some(e) = args.opt("expires") {
        body["expiresIn"] = json!(e);
    }
    if let Some(s) = scopes(args) {
        body["scopes"] = json!(s);
    }
    let mut c = Conn::new(args.get("cp")?);
    let a = c.call("POST", "/api/v1/auth", &[], Some(body.to_string())).await?;
    let v = ok_json(&a, "POST /api/v1/auth")?;
    println!("{} {}", v["_id"].as_str().unwrap_or_default(), v["token"].as_str().unwrap_or_default());
    Ok(None)
}

/// Runs `count` jobs over `concurrency` keep-alive connections; returns the seconds taken.
async fn fan_out<F, Fut>(addr: &str, count: usize, concurrency: usize, job: F) -> Result<f64, String>
where
    F: Fn(Rc<RefCell<Conn>>, usize) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + 'static,
{
    let next = Rc::new(RefCell::new(0usize));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.max(1) {
        let next = next.clone();
        let job = job.clone();
        let conn = Rc::new(RefCell::new(Conn::new(addr)));
        tasks.push(tokio::task::spawn_local(async move {
            loop {
                let i = {
                    let mut n = next.borrow_mut();
                    let i = *n;
                    *n += 1;
                    i
                };
                if i >= count {
                    return Ok::<(), String>(());
                }
                job(conn.clone(), i).await?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())??;
    }
    Ok(start.elapsed().as_secs_f64())
}

/// `count` seed-002 logins over `concurrency` connections: the rate and the latency
/// percentiles of each call.
// `fan_out` gives each of its tasks its own connection, so a connection's borrow held
// across the call's await is never contended.
#[allow(clippy::await_holding_refcell_ref)]
async fn logins(args: &Args) -> Result<Value, String> {
    let concurrency: usize = args.num("concurrency")?;
    let kind = args.get("kind")?.to_owned();
    // `--credentials-file`: login i presents line i (one login per line); else every
    // login presents `--credentials`, `--count` times.
    let credentials: Rc<Vec<String>> = Rc::new(match args.opt("credentials-file") {
        Some(f) => {
            std::fs::read_to_string(f).map_err(|e| format!("{f}: {e}"))?.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
        }
        None => vec![args.get("credentials")?.to_owned()],
    });
    let count: usize = if args.opt("credentials-file").is_some() { credentials.len() } else { args.num("count")? };
    let mut body = json!({"method": "auth", "type": "secured", "credentialsKind": kind});
    if kind != "token" {
        body["username"] = json!(args.get("user")?);
    }
    // `--out`: each login's tokenForHttpServer, one a line, in the order of the credentials.
    let http_tokens: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(vec![String::new(); count]));
    let http_sink = http_tokens.clone();
    let times: Rc<RefCell<Vec<f64>>> = Rc::new(RefCell::new(Vec::with_capacity(count)));
    let sink = times.clone();
    // Each client its own source address (the control plane trusts loopback's
    // x-forwarded-for): the throttle counts attempts in flight per source and user, so 16
    // concurrent logins from one address would be throttled as a burst.
    let secs = fan_out(args.get("cp")?, count, concurrency, move |conn, i| {
        let mut body = body.clone();
        body["credentials"] = json!(credentials[i % credentials.len()]);
        let body = body.to_string();
        let (sink, http_sink) = (sink.clone(), http_sink.clone());
        let source = format!("198.51.100.{}", i % concurrency.max(1) + 1);
        async move {
            let t = Instant::now();
            let a = conn.borrow_mut().call("POST", "/api/v1/login", &[("x-forwarded-for", &source)], Some(body)).await?;
            let v = ok_json(&a, "POST /api/v1/login")?;
            sink.borrow_mut().push(t.elapsed().as_secs_f64() * 1000.0);
            http_sink.borrow_mut()[i] = v["tokenForHttpServer"].as_str().unwrap_or_default().to_owned();
            Ok(())
        }
    })
    .await?;
    if let Some(out) = args.opt("out") {
        let lines: String = http_tokens.borrow().iter().map(|t| format!("{t}\n")).collect();
        std::fs::write(out, lines).map_err(|e| format!("{out}: {e}"))?;
    }
    let mut t = times.borrow().clone();
    t.sort_by(f64::total_cmp);
    let pct = |q: f64| t.get(((t.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
    Ok(json!({"op": "logins", "kind": kind, "count": count, "concurrency": concurrency, "secs": secs,
        "per_sec": count as f64 / secs, "p50_ms": pct(0.50), "p99_ms": pct(0.99)}))
}

// `fan_out` gives each of its tasks its own connection, so a connection's borrow held
// across the call's await is never contended.
#[allow(clippy::await_holding_refcell_ref)]
async fn issue(args: &Args) -> Result<Value, String> {
    let count: usize = args.num("count")?;
    let concurrency: usize = args.num("concurrency")?;
    let bearer = format!("Bearer {}", args.get("token")?);
    let mut body = json!({"expiresIn": args.opt("expires").unwrap_or("7 days")});
    if let Some(s) = scopes(args) {
        body["scopes"] = json!(s);
    }
    let body = body.to_string();
    let out: Rc<RefCell<Vec<(String, String)>>> = Rc::new(RefCell::new(Vec::with_capacity(count)));
    let sink = out.clone();
    let secs = fan_out(args.get("cp")?, count, concurrency, move |conn, _| {
        let bearer = bearer.clone();
        let body = body.clone();
        let sink = sink.clone();
        async move {
            let a = conn.borrow_mut().call("POST", "/api/v1/tokens", &[("authorization", &bearer)], Some(body)).await?;
            let v = ok_json(&a, "POST /api/v1/tokens")?;
            let id = v["_id"].as_str().unwrap_or_default().to_owned();
            let token = v["token"].as_str().unwrap_or_default().to_owned();
            sink.borrow_mut().push((id, token));
            Ok(())
        }
    })
    .await?;
    let out = out.borrow();
    let tokens: String = out.iter().map(|(_, t)| format!("{t}\n")).collect();
    let ids: String = out.iter().map(|(i, _)| format!("{i}\n")).collect();
    std::fs::write(args.get("out")?, tokens).map_err(|e| e.to_string())?;
    std::fs::write(args.get("ids")?, ids).map_err(|e| e.to_string())?;
    Ok(json!({"op": "issue", "count": count, "concurrency": concurrency, "secs": secs, "per_sec": count as f64 / secs}))
}

// `fan_out` gives each of its tasks its own connection, so a connection's borrow held
// across the call's await is never contended.
#[allow(clippy::await_holding_refcell_ref)]
async fn revoke(args: &Args) -> Result<Value, String> {
    let concurrency: usize = args.num("concurrency")?;
    let bearer = format!("Bearer {}", args.get("token")?);
    let text = std::fs::read_to_string(args.get("ids")?).map_err(|e| e.to_string())?;
    let ids: Rc<Vec<String>> = Rc::new(text.lines().map(str::to_owned).collect());
    let count = args.opt("count").and_then(|c| c.parse().ok()).unwrap_or(ids.len()).min(ids.len());
    // A 503 ("retry shortly") is retried up to 3 times, as a client would; what still
    // fails is counted, not fatal, so a lock-up shows in the figures.
    let (retries, failed) = (Rc::new(RefCell::new(0u64)), Rc::new(RefCell::new(0u64)));
    let (retried, failures) = (retries.clone(), failed.clone());
    let secs = fan_out(args.get("cp")?, count, concurrency, move |conn, i| {
        let bearer = bearer.clone();
        let ids = ids.clone();
        let (retried, failures) = (retried.clone(), failures.clone());
        async move {
            let path = format!("/api/v1/tokens/{}", ids[i]);
            for attempt in 0..4 {
                let a = conn.borrow_mut().call("DELETE", &path, &[("authorization", &bearer)], None).await?;
                match a.status {
                    204 => return Ok(()),
                    503 if attempt < 3 => {
                        *retried.borrow_mut() += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                    503 => *failures.borrow_mut() += 1,
                    s => return Err(format!("DELETE answered {s}: {}", String::from_utf8_lossy(&a.body))),
                }
            }
            Ok(())
        }
    })
    .await?;
    let (retries, failed) = (*retries.borrow(), *failed.borrow());
    let done = count as u64 - failed;
    Ok(json!({"op": "revoke", "count": done, "failed": failed, "concurrency": concurrency, "secs": secs,
              "per_sec": done as f64 / secs, "retries_503": retries}))
}

async fn list(args: &Args) -> Result<Value, String> {
    let bearer = format!("Bearer {}", args.get("token")?);
    let mut c = Conn::new(args.get("cp")?);
    let start = Instant::now();
    let (mut count, mut pages, mut after) = (0usize, 0usize, String::new());
    let mut slowest = 0f64;
    loop {
        let path =
            if after.is_empty() { "/api/v1/tokens?limit=1000".to_owned() } else { format!("/api/v1/tokens?limit=1000&after={after}") };
        let t = Instant::now();
        let a = c.call("GET", &path, &[("authorization", &bearer)], None).await?;
        slowest = slowest.max(t.elapsed().as_secs_f64());
        let v = ok_json(&a, "GET /api/v1/tokens")?;
        let page = v.as_array().ok_or("the token list is not an array")?;
        pages += 1;
        count += page.len();
        match page.last().and_then(|t| t["_id"].as_str()) {
            Some(id) if page.len() == 1000 => after = id.to_owned(),
            _ => break,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(json!({"op": "list", "count": count, "pages": pages, "secs": secs, "slowest_page_ms": slowest * 1000.0}))
}
