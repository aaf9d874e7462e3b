//! Fan-out (issue 14, target 8; run by `bench/fanout.sh`): how the control plane's cost
//! grows with the number of proxies.
//!
//! ```text
//! tg-bench fanout --cp A1[,A2] --write-cp ADDR --token ADMIN --secret PROXY_SECRET
//!     --proxies N --ids IDS --rate R --secs S --cp-pids P1[,P2]
//!     [--writers 16] [--idle-secs 3] [--drain-secs 15] [--wait-ms 25000]
//! ```
//!
//! 1. `N` simulated proxies, each a task on this one-thread runtime with its own
//!    keep-alive connection (to the control planes of `--cp` in turn), speak the real sync
//!    protocol as the filter's service VM does: a snapshot (`since=0&wait_ms=0&format=bin`,
//!    following `after=<next>` parts), then held long polls
//!    `since=<applied>&wait_ms=<wait-ms>&proxy=fanout-<i>&nonce=<fresh>&format=bin` with the
//!    bearer of `rules::sync::ProxyKeys`; every answer's `x-tokengate-sync-mac` is checked,
//!    a version that goes backwards is refused, each delta's revocations are added to the
//!    proxy's set, and the next call's `since` (the new version) confirms it.
//! 2. Once every proxy holds a poll, `idle-secs` of idle: the control plane's CPU with N
//!    held polls and no change.
//! 3. The writer: `DELETE /api/v1/tokens/:id` for the ids of `IDS`, open loop at `rate`/s
//!    for `secs` over `writers` keep-alive connections to `--write-cp` (no DELETE starts
//!    after `secs`: a control plane that falls behind reaches a lower rate, reported as
//!    `achieved_rate`); t0 of a revocation is the arrival of its 204.
//! 4. Drain: until every proxy holds every revocation (or `drain-secs`).
//!
//! A revocation's propagation to a proxy is the arrival of the proxy's answer that carries
//! it minus t0 (0 when the answer came first: the proxy had it before the writer).
//! The control plane's CPU (utime+stime of `/proc/<pid>/stat`, every pid of `--cp-pids`
//! summed) is taken over the writer's window plus the drain, and its RSS at the end.
//! `--db-uid U` also sums the CPU of every process of that uid (a PostgreSQL server's,
//! shared with whatever else uses the server) over the same window.
//! Prints progress on stderr and one JSON object on stdout.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokengate_rules::sync::{decode_answer, ProxyKeys, MAC_HEADER};

use crate::Args;

/// Arrival of a revocation at a proxy, µs since the run's start; `NONE` until it arrives.
const NONE: u32 = u32::MAX;

struct Shared {
    start: Instant,
    keys: ProxyKeys,
    /// jti -> index in `t0`/`arrivals`.
    index: HashMap<String, usize>,
    /// The 204 of each revocation, µs since start (`NONE` while not answered).
    t0: RefCell<Vec<u32>>,
    /// `arrivals[rev * n + proxy]`.
    arrivals: RefCell<Vec<u32>>,
    n: usize,
    /// Proxies past their snapshot.
    synced: Cell<usize>,
    /// Every proxy's applied version.
    versions: RefCell<Vec<u64>>,
    stats: RefCell<ProxyStats>,
}

#[derive(Default)]
struct ProxyStats {
    calls: u64,
    answers_with_revocations: u64,
    empty_answers: u64,
    revocations_received: u64,
    unknown_revocations: u64,
    snapshots: u64,
    snapshot_parts: u64,
    bytes: u64,
    bad_mac: u64,
    backwards: u64,
    errors: u64,
    reconnects: u64,
}

fn us(shared: &Shared) -> u32 {
    u32::try_from(shared.start.elapsed().as_micros()).unwrap_or(NONE - 1)
}

