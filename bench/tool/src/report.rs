//! Turns the run's JSON-lines results into the BENCHMARKS.md section: medians with
//! min–max over the rounds, and every target ratio computed from medians of this run,
//! beside the same ratio computed within each round.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::Args;

struct Stat {
    med: f64,
    min: f64,
    max: f64,
}

fn stat(mut v: Vec<f64>) -> Option<Stat> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    let med = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 };
    Some(Stat { med, min: v[0], max: v[n - 1] })
}

fn fmt(s: &Option<Stat>, scale: f64, digits: usize) -> String {
    match s {
        None => "–".into(),
        Some(s) => format!("{:.d$} ({:.d$}–{:.d$})", s.med / scale, s.min / scale, s.max / scale, d = digits),
    }
}

const LABELS: [(&str, &str); 17] = [
    ("A", "A no auth (ceiling)"),
    ("B", "B empty Wasm filter"),
    ("C", "C jwt_authn, no cache"),
    ("D", "D jwt_authn + jwt_cache"),
    ("E", "E tokengate warm (300 tokens, all revocations loaded)"),
    ("E0", "E0 as E, the baseline filter (BASELINE_REF)"),
    ("E2", "E2 as E, identity_headers cut to x-tokengate-subject (one identity header written)"),
    ("H", "E1 tokengate, one hot token"),
    ("S", "E-session: as E, 300 seed-003 session tokens"),
    ("V", "E-voucher: 300 seed-000 voucher tokens, device check (peer address), GET /wifi/status"),
    ("W", "E-http: 300 logins' tokenForHttpServer (made each round), GET /files/:name"),
    ("S0", "S0 as E-session, the baseline filter (BASELINE_REF)"),
    ("V0", "V0 as E-voucher, the baseline filter (BASELINE_REF)"),
    ("W0", "W0 as E-http, the baseline filter (BASELINE_REF)"),
    ("F", "F tokengate cold (never-seen tokens)"),
    ("F0", "F0 as F, the baseline filter (BASELINE_REF)"),
    ("G", "G ext_authz → Rust authorizer"),
];

