//! The gate in real Envoy, against the real control plane.

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use crate::harness::*;

fn assert_invalid_token(r: &Response, code: &str, token: &str, what: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.body);
    let challenge = r.header("www-authenticate").unwrap_or_else(|| panic!("{what}: no WWW-Authenticate"));
    assert!(challenge.starts_with("Bearer realm=\"tokengate\"") && challenge.contains("error=\"invalid_token\""), "{what}: {challenge}");
    let body = r.json();
    assert_eq!(body["error"], "invalid_token", "{what}");
    if !code.is_empty() {
        assert_eq!(body["code"], code, "{what}");
    }
    assert!(!r.body.contains(token), "{what}: the body echoes the token");
}

fn claims_now(kid_claims: &Value, f: impl FnOnce(&mut Value)) -> Value {
    let mut c = kid_claims.clone();
    f(&mut c);
    c
}

/// SECURITY.md "Tokens" end to end: every forgery is a 401 `invalid_token` at the proxy,
/// scope mismatches are 403, and allowed calls reach the upstream with identity headers
/// that no client can forge.
#[test]
fn security_tokens_gate_end_to_end() {
    let stack = Stack::start(2);
    let port = stack.front();
    let login = stack.login(Some(&["GET /objects", "GET /objects/:id"]), Some("1 hour"));
    let token = login["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&token);

    // No token: 401 with a bare challenge.
    let r = get(port, "/api/v1/objects/42", None);
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"tokengate\""));
    assert_eq!(r.json()["code"], "missing_token");

    forged_headers_never_reach_the_upstream(port, &token, &login);

    // Scope mismatch: 403 insufficient_scope.
    for (method, target) in [("DELETE", "/api/v1/objects/42"), ("GET", "/api/v1/objects/42/packets"), ("GET", "/api/v1/geofences")] {
        let r = request(port, method, target, &[("Authorization", &format!("Bearer {token}"))], None);
        assert_eq!(r.status, 403, "{method} {target}: {}", r.body);
        assert_eq!(r.json()["error"], "insufficient_scope");
        assert!(r.header("www-authenticate").unwrap_or("").contains("error=\"insufficient_scope\""));
    }

    // Exactly one credential.
    two_authorization_headers_are_refused(port, &token);
    let r = get(port, &format!("/api/v1/objects/42?access_token={token}"), Some(&token));
    assert_eq!(r.status, 400, "{}", r.body);

    // Forgeries, each refused with 401 invalid_token.
    let (kid, seed) = stack.signing_key();
    let parts: Vec<&str> = token.split('.').collect();
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("claims");
    let header = json!({"alg": "EdDSA", "typ": "tg-api+jwt", "kid": kid});
    let now = now_secs();

    assert_invalid_token(&get(port, "/api/v1/objects/42", Some("garbage")), "", "garbage", "garbage");
    let other_seed: [u8; 32] = rand::random();
    let other_key = sign_raw(&header, &payload, &other_seed);
    assert_invalid_token(&get(port, "/api/v1/objects/42", Some(&other_key)), "token_bad_signature", &other_key, "other key");
    let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"tg-api+jwt","kid":"x"}"#), parts[1]);
    assert_invalid_token(&get(port, "/api/v1/objects/42", Some(&none)), "", &none, "alg none");
    // HS256 with the public key as the HMAC secret: the classic algorithm switch.
    let jwks = get(stack.cp(), "/.well-known/jwks.json", None).json();
    let x = URL_SAFE_NO_PAD.decode(jwks["keys"][0]["x"].as_str().expect("x")).expect("x b64");
    let mut hs_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    hs_header.typ = Some("tg-api+jwt".into());
    let hs = jsonwebtoken::encode(&hs_header, &payload, &jsonwebtoken::EncodingKey::from_secret(&x)).expect("hs256");
    assert_invalid_token(&get(port, "/api/v1/objects/42", Some(&hs)), "token_bad_algorithm", &hs, "HS256 switch");
    let mut widened = payload.clone();
    widened.as_object_mut().expect("obj").remove("scp");
    let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(serde_json::to_vec(&widened).expect("json")), parts[2]);
    assert_invalid_token(&get(port, "/api/v1/objects/42", Some(&tampered)), "token_bad_signature", &tampered, "tampered payload");
    let expired = sign_raw(
        &header,
        &claims_now(&payload, |c| {
            c["iat"] = json!(now - 7200);
            c["nbf"] = json!(now - 7200);
            c["exp"] = json!(now - 3600);
            c["jti"] = json!("e0e0e0e0e0e0e0e0e0e0e0e0");
        }),
        &seed,
    );
    assert_invalid_token(&get(port, "/api/v1/objects/42", Some(&expired)), "token_expired", &expired, "expired");
    let early = sign_raw(
        &header,
        &claims_now(&payload, |c| {
            c["nbf"] = json!(now + 3600);
            c["exp"] = json!(now + 7200);
            c["jti"] = json!("e1e1e1e1e1e1e1e1e1e1e1e1");
        }),
        &seed,
    );
    assert_invalid_token(&get(port, "/api/v1/objects/42", Some(&early)), "token_not_yet_valid", &early, "not yet valid");
    let other_aud = sign_raw(
        &header,
        &claims_now(&payload, |c| {
            c["aud"] = json!("another-network");
            c["jti"] = json!("e2e2e2e2e2e2e2e2e2e2e2e2");
        }),
        &seed,
    );
    assert_invalid_token(&get(port, "/api/v1/objects/42", Some(&other_aud)), "token_wrong_audience", &other_aud, "audience");
    let crit = sign_raw(&json!({"alg": "EdDSA", "typ": "tg-api+jwt", "kid": kid, "crit": ["exp"]}), &payload, &seed);
    assert_invalid_token(&get(port, "/api/v1/objects/42", Some(&crit)), "token_forbidden_header", &crit, "crit header");
    // Another kind of token (a Wi-Fi voucher's) on an API route: refused by its kind.
    let other_kind = sign_raw(&json!({"alg": "EdDSA", "typ": "tg-voucher+jwt", "kid": kid}), &payload, &seed);
    let r = get(port, "/api/v1/objects/42", Some(&other_kind));
    assert_eq!((r.status, r.code().as_str()), (403, "wrong_token_kind"), "other kind: {}", r.body);
    // A kind the gate does not know at all.
    let unknown_kind = sign_raw(&json!({"alg": "EdDSA", "typ": "tg-other+jwt", "kid": kid}), &payload, &seed);
    assert_invalid_token(&get(port, "/api/v1/objects/42", Some(&unknown_kind)), "token_wrong_type", &unknown_kind, "unknown kind");
    let huge = format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]);
    assert_invalid_token(&get(port, "/api/v1/objects/42", Some(&huge)), "token_too_large", &huge, "oversized");
    // The genuine token, re-signed by us with the real key, still passes: the forgeries
    // above failed for what they changed, not for being ours.
    let genuine = sign_raw(&header, &payload, &seed);
    assert_eq!(get(port, "/api/v1/objects/42", Some(&genuine)).status, 200);
}

