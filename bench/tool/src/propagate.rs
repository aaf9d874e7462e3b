//! Revocation propagation under load (issue 4, item 10; run by `bench/propagation.sh`).
//!
//! ```text
//! tg-bench propagate --cp ADDR --token ADMIN --proxies A1,A2,A3 --admins M1,M2,M3
//!     --ids IDS --tokens TOKENS --warm WARM_TOKENS --path P --out RECORDS.jsonl
//!     [--workers 2] [--count N] [--rate R] [--load-connections C] [--gap-ms MIN,MAX]
//!     [--timeout-ms T] [--probe-pause-us U] [--first K] [--delete-query "wait=2000"]
//! ```
//!
//! 1. Probe connections: for every proxy, keep-alive connections are opened one at a
//!    time until each of its `workers` worker threads holds one. Which worker accepted a
//!    connection is read from Envoy's per-worker listener counter
//!    (`listener.<addr>.worker_<n>.downstream_cx_total` on the admin port): Envoy binds a
//!    listener socket per worker (SO_REUSEPORT), so a connection stays on the worker that
//!    accepted it and every worker of every proxy is probed on every round.
//! 2. Background load: another thread sends GET `path` to every proxy at `rate` req/s
//!    (open loop, `load-connections` keep-alive connections per proxy), rotating over the
//!    warm tokens, until the end; its answers and latencies are counted (all should be 2xx).
//! 3. For each of `count` tokens (line i of `ids` and `tokens`): check that every probe
//!    connection lets it through (200; it is then hot in that worker's cache), send
//!    `DELETE /api/v1/tokens/:id` on a keep-alive connection to the control plane,
//!    t0 = when its 204 arrived; then every probe connection sends the token again and
//!    again (pausing `probe-pause-us` between its requests) until it answers 401 with
//!    `token_revoked`. A worker's time is the arrival of its first refusal minus t0 (an
//!    upper bound: the request before it was still let through); a proxy's is the max
//!    over its workers, the propagation the max over proxies. One more round then checks
//!    that every probe still refuses (no flapping). Then a pause of `gap-ms` (uniform in
//!    MIN..MAX, so the proxies are back in their held long poll) and the next token.
//!
//! `--first K` starts at line K of `ids`/`tokens`. `--delete-query wait=2000` sends
//! `DELETE ...?wait=2000` (the control plane answers 200 once every live proxy confirmed
//! the revocation's version): then no probe should let the token through after t0
//! (`stale_after_204`), and answers that do not confirm every proxy count as `unconfirmed`.
//!
//! Prints progress on stderr, one JSON line per revocation to `out`, and a summary JSON
//! object on stdout.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use crate::http::Conn;
use crate::Args;

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

/// One GET with the token on this connection: (status, body).
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

