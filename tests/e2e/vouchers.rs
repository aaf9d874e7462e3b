//! Seed 000 Wi-Fi vouchers through real Envoy (issue 12 §3, §4): a voucher's token passes
//! only from its device, only on a proxy that serves its network and only on the routes
//! marked for vouchers; a device moving to another network loses its old activation at
//! the first proxy; the device header is believed only from the access controller; and
//! the captive portal page in a real Chromium.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{get, request, request_from, run_browser, wait_until, Stack};

/// The template's demo network, which the default Envoy config serves.
const NET_A: &str = "demo-wifi";
const NET_B: &str = "cafe-2";

fn bearer(v: &Value) -> String {
    v["token"].as_str().unwrap_or_else(|| panic!("token in {v}")).to_owned()
}

fn auth(token: &str) -> String {
    format!("Bearer {token}")
}

/// Networks A and B and `n` vouchers of `kind`, made through the front door; returns the codes.
fn setup(stack: &Stack, admin: &str, n: u32, kind: &str) -> Vec<String> {
    let port = stack.front();
    for net in [NET_A, NET_B] {
        let r = request(port, "POST", "/api/v1/networks", &[("Authorization", &auth(admin))], Some(&json!({"id": net, "name": net})));
        assert!(r.status == 201 || r.code() == "network_exists", "{}", r.body);
    }
    let r =
        request(port, "POST", "/api/v1/vouchers", &[("Authorization", &auth(admin))], Some(&json!({"count": n, "kind": kind, "days": 1})));
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["vouchers"].as_array().unwrap().iter().map(|v| v["code"].as_str().unwrap().to_owned()).collect()
}

