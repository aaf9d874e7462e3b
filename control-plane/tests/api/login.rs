//! `POST /login` (seed 002, issue 11 §2): every security type, the seed's answer shape,
//! and a test provoking each result code 1-12 with its HTTP status and string code.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{run_with, Reply, TestApp, ADMIN, ADMIN_PASSWORD};

each_db!(
    login_by_password_answers_in_the_seed_shape,
    login_by_pin_and_by_token_and_the_role_switch,
    login_refusals_carry_every_seed_result_code,
    security_login_in_the_user_role_cannot_act_as_admin,
    security_login_tokens_are_issued_together_and_end_with_their_origin,
    login_plan_is_read_by_all_and_changed_by_the_root_admin,
);

async fn login(app: &TestApp, bearer: Option<&str>, body: Value) -> Reply {
    app.post("/api/v1/login", bearer, &body).await
}

/// A refusal in the seed's envelope: status, our code, the seed's code.
#[track_caller]
fn refused(r: &Reply, status: u16, code: &str, result_code: u8) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(r.code(), code, "{}", r.body);
    assert_eq!(r.body["resultCode"], json!(result_code), "{}", r.body);
    assert_eq!((&r.body["method"], &r.body["result"]), (&json!("auth"), &json!(false)), "{}", r.body);
    assert!(r.body["error"].is_string() && r.body["message"].is_string(), "{}", r.body);
    assert!(r.body.get("token").is_none(), "{}", r.body);
}

fn secured(username: &str, credentials: &str) -> Value {
    json!({"method": "auth", "requestId": "7", "type": "secured", "username": username, "credentials": credentials})
}

async fn make_user(app: &TestApp, admin: &str, name: &str, role: &str, pin: Option<&str>) -> Value {
    let mut body = json!({"name": name, "password": format!("{name}-password"), "role": role});
    if let Some(p) = pin {
        body["pin"] = json!(p);
    }
    let r = app.call(Method::POST, "/api/v1/users", Some(admin), Some(&body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    r.body
}

fn s<'a>(v: &'a Value, f: &str) -> &'a str {
    v[f].as_str().unwrap_or_else(|| panic!("no {f} in {v}"))
}

