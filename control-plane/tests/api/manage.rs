//! `POST /tokens/update` (seed 001): create, update (amendments) and delete, child users,
//! attenuation, and amendments in the sync stream and at the control plane's own guard.

use reqwest::StatusCode;
use serde_json::{json, Value};
use tokengate_rules::token::verify;

use crate::each_db;
use crate::helpers::{issue_limited, now_ms, TestApp};

each_db!(
    manage_create_answers_the_seed_shape,
    manage_update_amends_without_changing_the_string,
    manage_delete_one_and_delete_all,
    manage_child_users_and_attenuation,
    manage_bad_input_writes_nothing,
    security_shortened_token_stays_in_the_snapshot_until_its_signed_expiry,
);

fn tok(v: &Value) -> &str {
    v["token"].as_str().unwrap()
}

fn now_s() -> i64 {
    now_ms() / 1000
}

async fn manage(app: &TestApp, caller: &str, body: Value) -> Value {
    let r = app.post("/api/v1/tokens/update", Some(caller), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{body} -> {}", r.body);
    r.body
}

/// A user of the admin's account; a child of the admin when `child`.
async fn add_user(app: &TestApp, name: &str, child: bool) -> String {
    let (account_id, admin_id): (String, String) =
        sqlx::query_as("SELECT account_id, id FROM users WHERE name = 'admin'").fetch_one(&app.state.pool).await.unwrap();
    let id = tokengate_control_plane::tokens::keys::random_id(12);
    sqlx::query(
        "INSERT INTO users (id, account_id, parent_id, name, password_hash, role, created_at) VALUES ($1, $2, $3, $4, 'x', 'user', 0)",
    )
    .bind(&id)
    .bind(&account_id)
    .bind(child.then_some(admin_id))
    .bind(name)
    .execute(&app.state.pool)
    .await
    .unwrap();
    id
}

fn claims(app: &TestApp, token: &str) -> tokengate_rules::Claims {
    let now = u64::try_from(now_s()).unwrap();
    verify(token, app.state.keys.current().trusted(), &app.state.policy, now).unwrap().1
}

async fn manage_create_answers_the_seed_shape(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let before = now_s();
    let r = manage(
        &app,
        tok(&admin),
        json!({"callMode": "create", "app": "tracker", "at": 0, "dur": 3600, "fl": 0x300, "items": [5, 3, 5], "p": {"k": "v"}}),
    )
    .await;
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["app", "at", "ct", "dur", "fl", "h", "items", "p", "token"]);
    let at = r["at"].as_i64().unwrap();
    assert!((before..=now_s()).contains(&at));
    assert_eq!(r["ct"], r["at"]);
    assert_eq!(
        (&r["app"], &r["dur"], &r["fl"], &r["items"], &r["p"]),
        (&json!("tracker"), &json!(3600), &json!(0x300), &json!([3, 5]), &json!({"k": "v"}))
    );
    let c = claims(&app, tok(&r));
    assert_eq!(c.jti, r["h"].as_str().unwrap());
    assert_eq!((c.nbf, c.exp), (u64::try_from(at).unwrap(), u64::try_from(at + 3600).unwrap()));
    assert_eq!(
        (c.fl, c.items.clone(), c.app.as_deref(), c.p.as_deref()),
        (Some(0x300), Some(vec![3, 5]), Some("tracker"), Some(r#"{"k":"v"}"#))
    );
    assert_eq!(c.par.as_deref(), admin["_id"].as_str());
    // The new token works at once (fl 0x300 reads the catalogue, not token management).
    assert_eq!(app.get("/api/v1/scopes", tok(&r)).await.status, StatusCode::OK);
    app.get("/api/v1/tokens", tok(&r)).await.assert_error(403, "insufficient_flags");
    // Listed with the seed's properties.
    let list = app.get("/api/v1/tokens", tok(&admin)).await.body;
    let listed = list.as_array().unwrap().iter().find(|t| t["_id"] == r["h"]).unwrap();
    assert_eq!(
        (&listed["app"], &listed["fl"], &listed["items"], &listed["at"], &listed["dur"], &listed["lastUsedAt"]),
        (&json!("tracker"), &json!(0x300), &json!([3, 5]), &json!(at), &json!(3600), &Value::Null)
    );
    let own = list.as_array().unwrap().iter().find(|t| t["_id"] == admin["_id"]).unwrap();
    assert_eq!((&own["fl"], &own["dur"]), (&Value::Null, &json!(86_400)));

    // p as escaped text; dur 0 is cut to the caller's end; absent fl and items are the caller's.
    let r = manage(&app, tok(&admin), json!({"callMode": "create", "p": "[{\"a\": 1}]", "dur": 0})).await;
    assert_eq!(
        (&r["p"], &r["fl"], &r["items"], &r["app"], &r["dur"]),
        (&json!([{"a": 1}]), &Value::Null, &Value::Null, &Value::Null, &json!(0))
    );
    assert_eq!(i64::try_from(claims(&app, tok(&r)).exp).unwrap() * 1000, admin["expiresAt"].as_i64().unwrap() / 1000 * 1000);
    // An explicit dur beyond the caller's end is refused; activation later works later.
    let rows = app.token_rows().await;
    let r = app.post("/api/v1/tokens/update", Some(tok(&admin)), &json!({"callMode": "create", "dur": 2 * 86_400})).await;
    r.assert_error(400, "lifetime_exceeds_parent");
    assert_eq!(app.token_rows().await, rows);
    let later = manage(&app, tok(&admin), json!({"callMode": "create", "at": now_s() + 600, "dur": 600})).await;
    app.get("/api/v1/scopes", tok(&later)).await.assert_error(401, "token_not_yet_valid");
}

async fn manage_update_amends_without_changing_the_string(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = manage(&app, tok(&admin), json!({"callMode": "create", "app": "a", "dur": 3600, "fl": 0x200, "items": [7]})).await;
    let h = t["h"].as_str().unwrap().to_owned();
    let signed_exp = claims(&app, tok(&t)).exp;
    app.get("/api/v1/tokens", tok(&t)).await.assert_error(403, "insufficient_flags");
    let v0 = app.sync(0, 0).await.body["version"].as_u64().unwrap();

    let r =
        manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "fl": 0x1200, "items": [8, 7], "app": "b", "p": {"x": 1}})).await;
    assert_eq!(
        (&r["h"], &r["fl"], &r["items"], &r["app"], &r["p"], &r["dur"]),
        (&json!(h), &json!(0x1200), &json!([7, 8]), &json!("b"), &json!({"x": 1}), &json!(3600))
    );
    assert_eq!((&r["at"], &r["ct"]), (&t["at"], &t["ct"]));
    assert!(r.get("token").is_none());
    // Proxies get the whole amendable state, in the delta and in a snapshot.
    let delta = app.sync(v0, 0).await.body;
    assert_eq!(delta["version"].as_u64().unwrap(), v0 + 1);
    let expect = json!([{"jti": h, "nbf": t["at"], "exp": signed_exp, "signed_exp": signed_exp, "app": "b", "fl": 0x1200, "p": "{\"x\":1}", "items": [7, 8]}]);
    assert_eq!(delta["amended"], expect);
    assert_eq!(delta["revoked"], json!([]));
    assert_eq!(app.sync(0, 0).await.body["amended"], expect);
    // The explanation, the listing and the control plane's own guard use the amended rights.
    let e = app.post("/api/v1/explain", Some(tok(&admin)), &json!({"request": "DELETE /api/v1/objects/8", "token": h})).await.body;
    assert_eq!(e["allowed"], true, "{e}");
    let list = app.get("/api/v1/tokens", tok(&admin)).await.body;
    let listed = list.as_array().unwrap().iter().find(|x| x["_id"] == h.as_str()).unwrap();
    assert_eq!((&listed["fl"], &listed["items"], &listed["app"]), (&json!(0x1200), &json!([7, 8]), &json!("b")));
    manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "fl": -1})).await;
    assert_eq!(app.get("/api/v1/tokens", tok(&t)).await.status, StatusCode::OK);

    // A shorter dur brings the end forward; a longer one never passes the signed expiry.
    let r = manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "dur": 60})).await;
    assert_eq!(r["dur"], 60);
    let at = t["at"].as_i64().unwrap();
    let amended = app.sync(0, 0).await.body["amended"][0].clone();
    assert_eq!(amended["exp"], json!(at + 60));
    manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "dur": 999_999})).await;
    assert_eq!(app.sync(0, 0).await.body["amended"][0]["exp"], json!(signed_exp));
    // A later activation is refused by the guard until then.
    manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "at": now_s() + 600, "dur": 60})).await;
    app.get("/api/v1/scopes", tok(&t)).await.assert_error(401, "token_not_yet_valid");
    // An end in the past is refused (delete ends a token).
    let r =
        app.post("/api/v1/tokens/update", Some(tok(&admin)), &json!({"callMode": "update", "h": h, "at": now_s() - 600, "dur": 60})).await;
    r.assert_error(400, "bad_dur");
    // The string never changed: the same token value still names the same row.
    assert_eq!(claims(&app, tok(&t)).jti, h);
}