fn redeem(port: u16, code: &str, device: &str, network: &str) -> Value {
    let r = request(port, "POST", "/api/v1/vouchers/redeem", &[], Some(&json!({"code": code, "device": device, "network": network})));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

#[test]
fn security_voucher_tokens_pass_only_from_their_device_on_their_network_and_routes() {
    let mut stack = Stack::start(1);
    stack.envoy_edits.push(("\"demo-wifi\"".into(), format!("\"{NET_B}\"")));
    let b = stack.extra_envoy("e2e-proxy-b");
    // The stack's own Envoy, when restarted below, serves network A again.
    stack.envoy_edits.clear();
    let (pa, pb) = (stack.front(), b.port);
    let admin = bearer(&stack.login(None, None));
    stack.wait_synced(&admin);
    wait_until("proxy b's first sync", Duration::from_secs(30), || get(pb, "/api/v1/objects/1", Some(&admin)).status != 503);
    let codes = setup(&stack, &admin, 2, "single");

    // The default config binds to the peer address: this client is 127.0.0.1.
    let v = redeem(pa, &codes[0], "127.0.0.1", NET_A);
    let token = bearer(&v);
    let r = get(pa, "/api/v1/wifi/status", Some(&token));
    assert_eq!(r.status, 200, "{}", r.body);
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-tokengate-device"], "127.0.0.1", "{seen}");
    assert_eq!(seen["x-tokengate-network"], NET_A, "{seen}");
    assert_eq!(seen["x-tokengate-token-id"], v["activationId"], "{seen}");

    // Another device (another client address) with the same token.
    let r = request_from("127.0.0.2", pa, "GET", "/api/v1/wifi/status", &[("Authorization", &auth(&token))], None);
    assert_eq!((r.status, r.code().as_str()), (403, "device_mismatch"), "{}", r.body);
    // A proxy that does not serve the network.
    let r = get(pb, "/api/v1/wifi/status", Some(&token));
    assert_eq!((r.status, r.code().as_str()), (403, "wrong_network"), "{}", r.body);
    // Never an API token, nor the reverse.
    let r = get(pa, "/api/v1/objects/1", Some(&token));
    assert_eq!((r.status, r.code().as_str()), (403, "wrong_token_kind"), "{}", r.body);
    let r = get(pa, "/api/v1/tokens", Some(&token));
    assert_eq!(r.status, 403, "{}", r.body);
    let r = get(pa, "/api/v1/wifi/status", Some(&admin));
    assert_eq!((r.status, r.code().as_str()), (403, "wrong_token_kind"), "{}", r.body);

    // The device moves to network B (another voucher): its activation on A is revoked and
    // the first proxy refuses the old token at once; the new one works on B only.
    let moved = Instant::now();
    let v2 = redeem(pb, &codes[1], "127.0.0.1", NET_B);
    assert_eq!(v2["revokedElsewhere"], 1, "{v2}");
    wait_until("proxy a refuses the moved device's old token", Duration::from_secs(5), || {
        get(pa, "/api/v1/wifi/status", Some(&token)).status == 401
    });
    let took = moved.elapsed();
    assert!(took < Duration::from_secs(2), "the revocation took {took:?}");
    assert_eq!(get(pa, "/api/v1/wifi/status", Some(&token)).code(), "token_revoked");
    let token2 = bearer(&v2);
    assert_eq!(get(pb, "/api/v1/wifi/status", Some(&token2)).status, 200);
    assert_eq!(get(pa, "/api/v1/wifi/status", Some(&token2)).code(), "wrong_network");

    // Revoked by hand: refused at B within the propagation bound.
    let r = request(
        pa,
        "POST",
        &format!("/api/v1/vouchers/{}/revoke", v2["voucherId"].as_str().unwrap()),
        &[("Authorization", &auth(&admin))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["proxies"], json!({"live": 2, "applied": 2}), "{}", r.body);
    assert_eq!(get(pb, "/api/v1/wifi/status", Some(&token2)).code(), "token_revoked");
    // The control plane measured that propagation (GET /metrics).
    let metrics = get(stack.cp(), "/metrics", None).body;
    let propagated: u64 =
        metrics.lines().find_map(|l| l.strip_prefix("tokengate_propagation_seconds_count ")?.trim().parse().ok()).unwrap_or(0);
    assert!(propagated >= 1, "no propagation observed:\n{metrics}");
    // A restart of both keeps it refused (the snapshot carries the activation's revocation).
    stack.stop_control_plane();
    stack.start_control_plane();
    stack.stop_envoy();
    stack.start_envoy();
    stack.wait_synced(&admin);
    assert_eq!(get(stack.front(), "/api/v1/wifi/status", Some(&token)).code(), "token_revoked");
    drop(b);
}

/// With an access controller's device header: believed only from its address, stripped
/// from everyone else's requests; the guest's MAC in any spelling.
#[test]
fn security_voucher_device_header_is_believed_only_from_the_controller() {
    let stack = Stack::start_configured(1, |s| {
        s.envoy_edits.push((
            "\"portal\": {".into(),
            "\"device_header\": \"x-client-mac\", \"device_header_trusted_from\": [\"127.0.0.1\"], \"portal\": {".into(),
        ));
    });
    let pa = stack.front();
    let admin = bearer(&stack.login(None, None));
    stack.wait_synced(&admin);
    let codes = setup(&stack, &admin, 1, "multi");
    let token = bearer(&redeem(pa, &codes[0], "AA-BB-CC-00-00-01", NET_A));
    let with_mac = |from: &str, mac: &str| {
        request_from(from, pa, "GET", "/api/v1/wifi/status", &[("Authorization", &auth(&token)), ("x-client-mac", mac)], None)
    };
    let r = with_mac("127.0.0.1", "aa:bb:cc:00:00:01");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["headers"]["x-tokengate-device"], "aa:bb:cc:00:00:01");
    assert_eq!(with_mac("127.0.0.1", "aa:bb:cc:00:00:02").code(), "device_mismatch");
    // From a client that is not the controller the header is not believed...
    assert_eq!(with_mac("127.0.0.2", "aa:bb:cc:00:00:01").code(), "device_mismatch");
    // ...and never reaches the upstream.
    let r = request_from(
        "127.0.0.2",
        pa,
        "GET",
        "/api/v1/objects/1",
        &[("Authorization", &auth(&admin)), ("x-client-mac", "aa:bb:cc:00:00:01")],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["headers"].get("x-client-mac").is_none(), "{}", r.body);
    let r = request_from(
        "127.0.0.1",
        pa,
        "GET",
        "/api/v1/objects/1",
        &[("Authorization", &auth(&admin)), ("x-client-mac", "aa:bb:cc:00:00:01")],
        None,
    );
    assert_eq!(r.json()["headers"]["x-client-mac"], "aa:bb:cc:00:00:01", "{}", r.body);
    // The portal knows the device from the controller and the network from the proxy.
    let r = request_from("127.0.0.1", pa, "GET", "/portal", &[("x-client-mac", "aa:bb:cc:00:00:09"), ("accept-language", "ru")], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("name=\"code\""), "{}", r.body);
    assert!(r.header("content-security-policy").is_some_and(|c| c.contains("default-src 'none'")));
    // Without a device the portal says to join the Wi-Fi first.
    let r = request_from("127.0.0.2", pa, "GET", "/portal", &[("x-client-mac", "aa:bb:cc:00:00:09")], None);
    assert!(r.body.contains("no_device"), "{}", r.body);
}

/// Issue 12 §4: a guest in a real Chromium enters a good code and sees the end time, then
/// a used single-use code from another device and sees the refusal, in both languages.
#[test]
fn voucher_portal_in_a_real_browser() {
    let stack = Stack::start_configured(1, |s| {
        s.envoy_edits.push((
            "\"portal\": {".into(),
            "\"device_header\": \"x-client-mac\", \"device_header_trusted_from\": [\"127.0.0.1\"], \"portal\": {".into(),
        ));
    });
    let admin = bearer(&stack.login(None, None));
    stack.wait_synced(&admin);
    let codes = setup(&stack, &admin, 1, "single");
    let text = run_browser(
        "portal.mjs",
        "browser",
        &[("PORTAL_URL", format!("http://127.0.0.1:{}/portal", stack.front())), ("GOOD_CODE", codes[0].clone())],
    );
    eprintln!("{text}");
    // What the browser did is in the database too: one activation, from the first device.
    assert_eq!(stack.db_count("SELECT COUNT(*) FROM voucher_activations WHERE device = 'aa:aa:aa:aa:aa:01'"), 1);
    assert_eq!(stack.db_count("SELECT COUNT(*) FROM voucher_activations"), 1);
}
