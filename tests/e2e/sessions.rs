//! Seed 003 sessions through real Envoy (issue 11 §3, §4): `POST /api/v1/token/login`
//! through the front door, the session as the Bearer at the gate, its identity headers,
//! logout and the token's revocation, and idle death across two proxies.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{get, request, wait_until, Stack, ADMIN_USER};

const IDLE_SECS: u64 = 4;
const GRACE_MS: u64 = 1500;
const SWEEP_MS: u64 = 200;
const REPORT_MS: u64 = 300;

/// The stack with a short idle limit: sessions die after `IDLE_SECS` without use; the
/// proxies report session use every `REPORT_MS`.
fn short_idle_stack() -> Stack {
    let mut stack = Stack::start(1);
    stack.cp_env.push(("TOKENGATE_SESSION_IDLE_SECS", IDLE_SECS.to_string()));
    stack.cp_env.push(("TOKENGATE_SESSION_GRACE_MS", GRACE_MS.to_string()));
    stack.cp_env.push(("TOKENGATE_SESSION_SWEEP_MS", SWEEP_MS.to_string()));
    stack.envoy_edits.push(("\"session_report_ms\": 5000".into(), format!("\"session_report_ms\": {REPORT_MS}")));
    stack.stop_envoy();
    stack.stop_control_plane();
    stack.start_control_plane();
    stack.start_envoy();
    stack
}

fn bearer(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_else(|| panic!("{field} in {v}")).to_owned()
}

fn token_login(port: u16, body: &Value) -> Value {
    let r = request(port, "POST", "/api/v1/token/login", &[], Some(body));
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn ended_sessions(stack: &Stack) -> i64 {
    stack.db_count("SELECT COUNT(*) FROM sessions WHERE ended_at IS NOT NULL")
}

/// Issue 11 §4: a session used alternately through two proxies at intervals just under
/// the idle limit stays alive, a control-plane restart in between changes nothing, and
/// once left idle it is refused by both proxies within the stated bound (idle limit +
/// grace + sweep + propagation); a restart afterwards does not bring it back.
#[test]
fn security_sessions_die_idle_at_every_proxy_and_live_while_used_through_any() {
    let mut stack = short_idle_stack();
    let b = stack.extra_envoy("e2e-proxy-b");
    let (pa, pb) = (stack.front(), b.port);
    let token = bearer(&stack.login(None, None), "token");
    stack.wait_synced(&token);
    wait_until("proxy b's first sync", Duration::from_secs(30), || get(pb, "/api/v1/objects/1", Some(&token)).status != 503);

    let s = token_login(pa, &json!({"token": token}));
    assert_eq!(s["proxies"], json!({"live": 2, "applied": 2}), "the login waits until both proxies admit it: {s}");
    let eid = bearer(&s, "eid");
    // Usable at once through both.
    for port in [pa, pb] {
        let r = get(port, "/api/v1/objects/1", Some(&eid));
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["headers"]["x-tokengate-session"], s["_id"], "{}", r.body);
    }

    // Used alternately every 80% of the idle limit, with a restart of the control plane
    // between the second and the third use.
    let every = Duration::from_millis(IDLE_SECS * 800);
    let mut last = Instant::now();
    for (i, port) in [pa, pb, pa, pb, pa].into_iter().enumerate() {
        if i == 2 {
            stack.stop_control_plane();
            stack.start_control_plane();
        }
        std::thread::sleep(every.saturating_sub(last.elapsed()));
        let r = get(port, "/api/v1/objects/1", Some(&eid));
        assert_eq!(r.status, 200, "use {i} after {:?}: {}", last.elapsed(), r.body);
        last = Instant::now();
    }
    assert_eq!(ended_sessions(&stack), 0);

    // Left idle. Polling the gate would be use, so watch the control plane end it, then
    // the proxies refuse it (a refused request is no use).
    let bound = Duration::from_millis(IDLE_SECS * 1000 + GRACE_MS + SWEEP_MS + 2000);
    wait_until("the control plane ends the idle session", bound, || ended_sessions(&stack) == 1);
    let ended_after = last.elapsed();
    assert!(ended_after >= Duration::from_secs(IDLE_SECS), "ended {ended_after:?} after its last use, before the idle limit");
    for port in [pa, pb] {
        wait_until("the proxy refuses the idle session", Duration::from_secs(2), || {
            let r = get(port, "/api/v1/objects/1", Some(&eid));
            r.status == 401 && r.code() == "session_ended"
        });
    }
    let refused_after = last.elapsed();
    assert!(refused_after <= bound, "refused {refused_after:?} after its last use");
    eprintln!(
        "idle death: idle limit {IDLE_SECS} s, grace {GRACE_MS} ms, sweep {SWEEP_MS} ms, reports {REPORT_MS} ms: \
         ended by the control plane {} ms and refused by both proxies {} ms after the last use (margin {} ms)",
        ended_after.as_millis(),
        refused_after.as_millis(),
        refused_after.as_millis().saturating_sub(u128::from(IDLE_SECS) * 1000)
    );
    let reason = stack.db_count("SELECT COUNT(*) FROM sessions WHERE end_reason = 'idle'");
    assert_eq!(reason, 1);

    // A restart of the control plane does not bring it back, nor does a new proxy.
    stack.stop_control_plane();
    stack.start_control_plane();
    let c = stack.extra_envoy("e2e-proxy-c");
    wait_until("proxy c's first sync", Duration::from_secs(30), || get(c.port, "/api/v1/objects/1", Some(&token)).status != 503);
    for port in [pa, pb, c.port] {
        let r = get(port, "/api/v1/objects/1", Some(&eid));
        assert_eq!((r.status, r.code().as_str()), (401, "session_ended"), "{}", r.body);
    }
    // The token itself lives on and makes a new session.
    let again = token_login(pb, &json!({"token": token}));
    assert_eq!(get(pa, "/api/v1/objects/1", Some(&bearer(&again, "eid"))).status, 200);
}

