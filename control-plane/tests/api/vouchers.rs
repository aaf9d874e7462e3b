//! Seed 000 Wi-Fi vouchers (issue 12): networks, generation and its cap, codes kept out
//! of the database, redemption with its rules (single, multi, another network, expiry,
//! revocation), the guessing limits, the sync stream, restarts, and the PDF.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokengate_rules::token::{verify, TokenKind};
use tokengate_rules::VerifyPolicy;

use crate::each_db;
use crate::helpers::{now_ms, Reply, TestApp};

each_db!(
    vouchers_networks_belong_to_the_account_and_refuse_bad_ids,
    vouchers_generation_is_capped_at_200_unused_as_a_whole,
    security_vouchers_codes_are_not_in_the_database,
    vouchers_single_use_binds_one_device,
    vouchers_multi_use_gives_each_device_its_own_activation_and_end,
    security_vouchers_another_network_revokes_the_old_activation_in_the_sync_stream,
    vouchers_revoked_deleted_and_expired_vouchers_are_refused,
    vouchers_redemption_bad_input,
    security_vouchers_guessing_is_limited_per_source_device_and_account,
    vouchers_keys_survive_a_restart_and_other_keys_are_refused,
    vouchers_pdf_holds_every_unused_code_twice_and_no_used_one,
    vouchers_portal_redeems_for_the_device_and_network_the_gate_names,
);

async fn admin(app: &TestApp) -> String {
    app.admin_token(None, None).await["token"].as_str().unwrap().to_owned()
}