async fn manage_delete_one_and_delete_all(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let a = manage(&app, tok(&admin), json!({"callMode": "create", "dur": 3600})).await;
    let r = manage(&app, tok(&admin), json!({"callMode": "delete", "h": a["h"]})).await;
    assert_eq!(r["deleted"], 1);
    assert!(r["version"].as_u64().is_some());
    app.get("/api/v1/scopes", tok(&a)).await.assert_error(401, "token_revoked");
    let r = manage(&app, tok(&admin), json!({"callMode": "delete", "h": a["h"]})).await;
    assert_eq!((&r["deleted"], &r["version"]), (&json!(0), &Value::Null));
    let r = app.post("/api/v1/tokens/update", Some(tok(&admin)), &json!({"callMode": "update", "h": a["h"], "fl": 0x100})).await;
    r.assert_error(409, "token_not_live");

    // deleteAll for a child user revokes only that user's tokens (and their children).
    let child = add_user(&app, "driver", true).await;
    let c1 = manage(&app, tok(&admin), json!({"callMode": "create", "userId": child, "dur": 3600})).await;
    let c2 = manage(&app, tok(&admin), json!({"callMode": "create", "userId": child, "dur": 3600})).await;
    let mine = manage(&app, tok(&admin), json!({"callMode": "create", "dur": 3600})).await;
    let r = manage(&app, tok(&admin), json!({"callMode": "delete", "userId": child, "deleteAll": "true"})).await;
    assert_eq!(r["deleted"], 2);
    for t in [&c1, &c2] {
        app.get("/api/v1/scopes", tok(t)).await.assert_error(401, "token_revoked");
    }
    assert_eq!(app.get("/api/v1/scopes", tok(&mine)).await.status, StatusCode::OK);
    let revoked = app.sync(0, 0).await.body["revoked"].as_array().unwrap().len();
    assert_eq!(revoked, 3);
    // A token of the child is not the admin's own: without userId it is not found.
    let c3 = manage(&app, tok(&admin), json!({"callMode": "create", "userId": child, "dur": 3600})).await;
    let r = app.post("/api/v1/tokens/update", Some(tok(&admin)), &json!({"callMode": "delete", "h": c3["h"]})).await;
    r.assert_error(404, "token_not_found");
    // deleteAll: 1 on the caller's own user revokes the caller too, and with it every
    // token it derived (c3 was issued from the admin's token for the child user).
    let r = manage(&app, tok(&admin), json!({"callMode": "delete", "deleteAll": 1})).await;
    assert_eq!(r["deleted"], 3);
    app.get("/api/v1/scopes", tok(&admin)).await.assert_error(401, "token_revoked");
    app.get("/api/v1/scopes", tok(&c3)).await.assert_error(401, "token_revoked");
}

