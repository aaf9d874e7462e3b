//! The admin console (issue 13 §1) in a real Chromium through the real Envoy with the
//! built filter and the real control plane: tests/browser/console.mjs logs in through the
//! front door, issues a scoped token that the gate admits, revokes it and sees it enforced
//! at every proxy and refused by the gate, generates vouchers and downloads their PDF, and
//! sees a wrong password's error and the lockout's retry time. Screenshots of every page
//! at 1280 and 390 px wide go to `target/console-screenshots/`.

use serde_json::json;

use crate::harness::{request, run_browser, Stack, ADMIN_PASSWORD, ADMIN_USER};

#[test]
fn console_in_a_real_browser_through_the_front_door() {
    let stack = Stack::start(1);
    let admin = stack.login(None, None)["token"].as_str().unwrap().to_owned();
    stack.wait_synced(&admin);
    // A live seed-003 session, so the sessions page has one to show.
    let r = request(stack.front(), "POST", "/api/v1/token/login", &[], Some(&json!({"token": admin})));
    assert_eq!(r.status, 200, "{}", r.body);
    // Through the front door the console is routed past the gate to the control plane.
    let r = request(stack.front(), "GET", "/console/login", &[], None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-security-policy").is_some_and(|c| c.contains("default-src 'none'")));

    let text = run_browser(
        "console.mjs",
        "console-screenshots",
        &[
            ("FRONT", format!("http://127.0.0.1:{}", stack.front())),
            ("ADMIN_USER", ADMIN_USER.to_owned()),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        ],
    );
    eprintln!("{text}");
    // What the browser did is in the database: the token it issued is revoked, its
    // vouchers and user exist, and both console logins left a session row (one logged out).
    assert_eq!(stack.db_count("SELECT COUNT(*) FROM tokens WHERE name = 'browser-reader' AND revoked_at IS NOT NULL"), 1);
    assert_eq!(stack.db_count("SELECT COUNT(*) FROM vouchers"), 4);
    assert_eq!(stack.db_count("SELECT COUNT(*) FROM users WHERE name = 'kim'"), 1);
    assert_eq!(
        stack.db_count("SELECT COUNT(*) FROM tokens WHERE name = 'console' AND revoked_at IS NOT NULL"),
        1,
        "logout revoked its token"
    );
}