async fn network(app: &TestApp, token: &str, id: &str) {
    let r = app.post("/api/v1/networks", Some(token), &json!({"id": id, "name": format!("Café {id}")})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn generate(app: &TestApp, token: &str, body: Value) -> Vec<Value> {
    let r = app.post("/api/v1/vouchers", Some(token), &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{body} -> {}", r.body);
    r.body["vouchers"].as_array().unwrap().clone()
}

fn code(v: &Value) -> &str {
    v["code"].as_str().unwrap()
}

async fn redeem(app: &TestApp, code: &str, device: &str, network: &str) -> Reply {
    app.post("/api/v1/vouchers/redeem", None, &json!({"code": code, "device": device, "network": network})).await
}

/// Redeems from the client `ip` (the app trusts loopback's x-forwarded-for).
async fn redeem_from(app: &TestApp, ip: &str, code: &str, device: &str, network: &str) -> Reply {
    let r = app
        .client
        .post(app.url("/api/v1/vouchers/redeem"))
        .header("x-forwarded-for", ip)
        .json(&json!({"code": code, "device": device, "network": network}))
        .send()
        .await
        .unwrap();
    Reply::from(r).await
}

async fn listed(app: &TestApp, token: &str) -> Value {
    let r = app.get("/api/v1/vouchers", token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

fn voucher_claims(app: &TestApp, token: &str, network: &str) -> tokengate_rules::Claims {
    let policy = VerifyPolicy::new("tokengate", &[network], &[TokenKind::VoucherAccess]);
    let now = u64::try_from(now_ms() / 1000).unwrap();
    let (kind, claims) = verify(token, app.state.keys.current().trusted(), &policy, now).unwrap();
    assert_eq!(kind, TokenKind::VoucherAccess);
    claims
}

/// A valid code that no voucher has (the check digit holds).
fn unknown_code() -> String {
    tokengate_control_plane::vouchers::codes::generate()
}

async fn vouchers_networks_belong_to_the_account_and_refuse_bad_ids(app: TestApp) {
    let t = admin(&app).await;
    network(&app, &t, "cafe-1").await;
    app.post("/api/v1/networks", Some(&t), &json!({"id": "cafe-1", "name": "again"})).await.assert_error(409, "network_exists");
    for bad in [
        json!({"id": "Cafe", "name": "x"}),
        json!({"id": "-x", "name": "x"}),
        json!({"id": "tokengate", "name": "x"}),
        json!({"id": "a", "name": ""}),
        json!({"id": "a".repeat(64), "name": "x"}),
    ] {
        app.post("/api/v1/networks", Some(&t), &bad).await.assert_error(400, "bad_network");
    }
    app.post("/api/v1/networks", Some(&t), &json!({"id": "x", "name": "y", "extra": 1})).await.assert_error(400, "unknown_field");
    let r = app.get("/api/v1/networks", &t).await;
    assert_eq!(r.body["networks"].as_array().unwrap().len(), 1, "{}", r.body);
    assert_eq!(r.body["networks"][0]["name"], "Café cafe-1");
    // Managing networks and vouchers takes an unlimited token.
    let limited = crate::helpers::issue_limited(&app, None, Some(0x200), None, 3_600_000).await.token;
    app.post("/api/v1/networks", Some(&limited), &json!({"id": "cafe-9", "name": "x"})).await.assert_error(403, "insufficient_flags");
    app.get("/api/v1/vouchers", &limited).await.assert_error(403, "insufficient_flags");
    app.delete("/api/v1/networks/nope", &t).await.assert_error(404, "network_not_found");
    // Renaming (PATCH): the name only, checked like on creation, own networks only.
    let patch = reqwest::Method::PATCH;
    let r = app.call(patch.clone(), "/api/v1/networks/cafe-1", Some(&t), Some(&json!({"name": " Café, terrace "}))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "Café, terrace");
    assert_eq!(app.get("/api/v1/networks", &t).await.body["networks"][0]["name"], "Café, terrace");
    app.call(patch.clone(), "/api/v1/networks/cafe-1", Some(&t), Some(&json!({"name": ""}))).await.assert_error(400, "bad_network");
    app.call(patch.clone(), "/api/v1/networks/cafe-1", Some(&t), Some(&json!({"name": "x", "id": "y"})))
        .await
        .assert_error(400, "unknown_field");
    app.call(patch.clone(), "/api/v1/networks/cafe-1", Some(&limited), Some(&json!({"name": "x"})))
        .await
        .assert_error(403, "insufficient_flags");
    app.call(patch.clone(), "/api/v1/networks/nope", Some(&t), Some(&json!({"name": "x"}))).await.assert_error(404, "network_not_found");
    sqlx::query("INSERT INTO accounts (id, name, created_at, plan) VALUES ('other-account-id-0000000', 'other', 0, 'basic')")
        .execute(&app.state.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO networks (id, account_id, name, created_at) VALUES ('theirs', 'other-account-id-0000000', 'x', 0)")
        .execute(&app.state.pool)
        .await
        .unwrap();
    app.call(patch, "/api/v1/networks/theirs", Some(&t), Some(&json!({"name": "mine"}))).await.assert_error(404, "network_not_found");
    let theirs: String = sqlx::query_scalar("SELECT name FROM networks WHERE id = 'theirs'").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(theirs, "x", "another account's network is untouched");
    let r = app.delete("/api/v1/networks/cafe-1", &t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.get("/api/v1/networks", &t).await.body["networks"].as_array().unwrap().len(), 0);
}

async fn unused(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM vouchers").fetch_one(&app.state.pool).await.unwrap()
}

async fn vouchers_generation_is_capped_at_200_unused_as_a_whole(app: TestApp) {
    let t = admin(&app).await;
    for (body, code) in [
        (json!({"count": 0, "kind": "single"}), "bad_count"),
        (json!({"count": 201, "kind": "single"}), "bad_count"),
        (json!({"count": 1, "kind": "double"}), "bad_voucher_kind"),
        (json!({"count": 1, "kind": "single", "days": 0}), "bad_days"),
        (json!({"count": 1, "kind": "single", "days": 31}), "bad_days"),
        (json!({"count": "1", "kind": "single"}), "wrong_type"),
    ] {
        app.post("/api/v1/vouchers", Some(&t), &body).await.assert_error(400, code);
    }
    assert_eq!(unused(&app).await, 0);
    let first = generate(&app, &t, json!({"count": 150, "kind": "single", "days": 3})).await;
    assert_eq!(first.len(), 150);
    for v in &first {
        let c = code(v);
        assert_eq!(c.len(), 12, "{c}");
        assert!(c.bytes().all(|b| b.is_ascii_digit()));
        assert!(tokengate_control_plane::vouchers::codes::parse(c).is_ok());
    }
    // 150 + 60 would pass 200: refused whole, saying how many may still be made.
    let r = app.post("/api/v1/vouchers", Some(&t), &json!({"count": 60, "kind": "multi", "days": null})).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.body);
    assert_eq!(r.body["code"], "too_many_vouchers");
    assert_eq!(r.body["remaining"], 50);
    assert_eq!(r.body["unused"], 150);
    assert_eq!(unused(&app).await, 150, "nothing half-written");
    generate(&app, &t, json!({"count": 50, "kind": "multi"})).await;
    // The 201st.
    let r = app.post("/api/v1/vouchers", Some(&t), &json!({"count": 1, "kind": "single"})).await;
    assert_eq!(r.body["code"], "too_many_vouchers", "{}", r.body);
    assert_eq!(r.body["remaining"], 0);
    // A used single-use voucher no longer counts as unused; a multi-use one always does.
    network(&app, &t, "cafe-1").await;
    assert_eq!(redeem(&app, code(&first[0]), "aa:bb:cc:00:00:01", "cafe-1").await.status, StatusCode::OK);
    generate(&app, &t, json!({"count": 1, "kind": "single"})).await;
    let list = listed(&app, &t).await;
    assert_eq!(list["unused"], 200);
    assert_eq!(list["vouchers"].as_array().unwrap().len(), 201);
}

async fn security_vouchers_codes_are_not_in_the_database(app: TestApp) {
    let t = admin(&app).await;
    let made = generate(&app, &t, json!({"count": 20, "kind": "single", "days": 1})).await;
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT id, code_mac, code_sealed FROM vouchers").fetch_all(&app.state.pool).await.unwrap();
    assert_eq!(rows.len(), 20);
    for v in &made {
        let c = code(v);
        for (id, mac, sealed) in &rows {
            assert!(!id.contains(c) && !mac.contains(c) && !sealed.contains(c), "a code is readable in the database");
        }
    }
    // The keys are files of the data directory, readable by the owner only.
    #[cfg(unix)]
    for file in ["voucher-lookup.key", "voucher-seal.key"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(app.db.data_dir.path().join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

async fn vouchers_single_use_binds_one_device(app: TestApp) {
    let t = admin(&app).await;
    network(&app, &t, "cafe-1").await;
    let v = generate(&app, &t, json!({"count": 1, "kind": "single", "days": 2})).await.remove(0);
    let before = now_ms();
    let r = redeem(&app, code(&v), "AA-BB-CC-DD-EE-01", "cafe-1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["device"], "aa:bb:cc:dd:ee:01");
    assert_eq!(r.body["renewed"], false);
    let ends = r.body["endsAt"].as_i64().unwrap();
    assert!((before + 2 * 86_400_000..=now_ms() + 2 * 86_400_000).contains(&ends), "{}", r.body);
    // The token: bound to the device and the network, a day at most, its jti the activation.
    let claims = voucher_claims(&app, r.body["token"].as_str().unwrap(), "cafe-1");
    assert_eq!(claims.dev.as_deref(), Some("aa:bb:cc:dd:ee:01"));
    assert_eq!(claims.aud, "cafe-1");
    assert_eq!(claims.jti, r.body["activationId"].as_str().unwrap());
    assert!(claims.exp - claims.iat <= 86_400);
    // The same device (spelled another way) gets its activation back.
    let again = redeem(&app, &format!("{} {} {}", &code(&v)[..4], &code(&v)[4..8], &code(&v)[8..]), "aabb.ccdd.ee01", "cafe-1").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["renewed"], true);
    assert_eq!(again.body["activationId"], r.body["activationId"]);
    assert_eq!(again.body["endsAt"], ends);
    // A second device is refused with its own code.
    redeem(&app, code(&v), "aa:bb:cc:dd:ee:02", "cafe-1").await.assert_error(409, "voucher_used");
    // The API token is not a voucher token, nor the reverse.
    app.get("/api/v1/tokens", r.body["token"].as_str().unwrap()).await.assert_error(401, "token_wrong_type");
    let list = listed(&app, &t).await;
    let entry = &list["vouchers"][0];
    assert_eq!(entry["state"], "active", "{entry}");
    assert!(entry["code"].is_null(), "the code of a used voucher is never listed: {entry}");
    assert_eq!(entry["activations"][0]["device"], "aa:bb:cc:dd:ee:01");
    assert_eq!(entry["activations"][0]["endsAt"], ends);
}

async fn vouchers_multi_use_gives_each_device_its_own_activation_and_end(app: TestApp) {
    let t = admin(&app).await;
    network(&app, &t, "cafe-1").await;
    let v = generate(&app, &t, json!({"count": 1, "kind": "multi", "days": 1})).await.remove(0);
    let a = redeem(&app, code(&v), "aa:00:00:00:00:01", "cafe-1").await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let b = redeem(&app, code(&v), "aa:00:00:00:00:02", "cafe-1").await;
    assert_eq!(b.status, StatusCode::OK, "{}", b.body);
    assert_ne!(a.body["activationId"], b.body["activationId"]);
    assert!(b.body["endsAt"].as_i64().unwrap() > a.body["endsAt"].as_i64().unwrap(), "each device has its own end");
    let list = listed(&app, &t).await;
    let entry = &list["vouchers"][0];
    // One unused copy always remains: the code is still listed, with each device's copy.
    assert_eq!(entry["state"], "unused");
    assert_eq!(entry["code"], code(&v));
    let acts = entry["activations"].as_array().unwrap();
    assert_eq!(acts.len(), 2);
    assert_eq!(acts[0]["device"], "aa:00:00:00:00:01");
    assert_eq!(acts[1]["device"], "aa:00:00:00:00:02");
    assert!(acts.iter().all(|x| x["state"] == "active" && x["activatedAt"].is_i64()));
    assert_eq!(list["unused"], 1);
}

async fn security_vouchers_another_network_revokes_the_old_activation_in_the_sync_stream(app: TestApp) {
    let t = admin(&app).await;
    network(&app, &t, "cafe-1").await;
    network(&app, &t, "cafe-2").await;
    let vs = generate(&app, &t, json!({"count": 2, "kind": "multi", "days": null})).await;
    let first = redeem(&app, code(&vs[0]), "aa:00:00:00:00:07", "cafe-1").await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert!(first.body["endsAt"].is_null(), "unlimited");
    let v0 = app.sync(0, 0).await.body["version"].as_u64().unwrap();
    let second = redeem(&app, code(&vs[1]), "aa:00:00:00:00:07", "cafe-2").await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["revokedElsewhere"], 1);
    // The proxies learn it as a revocation of the first activation (its tokens' jti),
    // living only as long as its last token.
    let delta = app.sync(v0, 0).await;
    let revoked = delta.body["revoked"].as_array().unwrap();
    assert_eq!(revoked.len(), 1, "{}", delta.body);
    assert_eq!(revoked[0]["jti"], first.body["activationId"]);
    let exp = revoked[0]["exp"].as_u64().unwrap();
    assert!(exp <= u64::try_from(now_ms() / 1000).unwrap() + 86_400 + 1);
    // A new proxy's snapshot has it too.
    let snap = app.sync(0, 0).await;
    assert!(snap.body["revoked"].as_array().unwrap().iter().any(|r| r["jti"] == first.body["activationId"]), "{}", snap.body);
    let list = listed(&app, &t).await;
    let acts: Vec<&Value> = list["vouchers"].as_array().unwrap().iter().flat_map(|v| v["activations"].as_array().unwrap()).collect();
    assert!(acts.iter().any(|a| a["state"] == "revoked" && a["revokeReason"] == "other_network" && a["network"] == "cafe-1"), "{}", list);
    // A single-use voucher moved to another network by its device is spent there.
    let single = generate(&app, &t, json!({"count": 1, "kind": "single", "days": 5})).await.remove(0);
    let s1 = redeem(&app, code(&single), "aa:00:00:00:00:08", "cafe-1").await;
    assert_eq!(s1.status, StatusCode::OK, "{}", s1.body);
    let s2 = redeem(&app, code(&single), "aa:00:00:00:00:08", "cafe-2").await;
    assert_eq!(s2.status, StatusCode::OK, "{}", s2.body);
    assert_eq!(s2.body["endsAt"], s1.body["endsAt"], "the same end: time runs from the first activation");
    assert_eq!(s2.body["revokedElsewhere"], 1);
}

async fn vouchers_revoked_deleted_and_expired_vouchers_are_refused(app: TestApp) {
    let t = admin(&app).await;
    network(&app, &t, "cafe-1").await;
    let vs = generate(&app, &t, json!({"count": 3, "kind": "single", "days": 1})).await;
    let (a, b, c) = (&vs[0], &vs[1], &vs[2]);
    let used = redeem(&app, code(a), "aa:00:00:00:00:01", "cafe-1").await;
    assert_eq!(used.status, StatusCode::OK);
    let v0 = app.sync(0, 0).await.body["version"].as_u64().unwrap();
    let r = app.call(Method::POST, &format!("/api/v1/vouchers/{}/revoke", a["id"].as_str().unwrap()), Some(&t), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["revokedActivations"], 1);
    let delta = app.sync(v0, 0).await;
    assert_eq!(delta.body["revoked"][0]["jti"], used.body["activationId"], "{}", delta.body);
    redeem_from(&app, "10.9.0.1", code(a), "aa:00:00:00:00:01", "cafe-1").await.assert_error(410, "voucher_revoked");
    // Revoking again is harmless.
    assert_eq!(
        app.call(Method::POST, &format!("/api/v1/vouchers/{}/revoke", a["id"].as_str().unwrap()), Some(&t), None).await.status,
        StatusCode::OK
    );
    // Deleted: gone from the list, its code unknown.
    let r = app.delete(&format!("/api/v1/vouchers/{}", b["id"].as_str().unwrap()), &t).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.delete(&format!("/api/v1/vouchers/{}", b["id"].as_str().unwrap()), &t).await.assert_error(404, "voucher_not_found");
    redeem_from(&app, "10.9.0.2", code(b), "aa:00:00:00:00:02", "cafe-1").await.assert_error(404, "voucher_not_found");
    app.delete("/api/v1/vouchers/nope", &t).await.assert_error(400, "bad_voucher_id");
    // Expired: its time ran out (the row aged by hand).
    assert_eq!(redeem(&app, code(c), "aa:00:00:00:00:03", "cafe-1").await.status, StatusCode::OK);
    sqlx::query("UPDATE voucher_activations SET ends_at = $1 WHERE device = 'aa:00:00:00:00:03'")
        .bind(now_ms() - 1000)
        .execute(&app.state.pool)
        .await
        .unwrap();
    redeem_from(&app, "10.9.0.3", code(c), "aa:00:00:00:00:03", "cafe-1").await.assert_error(410, "voucher_expired");
    let list = listed(&app, &t).await;
    let states: Vec<&str> = list["vouchers"].as_array().unwrap().iter().map(|v| v["state"].as_str().unwrap()).collect();
    assert_eq!(list["vouchers"].as_array().unwrap().len(), 2);
    assert!(states.contains(&"revoked") && states.contains(&"expired"), "{states:?}");
}

async fn vouchers_redemption_bad_input(app: TestApp) {
    let t = admin(&app).await;
    network(&app, &t, "cafe-1").await;
    let v = generate(&app, &t, json!({"count": 1, "kind": "single"})).await.remove(0);
    let good = code(&v).to_owned();
    let mut typo = good.clone().into_bytes();
    typo[5] = if typo[5] == b'9' { b'0' } else { typo[5] + 1 };
    let typo = String::from_utf8(typo).unwrap();
    for bad in ["12345", "1234567890123", "12345678901a", "", typo.as_str()] {
        redeem(&app, bad, "aa:00:00:00:00:01", "cafe-1").await.assert_error(400, "voucher_malformed");
    }
    // Refused before any lookup: no throttle entry, nothing written.
    let throttled: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM throttle_failures").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(throttled, 0);
    redeem(&app, &good, "not a device", "cafe-1").await.assert_error(400, "bad_device");
    redeem(&app, &good, "aa:00:00:00:00:01", "nowhere").await.assert_error(404, "network_not_found");
    let r = app.post("/api/v1/vouchers/redeem", None, &json!({"code": good, "device": "x"})).await;
    r.assert_error(400, "missing_field");
    let activations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM voucher_activations").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(activations, 0);
    // A voucher works only on its own account's networks.
    sqlx::query("INSERT INTO accounts (id, name, created_at, plan) VALUES ('other-account-id-0000000', 'other', 0, 'basic')")
        .execute(&app.state.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO networks (id, account_id, name, created_at) VALUES ('elsewhere', 'other-account-id-0000000', 'x', 0)")
        .execute(&app.state.pool)
        .await
        .unwrap();
    redeem(&app, &good, "aa:00:00:00:00:01", "elsewhere").await.assert_error(404, "voucher_not_found");
}

async fn security_vouchers_guessing_is_limited_per_source_device_and_account(app: TestApp) {
    let t = admin(&app).await;
    network(&app, &t, "cafe-1").await;
    let good = code(&generate(&app, &t, json!({"count": 1, "kind": "multi"})).await[0]).to_owned();
    // One source guessing: locked after five failures, with Retry-After.
    let mut last = None;
    for i in 0..6 {
        let r = redeem_from(&app, "10.1.0.1", &unknown_code(), &format!("aa:00:00:00:01:{i:02}"), "cafe-1").await;
        last = Some(r);
    }
    let r = last.unwrap();
    r.assert_error(429, "too_many_attempts");
    assert!(r.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    // Even the right code from that source waits; another source is not locked.
    redeem_from(&app, "10.1.0.1", &good, "aa:00:00:00:01:99", "cafe-1").await.assert_error(429, "too_many_attempts");
    assert_eq!(redeem_from(&app, "10.1.0.2", &good, "aa:00:00:00:01:98", "cafe-1").await.status, StatusCode::OK);
    // One device guessing from many addresses: locked too.
    for i in 0..6 {
        let r = redeem_from(&app, &format!("10.2.0.{i}"), &unknown_code(), "aa:00:00:00:02:01", "cafe-1").await;
        if i == 5 {
            r.assert_error(429, "too_many_attempts");
        }
    }
    // Many sources and devices: the account's daily budget (123 at up to 200 live codes)
    // stops them all, the right code included, until the window slides.
    let budget = tokengate_control_plane::vouchers::daily_budget(1);
    let mut refused = 0;
    for i in 0..budget + 5 {
        let r = redeem_from(
            &app,
            &format!("10.3.{}.{}", i / 200, i % 200),
            &unknown_code(),
            &format!("bb:00:00:00:{:02x}:{:02x}", i / 256, i % 256),
            "cafe-1",
        )
        .await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        }
    }
    assert!(refused >= 5, "the budget held only {refused} back");
    let r = redeem_from(&app, "10.4.0.1", &good, "cc:00:00:00:00:01", "cafe-1").await;
    r.assert_error(429, "too_many_attempts");
}

async fn vouchers_keys_survive_a_restart_and_other_keys_are_refused(app: TestApp) {
    let t = admin(&app).await;
    network(&app, &t, "cafe-1").await;
    let vs = generate(&app, &t, json!({"count": 2, "kind": "single"})).await;
    let db = app.db.clone();
    let app = app.restart().await;
    // The same keys: codes still redeem, and the list still shows the unused one.
    assert_eq!(redeem(&app, code(&vs[0]), "aa:00:00:00:00:01", "cafe-1").await.status, StatusCode::OK);
    let t = admin(&app).await;
    let list = listed(&app, &t).await;
    assert!(list["vouchers"].as_array().unwrap().iter().any(|v| v["code"] == code(&vs[1])), "{list}");
    // Other key files with this database: the start is refused, saying what to do.
    let other = tempfile::tempdir().unwrap();
    let config = tokengate_control_plane::Config::from_lookup(|k| match k {
        "DATABASE_URL" => Some(db.url.clone()),
        "TOKENGATE_DATA_DIR" => Some(other.path().display().to_string()),
        _ => None,
    })
    .unwrap();
    let err = tokengate_control_plane::start(config).await.err().expect("a start with other voucher keys must fail");
    assert!(err.0.contains("restore"), "{}", err.0);
}

async fn vouchers_pdf_holds_every_unused_code_twice_and_no_used_one(app: TestApp) {
    let t = admin(&app).await;
    network(&app, &t, "cafe-1").await;
    let vs = generate(&app, &t, json!({"count": 12, "kind": "single", "days": 7})).await;
    let multi = generate(&app, &t, json!({"count": 1, "kind": "multi"})).await.remove(0);
    assert_eq!(redeem(&app, code(&vs[0]), "aa:00:00:00:00:01", "cafe-1").await.status, StatusCode::OK);
    assert_eq!(redeem(&app, code(&multi), "aa:00:00:00:00:02", "cafe-1").await.status, StatusCode::OK);
    let r = app.client.get(app.url("/api/v1/vouchers/pdf")).bearer_auth(&t).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    assert!(r.headers()["content-disposition"].to_str().unwrap().starts_with("attachment; filename=\"vouchers-"));
    let bytes = r.bytes().await.unwrap();
    assert!(bytes.starts_with(b"%PDF"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vouchers.pdf");
    std::fs::write(&file, &bytes).unwrap();
    let out = std::process::Command::new("pdftotext")
        .args(["-layout", file.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext is needed (apt-get install poppler-utils)");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let grouped = tokengate_control_plane::vouchers::pdf::grouped;
    assert_eq!(text.matches(&grouped(code(&vs[0]))).count(), 0, "a used code is printed");
    for v in vs[1..].iter().chain(std::iter::once(&multi)) {
        assert_eq!(text.matches(&grouped(code(v))).count(), 2, "{} in\n{text}", code(v));
    }
    // Unlimited tokens cannot be read from a voucher token either.
    app.call(Method::GET, "/api/v1/vouchers/pdf", None, None).await.assert_error(401, "missing_token");
}

/// A form post to the portal as the gate forwards it (the test client is loopback, a
/// trusted proxy): the device and network in the gate's headers.
async fn portal_post(app: &TestApp, device: Option<&str>, code: &str, extra: &[(&str, &str)]) -> (StatusCode, String) {
    let mut req = app.client.post(app.url("/portal")).form(&[("code", code), ("lang", "en")]);
    if let Some(d) = device {
        req = req.header("x-tokengate-device", d).header("x-tokengate-network", "cafe-1");
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.text().await.unwrap())
}

async fn vouchers_portal_redeems_for_the_device_and_network_the_gate_names(app: TestApp) {
    let t = admin(&app).await;
    network(&app, &t, "cafe-1").await;
    let v = generate(&app, &t, json!({"count": 1, "kind": "single", "days": 2})).await.remove(0);
    // Not through a proxy's portal: no device, nothing redeemed.
    let r = app.client.get(app.url("/portal")).header("accept-language", "ru-RU,ru;q=0.9").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    let page = r.text().await.unwrap();
    assert!(page.contains("data-problem=\"no_device\"") && page.contains("lang=\"ru\""), "{page}");
    assert_eq!(portal_post(&app, None, code(&v), &[]).await.0, StatusCode::BAD_REQUEST);
    // A post from another site redeems nothing.
    let (status, _) = portal_post(&app, Some("aa:00:00:00:00:01"), code(&v), &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let activations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM voucher_activations").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(activations, 0);
    // Wrong and malformed codes, in plain words.
    let (status, page) = portal_post(&app, Some("aa:00:00:00:00:01"), &unknown_code(), &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(page.contains("data-problem=\"not_found\""), "{page}");
    let (status, page) = portal_post(&app, Some("aa:00:00:00:00:01"), "1234", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(page.contains("data-problem=\"malformed\""), "{page}");
    // The right code: connected until the voucher's end, for the gate's device.
    let (status, page) = portal_post(&app, Some("AA-00-00-00-00-01"), code(&v), &[]).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("data-state=\"connected\""), "{page}");
    let device: String = sqlx::query_scalar("SELECT device FROM voucher_activations").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(device, "aa:00:00:00:00:01");
    // Another device: used elsewhere.
    let (status, page) = portal_post(&app, Some("aa:00:00:00:00:02"), code(&v), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(page.contains("data-problem=\"used_elsewhere\""), "{page}");
}
