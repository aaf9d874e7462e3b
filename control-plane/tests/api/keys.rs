//! `POST /keys/rotate` and `GET /keys`: a new key reaches the proxies with the rotation's
//! commit, old tokens keep working, a retired key drops out once its tokens cannot live.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{issue_limited, TestApp, PROXY_BEARER};

each_db!(rotation_publishes_the_new_key_and_old_tokens_keep_working, security_rotation_needs_management_rights);

fn tok(v: &Value) -> &str {
    v["token"].as_str().unwrap()
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

fn kids(list: &Value) -> Vec<String> {
    let mut k: Vec<String> = list.as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect();
    k.sort();
    k
}

async fn rotation_publishes_the_new_key_and_old_tokens_keep_working(app: TestApp) {
    let old_token = app.admin_token(None, None).await;
    let old_kid = kid_of(tok(&old_token));
    let keys = app.get("/api/v1/keys", tok(&old_token)).await;
    assert_eq!(keys.status, StatusCode::OK, "{}", keys.body);
    assert_eq!(keys.body.as_array().unwrap().len(), 1);
    assert_eq!((&keys.body[0]["kid"], &keys.body[0]["signing"], &keys.body[0]["published"], &keys.body[0]["retiredAt"]), (&json!(old_kid), &json!(true), &json!(true), &Value::Null));

    // A proxy long-polling at the current version is woken by the rotation with the new key set.
    let current = app.sync(0, 0).await.body["version"].as_u64().unwrap();
    let client = app.client.clone();
    let url = app.url(&format!("/sync/v1/changes?since={current}&wait_ms=25000&proxy=poller"));
    let started = Instant::now();
    let poll = tokio::spawn(async move { client.get(url).bearer_auth(&*PROXY_BEARER).send().await.unwrap().json::<Value>().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = app.post("/api/v1/keys/rotate", Some(tok(&old_token)), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let new_kid = r.body["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(r.body["retired"], json!([old_kid]));
    let version = r.body["version"].as_u64().unwrap();
    assert_eq!(version, current + 1);
    let woke = tokio::time::timeout(Duration::from_secs(20), poll).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(woke["version"].as_u64().unwrap(), version);
    let mut both = vec![old_kid.clone(), new_kid.clone()];
    both.sort();
    assert_eq!(kids(&woke["keys"]), both);
    let jwks = app.call(Method::GET, "/.well-known/jwks.json", None, None).await.body;
    assert_eq!(kids(&jwks["keys"]), both);

    // Until its activation the old key still signs: no token of the new key exists
    // before the proxies could have it.
    let interim = app.admin_token(None, None).await;
    assert_eq!(kid_of(tok(&interim)), old_kid);
    tokio::time::sleep(Duration::from_millis(tokengate_control_plane::keys::ACTIVATE_AFTER_MS as u64 + 50)).await;
    app.state.keys.reload(&app.state.pool).await.unwrap();
    // New tokens are signed by the new key; the old token still works.
    let new_token = app.admin_token(None, None).await;
    assert_eq!(kid_of(tok(&new_token)), new_kid);
    assert_eq!(app.get("/api/v1/scopes", tok(&old_token)).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/scopes", tok(&new_token)).await.status, StatusCode::OK);
    let keys = app.get("/api/v1/keys", tok(&new_token)).await.body;
    assert_eq!(keys[0]["kid"], json!(new_kid));
    assert_eq!((&keys[0]["signing"], &keys[1]["signing"], &keys[1]["published"]), (&json!(true), &json!(false), &json!(true)));
    assert!(keys[1]["retiredAt"].as_i64().is_some());

    // Once no live token of the old key remains (and the overlap has passed), it drops out.
    sqlx::query("UPDATE signing_keys SET retired_at = retired_at - 120000 WHERE kid = $1").bind(&old_kid).execute(&app.state.pool).await.unwrap();
    assert_eq!(kids(&app.sync(0, 0).await.body["keys"]), both, "the old key's token is live");
    assert_eq!(app.delete(&format!("/api/v1/tokens/{}", old_token["_id"].as_str().unwrap()), tok(&new_token)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.delete(&format!("/api/v1/tokens/{}", interim["_id"].as_str().unwrap()), tok(&new_token)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(kids(&app.sync(0, 0).await.body["keys"]), vec![new_kid.clone()]);
    app.state.keys.reload(&app.state.pool).await.unwrap();
    let jwks = app.call(Method::GET, "/.well-known/jwks.json", None, None).await.body;
    assert_eq!(kids(&jwks["keys"]), vec![new_kid.clone()]);
    let keys = app.get("/api/v1/keys", tok(&new_token)).await.body;
    assert_eq!(keys[1]["published"], false);

    // A restart keeps signing with the new key.
    let app = app.restart().await;
    assert_eq!(kid_of(tok(&app.admin_token(None, None).await)), new_kid);
    assert_eq!(app.get("/api/v1/scopes", tok(&new_token)).await.status, StatusCode::OK);
}

async fn security_rotation_needs_management_rights(app: TestApp) {
    let narrow = app.admin_token(Some(&["GET /keys"]), None).await;
    assert_eq!(app.get("/api/v1/keys", tok(&narrow)).await.status, StatusCode::OK);
    app.post("/api/v1/keys/rotate", Some(tok(&narrow)), &json!({})).await.assert_error(403, "insufficient_scope");
    let viewer = issue_limited(&app, None, Some(0x200), None, 3_600_000).await;
    app.get("/api/v1/keys", &viewer.token).await.assert_error(403, "insufficient_flags");
    app.post("/api/v1/keys/rotate", Some(&viewer.token), &json!({})).await.assert_error(403, "insufficient_flags");
    app.call(Method::POST, "/api/v1/keys/rotate", None, None).await.assert_error(401, "missing_token");
    let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(keys, 1);
}