async fn manage_child_users_and_attenuation(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let child = add_user(&app, "driver", true).await;
    let other = add_user(&app, "stranger", false).await;
    let c = manage(&app, tok(&admin), json!({"callMode": "create", "userId": child, "dur": 3600})).await;
    assert_eq!(claims(&app, tok(&c)).sub, child);
    assert_eq!(claims(&app, tok(&c)).unm.as_deref(), Some("driver"));
    for user in [other.as_str(), "0123456789abcdef01234567", "x"] {
        let r = app.post("/api/v1/tokens/update", Some(tok(&admin)), &json!({"callMode": "create", "userId": user})).await;
        r.assert_error(403, "user_not_accessible");
    }
    // A caller with fl -1 and items gives no more items than it holds.
    let limited = issue_limited(&app, None, Some(-1), Some(vec![1, 2]), 3_600_000).await;
    let r = app.post("/api/v1/tokens/update", Some(&limited.token), &json!({"callMode": "create", "items": [3]})).await;
    r.assert_error(403, "rights_exceed_caller");
    assert!(r.body["message"].as_str().unwrap().contains("items"));
    let ok = manage(&app, &limited.token, json!({"callMode": "create", "items": [1], "fl": 0x200, "dur": 600})).await;
    assert_eq!(ok["items"], json!([1]));
    let r = app.post("/api/v1/tokens/update", Some(&limited.token), &json!({"callMode": "update", "h": ok["h"], "items": [1, 9]})).await;
    r.assert_error(403, "rights_exceed_caller");
    // A flag-limited token may not manage tokens at all.
    let viewer = issue_limited(&app, None, Some(0x200), None, 3_600_000).await;
    let r = app.post("/api/v1/tokens/update", Some(&viewer.token), &json!({"callMode": "create"})).await;
    r.assert_error(403, "insufficient_flags");
    // A scoped caller passes its scopes on, and cannot amend a token with wider scopes.
    let scoped = app.admin_token(Some(&["POST /tokens/update", "GET /objects"]), None).await;
    let s = manage(&app, tok(&scoped), json!({"callMode": "create", "dur": 600})).await;
    assert_eq!(claims(&app, tok(&s)).scp, Some(vec!["POST /tokens/update".to_owned(), "GET /objects".to_owned()]));
    let r = app
        .post("/api/v1/tokens/update", Some(tok(&scoped)), &json!({"callMode": "update", "h": c["h"], "userId": child, "fl": 0x100}))
        .await;
    r.assert_error(403, "rights_exceed_caller");
    assert!(r.body["message"].as_str().unwrap().contains("scopes"));
    let narrow = app.admin_token(Some(&["GET /objects"]), None).await;
    app.post("/api/v1/tokens/update", Some(tok(&narrow)), &json!({"callMode": "create"})).await.assert_error(403, "insufficient_scope");
}

