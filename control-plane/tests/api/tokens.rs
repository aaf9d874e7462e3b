//! `GET/POST /tokens`, `DELETE /tokens/:id`, and the guard on the control plane's own
//! API.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokengate_control_plane::tokens::{issue, NewToken};
use tokengate_rules::token::verify;

use crate::each_db;
use crate::helpers::{issue_limited, now_ms, TestApp};

each_db!(
    list_shape_never_holds_a_token_and_pages,
    list_needs_the_get_tokens_scope,
    child_scopes_are_attenuated,
    child_inherits_the_parent_scopes,
    child_lifetime_never_outlives_the_parent,
    child_needs_post_tokens_on_the_parent,
    revoke_refuses_the_token_and_its_descendants,
    revoke_bad_unknown_and_foreign_ids,
    security_tokens_exactly_one_credential,
    scopes_lists_catalogue_and_own_routes,
    flags_and_items_pass_to_children_and_limit_token_management,
);

fn tok(v: &Value) -> &str {
    v["token"].as_str().unwrap()
}

fn id(v: &Value) -> &str {
    v["_id"].as_str().unwrap()
}

async fn list_shape_never_holds_a_token_and_pages(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let mut ids = vec![id(&admin).to_owned()];
    for n in 0..4 {
        let c = app.child(tok(&admin), &json!({"expiresIn": "1 hour", "name": format!("c{n}"), "scopes": ["GET /objects"]})).await;
        assert_eq!(c.status, StatusCode::OK, "{}", c.body);
        ids.push(id(&c.body).to_owned());
    }
    ids.sort();
    let r = app.get("/api/v1/tokens", tok(&admin)).await;
    assert_eq!(r.status, StatusCode::OK);
    let list = r.body.as_array().unwrap();
    assert_eq!(list.iter().map(|t| id(t).to_owned()).collect::<Vec<_>>(), ids);
    for t in list {
        let mut keys: Vec<&str> = t.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["_id", "app", "at", "dur", "expiresAt", "fl", "issuedAt", "items", "lastUsedAt", "name", "parent", "scopes"]);
        assert!(!t.to_string().contains(tok(&admin)));
    }
    let child = list.iter().find(|t| t["name"] == "c0").unwrap();
    assert_eq!(child["scopes"], json!(["GET /objects"]));
    assert_eq!(child["parent"], id(&admin));
    assert!(child["expiresAt"].as_i64().unwrap() > now_ms());

    let page1 = app.get("/api/v1/tokens?limit=2", tok(&admin)).await.body;
    let page1: Vec<String> = page1.as_array().unwrap().iter().map(|t| id(t).to_owned()).collect();
    assert_eq!(page1, ids[..2]);
    let page2 = app.get(&format!("/api/v1/tokens?limit=2&after={}", page1[1]), tok(&admin)).await.body;
    let page2: Vec<String> = page2.as_array().unwrap().iter().map(|t| id(t).to_owned()).collect();
    assert_eq!(page2, ids[2..4]);
    let last = app.get(&format!("/api/v1/tokens?after={}", ids[4]), tok(&admin)).await;
    assert_eq!(last.body, json!([]));
    for bad in ["limit=0", "limit=1001", "limit=x", "after=nothex"] {
        app.get(&format!("/api/v1/tokens?{bad}"), tok(&admin)).await.assert_error(400, "bad_query");
    }
}

async fn list_needs_the_get_tokens_scope(app: TestApp) {
    let narrow = app.admin_token(Some(&["GET /objects"]), None).await;
    let r = app.get("/api/v1/tokens", tok(&narrow)).await;
    r.assert_error(403, "insufficient_scope");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tokengate\", error=\"insufficient_scope\""));
    let ok = app.admin_token(Some(&["GET /tokens"]), None).await;
    assert_eq!(app.get("/api/v1/tokens", tok(&ok)).await.status, StatusCode::OK);
}