/// Revocation reaches every worker of a running proxy without a restart.
#[test]
fn revocation_reaches_the_proxy_within_a_second() {
    let stack = Stack::start(2);
    let port = stack.front();
    let admin = stack.login(None, None);
    let admin_token = admin["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin_token);
    let mut delays = Vec::new();
    for _ in 0..5 {
        let t = stack.login(Some(&["GET /objects/:id"]), Some("10 minutes"));
        let token = t["token"].as_str().expect("token").to_owned();
        let id = t["_id"].as_str().expect("id").to_owned();
        // Warm both workers' caches: fresh connections spread over the workers.
        for _ in 0..6 {
            assert_eq!(get(port, "/api/v1/objects/7", Some(&token)).status, 200);
        }
        let r = request(port, "DELETE", &format!("/api/v1/tokens/{id}"), &[("Authorization", &format!("Bearer {admin_token}"))], None);
        assert_eq!(r.status, 204, "{}", r.body);
        let answered = Instant::now();
        // Refused on every connection (so on every worker) within 1 s.
        let mut refused_in_a_row = 0;
        let mut seen = Vec::new();
        while refused_in_a_row < 6 {
            let r = get(port, "/api/v1/objects/7", Some(&token));
            seen.push(r.status);
            if r.status == 401 {
                assert_eq!(r.code(), "token_revoked");
                refused_in_a_row += 1;
            } else {
                assert_eq!(r.status, 200, "{}", r.body);
                refused_in_a_row = 0;
            }
            assert!(
                answered.elapsed() < Duration::from_secs(1),
                "revocation not enforced within 1 s; answers seen: {seen:?}\n{}",
                stack.stats("tokengate")
            );
        }
        delays.push(answered.elapsed());
    }
    // SPEC §3 metrics: the filter reports allowed, denials by reason, cache and sync state.
    // Workers flush their counters into Envoy's stats once a second.
    let names = [
        "tokengate.allowed",
        "tokengate.denied.token_revoked",
        "tokengate.cache.local_hit",
        "tokengate.sync.version",
        "tokengate.sync.revocations",
        "tokengate.revocations",
    ];
    wait_until("the gate's stats", Duration::from_secs(5), || {
        let stats = stack.stats("tokengate");
        names.iter().all(|n| stats.lines().any(|l| l.contains(n) && !l.ends_with(": 0")))
    });
    eprintln!("revocation: DELETE answered -> 6 consecutive refusals at the proxy: {delays:?}");
}

/// Restarts lose nothing: tokens and revocations survive a control-plane restart, revoked
/// tokens stay refused across an Envoy restart, and a proxy that has never synced fails
/// closed.
#[test]
fn restarts_keep_tokens_and_revocations() {
    let mut stack = Stack::start(2);
    let admin = stack.login(None, None)["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin);
    let kept = stack.login(Some(&["GET /objects/:id"]), None);
    let kept_token = kept["token"].as_str().expect("token").to_owned();
    let revoked = stack.login(Some(&["GET /objects/:id"]), None);
    let revoked_token = revoked["token"].as_str().expect("token").to_owned();
    let r = request(
        stack.front(),
        "DELETE",
        &format!("/api/v1/tokens/{}", revoked["_id"].as_str().expect("id")),
        &[("Authorization", &format!("Bearer {admin}"))],
        None,
    );
    assert_eq!(r.status, 204);
    wait_until("the revocation to reach the proxy", Duration::from_secs(5), || {
        get(stack.front(), "/api/v1/objects/1", Some(&revoked_token)).status == 401
    });

    // Control plane restart.
    stack.stop_control_plane();
    // While it is down the proxy keeps enforcing its last state.
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&kept_token)).status, 200);
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&revoked_token)).status, 401);
    stack.start_control_plane();
    let list = request(stack.cp(), "GET", "/api/v1/tokens", &[("Authorization", &format!("Bearer {admin}"))], None);
    assert_eq!(list.status, 200, "{}", list.body);
    let ids: Vec<String> = list.json().as_array().expect("array").iter().map(|t| t["_id"].as_str().unwrap_or("").to_owned()).collect();
    assert!(ids.contains(&kept["_id"].as_str().expect("id").to_owned()));
    assert!(!ids.contains(&revoked["_id"].as_str().expect("id").to_owned()));
    let r = get(stack.cp(), "/api/v1/scopes", Some(&revoked_token));
    assert_eq!((r.status, r.code().as_str()), (401, "token_revoked"), "control plane forgot the revocation: {}", r.body);

    // Envoy restart: a fresh proxy fails closed until its first sync, then refuses the
    // revoked token and admits the kept one.
    stack.stop_envoy();
    stack.stop_control_plane();
    stack.start_envoy();
    let r = get(stack.front(), "/api/v1/objects/1", Some(&kept_token));
    assert_eq!((r.status, r.code().as_str()), (503, "gate_not_synced"), "{}", r.body);
    let r = get(stack.front(), "/api/v1/objects/1", Some(&revoked_token));
    assert_eq!(r.status, 503, "{}", r.body);
    stack.start_control_plane();
    stack.wait_synced(&kept_token);
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&kept_token)).status, 200);
    let r = get(stack.front(), "/api/v1/objects/1", Some(&revoked_token));
    assert_eq!((r.status, r.code().as_str()), (401, "token_revoked"), "{}", r.body);
}