pub fn report(args: &Args) -> Result<(), String> {
    let path = args.get("results")?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let rows: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let mut by: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for r in &rows {
        if let Some(v) = r["variant"].as_str() {
            by.entry(v.to_owned()).or_default().push(r);
        }
    }
    let col = |v: &str, k: &str| -> Option<Stat> {
        stat(by.get(v).map(|rs| rs.iter().filter_map(|r| r[k].as_f64()).collect()).unwrap_or_default())
    };
    let total_cpu = |v: &str| -> Option<Stat> {
        stat(
            by.get(v)
                .map(|rs| {
                    rs.iter()
                        .filter_map(|r| Some(r["cpu_us_per_req"].as_f64()? + r["authz_cpu_us_per_req"].as_f64().unwrap_or(0.0)))
                        .collect()
                })
                .unwrap_or_default(),
        )
    };
    let rounds = by.values().map(Vec::len).max().unwrap_or(0);
    // The open-loop rate of each round: 50% of the closed-loop capacity of the round's
    // first variant (E unless OL_FROM says otherwise; rows before this field: A's, once).
    let mut rates: BTreeMap<i64, (f64, String)> = BTreeMap::new();
    for r in &rows {
        if let (Some(round), Some(rate)) = (r["round"].as_i64(), r["ol_rate"].as_f64()) {
            rates.entry(round).or_insert((rate, r["ol_from"].as_str().unwrap_or("A").to_owned()));
        }
    }
    let ol_from = {
        let mut f: Vec<&str> = rates.values().map(|(_, f)| f.as_str()).collect();
        f.dedup();
        f.join("/")
    };
    let ol_rates = fmt(&stat(rates.values().map(|(r, _)| *r).collect()), 1.0, 0);
    let open_loop = if rows.iter().any(|r| r["p50_us"].is_number()) {
        format!(
            "Open loop: tg-bench load at 50% of {ol_from}'s closed-loop capacity measured in the same round ({ol_from} runs first in \
             every round), the same rate for every variant of the round: {ol_rates} req/s over the rounds; 64 connections, latency \
             from each request's due time (coordinated-omission corrected)."
        )
    } else {
        "Open loop: skipped (OPEN_LOOP=0).".to_owned()
    };
    println!(
        "Medians over {rounds} rounds, (min–max). CPU = Envoy's utime+stime from /proc/<pid>/stat during the closed-loop run, \
         divided by the requests served (G adds the authorizer's); a \"2 workers\" row is the variant above it with Envoy at \
         --concurrency 2 on CPUs 0-1 (the generators share CPU 1), its \"added over A\" over A at 2 workers when that ran. \
         Closed loop: wrk, 1 thread, 32 connections. \
         {open_loop}\n"
    );
    println!("| variant | CPU µs/req | added over A | req/s closed loop | req/s per core (1e6/CPU) | p50 ms | p99 ms | p99.9 ms | open-loop non-2xx/err | RSS MiB |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let a_cpu = col("A", "cpu_us_per_req").map(|s| s.med).unwrap_or(f64::NAN);
    let a2_cpu = col("A2C", "cpu_us_per_req").map(|s| s.med).unwrap_or(a_cpu);
    let labels = LABELS[..2]
        .iter()
        .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
        .chain(crate::render::NOOP_VARIANTS.iter().map(|(v, _, label)| ((*v).to_owned(), (*label).to_owned())))
        .chain(LABELS[2..].iter().map(|(v, l)| ((*v).to_owned(), (*l).to_owned())))
        // Each variant followed by itself at --concurrency 2 (suffix 2C), when that ran.
        .flat_map(|(v, l)| [(format!("{v}2C"), format!("{v}2C: {l}, 2 workers")), (v, l)].into_iter().rev());
    for (v, label) in labels {
        let v = v.as_str();
        if !by.contains_key(v) {
            continue;
        }
        let a_cpu = if v.ends_with("2C") { a2_cpu } else { a_cpu };
        let cpu = total_cpu(v);
        let added = cpu.as_ref().map(|s| format!("{:.1}", s.med - a_cpu)).unwrap_or_else(|| "–".into());
        let per_core = cpu.as_ref().map(|s| format!("{:.0}", 1e6 / s.med)).unwrap_or_else(|| "–".into());
        let bad: f64 = by[v].iter().map(|r| r["ol_bad"].as_f64().unwrap_or(0.0)).sum();
        println!(
            "| {label} | {} | {added} | {} | {per_core} | {} | {} | {} | {bad:.0} | {} |",
            fmt(&cpu, 1.0, 1),
            fmt(&col(v, "rps"), 1.0, 0),
            fmt(&col(v, "p50_us"), 1000.0, 2),
            fmt(&col(v, "p99_us"), 1000.0, 2),
            fmt(&col(v, "p999_us"), 1000.0, 2),
            fmt(&col(v, "rss_kb"), 1024.0, 0),
        );
    }
    let med = |s: Option<Stat>| s.map(|s| s.med).unwrap_or(f64::NAN);
    let cpu = |v: &str| med(total_cpu(v));
    let rps = |v: &str| med(col(v, "rps"));
    let p99 = |v: &str| med(col(v, "p99_us"));
    let verdict = |ok: bool| if ok { "met" } else { "**missed**" };
    let has = |vs: &[&str]| vs.iter().all(|v| by.contains_key(*v));
    // The same ratio within each round (variants of one round run minutes apart, rounds
    // up to half an hour): on a machine whose speed drifts, the spread of these says how
    // far the medians' ratio can be trusted.
    let at = |v: &str, r: i64, k: &str| -> Option<f64> { by.get(v)?.iter().find(|x| x["round"].as_i64() == Some(r))?[k].as_f64() };
    let cpu_at = |v: &str, r: i64| Some(at(v, r, "cpu_us_per_req")? + at(v, r, "authz_cpu_us_per_req").unwrap_or(0.0));
    let per_round = |f: &dyn Fn(i64) -> Option<f64>| fmt(&stat((1..=rounds as i64).filter_map(f).collect()), 1.0, 2);
    println!("\n| target | measured (ratio of medians) | the ratio per round: median (min–max) | verdict |\n|---|---|---|---|");
    // E2 is E writing one identity header instead of five (issue 14 target 6).
    for e in ["E", "E2"].into_iter().filter(|e| has(&["A", "B", e])) {
        let r1 = (cpu(e) - cpu("A")) / (cpu("B") - cpu("A"));
        let pr = per_round(&|r| Some((cpu_at(e, r)? - cpu_at("A", r)?) / (cpu_at("B", r)? - cpu_at("A", r)?)));
        println!(
            "| {e} added CPU over A ≤ 1.25 × B's | {r1:.2} × ({:.1} vs {:.1} µs) | {pr} | {} |",
            cpu(e) - cpu("A"),
            cpu("B") - cpu("A"),
            verdict(r1 <= 1.25)
        );
    }
    if has(&["D", "E"]) {
        let r2 = rps("E") / rps("D");
        let pr = per_round(&|r| Some(at("E", r, "rps")? / at("D", r, "rps")?));
        println!("| E throughput ≥ 0.9 × D | {r2:.2} × (CPU {:.1} vs {:.1} µs/req) | {pr} | {} |", cpu("E"), cpu("D"), verdict(r2 >= 0.9));
    }
    if has(&["C", "F"]) {
        let r3 = rps("F") / rps("C");
        let pr = per_round(&|r| Some(at("F", r, "rps")? / at("C", r, "rps")?));
        println!("| F throughput ≥ 0.9 × C | {r3:.2} × (CPU {:.1} vs {:.1} µs/req) | {pr} | {} |", cpu("F"), cpu("C"), verdict(r3 >= 0.9));
    }
    if has(&["E", "G"]) {
        let r4 = cpu("G") / cpu("E");
        let r4raw = rps("E") / rps("G");
        let pr = per_round(&|r| Some(cpu_at("G", r)? / cpu_at("E", r)?));
        println!(
            "| E throughput ≥ 3 × G, authorizer CPU counted (req/s per core) | {r4:.2} × (raw closed-loop req/s: {r4raw:.2} ×) | {pr} | {} |",
            verdict(r4 >= 3.0)
        );
    }
    // Issue 14 §5 (and issue 11 §7, issue 12 §6): each new kind of token against an API
    // token, Envoy's CPU per request (≤ 1.05 × E's); the added CPU over A beside it.
    for (v, what) in [
        ("S", "E-session: a session Bearer"),
        ("V", "E-voucher: a voucher token with the device check"),
        ("W", "E-http: a login's tokenForHttpServer"),
    ] {
        if !has(&["A", "E", v]) {
            continue;
        }
        let r = cpu(v) / cpu("E");
        let pr = per_round(&|x| Some(cpu_at(v, x)? / cpu_at("E", x)?));
        println!(
            "| {what}: CPU per request ≤ 1.05 × E's (an API token) | {r:.3} × ({:.1} vs {:.1} µs/req; added over A {:.1} vs {:.1} µs, {:.2} ×) | {pr} | {} |",
            cpu(v),
            cpu("E"),
            cpu(v) - cpu("A"),
            cpu("E") - cpu("A"),
            (cpu(v) - cpu("A")) / (cpu("E") - cpu("A")),
            verdict(r <= 1.05)
        );
    }
    // A change against its baseline (BASELINE_REF), per kind of token.
    for (v, base) in [("E", "E0"), ("S", "S0"), ("V", "V0"), ("W", "W0"), ("F", "F0")] {
        if !has(&[v, base]) {
            continue;
        }
        let r = cpu(v) / cpu(base);
        let pr = per_round(&|x| Some(cpu_at(v, x)? / cpu_at(base, x)?));
        println!(
            "| (the change) {v} CPU per request vs {base}, the baseline filter | {r:.3} × ({:.1} vs {:.1} µs/req) | {pr} | – |",
            cpu(v),
            cpu(base)
        );
    }
    // Issue 14 §3: a second worker must not cost the gate CPU per request (no contention
    // on shared data): Envoy's CPU per request at --concurrency 2 against 1, warm and cold.
    for (two, one, mix) in [("E2C", "E", "warm"), ("F2C", "F", "cold")] {
        if !has(&[two, one]) {
            continue;
        }
        let r = cpu(two) / cpu(one);
        let pr = per_round(&|x| Some(cpu_at(two, x)? / cpu_at(one, x)?));
        let added = if has(&["A", "A2C"]) {
            format!(
                "; added over A at the same workers: {:.1} vs {:.1} µs, {:.2} ×",
                cpu(two) - cpu("A2C"),
                cpu(one) - cpu("A"),
                (cpu(two) - cpu("A2C")) / (cpu(one) - cpu("A"))
            )
        } else {
            String::new()
        };
        // The connections each worker accepted, per round (warm-up, closed and open loop).
        let split: Vec<&str> = by[two].iter().filter_map(|x| x["worker_connections"].as_str()).collect();
        let added = if split.is_empty() { added } else { format!("{added}; connections per worker by round: {}", split.join(", ")) };
        println!(
            "| {one} ({mix}) CPU per request at --concurrency 2 ≤ 1.10 × at 1 ({two}/{one}) | {r:.2} × ({:.1} vs {:.1} µs/req{added}) | {pr} | {} |",
            cpu(two),
            cpu(one),
            verdict(r <= 1.10)
        );
    }
    if has(&["A", "A2C"]) {
        let r = cpu("A2C") / cpu("A");
        let pr = per_round(&|x| Some(cpu_at("A2C", x)? / cpu_at("A", x)?));
        println!("| (reference, no target) A, no filter: CPU per request at --concurrency 2 vs 1 | {r:.2} × ({:.1} vs {:.1} µs/req) | {pr} | – |", cpu("A2C"), cpu("A"));
    }
    if has(&["B", "E"]) && p99("E").is_finite() && p99("B").is_finite() {
        // Issue 14 §4: both at the same rate, 50% of E's own capacity in that round.
        let r5 = p99("E") / p99("B");
        let pr = per_round(&|r| Some(at("E", r, "p99_us")? / at("B", r, "p99_us")?));
        println!(
            "| E open-loop p99 at 50% of {ol_from}'s capacity ≤ 1.2 × B's at the same rate ({ol_rates} req/s) | {r5:.2} × ({:.2} vs {:.2} ms) | {pr} | {} |",
            p99("E") / 1000.0,
            p99("B") / 1000.0,
            verdict(r5 <= 1.2)
        );
    }
    Ok(())
}
