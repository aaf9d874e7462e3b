//! `POST /explain`: the gate's decision for a token and a request, with the reason.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{issue_limited, TestApp};

each_db!(
    explain_own_token_names_the_scope_and_the_route,
    explain_flags_and_items_of_another_token,
    explain_token_state_and_unsafe_paths,
    explain_bad_input_and_access,
);

fn tok(v: &Value) -> &str {
    v["token"].as_str().unwrap()
}

async fn explain(app: &TestApp, caller: &str, body: Value) -> Value {
    let r = app.post("/api/v1/explain", Some(caller), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

async fn explain_own_token_names_the_scope_and_the_route(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let r = explain(&app, tok(&admin), json!({"request": "GET /api/v1/objects/42"})).await;
    assert_eq!(
        r,
        json!({
            "allowed": true, "code": null, "scope": null, "route": "GET /objects/:id",
            "requiredFlags": 512, "missingFlags": 0, "item": null,
            "token": {"_id": admin["_id"], "scopes": null, "fl": null, "items": null},
        })
    );
    // No route of the table: allowed by scopes alone, no flags.
    let r = explain(&app, tok(&admin), json!({"request": "GET /api/v1/elsewhere?x=1"})).await;
    assert_eq!((&r["allowed"], &r["route"], &r["requiredFlags"]), (&json!(true), &Value::Null, &Value::Null));

    let scoped = app.admin_token(Some(&["GET /objects/:id", "POST /explain"]), None).await;
    let r = explain(&app, tok(&scoped), json!({"request": "GET /api/v1/objects/7"})).await;
    assert_eq!(r["allowed"], true);
    assert_eq!(r["scope"], "GET /objects/:id");
    assert_eq!(r["token"]["scopes"], json!(["GET /objects/:id", "POST /explain"]));
    let r = explain(&app, tok(&scoped), json!({"request": "DELETE /api/v1/objects/7"})).await;
    assert_eq!(
        (&r["allowed"], &r["code"], &r["scope"], &r["route"]),
        (&json!(false), &json!("insufficient_scope"), &Value::Null, &Value::Null)
    );
    // A scoped token never reaches a path outside the prefix.
    let r = explain(&app, tok(&scoped), json!({"request": "GET /objects/7"})).await;
    assert_eq!(r["code"], "insufficient_scope");
}

async fn explain_flags_and_items_of_another_token(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let limited = issue_limited(&app, None, Some(0x200), Some(vec![7, 3]), 3_600_000).await;
    let ask = |request: &str| json!({"request": request, "token": limited.id});
    let r = explain(&app, tok(&admin), ask("GET /api/v1/objects/7")).await;
    assert_eq!(r["allowed"], true, "{r}");
    assert_eq!(r["token"], json!({"_id": limited.id, "scopes": null, "fl": 512, "items": [3, 7]}));
    let r = explain(&app, tok(&admin), ask("GET /api/v1/objects/8")).await;
    assert_eq!((&r["allowed"], &r["code"]), (&json!(false), &json!("item_not_allowed")));
    assert_eq!(r["item"], json!({"param": "id", "value": "8"}));
    assert_eq!(r["route"], "GET /objects/:id");
    let r = explain(&app, tok(&admin), ask("GET /api/v1/objects/007")).await;
    assert_eq!((&r["code"], &r["item"]["value"]), (&json!("item_not_numeric"), &json!("007")));
    let r = explain(&app, tok(&admin), ask("DELETE /api/v1/objects/7")).await;
    assert_eq!(r["code"], "insufficient_flags");
    assert_eq!((&r["requiredFlags"], &r["missingFlags"]), (&json!(4096), &json!(4096)));
    let r = explain(&app, tok(&admin), ask("POST /api/v1/objects/7/commands/reboot")).await;
    assert_eq!((&r["code"], &r["missingFlags"]), (&json!("insufficient_flags"), &json!(8192)));
    // The limited token may explain itself (no flags needed), not another token.
    let r = explain(&app, &limited.token, json!({"request": "GET /api/v1/objects"})).await;
    assert_eq!(r["allowed"], true);
    let r = app.post("/api/v1/explain", Some(&limited.token), &json!({"request": "GET /api/v1/objects", "token": admin["_id"]})).await;
    r.assert_error(403, "insufficient_flags");
}

async fn explain_token_state_and_unsafe_paths(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let child = app.child(tok(&admin), &json!({"expiresIn": "1 hour"})).await.body;
    let id = child["_id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/api/v1/tokens/{id}"), tok(&admin)).await.status, StatusCode::NO_CONTENT);
    let r = explain(&app, tok(&admin), json!({"request": "GET /api/v1/objects", "token": id})).await;
    assert_eq!((&r["allowed"], &r["code"]), (&json!(false), &json!("token_revoked")));
    let expired = issue_limited(&app, None, None, None, -120_000).await;
    let r = explain(&app, tok(&admin), json!({"request": "GET /api/v1/objects", "token": expired.id})).await;
    assert_eq!(r["code"], "token_expired");
    for (path, code) in [
        ("/api/v1/objects/%2e%2e", "path_bad_escape"),
        ("/api/v1/objects/%2F", "path_bad_escape"),
        ("/api/v1/../objects", "path_bad_segment"),
        ("/api/v1/objects;x", "path_bad_character"),
        ("http://example.com/api/v1/objects", "path_not_origin_form"),
    ] {
        let r = explain(&app, tok(&admin), json!({"request": format!("GET {path}")})).await;
        assert_eq!((&r["allowed"], &r["code"]), (&json!(false), &json!(code)), "{path}");
        assert_eq!(r["route"], Value::Null);
    }
}

async fn explain_bad_input_and_access(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    for bad in ["", "GET", "GET ", "get /objects", "GET  /objects", "GET /a b", "/objects"] {
        let r = app.post("/api/v1/explain", Some(tok(&admin)), &json!({"request": bad})).await;
        r.assert_error(400, "bad_request_line");
    }
    let r = app.post("/api/v1/explain", Some(tok(&admin)), &json!({"request": "GET /x", "token": "nope"})).await;
    r.assert_error(400, "bad_token_id");
    let r = app.post("/api/v1/explain", Some(tok(&admin)), &json!({"request": "GET /x", "token": "0123456789abcdef01234567"})).await;
    r.assert_error(404, "token_not_found");
    app.post("/api/v1/explain", Some(tok(&admin)), &json!({})).await.assert_error(400, "missing_field");
    app.post("/api/v1/explain", Some(tok(&admin)), &json!({"request": 5})).await.assert_error(400, "wrong_type");
    app.post("/api/v1/explain", Some(tok(&admin)), &json!({"request": "GET /x", "tokn": "x"})).await.assert_error(400, "unknown_field");
    app.call(Method::POST, "/api/v1/explain", None, Some(&json!({"request": "GET /x"}))).await.assert_error(401, "missing_token");
    let narrow = app.admin_token(Some(&["GET /objects"]), None).await;
    app.post("/api/v1/explain", Some(tok(&narrow)), &json!({"request": "GET /x"})).await.assert_error(403, "insufficient_scope");
}
