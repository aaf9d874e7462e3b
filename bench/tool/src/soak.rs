//! The soak (issue 10 §4; run by `bench/soak.sh`): token churn and revocation churn
//! through one Envoy for a long time, watching its memory and every revoked token.
//!
//! ```text
//! tg-bench soak --cp ADDR --token ADMIN --proxy ADDR --admin ADDR --envoy-pid PID
//!     --secs S --csv FILE --revocations FILE.jsonl --path P
//!     [--cp-pid PID] [--rate 200] [--connections 8] [--pool 3000] [--issue-rate 8]
//!     [--revoke-rate 1] [--bound-ms 1000] [--probes 3] [--probe-gap-ms 100] [--workers 2]
//!     [--sample-secs 60] [--scopes "GET /objects/:id"] [--expires "1 day"]
//! ```
//!
//! 1. Pins one keep-alive probe connection on each of the proxy's `workers` worker
//!    threads (the per-worker listener counter tells which worker took a connection, as
//!    in `propagate.rs`), then issues `pool` tokens (`POST /api/v1/tokens` on the control
//!    plane with the admin token, 4 at a time): the live pool.
//! 2. For `secs`, all at once, on one thread:
//!    - issuing: `issue-rate` new tokens a second join the pool; past `pool` tokens the
//!      oldest one leaves it (retired: no longer sent, not revoked);
//!    - load: `rate` req/s (open loop, due times as in `load.rs`) of GET `path` over
//!      `connections` keep-alive connections to the proxy, each with a token drawn at
//!      random from the pool, so the workers' local caches (4096 entries) and the shared
//!      claims slots (8192) see many more distinct tokens than they hold;
//!    - revoking: `revoke-rate` times a second a token drawn from the pool leaves it; each
//!      probe connection first gets 200 with it (so both workers hold it in their local
//!      cache), then `DELETE /api/v1/tokens/:id` (a 503 is retried up to 3 times), then,
//!      `bound-ms` after its 204, every probe connection sends it `probes` times
//!      (`probe-gap-ms` apart). A 200 there is a late acceptance; anything but 401
//!      `token_revoked` is counted as odd;
//!    - sampling, at 0 and every `sample-secs`: Envoy's VmRSS and VmHWM
//!      (`/proc/<pid>/status`), the size and resident part of its Wasm linear memories
//!      (`/proc/<pid>/smaps`: V8 reserves each with its guard region, ~8 GiB, and makes
//!      the current pages read-write; Envoy's stats have no memory figure), its `wasm*` stats and
//!      `server.memory_*`, the filter's `wasmcustom.tokengate.*`, the control plane's RSS,
//!      and this run's counters: one CSV row and one log line (stderr).
//! 3. After the run, every token revoked during it is sent once more on every probe
//!    connection (the final sweep): a 200 is a late acceptance too, counted apart.
//!
//! One JSON line per revocation goes to `revocations`; a summary JSON object to stdout.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use crate::http::Conn;
use crate::Args;

struct Tok {
    id: String,
    bearer: String,
    used: Cell<bool>,
}

/// xorshift64*: enough to spread picks, no dependency.
struct Rng(Cell<u64>);

impl Rng {
    fn below(&self, n: usize) -> usize {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1) as u64) as usize
    }
}

#[derive(Default)]
struct Counters {
    issued: u64,
    issue_failures: u64,
    retired: u64,
    distinct_used: u64,
    sent: u64,
    ok: u64,
    non_2xx: BTreeMap<u16, u64>,
    errors: u64,
    minute_latencies_us: Vec<u32>,
    latencies_us: Vec<u32>,
    revocations: u64,
    delete_failures: u64,
    delete_retries: u64,
    delete_ms: Vec<f64>,
    precheck_failures: u64,
    probes: u64,
    late: u64,
    odd: u64,
    revoked: Vec<Rc<Tok>>,
}

