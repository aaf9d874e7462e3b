//! Seed 002 through the front door (issue 11 §2): `POST /api/v1/login` answers through
//! Envoy, its `token` passes the gate where API tokens go, its `tokenForHttpServer` only
//! on the route marked `http_token`, a role switch works with a Bearer, and revoking the
//! login token ends its HTTP-server token at the gate.

use serde_json::json;

use crate::harness::{get, request, Stack, ADMIN_PASSWORD, ADMIN_USER};

#[test]
fn security_login_tokens_pass_the_gate_each_only_where_its_kind_belongs() {
    let stack = Stack::start(1);
    let port = stack.front();
    let body = json!({"method": "auth", "requestId": "1", "type": "secured", "username": ADMIN_USER, "credentials": ADMIN_PASSWORD});
    let r = request(port, "POST", "/api/v1/login", &[], Some(&body));
    assert_eq!(r.status, 200, "{}", r.body);
    let login = r.json();
    assert_eq!((&login["resultCode"], &login["previleges"]), (&json!(0), &json!(2)), "{login}");
    let token = login["token"].as_str().expect("token").to_owned();
    let http = login["tokenForHttpServer"].as_str().expect("tokenForHttpServer").to_owned();
    stack.wait_synced(&token);

    assert_eq!(get(port, "/api/v1/objects/1", Some(&token)).status, 200);
    let r = get(port, "/api/v1/files/report.pdf", Some(&http));
    assert_eq!(r.status, 200, "the HTTP-server token on its route: {}", r.body);
    assert_eq!(r.json()["path"], "/api/v1/files/report.pdf", "reached the upstream: {}", r.body);
    let r = get(port, "/api/v1/files/report.pdf", Some(&token));
    assert_eq!((r.status, r.code().as_str()), (403, "wrong_token_kind"), "an API token on the download route: {}", r.body);
    for path in ["/api/v1/objects/1", "/api/v1/users", "/api/v1/geofences"] {
        let r = get(port, path, Some(&http));
        assert_eq!((r.status, r.code().as_str()), (403, "wrong_token_kind"), "{path}: {}", r.body);
    }

    // The role switch goes through the front door with the admin's Bearer.
    let auth = format!("Bearer {token}");
    let r = request(port, "POST", "/api/v1/login", &[("Authorization", &auth)], Some(&json!({"role": "user"})));
    assert_eq!((r.status, &r.json()["previleges"]), (200, &json!(1)), "{}", r.body);
    // Users and the account are the control plane's, gated.
    let r = get(port, "/api/v1/account", Some(&token));
    assert_eq!((r.status, &r.json()["plan"]), (200, &json!("pro")), "{}", r.body);
    assert_eq!(get(port, "/api/v1/users", Some(&token)).json()[0]["nm"], ADMIN_USER);

    // Revoking the login token ends its HTTP-server token at the gate.
    let id = login["_id"].as_str().expect("_id");
    let r = request(port, "DELETE", &format!("/api/v1/tokens/{id}?wait=5000"), &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get(port, "/api/v1/files/report.pdf", Some(&http));
    assert_eq!((r.status, r.code().as_str()), (401, "token_revoked"), "{}", r.body);
}
