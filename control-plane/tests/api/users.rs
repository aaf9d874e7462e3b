//! `/users` (issue 11 §1): a tree of users per account, reached only downwards; deleting
//! a user revokes every token of it and of the users under it.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{TestApp, ADMIN};

each_db!(
    users_create_list_read_in_seed_shape,
    security_users_reach_only_themselves_and_below,
    security_only_admins_manage_users_and_nobody_changes_their_own_role,
    security_deleting_a_user_revokes_its_tokens_and_those_below,
    users_bad_input_writes_nothing,
);

async fn call(app: &TestApp, method: Method, path: &str, token: &str, body: Option<&Value>) -> crate::helpers::Reply {
    app.call(method, path, Some(token), body).await
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let r = call(app, Method::POST, "/api/v1/users", token, Some(&body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{body} -> {}", r.body);
    r.body
}

async fn login(app: &TestApp, name: &str, password: &str) -> String {
    let r = app.auth(&json!({"username": name, "password": password})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["token"].as_str().unwrap().to_owned()
}

fn tok(v: &Value) -> &str {
    v["token"].as_str().unwrap()
}

async fn users_create_list_read_in_seed_shape(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let alice = create(
        &app,
        tok(&admin),
        json!({"name": "alice", "password": "alice-password", "pin": "123456", "fl": 3, "prp": {"language": "en", "tz": "UTC"}}),
    )
    .await;
    let mut keys: Vec<&str> = alice.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["bact", "crt", "ct", "fl", "id", "ld", "nm", "pin", "prp", "role"]);
    assert_eq!((&alice["nm"], &alice["role"], &alice["fl"], &alice["pin"]), (&json!("alice"), &json!("user"), &json!(3), &json!(true)));
    assert_eq!(alice["prp"], json!({"language": "en", "tz": "UTC"}));
    let me = call(&app, Method::GET, "/api/v1/users", tok(&admin), None).await.body;
    assert_eq!(me.as_array().unwrap().len(), 2);
    assert_eq!(me[0]["nm"], ADMIN);
    assert_eq!(alice["crt"], me[0]["id"], "the creator is the caller's user");
    assert_eq!(alice["bact"], me[0]["bact"]);
    let text = me.to_string();
    assert!(!text.contains("alice-password") && !text.contains("123456") && !text.contains("argon2"), "{text}");
    // The new user logs in with its password.
    assert_eq!(alice["ld"], Value::Null, "never logged in yet");
    let t = login(&app, "alice", "alice-password").await;
    let r = call(&app, Method::GET, &format!("/api/v1/users/{}", alice["id"].as_str().unwrap()), &t, None).await;
    assert_eq!(r.body["nm"], "alice");
    assert!(r.body["ld"].as_i64().is_some_and(|ld| ld >= r.body["ct"].as_i64().unwrap()), "ld after a login: {}", r.body);
    // Its own password, PIN and properties it changes itself; `pin: null` removes the PIN.
    let id = alice["id"].as_str().unwrap();
    let r = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/users/{id}"),
        &t,
        Some(&json!({"password": "alice-new-password", "pin": null, "prp": {"language": "de"}})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!((&r.body["pin"], &r.body["prp"]), (&json!(false), &json!({"language": "de"})));
    assert_eq!(app.auth(&json!({"username": "alice", "password": "alice-password"})).await.status, StatusCode::UNAUTHORIZED);
    login(&app, "alice", "alice-new-password").await;
}

async fn security_users_reach_only_themselves_and_below(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let a = create(&app, tok(&admin), json!({"name": "a-admin", "password": "a-password", "role": "admin"})).await;
    let b = create(&app, tok(&admin), json!({"name": "b-user", "password": "b-password"})).await;
    let ta = login(&app, "a-admin", "a-password").await;
    let a1 = create(&app, &ta, json!({"name": "a1", "password": "a1-password"})).await;
    let listed: Vec<String> = call(&app, Method::GET, "/api/v1/users", &ta, None)
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["nm"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["a-admin", "a1"]);
    assert_eq!(a1["crt"], a["id"]);
    // A sibling and the root are out of reach: 404, as if they did not exist.
    for other in [&b["id"], &call(&app, Method::GET, "/api/v1/users", tok(&admin), None).await.body[0]["id"]] {
        let path = format!("/api/v1/users/{}", other.as_str().unwrap());
        call(&app, Method::GET, &path, &ta, None).await.assert_error(404, "user_not_found");
        call(&app, Method::PATCH, &path, &ta, Some(&json!({"fl": 1}))).await.assert_error(404, "user_not_found");
        call(&app, Method::DELETE, &path, &ta, None).await.assert_error(404, "user_not_found");
    }
    // seed-001 management names only users the caller reaches: a grandchild yes, a
    // sibling no.
    let r = app.post("/api/v1/tokens/update", Some(&ta), &json!({"callMode": "create", "userId": b["id"], "dur": 60})).await;
    r.assert_error(403, "user_not_accessible");
    let r = app.post("/api/v1/tokens/update", Some(tok(&admin)), &json!({"callMode": "create", "userId": a1["id"], "dur": 60})).await;
    assert_eq!(r.status, StatusCode::OK, "a grandchild of the root admin: {}", r.body);
}

async fn security_only_admins_manage_users_and_nobody_changes_their_own_role(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let u = create(&app, tok(&admin), json!({"name": "plain", "password": "plain-password"})).await;
    let tu = login(&app, "plain", "plain-password").await;
    call(&app, Method::POST, "/api/v1/users", &tu, Some(&json!({"name": "x", "password": "x-password"})))
        .await
        .assert_error(403, "admin_required");
    let own = format!("/api/v1/users/{}", u["id"].as_str().unwrap());
    call(&app, Method::PATCH, &own, &tu, Some(&json!({"role": "admin"}))).await.assert_error(403, "admin_required");
    call(&app, Method::DELETE, &own, &tu, None).await.assert_error(403, "admin_required");
    let me = call(&app, Method::GET, "/api/v1/users", tok(&admin), None).await.body[0]["id"].as_str().unwrap().to_owned();
    call(&app, Method::PATCH, &format!("/api/v1/users/{me}"), tok(&admin), Some(&json!({"role": "user"})))
        .await
        .assert_error(403, "admin_required");
    // An admin with a scoped token that may not manage cannot create users either.
    let scoped = app.admin_token(Some(&["POST /users", "GET /users"]), None).await;
    let r = call(&app, Method::POST, "/api/v1/users", tok(&scoped), Some(&json!({"name": "y", "password": "y-password"}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "scopes alone do not limit an unlimited token: {}", r.body);
    let r = call(&app, Method::PATCH, &own, tok(&admin), Some(&json!({"role": "admin", "fl": 7}))).await;
    assert_eq!((&r.body["role"], &r.body["fl"]), (&json!("admin"), &json!(7)));
}

async fn security_deleting_a_user_revokes_its_tokens_and_those_below(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let a = create(&app, tok(&admin), json!({"name": "boss", "password": "boss-password", "role": "admin"})).await;
    let ta = login(&app, "boss", "boss-password").await;
    create(&app, &ta, json!({"name": "worker", "password": "worker-password"})).await;
    let tw = login(&app, "worker", "worker-password").await;
    let v0 = app.sync(0, 0).await.body["version"].as_u64().unwrap();
    let r = call(&app, Method::DELETE, &format!("/api/v1/users/{}", a["id"].as_str().unwrap()), tok(&admin), None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    for t in [&ta, &tw] {
        assert_eq!(app.get("/api/v1/scopes", t).await.status, StatusCode::UNAUTHORIZED);
    }
    let delta = app.sync(v0, 0).await.body;
    assert!(delta["revoked"].as_array().unwrap().len() >= 2, "{delta}");
    // Nobody logs in as them any more, and the names are free again.
    app.auth(&json!({"username": "worker", "password": "worker-password"})).await.assert_error(401, "wrong_credentials");
    let listed = call(&app, Method::GET, "/api/v1/users", tok(&admin), None).await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    create(&app, tok(&admin), json!({"name": "worker", "password": "another-password"})).await;
}

async fn users_bad_input_writes_nothing(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let rows = || async { sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users").fetch_one(&app.state.pool).await.unwrap() };
    let before = rows().await;
    for (body, code) in [
        (json!({"name": "", "password": "long-enough"}), "bad_user"),
        (json!({"name": "n1", "password": "short"}), "bad_user"),
        (json!({"name": "n2", "password": "long-enough", "pin": "12345"}), "bad_user"),
        (json!({"name": "n3", "password": "long-enough", "pin": "12345a"}), "bad_user"),
        (json!({"name": "n4", "password": "long-enough", "role": "root"}), "bad_user"),
        (json!({"name": "n5", "password": "long-enough", "fl": -2}), "bad_user"),
        (json!({"name": "n6", "password": "long-enough", "prp": {"k": 1}}), "bad_user"),
        (json!({"name": "n7", "password": "long-enough", "extra": 1}), "unknown_field"),
        (json!({"name": "n8"}), "missing_field"),
        (json!({"name": ADMIN, "password": "long-enough"}), "user_exists"),
    ] {
        let r = call(&app, Method::POST, "/api/v1/users", tok(&admin), Some(&body)).await;
        assert_eq!(r.code(), code, "{body} -> {}", r.body);
        assert!(!r.body.to_string().contains("long-enough"), "a secret was echoed");
    }
    assert_eq!(rows().await, before);
    call(&app, Method::GET, "/api/v1/users/nothex", tok(&admin), None).await.assert_error(400, "bad_user");
    call(&app, Method::GET, "/api/v1/users/aaaaaaaaaaaaaaaaaaaaaaaa", tok(&admin), None).await.assert_error(404, "user_not_found");
}
