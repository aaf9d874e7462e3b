//! `GET /sync/v1/changes`: credential, snapshot, delta, long poll, versions.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{run_with, TestApp};

each_db!(
    security_sync_wrong_credential_is_refused,
    sync_snapshot_lists_live_revocations,
    sync_delta_since_a_version,
    sync_long_poll_wakes_on_a_revocation,
    sync_long_poll_times_out_with_the_same_version,
    sync_swept_log_answers_a_snapshot,
    sync_held_call_ends_at_shutdown,
    security_sync_answers_carry_a_mac_over_nonce_and_body,
    sync_one_change_log_read_serves_every_held_proxy,
    sync_one_delta_carries_every_kind_of_change_in_its_range,
    security_sync_read_is_one_snapshot_when_the_sweeper_prunes_mid_read,
);

fn revoked_ids(r: &Value) -> Vec<String> {
    let mut ids: Vec<String> = r["revoked"].as_array().unwrap().iter().map(|e| e["jti"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

fn version(r: &Value) -> u64 {
    r["version"].as_u64().unwrap()
}

/// Issues a token from `admin` and revokes it; returns its id and expiry (ms).
async fn revoke_one(app: &TestApp, admin: &str) -> (String, i64) {
    let t = app.child(admin, &json!({"expiresIn": "1 hour"})).await.body;
    let id = t["_id"].as_str().unwrap().to_owned();
    let r = app.delete(&format!("/api/v1/tokens/{id}"), admin).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    (id, t["expiresAt"].as_i64().unwrap())
}

async fn security_sync_wrong_credential_is_refused(app: TestApp) {
    app.sync_as(0, 0, Some("wrong")).await.assert_error(401, "bad_proxy_credential");
    app.sync_as(0, 0, None).await.assert_error(401, "bad_proxy_credential");
    let r = app.sync_as(0, 0, Some(&format!("{}x", *crate::helpers::PROXY_BEARER))).await;
    r.assert_error(401, "bad_proxy_credential");
    assert!(r.header("www-authenticate").is_some());
    assert_eq!(app.sync(0, 0).await.status, StatusCode::OK);
    // Contacts are written in batches (sync::proxies::FLUSH_EVERY): the row comes within one.
    let mut proxies = 0;
    for _ in 0..50 {
        proxies = sqlx::query_scalar("SELECT COUNT(*) FROM proxies WHERE id = 'test-proxy'").fetch_one(&app.state.pool).await.unwrap();
        if proxies == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(proxies, 1);
    drop(app);
    // Without a configured secret every call is refused.
    run_with(&[("TOKENGATE_PROXY_SECRET", "")], |app| async move {
        app.sync(0, 0).await.assert_error(401, "bad_proxy_credential");
        app.sync_as(0, 0, Some("")).await.assert_error(401, "bad_proxy_credential");
    })
    .await;
}

async fn sync_snapshot_lists_live_revocations(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let admin = admin["token"].as_str().unwrap();
    let empty = app.sync(0, 0).await;
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body["protocol"], 1);
    assert_eq!(empty.body["snapshot"], true, "{}", empty.body);
    // The log starts at 1: version 0 is only ever a proxy's "nothing yet".
    assert_eq!(version(&empty.body), 1);
    assert_eq!(empty.body["revoked"], json!([]));
    // Current at 1: held, then the same version.
    let held = app.sync(1, 100).await.body;
    assert_eq!((version(&held), &held["snapshot"]), (1, &json!(false)));

    let (a, a_exp) = revoke_one(&app, admin).await;
    let (b, _) = revoke_one(&app, admin).await;
    let _live = app.child(admin, &json!({"expiresIn": "1 hour"})).await;
    let r = app.sync(0, 0).await.body;
    assert_eq!(r["snapshot"], true);
    assert_eq!(version(&r), 3);
    let mut expect = vec![a.clone(), b];
    expect.sort();
    assert_eq!(revoked_ids(&r), expect);
    let entry = r["revoked"].as_array().unwrap().iter().find(|e| e["jti"] == a.as_str()).unwrap();
    assert_eq!(entry["exp"].as_i64().unwrap(), a_exp / 1000);
    assert!(r["serverTime"].as_u64().unwrap() > 1_600_000_000_000);
    // Keys: the same set as the JWKS.
    let jwks = app.call(reqwest::Method::GET, "/.well-known/jwks.json", None, None).await.body;
    let keys = r["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], jwks["keys"][0]["kid"]);
    assert_eq!(keys[0]["x"], jwks["keys"][0]["x"]);
    // Ahead of the current version: a snapshot again.
    let ahead = app.sync(99, 0).await.body;
    assert_eq!(ahead["snapshot"], true);
    assert_eq!(version(&ahead), 3);
}

async fn sync_delta_since_a_version(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let admin = admin["token"].as_str().unwrap();
    revoke_one(&app, admin).await;
    let mut last = version(&app.sync(0, 0).await.body);
    assert_eq!(last, 2);
    for _ in 0..3 {
        let (id, _) = revoke_one(&app, admin).await;
        let r = app.sync(last, 0).await.body;
        assert_eq!(r["snapshot"], false);
        assert!(version(&r) > last, "versions strictly increase");
        assert_eq!(revoked_ids(&r), vec![id]);
        last = version(&r);
    }
    // A cascade: one entry per token, each its own version.
    let parent = app.child(admin, &json!({})).await.body;
    let child = app.child(parent["token"].as_str().unwrap(), &json!({})).await.body;
    let before = last;
    app.delete(&format!("/api/v1/tokens/{}", parent["_id"].as_str().unwrap()), admin).await;
    let r = app.sync(before, 0).await.body;
    assert_eq!(version(&r), before + 2);
    let mut expect = vec![parent["_id"].as_str().unwrap().to_owned(), child["_id"].as_str().unwrap().to_owned()];
    expect.sort();
    assert_eq!(revoked_ids(&r), expect);
    // From the first revocation's version: everything after it.
    let r = app.sync(2, 0).await.body;
    assert_eq!(r["snapshot"], false);
    assert_eq!(r["revoked"].as_array().unwrap().len(), 5);
    // Current: nothing new, same version.
    let r = app.sync(version(&r), 0).await.body;
    assert_eq!(r["revoked"], json!([]));
    assert_eq!(r["snapshot"], false);
    assert_eq!(version(&r), before + 2);
}

async fn sync_long_poll_wakes_on_a_revocation(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let admin = admin["token"].as_str().unwrap().to_owned();
    let target = app.child(&admin, &json!({})).await.body;
    revoke_one(&app, &admin).await;
    let current = version(&app.sync(0, 0).await.body);
    let client = app.client.clone();
    let url = app.url(&format!("/sync/v1/changes?since={current}&wait_ms=25000&proxy=long-poller"));
    let started = Instant::now();
    let poll = tokio::spawn(async move {
        let r = client.get(url).bearer_auth(&*crate::helpers::PROXY_BEARER).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap(), started.elapsed())
    });
    // Let the poll reach the server and wait; no correctness depends on this pause.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = target["_id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/api/v1/tokens/{id}"), &admin).await.status, StatusCode::NO_CONTENT);
    let (status, body, waited) = tokio::time::timeout(Duration::from_secs(20), poll).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(revoked_ids(&body), vec![id.to_owned()]);
    assert!(version(&body) > current);
    assert!(waited < Duration::from_secs(20), "{waited:?}");
}

async fn sync_long_poll_times_out_with_the_same_version(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    revoke_one(&app, admin["token"].as_str().unwrap()).await;
    let current = version(&app.sync(0, 0).await.body);
    let r = app.sync(current, 300).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(version(&r.body), current);
    assert_eq!(r.body["snapshot"], false);
    assert_eq!(r.body["revoked"], json!([]));
    assert_eq!(r.body["keys"].as_array().unwrap().len(), 1);
    // wait_ms above the cap is clamped, not refused; bad numbers are.
    let r = app.client.get(app.url("/sync/v1/changes?since=x&proxy=p")).bearer_auth(&*crate::helpers::PROXY_BEARER).send().await.unwrap();
    crate::helpers::Reply::from(r).await.assert_error(400, "bad_query");
    let r = app
        .client
        .get(app.url("/sync/v1/changes?since=0&proxy=bad%20id"))
        .bearer_auth(&*crate::helpers::PROXY_BEARER)
        .send()
        .await
        .unwrap();
    crate::helpers::Reply::from(r).await.assert_error(400, "bad_query");
}

async fn sync_swept_log_answers_a_snapshot(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let admin = admin["token"].as_str().unwrap();
    revoke_one(&app, admin).await;
    let (b, _) = revoke_one(&app, admin).await;
    // Sweep as if two hours had passed: both entries' tokens have expired.
    let removed = tokengate_control_plane::sweep_once(&app.state, crate::helpers::now_ms() + 2 * 3_600_000).await.unwrap();
    assert_eq!(removed, 2);
    // A proxy at version 2 cannot get a delta any more: snapshot (still listing the
    // revocation, whose token has not expired yet in real time).
    let r = app.sync(2, 0).await.body;
    assert_eq!(r["snapshot"], true);
    assert_eq!(version(&r), 3);
    assert!(revoked_ids(&r).contains(&b));
    // From the current version the log continues as before.
    let (c, _) = revoke_one(&app, admin).await;
    let r = app.sync(3, 0).await.body;
    assert_eq!(r["snapshot"], false);
    assert_eq!(revoked_ids(&r), vec![c]);
}

async fn sync_held_call_ends_at_shutdown(app: TestApp) {
    let current = version(&app.sync(0, 0).await.body);
    let client = app.client.clone();
    let url = app.url(&format!("/sync/v1/changes?since={current}&wait_ms=30000&proxy=held"));
    let poll = tokio::spawn(async move {
        let r = client.get(url).bearer_auth(&*crate::helpers::PROXY_BEARER).send().await.unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A graceful stop waits for in-flight calls: it finishes well before the 30 s hold
    // only because the held call answers at once.
    let started = Instant::now();
    let app = app.restart().await;
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    let (status, body) = tokio::time::timeout(Duration::from_secs(5), poll).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(version(&body), current);
    assert_eq!(body["revoked"], json!([]));
    drop(app);
}

/// Two replicas on one PostgreSQL database: a revocation committed on A wakes a sync call
/// held on B at once (LISTEN/NOTIFY), long before B's own re-read (set to 20 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_wake_held_calls_through_notify() {
    if !crate::helpers::backends().contains(&crate::helpers::Backend::Postgres) {
        return;
    }
    let db = std::sync::Arc::new(crate::helpers::TestDb::create(crate::helpers::Backend::Postgres).await);
    let vars = [("TOKENGATE_SYNC_RECHECK_MS", "20000")];
    let a = TestApp::spawn(db.clone(), &vars).await;
    let b = TestApp::spawn(db.clone(), &vars).await;
    let admin = a.admin_token(None, None).await;
    let admin = admin["token"].as_str().unwrap().to_owned();
    let target = a.child(&admin, &json!({})).await.body;
    let current = version(&b.sync(0, 0).await.body);
    let client = b.client.clone();
    let url = b.url(&format!("/sync/v1/changes?since={current}&wait_ms=25000&proxy=on-b"));
    let poll = tokio::spawn(async move {
        let r = client.get(url).bearer_auth(&*crate::helpers::PROXY_BEARER).send().await.unwrap();
        r.json::<Value>().await.unwrap()
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let id = target["_id"].as_str().unwrap();
    assert_eq!(a.delete(&format!("/api/v1/tokens/{id}"), &admin).await.status, StatusCode::NO_CONTENT);
    let body = tokio::time::timeout(Duration::from_secs(15), poll).await.unwrap().unwrap();
    let waited = started.elapsed();
    assert_eq!(revoked_ids(&body), vec![id.to_owned()]);
    assert!(waited < Duration::from_secs(3), "{waited:?}");
    drop(a);
    drop(b);
    db.cleanup().await;
}

/// A snapshot larger than `TOKENGATE_SNAPSHOT_PAGE` comes in parts chained by `next`;
/// together they list every live revocation once. `after` is refused with `since` set,
/// and a malformed `after` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_snapshot_in_parts() {
    run_with(&[("TOKENGATE_SNAPSHOT_PAGE", "2")], |app| async move {
        let admin = app.admin_token(None, None).await;
        let admin = admin["token"].as_str().unwrap().to_owned();
        let mut expected = Vec::new();
        for _ in 0..5 {
            expected.push(revoke_one(&app, &admin).await.0);
        }
        expected.sort();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        let mut parts = 0;
        let mut first_version = None;
        loop {
            let mut url = "/sync/v1/changes?since=0&wait_ms=0&proxy=pager".to_owned();
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let r = app.client.get(app.url(&url)).bearer_auth(&*crate::helpers::PROXY_BEARER).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["snapshot"], true);
            first_version.get_or_insert(version(&body));
            parts += 1;
            seen.extend(revoked_ids(&body));
            match body["next"].as_str() {
                Some(n) => after = Some(n.to_owned()),
                None => break,
            }
        }
        seen.sort();
        assert_eq!(seen, expected);
        assert_eq!(parts, 3, "5 revocations, 2 a part");
        let bad = app
            .client
            .get(app.url("/sync/v1/changes?since=3&wait_ms=0&after=abc&proxy=pager"))
            .bearer_auth(&*crate::helpers::PROXY_BEARER)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        let bad = app
            .client
            .get(app.url("/sync/v1/changes?since=0&wait_ms=0&after=a%27b&proxy=pager"))
            .bearer_auth(&*crate::helpers::PROXY_BEARER)
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    })
    .await;
}

/// Issue 14: `format=bin` answers snapshot parts as 16-byte records (4 times the JSON
/// page a part), carrying the same entries as the JSON parts; the MAC covers the binary
/// body exactly; `after` pages it; deltas stay JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_snapshot_in_binary_parts() {
    use tokengate_rules::revocation::{id_key, record, records};
    use tokengate_rules::sync::{decode_answer, ProxyKeys, BINARY_CONTENT_TYPE, BINARY_MAGIC};
    run_with(&[("TOKENGATE_SNAPSHOT_PAGE", "1")], |app| async move {
        let admin = app.admin_token(None, None).await;
        let admin = admin["token"].as_str().unwrap().to_owned();
        let mut expected = Vec::new();
        for _ in 0..9 {
            let (id, exp_ms) = revoke_one(&app, &admin).await;
            expected.push(record(&id_key(&id), u64::try_from(exp_ms).unwrap() / 1000));
        }
        expected.sort();
        let keys = ProxyKeys::derive(crate::helpers::PROXY_SECRET.as_bytes());
        // The same snapshot in JSON (one revocation a part) and in binary (four a part).
        let collect = |binary: bool| {
            let app = &app;
            let keys = keys.clone();
            async move {
                let (mut got, mut after, mut parts, mut first_version) = (Vec::new(), None::<String>, 0, None);
                loop {
                    let nonce = format!("n{parts}{binary}");
                    let mut url = format!("/sync/v1/changes?since=0&wait_ms=0&proxy=pager&nonce={nonce}");
                    if binary {
                        url.push_str("&format=bin");
                    }
                    if let Some(a) = &after {
                        url.push_str(&format!("&after={a}"));
                    }
                    let r = app.client.get(app.url(&url)).bearer_auth(&*crate::helpers::PROXY_BEARER).send().await.unwrap();
                    assert_eq!(r.status(), StatusCode::OK);
                    let ctype = r.headers()["content-type"].to_str().unwrap().to_owned();
                    let mac = r.headers()[tokengate_rules::sync::MAC_HEADER].to_str().unwrap().to_owned();
                    let body = r.bytes().await.unwrap();
                    assert!(keys.check_answer_mac(&nonce, &body, &mac), "the MAC covers the exact body");
                    assert_eq!(body.starts_with(&BINARY_MAGIC), binary);
                    assert_eq!(ctype, if binary { BINARY_CONTENT_TYPE } else { "application/json" });
                    let a = decode_answer(&body).unwrap();
                    assert!(a.header.snapshot);
                    assert_eq!(*first_version.get_or_insert(a.header.version), a.header.version);
                    if binary {
                        assert!(a.header.revoked.is_empty(), "every revocation is a record");
                    }
                    got.extend(records(a.records).unwrap());
                    got.extend(a.header.revoked.iter().map(|r| record(&id_key(&r.jti), r.exp)));
                    parts += 1;
                    match a.header.next {
                        Some(n) => after = Some(n),
                        None => break,
                    }
                }
                got.sort();
                (got, parts)
            }
        };
        let (json_entries, json_parts) = collect(false).await;
        let (bin_entries, bin_parts) = collect(true).await;
        assert_eq!(json_entries, expected);
        assert_eq!(bin_entries, expected);
        assert_eq!((json_parts, bin_parts), (9, 3), "1 a JSON part, 4 a binary part");
        // A delta stays JSON even when binary is asked for.
        let v = version(&app.sync(0, 0).await.body);
        let r = app
            .client
            .get(app.url(&format!("/sync/v1/changes?since={}&wait_ms=0&proxy=pager&format=bin", v - 1)))
            .bearer_auth(&*crate::helpers::PROXY_BEARER)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-type"], "application/json");
        let delta: Value = r.json().await.unwrap();
        assert_eq!((delta["snapshot"].as_bool(), revoked_ids(&delta).len()), (Some(false), 1));
    })
    .await;
}

/// Issue 10 defect 4: every answer carries a MAC over the call's nonce and the body
/// (checked by `sync_as` on every 200), the proxy secret itself is not a credential (only
/// the bearer derived from it is), and a malformed nonce is refused.
async fn security_sync_answers_carry_a_mac_over_nonce_and_body(app: TestApp) {
    let r = app.sync(0, 0).await;
    assert_eq!(r.status, StatusCode::OK);
    let mac = r.header(tokengate_rules::sync::MAC_HEADER).unwrap().to_owned();
    assert_eq!(mac.len(), 64);
    let body = serde_json::to_vec(&r.body).unwrap();
    let keys = tokengate_rules::sync::ProxyKeys::derive(crate::helpers::PROXY_SECRET.as_bytes());
    assert!(!keys.check_answer_mac("another-nonce", &body, &mac));
    app.sync_as(0, 0, Some(crate::helpers::PROXY_SECRET)).await.assert_error(401, "bad_proxy_credential");
    let url = app.url("/sync/v1/changes?since=0&proxy=p&nonce=a%20b");
    let r = crate::helpers::Reply::from(app.client.get(url).bearer_auth(&*crate::helpers::PROXY_BEARER).send().await.unwrap()).await;
    r.assert_error(400, "bad_query");
}

/// The value of an unlabelled metric in the exposition.
async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in:\n{text}"))
}

/// Fan-out (issue 14 §8): a revocation wakes every held call, and the changes after their
/// common version are read from the database once and sent to all, each answer with a MAC
/// over its own nonce.
async fn sync_one_change_log_read_serves_every_held_proxy(app: TestApp) {
    const PROXIES: usize = 20;
    let admin = app.admin_token(None, None).await;
    let admin = admin["token"].as_str().unwrap().to_owned();
    let target = app.child(&admin, &json!({})).await.body;
    let current = version(&app.sync(0, 0).await.body);
    let keys = app.state.proxy_keys.clone().unwrap();
    let polls: Vec<_> = (0..PROXIES)
        .map(|i| {
            let nonce = format!("n{i}.{:x}", rand::random::<u64>());
            let url = app.url(&format!("/sync/v1/changes?since={current}&wait_ms=20000&proxy=p{i}&nonce={nonce}"));
            let client = app.client.clone();
            tokio::spawn(async move {
                let r = client.get(url).bearer_auth(&*crate::helpers::PROXY_BEARER).send().await.unwrap();
                let mac = r.headers().get(tokengate_rules::sync::MAC_HEADER).unwrap().to_str().unwrap().to_owned();
                (r.status(), nonce, mac, r.bytes().await.unwrap())
            })
        })
        .collect();
    // Wait until every call is held here.
    let started = Instant::now();
    while metric(&app, "tokengate_sync_held").await < PROXIES as u64 {
        assert!(started.elapsed() < Duration::from_secs(10), "the calls were not held");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let reads = metric(&app, "tokengate_sync_change_reads_total").await;
    let id = target["_id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/api/v1/tokens/{id}"), &admin).await.status, StatusCode::NO_CONTENT);
    for poll in polls {
        let (status, nonce, mac, body) = tokio::time::timeout(Duration::from_secs(15), poll).await.unwrap().unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(mac, keys.answer_mac(&nonce, &body), "each answer's MAC covers its own nonce");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(revoked_ids(&body), vec![id.to_owned()]);
        assert!(version(&body) > current);
    }
    assert_eq!(metric(&app, "tokengate_sync_change_reads_total").await - reads, 1, "one read for {PROXIES} held proxies");
}

/// One delta over a range that holds every kind of entry (revocations, amendments,
/// session starts and ends), read as one range and split by kind: revocations in version
/// order; each amended token once, with its latest state, and none that was revoked since;
/// a session started in the range and still live in `sessions`; one that ended in it only
/// in `ended`.
async fn sync_one_delta_carries_every_kind_of_change_in_its_range(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let admin = admin["token"].as_str().unwrap();
    let manage = |body: Value| {
        let app = &app;
        async move {
            let r = app.post("/api/v1/tokens/update", Some(admin), &body).await;
            assert_eq!(r.status, StatusCode::OK, "{body} -> {}", r.body);
            r.body
        }
    };
    let login = |token: String| {
        let app = &app;
        async move {
            let r = app.post("/api/v1/token/login", None, &json!({"token": token})).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            r.body
        }
    };
    let kept = manage(json!({"callMode": "create", "fl": 0x200, "dur": 3600})).await;
    let gone = manage(json!({"callMode": "create", "fl": 0x200, "dur": 3600})).await;
    let v0 = version(&app.sync(0, 0).await.body);

    let (first, _) = revoke_one(&app, admin).await;
    manage(json!({"callMode": "update", "h": kept["h"], "fl": 0x300})).await;
    manage(json!({"callMode": "update", "h": gone["h"], "fl": 0x300})).await;
    let live = login(admin.to_owned()).await;
    manage(json!({"callMode": "update", "h": kept["h"], "fl": 0x100})).await;
    let ended = login(admin.to_owned()).await;
    let r = app.delete(&format!("/api/v1/sessions/{}", ended["_id"].as_str().unwrap()), admin).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    manage(json!({"callMode": "delete", "h": gone["h"]})).await;

    let delta = app.sync(v0, 0).await.body;
    let ids =
        |v: &Value, field: &str| v.as_array().unwrap_or(&vec![]).iter().map(|e| e[field].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(&delta["revoked"], "jti"), [first, gone["h"].as_str().unwrap().to_owned()], "in version order: {delta}");
    assert_eq!(ids(&delta["amended"], "jti"), [kept["h"].as_str().unwrap()], "once, and not the revoked one: {delta}");
    assert_eq!(delta["amended"][0]["fl"], 0x100, "the latest state");
    assert_eq!(ids(&delta["sessions"], "jti"), [live["_id"].as_str().unwrap()], "{delta}");
    assert_eq!(delta["ended"], json!([ended["_id"]]), "{delta}");
}

/// The sweeper prunes a lagging proxy's range while its delta is being read (between the
/// version read and the range read; the test holds the read there). The answer must not
/// be a delta that lacks the pruned entries under a version past them: that proxy would
/// never ask for a snapshot and never learn of them. Read in one snapshot, the range is
/// whole. On PostgreSQL the read was READ COMMITTED, and the delta came back empty.
async fn security_sync_read_is_one_snapshot_when_the_sweeper_prunes_mid_read(app: TestApp) {
    use std::sync::atomic::Ordering;
    let admin = app.admin_token(None, None).await;
    let admin = admin["token"].as_str().unwrap();
    let v0 = version(&app.sync(0, 0).await.body);
    let (id, _) = revoke_one(&app, admin).await;

    let hold = app.state.sync_feed.pause.write().await;
    let before = app.state.sync_feed.paused.load(Ordering::SeqCst);
    let prune_mid_read = async {
        let started = Instant::now();
        while app.state.sync_feed.paused.load(Ordering::SeqCst) == before {
            assert!(started.elapsed() < Duration::from_secs(10), "the sync read did not start");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Everything in the range is past its end a day from now: pruned, and committed.
        let removed = tokengate_control_plane::sweep_once(&app.state, crate::helpers::now_ms() + 86_400_000).await.unwrap();
        assert!(removed >= 1, "the sweep pruned the range");
        drop(hold);
    };
    let (r, ()) = tokio::join!(app.sync(v0, 0), prune_mid_read);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let snapshot = r.body["snapshot"].as_bool().unwrap_or(false);
    assert!(snapshot || revoked_ids(&r.body).contains(&id), "a delta without the pruned revocation: {}", r.body);
    // And the next call from that version is consistent with what the sweep left.
    let next = app.sync(version(&r.body), 0).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.body);
}