/// SECURITY.md "Reliability": a panic inside the filter (forced in a test build) ends in
/// 503, never in a pass-through, and the crashed gate keeps denying.
#[test]
fn security_reliability_panic_in_the_filter_denies() {
    let stack = Stack::start_with(1, panic_probe_wasm());
    let token = stack.login(None, None)["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&token);
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&token)).status, 200, "the probe build gates normally");
    let r = get(stack.front(), "/__tokengate/panic", Some(&token));
    assert_eq!(r.status, 503, "a panicking filter must deny: {} {}", r.status, r.body);
    assert!(!r.body.contains("demo-upstream"));
    let after = get(stack.front(), "/api/v1/objects/1", Some(&token));
    assert_ne!(after.status, 200, "after a crash the gate must not pass traffic: {}", after.body);
}

/// Revocations made between hard restarts (SIGKILL) of the control plane are all
/// enforced by every worker: no change is skipped when the sync stream breaks.
#[test]
fn revocations_across_control_plane_crashes_are_all_enforced() {
    let mut stack = Stack::start(2);
    let admin = stack.login(None, None)["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin);
    let auth = format!("Bearer {admin}");
    let mut tokens = Vec::new();
    for i in 0..10 {
        let body = json!({"expiresIn": "1 hour", "name": format!("crash-{i}"), "scopes": ["GET /objects/:id"]});
        let r = request(stack.cp(), "POST", "/api/v1/tokens", &[("Authorization", &auth)], Some(&body));
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        tokens.push((v["_id"].as_str().expect("id").to_owned(), v["token"].as_str().expect("token").to_owned()));
    }
    let (kept, revoked) = tokens.split_at(1);
    for (n, (id, _)) in revoked.iter().enumerate() {
        let r = request(stack.cp(), "DELETE", &format!("/api/v1/tokens/{id}"), &[("Authorization", &auth)], None);
        assert_eq!(r.status, 204, "{}", r.body);
        if n % 3 == 2 {
            // Kill the control plane with a long-poll held, then bring it back.
            stack.stop_control_plane();
            stack.start_control_plane();
        }
    }
    for (id, token) in revoked {
        wait_until(&format!("revocation of {id} at every worker"), Duration::from_secs(15), || {
            (0..4).all(|_| get(stack.front(), "/api/v1/objects/3", Some(token)).status == 401)
        });
    }
    assert_eq!(get(stack.front(), "/api/v1/objects/3", Some(&kept[0].1)).status, 200);
}

/// With the control plane gone the proxy keeps enforcing its last state; past
/// `max_staleness_ms` it fails closed (503 `gate_stale`, default) or, when the operator
/// opted in, stays open while still enforcing what it knows. Stats and logs show it.
#[test]
fn stale_state_fails_closed_or_open_as_configured() {
    for fail_open in [false, true] {
        let mut stack = Stack::start(1);
        stack.max_staleness_ms = Some(2000);
        stack.fail_open = fail_open;
        stack.stop_envoy();
        stack.start_envoy();
        let admin = stack.login(None, None)["token"].as_str().expect("token").to_owned();
        stack.wait_synced(&admin);
        let revoked = stack.login(Some(&["GET /objects/:id"]), None);
        let r = request(
            stack.front(),
            "DELETE",
            &format!("/api/v1/tokens/{}", revoked["_id"].as_str().expect("id")),
            &[("Authorization", &format!("Bearer {admin}"))],
            None,
        );
        assert_eq!(r.status, 204);
        let revoked = revoked["token"].as_str().expect("token").to_owned();
        wait_until("the revocation", Duration::from_secs(5), || get(stack.front(), "/api/v1/objects/1", Some(&revoked)).status == 401);

        stack.stop_control_plane();
        // Still fresh: the last state is enforced.
        assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&admin)).status, 200);
        if fail_open {
            std::thread::sleep(Duration::from_millis(3000));
            assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&admin)).status, 200, "fail open keeps serving");
            let r = get(stack.front(), "/api/v1/objects/1", Some(&revoked));
            assert_eq!((r.status, r.code().as_str()), (401, "token_revoked"), "fail open still enforces known revocations");
        } else {
            wait_until("the gate to fail closed", Duration::from_secs(10), || {
                let r = get(stack.front(), "/api/v1/objects/1", Some(&admin));
                r.status == 503 && r.code() == "gate_stale"
            });
        }
        wait_until("the stale state in the log", Duration::from_secs(5), || stack.envoy_log().contains("sync state is"));
        let stats = stack.stats("tokengate.sync.age_ms");
        let age: u64 = stats.lines().find_map(|l| l.split(": ").nth(1)?.trim().parse().ok()).unwrap_or(0);
        // Sampled on the sync service's 200 ms tick.
        assert!(age > 1500, "sync age not visible in stats: {stats}");
    }
}