async fn manage_bad_input_writes_nothing(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = manage(&app, tok(&admin), json!({"callMode": "create", "dur": 600, "fl": 0x200})).await;
    let rows = app.token_rows().await;
    let changes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes").fetch_one(&app.state.pool).await.unwrap();
    let h = t["h"].clone();
    let cases = [
        (json!({"callMode": "upsert"}), 400, "bad_call_mode"),
        (json!({}), 400, "missing_field"),
        (json!({"callMode": "create", "fl": 1}), 400, "bad_flags"),
        (json!({"callMode": "create", "fl": -2}), 400, "bad_flags"),
        (json!({"callMode": "create", "fl": 0x4000}), 400, "bad_flags"),
        (json!({"callMode": "update", "h": h, "fl": 0x100 | 0x80}), 400, "bad_flags"),
        (json!({"callMode": "create", "fl": "0x100"}), 400, "wrong_type"),
        (json!({"callMode": "create", "items": (0..1001).collect::<Vec<i64>>()}), 400, "bad_items"),
        (json!({"callMode": "create", "items": ["1"]}), 400, "wrong_type"),
        (json!({"callMode": "create", "p": 1}), 400, "bad_params"),
        (json!({"callMode": "create", "p": "not json"}), 400, "bad_params"),
        (json!({"callMode": "create", "p": [1, 2]}), 400, "bad_params"),
        (json!({"callMode": "create", "p": {"big": "x".repeat(5000)}}), 400, "bad_params"),
        (json!({"callMode": "create", "app": "a\nb"}), 400, "bad_app"),
        (json!({"callMode": "create", "at": now_ms()}), 400, "bad_at"),
        (json!({"callMode": "create", "at": -1}), 400, "wrong_type"),
        (json!({"callMode": "create", "dur": 400_000_000}), 400, "bad_dur"),
        (json!({"callMode": "create", "at": now_s() - 7200, "dur": 60}), 400, "bad_dur"),
        (json!({"callMode": "delete", "deleteAll": "yes"}), 400, "bad_delete_all"),
        (json!({"callMode": "update", "fl": 0x100}), 400, "missing_field"),
        (json!({"callMode": "delete"}), 400, "missing_field"),
        (json!({"callMode": "update", "h": "nope"}), 400, "bad_token_id"),
        (json!({"callMode": "update", "h": "0123456789abcdef01234567"}), 404, "token_not_found"),
        (json!({"callMode": "create", "hh": 1}), 400, "unknown_field"),
    ];
    for (body, status, code) in cases {
        let r = app.post("/api/v1/tokens/update", Some(tok(&admin)), &body).await;
        assert_eq!((r.status.as_u16(), r.code()), (status, code), "{body} -> {}", r.body);
        r.assert_error(status, code);
    }
    assert_eq!(app.token_rows().await, rows);
    let after: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM changes").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(after, changes);
}

