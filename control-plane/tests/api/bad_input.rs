//! Bad input gets a 4xx `{"error","code","message"}` naming the problem, and nothing
//! is written.

use reqwest::Method;
use serde_json::json;

use crate::each_db;
use crate::helpers::{Reply, TestApp, ADMIN, ADMIN_PASSWORD};

each_db!(bad_bodies_are_refused_with_a_code_and_nothing_written, unknown_routes_and_methods_answer_json);

async fn raw(app: &TestApp, path: &str, token: Option<&str>, content_type: Option<&str>, body: Vec<u8>) -> Reply {
    let mut req = app.client.post(app.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Reply::from(req.send().await.unwrap()).await
}

async fn bad_bodies_are_refused_with_a_code_and_nothing_written(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let token = admin["token"].as_str().unwrap().to_owned();
    let listed = app.listed_ids(&token).await;
    let rows = app.token_rows().await;
    let json_ct = Some("application/json");

    for path in ["/api/v1/auth", "/api/v1/tokens"] {
        let t = Some(token.as_str());
        let r = raw(&app, path, t, json_ct, b"{\"username\": ".to_vec()).await;
        r.assert_error(400, "malformed_json");
        let r = raw(&app, path, t, json_ct, b"{} trailing".to_vec()).await;
        r.assert_error(400, "malformed_json");
        let r = raw(&app, path, t, json_ct, br#"{"expiresIn":"1 day","scopez":[]}"#.to_vec()).await;
        r.assert_error(400, "unknown_field");
        assert!(r.body["message"].as_str().unwrap().contains("scopez"), "{}", r.body);
        let r = raw(&app, path, t, json_ct, br#"{"expiresIn":86400}"#.to_vec()).await;
        r.assert_error(400, "wrong_type");
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains("expiresIn") && !msg.contains("86400"), "{msg}");
        let r = raw(&app, path, t, json_ct, br#"{"scopes":"GET /objects"}"#.to_vec()).await;
        r.assert_error(400, "wrong_type");
        assert!(r.body["message"].as_str().unwrap().contains("scopes"));
        // A struct is read only from an object, never from an array of its fields
        // (schemathesis found `[null, null]` issuing a token).
        for body in [&b"[null, null]"[..], b"[]", b"\"admin\"", b"null", b"42"] {
            let r = raw(&app, path, t, json_ct, body.to_vec()).await;
            r.assert_error(400, "wrong_type");
            assert!(r.body["message"].as_str().unwrap().contains("object"), "{}", r.body);
        }
        let r = raw(&app, path, t, Some("text/plain"), br#"{}"#.to_vec()).await;
        r.assert_error(415, "unsupported_media_type");
        let r = raw(&app, path, t, None, br#"{}"#.to_vec()).await;
        r.assert_error(415, "unsupported_media_type");
        let big = format!(r#"{{"name":"{}"}}"#, "x".repeat(70 * 1024));
        let r = raw(&app, path, t, json_ct, big.into_bytes()).await;
        r.assert_error(413, "body_too_large");
    }

    let r = app.auth(&json!({"username": ADMIN})).await;
    r.assert_error(400, "missing_field");
    assert!(r.body["message"].as_str().unwrap().contains("password"));
    let r = app.auth(&json!({"username": ADMIN, "password": 12345})).await;
    r.assert_error(400, "wrong_type");
    assert!(!r.body.to_string().contains("12345"));

    // Scopes: a malformed pattern names the pattern and the position; an unknown one is
    // named.
    for path in ["/api/v1/auth", "/api/v1/tokens"] {
        let with = |scopes: serde_json::Value| {
            if path == "/api/v1/auth" {
                json!({"username": ADMIN, "password": ADMIN_PASSWORD, "scopes": scopes})
            } else {
                json!({"scopes": scopes})
            }
        };
        let r = app.post(path, Some(&token), &with(json!(["GET /objects", "GET /objects//packets"]))).await;
        r.assert_error(400, "bad_scope");
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains("GET /objects//packets") && msg.contains("position 13"), "{msg}");
        let r = app.post(path, Some(&token), &with(json!(["get /objects"]))).await;
        r.assert_error(400, "bad_scope");
        assert!(r.body["message"].as_str().unwrap().contains("position 0"));
        let r = app.post(path, Some(&token), &with(json!(["GET /objects", "PUT /widgets/:id"]))).await;
        r.assert_error(400, "unknown_scope");
        assert!(r.body["message"].as_str().unwrap().contains("PUT /widgets/:id"));
    }
    let r = app.child(&token, &json!({"name": "bad\nname"})).await;
    r.assert_error(400, "bad_name");
    let r = app.child(&token, &json!({"expiresIn": "soon"})).await;
    r.assert_error(400, "bad_expires_in");

    assert_eq!(app.token_rows().await, rows);
    assert_eq!(app.listed_ids(&token).await, listed);
}

async fn unknown_routes_and_methods_answer_json(app: TestApp) {
    let r = app.call(Method::GET, "/api/v1/nothing", None, None).await;
    r.assert_error(404, "not_found");
    let r = app.call(Method::GET, "/nothing", None, None).await;
    r.assert_error(404, "not_found");
    let r = app.call(Method::PUT, "/api/v1/tokens", None, None).await;
    r.assert_error(405, "method_not_allowed");
    let r = app.call(Method::GET, "/api/v1/auth", None, None).await;
    r.assert_error(405, "method_not_allowed");
    let r = app.call(Method::POST, "/healthz", None, None).await;
    r.assert_error(405, "method_not_allowed");
}