struct Shared {
    pool: RefCell<VecDeque<Rc<Tok>>>,
    c: RefCell<Counters>,
    rng: Rng,
    stop: Cell<bool>,
}

/// A keep-alive connection that never reconnects: it stays on the worker that accepted it.
struct Pinned {
    sender: SendRequest<Full<Bytes>>,
    worker: usize,
}

async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::task::spawn_local(conn);
    Ok(sender)
}

async fn get(sender: &mut SendRequest<Full<Bytes>>, path: &str, bearer: &str) -> Result<(u16, Bytes), String> {
    let req = Request::builder()
        .method("GET")
        .uri(path)
        .header("host", "bench")
        .header("authorization", bearer)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    sender.ready().await.map_err(|e| format!("probe connection lost: {e}"))?;
    let resp = sender.send_request(req).await.map_err(|e| format!("probe connection lost: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, body))
}

async fn worker_totals(admin: &str, workers: usize) -> Result<Vec<u64>, String> {
    let mut c = Conn::new(admin);
    let a = c.call("GET", "/stats?filter=worker_[0-9]+\\.downstream_cx_total", &[], None).await?;
    let text = String::from_utf8_lossy(&a.body);
    let mut totals = vec![0u64; workers];
    for line in text.lines() {
        let Some(rest) = line.split(".worker_").nth(1) else { continue };
        let Some((n, tail)) = rest.split_once('.') else { continue };
        if !tail.starts_with("downstream_cx_total:") || line.starts_with("listener.admin") {
            continue;
        }
        let (Ok(n), Some(v)) = (n.parse::<usize>(), tail.split(':').nth(1)) else { continue };
        if n < workers {
            totals[n] += v.trim().parse::<u64>().unwrap_or(0);
        }
    }
    Ok(totals)
}

async fn pin(addr: &str, admin: &str, workers: usize, path: &str) -> Result<Vec<Pinned>, String> {
    let mut pinned: Vec<Pinned> = Vec::new();
    for _ in 0..64 {
        if pinned.len() == workers {
            pinned.sort_by_key(|p| p.worker);
            return Ok(pinned);
        }
        let before = worker_totals(admin, workers).await?;
        let mut sender = connect(addr).await?;
        get(&mut sender, path, "Bearer pin").await?;
        let after = worker_totals(admin, workers).await?;
        let grew: Vec<usize> = (0..workers).filter(|&w| after[w] > before[w]).collect();
        if let [w] = grew[..] {
            if !pinned.iter().any(|p| p.worker == w) {
                pinned.push(Pinned { sender, worker: w });
            }
        }
    }
    Err(format!("{addr}: could not get a connection on each of {workers} workers in 64 tries"))
}

fn pct_f(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    Some(sorted[rank.min(sorted.len()) - 1])
}

fn pct_ms(v: &mut [u32], p: f64) -> Option<f64> {
    v.sort_unstable();
    let f: Vec<f64> = v.iter().map(|&u| f64::from(u) / 1000.0).collect();
    pct_f(&f, p)
}

async fn issue_one(conn: &mut Conn, bearer: &str, body: &str) -> Result<Tok, String> {
    let a = conn.call("POST", "/api/v1/tokens", &[("authorization", bearer)], Some(body.to_owned())).await?;
    if a.status != 200 && a.status != 201 {
        return Err(format!("POST /api/v1/tokens answered {}: {}", a.status, String::from_utf8_lossy(&a.body)));
    }
    let v: Value = serde_json::from_slice(&a.body).map_err(|e| format!("POST /api/v1/tokens: {e}"))?;
    let id = v["_id"].as_str().ok_or("no _id in the answer")?.to_owned();
    let token = v["token"].as_str().ok_or("no token in the answer")?;
    Ok(Tok { id, bearer: format!("Bearer {token}"), used: Cell::new(false) })
}

fn kb_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse().ok()
}

/// (VmRSS kB, VmHWM kB) of a process.
fn rss(pid: Option<u32>) -> (Option<u64>, Option<u64>) {
    let Some(pid) = pid else { return (None, None) };
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return (None, None) };
    (kb_field(&text, "VmRSS:"), kb_field(&text, "VmHWM:"))
}