/// Seed 001 `token/update` end to end: flags, items and app of a live token change
/// without a new token string, and every proxy applies the amendment within the
/// revocation bound; `deleteAll` revokes every token of the user.
#[test]
fn amendments_reach_the_proxy_without_a_new_token() {
    let stack = Stack::start(2);
    let port = stack.front();
    let admin = stack.login(None, None)["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin);
    let auth = format!("Bearer {admin}");
    let manage = |body: Value| {
        let r = request(port, "POST", "/api/v1/tokens/update", &[("Authorization", &auth)], Some(&body));
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    };
    let created = manage(json!({"callMode": "create", "app": "fleet", "fl": 0x200, "items": [42], "dur": 3600}));
    let h = created["h"].as_str().expect("h").to_owned();
    let token = created["token"].as_str().expect("token value on create").to_owned();

    let r = get(port, "/api/v1/objects/42", Some(&token));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["headers"]["x-tokengate-app"], "fleet");
    assert_eq!(r.json()["headers"]["x-tokengate-flags"], "512");
    let r = get(port, "/api/v1/objects/43", Some(&token));
    assert_eq!((r.status, r.code().as_str()), (403, "item_not_allowed"), "{}", r.body);
    let r = request(port, "DELETE", "/api/v1/objects/42", &[("Authorization", &format!("Bearer {token}"))], None);
    assert_eq!((r.status, r.code().as_str()), (403, "insufficient_flags"), "{}", r.body);

    // Amend: online tracking only. The same string is now refused on GET /objects/:id.
    manage(json!({"callMode": "update", "h": h, "app": "fleet", "fl": 0x100, "items": [42], "dur": 3600}));
    let amended = Instant::now();
    wait_until("the amendment at every worker", Duration::from_secs(1), || {
        (0..4).all(|_| get(port, "/api/v1/objects/42", Some(&token)).code() == "insufficient_flags")
    });
    eprintln!("amendment: answered -> refused at the proxy in {:?}", amended.elapsed());

    // Amend again: view rights back, on item 43 instead of 42.
    manage(json!({"callMode": "update", "h": h, "app": "fleet-2", "fl": 0x200, "items": [43], "dur": 3600}));
    wait_until("the second amendment", Duration::from_secs(1), || {
        get(port, "/api/v1/objects/43", Some(&token)).status == 200 && get(port, "/api/v1/objects/42", Some(&token)).status == 403
    });
    assert_eq!(get(port, "/api/v1/objects/43", Some(&token)).json()["headers"]["x-tokengate-app"], "fleet-2");

    // deleteAll: every token of the user, the admin's own included.
    let r = request(
        port,
        "POST",
        "/api/v1/tokens/update",
        &[("Authorization", &auth)],
        Some(&json!({"callMode": "delete", "deleteAll": true})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("deleteAll at the proxy", Duration::from_secs(1), || {
        get(port, "/api/v1/objects/43", Some(&token)).code() == "token_revoked"
            && get(port, "/api/v1/objects/1", Some(&admin)).code() == "token_revoked"
    });
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap_or_default();
    let v: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("header");
    v["kid"].as_str().unwrap_or_default().to_owned()
}

/// Confirmed propagation: a DELETE can wait until every live proxy has applied the
/// revocation and says how many have. Key rotation: the proxies hold the new public key
/// before any token signed by it exists, so such a token passes on its first request;
/// tokens of the old key keep working.
#[test]
fn confirmed_propagation_and_key_rotation() {
    let stack = Stack::start(2);
    let port = stack.front();
    let admin = stack.login(None, None)["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin);
    let auth = format!("Bearer {admin}");

    let victim = stack.login(Some(&["GET /objects/:id"]), None);
    let victim_token = victim["token"].as_str().expect("token").to_owned();
    assert_eq!(get(port, "/api/v1/objects/9", Some(&victim_token)).status, 200);
    let r = request(
        port,
        "DELETE",
        &format!("/api/v1/tokens/{}?wait=3000", victim["_id"].as_str().expect("id")),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let answer = r.json();
    assert_eq!(answer["proxies"]["live"], 1, "{answer}");
    assert_eq!(answer["proxies"]["applied"], 1, "{answer}");
    // Confirmed means enforced: every worker refuses it from the answer on.
    for _ in 0..4 {
        assert_eq!(get(port, "/api/v1/objects/9", Some(&victim_token)).code(), "token_revoked");
    }
    let proxies = request(port, "GET", "/api/v1/proxies", &[("Authorization", &auth)], None);
    assert_eq!(proxies.status, 200, "{}", proxies.body);
    let list = proxies.json();
    let me = list.as_array().expect("array").iter().find(|p| p["id"] == stack.proxy_id.as_str()).expect("this proxy is listed");
    assert_eq!(me["live"], true);
    assert_eq!(me["lagVersions"], 0, "{me}");

    // Rotation.
    let old_kid = kid_of(&admin);
    let r = request(port, "POST", "/api/v1/keys/rotate", &[("Authorization", &auth)], Some(&json!({})));
    assert_eq!(r.status, 200, "{}", r.body);
    let new_kid = r.json()["kid"].as_str().expect("kid").to_owned();
    assert_ne!(new_kid, old_kid);
    let mut fresh = String::new();
    wait_until("a token signed by the new key", Duration::from_secs(15), || {
        fresh = stack.login(Some(&["GET /objects/:id"]), None)["token"].as_str().unwrap_or_default().to_owned();
        kid_of(&fresh) == new_kid
    });
    let r = get(port, "/api/v1/objects/9", Some(&fresh));
    assert_eq!(r.status, 200, "the proxy must know the new key before a token signed by it exists: {}", r.body);
    assert_eq!(get(port, "/api/v1/objects/9", Some(&admin)).status, 200, "tokens of the old key keep working");
}

/// A snapshot too big for one answer comes in parts; a fresh proxy assembles it before
/// it opens, and a revocation made between the parts is not lost.
#[test]
fn a_paged_snapshot_reaches_a_fresh_proxy_whole() {
    let mut stack = Stack::start(2);
    let admin = stack.login(None, None)["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin);
    let auth = format!("Bearer {admin}");
    let mut revoked = Vec::new();
    for i in 0..5 {
        let body = json!({"expiresIn": "1 hour", "name": format!("paged-{i}"), "scopes": ["GET /objects/:id"]});
        let r = request(stack.cp(), "POST", "/api/v1/tokens", &[("Authorization", &auth)], Some(&body));
        assert_eq!(r.status, 200, "{}", r.body);
        let v = r.json();
        let r =
            request(stack.cp(), "DELETE", &format!("/api/v1/tokens/{}", v["_id"].as_str().expect("id")), &[("Authorization", &auth)], None);
        assert_eq!(r.status, 204);
        revoked.push(v["token"].as_str().expect("token").to_owned());
    }
    // One revocation a JSON part, so four a binary part (`format=bin`, which the proxy
    // asks for): the fresh proxy's snapshot takes two answers.
    stack.stop_envoy();
    stack.stop_control_plane();
    stack.cp_env = vec![("TOKENGATE_SNAPSHOT_PAGE", "1".into())];
    stack.start_control_plane();
    stack.start_envoy();
    stack.wait_synced(&admin);
    for t in &revoked {
        for _ in 0..3 {
            assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(t)).code(), "token_revoked");
        }
    }
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&admin)).status, 200);
    // The restarted control plane answered the fresh proxy with two snapshot parts.
    let metrics = get(stack.cp(), "/metrics", None).body;
    let snapshots: u64 =
        metrics.lines().find_map(|l| l.strip_prefix("tokengate_sync_calls_total{result=\"snapshot\"} ")?.trim().parse().ok()).unwrap_or(0);
    assert!(snapshots >= 2, "expected the snapshot in 2 parts, saw {snapshots} snapshot answers");
}