/// Envoy's per-worker accepted-connection counters of its one listener.
async fn worker_totals(admin: &str, workers: usize) -> Result<Vec<u64>, String> {
    let mut c = Conn::new(admin);
    let a = c.call("GET", "/stats?filter=worker_[0-9]+\\.downstream_cx_total", &[], None).await?;
    let text = String::from_utf8_lossy(&a.body);
    let mut totals = vec![0u64; workers];
    for line in text.lines() {
        // listener.127.0.0.1_10000.worker_1.downstream_cx_total: 7
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

/// Opens connections to `addr` until every worker holds one; the extras are dropped.
async fn pin(addr: &str, admin: &str, workers: usize, path: &str) -> Result<Vec<Pinned>, String> {
    let mut pinned: Vec<Pinned> = Vec::new();
    for _ in 0..64 {
        if pinned.len() == workers {
            pinned.sort_by_key(|p| p.worker);
            return Ok(pinned);
        }
        let before = worker_totals(admin, workers).await?;
        let mut sender = connect(addr).await?;
        // One request, so the connection is surely accepted and counted.
        get(&mut sender, path, "Bearer pin").await?;
        let after = worker_totals(admin, workers).await?;
        let grew: Vec<usize> = (0..workers).filter(|&w| after[w] > before[w]).collect();
        if let [w] = grew[..] {
            if !pinned.iter().any(|p| p.worker == w) {
                pinned.push(Pinned { sender, worker: w });
            }
        }
    }
    Err(format!("{addr}: could not get a connection on each of {workers} workers in 64 tries (admin {admin})"))
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank.
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

fn summary(mut v: Vec<f64>) -> Value {
    v.retain(|x| x.is_finite());
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return json!({"n": 0});
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    json!({"n": v.len(), "min": v[0], "p50": pct(&v, 50.0), "p90": pct(&v, 90.0), "p99": pct(&v, 99.0),
           "max": v[v.len() - 1], "mean": mean})
}

#[derive(Default)]
struct LoadTally {
    sent: u64,
    ok: u64,
    non_2xx: u64,
    errors: u64,
    latencies_us: Vec<u32>,
}

/// Open-loop background load on every proxy until `stop`; one tally per proxy.
fn background(
    proxies: Vec<String>,
    rate: f64,
    connections: usize,
    path: String,
    tokens: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(LoadTally, f64)>> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let tokens = std::rc::Rc::new(tokens);
            let path = std::rc::Rc::new(path);
            let mut per_proxy = Vec::new();
            for addr in proxies {
                let tally = std::rc::Rc::new(std::cell::RefCell::new(LoadTally::default()));
                let next = std::rc::Rc::new(std::cell::Cell::new(0usize));
                let start = Instant::now();
                let period = Duration::from_secs_f64(1.0 / rate);
                let mut tasks = Vec::new();
                for _ in 0..connections {
                    let (addr, path, tokens, tally, next, stop) =
                        (addr.clone(), path.clone(), tokens.clone(), tally.clone(), next.clone(), stop.clone());
                    tasks.push(tokio::task::spawn_local(async move {
                        let mut conn = Conn::new(&addr);
                        loop {
                            let i = next.get();
                            next.set(i + 1);
                            let due = start + period.mul_f64(i as f64);
                            tokio::time::sleep_until(due.into()).await;
                            if stop.load(Ordering::Relaxed) {
                                return;
                            }
                            let auth = tokens[i % tokens.len()].as_str();
                            let r = conn.call("GET", &path, &[("authorization", auth)], None).await;
                            let us = due.elapsed().as_micros().min(u32::MAX as u128) as u32;
                            let mut t = tally.borrow_mut();
                            t.sent += 1;
                            t.latencies_us.push(us);
                            match r {
                                Ok(a) if (200..300).contains(&a.status) => t.ok += 1,
                                Ok(_) => t.non_2xx += 1,
                                Err(_) => t.errors += 1,
                            }
                        }
                    }));
                }
                per_proxy.push((tally, tasks, start));
            }
            let mut out = Vec::new();
            for (tally, tasks, start) in per_proxy {
                for t in tasks {
                    let _ = t.await;
                }
                let secs = start.elapsed().as_secs_f64();
                out.push((std::mem::take(&mut *tally.borrow_mut()), secs));
            }
            out
        })
    })
}