/// V8 reserves each Wasm linear memory with its guard region as one anonymous mapping of
/// about 8 GiB and makes the memory's current pages read-write: in `/proc/<pid>/smaps`
/// that is an `rw-p` anonymous mapping directly followed by a `---p` one of several GiB.
/// Returns (memories, their summed size kB, their summed Rss kB).
fn wasm_memories(pid: u32) -> (u64, u64, u64) {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else { return (0, 0, 0) };
    // (lo, hi, perms, anonymous, rss kB) per mapping.
    let mut maps: Vec<(u64, u64, String, bool, u64)> = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let Some(first) = parts.next() else { continue };
        if let Some((lo, hi)) = first.split_once('-') {
            if let (Ok(lo), Ok(hi)) = (u64::from_str_radix(lo, 16), u64::from_str_radix(hi, 16)) {
                // "start-end perms offset dev inode [path]": anonymous when no path.
                let perms = parts.next().unwrap_or_default().to_owned();
                let anonymous = parts.nth(3).is_none();
                maps.push((lo, hi, perms, anonymous, 0));
                continue;
            }
        }
        if first == "Rss:" {
            if let Some(m) = maps.last_mut() {
                m.4 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            }
        }
    }
    let (mut n, mut size_kb, mut rss_kb) = (0u64, 0u64, 0u64);
    for w in maps.windows(2) {
        let (mem, guard) = (&w[0], &w[1]);
        let is_guard = guard.3 && guard.2.starts_with("---") && guard.1 - guard.0 >= 4 << 30;
        if is_guard && mem.3 && mem.2.starts_with("rw") && mem.1 == guard.0 {
            n += 1;
            size_kb += (mem.1 - mem.0) / 1024;
            rss_kb += mem.4;
        }
    }
    (n, size_kb, rss_kb)
}

fn parse_stats(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(": "))
        .filter(|(_, v)| !v.starts_with("P0") && !v.contains('('))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

const TG_STATS: [&str; 9] = [
    "wasmcustom.tokengate.allowed",
    "wasmcustom.tokengate.denied",
    "wasmcustom.tokengate.cache.local_hit",
    "wasmcustom.tokengate.cache.shared_hit",
    "wasmcustom.tokengate.cache.miss",
    "wasmcustom.tokengate.sync.version",
    "wasmcustom.tokengate.sync.revocations",
    "wasmcustom.tokengate.revocations",
    "wasmcustom.tokengate.sync.failures",
];
const SERVER_STATS: [&str; 3] = ["server.memory_allocated", "server.memory_heap_size", "server.memory_physical_size"];

struct Sampler {
    admin: String,
    envoy_pid: u32,
    cp_pid: Option<u32>,
    start: Instant,
    csv: std::fs::File,
    wasm_names: Option<Vec<String>>,
    last_sent: u64,
    last_at: f64,
    rows: Vec<Value>,
}