/// Moves a token's amended times `ms` into the past, as if that much time had gone by
/// since the amendment (the signed expiry, in the JWT, does not move).
async fn age_amendment(app: &TestApp, id: &str, ms: i64) {
    sqlx::query("UPDATE tokens SET not_before = not_before - $2, expires_at = expires_at - $2, amended_at = amended_at - $2 WHERE id = $1")
        .bind(id)
        .bind(ms)
        .execute(&app.state.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE changes SET created_at = created_at - $2 WHERE token_id = $1")
        .bind(id)
        .bind(ms)
        .execute(&app.state.pool)
        .await
        .unwrap();
}

/// Issue 10 defect 1: a token signed for 5 years and shortened to 60 s must still be in
/// every snapshot after the amended end has passed (and the change log was swept), or a
/// proxy that starts then would accept it with its signed rights. The same holds for a
/// revocation of a shortened token.
async fn security_shortened_token_stays_in_the_snapshot_until_its_signed_expiry(app: TestApp) {
    let admin = app.admin_token(None, Some("6 years")).await;
    let long = manage(&app, tok(&admin), json!({"callMode": "create", "dur": 5 * 365 * 86_400})).await;
    let h = long["h"].as_str().unwrap();
    manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "at": 0, "dur": 60})).await;
    let revoked = manage(&app, tok(&admin), json!({"callMode": "create", "dur": 5 * 365 * 86_400})).await;
    let r = revoked["h"].as_str().unwrap();
    manage(&app, tok(&admin), json!({"callMode": "update", "h": r, "at": 0, "dur": 60})).await;
    assert_eq!(app.delete(&format!("/api/v1/tokens/{r}"), tok(&admin)).await.status, StatusCode::NO_CONTENT);
    // Ten minutes later (beyond every grace), after a sweep of the change log.
    for id in [h, r] {
        age_amendment(&app, id, 11 * 60 * 1000).await;
    }
    tokengate_control_plane::sweep_once(&app.state, now_ms()).await.unwrap();
    let snap = app.sync(0, 0).await.body;
    let amended: Vec<&Value> = snap["amended"].as_array().unwrap().iter().filter(|a| a["jti"] == h).collect();
    assert_eq!(amended.len(), 1, "the shortened token's amendment left the snapshot: {snap}");
    assert!(amended[0]["exp"].as_i64().unwrap() < now_s(), "the amendment carries the amended end");
    assert!(amended[0]["signed_exp"].as_i64().unwrap() > now_s() + 4 * 365 * 86_400, "and the signed expiry");
    let rev: Vec<&Value> = snap["revoked"].as_array().unwrap().iter().filter(|e| e["jti"] == r).collect();
    assert_eq!(rev.len(), 1, "the shortened token's revocation left the snapshot: {snap}");
    assert!(rev[0]["exp"].as_i64().unwrap() > now_s() + 4 * 365 * 86_400, "a revocation lives until the signed expiry");
    // And the control plane's own guard refuses the shortened token.
    let r = app.get("/api/v1/tokens", tok(&long)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}
