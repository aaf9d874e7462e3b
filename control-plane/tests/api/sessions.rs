//! Seed 003 sessions (issue 11 §3, §4): `POST /token/login`, `GET/DELETE /sessions`, the
//! live set in the sync stream, and idle death.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokengate_rules::token::{verify, TokenKind};
use tokengate_rules::VerifyPolicy;

use crate::each_db;
use crate::helpers::{now_ms, run_with, Reply, TestApp, ADMIN, PROXY_BEARER};

each_db!(
    sessions_token_login_answers_in_seed_shape_by_response_flags,
    security_operate_as_reaches_only_users_below,
    security_session_ends_with_logout_token_revocation_and_user_deletion,
    sessions_sync_stream_carries_the_live_set_not_a_revocation_list,
    security_idle_sessions_end_and_used_ones_live,
    sessions_bad_input_writes_nothing,
    security_a_retired_key_stays_published_while_a_session_it_signed_lives,
    security_withdrawing_a_key_ends_the_sessions_it_signed,
);

fn tok(v: &Value) -> &str {
    v["token"].as_str().unwrap()
}

async fn token_login(app: &TestApp, body: &Value) -> Reply {
    app.post("/api/v1/token/login", None, body).await
}

async fn session(app: &TestApp, token: &str, extra: Value) -> Value {
    let mut body = json!({"token": token});
    if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
        b.extend(e);
    }
    let r = token_login(app, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{body} -> {}", r.body);
    r.body
}

/// The session token's claims, verified as a session.
fn session_claims(app: &TestApp, eid: &str) -> tokengate_rules::Claims {
    let policy = VerifyPolicy::new("tokengate", &["tokengate"], &[TokenKind::Session]);
    let now = u64::try_from(now_ms() / 1000).unwrap();
    let (kind, claims) = verify(eid, app.state.keys.current().trusted(), &policy, now).unwrap();
    assert_eq!(kind, TokenKind::Session);
    claims
}

async fn live_sessions(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL").fetch_one(&app.state.pool).await.unwrap()
}