impl Sampler {
    async fn sample(&mut self, sh: &Shared) -> Result<(), String> {
        let t = self.start.elapsed().as_secs_f64();
        let (rss_kb, hwm_kb) = rss(Some(self.envoy_pid));
        let (cp_rss_kb, _) = rss(self.cp_pid);
        let (wasm_maps, wasm_size_kb, wasm_rss_kb) = wasm_memories(self.envoy_pid);
        let text = match Conn::new(&self.admin).call("GET", "/stats", &[], None).await {
            Ok(a) => String::from_utf8_lossy(&a.body).into_owned(),
            Err(e) => {
                eprintln!("[soak] admin /stats failed: {e}");
                String::new()
            }
        };
        let stats = parse_stats(&text);
        if self.wasm_names.is_none() {
            // Envoy's own wasm stats (not the filter's custom ones), fixed at the first sample.
            let names: Vec<String> =
                stats.keys().filter(|k| k.to_ascii_lowercase().contains("wasm") && !k.starts_with("wasmcustom.")).cloned().collect();
            let mut header = vec!["minute", "elapsed_s", "envoy_rss_kb", "envoy_hwm_kb", "wasm_memories", "wasm_mem_kb", "wasm_mem_rss_kb"]
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>();
            header.extend(SERVER_STATS.iter().map(|s| s.to_string()));
            header.extend(names.iter().cloned());
            header.extend(TG_STATS.iter().map(|s| s.to_string()));
            header.extend(
                [
                    "cp_rss_kb",
                    "issued",
                    "pool",
                    "distinct_tokens_used",
                    "revocations",
                    "late_acceptances",
                    "probes",
                    "odd_probe_answers",
                    "requests_sent",
                    "requests_2xx",
                    "requests_non_2xx",
                    "request_errors",
                    "req_per_s",
                    "load_p50_ms",
                    "load_p99_ms",
                ]
                .map(str::to_owned),
            );
            writeln!(self.csv, "{}", header.join(",")).map_err(|e| e.to_string())?;
            self.wasm_names = Some(names);
        }
        let names = self.wasm_names.clone().unwrap_or_default();
        let s = |k: &str| stats.get(k).cloned().unwrap_or_default();
        let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_default();
        let (sent, row_tail, minute_p99, minute_p50, rps, c_snapshot) = {
            let mut c = sh.c.borrow_mut();
            let mut lat = std::mem::take(&mut c.minute_latencies_us);
            let p50 = pct_ms(&mut lat, 50.0);
            let p99 = pct_ms(&mut lat, 99.0);
            let dt = (t - self.last_at).max(1e-9);
            let rps = if self.last_at == 0.0 && t < 1.0 { 0.0 } else { (c.sent - self.last_sent) as f64 / dt };
            let non_2xx: u64 = c.non_2xx.values().sum();
            let f = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_default();
            let tail = vec![
                opt(cp_rss_kb),
                c.issued.to_string(),
                sh.pool.borrow().len().to_string(),
                c.distinct_used.to_string(),
                c.revocations.to_string(),
                c.late.to_string(),
                c.probes.to_string(),
                c.odd.to_string(),
                c.sent.to_string(),
                c.ok.to_string(),
                non_2xx.to_string(),
                c.errors.to_string(),
                format!("{rps:.1}"),
                f(p50),
                f(p99),
            ];
            (c.sent, tail, p99, p50, rps, (c.issued, c.revocations, c.late, c.distinct_used, non_2xx + c.errors))
        };
        self.last_sent = sent;
        self.last_at = t;
        let minute = (t / 60.0).round() as u64;
        let mut row = vec![
            minute.to_string(),
            format!("{t:.0}"),
            opt(rss_kb),
            opt(hwm_kb),
            wasm_maps.to_string(),
            wasm_size_kb.to_string(),
            wasm_rss_kb.to_string(),
        ];
        row.extend(SERVER_STATS.iter().map(|k| s(k)));
        row.extend(names.iter().map(|k| s(k)));
        row.extend(TG_STATS.iter().map(|k| s(k)));
        row.extend(row_tail);
        writeln!(self.csv, "{}", row.join(",")).map_err(|e| e.to_string())?;
        let mib = |kb: Option<u64>| kb.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "?".into());
        let (issued, revs, late, distinct, bad) = c_snapshot;
        eprintln!(
            "[soak {}] minute {minute} ({t:.0} s): Envoy RSS {}, Wasm memory {} ({} resident) in {wasm_maps} linear memories, control plane {}; \
             {issued} tokens issued, {distinct} distinct used, {revs} revoked, {late} late acceptances; {sent} requests ({rps:.0}/s \
             last interval, p50 {} ms p99 {} ms, {bad} not 2xx); sync.version {}, sync.revocations {}",
            clock(),
            mib(rss_kb),
            mib(Some(wasm_size_kb)),
            mib(Some(wasm_rss_kb)),
            mib(cp_rss_kb),
            minute_p50.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into()),
            minute_p99.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into()),
            s("wasmcustom.tokengate.sync.version"),
            s("wasmcustom.tokengate.sync.revocations"),
        );
        self.rows.push(
            json!({"minute": minute, "elapsed_s": t, "envoy_rss_kb": rss_kb, "wasm_mem_kb": wasm_size_kb, "wasm_mem_rss_kb": wasm_rss_kb}),
        );
        Ok(())
    }
}

