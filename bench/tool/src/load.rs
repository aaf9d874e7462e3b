//! An open-loop load generator with coordinated-omission correction (the wrk2 model).
//!
//! Request `i` is due at `start + i / rate`, whatever happened to the ones before it.
//! `connections` keep-alive HTTP/1.1 connections take the next due request as soon as
//! they are free; its latency is measured from when it was DUE, not from when it could
//! be sent, so a stalled proxy shows up in the percentiles instead of silently slowing
//! the generator down. Each request carries the next token of the file (rotating), so
//! the same token mixes as the closed-loop runs can be used.
//!
//! Why not oha or h2load: neither can send a different `Authorization` header per
//! request, which the tokengate variants need (a warm set of tokens, or never-seen ones).
//! One thread; timers have 1 ms resolution, so requests leave in per-millisecond bursts.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::Conn;
use crate::Args;

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    non_2xx: u64,
    errors: u64,
}

pub async fn load(args: &Args) -> Result<Value, String> {
    let addr = args.get("addr")?.to_owned();
    let rate: f64 = args.num("rate")?;
    let secs: f64 = args.num("secs")?;
    let connections: usize = args.num("connections")?;
    let path = Rc::new(args.get("path")?.to_owned());
    let offset: usize = args.opt("offset").and_then(|o| o.parse().ok()).unwrap_or(0);
    let tokens: Rc<Vec<String>> = Rc::new(match args.opt("tokens") {
        Some(f) => std::fs::read_to_string(f)
            .map_err(|e| format!("{f}: {e}"))?
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| format!("Bearer {l}"))
            .collect(),
        None => Vec::new(),
    });
    let total = (rate * secs) as usize;
    let period = Duration::from_secs_f64(1.0 / rate);
    let tally = Rc::new(RefCell::new(Tally { latencies_us: Vec::with_capacity(total), ..Tally::default() }));
    let next = Rc::new(RefCell::new(0usize));
    let start = Instant::now() + Duration::from_millis(50);
    let deadline = Duration::from_secs_f64(secs * 2.0);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (addr, path, tokens, tally, next) = (addr.clone(), path.clone(), tokens.clone(), tally.clone(), next.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut conn = Conn::new(&addr);
            loop {
                let i = {
                    let mut n = next.borrow_mut();
                    let i = *n;
                    *n += 1;
                    i
                };
                // Bounded in time too: an overloaded proxy gets at most twice the run.
                if i >= total || start.elapsed() > deadline {
                    return;
                }
                let due = start + period.mul_f64(i as f64);
                tokio::time::sleep_until(due.into()).await;
                let auth = (!tokens.is_empty()).then(|| tokens[(offset + i) % tokens.len()].as_str());
                let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
                let result = conn.call("GET", &path, &headers, None).await;
                let us = due.elapsed().as_micros().min(u32::MAX as u128) as u32;
                let mut t = tally.borrow_mut();
                t.latencies_us.push(us);
                match result {
                    Ok(a) if (200..300).contains(&a.status) => t.ok += 1,
                    Ok(_) => t.non_2xx += 1,
                    Err(_) => t.errors += 1,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let wall = start.elapsed().as_secs_f64();
    let mut t = tally.borrow_mut();
    t.latencies_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        let v = &t.latencies_us;
        if v.is_empty() {
            return 0.0;
        }
        let idx = ((p / 100.0) * (v.len() as f64 - 1.0)).round() as usize;
        f64::from(v[idx.min(v.len() - 1)])
    };
    Ok(json!({
        "op": "load",
        "rate": rate,
        "sent": t.latencies_us.len(),
        "unsent": total.saturating_sub(t.latencies_us.len()),
        "ok": t.ok,
        "non_2xx": t.non_2xx,
        "errors": t.errors,
        "achieved_rps": t.latencies_us.len() as f64 / wall,
        "p50_us": pct(50.0),
        "p99_us": pct(99.0),
        "p999_us": pct(99.9),
        "max_us": pct(100.0),
    }))
}
