//! `POST /sync/v1/usage` and the idle sweep.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{now_ms, run_with, Reply, TestApp, PROXY_BEARER};

each_db!(
    usage_reports_keep_the_latest_use,
    security_usage_reports_need_the_proxy_credential_and_bounds,
    idle_tokens_are_revoked_and_synced
);

async fn report(app: &TestApp, secret: Option<&str>, body: &Value) -> Reply {
    let mut req = app.client.post(app.url("/sync/v1/usage")).json(body);
    if let Some(s) = secret {
        req = req.bearer_auth(s);
    }
    Reply::from(req.send().await.unwrap()).await
}

async fn last_used(app: &TestApp, id: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT last_used_at FROM tokens WHERE id = $1").bind(id).fetch_one(&app.state.pool).await.unwrap()
}

async fn usage_reports_keep_the_latest_use(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = app.child(admin["token"].as_str().unwrap(), &json!({})).await.body;
    let id = t["_id"].as_str().unwrap();
    let at = now_ms() - 5000;
    let body = json!({"proxy": "envoy-1", "used": [
        {"jti": id, "at": at - 1000}, {"jti": id, "at": at},
        {"jti": "0123456789abcdef01234567", "at": at}, {"jti": "not-an-id", "at": at},
    ]});
    let r = report(&app, Some(&PROXY_BEARER), &body).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(last_used(&app, id).await, Some(at));
    // An older report does not move it back; a time in the future counts as now.
    report(&app, Some(&PROXY_BEARER), &json!({"proxy": "envoy-2", "used": [{"jti": id, "at": at - 60_000}]})).await;
    assert_eq!(last_used(&app, id).await, Some(at));
    let before = now_ms();
    report(&app, Some(&PROXY_BEARER), &json!({"proxy": "envoy-2", "used": [{"jti": id, "at": now_ms() + 86_400_000}]})).await;
    let stored = last_used(&app, id).await.unwrap();
    assert!(stored >= before && stored <= now_ms(), "{stored}");
    // The listing shows it.
    let list = app.get("/api/v1/tokens", admin["token"].as_str().unwrap()).await.body;
    let listed = list.as_array().unwrap().iter().find(|x| x["_id"] == id).unwrap();
    assert_eq!(listed["lastUsedAt"], json!(stored));
    // A full batch of 10 000 entries is taken in one call.
    let used: Vec<Value> = (0..10_000).map(|i| json!({"jti": format!("{i:024x}"), "at": at})).collect();
    let r = report(&app, Some(&PROXY_BEARER), &json!({"proxy": "envoy-1", "used": used})).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
}

async fn security_usage_reports_need_the_proxy_credential_and_bounds(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let id = admin["_id"].as_str().unwrap();
    let body = json!({"proxy": "envoy-1", "used": [{"jti": id, "at": now_ms()}]});
    report(&app, None, &body).await.assert_error(401, "bad_proxy_credential");
    report(&app, Some("wrong"), &body).await.assert_error(401, "bad_proxy_credential");
    report(&app, Some(admin["token"].as_str().unwrap()), &body).await.assert_error(401, "bad_proxy_credential");
    assert_eq!(last_used(&app, id).await, None);
    let used: Vec<Value> = (0..10_001).map(|i| json!({"jti": format!("{i:024x}"), "at": 1})).collect();
    report(&app, Some(&PROXY_BEARER), &json!({"proxy": "envoy-1", "used": used})).await.assert_error(413, "too_many_entries");
    report(&app, Some(&PROXY_BEARER), &json!({"proxy": "bad id", "used": []})).await.assert_error(400, "bad_usage_report");
    report(&app, Some(&PROXY_BEARER), &json!({"proxy": "envoy-1"})).await.assert_error(400, "missing_field");
    report(&app, Some(&PROXY_BEARER), &json!({"proxy": "envoy-1", "used": [{"jti": id, "at": -5}]})).await.assert_error(400, "wrong_type");
    let big = json!({"proxy": "envoy-1", "used": [], "pad": "x".repeat(2 * 1024 * 1024)});
    report(&app, Some(&PROXY_BEARER), &big).await.assert_error(413, "body_too_large");
    assert_eq!(last_used(&app, id).await, None);
}

async fn idle_tokens_are_revoked_and_synced(app: TestApp) {
    drop(app);
    run_with(&[("TOKENGATE_IDLE_SECS", "2"), ("TOKENGATE_SWEEP_SECS", "1")], |app| async move {
        let admin = app.admin_token(None, None).await;
        let admin_tok = admin["token"].as_str().unwrap().to_owned();
        let idle = app.child(&admin_tok, &json!({})).await.body;
        let used = app.child(&admin_tok, &json!({})).await.body;
        let v0 = app.sync(0, 0).await.body["version"].as_u64().unwrap();
        let keep = [admin["_id"].as_str().unwrap(), used["_id"].as_str().unwrap()];
        let started = Instant::now();
        let mut revoked_after = None;
        while started.elapsed() < Duration::from_secs(8) {
            let body = json!({"proxy": "envoy-1", "used": keep.iter().map(|j| json!({"jti": j, "at": now_ms()})).collect::<Vec<_>>()});
            assert_eq!(report(&app, Some(&PROXY_BEARER), &body).await.status, StatusCode::NO_CONTENT);
            let r = app.get("/api/v1/scopes", idle["token"].as_str().unwrap()).await;
            if r.status == StatusCode::UNAUTHORIZED {
                r.assert_error(401, "token_revoked");
                revoked_after = Some(started.elapsed());
                break;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let waited = revoked_after.expect("the idle token was not revoked within 8 s");
        assert!(waited >= Duration::from_millis(1500), "{waited:?}");
        // Used tokens live on; proxies get the revocation.
        assert_eq!(app.get("/api/v1/scopes", used["token"].as_str().unwrap()).await.status, StatusCode::OK);
        assert_eq!(app.get("/api/v1/scopes", &admin_tok).await.status, StatusCode::OK);
        let delta = app.sync(v0, 0).await.body;
        let ids: Vec<&str> = delta["revoked"].as_array().unwrap().iter().map(|e| e["jti"].as_str().unwrap()).collect();
        assert_eq!(ids, vec![idle["_id"].as_str().unwrap()]);
        assert!(!app.listed_ids(&admin_tok).await.contains(&idle["_id"].as_str().unwrap().to_owned()));
    })
    .await;
}