fn clock() -> String {
    let s = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{:02}:{:02}:{:02}", (s / 3600) % 24, (s / 60) % 60, s % 60)
}

pub async fn soak(args: &Args) -> Result<Value, String> {
    let cp = args.get("cp")?.to_owned();
    let admin_bearer = format!("Bearer {}", args.get("token")?);
    let proxy = args.get("proxy")?.to_owned();
    let admin = args.get("admin")?.to_owned();
    let envoy_pid: u32 = args.num("envoy-pid")?;
    let cp_pid: Option<u32> = args.opt("cp-pid").and_then(|p| p.parse().ok());
    let secs: f64 = args.num("secs")?;
    let path = Rc::new(args.get("path")?.to_owned());
    let num = |k: &str, d: f64| args.opt(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(d);
    let rate = num("rate", 200.0);
    let connections = num("connections", 8.0) as usize;
    let pool_size = num("pool", 3000.0) as usize;
    let issue_rate = num("issue-rate", 8.0);
    let revoke_rate = num("revoke-rate", 1.0);
    let bound = Duration::from_millis(num("bound-ms", 1000.0) as u64);
    let probes = num("probes", 3.0) as usize;
    let probe_gap = Duration::from_millis(num("probe-gap-ms", 100.0) as u64);
    let workers = num("workers", 2.0) as usize;
    let sample_secs = num("sample-secs", 60.0);
    let scopes: Vec<String> = args.opt("scopes").unwrap_or("GET /objects/:id").split(',').map(|s| s.trim().to_owned()).collect();
    let body = Rc::new(json!({"expiresIn": args.opt("expires").unwrap_or("1 day"), "scopes": scopes}).to_string());
    let csv = std::fs::File::create(args.get("csv")?).map_err(|e| e.to_string())?;
    let revlog =
        Rc::new(RefCell::new(std::io::BufWriter::new(std::fs::File::create(args.get("revocations")?).map_err(|e| e.to_string())?)));

    let seed = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1) | 1;
    let sh = Rc::new(Shared {
        pool: RefCell::new(VecDeque::new()),
        c: RefCell::new(Counters::default()),
        rng: Rng(Cell::new(seed)),
        stop: Cell::new(false),
    });

    // 1. Probe connections, one per worker, and the initial pool.
    let pinned = pin(&proxy, &admin, workers, &path).await?;
    eprintln!("[soak {}] probe connections pinned on workers {:?}", clock(), pinned.iter().map(|p| p.worker).collect::<Vec<_>>());
    let pinned: Rc<Vec<Mutex<Pinned>>> = Rc::new(pinned.into_iter().map(Mutex::new).collect());
    eprintln!("[soak {}] issuing the initial pool of {pool_size} tokens", clock());
    let t_fill = Instant::now();
    {
        let next = Rc::new(Cell::new(0usize));
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let (next, sh, cp, bearer, body) = (next.clone(), sh.clone(), cp.clone(), admin_bearer.clone(), body.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let mut conn = Conn::new(&cp);
                loop {
                    let i = next.get();
                    if i >= pool_size {
                        return Ok::<(), String>(());
                    }
                    next.set(i + 1);
                    let tok = issue_one(&mut conn, &bearer, &body).await?;
                    sh.pool.borrow_mut().push_back(Rc::new(tok));
                    sh.c.borrow_mut().issued += 1;
                }
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
    }
    let fill_secs = t_fill.elapsed().as_secs_f64();
    eprintln!("[soak {}] pool issued in {fill_secs:.1} s; churning for {secs:.0} s", clock());

    // 2. The run.
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut sampler =
        Sampler { admin: admin.clone(), envoy_pid, cp_pid, start, csv, wasm_names: None, last_sent: 0, last_at: 0.0, rows: Vec::new() };
    sampler.sample(&sh).await?;
    let mut tasks = Vec::new();

    // Issuing.
    {
        let (sh, cp, bearer, body) = (sh.clone(), cp.clone(), admin_bearer.clone(), body.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut conn = Conn::new(&cp);
            let period = Duration::from_secs_f64(1.0 / issue_rate.max(1e-6));
            let mut i = 0u32;
            loop {
                let due = start + period * i;
                if due >= end {
                    return;
                }
                tokio::time::sleep_until(due.into()).await;
                i += 1;
                match issue_one(&mut conn, &bearer, &body).await {
                    Ok(tok) => {
                        let mut pool = sh.pool.borrow_mut();
                        pool.push_back(Rc::new(tok));
                        let mut c = sh.c.borrow_mut();
                        c.issued += 1;
                        while pool.len() > pool_size {
                            pool.pop_front();
                            c.retired += 1;
                        }
                    }
                    Err(e) => {
                        let mut c = sh.c.borrow_mut();
                        c.issue_failures += 1;
                        if c.issue_failures <= 5 {
                            eprintln!("[soak {}] issuing failed: {e}", clock());
                        }
                    }
                }
            }
        }));
    }

    // Load.
    let next = Rc::new(Cell::new(0u64));
    let period = Duration::from_secs_f64(1.0 / rate.max(1e-6));
    for _ in 0..connections {
        let (sh, proxy, path, next) = (sh.clone(), proxy.clone(), path.clone(), next.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut conn = Conn::new(&proxy);
            loop {
                let i = next.get();
                next.set(i + 1);
                let due = start + period.mul_f64(i as f64);
                if due >= end || sh.stop.get() {
                    return;
                }
                tokio::time::sleep_until(due.into()).await;
                let tok = {
                    let pool = sh.pool.borrow();
                    if pool.is_empty() {
                        continue;
                    }
                    pool[sh.rng.below(pool.len())].clone()
                };
                if !tok.used.replace(true) {
                    sh.c.borrow_mut().distinct_used += 1;
                }
                let result = conn.call("GET", &path, &[("authorization", &tok.bearer)], None).await;
                let us = due.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let mut c = sh.c.borrow_mut();
                c.sent += 1;
                c.minute_latencies_us.push(us);
                c.latencies_us.push(us);
                match result {
                    Ok(a) if (200..300).contains(&a.status) => c.ok += 1,
                    Ok(a) => *c.non_2xx.entry(a.status).or_insert(0) += 1,
                    Err(_) => c.errors += 1,
                }
            }
        }));
    }

    // Revoking: one task per revocation, started at revoke-rate.
    let revokers: Rc<RefCell<Vec<tokio::task::JoinHandle<()>>>> = Rc::new(RefCell::new(Vec::new()));
    {
        let (sh, cp, bearer, path, pinned, revokers, revlog) =
            (sh.clone(), cp.clone(), admin_bearer.clone(), path.clone(), pinned.clone(), revokers.clone(), revlog.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let period = Duration::from_secs_f64(1.0 / revoke_rate.max(1e-6));
            let conns: Rc<RefCell<Vec<Conn>>> = Rc::new(RefCell::new(Vec::new()));
            let mut i = 1u32;
            loop {
                let due = start + period * i;
                if due >= end {
                    return;
                }
                tokio::time::sleep_until(due.into()).await;
                i += 1;
                let tok = {
                    let mut pool = sh.pool.borrow_mut();
                    if pool.is_empty() {
                        continue;
                    }
                    let k = sh.rng.below(pool.len());
                    match pool.remove(k) {
                        Some(t) => t,
                        None => continue,
                    }
                };
                let (sh, cp, bearer, path, pinned, conns, revlog) =
                    (sh.clone(), cp.clone(), bearer.clone(), path.clone(), pinned.clone(), conns.clone(), revlog.clone());
                revokers.borrow_mut().push(tokio::task::spawn_local(async move {
                    revoke_and_probe(&sh, &cp, &bearer, &path, &pinned, &conns, &revlog, tok, bound, probes, probe_gap, start).await;
                }));
            }
        }));
    }

    // Sampling until the end.
    let mut k = 1u32;
    loop {
        let due = start + Duration::from_secs_f64(sample_secs * f64::from(k));
        if due > end {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        sampler.sample(&sh).await?;
        k += 1;
    }
    tokio::time::sleep_until(end.into()).await;
    sh.stop.set(true);
    for t in tasks {
        let _ = t.await;
    }
    let pending: Vec<_> = std::mem::take(&mut *revokers.borrow_mut());
    for t in pending {
        let _ = t.await;
    }
    // The last row, if the run did not end on a sample boundary.
    if (secs / sample_secs).fract() > 1e-9 {
        sampler.sample(&sh).await?;
    }
    revlog.borrow_mut().flush().map_err(|e| e.to_string())?;
    let wall = start.elapsed().as_secs_f64();

    // 3. The final sweep over every revoked token.
    let revoked: Vec<Rc<Tok>> = sh.c.borrow().revoked.clone();
    eprintln!("[soak {}] final sweep: each of the {} revoked tokens once more on every worker", clock(), revoked.len());
    let (mut sweep_probes, mut sweep_late, mut sweep_odd) = (0u64, 0u64, 0u64);
    for tok in &revoked {
        for p in pinned.iter() {
            let mut p = p.lock().await;
            sweep_probes += 1;
            match get(&mut p.sender, &path, &tok.bearer).await {
                Ok((200, _)) => {
                    sweep_late += 1;
                    eprintln!("[soak {}] LATE (final sweep): token {} let through by worker {}", clock(), tok.id, p.worker);
                }
                Ok((401, body)) if String::from_utf8_lossy(&body).contains("token_revoked") => {}
                Ok(_) | Err(_) => sweep_odd += 1,
            }
        }
    }

    let mut c = sh.c.borrow_mut();
    let mut lat = std::mem::take(&mut c.latencies_us);
    let mut delete_ms = std::mem::take(&mut c.delete_ms);
    delete_ms.sort_by(|a, b| a.total_cmp(b));
    let non_2xx: BTreeMap<String, u64> = c.non_2xx.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    Ok(json!({
        "op": "soak",
        "secs": wall,
        "pool": pool_size,
        "pool_fill_secs": fill_secs,
        "rate": rate,
        "issue_rate": issue_rate,
        "revoke_rate": revoke_rate,
        "bound_ms": bound.as_millis() as u64,
        "probes_per_worker": probes,
        "workers": workers,
        "tokens_issued": c.issued,
        "tokens_issued_during_run": c.issued - pool_size as u64,
        "issue_failures": c.issue_failures,
        "tokens_retired": c.retired,
        "distinct_tokens_used": c.distinct_used,
        "requests": c.sent,
        "requests_2xx": c.ok,
        "requests_non_2xx": non_2xx,
        "request_errors": c.errors,
        "achieved_rps": c.sent as f64 / wall,
        "load_ms": {"p50": pct_ms(&mut lat, 50.0), "p99": pct_ms(&mut lat, 99.0), "max": pct_ms(&mut lat, 100.0)},
        "revocations": c.revocations,
        "delete_failures": c.delete_failures,
        "delete_retries_503": c.delete_retries,
        "delete_ms": {"p50": pct_f(&delete_ms, 50.0), "p99": pct_f(&delete_ms, 99.0), "max": pct_f(&delete_ms, 100.0)},
        "precheck_failures": c.precheck_failures,
        "probes": c.probes,
        "late_acceptances": c.late,
        "odd_probe_answers": c.odd,
        "sweep_probes": sweep_probes,
        "sweep_late_acceptances": sweep_late,
        "sweep_odd_answers": sweep_odd,
        "samples": sampler.rows,
    }))
}

