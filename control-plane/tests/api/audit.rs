//! The audit log (issue 13 §5): every change an operator is asked about is an entry,
//! written in the change's own transaction, with who, what, when and from where, and no
//! secret; `GET /api/v1/audit` pages and filters it (admins only).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{now_ms, Reply, TestApp, ADMIN, ADMIN_PASSWORD};

each_db!(
    audit_records_every_change_with_its_actor_and_no_secret,
    audit_records_failed_logins_locks_and_session_ends,
    audit_pages_filters_and_tails,
    security_audit_is_for_admins_and_refuses_bad_queries,
    audit_entry_exists_exactly_when_its_change_does,
    audit_entries_are_kept_for_the_retention_period,
);

fn tok(v: &Value) -> &str {
    v["token"].as_str().unwrap()
}

async fn page(app: &TestApp, token: &str, query: &str) -> Value {
    let r = app.get(&format!("/api/v1/audit{query}"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
    r.body
}

fn entries(page: &Value) -> Vec<Value> {
    page["entries"].as_array().unwrap().clone()
}

fn kinds(entries: &[Value]) -> Vec<String> {
    entries.iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

/// The whole log of the admin's account, oldest first.
async fn log(app: &TestApp, token: &str) -> Vec<Value> {
    entries(&page(app, token, "?after=0&limit=1000").await)
}

fn find<'a>(log: &'a [Value], kind: &str, target: &str) -> &'a Value {
    log.iter()
        .find(|e| e["kind"] == kind && e["target"] == target)
        .unwrap_or_else(|| panic!("no {kind} of {target} in {}", Value::from(log.to_vec())))
}

async fn call(app: &TestApp, method: Method, path: &str, token: &str, body: Option<&Value>) -> Reply {
    app.call(method, path, Some(token), body).await
}

async fn audit_records_every_change_with_its_actor_and_no_secret(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = tok(&admin);
    let admin_token_id = admin["_id"].as_str().unwrap();
    let admin_user_id = page(&app, t, "").await["entries"][0]["actor"]["userId"].as_str().unwrap().to_owned();

    // Tokens: issue a child, amend one made by seed-001 management, revoke both ways.
    let child = app.child(t, &json!({"name": "ci", "scopes": ["GET /objects"], "expiresIn": "1 hour"})).await;
    assert_eq!(child.status, StatusCode::OK, "{}", child.body);
    let child_id = child.body["_id"].as_str().unwrap();
    let managed = app.post("/api/v1/tokens/update", Some(t), &json!({"callMode": "create", "fl": 512, "dur": 3600})).await;
    assert_eq!(managed.status, StatusCode::OK, "{}", managed.body);
    let h = managed.body["h"].as_str().unwrap();
    let r = app.post("/api/v1/tokens/update", Some(t), &json!({"callMode": "update", "h": h, "fl": 256})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.delete(&format!("/api/v1/tokens/{child_id}"), t).await.status, StatusCode::NO_CONTENT);
    let r = app.post("/api/v1/tokens/update", Some(t), &json!({"callMode": "delete", "h": h})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    // Users: the password and PIN never reach the log.
    let r =
        app.post("/api/v1/users", Some(t), &json!({"name": "alice", "password": "alice-secret-pw", "pin": "482913", "role": "user"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let alice = r.body["id"].as_str().unwrap().to_owned();
    let r = call(
        &app,
        Method::PATCH,
        &format!("/api/v1/users/{alice}"),
        t,
        Some(&json!({"password": "alice-new-secret", "pin": null, "fl": 3})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let alice_login = app.auth(&json!({"username": "alice", "password": "alice-new-secret"})).await;
    assert_eq!(alice_login.status, StatusCode::OK);
    assert_eq!(app.delete(&format!("/api/v1/users/{alice}"), t).await.status, StatusCode::NO_CONTENT);

    // Networks and vouchers: the codes never reach the log.
    assert_eq!(app.post("/api/v1/networks", Some(t), &json!({"id": "cafe-1", "name": "Café"})).await.status, StatusCode::CREATED);
    assert_eq!(call(&app, Method::PATCH, "/api/v1/networks/cafe-1", t, Some(&json!({"name": "Café Two"}))).await.status, StatusCode::OK);
    let r = app.post("/api/v1/vouchers", Some(t), &json!({"count": 3, "kind": "single", "days": 1})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let vouchers = r.body["vouchers"].as_array().unwrap().clone();
    let codes: Vec<String> = vouchers.iter().map(|v| v["code"].as_str().unwrap().to_owned()).collect();
    let redeemed =
        app.post("/api/v1/vouchers/redeem", None, &json!({"code": codes[0], "device": "aa:bb:cc:dd:ee:01", "network": "cafe-1"})).await;
    assert_eq!(redeemed.status, StatusCode::OK, "{}", redeemed.body);
    // Renewing the same device's activation is not a new entry.
    let again =
        app.post("/api/v1/vouchers/redeem", None, &json!({"code": codes[0], "device": "aa:bb:cc:dd:ee:01", "network": "cafe-1"})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    let (v0, v1) = (vouchers[0]["id"].as_str().unwrap(), vouchers[1]["id"].as_str().unwrap());
    assert_eq!(app.post(&format!("/api/v1/vouchers/{v0}/revoke"), Some(t), &json!({})).await.status, StatusCode::OK);
    assert_eq!(app.delete(&format!("/api/v1/vouchers/{v1}"), t).await.status, StatusCode::OK);
    assert_eq!(app.delete("/api/v1/networks/cafe-1", t).await.status, StatusCode::OK);

    // Keys and the account.
    let r = app.post("/api/v1/keys/rotate", Some(t), &json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let kid = r.body["kid"].as_str().unwrap().to_owned();
    assert_eq!(call(&app, Method::PATCH, "/api/v1/account", t, Some(&json!({"plan": "basic"}))).await.status, StatusCode::OK);

    let log = log(&app, t).await;
    let text = Value::from(log.clone()).to_string();
    for secret in
        [ADMIN_PASSWORD, "alice-secret-pw", "alice-new-secret", "482913", tok(&admin), child.body["token"].as_str().unwrap(), "argon2"]
    {
        assert!(!text.contains(secret), "the audit log holds a secret ({secret}): {text}");
    }
    for code in &codes {
        assert!(!text.contains(code.as_str()), "the audit log holds a voucher code: {text}");
    }
    assert!(!text.contains(tok(&alice_login.body)), "the audit log holds a token value");

    // Who: the admin's token, from the test client's address.
    let issued = find(&log, "token.issue", &format!("token:{child_id}"));
    assert_eq!(issued["actor"], json!({"user": ADMIN, "userId": admin_user_id, "tokenId": admin_token_id}), "{issued}");
    assert_eq!(issued["address"], "127.0.0.1");
    assert_eq!(issued["detail"]["name"], "ci");
    assert_eq!(issued["detail"]["scopes"], child.body["scopes"]);
    assert!(issued["at"].as_i64().unwrap() > now_ms() - 600_000);
    // The admin's own login: login.ok and the token it got, by the user (no token yet).
    let own = find(&log, "token.issue", &format!("token:{admin_token_id}"));
    assert_eq!(own["actor"], json!({"user": ADMIN, "userId": admin_user_id, "tokenId": null}));
    let ok = find(&log, "login.ok", &format!("user:{admin_user_id}"));
    assert_eq!(ok["detail"]["method"], "password");

    find(&log, "token.update", &format!("token:{h}"));
    assert_eq!(find(&log, "token.revoke", &format!("token:{child_id}"))["detail"]["revoked"], 1);
    assert_eq!(find(&log, "token.revoke", &format!("token:{h}"))["detail"]["revoked"], 1);
    let created = find(&log, "user.create", &format!("user:{alice}"));
    assert_eq!((&created["detail"]["name"], &created["detail"]["pin"]), (&json!("alice"), &json!(true)));
    let changed = find(&log, "user.update", &format!("user:{alice}"));
    assert_eq!(changed["detail"]["changed"], json!({"password": "changed", "pin": "removed", "fl": 3}));
    find(&log, "user.delete", &format!("user:{alice}"));
    assert_eq!(find(&log, "network.create", "network:cafe-1")["detail"]["name"], "Café");
    assert_eq!(find(&log, "network.update", "network:cafe-1")["detail"]["name"], "Café Two");
    find(&log, "network.delete", "network:cafe-1");
    let generated = log.iter().find(|e| e["kind"] == "voucher.generate").unwrap();
    assert_eq!(generated["detail"]["count"], 3);
    let redeem: Vec<&Value> = log.iter().filter(|e| e["kind"] == "voucher.redeem").collect();
    assert_eq!(redeem.len(), 1, "a renewal is not a new redemption: {redeem:?}");
    assert_eq!(redeem[0]["target"], format!("voucher:{v0}"));
    assert_eq!(redeem[0]["actor"], json!({"user": null, "userId": null, "tokenId": null}), "a guest proves nothing but an address");
    assert_eq!(redeem[0]["address"], "127.0.0.1");
    assert_eq!(find(&log, "voucher.revoke", &format!("voucher:{v0}"))["detail"]["revokedActivations"], 1);
    find(&log, "voucher.delete", &format!("voucher:{v1}"));
    find(&log, "key.rotate", &format!("key:{kid}"));
    let account = app.get("/api/v1/account", t).await.body["id"].as_str().unwrap().to_owned();
    assert_eq!(find(&log, "account.update", &format!("account:{account}"))["detail"]["plan"], "basic");
    // Oldest first, ids increasing.
    let ids: Vec<i64> = log.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}

async fn audit_records_failed_logins_locks_and_session_ends(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = tok(&admin);
    let r = app.post("/api/v1/users", Some(t), &json!({"name": "bob", "password": "bob-password-1"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let bob = r.body["id"].as_str().unwrap().to_owned();
    // Wrong passwords for bob until the lock, from one address.
    let mut locked = false;
    for i in 0..8 {
        // The progressive delay is skipped by moving the streak's clock back, not by sleeping.
        sqlx::query("UPDATE throttle SET next_at = $1 WHERE next_at > $1").bind(now_ms()).execute(&app.state.pool).await.unwrap();
        let r = app.auth(&json!({"username": "bob", "password": format!("wrong-guess-{i}")})).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            locked = true;
            break;
        }
        r.assert_error(401, "wrong_credentials");
    }
    sqlx::query("UPDATE throttle SET locked_until = 0").execute(&app.state.pool).await.unwrap();
    assert!(locked, "the throttle never locked");
    // A name nobody has: the entry belongs to no account and does not carry the name.
    let r = app
        .post("/api/v1/login", None, &json!({"type": "secured", "username": "nobody-here", "credentials": "typed-in-the-wrong-field"}))
        .await;
    assert!(r.status == StatusCode::UNAUTHORIZED || r.status == StatusCode::TOO_MANY_REQUESTS, "{}", r.body);

    // A seed-003 session ended by its own logout, one ended by the idle sweep.
    let s1 = app.post("/api/v1/token/login", None, &json!({"token": t})).await;
    assert_eq!(s1.status, StatusCode::OK, "{}", s1.body);
    let s1_id = s1.body["_id"].as_str().unwrap().to_owned();
    assert_eq!(app.delete(&format!("/api/v1/sessions/{s1_id}"), t).await.status, StatusCode::NO_CONTENT);
    let s2 = app.post("/api/v1/token/login", None, &json!({"token": t})).await;
    assert_eq!(s2.status, StatusCode::OK, "{}", s2.body);
    let ended = tokengate_control_plane::sessions::sweep_idle(&app.state, now_ms() + 3_600_000).await.unwrap();
    assert_eq!(ended, 1);

    let log = log(&app, t).await;
    let failures: Vec<&Value> = log.iter().filter(|e| e["kind"] == "login.failed" && e["target"] == format!("user:{bob}")).collect();
    assert!(failures.len() >= 4, "{failures:?}");
    assert_eq!(failures[0]["actor"]["user"], "bob", "the name tried");
    assert_eq!(failures[0]["actor"]["tokenId"], Value::Null);
    assert_eq!(failures[0]["address"], "127.0.0.1");
    let lock = find(&log, "user.lock", &format!("user:{bob}"));
    assert!(lock["detail"]["lockedForSecs"].as_u64().unwrap() >= 1, "{lock}");
    let unknown: Vec<&Value> = log.iter().filter(|e| e["kind"] == "login.failed" && e["target"].is_null()).collect();
    assert_eq!(unknown.len(), 1, "{unknown:?}");
    assert_eq!(unknown[0]["detail"], json!({"method": "password", "reason": "unknown_user"}));
    let text = Value::from(log.clone()).to_string();
    assert!(!text.contains("nobody-here") && !text.contains("typed-in-the-wrong-field") && !text.contains("wrong-guess"), "{text}");
    let logout = find(&log, "session.end", &format!("session:{s1_id}"));
    assert_eq!(logout["detail"]["reason"], "logout");
    assert_eq!(logout["actor"]["tokenId"], admin["_id"]);
    let idle = log.iter().find(|e| e["kind"] == "session.end" && e["detail"]["reason"] == "idle").expect("the idle end");
    assert_eq!(idle["actor"], json!({"user": null, "userId": null, "tokenId": null}), "the control plane itself");
    assert_eq!(idle["address"], Value::Null);
    // Two token logins are two login.ok entries by the token's holder.
    let token_logins = log.iter().filter(|e| e["kind"] == "login.ok" && e["detail"]["method"] == "token").count();
    assert_eq!(token_logins, 2);
}

async fn audit_pages_filters_and_tails(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = tok(&admin);
    let start = now_ms();
    for i in 0..5 {
        let r = app.child(t, &json!({"name": format!("c{i}")})).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = app.post("/api/v1/users", Some(t), &json!({"name": "carol", "password": "carol-password"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let carol = app.auth(&json!({"username": "carol", "password": "carol-password"})).await;
    assert_eq!(carol.status, StatusCode::OK);

    // Newest first, `next` pages back until null.
    let first = page(&app, t, "?limit=3").await;
    let got = entries(&first);
    assert_eq!(got.len(), 3);
    assert_eq!(kinds(&got), ["token.issue", "login.ok", "user.create"], "carol's login is the newest");
    let mut seen: Vec<i64> = got.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let mut next = first["next"].clone();
    while let Some(before) = next.as_i64() {
        let p = page(&app, t, &format!("?limit=3&before={before}")).await;
        seen.extend(entries(&p).iter().map(|e| e["id"].as_i64().unwrap()));
        next = p["next"].clone();
    }
    assert!(seen.windows(2).all(|w| w[0] > w[1]), "{seen:?}");
    let all = log(&app, t).await;
    assert_eq!(seen.len(), all.len());

    // Filters.
    let issues = entries(&page(&app, t, "?kind=token.issue").await);
    assert_eq!(issues.len(), 7, "the admin's, five children, carol's: {issues:?}");
    let token_kinds = entries(&page(&app, t, "?kind=token.").await);
    assert_eq!(token_kinds.len(), 7);
    let by_carol = entries(&page(&app, t, "?user=carol").await);
    assert_eq!(kinds(&by_carol), ["token.issue", "login.ok"]);
    let c2 = issues.iter().find(|e| e["detail"]["name"] == "c2").unwrap();
    let at = c2["at"].as_i64().unwrap();
    let window = entries(&page(&app, t, &format!("?from={at}&to={}", at + 1)).await);
    assert!(window.iter().any(|e| e["id"] == c2["id"]) && window.iter().all(|e| e["at"] == at), "{window:?}");
    assert!(entries(&page(&app, t, &format!("?to={start}&kind=user.")).await).is_empty());

    // Tailing: oldest first after an id; `next` is the last id read.
    let last = all.last().unwrap()["id"].as_i64().unwrap();
    let tail = page(&app, t, &format!("?after={last}")).await;
    assert_eq!((entries(&tail).len(), tail["next"].as_i64()), (0, Some(last)));
    let r = app.child(t, &json!({"name": "later"})).await;
    assert_eq!(r.status, StatusCode::OK);
    let tail = page(&app, t, &format!("?after={last}")).await;
    let new = entries(&tail);
    assert_eq!(kinds(&new), ["token.issue"]);
    assert_eq!(new[0]["detail"]["name"], "later");
    assert_eq!(tail["next"], new[0]["id"]);
}

async fn security_audit_is_for_admins_and_refuses_bad_queries(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = tok(&admin);
    let r = app.call(Method::GET, "/api/v1/audit", None, None).await;
    r.assert_error(401, "missing_token");
    let r = app.post("/api/v1/users", Some(t), &json!({"name": "dave", "password": "dave-password"})).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let dave = app.auth(&json!({"username": "dave", "password": "dave-password"})).await;
    app.get("/api/v1/audit", tok(&dave.body)).await.assert_error(403, "admin_required");
    // An admin's token scoped elsewhere, or with limited flags, is refused by the route table.
    let scoped = app.child(t, &json!({"scopes": ["GET /tokens"]})).await;
    app.get("/api/v1/audit", tok(&scoped.body)).await.assert_error(403, "insufficient_scope");
    for q in [
        "?limit=0",
        "?limit=1001",
        "?limit=ten",
        "?before=-1",
        "?after=x",
        "?before=5&after=1",
        "?kind=token",
        "?kind=drop table",
        "?kind=nothing.",
        "?from=10&to=10",
        "?from=1e3",
        "?user=",
    ] {
        let r = app.get(&format!("/api/v1/audit{q}"), t).await;
        r.assert_error(400, "bad_query");
        assert!(!r.body["message"].as_str().unwrap().is_empty(), "{q}");
    }
}

async fn audit_entry_exists_exactly_when_its_change_does(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = tok(&admin);
    let before = log(&app, t).await.len();
    // Refused changes write no entry.
    app.post("/api/v1/users", Some(t), &json!({"name": ADMIN, "password": "long-enough-pw"})).await.assert_error(409, "user_exists");
    app.post("/api/v1/vouchers", Some(t), &json!({"count": 0, "kind": "single"})).await.assert_error(400, "bad_count");
    app.delete("/api/v1/tokens/0123456789abcdef01234567", t).await.assert_error(404, "token_not_found");
    app.delete("/api/v1/networks/none-such", t).await.assert_error(404, "network_not_found");
    assert_eq!(log(&app, t).await.len(), before, "a refused change left an entry");
    // Entries survive a restart of the control plane.
    let r = app.child(t, &json!({"name": "durable"})).await;
    assert_eq!(r.status, StatusCode::OK);
    let app = app.restart().await;
    let after = log(&app, t).await;
    assert_eq!(after.len(), before + 1);
    assert_eq!(after.last().unwrap()["detail"]["name"], "durable");
}

async fn audit_entries_are_kept_for_the_retention_period(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = tok(&admin);
    for name in ["old", "recent"] {
        assert_eq!(app.child(t, &json!({"name": name})).await.status, StatusCode::OK);
    }
    let keep_days = tokengate_control_plane::config::DEFAULT_AUDIT_KEEP_DAYS;
    let day = 86_400_000_i64;
    let now = now_ms();
    // Everything but "recent" is moved past the retention period; "recent" to just inside it.
    sqlx::query("UPDATE audit_log SET at = $1 WHERE detail NOT LIKE '%\"recent\"%'")
        .bind(now - (keep_days as i64 + 1) * day)
        .execute(&app.state.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET at = $1 WHERE detail LIKE '%\"recent\"%'")
        .bind(now - (keep_days as i64 - 1) * day)
        .execute(&app.state.pool)
        .await
        .unwrap();
    tokengate_control_plane::sweep_once(&app.state, now).await.unwrap();
    let left = log(&app, t).await;
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0]["detail"]["name"], "recent");
}