/// Issue 11 §3: `operateAs` names both users to the upstream; logout with the session
/// itself and the revocation of its token are refused at the gate.
#[test]
fn security_session_identity_logout_and_token_revocation_at_the_gate() {
    let stack = Stack::start(1);
    let port = stack.front();
    let admin = stack.login(None, None);
    let token = bearer(&admin, "token");
    stack.wait_synced(&token);
    let auth = format!("Bearer {token}");
    let r = request(
        port,
        "POST",
        "/api/v1/users",
        &[("Authorization", &auth)],
        Some(&json!({"name": "driver-7", "password": "driver-7-password"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // Acting as the driver: the upstream learns both names.
    let s = token_login(port, &json!({"token": token, "operateAs": "driver-7", "fl": 0x7}));
    assert_eq!((&s["au"], &s["operator"]), (&json!("driver-7"), &json!(ADMIN_USER)));
    let eid = bearer(&s, "eid");
    let r = get(port, "/api/v1/objects/3", Some(&eid));
    assert_eq!(r.status, 200, "{}", r.body);
    let headers = &r.json()["headers"];
    assert_eq!((&headers["x-tokengate-user"], &headers["x-tokengate-operator"]), (&json!("driver-7"), &json!(ADMIN_USER)), "{headers}");
    // A forged operator header is replaced, not passed on.
    let forged =
        request(port, "GET", "/api/v1/objects/3", &[("Authorization", &format!("Bearer {eid}")), ("x-tokengate-operator", "root")], None);
    assert_eq!(forged.json()["headers"]["x-tokengate-operator"], ADMIN_USER);

    // Logout through the front door with the session itself.
    let id = s["_id"].as_str().expect("_id");
    let r = request(port, "DELETE", &format!("/api/v1/sessions/{id}"), &[("Authorization", &format!("Bearer {eid}"))], None);
    assert_eq!(r.status, 204, "{}", r.body);
    wait_until("the gate refuses the ended session", Duration::from_secs(5), || {
        get(port, "/api/v1/objects/3", Some(&eid)).code() == "session_ended"
    });

    // Revoking the token ends its sessions at the gate.
    let s = token_login(port, &json!({"token": token}));
    let eid = bearer(&s, "eid");
    assert_eq!(get(port, "/api/v1/objects/3", Some(&eid)).status, 200);
    let listed = get(port, "/api/v1/sessions", Some(&token));
    assert_eq!((listed.status, listed.json().as_array().map(Vec::len)), (200, Some(1)), "{}", listed.body);
    let r = request(port, "DELETE", &format!("/api/v1/tokens/{}?wait=5000", bearer(&admin, "_id")), &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(port, "/api/v1/objects/3", Some(&eid));
    assert_eq!((r.status, r.code().as_str()), (401, "session_ended"), "{}", r.body);
    // Bad input at the front door.
    let r = request(port, "POST", "/api/v1/token/login", &[], Some(&json!({"token": token, "fl": 64})));
    assert_eq!((r.status, r.code().as_str()), (400, "bad_response_flags"), "{}", r.body);
    let r = request(port, "POST", "/api/v1/token/login", &[], Some(&json!({"token": token})));
    assert_eq!((r.status, r.code().as_str()), (401, "wrong_credentials"), "a revoked token: {}", r.body);
}