/// Token use travels from the workers (shared queue) through the sync service's batched
/// report to the control plane, which shows it as `lastUsedAt` in the token list.
#[test]
fn token_use_is_reported_to_the_control_plane() {
    let stack = Stack::start(2);
    let admin = stack.login(None, None)["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin);
    let used = stack.login(Some(&["GET /objects/:id"]), None);
    let id = used["_id"].as_str().expect("id").to_owned();
    let token = used["token"].as_str().expect("token").to_owned();
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    assert_eq!(get(stack.front(), "/api/v1/objects/5", Some(&token)).status, 200);
    // The sync service reports every 5 s.
    wait_until("the use to reach the token list", Duration::from_secs(15), || {
        let list = request(stack.cp(), "GET", "/api/v1/tokens", &[("Authorization", &format!("Bearer {admin}"))], None).json();
        list.as_array()
            .and_then(|l| l.iter().find(|t| t["_id"] == id.as_str()))
            .and_then(|t| t["lastUsedAt"].as_i64())
            .is_some_and(|at| at >= before - 1000)
    });
    let stats = stack.stats("tokengate.usage.reported");
    assert!(stats.lines().any(|l| l.contains("usage.reported") && !l.ends_with(": 0")), "{stats}");
}

/// Allowed: the upstream sees our identity headers, not the forged ones, nor Envoy's
/// original path or a method override.
fn forged_headers_never_reach_the_upstream(port: u16, token: &str, login: &Value) {
    let r = request(
        port,
        "GET",
        "/api/v1/objects/42?full=1",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("X-Tokengate-Subject", "root"),
            ("X-Tokengate-Token-Id", "forged"),
            ("X-Envoy-Original-Path", "/api/v1/tokens"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-Client-Note", "first"),
            ("Accept", "application/json"),
            ("X-Client-Note", "second"),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let echo = r.json();
    assert_eq!(echo["method"], "GET");
    assert_eq!(echo["path"], "/api/v1/objects/42");
    // The client's other headers, repeats in order, and the query arrive as sent.
    assert_eq!(echo["query"], "full=1", "{echo}");
    let h = &echo["headers"];
    assert_eq!(h["x-client-note"], "first, second", "{echo}");
    assert_eq!(h["accept"], "application/json", "{echo}");
    assert_eq!(h["x-tokengate-token-id"], login["_id"], "{echo}");
    assert_ne!(h["x-tokengate-subject"], "root");
    assert_eq!(h["x-tokengate-user"], ADMIN_USER);
    assert_eq!(h["x-tokengate-scope"], "GET /objects/:id");
    assert!(h.get("x-envoy-original-path").is_none(), "{echo}");
    assert!(h.get("x-http-method-override").is_none(), "{echo}");

    // A forged header the token has no value for (no app, no params) is gone too.
    let r = request(
        port,
        "GET",
        "/api/v1/objects/42",
        &[("Authorization", &format!("Bearer {token}")), ("X-Tokengate-App", "forged"), ("x-tokengate-params", "{}")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let h = &r.json()["headers"];
    assert!(h.get("x-tokengate-app").is_none() && h.get("x-tokengate-params").is_none(), "{h}");
}

/// Two `Authorization` headers: 400 `multiple_credentials` (Envoy joins them with ",").
fn two_authorization_headers_are_refused(port: u16, token: &str) {
    let r = request(
        port,
        "GET",
        "/api/v1/objects/42",
        &[("Authorization", &format!("Bearer {token}")), ("Authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!((r.status, r.code().as_str()), (400, "multiple_credentials"), "{}", r.body);
}

/// Issue 14 target 6: with `identity_headers` naming a subset, the upstream sees only
/// those, and a forged header outside the subset is still stripped, never passed on.
#[test]
fn security_identity_headers_subset_and_forged_ones_still_stripped() {
    let stack = Stack::start_configured(1, |s| {
        s.envoy_edits.push((
            "\"portal\": {".into(),
            "\"identity_headers\": [\"x-tokengate-subject\", \"x-tokengate-scope\", \"x-tokengate-network\", \"x-tokengate-device\"], \"portal\": {"
                .into(),
        ));
    });
    let port = stack.front();
    let login = stack.login(Some(&["GET /objects/:id"]), Some("1 hour"));
    let token = login["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&token);
    let r = request(
        port,
        "GET",
        "/api/v1/objects/42",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("X-Tokengate-Subject", "root"),
            ("X-Tokengate-Token-Id", "forged"),
            ("X-Tokengate-User", "forged"),
            ("x-tokengate-flags", "-1"),
            ("X-Tokengate-Whatever", "forged"),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let h = r.json()["headers"].clone();
    let mut identity: Vec<&str> =
        h.as_object().expect("headers").keys().map(String::as_str).filter(|k| k.starts_with("x-tokengate-")).collect();
    identity.sort_unstable();
    assert_eq!(identity, ["x-tokengate-scope", "x-tokengate-subject"], "{h}");
    assert_ne!(h["x-tokengate-subject"], "root", "{h}");
    assert!(!h["x-tokengate-subject"].as_str().unwrap_or("").contains(','), "a forged value beside ours: {h}");
    assert_eq!(h["x-tokengate-scope"], "GET /objects/:id", "{h}");
}