async fn login_by_password_answers_in_the_seed_shape(app: TestApp) {
    let r = login(&app, None, secured(ADMIN, ADMIN_PASSWORD)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    for field in ["method", "requestId", "previleges", "privileges", "token", "tokenForHttpServer", "result", "resultCode"] {
        assert!(r.body.get(field).is_some(), "{field} missing: {}", r.body);
    }
    assert_eq!(
        (&r.body["method"], &r.body["requestId"], &r.body["result"], &r.body["resultCode"]),
        (&json!("auth"), &json!("7"), &json!(true), &json!(0))
    );
    assert_eq!((&r.body["previleges"], &r.body["privileges"]), (&json!(2), &json!(2)), "the admin");
    // 30 days for the API token, 5 minutes for the HTTP-server token.
    let now = crate::helpers::now_ms();
    let days = (r.body["expiresAt"].as_i64().unwrap() - now) as f64 / 86_400_000.0;
    assert!((29.99..=30.01).contains(&days), "{days}");
    let mins = (r.body["tokenForHttpServerExpiresAt"].as_i64().unwrap() - now) as f64 / 60_000.0;
    assert!((4.9..=5.01).contains(&mins), "{mins}");
    // The token works on the control plane's API; the HTTP-server token does not.
    let token = s(&r.body, "token");
    assert_eq!(app.get("/api/v1/users", token).await.status, StatusCode::OK);
    let http = s(&r.body, "tokenForHttpServer");
    assert_eq!(app.get("/api/v1/users", http).await.code(), "token_wrong_type");
    assert_eq!(tokengate_rules::token::inspect(http).unwrap().0, tokengate_rules::TokenKind::HttpServer);
    // The login token is listed; its HTTP-server token is not.
    let listed = app.listed_ids(token).await;
    assert!(listed.contains(&s(&r.body, "_id").to_owned()));
    assert_eq!(listed.len(), 1, "{listed:?}");
    // A number as requestId is echoed as a number.
    let r = login(&app, None, json!({"requestId": 42, "type": "secured", "username": ADMIN, "credentials": ADMIN_PASSWORD})).await;
    assert_eq!((r.status, &r.body["requestId"]), (StatusCode::OK, &json!(42)));
}

async fn login_by_pin_and_by_token_and_the_role_switch(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let admin = s(&admin, "token");
    make_user(&app, admin, "pia", "user", Some("246810")).await;
    // Digits only and the user has a PIN: a PIN login (the first account is Pro).
    let r = login(&app, None, secured("pia", "246810")).await;
    assert_eq!((r.status, &r.body["previleges"]), (StatusCode::OK, &json!(1)), "{}", r.body);
    // The password still works, and "credentialsKind" names the kind outright.
    let r = login(&app, None, secured("pia", "pia-password")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut body = secured("pia", "246810");
    body["credentialsKind"] = json!("password");
    refused(&login(&app, None, body).await, 401, "wrong_credentials", 8);

    // A token login: a child of the token, with its end (never later).
    let short = app.admin_token(None, Some("1 hour")).await;
    let r = login(&app, None, json!({"type": "secured", "credentials": s(&short, "token")})).await;
    assert_eq!((r.status, &r.body["previleges"]), (StatusCode::OK, &json!(2)), "{}", r.body);
    assert_eq!(r.body["expiresAt"], short["expiresAt"], "a token login inherits the original's end");
    let parent: Option<String> =
        sqlx::query_scalar("SELECT parent_id FROM tokens WHERE id = $1").bind(s(&r.body, "_id")).fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(parent.as_deref(), Some(s(&short, "_id")));
    // With a user name, it must be the token's.
    let r = login(&app, None, json!({"type": "secured", "username": "pia", "credentials": s(&short, "token")})).await;
    refused(&r, 401, "wrong_credentials", 8);

    // The switch: no type, an admin's Bearer, role user.
    let r = login(&app, Some(s(&short, "token")), json!({"method": "auth", "requestId": "9", "role": "user"})).await;
    assert_eq!((r.status, &r.body["previleges"], &r.body["requestId"]), (StatusCode::OK, &json!(1), &json!("9")), "{}", r.body);
    assert_eq!(r.body["expiresAt"], short["expiresAt"], "a switch inherits the original's end");
    // From the user role there is no way back (code 3).
    let user_mode = s(&r.body, "token").to_owned();
    refused(&login(&app, Some(&user_mode), json!({"role": "admin"})).await, 403, "not_admin", 3);
    refused(&login(&app, Some(&user_mode), json!({"role": "user"})).await, 403, "not_admin", 3);
    // A login as "admin" asking for the user role gets the user role.
    let mut body = secured(ADMIN, ADMIN_PASSWORD);
    body["role"] = json!("user");
    let r = login(&app, None, body).await;
    assert_eq!((r.status, &r.body["previleges"]), (StatusCode::OK, &json!(1)), "{}", r.body);
}

async fn login_refusals_carry_every_seed_result_code(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let admin = s(&admin, "token");
    make_user(&app, admin, "uma", "user", Some("135790")).await;
    let before = app.token_rows().await;

    // 1: internal error; the database gone is the one a client can meet.
    // (provoked last, below)
    // 2: PIN logins need the Pro plan.
    let r = app.call(Method::PATCH, "/api/v1/account", Some(admin), Some(&json!({"plan": "basic"}))).await;
    assert_eq!((r.status, &r.body["plan"]), (StatusCode::OK, &json!("basic")), "{}", r.body);
    refused(&login(&app, None, secured("uma", "135790")).await, 403, "plan_not_pro", 2);
    assert_eq!(login(&app, None, secured("uma", "uma-password")).await.status, StatusCode::OK, "passwords on every plan");
    app.call(Method::PATCH, "/api/v1/account", Some(admin), Some(&json!({"plan": "pro"}))).await;
    let after_password = app.token_rows().await;
    // 3: a switch from a user's connection.
    let uma = login(&app, None, secured("uma", "uma-password")).await;
    refused(&login(&app, Some(s(&uma.body, "token")), json!({"role": "user"})).await, 403, "not_admin", 3);
    // ... and from a Bearer that is not a live token.
    refused(&login(&app, Some("not-a-token"), json!({"role": "user"})).await, 401, "token_malformed", 3);
    // 4: unsecured logins are off by default.
    refused(&login(&app, None, json!({"type": "unsecured"})).await, 403, "security_type_not_allowed", 4);
    // 5: a user asking for the admin role.
    let mut body = secured("uma", "uma-password");
    body["role"] = json!("admin");
    refused(&login(&app, None, body).await, 403, "role_mismatch", 5);
    // 7: empty credentials or user name.
    refused(&login(&app, None, secured("uma", "")).await, 400, "empty_credentials", 7);
    refused(&login(&app, None, secured("", "x")).await, 400, "empty_credentials", 7);
    // 8: wrong credentials, and an unknown user gets the same answer.
    refused(&login(&app, None, secured("uma", "wrong-password")).await, 401, "wrong_credentials", 8);
    refused(&login(&app, None, secured("nobody", "wrong-password")).await, 401, "wrong_credentials", 8);
    // 9: a role that is not admin or user.
    let mut body = secured("uma", "uma-password");
    body["role"] = json!("root");
    refused(&login(&app, None, body).await, 400, "bad_role", 9);
    // 10: a type that is not secured or unsecured (and a bad credentialsKind).
    refused(&login(&app, None, json!({"type": "kerberos", "credentials": "x"})).await, 400, "bad_type", 10);
    refused(&login(&app, None, json!({"type": 1})).await, 400, "bad_type", 10);
    let mut body = secured("uma", "uma-password");
    body["credentialsKind"] = json!("retina");
    refused(&login(&app, None, body).await, 400, "bad_type", 10);
    // 11: no type and no Bearer; credentials without a type; a switch without a role.
    refused(&login(&app, None, json!({"method": "auth", "role": "user"})).await, 400, "missing_type", 11);
    refused(&login(&app, None, json!({"username": "uma", "credentials": "uma-password"})).await, 400, "missing_type", 11);
    refused(&login(&app, Some(admin), json!({})).await, 400, "missing_type", 11);
    // 12: secured without credentials, or a password without a user name.
    refused(&login(&app, None, json!({"type": "secured", "username": "uma"})).await, 400, "missing_credentials", 12);
    refused(&login(&app, None, json!({"type": "secured", "credentials": "uma-password"})).await, 400, "missing_credentials", 12);
    // No seed code for what is not a seed-002 request at all.
    let r = login(&app, None, json!({"method": "logout", "type": "secured"})).await;
    assert_eq!((r.status.as_u16(), r.code(), &r.body["resultCode"]), (400, "bad_method", &Value::Null));
    let r = login(&app, None, json!({"requestId": {"a": 1}, "type": "secured"})).await;
    assert_eq!((r.status.as_u16(), r.code()), (400, "bad_request_id"));
    let r = app.client.post(app.url("/api/v1/login")).header("content-type", "application/json").body("{").send().await.unwrap();
    let r = Reply::from(r).await;
    assert_eq!((r.status.as_u16(), r.code(), &r.body["result"]), (400, "malformed_json", &json!(false)));
    // Only the successful logins wrote tokens (two each), and no refusal echoes a secret.
    assert_eq!(app.token_rows().await, after_password + 2, "refusals wrote nothing");
    assert_eq!(after_password, before + 2);

    // 6: too many wrong attempts, with Retry-After; the attempt that starts the lock too.
    let mut last = None;
    for _ in 0..12 {
        let r = login(&app, None, secured("uma", "still-wrong")).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            last = Some(r);
            break;
        }
    }
    let r = last.expect("never throttled");
    refused(&r, 429, "too_many_attempts", 6);
    assert!(r.header("retry-after").and_then(|v| v.parse::<u64>().ok()).is_some_and(|s| s >= 1), "{:?}", r.headers);

    // 1: the database is gone.
    app.state.pool.close().await;
    let r = login(&app, None, secured(ADMIN, ADMIN_PASSWORD)).await;
    assert_eq!(r.body["resultCode"], json!(1), "{}", r.body);
    assert!(r.status.is_server_error(), "{}", r.status);
}

async fn security_login_in_the_user_role_cannot_act_as_admin(app: TestApp) {
    // An admin logged in with "role": "user" (or switched to it) is a user: no user
    // management, no key rotation, and neither can a token issued from it.
    let mut body = secured(ADMIN, ADMIN_PASSWORD);
    body["role"] = json!("user");
    let r = login(&app, None, body).await;
    let token = s(&r.body, "token").to_owned();
    let create = json!({"name": "eve", "password": "eve-password", "role": "admin"});
    let r = app.call(Method::POST, "/api/v1/users", Some(&token), Some(&create)).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "admin_required"), "{}", r.body);
    let r = app.post("/api/v1/keys/rotate", Some(&token), &json!({})).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "admin_required"), "{}", r.body);
    let child = app.child(&token, &json!({})).await;
    assert_eq!(child.status, StatusCode::OK, "{}", child.body);
    let r = app.call(Method::POST, "/api/v1/users", Some(s(&child.body, "token")), Some(&create)).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "admin_required"), "a child keeps the user role: {}", r.body);
    refused(&login(&app, Some(s(&child.body, "token")), json!({"role": "admin"})).await, 403, "not_admin", 3);
    // The same admin with a plain login still manages.
    let r = login(&app, None, secured(ADMIN, ADMIN_PASSWORD)).await;
    let r = app.call(Method::POST, "/api/v1/users", Some(s(&r.body, "token")), Some(&create)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn security_login_tokens_are_issued_together_and_end_with_their_origin(app: TestApp) {
    let origin = app.admin_token(None, None).await;
    let r = login(&app, None, json!({"type": "secured", "credentials": s(&origin, "token")})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (token, http) = (s(&r.body, "token").to_owned(), s(&r.body, "_id").to_owned());
    let kinds: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT kind, parent_id FROM tokens WHERE parent_id = $1 OR id = $1 ORDER BY kind")
            .bind(&http)
            .fetch_all(&app.state.pool)
            .await
            .unwrap();
    assert_eq!(kinds.iter().map(|k| k.0.as_str()).collect::<Vec<_>>(), ["api", "http"], "the HTTP-server token is the login token's child");
    // Revoking the original ends the login made from it, and its HTTP-server token.
    assert_eq!(app.delete(&format!("/api/v1/tokens/{}", s(&origin, "_id")), s(&origin, "token")).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/users", &token).await.code(), "token_revoked");
    let live: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tokens WHERE revoked_at IS NULL").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(live, 0, "every token of the tree is revoked");
    // A revoked token is no credential: code 8.
    refused(&login(&app, None, json!({"type": "secured", "credentials": s(&origin, "token")})).await, 401, "wrong_credentials", 8);
}

async fn login_plan_is_read_by_all_and_changed_by_the_root_admin(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let admin = s(&admin, "token");
    let r = app.get("/api/v1/account", admin).await;
    assert_eq!((r.status, &r.body["plan"]), (StatusCode::OK, &json!("pro")), "the first account is the operator's, Pro: {}", r.body);
    make_user(&app, admin, "sub", "admin", None).await;
    let sub = login(&app, None, secured("sub", "sub-password")).await;
    let sub = s(&sub.body, "token");
    assert_eq!(app.get("/api/v1/account", sub).await.body["plan"], json!("pro"));
    let r = app.call(Method::PATCH, "/api/v1/account", Some(sub), Some(&json!({"plan": "basic"}))).await;
    assert_eq!((r.status.as_u16(), r.code()), (403, "admin_required"), "only the root admin: {}", r.body);
    let r = app.call(Method::PATCH, "/api/v1/account", Some(admin), Some(&json!({"plan": "gold"}))).await;
    r.assert_error(400, "bad_plan");
    let r = app.call(Method::PATCH, "/api/v1/account", Some(admin), Some(&json!({"plan": "basic", "x": 1}))).await;
    r.assert_error(400, "unknown_field");
    assert_eq!(app.get("/api/v1/account", admin).await.body["plan"], json!("pro"), "nothing changed");
}

/// Unsecured logins, when the operator names the user (issue 11 §2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_unsecured_when_the_operator_enables_it() {
    run_with(&[("TOKENGATE_UNSECURED_LOGIN", ADMIN)], |app| async move {
        let r = login(&app, None, json!({"method": "auth", "requestId": "1", "type": "unsecured", "role": "admin"})).await;
        assert_eq!((r.status, &r.body["previleges"]), (StatusCode::OK, &json!(2)), "{}", r.body);
        assert_eq!(app.get("/api/v1/users", s(&r.body, "token")).await.status, StatusCode::OK);
        let r = login(&app, None, json!({"type": "unsecured", "username": "someone-else"})).await;
        refused(&r, 403, "security_type_not_allowed", 4);
        // Pro-only.
        let admin = app.admin_token(None, None).await;
        app.call(Method::PATCH, "/api/v1/account", Some(s(&admin, "token")), Some(&json!({"plan": "basic"}))).await;
        refused(&login(&app, None, json!({"type": "unsecured"})).await, 403, "plan_not_pro", 2);
    })
    .await;
}