#[allow(clippy::too_many_arguments)]
async fn revoke_and_probe(
    sh: &Shared,
    cp: &str,
    bearer: &str,
    path: &str,
    pinned: &[Mutex<Pinned>],
    conns: &RefCell<Vec<Conn>>,
    revlog: &RefCell<std::io::BufWriter<std::fs::File>>,
    tok: Rc<Tok>,
    bound: Duration,
    probes: usize,
    probe_gap: Duration,
    start: Instant,
) {
    // Precheck: both workers let it through (and now hold it in their local cache).
    let mut precheck = Vec::new();
    for p in pinned {
        let mut p = p.lock().await;
        let status = get(&mut p.sender, path, &tok.bearer).await.map(|(s, _)| s).unwrap_or(0);
        precheck.push(status);
    }
    if precheck.iter().any(|&s| s != 200) {
        sh.c.borrow_mut().precheck_failures += 1;
    }
    // DELETE on a pooled keep-alive connection to the control plane.
    let mut conn = conns.borrow_mut().pop().unwrap_or_else(|| Conn::new(cp));
    let sent = Instant::now();
    let target = format!("/api/v1/tokens/{}", tok.id);
    let mut deleted = false;
    for attempt in 0..4 {
        match conn.call("DELETE", &target, &[("authorization", bearer)], None).await {
            Ok(a) if a.status == 204 => {
                deleted = true;
                break;
            }
            Ok(a) if a.status == 503 && attempt < 3 => {
                sh.c.borrow_mut().delete_retries += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(a) => {
                eprintln!("[soak {}] DELETE {target} answered {}: {}", clock(), a.status, String::from_utf8_lossy(&a.body));
                break;
            }
            Err(e) => {
                eprintln!("[soak {}] DELETE {target} failed: {e}", clock());
                break;
            }
        }
    }
    conns.borrow_mut().push(conn);
    let delete_ms = sent.elapsed().as_secs_f64() * 1000.0;
    if !deleted {
        sh.c.borrow_mut().delete_failures += 1;
        return;
    }
    let t0 = Instant::now();
    {
        let mut c = sh.c.borrow_mut();
        c.revocations += 1;
        c.delete_ms.push(delete_ms);
        c.revoked.push(tok.clone());
    }
    tokio::time::sleep_until((t0 + bound).into()).await;
    let (mut late, mut odd, mut answers) = (0u64, 0u64, Vec::new());
    for round in 0..probes {
        if round > 0 {
            tokio::time::sleep(probe_gap).await;
        }
        for p in pinned {
            let mut p = p.lock().await;
            let after_ms = t0.elapsed().as_secs_f64() * 1000.0;
            let r = get(&mut p.sender, path, &tok.bearer).await;
            let status = match &r {
                Ok((s, _)) => *s,
                Err(_) => 0,
            };
            match r {
                Ok((200, _)) => {
                    late += 1;
                    eprintln!(
                        "[soak {}] LATE: revoked token {} let through by worker {} {after_ms:.0} ms after the 204",
                        clock(),
                        tok.id,
                        p.worker
                    );
                }
                Ok((401, body)) if String::from_utf8_lossy(&body).contains("token_revoked") => {}
                _ => odd += 1,
            }
            answers.push(status);
        }
    }
    {
        let mut c = sh.c.borrow_mut();
        c.probes += (probes * pinned.len()) as u64;
        c.late += late;
        c.odd += odd;
    }
    let line = json!({
        "id": tok.id, "at_s": start.elapsed().as_secs_f64(), "precheck": precheck, "delete_ms": delete_ms,
        "probe_answers": answers, "late": late,
    });
    let _ = writeln!(revlog.borrow_mut(), "{line}");
}