async fn child_scopes_are_attenuated(app: TestApp) {
    let parent = app.admin_token(Some(&["POST /tokens", "GET /objects/:id", "GET /tokens"]), None).await;
    let rows = app.token_rows().await;
    let r = app.child(tok(&parent), &json!({"expiresIn": "1 hour", "scopes": ["GET /objects"]})).await;
    r.assert_error(403, "scope_exceeds_parent");
    assert!(r.body["message"].as_str().unwrap().contains("GET /objects"));
    let r = app.child(tok(&parent), &json!({"scopes": ["GET /objects/:id", "DELETE /objects/:id"]})).await;
    r.assert_error(403, "scope_exceeds_parent");
    assert!(r.body["message"].as_str().unwrap().contains("DELETE /objects/:id"));
    assert_eq!(app.token_rows().await, rows);

    // Narrower is fine: one literal item, and a renamed parameter.
    let r = app
        .child(tok(&parent), &json!({"expiresIn": "1 hour", "name": "one", "scopes": ["GET /objects/7", "GET /api/v1/objects/:x"]}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["scopes"], json!(["GET /objects/7", "GET /objects/:x"]));
    assert_eq!(r.body["name"], "one");
    let now = u64::try_from(now_ms()).unwrap() / 1000;
    let (_, claims) = verify(tok(&r.body), app.state.keys.current().trusted(), &app.state.policy, now).unwrap();
    assert_eq!(claims.par.as_deref(), Some(id(&parent)));
    assert_eq!(claims.sub, verify(tok(&parent), app.state.keys.current().trusted(), &app.state.policy, now).unwrap().1.sub);
    // The child cannot issue: it lacks POST /tokens.
    app.child(tok(&r.body), &json!({})).await.assert_error(403, "insufficient_scope");
}

async fn child_inherits_the_parent_scopes(app: TestApp) {
    let parent = app.admin_token(Some(&["POST /tokens", "GET /objects"]), None).await;
    let c = app.child(tok(&parent), &json!({"expiresIn": "1 hour"})).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(c.body["scopes"], parent["scopes"]);
    let c2 = app.child(tok(&parent), &json!({"expiresIn": "1 hour", "scopes": null})).await;
    assert_eq!(c2.body["scopes"], parent["scopes"]);
    // A parent with all powers may give any catalogue scope; its child without scopes
    // keeps all powers.
    let all = app.admin_token(None, None).await;
    let c3 = app.child(tok(&all), &json!({})).await;
    assert_eq!(c3.body["scopes"], Value::Null);
    let c4 = app.child(tok(&all), &json!({"scopes": ["DELETE /geofences/:id"]})).await;
    assert_eq!(c4.body["scopes"], json!(["DELETE /geofences/:id"]));
}

async fn child_lifetime_never_outlives_the_parent(app: TestApp) {
    let parent = app.admin_token(None, Some("1 hour")).await;
    let rows = app.token_rows().await;
    app.child(tok(&parent), &json!({"expiresIn": "2 hours"})).await.assert_error(400, "lifetime_exceeds_parent");
    app.child(tok(&parent), &json!({"expiresIn": "5 years"})).await.assert_error(400, "lifetime_exceeds_parent");
    assert_eq!(app.token_rows().await, rows);
    // The 1-day default is cut to the parent's expiry.
    let c = app.child(tok(&parent), &json!({})).await;
    assert_eq!(c.status, StatusCode::OK, "{}", c.body);
    assert_eq!(c.body["expiresAt"], parent["expiresAt"]);
    let c = app.child(tok(&parent), &json!({"expiresIn": "30 minutes"})).await;
    assert_eq!(c.body["expiresAt"].as_i64().unwrap() - c.body["issuedAt"].as_i64().unwrap(), 1_800_000);
    // A grandchild is bounded by the child.
    app.child(tok(&c.body), &json!({"expiresIn": "40 minutes"})).await.assert_error(400, "lifetime_exceeds_parent");
}

async fn child_needs_post_tokens_on_the_parent(app: TestApp) {
    let parent = app.admin_token(Some(&["GET /objects", "GET /tokens"]), None).await;
    let rows = app.token_rows().await;
    let r = app.child(tok(&parent), &json!({"expiresIn": "1 hour", "scopes": ["GET /objects"]})).await;
    r.assert_error(403, "insufficient_scope");
    assert_eq!(app.token_rows().await, rows);
}

async fn revoke_refuses_the_token_and_its_descendants(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let parent = app.child(tok(&admin), &json!({"name": "parent"})).await.body;
    let child = app.child(tok(&parent), &json!({"name": "child"})).await.body;
    let grandchild = app.child(tok(&child), &json!({"name": "grandchild", "scopes": ["GET /scopes"]})).await.body;
    let sibling = app.child(tok(&admin), &json!({"name": "sibling"})).await.body;
    for t in [&parent, &child, &grandchild, &sibling] {
        assert_eq!(app.get("/api/v1/scopes", tok(t)).await.status, StatusCode::OK);
    }
    let r = app.delete(&format!("/api/v1/tokens/{}", id(&parent)), tok(&admin)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(r.body, Value::Null);
    for t in [&parent, &child, &grandchild] {
        let r = app.get("/api/v1/scopes", tok(t)).await;
        r.assert_error(401, "token_revoked");
        assert!(r.header("www-authenticate").unwrap().contains("error=\"invalid_token\""));
    }
    assert_eq!(app.get("/api/v1/scopes", tok(&sibling)).await.status, StatusCode::OK);
    let listed = app.listed_ids(tok(&admin)).await;
    assert_eq!(listed.len(), 2);
    assert!(listed.contains(&id(&admin).to_owned()) && listed.contains(&id(&sibling).to_owned()));
    // One change-log entry per revoked token.
    let changes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes WHERE kind = 'revoke'").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(changes, 3);
    // Revoking again is a 204 and logs nothing new.
    assert_eq!(app.delete(&format!("/api/v1/tokens/{}", id(&child)), tok(&admin)).await.status, StatusCode::NO_CONTENT);
    let changes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(changes, 3);
    // A token can revoke itself, and is refused right after.
    assert_eq!(app.delete(&format!("/api/v1/tokens/{}", id(&sibling)), tok(&sibling)).await.status, StatusCode::NO_CONTENT);
    app.get("/api/v1/scopes", tok(&sibling)).await.assert_error(401, "token_revoked");
}

async fn revoke_bad_unknown_and_foreign_ids(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    app.delete("/api/v1/tokens/0123456789abcdef01234567", tok(&admin)).await.assert_error(404, "token_not_found");
    for bad in ["xyz", "0123456789ABCDEF01234567", "0123456789abcdef0123456", "0123456789abcdef012345678"] {
        app.delete(&format!("/api/v1/tokens/{bad}"), tok(&admin)).await.assert_error(400, "bad_token_id");
    }
    // A token of another account is as good as absent.
    let other_account = tokengate_control_plane::tokens::keys::random_id(12);
    let other_user = tokengate_control_plane::tokens::keys::random_id(12);
    let pool = &app.state.pool;
    sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, 'other', 0)").bind(&other_account).execute(pool).await.unwrap();
    sqlx::query("INSERT INTO users (id, account_id, parent_id, name, password_hash, role, created_at) VALUES ($1, $2, NULL, 'other', 'x', 'admin', 0)")
        .bind(&other_user)
        .bind(&other_account)
        .execute(pool)
        .await
        .unwrap();
    let now = now_ms();
    let foreign = issue(
        &app.state,
        NewToken {
            id: tokengate_control_plane::tokens::keys::random_id(12),
            kind: tokengate_rules::TokenKind::Api,
            role: None,
            account_id: other_account,
            user_id: other_user,
            user_name: "other".into(),
            parent_id: None,
            name: Some("foreign".into()),
            scopes: None,
            fl: None,
            items: None,
            app: None,
            p: None,
            issued_at_ms: now,
            not_before_ms: now,
            expires_at_ms: now + 3_600_000,
            dur: None,
        },
        &tokengate_control_plane::audit::Actor::system(),
        &[],
    )
    .await
    .unwrap();
    app.delete(&format!("/api/v1/tokens/{}", foreign.id), tok(&admin)).await.assert_error(404, "token_not_found");
    assert!(!app.listed_ids(tok(&admin)).await.contains(&foreign.id));
    // The foreign account sees only its own.
    assert_eq!(app.listed_ids(&foreign.token).await, vec![foreign.id.clone()]);
    assert_eq!(app.get("/api/v1/scopes", &foreign.token).await.status, StatusCode::OK);
}

async fn security_tokens_exactly_one_credential(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let r = app.call(Method::GET, "/api/v1/tokens", None, None).await;
    r.assert_error(401, "missing_token");
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tokengate\""));
    let r = Reply::from(
        app.client
            .get(app.url("/api/v1/tokens"))
            .header("authorization", format!("Bearer {}", tok(&admin)))
            .header("authorization", format!("Bearer {}", tok(&admin)))
            .send()
            .await
            .unwrap(),
    )
    .await;
    r.assert_error(400, "multiple_credentials");
    let r = app.get(&format!("/api/v1/tokens?access_token={}", tok(&admin)), tok(&admin)).await;
    r.assert_error(400, "multiple_credentials");
    app.get("/api/v1/tokens", "not-a-token").await.assert_error(401, "token_malformed");
    // A forged signature is refused.
    let mut parts: Vec<String> = tok(&admin).split('.').map(str::to_owned).collect();
    let flipped = if parts[2].as_bytes()[10] == b'A' { "B" } else { "A" };
    parts[2].replace_range(10..11, flipped);
    let r = app.get("/api/v1/tokens", &parts.join(".")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.body["error"], "invalid_token");
    let r = app.get("/api/v1/tokens", &"a".repeat(9000)).await;
    r.assert_error(401, "token_too_large");
    assert!(!r.body.to_string().contains("aaaa"));
    let r =
        Reply::from(app.client.get(app.url("/api/v1/tokens")).header("authorization", "Basic dXNlcjpwdw==").send().await.unwrap()).await;
    r.assert_error(401, "missing_token");
}

