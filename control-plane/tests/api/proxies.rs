//! Confirmed propagation: `GET /proxies` and `DELETE /tokens/:id?wait=`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{issue_limited, TestApp, PROXY_BEARER};

each_db!(revocation_waits_until_live_proxies_applied_it, security_propagation_bad_wait_and_rights);

fn tok(v: &Value) -> &str {
    v["token"].as_str().unwrap()
}

async fn sync_as_proxy(app: &TestApp, proxy: &str, since: u64, wait_ms: u64) -> Value {
    let url = app.url(&format!("/sync/v1/changes?since={since}&wait_ms={wait_ms}&proxy={proxy}"));
    app.client.get(url).bearer_auth(&*PROXY_BEARER).send().await.unwrap().json().await.unwrap()
}

/// A proxy that applies every answer and polls again at once, as the filter does.
fn poller(app: &TestApp, proxy: &'static str) -> tokio::task::JoinHandle<()> {
    let client = app.client.clone();
    let base = app.base.clone();
    tokio::spawn(async move {
        let mut since = 0;
        loop {
            let url = format!("{base}/sync/v1/changes?since={since}&wait_ms=25000&proxy={proxy}");
            let Ok(r) = client.get(url).bearer_auth(&*PROXY_BEARER).send().await else { return };
            let Ok(body) = r.json::<Value>().await else { return };
            since = body["version"].as_u64().unwrap_or(since);
        }
    })
}

async fn revocation_waits_until_live_proxies_applied_it(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let current = app.sync(0, 0).await.body["version"].as_u64().unwrap();
    // "quiet" called once and then stopped applying: live for 60 s, never current again.
    sync_as_proxy(&app, "quiet", current, 0).await;
    let fast = poller(&app, "fast");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let a = app.child(tok(&admin), &json!({})).await.body;
    let started = Instant::now();
    let r = app.delete(&format!("/api/v1/tokens/{}?wait=1500", a["_id"].as_str().unwrap()), tok(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let version = r.body["version"].as_u64().unwrap();
    assert_eq!(r.body["proxies"], json!({"live": 3, "applied": 1}), "{}", r.body);
    assert!(started.elapsed() >= Duration::from_millis(1400), "{:?}", started.elapsed());

    let list = app.get("/api/v1/proxies", tok(&admin)).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    let by_id = |id: &str| list.body.as_array().unwrap().iter().find(|p| p["id"] == id).unwrap().clone();
    let f = by_id("fast");
    assert_eq!((&f["version"], &f["lagVersions"], &f["live"]), (&json!(version), &json!(0), &json!(true)));
    let q = by_id("quiet");
    assert_eq!((&q["version"], &q["lagVersions"], &q["live"]), (&json!(current), &json!(version - current), &json!(true)));
    assert!(q["lastSeenAt"].as_i64().unwrap() > 0);

    // Once the others are no longer live, the answer comes as soon as "fast" applied it.
    sqlx::query("UPDATE proxies SET last_seen_at = last_seen_at - 120000 WHERE id <> 'fast'").execute(&app.state.pool).await.unwrap();
    tokengate_control_plane::sync::proxies::backdate_contacts(&app.state, "fast", 120_000);
    let b = app.child(tok(&admin), &json!({})).await.body;
    let started = Instant::now();
    let r = app.delete(&format!("/api/v1/tokens/{}?wait=8000", b["_id"].as_str().unwrap()), tok(&admin)).await;
    assert_eq!(r.body["proxies"], json!({"live": 1, "applied": 1}), "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
    let list = app.get("/api/v1/proxies", tok(&admin)).await.body;
    let quiet = list.as_array().unwrap().iter().find(|p| p["id"] == "quiet").unwrap();
    assert_eq!(quiet["live"], false);
    fast.abort();
}

async fn security_propagation_bad_wait_and_rights(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = app.child(tok(&admin), &json!({})).await.body;
    let id = t["_id"].as_str().unwrap();
    for bad in ["x", "10001", "-1", "1.5"] {
        app.delete(&format!("/api/v1/tokens/{id}?wait={bad}"), tok(&admin)).await.assert_error(400, "bad_query");
    }
    assert_eq!(app.get("/api/v1/scopes", tok(&t)).await.status, StatusCode::OK, "a refused wait revokes nothing");
    // No proxies: nothing to wait for.
    let r = app.delete(&format!("/api/v1/tokens/{id}?wait=0"), tok(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["proxies"], json!({"live": 0, "applied": 0}));
    // Already revoked: answered with the current version.
    let r = app.delete(&format!("/api/v1/tokens/{id}?wait=100"), tok(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.delete(&format!("/api/v1/tokens/{id}"), tok(&admin)).await.status, StatusCode::NO_CONTENT);
    let viewer = issue_limited(&app, None, Some(0x200), None, 3_600_000).await;
    app.get("/api/v1/proxies", &viewer.token).await.assert_error(403, "insufficient_flags");
    let narrow = app.admin_token(Some(&["GET /tokens"]), None).await;
    app.get("/api/v1/proxies", tok(&narrow)).await.assert_error(403, "insufficient_scope");
}

/// Two replicas on one PostgreSQL database: a proxy polling replica B confirms a
/// revocation made on replica A with `?wait=`. B keeps its contacts in memory and writes
/// them in batches; its flush notifies A, which looks again at once (its own re-read of
/// the table is every 200 ms, the confirmation comes well within the wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_confirm_a_revocation_applied_through_the_other() {
    if !crate::helpers::backends().contains(&crate::helpers::Backend::Postgres) {
        return;
    }
    let db = std::sync::Arc::new(crate::helpers::TestDb::create(crate::helpers::Backend::Postgres).await);
    let a = TestApp::spawn(db.clone(), &[]).await;
    let b = TestApp::spawn(db.clone(), &[]).await;
    let admin = a.admin_token(None, None).await;
    let on_b = poller(&b, "on-b");
    // B's first contacts reach the table within a flush; A lists the proxy then.
    let started = Instant::now();
    loop {
        let list = a.get("/api/v1/proxies", tok(&admin)).await.body;
        if list.as_array().unwrap().iter().any(|p| p["id"] == "on-b" && p["live"] == true) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "replica A never saw B's proxy: {list}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = a.child(tok(&admin), &json!({})).await.body;
    let r = a.delete(&format!("/api/v1/tokens/{}?wait=5000", t["_id"].as_str().unwrap()), tok(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["proxies"], json!({"live": 1, "applied": 1}), "{}", r.body);
    // B's answer to the proxy carried the revocation: B's own list says it applied it.
    let version = r.body["version"].as_u64().unwrap();
    let list = b.get("/api/v1/proxies", tok(&admin)).await.body;
    let p = list.as_array().unwrap().iter().find(|p| p["id"] == "on-b").unwrap().clone();
    assert!(p["version"].as_u64().unwrap() >= version, "{p}");
    on_b.abort();
    drop(a);
    drop(b);
    db.cleanup().await;
}
