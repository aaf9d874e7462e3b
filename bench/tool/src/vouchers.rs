//! `tg-bench redeem`: seed-000 voucher redemptions (`POST /api/v1/vouchers/redeem`) over
//! `concurrency` keep-alive connections, each client with its own source address, and
//! their rate and latency (see `bench/vouchers.sh`).
//!
//! ```text
//! tg-bench redeem --cp ADDR --codes FILE --network N --count N --concurrency C --mode new|renew --run K
//! ```
//!
//! - `new`: redemption `i` is a device never seen before (a MAC made of `--run` and `i`)
//!   with code `i mod codes` (multi-use codes): a new activation row each time.
//! - `renew`: client `c` redeems code `c mod codes` for its own device once before the
//!   clock starts (the activation), then again and again: each answer must say `renewed`.
//!
//! Every answer must be 200 (and `renewed` as the mode says): the first that is not
//! stops the run and is the error, with its body.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use serde_json::{json, Value};

use crate::http::Conn;
use crate::Args;

/// The device of redemption `i` in run `run`: a locally administered MAC address.
fn device(run: u8, i: usize) -> String {
    let i = i as u32;
    format!("02:{run:02x}:{:02x}:{:02x}:{:02x}:{:02x}", (i >> 24) & 0xff, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)
}

/// Client `c`'s own source address (sent as `x-forwarded-for`).
fn source(run: u8, c: usize) -> String {
    format!("10.{run}.{}.{}", c / 250, c % 250 + 1)
}

struct Shared {
    next: usize,
    times: Vec<f64>,
    error: Option<String>,
}

async fn redeem_once(conn: &mut Conn, source: &str, body: String, renewed: Option<bool>) -> Result<(), String> {
    let a = conn.call("POST", "/api/v1/vouchers/redeem", &[("x-forwarded-for", source)], Some(body)).await?;
    if a.status != 200 {
        return Err(format!("POST /api/v1/vouchers/redeem answered {}: {}", a.status, String::from_utf8_lossy(&a.body)));
    }
    let v: Value = serde_json::from_slice(&a.body).map_err(|e| format!("the redemption's answer: {e}"))?;
    if v["token"].as_str().is_none_or(str::is_empty) {
        return Err(format!("a redemption answered 200 without a token: {v}"));
    }
    if let Some(want) = renewed {
        if v["renewed"].as_bool() != Some(want) {
            return Err(format!("a redemption answered renewed = {} (expected {want}): {v}", v["renewed"]));
        }
    }
    Ok(())
}

pub async fn redeem(args: &Args) -> Result<Value, String> {
    let cp = args.get("cp")?.to_owned();
    let count: usize = args.num("count")?;
    let concurrency: usize = args.num::<usize>("concurrency")?.max(1);
    let run: u8 = args.num("run")?;
    let network = args.get("network")?.to_owned();
    let mode = args.get("mode")?.to_owned();
    let renew = match mode.as_str() {
        "new" => false,
        "renew" => true,
        m => return Err(format!("--mode must be new or renew, not {m}")),
    };
    let text = std::fs::read_to_string(args.get("codes")?).map_err(|e| e.to_string())?;
    let codes: Rc<Vec<String>> = Rc::new(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect());
    if codes.is_empty() {
        return Err("no codes".into());
    }
    let body = {
        let network = network.clone();
        let codes = codes.clone();
        move |code_index: usize, dev: &str| json!({"code": codes[code_index % codes.len()], "device": dev, "network": network}).to_string()
    };

    let mut conns: Vec<Conn> = (0..concurrency).map(|_| Conn::new(&cp)).collect();
    if renew {
        // Each client's activation, made before the clock starts (new or already there).
        for (c, conn) in conns.iter_mut().enumerate() {
            redeem_once(conn, &source(run, c), body(c, &device(run, c)), None).await?;
        }
    }

    let shared = Rc::new(RefCell::new(Shared { next: 0, times: Vec::with_capacity(count), error: None }));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (c, mut conn) in conns.into_iter().enumerate() {
        let shared = shared.clone();
        let body = body.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let src = source(run, c);
            loop {
                let i = {
                    let mut s = shared.borrow_mut();
                    if s.next >= count || s.error.is_some() {
                        return;
                    }
                    s.next += 1;
                    s.next - 1
                };
                let (code_index, dev) = if renew { (c, device(run, c)) } else { (i, device(run, i)) };
                let t = Instant::now();
                match redeem_once(&mut conn, &src, body(code_index, &dev), Some(renew)).await {
                    Ok(()) => shared.borrow_mut().times.push(t.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => {
                        let mut s = shared.borrow_mut();
                        if s.error.is_none() {
                            s.error = Some(format!("redemption {i} (client {c}, device {dev}): {e}"));
                        }
                        return;
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| e.to_string())?;
    }
    let secs = start.elapsed().as_secs_f64();
    let s = shared.borrow();
    if let Some(e) = &s.error {
        return Err(e.clone());
    }
    let mut t = s.times.clone();
    t.sort_by(f64::total_cmp);
    let pct = |q: f64| t.get(((t.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or(0.0);
    Ok(json!({"op": "redeem", "mode": mode, "count": t.len(), "concurrency": concurrency, "codes": codes.len(), "secs": secs,
        "per_sec": t.len() as f64 / secs, "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0)}))
}