struct Conn {
    addr: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Result<(u16, Option<String>, Bytes), String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::net::TcpStream::connect(&self.addr).await.map_err(|e| format!("connect {}: {e}", self.addr))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
            tokio::task::spawn_local(conn);
            self.sender = Some(sender);
        }
        let mut b = Request::builder().method("GET").uri(path).header("host", "bench");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
        let sender = self.sender.as_mut().ok_or("no connection")?;
        let sent = async {
            sender.ready().await.map_err(|e| e.to_string())?;
            sender.send_request(req).await.map_err(|e| e.to_string())
        }
        .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e);
            }
        };
        let status = resp.status().as_u16();
        let mac = resp.headers().get(MAC_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, mac, body))
    }
}

/// One simulated proxy, until its task is aborted.
// Every await below comes after `drop(st)`: the stats borrow is never held across one
// (clippy cannot see an explicit drop).
#[allow(clippy::await_holding_refcell_ref)]
async fn proxy(shared: Rc<Shared>, i: usize, addr: String, bearer: String, wait_ms: u64) {
    let mut conn = Conn { addr, sender: None };
    let id = format!("fanout-{i}");
    let auth = format!("Bearer {bearer}");
    let epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let mut seq = 0u64;
    let mut version = 0u64;
    let mut set: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut after: Option<String> = None;
    let mut staged_version = 0u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        seq += 1;
        let nonce = format!("{epoch:x}.{i:x}.{seq:x}");
        let path = match (&after, version) {
            (Some(a), _) => format!("/sync/v1/changes?since=0&wait_ms=0&proxy={id}&nonce={nonce}&format=bin&after={a}"),
            (None, 0) => format!("/sync/v1/changes?since=0&wait_ms=0&proxy={id}&nonce={nonce}&format=bin"),
            (None, v) => format!("/sync/v1/changes?since={v}&wait_ms={wait_ms}&proxy={id}&nonce={nonce}&format=bin"),
        };
        let answer = conn.get(&path, &[("authorization", &auth)]).await;
        let now = us(&shared);
        let (status, mac, body) = match answer {
            Ok(a) => a,
            Err(e) => {
                {
                    let mut st = shared.stats.borrow_mut();
                    st.errors += 1;
                    st.reconnects += 1;
                    if st.errors <= 5 {
                        eprintln!("[fanout] proxy {i}: {e}");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        let mut st = shared.stats.borrow_mut();
        st.calls += 1;
        st.bytes += body.len() as u64;
        let ok_mac = mac.as_deref().is_some_and(|m| shared.keys.check_answer_mac(&nonce, &body, m));
        if status != 200 || !ok_mac {
            if status == 200 {
                st.bad_mac += 1;
            } else {
                st.errors += 1;
                if st.errors <= 5 {
                    eprintln!("[fanout] proxy {i}: status {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]));
                }
            }
            drop(st);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
            continue;
        }
        let decoded = match decode_answer(&body) {
            Ok(d) => d,
            Err(e) => {
                st.errors += 1;
                if st.errors <= 5 {
                    eprintln!("[fanout] proxy {i}: {e}");
                }
                drop(st);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let h = decoded.header;
        if h.snapshot {
            // Parts are staged and the snapshot published at the first part's version.
            st.snapshot_parts += 1;
            if after.is_none() {
                staged_version = h.version;
                set.clear();
            }
            for r in &h.revoked {
                set.insert(r.jti.clone());
            }
            after = h.next.clone();
            if after.is_none() {
                st.snapshots += 1;
                if version == 0 {
                    shared.synced.set(shared.synced.get() + 1);
                }
                version = staged_version;
                shared.versions.borrow_mut()[i] = version;
            }
            continue;
        }
        if h.version < version {
            st.backwards += 1;
            continue;
        }
        if h.revoked.is_empty() {
            st.empty_answers += 1;
        } else {
            st.answers_with_revocations += 1;
        }
        st.revocations_received += h.revoked.len() as u64;
        let mut arrivals = shared.arrivals.borrow_mut();
        for r in h.revoked {
            match shared.index.get(&r.jti) {
                Some(&k) => {
                    let slot = &mut arrivals[k * shared.n + i];
                    if *slot == NONE {
                        *slot = now;
                    }
                }
                None => st.unknown_revocations += 1,
            }
            set.insert(r.jti);
        }
        version = h.version;
        shared.versions.borrow_mut()[i] = version;
    }
}

fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let k = ((sorted.len() as f64 * p).ceil() as usize).saturating_sub(1).min(sorted.len() - 1);
    Some(sorted[k])
}

fn summary(mut v: Vec<f64>) -> Value {
    v.sort_by(f64::total_cmp);
    let mean = if v.is_empty() { None } else { Some(v.iter().sum::<f64>() / v.len() as f64) };
    json!({"n": v.len(), "p50": pct(&v, 0.5), "p90": pct(&v, 0.9), "p99": pct(&v, 0.99), "max": v.last(), "mean": mean})
}

/// utime + stime of a process, in clock ticks (100 a second on Linux).
fn cpu_ticks(pid: &str) -> Result<u64, String> {
    let path = if pid == "self" { "/proc/self/stat".to_owned() } else { format!("/proc/{pid}/stat") };
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let rest = text.rsplit_once(')').map(|(_, r)| r).ok_or("bad stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3, utime field 14, stime field 15.
    let n = |k: usize| f.get(k - 3).and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| format!("{path}: no field {k}"));
    Ok(n(14)? + n(15)?)
}

/// VmRSS and VmHWM of a process, in KiB.
fn rss_kib(pid: &str) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name)).and_then(|r| r.split_whitespace().next()).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

struct Cpu {
    pids: Vec<String>,
}

/// utime + stime of every process of `uid` (the PostgreSQL server's, all its backends):
/// a process that ends within the window takes its ticks with it, so this is a floor.
fn uid_ticks(uid: &str) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())).map(str::to_owned))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .and_then(|t| t.lines().find_map(|l| l.strip_prefix("Uid:")).map(|r| r.split_whitespace().next() == Some(uid)))
                .unwrap_or(false)
        })
        .filter_map(|pid| cpu_ticks(&pid).ok())
        .sum()
}

