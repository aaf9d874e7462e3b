//! `POST /keys/rotate` and `GET /keys`: a new key reaches the proxies with the rotation's
//! commit, old tokens keep working, a retired key drops out once its tokens cannot live.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{issue_limited, now_ms, run_with, TestApp, PROXY_BEARER};

each_db!(
    rotation_publishes_the_new_key_and_old_tokens_keep_working,
    security_rotation_needs_management_rights,
    security_rotation_needs_an_admin_user,
    security_rotation_beyond_the_key_cap_is_refused_with_the_oldest_keys_end,
    security_retire_oldest_revokes_every_token_the_oldest_key_signed,
    rotation_bad_input_and_the_key_cap_setting,
);

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
    assert_eq!(
        (&keys.body[0]["kid"], &keys.body[0]["signing"], &keys.body[0]["published"], &keys.body[0]["retiredAt"]),
        (&json!(old_kid), &json!(true), &json!(true), &Value::Null)
    );

    // A proxy long-polling at the current version is woken by the rotation with the new key set.
    let current = app.sync(0, 0).await.body["version"].as_u64().unwrap();
    let client = app.client.clone();
    let url = app.url(&format!("/sync/v1/changes?since={current}&wait_ms=25000&proxy=poller"));
    let started = Instant::now();
    let poll =
        tokio::spawn(async move { client.get(url).bearer_auth(&*PROXY_BEARER).send().await.unwrap().json::<Value>().await.unwrap() });
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
    tokio::time::sleep(Duration::from_millis(tokengate_control_plane::tokens::keys::ACTIVATE_AFTER_MS as u64 + 50)).await;
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
    sqlx::query("UPDATE signing_keys SET retired_at = retired_at - 120000 WHERE kid = $1")
        .bind(&old_kid)
        .execute(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(kids(&app.sync(0, 0).await.body["keys"]), both, "the old key's token is live");
    assert_eq!(
        app.delete(&format!("/api/v1/tokens/{}", old_token["_id"].as_str().unwrap()), tok(&new_token)).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.delete(&format!("/api/v1/tokens/{}", interim["_id"].as_str().unwrap()), tok(&new_token)).await.status,
        StatusCode::NO_CONTENT
    );
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

/// A user of the admin's account with role `user`, child of the admin, and an unlimited
/// token of it (no `fl`, no scopes), issued by the admin through seed 001 create.
async fn user_role_token(app: &TestApp, admin: &str) -> String {
    let (account_id, admin_id): (String, String) =
        sqlx::query_as("SELECT account_id, id FROM users WHERE name = 'admin'").fetch_one(&app.state.pool).await.unwrap();
    let id = tokengate_control_plane::tokens::keys::random_id(12);
    sqlx::query("INSERT INTO users (id, account_id, parent_id, name, password_hash, role, created_at) VALUES ($1, $2, $3, 'operator', 'x', 'user', 0)")
        .bind(&id)
        .bind(&account_id)
        .bind(&admin_id)
        .execute(&app.state.pool)
        .await
        .unwrap();
    let r = app.post("/api/v1/tokens/update", Some(admin), &json!({"callMode": "create", "userId": id, "dur": 3600})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["fl"], Value::Null, "an unlimited token");
    tok(&r.body).to_owned()
}

async fn key_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys").fetch_one(&app.state.pool).await.unwrap()
}