use crate::helpers::Reply;

async fn scopes_lists_catalogue_and_own_routes(app: TestApp) {
    // Any valid API token may read it, whatever its scopes.
    let narrow = app.admin_token(Some(&["GET /geofences"]), None).await;
    let r = app.get("/api/v1/scopes", tok(&narrow)).await;
    assert_eq!(r.status, StatusCode::OK);
    let list: Vec<&str> = r.body.as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
    for s in [
        "GET /objects",
        "POST /objects/:id/commands/:command",
        "DELETE /geofences/:id",
        "GET /tokens",
        "POST /tokens",
        "DELETE /tokens/:id",
        "GET /scopes",
    ] {
        assert!(list.contains(&s), "{s} missing from {list:?}");
    }
    use tokengate_control_plane::config::{DEMO_CATALOGUE, DEMO_HTTP_ROUTES};
    assert!(list.contains(&"GET /files/:name"), "the download route is scopable: {list:?}");
    assert_eq!(list.len(), DEMO_CATALOGUE.len() + DEMO_HTTP_ROUTES.len() + tokengate_control_plane::tokens::scopes::OWN_ROUTES.len());
    app.call(Method::GET, "/api/v1/scopes", None, None).await.assert_error(401, "missing_token");
}

async fn flags_and_items_pass_to_children_and_limit_token_management(app: TestApp) {
    // Unlimited flags may manage tokens; the child keeps flags, items and app.
    let unlimited = issue_limited(&app, None, Some(-1), Some(vec![7, 3]), 3_600_000).await;
    let child = app.child(&unlimited.token, &json!({"expiresIn": "10 minutes"})).await;
    assert_eq!(child.status, StatusCode::OK, "{}", child.body);
    let now = u64::try_from(now_ms()).unwrap() / 1000;
    let (_, claims) = verify(tok(&child.body), app.state.keys.current().trusted(), &app.state.policy, now).unwrap();
    assert_eq!(claims.fl, Some(-1));
    assert_eq!(claims.items, Some(vec![3, 7]));
    assert_eq!(claims.app.as_deref(), Some("tracker"));
    // Limited flags: token management is refused, reading the catalogue is not.
    let limited = issue_limited(&app, None, Some(0x200), Some(vec![7]), 3_600_000).await;
    let r = app.child(&limited.token, &json!({})).await;
    r.assert_error(403, "insufficient_flags");
    app.get("/api/v1/tokens", &limited.token).await.assert_error(403, "insufficient_flags");
    assert_eq!(app.get("/api/v1/scopes", &limited.token).await.status, StatusCode::OK);
}