impl Cpu {
    fn ticks(&self) -> Result<u64, String> {
        self.pids.iter().map(|p| cpu_ticks(p)).sum()
    }
}

pub async fn fanout(args: &Args) -> Result<Value, String> {
    let cps: Vec<String> = args.get("cp")?.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let write_cp = args.opt("write-cp").map_or_else(|| cps[0].clone(), str::to_owned);
    let bearer_admin = format!("Bearer {}", args.get("token")?);
    let keys = ProxyKeys::derive(args.get("secret")?.as_bytes());
    let n: usize = args.num("proxies")?;
    let rate: f64 = args.num("rate")?;
    let secs: f64 = args.num("secs")?;
    let writers: usize = args.opt("writers").and_then(|s| s.parse().ok()).unwrap_or(16);
    let idle_secs: f64 = args.opt("idle-secs").and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let drain_secs: f64 = args.opt("drain-secs").and_then(|s| s.parse().ok()).unwrap_or(15.0);
    let wait_ms: u64 = args.opt("wait-ms").and_then(|s| s.parse().ok()).unwrap_or(25_000);
    let db_uid = args.opt("db-uid").map(str::to_owned);
    let cpu = Cpu { pids: args.get("cp-pids")?.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect() };
    let text = std::fs::read_to_string(args.get("ids")?).map_err(|e| e.to_string())?;
    let want = (rate * secs).ceil() as usize;
    let ids: Vec<String> = text.lines().filter(|l| !l.is_empty()).take(want).map(str::to_owned).collect();
    if ids.len() < want {
        eprintln!("[fanout] only {} ids for {want} revocations; the writer stops when they run out", ids.len());
    }
    let count = ids.len();
    let index: HashMap<String, usize> = ids.iter().enumerate().map(|(k, id)| (id.clone(), k)).collect();
    let shared = Rc::new(Shared {
        start: Instant::now(),
        keys: keys.clone(),
        index,
        t0: RefCell::new(vec![NONE; count]),
        arrivals: RefCell::new(vec![NONE; count * n]),
        n,
        synced: Cell::new(0),
        versions: RefCell::new(vec![0; n]),
        stats: RefCell::new(ProxyStats::default()),
    });

    // 1. The proxies: connected a few at a time, as a fleet's restart would not be at once.
    let mut tasks = Vec::with_capacity(n);
    let bearer = keys.bearer().to_owned();
    for i in 0..n {
        let addr = cps[i % cps.len()].clone();
        tasks.push(tokio::task::spawn_local(proxy(shared.clone(), i, addr, bearer.clone(), wait_ms)));
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let t = Instant::now();
    while shared.synced.get() < n {
        if t.elapsed() > Duration::from_secs(120) {
            return Err(format!("only {} of {n} proxies got their snapshot in 120 s", shared.synced.get()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let snapshot_secs = t.elapsed().as_secs_f64();
    eprintln!("[fanout] {n} proxies synced in {snapshot_secs:.2} s; {idle_secs} s idle");

    // 2. Idle: N held polls, nothing changes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (i0, iw) = (cpu.ticks()?, Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(idle_secs)).await;
    let idle_cpu_pct = (cpu.ticks()? - i0) as f64 / iw.elapsed().as_secs_f64();
    let calls_before = shared.stats.borrow().calls;

    // 3. The writer, open loop.
    let db0 = db_uid.as_deref().map(uid_ticks);
    let (c0, self0, w0) = (cpu.ticks()?, cpu_ticks("self")?, Instant::now());
    let next = Rc::new(Cell::new(0usize));
    let ids = Rc::new(ids);
    let failed = Rc::new(Cell::new(0u64));
    let delete_ms: Rc<RefCell<Vec<f64>>> = Rc::new(RefCell::new(Vec::with_capacity(count)));
    let mut writer_tasks = Vec::new();
    for _ in 0..writers.max(1) {
        let (next, ids, failed, delete_ms, shared) = (next.clone(), ids.clone(), failed.clone(), delete_ms.clone(), shared.clone());
        let (addr, bearer_admin) = (write_cp.clone(), bearer_admin.clone());
        writer_tasks.push(tokio::task::spawn_local(async move {
            let mut c = crate::http::Conn::new(&addr);
            loop {
                let k = next.get();
                // Time-bounded too: a control plane that cannot keep the rate is not given
                // longer, it reaches what it reaches in `secs`.
                if k >= ids.len() || w0.elapsed().as_secs_f64() >= secs {
                    return;
                }
                next.set(k + 1);
                tokio::time::sleep_until((w0 + Duration::from_secs_f64(k as f64 / rate)).into()).await;
                let path = format!("/api/v1/tokens/{}", ids[k]);
                let sent = Instant::now();
                for attempt in 0..4 {
                    match c.call("DELETE", &path, &[("authorization", &bearer_admin)], None).await {
                        Ok(a) if a.status == 204 => {
                            shared.t0.borrow_mut()[k] = us(&shared);
                            delete_ms.borrow_mut().push(sent.elapsed().as_secs_f64() * 1000.0);
                            break;
                        }
                        Ok(a) if attempt == 3 || a.status != 503 => {
                            failed.set(failed.get() + 1);
                            if failed.get() <= 5 {
                                eprintln!("[fanout] DELETE answered {}: {}", a.status, String::from_utf8_lossy(&a.body));
                            }
                            break;
                        }
                        Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                        Err(e) => {
                            failed.set(failed.get() + 1);
                            eprintln!("[fanout] DELETE: {e}");
                            break;
                        }
                    }
                }
            }
        }));
    }
    let mut last_report = Instant::now();
    for t in writer_tasks {
        while !t.is_finished() {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if last_report.elapsed() > Duration::from_secs(5) {
                last_report = Instant::now();
                eprintln!("[fanout] {} of {count} revocations sent after {:.1} s", next.get(), w0.elapsed().as_secs_f64());
            }
        }
    }
    let write_secs = w0.elapsed().as_secs_f64();
    let revoked = delete_ms.borrow().len();

    // 4. Drain: every proxy holds every answered revocation.
    let d0 = Instant::now();
    loop {
        let missing = {
            let t0 = shared.t0.borrow();
            let a = shared.arrivals.borrow();
            (0..count).filter(|&k| t0[k] != NONE).map(|k| a[k * n..(k + 1) * n].iter().filter(|&&x| x == NONE).count()).sum::<usize>()
        };
        if missing == 0 || d0.elapsed().as_secs_f64() > drain_secs {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let window = w0.elapsed().as_secs_f64();
    let cp_ticks = cpu.ticks()? - c0;
    let self_ticks = cpu_ticks("self")? - self0;
    let db_ticks = db_uid.as_deref().map(uid_ticks).zip(db0).map(|(b, a)| b.saturating_sub(a));
    let (mut rss, mut hwm) = (0, 0);
    for p in &cpu.pids {
        let (r, h) = rss_kib(p);
        rss += r;
        hwm += h;
    }
    for t in &tasks {
        t.abort();
    }

    // The figures.
    let t0 = shared.t0.borrow();
    let a = shared.arrivals.borrow();
    let (mut pairs, mut last, mut missing, mut early) = (Vec::with_capacity(revoked * n), Vec::with_capacity(revoked), 0u64, 0u64);
    for k in 0..count {
        if t0[k] == NONE {
            continue;
        }
        let mut worst = 0f64;
        let mut all = true;
        for &x in &a[k * n..(k + 1) * n] {
            if x == NONE {
                missing += 1;
                all = false;
                continue;
            }
            if x < t0[k] {
                early += 1;
            }
            let ms = f64::from(x.saturating_sub(t0[k])) / 1000.0;
            worst = worst.max(ms);
            pairs.push(ms);
        }
        if all && n > 0 {
            last.push(worst);
        }
    }
    let st = shared.stats.borrow();
    let cpu_ms = cp_ticks as f64 * 10.0;
    let cpu_us_per_rev = if revoked > 0 { cpu_ms * 1000.0 / revoked as f64 } else { 0.0 };
    let calls_window = st.calls - calls_before;
    Ok(json!({
        "op": "fanout", "proxies": n, "control_planes": cps.len(), "rate_target": rate, "secs": secs,
        "revocations": revoked, "delete_failures": failed.get(), "write_secs": write_secs,
        "achieved_rate": revoked as f64 / write_secs, "window_secs": window,
        "snapshot_secs": snapshot_secs,
        "propagation_ms": summary(pairs),
        "last_proxy_ms": summary(last),
        "missing_pairs": missing, "arrived_before_204": early,
        "delete_ms": summary(delete_ms.borrow().clone()),
        "cp_idle_cpu_pct": idle_cpu_pct,
        "cp_cpu_pct": cpu_ms / 10.0 / window,
        "cp_cpu_us_per_revocation": cpu_us_per_rev,
        "cp_cpu_us_per_revocation_per_proxy": cpu_us_per_rev / n.max(1) as f64,
        "cp_rss_mib": rss as f64 / 1024.0, "cp_peak_rss_mib": hwm as f64 / 1024.0,
        "tool_cpu_pct": self_ticks as f64 / window,
        "db_cpu_pct": db_ticks.map(|t| t as f64 / window),
        "db_cpu_us_per_revocation": db_ticks.filter(|_| revoked > 0).map(|t| t as f64 * 10_000.0 / revoked as f64),
        "sync_calls_in_window": calls_window,
        "sync_calls_per_revocation_per_proxy": if revoked > 0 { calls_window as f64 / revoked as f64 / n.max(1) as f64 } else { 0.0 },
        "revocations_per_answer": if st.answers_with_revocations > 0 { st.revocations_received as f64 / st.answers_with_revocations as f64 } else { 0.0 },
        "answers_with_revocations": st.answers_with_revocations, "empty_answers": st.empty_answers,
        "unknown_revocations": st.unknown_revocations, "snapshots": st.snapshots, "snapshot_parts": st.snapshot_parts,
        "bytes_received": st.bytes, "bad_mac": st.bad_mac, "backwards": st.backwards, "errors": st.errors,
        "final_versions": {"min": shared.versions.borrow().iter().min(), "max": shared.versions.borrow().iter().max()},
    }))
}
