//! `POST /auth`: shape, lifetimes, wrong credentials, throttling, and tokens that
//! verify against the JWKS.

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokengate_rules::token::{verify, VerifyingKey};
use tokengate_rules::{KeySet, TokenKind, VerifyPolicy};

use crate::each_db;
use crate::helpers::{now_ms, TestApp, ADMIN, ADMIN_PASSWORD};

each_db!(
    auth_answers_the_seed_shape_in_ms,
    auth_default_lifetime_is_one_day,
    auth_accepts_every_expires_in_form,
    auth_wrong_password_and_unknown_user_get_the_same_answer,
    auth_empty_credentials,
    security_credentials_throttle_locks_after_repeated_failures,
    jwks_verifies_an_issued_token,
);

fn is_token_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

async fn auth_answers_the_seed_shape_in_ms(app: TestApp) {
    let before = now_ms();
    let r = app
        .auth(&json!({"username": ADMIN, "password": ADMIN_PASSWORD, "name": "ci", "scopes": ["GET /api/v1/objects", "GET /objects/:id"]}))
        .await;
    let after = now_ms();
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b = r.body.as_object().unwrap();
    let mut keys: Vec<&str> = b.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["_id", "expiresAt", "issuedAt", "name", "scopes", "token", "user"]);
    assert!(is_token_id(b["_id"].as_str().unwrap()));
    let issued = b["issuedAt"].as_i64().unwrap();
    assert!((before..=after).contains(&issued), "issuedAt {issued} is not ms now");
    assert_eq!(b["user"], json!({"name": ADMIN}));
    assert_eq!(b["name"], "ci");
    // Canonical, prefix-relative.
    assert_eq!(b["scopes"], json!(["GET /objects", "GET /objects/:id"]));
    assert_eq!(b["token"].as_str().unwrap().split('.').count(), 3);

    let r = app.auth(&json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await;
    assert_eq!(r.body["name"], serde_json::Value::Null);
    assert_eq!(r.body["scopes"], serde_json::Value::Null);
}

async fn auth_default_lifetime_is_one_day(app: TestApp) {
    let t = app.admin_token(None, None).await;
    assert_eq!(t["expiresAt"].as_i64().unwrap() - t["issuedAt"].as_i64().unwrap(), 86_400_000);
}

async fn auth_accepts_every_expires_in_form(app: TestApp) {
    for (form, secs) in [
        ("30 seconds", 30),
        ("1 second", 1),
        ("30 minutes", 1800),
        ("1 minute", 60),
        ("12 hours", 43_200),
        ("1 hour", 3600),
        ("8 days", 8 * 86_400),
        ("1 day", 86_400),
        ("2 weeks", 14 * 86_400),
        ("1 week", 7 * 86_400),
        ("5 years", 5 * 365 * 86_400),
        ("1 year", 365 * 86_400),
    ] {
        let t = app.admin_token(None, Some(form)).await;
        assert_eq!(t["expiresAt"].as_i64().unwrap() - t["issuedAt"].as_i64().unwrap(), secs * 1000, "{form}");
    }
    let rows = app.token_rows().await;
    for bad in ["3 fortnights", "30", "thirty minutes", "0 days", "1.5 days", "30 Minutes", "20 years"] {
        let r = app.auth(&json!({"username": ADMIN, "password": ADMIN_PASSWORD, "expiresIn": bad})).await;
        r.assert_error(400, "bad_expires_in");
        let msg = r.body["message"].as_str().unwrap();
        assert!(msg.contains("second(s)") || msg.contains("longest"), "{bad}: {msg}");
    }
    let r = app.auth(&json!({"username": ADMIN, "password": ADMIN_PASSWORD, "expiresIn": "3 fortnights"})).await;
    let msg = r.body["message"].as_str().unwrap();
    for unit in ["second(s)", "minute(s)", "hour(s)", "day(s)", "week(s)", "year(s)"] {
        assert!(msg.contains(unit), "{msg}");
    }
    assert_eq!(app.token_rows().await, rows);
}

async fn auth_wrong_password_and_unknown_user_get_the_same_answer(app: TestApp) {
    let wrong = app.auth(&json!({"username": ADMIN, "password": "not it"})).await;
    let unknown = app.auth(&json!({"username": "nobody", "password": "not it"})).await;
    wrong.assert_error(401, "wrong_credentials");
    assert_eq!(wrong.body, unknown.body);
    assert_eq!(wrong.status, unknown.status);
    assert_eq!(wrong.header("www-authenticate"), unknown.header("www-authenticate"));
    assert!(!wrong.body.to_string().contains("not it"));
    assert_eq!(app.token_rows().await, 0);
}

async fn auth_empty_credentials(app: TestApp) {
    app.auth(&json!({"username": "", "password": "x"})).await.assert_error(400, "empty_credentials");
    app.auth(&json!({"username": ADMIN, "password": ""})).await.assert_error(400, "empty_credentials");
}

async fn security_credentials_throttle_locks_after_repeated_failures(app: TestApp) {
    for _ in 0..2 {
        app.auth(&json!({"username": ADMIN, "password": "guess"})).await.assert_error(401, "wrong_credentials");
    }
    // Waiting now: even the right password, and the answer says how long (the policy and
    // the rest of its tests: throttle.rs).
    let r = app.auth(&json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await;
    r.assert_error(429, "too_many_attempts");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Unknown names are throttled the same way, so the refusal reveals nothing.
    for _ in 0..2 {
        app.auth(&json!({"username": "ghost", "password": "guess"})).await.assert_error(401, "wrong_credentials");
    }
    app.auth(&json!({"username": "ghost", "password": "guess"})).await.assert_error(429, "too_many_attempts");
}

async fn jwks_verifies_an_issued_token(app: TestApp) {
    let t = app.admin_token(Some(&["GET /objects"]), None).await;
    let r = app.call(Method::GET, "/.well-known/jwks.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    let jwks = r.body["keys"].as_array().unwrap();
    assert_eq!(jwks.len(), 1);
    let mut keys = KeySet::new();
    for k in jwks {
        assert_eq!(k["kty"], "OKP");
        assert_eq!(k["crv"], "Ed25519");
        assert_eq!(k["alg"], "EdDSA");
        assert_eq!(k["use"], "sig");
        let x = k["x"].as_str().unwrap();
        assert_eq!(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(x).unwrap().len(), 32);
        keys.insert(VerifyingKey::from_x(k["kid"].as_str().unwrap(), x).unwrap());
    }
    let policy = VerifyPolicy::new("tokengate", &["tokengate"], &[TokenKind::Api]);
    let now = u64::try_from(now_ms()).unwrap() / 1000;
    let (kind, claims) = verify(t["token"].as_str().unwrap(), &keys, &policy, now).unwrap();
    assert_eq!(kind, TokenKind::Api);
    assert_eq!(claims.jti, t["_id"].as_str().unwrap());
    assert_eq!(claims.unm.as_deref(), Some(ADMIN));
    assert_eq!(claims.scp, Some(vec!["GET /objects".to_owned()]));
    assert_eq!(claims.exp * 1000, u64::try_from(t["expiresAt"].as_i64().unwrap()).unwrap() / 1000 * 1000);
    assert_eq!(claims.par, None);
}