async fn create_user(app: &TestApp, token: &str, body: Value) -> Value {
    let r = app.call(Method::POST, "/api/v1/users", Some(token), Some(&body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

async fn sessions_token_login_answers_in_seed_shape_by_response_flags(app: TestApp) {
    let admin = app.admin_token(Some(&["GET /objects/:id", "GET /sessions"]), Some("1 hour")).await;
    let before = now_ms();
    // Default flags: basic and user.
    let s = session(&app, tok(&admin), json!({})).await;
    let eid = s["eid"].as_str().unwrap();
    assert!(eid.starts_with("eyJ"), "the session token is the caller's Bearer: {s}");
    assert_eq!(s["au"], ADMIN);
    assert!(s["tm"].as_i64().unwrap() >= before / 1000);
    assert_eq!((&s["user"]["nm"], &s["user"]["cls"]), (&json!(ADMIN), &json!(1)));
    for key in ["id", "crt", "bact", "fl", "ct", "ld"] {
        assert!(s["user"].get(key).is_some(), "user.{key}: {s}");
    }
    assert!(s["user"].get("prp").is_none() && s.get("token").is_none() && s.get("features").is_none(), "{s}");
    assert_eq!(s["idleSecs"], 300);
    assert_eq!(s["expiresAt"], admin["expiresAt"], "a session never outlives its token");
    // The session carries the token's rights and names it.
    let c = session_claims(&app, eid);
    assert_eq!(c.jti, s["_id"].as_str().unwrap());
    assert_eq!(c.par.as_deref(), admin["_id"].as_str());
    assert_eq!(c.scp, Some(vec!["GET /objects/:id".to_owned(), "GET /sessions".to_owned()]));
    assert_eq!((c.opr, c.unm.as_deref()), (None, Some(ADMIN)));

    // Every section.
    let s = session(&app, tok(&admin), json!({"fl": 0x3f})).await;
    assert_eq!(s["user"]["prp"], json!({}));
    let settings: Value = serde_json::from_str(s["token"].as_str().expect("token settings as escaped JSON")).unwrap();
    for key in ["app", "ct", "at", "dur", "fl", "p", "items"] {
        assert!(settings.get(key).is_some(), "token.{key}: {settings}");
    }
    assert_eq!(settings["fl"], -1, "no flag limit reads as the seed's unlimited");
    assert!((3590..=3600).contains(&settings["dur"].as_i64().unwrap()), "{settings}");
    assert_eq!(s["features"]["unlim"], true, "the operator's account is Pro");
    assert_eq!(s["features"]["svcs"]["token_login"], true);
    // Properties alone; items alone.
    let s = session(&app, tok(&admin), json!({"fl": 0x20 | 0x8})).await;
    assert_eq!(s["user"].as_object().unwrap().keys().collect::<Vec<_>>(), ["prp"]);
    let settings: Value = serde_json::from_str(s["token"].as_str().unwrap()).unwrap();
    assert_eq!(settings.as_object().unwrap().keys().collect::<Vec<_>>(), ["items"]);
    assert!(s.get("au").is_none(), "no basic section without 0x1: {s}");
    assert!(s.get("eid").is_some(), "the session is always in the answer");

    // Listed, never with its value.
    let listed = app.get("/api/v1/sessions", tok(&admin)).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.body.as_array().unwrap().len(), 3);
    assert!(!listed.body.to_string().contains("eyJ"), "{}", listed.body);
    let first = &listed.body[0];
    for key in ["_id", "user", "operator", "token", "createdAt", "lastUsedAt", "expiresAt", "idleEndsAt"] {
        assert!(first.get(key).is_some(), "{key}: {first}");
    }
    // The database holds no session token, only its id.
    let stored: Vec<(String, String, String, String)> =
        sqlx::query_as("SELECT id, user_id, operator_id, token_id FROM sessions").fetch_all(&app.state.pool).await.unwrap();
    assert!(stored.iter().all(|r| !format!("{r:?}").contains("eyJ")), "{stored:?}");
    // A session is no API token: the control plane's API refuses it by its type.
    app.get("/api/v1/tokens", eid).await.assert_error(401, "token_wrong_type");
    token_login(&app, &json!({"token": eid})).await.assert_error(401, "wrong_credentials");
    // Last login recorded.
    let me = app.get("/api/v1/users", tok(&app.admin_token(None, None).await)).await.body;
    assert!(me[0]["ld"].as_i64().unwrap() >= before / 1000);
}

async fn security_operate_as_reaches_only_users_below(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let alice = create_user(&app, tok(&admin), json!({"name": "alice", "password": "alice-password", "prp": {"tz": "UTC"}})).await;
    let bob = create_user(&app, tok(&admin), json!({"name": "bob", "password": "bob-password"})).await;
    let s = session(&app, tok(&admin), json!({"operateAs": "alice", "fl": 0x23})).await;
    assert_eq!((&s["au"], &s["operator"], &s["user"]["id"]), (&json!("alice"), &json!(ADMIN), &alice["id"]));
    assert_eq!(s["user"]["prp"], json!({"tz": "UTC"}));
    let c = session_claims(&app, s["eid"].as_str().unwrap());
    assert_eq!((c.sub.as_str(), c.unm.as_deref(), c.opr.as_deref()), (alice["id"].as_str().unwrap(), Some("alice"), Some(ADMIN)));
    // Listed for the operator.
    let listed = app.get("/api/v1/sessions", tok(&admin)).await.body;
    assert_eq!((&listed[0]["user"]["nm"], &listed[0]["operator"]["nm"]), (&json!("alice"), &json!(ADMIN)));

    // Alice cannot act as bob (a sibling) nor as the admin above her; nor can anyone act
    // as an unknown user. All are the same 404.
    let alice_token = app.auth(&json!({"username": "alice", "password": "alice-password"})).await.body;
    for (token, name) in [(tok(&alice_token), "bob"), (tok(&alice_token), ADMIN), (tok(&admin), "nobody")] {
        token_login(&app, &json!({"token": token, "operateAs": name})).await.assert_error(404, "user_not_found");
    }
    // Operating as oneself is just a session.
    let own = session(&app, tok(&alice_token), json!({"operateAs": "alice"})).await;
    assert!(own.get("operator").is_none(), "{own}");
    // Alice's listing shows her own session and the one acting as her; not bob's.
    session(&app, tok(&admin), json!({"operateAs": "bob"})).await;
    let listed = app.get("/api/v1/sessions", tok(&alice_token)).await.body;
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert!(!listed.to_string().contains(bob["id"].as_str().unwrap()), "{listed}");
    // In pages, by id; those she does not reach never fill a page.
    let first = app.get("/api/v1/sessions?limit=1", tok(&alice_token)).await.body;
    assert_eq!(first.as_array().unwrap().len(), 1);
    assert_eq!(first[0]["_id"], listed[0]["_id"]);
    let rest = app.get(&format!("/api/v1/sessions?limit=1&after={}", first[0]["_id"].as_str().unwrap()), tok(&alice_token)).await.body;
    assert_eq!(rest.as_array().unwrap().len(), 1);
    assert_eq!(rest[0]["_id"], listed[1]["_id"]);
    let all = app.get("/api/v1/sessions?limit=3", tok(&admin)).await.body;
    assert_eq!(all.as_array().unwrap().len(), 3, "the admin reaches them all: {all}");
    for bad in ["limit=0", "limit=1001", "limit=x", "after=xyz"] {
        app.get(&format!("/api/v1/sessions?{bad}"), tok(&admin)).await.assert_error(400, "bad_query");
    }
}

async fn security_session_ends_with_logout_token_revocation_and_user_deletion(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    // Logout with the session itself, whatever its token's scopes.
    let narrow = app.admin_token(Some(&["GET /objects/:id"]), None).await;
    let s = session(&app, tok(&narrow), json!({})).await;
    let (eid, id) = (s["eid"].as_str().unwrap(), s["_id"].as_str().unwrap());
    let path = format!("/api/v1/sessions/{id}");
    let r = app.delete(&path, eid).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(app.delete(&path, eid).await.status, StatusCode::NO_CONTENT, "idempotent");
    assert_eq!(live_sessions(&app).await, 0);
    // A session cannot end another one; an API token of another user cannot either.
    let other = session(&app, tok(&admin), json!({})).await;
    let other_path = format!("/api/v1/sessions/{}", other["_id"].as_str().unwrap());
    app.delete(&other_path, eid).await.assert_error(404, "session_not_found");
    create_user(&app, tok(&admin), json!({"name": "carol", "password": "carol-password"})).await;
    let carol = app.auth(&json!({"username": "carol", "password": "carol-password"})).await.body;
    app.delete(&other_path, tok(&carol)).await.assert_error(404, "session_not_found");
    // An API token above it can.
    assert_eq!(app.delete(&other_path, tok(&admin)).await.status, StatusCode::NO_CONTENT);

    // Revoking the token ends its sessions (and those of its descendants' tokens).
    let parent = app.admin_token(None, None).await;
    let child = app.child(tok(&parent), &json!({"expiresIn": "1 hour"})).await.body;
    session(&app, tok(&parent), json!({})).await;
    session(&app, tok(&child), json!({})).await;
    assert_eq!(live_sessions(&app).await, 2);
    let r = app.delete(&format!("/api/v1/tokens/{}", parent["_id"].as_str().unwrap()), tok(&admin)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(live_sessions(&app).await, 0, "both sessions end with the tree");
    let reasons: Vec<String> =
        sqlx::query_scalar("SELECT end_reason FROM sessions ORDER BY created_at").fetch_all(&app.state.pool).await.unwrap();
    assert_eq!(reasons, ["logout", "logout", "token_revoked", "token_revoked"]);
    // A revoked token makes no session.
    token_login(&app, &json!({"token": tok(&parent)})).await.assert_error(401, "wrong_credentials");

    // Deleting a user ends the sessions acting as it, made from an ancestor's token.
    let dave = create_user(&app, tok(&admin), json!({"name": "dave", "password": "dave-password"})).await;
    session(&app, tok(&admin), json!({"operateAs": "dave"})).await;
    assert_eq!(live_sessions(&app).await, 1);
    let r = app.delete(&format!("/api/v1/users/{}", dave["id"].as_str().unwrap()), tok(&admin)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(live_sessions(&app).await, 0);
}

async fn sessions_sync_stream_carries_the_live_set_not_a_revocation_list(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let v0 = app.sync(0, 0).await.body["version"].as_u64().unwrap();
    let s = session(&app, tok(&admin), json!({})).await;
    let id = s["_id"].as_str().unwrap();
    let delta = app.sync(v0, 0).await.body;
    assert_eq!(delta["sessions"][0]["jti"], id, "{delta}");
    assert_eq!(delta["sessions"][0]["exp"].as_i64().unwrap(), admin["expiresAt"].as_i64().unwrap() / 1000);
    let snapshot = app.sync(0, 0).await.body;
    assert_eq!(snapshot["sessions"].as_array().unwrap().len(), 1, "{snapshot}");
    let v1 = delta["version"].as_u64().unwrap();

    assert_eq!(app.delete(&format!("/api/v1/sessions/{id}"), s["eid"].as_str().unwrap()).await.status, StatusCode::NO_CONTENT);
    let delta = app.sync(v1, 0).await.body;
    assert_eq!(delta["ended"], json!([id]), "{delta}");
    assert!(delta.get("revoked").is_none_or(|r| r.as_array().unwrap().is_empty()), "an ended session is no revocation: {delta}");
    assert!(delta.get("sessions").is_none(), "{delta}");
    // From scratch: neither in the live set nor revoked.
    let snapshot = app.sync(0, 0).await.body;
    assert!(snapshot.get("sessions").is_none() && !snapshot.to_string().contains(id), "{snapshot}");
    // Started and ended within one delta: only ended.
    let s2 = session(&app, tok(&admin), json!({})).await;
    app.delete(&format!("/api/v1/sessions/{}", s2["_id"].as_str().unwrap()), tok(&admin)).await;
    let delta = app.sync(v1, 0).await.body;
    assert!(delta.get("sessions").is_none(), "{delta}");
    assert_eq!(delta["ended"].as_array().unwrap().len(), 2);
}

async fn security_idle_sessions_end_and_used_ones_live(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let used = session(&app, tok(&admin), json!({})).await;
    let idle = session(&app, tok(&admin), json!({})).await;
    let (idle_ms, grace) = (300_000, i64::try_from(app.state.config.session_grace_ms).unwrap());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let now = now_ms();
    // A proxy reports the first one's use now; then (simulated) four minutes later.
    let at = now + 240_000;
    let mut req = app.client.post(app.url("/sync/v1/usage")).bearer_auth(&*PROXY_BEARER);
    req = req.json(&json!({"proxy": "p1", "used": [{"jti": used["_id"], "at": now}]}));
    assert_eq!(req.send().await.unwrap().status(), StatusCode::NO_CONTENT);
    let reported: i64 = sqlx::query_scalar("SELECT last_used_at FROM sessions WHERE id = $1")
        .bind(used["_id"].as_str().unwrap())
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(reported, now, "a usage report moves a session's last use");
    sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE id = $2")
        .bind(at)
        .bind(used["_id"].as_str().unwrap())
        .execute(&app.state.pool)
        .await
        .unwrap();
    // Just before the idle limit plus the grace, nothing ends.
    assert_eq!(tokengate_control_plane::sessions::sweep_idle(&app.state, now + idle_ms + grace - 1000).await.unwrap(), 0);
    assert_eq!(live_sessions(&app).await, 2);
    // After it, the unused one ends; the used one lives on.
    assert_eq!(tokengate_control_plane::sessions::sweep_idle(&app.state, now + idle_ms + grace + 1000).await.unwrap(), 1);
    let ended: String = sqlx::query_scalar("SELECT id FROM sessions WHERE end_reason = 'idle'").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(ended, idle["_id"].as_str().unwrap());
    // The ended one is gone from the live set at the proxies.
    let snapshot = app.sync(0, 0).await.body;
    assert_eq!(snapshot["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(snapshot["sessions"][0]["jti"], used["_id"]);
    // Logging out of an idle-ended session is still a 204; its row says why it ended.
    let r = app.delete(&format!("/api/v1/sessions/{}", idle["_id"].as_str().unwrap()), idle["eid"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    // A restart changes nothing: the used one still lives, the ended one stays ended.
    let app = app.restart().await;
    assert_eq!(live_sessions(&app).await, 1);
    assert_eq!(tokengate_control_plane::sessions::sweep_idle(&app.state, now + idle_ms + grace + 1000).await.unwrap(), 0);
}

async fn sessions_bad_input_writes_nothing(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = tok(&admin);
    for (body, status, code) in [
        (json!({"token": t, "fl": 0x40}), 400, "bad_response_flags"),
        (json!({"token": t, "fl": -1}), 400, "wrong_type"),
        (json!({"token": t, "fl": "3"}), 400, "wrong_type"),
        (json!({"token": t, "extra": 1}), 400, "unknown_field"),
        (json!({"fl": 1}), 400, "missing_field"),
        (json!({"token": ""}), 400, "empty_credentials"),
        (json!({"token": "not-a-token"}), 401, "wrong_credentials"),
        (json!({"token": format!("{t}x")}), 401, "wrong_credentials"),
        (json!({"token": t, "operateAs": 7}), 400, "wrong_type"),
    ] {
        token_login(&app, &body).await.assert_error(status, code);
    }
    // A login's HTTP-server token is no API token.
    let login = app
        .post(
            "/api/v1/login",
            None,
            &json!({"method": "auth", "type": "secured", "username": ADMIN, "credentials": crate::helpers::ADMIN_PASSWORD}),
        )
        .await
        .body;
    token_login(&app, &json!({"token": login["tokenForHttpServer"]})).await.assert_error(401, "wrong_credentials");
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(rows, 0);
    // Session ids.
    app.delete("/api/v1/sessions/xyz", t).await.assert_error(400, "bad_session_id");
    app.delete("/api/v1/sessions/0123456789abcdef01234567", t).await.assert_error(404, "session_not_found");
    // The credential is checked before the id: without one, any id is a 401 (schemathesis).
    for id in ["xyz", "0", "0123456789abcdef01234567"] {
        app.call(Method::DELETE, &format!("/api/v1/sessions/{id}"), None, None).await.assert_error(401, "missing_token");
    }
    // Without a Bearer.
    let r = app.call(Method::GET, "/api/v1/sessions", None, None).await;
    r.assert_error(401, "missing_token");
}

/// A session is signed like a token: its key stays published (and trusted by the
/// proxies) while the session lives, even when no token it signed is left; withdrawing
/// the key ends it.
async fn security_a_retired_key_stays_published_while_a_session_it_signed_lives(app: TestApp) {
    use tokengate_control_plane::tokens::keys::published;
    let admin = app.admin_token(None, None).await;
    let s = session(&app, tok(&admin), json!({})).await;
    let kid: String = sqlx::query_scalar("SELECT kid FROM sessions").fetch_one(&app.state.pool).await.unwrap();
    let r = app.post("/api/v1/keys/rotate", Some(tok(&admin)), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // Only the session keeps the old key now (its token's row no longer counts).
    sqlx::query("UPDATE tokens SET kid = 'elsewhere' WHERE kid = $1").bind(&kid).execute(&app.state.pool).await.unwrap();
    let later = now_ms() + 10 * 60_000;
    let kids = |keys: Vec<tokengate_rules::sync::PublicKey>| keys.into_iter().map(|k| k.kid).collect::<Vec<_>>();
    assert!(kids(published(&app.state.pool, later).await.unwrap()).contains(&kid), "the live session's key was unpublished");
    let r = app.delete(&format!("/api/v1/sessions/{}", s["_id"].as_str().unwrap()), tok(&admin)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(!kids(published(&app.state.pool, later).await.unwrap()).contains(&kid), "an ended session keeps no key");
}

/// A key withdrawn by `?retireOldest=true` ends the sessions it signed, also those whose
/// token another key signed (they leave the proxies' live set, not only their key set).
async fn security_withdrawing_a_key_ends_the_sessions_it_signed(app: TestApp) {
    drop(app);
    run_with(&[("TOKENGATE_MAX_KEYS", "2")], |app| async move {
        let first = app.admin_token(None, None).await;
        let old_kid: String = sqlx::query_scalar("SELECT kid FROM signing_keys").fetch_one(&app.state.pool).await.unwrap();
        let r = app.post("/api/v1/keys/rotate", Some(tok(&first)), &json!({})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        // The new key signs once it is active (2 s, then the next key reload).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        let admin = loop {
            let t = app.admin_token(None, None).await;
            let kid: String = sqlx::query_scalar("SELECT kid FROM tokens WHERE id = $1")
                .bind(t["_id"].as_str().unwrap())
                .fetch_one(&app.state.pool)
                .await
                .unwrap();
            if kid != old_kid {
                break t;
            }
            assert!(std::time::Instant::now() < deadline, "the new key never signed");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        let s = session(&app, tok(&admin), json!({})).await;
        // As if the old key had signed the session (its token is the new key's).
        sqlx::query("UPDATE sessions SET kid = $1").bind(&old_kid).execute(&app.state.pool).await.unwrap();
        let r = app.call(Method::POST, "/api/v1/keys/rotate?retireOldest=true", Some(tok(&admin)), None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["withdrawn"], json!([old_kid]), "{}", r.body);
        let reason: Option<String> = sqlx::query_scalar("SELECT end_reason FROM sessions WHERE id = $1")
            .bind(s["_id"].as_str().unwrap())
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
        assert_eq!(reason.as_deref(), Some("key_withdrawn"));
        assert_eq!(live_sessions(&app).await, 0);
    })
    .await;
}