fn lines(path: &str) -> Result<Vec<String>, String> {
    Ok(std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

fn is_revoked(status: u16, body: &[u8]) -> bool {
    status == 401 && body.windows(13).any(|w| w == b"token_revoked")
}

pub async fn propagate(args: &Args) -> Result<Value, String> {
    let cp = args.get("cp")?.to_owned();
    let admin_bearer = format!("Bearer {}", args.get("token")?);
    let proxies: Vec<String> = args.get("proxies")?.split(',').map(str::to_owned).collect();
    let admins: Vec<String> = args.get("admins")?.split(',').map(str::to_owned).collect();
    if proxies.len() != admins.len() {
        return Err("--proxies and --admins must list as many addresses".into());
    }
    let workers: usize = args.opt("workers").unwrap_or("2").parse().map_err(|_| "--workers")?;
    let path = args.get("path")?.to_owned();
    let ids = lines(args.get("ids")?)?;
    let tokens = lines(args.get("tokens")?)?;
    let warm: Vec<String> = lines(args.get("warm")?)?.into_iter().map(|t| format!("Bearer {t}")).collect();
    let count: usize = args.opt("count").map(str::parse).transpose().map_err(|_| "--count")?.unwrap_or(ids.len());
    let first: usize = args.opt("first").unwrap_or("0").parse().map_err(|_| "--first")?;
    let count = count.min(ids.len().saturating_sub(first)).min(tokens.len().saturating_sub(first));
    let rate: f64 = args.opt("rate").unwrap_or("200").parse().map_err(|_| "--rate")?;
    let load_conns: usize = args.opt("load-connections").unwrap_or("4").parse().map_err(|_| "--load-connections")?;
    let timeout = Duration::from_millis(args.opt("timeout-ms").unwrap_or("5000").parse().map_err(|_| "--timeout-ms")?);
    let pause = Duration::from_micros(args.opt("probe-pause-us").unwrap_or("500").parse().map_err(|_| "--probe-pause-us")?);
    let (gap_min, gap_max) = {
        let g = args.opt("gap-ms").unwrap_or("20,100");
        let (a, b) = g.split_once(',').unwrap_or((g, g));
        let a: u64 = a.parse().map_err(|_| "--gap-ms")?;
        let b: u64 = b.parse().map_err(|_| "--gap-ms")?;
        (a, b.max(a))
    };
    let out_path = args.get("out")?.to_owned();
    let query = args.opt("delete-query").map(|q| format!("?{q}")).unwrap_or_default();
    let mut out = String::new();

    // 1. Probe connections, one per worker of every proxy.
    let mut probes: Vec<Vec<Pinned>> = Vec::new();
    for (p, (addr, admin)) in proxies.iter().zip(&admins).enumerate() {
        let pinned = pin(addr, admin, workers, &path).await?;
        eprintln!("[propagate] proxy {p} ({addr}): a probe connection on each of its {workers} workers");
        probes.push(pinned);
    }

    // 2. Background load.
    let stop = Arc::new(AtomicBool::new(false));
    let load = background(proxies.clone(), rate, load_conns, path.clone(), warm, stop.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    eprintln!("[propagate] background load: {rate} req/s on each proxy over {load_conns} connections; {count} revocations");

    // 3. Revocations.
    let mut cpc = Conn::new(&cp);
    let mut delete_ms = Vec::new();
    let mut prop_ms = Vec::new();
    let mut per_proxy_ms: Vec<Vec<f64>> = vec![Vec::new(); proxies.len()];
    let mut spread_ms = Vec::new();
    let mut probe_rounds = Vec::new();
    // Per revocation: the widest (first refusal - last let through) over the workers, the
    // uncertainty of the measurement.
    let mut brackets = Vec::new();
    let (mut unconfirmed, mut stale_after_204) = (0u64, 0u64);
    let (mut timeouts, mut flaps, mut precheck_failures, mut delete_failures, mut odd_answers) = (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut rng: u64 = 0x2545_f491_4f6c_dd1d;
    let run_start = Instant::now();
    let mut result: Result<(), String> = Ok(());
    'rev: for k in 0..count {
        let i = first + k;
        let bearer = format!("Bearer {}", tokens[i]);
        // The token is let through everywhere (and now cached by every worker).
        let mut pre_ok = true;
        for pp in probes.iter_mut() {
            for pr in pp.iter_mut() {
                match get(&mut pr.sender, &path, &bearer).await {
                    Ok((200, _)) => {}
                    Ok((s, b)) => {
                        pre_ok = false;
                        eprintln!("[propagate] #{i}: before revocation, a probe answered {s}: {}", String::from_utf8_lossy(&b));
                    }
                    Err(e) => {
                        result = Err(e);
                        break 'rev;
                    }
                }
            }
        }
        if !pre_ok {
            precheck_failures += 1;
        }
        let sent = Instant::now();
        let del = match cpc.call("DELETE", &format!("/api/v1/tokens/{}{query}", ids[i]), &[("authorization", &admin_bearer)], None).await {
            Ok(a) => a,
            Err(e) => {
                result = Err(format!("DELETE: {e}"));
                break;
            }
        };
        let t0 = Instant::now();
        let d_ms = (t0 - sent).as_secs_f64() * 1e3;
        let confirmed = if del.status == 200 {
            // ?wait=: {"version", "proxies": {"live", "applied"}}
            let v: Value = serde_json::from_slice(&del.body).unwrap_or_default();
            let (live, applied) = (v["proxies"]["live"].as_u64(), v["proxies"]["applied"].as_u64());
            if live.is_none() || live != applied {
                unconfirmed += 1;
            }
            json!({"live": live, "applied": applied})
        } else {
            Value::Null
        };
        if !(del.status == 204 || (del.status == 200 && !query.is_empty())) {
            delete_failures += 1;
            eprintln!("[propagate] #{i}: DELETE answered {}: {}", del.status, String::from_utf8_lossy(&del.body));
            continue;
        }
        delete_ms.push(d_ms);

        // Every probe connection, concurrently, until it refuses.
        let mut futs = Vec::new();
        for (p, pp) in probes.iter_mut().enumerate() {
            for pr in pp.iter_mut() {
                let (bearer, path) = (bearer.clone(), path.clone());
                futs.push(async move {
                    let mut rounds = 0u32;
                    let mut odd = 0u32;
                    // Arrival of the last answer that still let the token through.
                    let mut allowed: Option<Duration> = None;
                    loop {
                        let (s, b) = get(&mut pr.sender, &path, &bearer).await?;
                        rounds += 1;
                        if is_revoked(s, &b) {
                            return Ok::<_, String>((p, pr.worker, Some(t0.elapsed()), rounds, odd, allowed));
                        }
                        if s == 200 {
                            allowed = Some(t0.elapsed());
                        } else {
                            odd += 1;
                        }
                        if t0.elapsed() > timeout {
                            return Ok((p, pr.worker, None, rounds, odd, allowed));
                        }
                        if !pause.is_zero() {
                            tokio::time::sleep(pause).await;
                        }
                    }
                });
            }
        }
        let answers = match futures_join(futs).await {
            Ok(a) => a,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let mut per_proxy = vec![0f64; proxies.len()];
        let mut worker_ms = Vec::new();
        let mut timed_out = false;
        let mut rounds_max = 0;
        let mut stale = false;
        let mut bracket = 0f64;
        for (p, w, t, rounds, odd, allowed) in &answers {
            stale |= allowed.is_some();
            if let (Some(t), Some(a)) = (t, allowed) {
                bracket = bracket.max((*t - *a).as_secs_f64() * 1e3);
            }
            rounds_max = rounds_max.max(*rounds);
            odd_answers += u64::from(*odd);
            match t {
                Some(t) => {
                    let ms = t.as_secs_f64() * 1e3;
                    per_proxy[*p] = per_proxy[*p].max(ms);
                    worker_ms.push(json!({"proxy": p, "worker": w, "ms": ms, "probes": rounds,
                                          "last_allowed_ms": allowed.map(|a| a.as_secs_f64() * 1e3)}));
                }
                None => {
                    timed_out = true;
                    per_proxy[*p] = f64::INFINITY;
                    worker_ms.push(json!({"proxy": p, "worker": w, "ms": null, "probes": rounds}));
                }
            }
        }
        // Still refused everywhere?
        let mut flapped = false;
        for pp in probes.iter_mut() {
            for pr in pp.iter_mut() {
                match get(&mut pr.sender, &path, &bearer).await {
                    Ok((s, b)) if is_revoked(s, &b) => {}
                    Ok(_) => flapped = true,
                    Err(e) => {
                        result = Err(e);
                        break 'rev;
                    }
                }
            }
        }
        if flapped {
            flaps += 1;
        }
        if stale {
            stale_after_204 += 1;
        }
        let prop = per_proxy.iter().cloned().fold(0f64, f64::max);
        if timed_out {
            timeouts += 1;
        } else {
            prop_ms.push(prop);
            for (p, v) in per_proxy.iter().enumerate() {
                per_proxy_ms[p].push(*v);
            }
            let lo = per_proxy.iter().cloned().fold(f64::INFINITY, f64::min);
            spread_ms.push(prop - lo);
            probe_rounds.push(f64::from(rounds_max));
            brackets.push(bracket);
        }
        out.push_str(&json!({"i": i, "id": ids[i], "delete_ms": d_ms, "propagation_ms": if timed_out { Value::Null } else { json!(prop) },
                              "per_proxy_ms": per_proxy.iter().map(|v| if v.is_finite() { json!(v) } else { Value::Null }).collect::<Vec<_>>(),
                              "workers": worker_ms, "flapped": flapped, "precheck_ok": pre_ok,
                              "status": del.status, "confirmed": confirmed}).to_string());
        out.push('\n');
        if (k + 1) % 50 == 0 || k + 1 == count {
            let mut s = prop_ms.clone();
            s.sort_by(|a, b| a.total_cmp(b));
            eprintln!(
                "[propagate] {}/{count} revoked ({:.0} s): last DELETE {d_ms:.1} ms, last propagation {prop:.1} ms; so far p50 {:.1} ms, max {:.1} ms; timeouts {timeouts}, flaps {flaps}",
                k + 1,
                run_start.elapsed().as_secs_f64(),
                pct(&s, 50.0),
                s.last().copied().unwrap_or(f64::NAN)
            );
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let gap = gap_min + if gap_max > gap_min { rng % (gap_max - gap_min + 1) } else { 0 };
        tokio::time::sleep(Duration::from_millis(gap)).await;
    }
    let secs = run_start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let load = load.join().map_err(|_| "the background load thread panicked")?;
    std::fs::write(&out_path, out).map_err(|e| format!("{out_path}: {e}"))?;
    result?;

    let load_json: Vec<Value> = load
        .into_iter()
        .map(|(mut t, secs)| {
            t.latencies_us.sort_unstable();
            let l: Vec<f64> = t.latencies_us.iter().map(|&u| f64::from(u) / 1e3).collect();
            json!({"sent": t.sent, "ok": t.ok, "non_2xx": t.non_2xx, "errors": t.errors, "secs": secs,
                   "achieved_rps": t.sent as f64 / secs, "latency_ms": summary(l)})
        })
        .collect();
    Ok(json!({
        "op": "propagate",
        "revocations": count,
        "measured": prop_ms.len(),
        "secs": secs,
        "proxies": proxies.len(),
        "workers_per_proxy": workers,
        "probe_pause_us": pause.as_micros() as u64,
        "rate_per_proxy": rate,
        "load_connections": load_conns,
        "delete_ms": summary(delete_ms),
        "propagation_ms": summary(prop_ms),
        "per_proxy_ms": per_proxy_ms.into_iter().map(summary).collect::<Vec<_>>(),
        "spread_ms": summary(spread_ms),
        "probes_per_connection": summary(probe_rounds),
        "bracket_ms": summary(brackets),
        "delete_query": query,
        "stale_after_204": stale_after_204,
        "unconfirmed": unconfirmed,
        "timeouts": timeouts,
        "flaps": flaps,
        "precheck_failures": precheck_failures,
        "delete_failures": delete_failures,
        "odd_answers": odd_answers,
        "load": load_json,
    }))
}

/// Runs the futures concurrently on this task; the first error wins.
async fn futures_join<F, T>(futs: Vec<F>) -> Result<Vec<T>, String>
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.into_iter().map(Box::pin).collect();
    let mut done: Vec<Option<T>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if done[i].is_some() {
                continue;
            }
            match f.as_mut().poll(cx) {
                std::task::Poll::Ready(Ok(v)) => done[i] = Some(v),
                std::task::Poll::Ready(Err(e)) => return std::task::Poll::Ready(Err(e)),
                std::task::Poll::Pending => pending = true,
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(Ok(()))
        }
    })
    .await?;
    Ok(done.into_iter().map(|d| d.expect("every future finished")).collect())
}