/// Issue 10 defect 5: only a user with role `admin` rotates keys; a user-role token,
/// unlimited as it may be, is 403 `admin_required` and no key is made.
async fn security_rotation_needs_an_admin_user(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let operator = user_role_token(&app, tok(&admin)).await;
    assert_eq!(app.get("/api/v1/tokens", &operator).await.status, StatusCode::OK, "it may manage tokens");
    let r = app.post("/api/v1/keys/rotate", Some(&operator), &json!({})).await;
    r.assert_error(403, "admin_required");
    let r = app.call(Method::POST, "/api/v1/keys/rotate?retireOldest=true", Some(&operator), None).await;
    r.assert_error(403, "admin_required");
    assert_eq!(key_count(&app).await, 1);
    // The admin may.
    let r = app.post("/api/v1/keys/rotate", Some(tok(&admin)), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!((&r.body["revokedTokens"], &r.body["withdrawn"]), (&json!(0), &json!([])));
}

/// Issue 10 defect 5: with `TOKENGATE_MAX_KEYS=2`, a second rotation while the first
/// key still has a live token would publish three keys: 409 `too_many_keys`, saying
/// which key is the oldest and when its last token expires (ms, and in the message).
async fn security_rotation_beyond_the_key_cap_is_refused_with_the_oldest_keys_end(app: TestApp) {
    drop(app);
    run_with(&[("TOKENGATE_MAX_KEYS", "2")], |app| async move {
        let admin = app.admin_token(None, Some("2 hours")).await;
        let first_kid = kid_of(tok(&admin));
        let later = app.admin_token(None, Some("3 hours")).await;
        assert_eq!(app.post("/api/v1/keys/rotate", Some(tok(&admin)), &json!({})).await.status, StatusCode::OK);
        // Once the second key signs, the first is only published for its tokens.
        tokio::time::sleep(Duration::from_millis(tokengate_control_plane::tokens::keys::ACTIVATE_AFTER_MS as u64 + 50)).await;
        let keys = key_count(&app).await;
        let version = app.sync(0, 0).await.body["version"].clone();
        for path in ["/api/v1/keys/rotate", "/api/v1/keys/rotate?retireOldest=false"] {
            let r = app.post(path, Some(tok(&admin)), &json!({})).await;
            assert_eq!((r.status.as_u16(), r.code()), (409, "too_many_keys"), "{}", r.body);
            assert_eq!(r.body["oldestKid"], json!(first_kid));
            let last = r.body["lastTokenExpiresAt"].as_i64().unwrap();
            assert_eq!(last, later["expiresAt"].as_i64().unwrap(), "the oldest key's last token is the 3-hour one");
            assert!(r.body["publishedUntil"].as_i64().unwrap() >= last);
            let message = r.body["message"].as_str().unwrap();
            let year = (1970 + last / 1000 / 31_556_952).to_string();
            assert!(
                message.contains("TOKENGATE_MAX_KEYS") && message.contains("retireOldest=true") && message.contains(&year),
                "{message}"
            );
            assert!(message.contains('T') && message.contains('Z'), "an ISO time: {message}");
        }
        assert_eq!(key_count(&app).await, keys, "no key made");
        assert_eq!(app.sync(0, 0).await.body["version"], version, "nothing logged");
        // Once the oldest key's tokens are gone (and its overlap passed), rotation works.
        sqlx::query("UPDATE signing_keys SET retired_at = retired_at - 120000 WHERE kid = $1")
            .bind(&first_kid)
            .execute(&app.state.pool)
            .await
            .unwrap();
        for t in [&admin, &later] {
            let r = app.delete(&format!("/api/v1/tokens/{}", t["_id"].as_str().unwrap()), tok(&later)).await;
            assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        }
        tokio::time::sleep(Duration::from_millis(tokengate_control_plane::tokens::keys::ACTIVATE_AFTER_MS as u64 + 50)).await;
        app.state.keys.reload(&app.state.pool).await.unwrap();
        let fresh = app.admin_token(None, None).await;
        assert_ne!(kid_of(tok(&fresh)), first_kid);
        let r = app.post("/api/v1/keys/rotate", Some(tok(&fresh)), &json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    })
    .await;
}

/// Issue 10 defect 5: `?retireOldest=true` at the cap withdraws the oldest key and
/// revokes, in the rotation's transaction, every live token it signed and their
/// descendants (one change-log entry each), says how many, and those tokens are refused.
async fn security_retire_oldest_revokes_every_token_the_oldest_key_signed(app: TestApp) {
    drop(app);
    run_with(&[("TOKENGATE_MAX_KEYS", "2")], |app| async move {
        let old = app.admin_token(None, None).await;
        let old_kid = kid_of(tok(&old));
        let mut signed_by_old = vec![old.clone()];
        for _ in 0..3 {
            signed_by_old.push(app.admin_token(Some(&["GET /scopes"]), None).await);
        }
        signed_by_old.push(app.child(tok(&old), &json!({"name": "old child"})).await.body);
        let revoked_before = app.admin_token(None, None).await;
        assert_eq!(
            app.delete(&format!("/api/v1/tokens/{}", revoked_before["_id"].as_str().unwrap()), tok(&old)).await.status,
            StatusCode::NO_CONTENT
        );
        let r = app.post("/api/v1/keys/rotate", Some(tok(&old)), &json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let second_kid = r.body["kid"].as_str().unwrap().to_owned();
        tokio::time::sleep(Duration::from_millis(tokengate_control_plane::tokens::keys::ACTIVATE_AFTER_MS as u64 + 50)).await;
        app.state.keys.reload(&app.state.pool).await.unwrap();
        let new = app.admin_token(None, None).await;
        assert_eq!(kid_of(tok(&new)), second_kid);
        // A child of an old token signed by the new key: it goes with its parent.
        let descendant = app.child(tok(&old), &json!({"name": "new-key child"})).await.body;
        assert_eq!(kid_of(tok(&descendant)), second_kid);
        let v0 = app.sync(0, 0).await.body["version"].as_u64().unwrap();

        let r = app.call(Method::POST, "/api/v1/keys/rotate?retireOldest=true", Some(tok(&new)), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["revokedTokens"], json!(signed_by_old.len() + 1), "{}", r.body);
        assert_eq!(r.body["withdrawn"], json!([old_kid]));
        assert_eq!(r.body["retired"], json!([second_kid]));
        let third_kid = r.body["kid"].as_str().unwrap().to_owned();
        // One revoke entry per token, in the rotation's version range, then the keys entry.
        let delta = app.sync(v0, 0).await.body;
        let mut revoked: Vec<&str> = delta["revoked"].as_array().unwrap().iter().map(|e| e["jti"].as_str().unwrap()).collect();
        revoked.sort_unstable();
        let mut expected: Vec<&str> = signed_by_old.iter().chain([&descendant]).map(|t| t["_id"].as_str().unwrap()).collect();
        expected.sort_unstable();
        assert_eq!(revoked, expected);
        let mut both = vec![second_kid.clone(), third_kid.clone()];
        both.sort();
        assert_eq!(kids(&delta["keys"]), both, "the withdrawn key is no longer published");
        app.state.keys.reload(&app.state.pool).await.unwrap();
        let jwks = app.call(Method::GET, "/.well-known/jwks.json", None, None).await.body;
        assert_eq!(kids(&jwks["keys"]), both);
        for t in signed_by_old.iter().chain([&descendant]) {
            let r = app.get("/api/v1/scopes", tok(t)).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
        }
        assert_eq!(app.get("/api/v1/scopes", tok(&new)).await.status, StatusCode::OK);
        let listed = app.get("/api/v1/keys", tok(&new)).await.body;
        let withdrawn = listed.as_array().unwrap().iter().find(|k| k["kid"] == old_kid.as_str()).unwrap();
        assert_eq!(withdrawn["published"], false);
        assert!(withdrawn["withdrawnAt"].as_i64().unwrap() <= now_ms());
        // At the cap again. A key that still signs (its successor not active yet) is not
        // withdrawn: 409, with no end in sight.
        let set_retired = |at: i64| sqlx::query("UPDATE signing_keys SET retired_at = $2 WHERE kid = $1").bind(second_kid.clone()).bind(at);
        set_retired(now_ms() + 60_000).execute(&app.state.pool).await.unwrap();
        let r = app.call(Method::POST, "/api/v1/keys/rotate?retireOldest=true", Some(tok(&new)), None).await;
        assert_eq!((r.status.as_u16(), r.code()), (409, "too_many_keys"), "the second key still signs: {}", r.body);
        assert_eq!((&r.body["oldestKid"], &r.body["publishedUntil"]), (&json!(second_kid), &Value::Null));
        assert!(r.body["message"].as_str().unwrap().contains("still signs"), "{}", r.body);
        // Once it no longer signs, retireOldest withdraws it and revokes `new`, its token.
        set_retired(now_ms() - 1).execute(&app.state.pool).await.unwrap();
        let r = app.call(Method::POST, "/api/v1/keys/rotate?retireOldest=true", Some(tok(&new)), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["withdrawn"], json!([second_kid]));
        assert_eq!(r.body["revokedTokens"], json!(1), "{}", r.body);
    })
    .await;
}

/// `retireOldest` must be `true` or `false` (400 `bad_query`); `TOKENGATE_MAX_KEYS` is
/// at least 2 and defaults to 4.
async fn rotation_bad_input_and_the_key_cap_setting(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    for bad in ["retireOldest=yes", "retireOldest=1", "retireOldest=", "retireOldest=TRUE", "retire=true"] {
        let r = app.call(Method::POST, &format!("/api/v1/keys/rotate?{bad}"), Some(tok(&admin)), None).await;
        r.assert_error(400, "bad_query");
    }
    assert_eq!(key_count(&app).await, 1);
    assert_eq!(app.state.config.max_keys, 4);
    let config = |v: &'static str| tokengate_control_plane::Config::from_lookup(move |k| (k == "TOKENGATE_MAX_KEYS").then(|| v.to_owned()));
    for bad in ["1", "0", "x", "-3"] {
        let e = config(bad).unwrap_err();
        assert!(e.0.contains("TOKENGATE_MAX_KEYS"), "{e}");
    }
    assert_eq!(config("2").unwrap().max_keys, 2);
    // Three rotations fit under the default cap of 4 (the first key's token is live).
    for _ in 0..3 {
        let r = app.post("/api/v1/keys/rotate", Some(tok(&admin)), &json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
    let r = app.post("/api/v1/keys/rotate", Some(tok(&admin)), &json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (409, "too_many_keys"), "{}", r.body);
}
