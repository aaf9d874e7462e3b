//! Issue 10: the fail-open paths found in review, each proved through real Envoy.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// Runs SQL statements on the control plane's SQLite database (to age rows: the tests
/// cannot wait out real minutes).
fn exec_sql(stack: &Stack, statements: &[&str]) {
    let url = format!("sqlite://{}", stack.db_path().display());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&url).await.expect("open the control plane's database");
        for s in statements {
            sqlx::query(s).execute(&mut conn).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    });
}

fn manage(stack: &Stack, bearer: &str, body: &Value) -> Value {
    let r = request(stack.front(), "POST", "/api/v1/tokens/update", &[("Authorization", &format!("Bearer {bearer}"))], Some(body));
    assert_eq!(r.status, 200, "{body} -> {}", r.body);
    r.json()
}

/// Defect 1: a token signed for 5 years and shortened to 60 s is refused by an Envoy
/// that starts after the amended end has passed (it learns the token only from a
/// snapshot), not let through with its signed rights.
#[test]
fn security_shortened_token_is_refused_by_an_envoy_started_after_its_amended_end() {
    let mut stack = Stack::start(2);
    let admin = stack.login(None, Some("6 years"))["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin);
    let created = manage(&stack, &admin, &json!({"callMode": "create", "dur": 5 * 365 * 86_400}));
    let (h, token) = (created["h"].as_str().expect("h").to_owned(), created["token"].as_str().expect("token").to_owned());
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&token)).status, 200);
    manage(&stack, &admin, &json!({"callMode": "update", "h": h, "at": 0, "dur": 60}));
    // Ten minutes on: the amended end, the leeway and every grace have passed.
    let ago = 11 * 60 * 1000;
    exec_sql(
        &stack,
        &[
            &format!("UPDATE tokens SET not_before = not_before - {ago}, expires_at = expires_at - {ago}, amended_at = amended_at - {ago} WHERE id = '{h}'"),
            &format!("UPDATE changes SET created_at = created_at - {ago} WHERE token_id = '{h}'"),
        ],
    );
    stack.stop_envoy();
    stack.start_envoy();
    stack.wait_synced(&admin);
    let r = get(stack.front(), "/api/v1/objects/1", Some(&token));
    assert_eq!((r.status, r.code().as_str()), (401, "token_expired"), "{}", r.body);
    // And still after the proxy's own prune interval has had a chance to run.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&token)).status, 401);
}

/// Defect 7: a token also in the query is found under any escape spelling of
/// `access_token`, and the path-rewriting headers some frameworks trust never reach the
/// upstream.
#[test]
fn security_query_token_in_any_spelling_and_rewrite_headers_are_refused_or_stripped() {
    let stack = Stack::start(1);
    let token = stack.login(None, None)["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&token);
    let port = stack.front();
    for name in ["access_token", "access%5ftoken", "access_tok%65n", "%61ccess_token", "ACCESS_TOK%45N"] {
        let r = get(port, &format!("/api/v1/objects/1?{name}={token}"), Some(&token));
        assert_eq!((r.status, r.code().as_str()), (400, "multiple_credentials"), "{name}: {}", r.body);
    }
    let r = request(
        port,
        "GET",
        "/api/v1/objects/1",
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("X-Original-URL", "/api/v1/tokens"),
            ("X-Rewrite-URL", "/api/v1/tokens"),
            ("X-Forwarded-Prefix", "/admin"),
        ],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let h = &r.json()["headers"];
    for name in ["x-original-url", "x-rewrite-url", "x-forwarded-prefix"] {
        assert!(h.get(name).is_none(), "{name} reached the upstream: {h}");
    }
}

/// What the impostor answers to each sync call: the body and the MAC header for the
/// nonce the proxy sent.
type Answer = Box<dyn Fn(&str) -> (Vec<u8>, String) + Send + Sync>;

/// Something that is not the control plane answers on its address: every sync call gets
/// `answer(nonce)`; usage reports get 204. Returns a stop switch.
fn impostor(port: u16, answer: std::sync::Arc<std::sync::Mutex<Answer>>) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::io::{Read as _, Write as _};
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the control plane's port");
    listener.set_nonblocking(true).expect("nonblocking");
    let done = stop.clone();
    std::thread::spawn(move || {
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            };
            conn.set_nonblocking(false).ok();
            conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf).into_owned();
            let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
            let reply = if path.starts_with("/sync/v1/changes") {
                let nonce = path.split("nonce=").nth(1).unwrap_or_default().split('&').next().unwrap_or_default().to_owned();
                let (body, mac) = (answer.lock().expect("answer"))(&nonce);
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-tokengate-sync-mac: {mac}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(&body);
                r
            } else {
                b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n".to_vec()
            };
            let _ = conn.write_all(&reply);
        }
    });
    stop
}

fn stat(stack: &Stack, name: &str) -> u64 {
    let stats = stack.stats(name);
    stats.lines().find_map(|l| l.strip_prefix(&format!("wasmcustom.{name}: ")).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

/// Defect 4: answers on the control plane's address that are forged (a higher version
/// that wipes the revocations, without the MAC key), replayed (a genuine answer recorded
/// for another call) or rolled back (an older version, even with a valid MAC) are refused,
/// counted in `sync.rejected`, and change nothing: the revoked token stays refused, and
/// the real control plane's next answer is taken again.
#[test]
fn security_reliability_forged_replayed_and_rolled_back_sync_answers_are_refused() {
    let mut stack = Stack::start(2);
    let admin = stack.login(None, None)["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin);
    let auth = format!("Bearer {admin}");
    let child = request(stack.cp(), "POST", "/api/v1/tokens", &[("Authorization", &auth)], Some(&json!({"expiresIn": "1 hour"})));
    assert_eq!(child.status, 200, "{}", child.body);
    let (id, revoked) = (child.json()["_id"].as_str().expect("id").to_owned(), child.json()["token"].as_str().expect("token").to_owned());
    let r = request(stack.cp(), "DELETE", &format!("/api/v1/tokens/{id}?wait=5000"), &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200, "{}", r.body);
    wait_until("the revocation at the gate", Duration::from_secs(5), || {
        get(stack.front(), "/api/v1/objects/1", Some(&revoked)).status == 401
    });

    // A genuine answer, recorded for a call the proxy never made.
    let keys = tokengate_rules::sync::ProxyKeys::derive(stack.secret.as_bytes());
    let recorded = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{}/sync/v1/changes?since=0&wait_ms=0&proxy=recorder&nonce=recorded.1", stack.cp()))
        .bearer_auth(keys.bearer())
        .send()
        .expect("record an answer");
    let recorded_mac = recorded.headers()[tokengate_rules::sync::MAC_HEADER].to_str().expect("mac").to_owned();
    let recorded_body = recorded.bytes().expect("body").to_vec();
    let genuine: Value = serde_json::from_slice(&recorded_body).expect("json");
    let version = genuine["version"].as_u64().expect("version");
    assert!(genuine["revoked"].as_array().expect("revoked").iter().any(|r| r["jti"] == id.as_str()));

    stack.stop_control_plane();
    let wipe = json!({"protocol": 1, "version": version + 100, "snapshot": true, "keys": genuine["keys"], "revoked": [], "amended": [], "serverTime": 0});
    let wipe_body = serde_json::to_vec(&wipe).expect("json");
    let older = json!({"protocol": 1, "version": version - 1, "snapshot": true, "keys": genuine["keys"], "revoked": [], "amended": [], "serverTime": 0});
    let older_body = serde_json::to_vec(&older).expect("json");
    let not_the_key = tokengate_rules::sync::ProxyKeys::derive(keys.bearer().as_bytes());
    let modes: Vec<(&str, Answer)> = vec![
        ("forged", Box::new(move |nonce: &str| (wipe_body.clone(), not_the_key.answer_mac(nonce, &wipe_body)))),
        ("replayed", Box::new(move |_: &str| (recorded_body.clone(), recorded_mac.clone()))),
        ("rolled back", Box::new(move |nonce: &str| (older_body.clone(), keys.answer_mac(nonce, &older_body)))),
    ];
    let current: std::sync::Arc<std::sync::Mutex<Answer>> =
        std::sync::Arc::new(std::sync::Mutex::new(Box::new(|_: &str| (Vec::new(), String::new()))));
    let stop = impostor(stack.cp_port, current.clone());
    for (what, answer) in modes {
        let before = stat(&stack, "tokengate.sync.rejected");
        *current.lock().expect("answer") = answer;
        wait_until(&format!("a {what} answer refused and counted"), Duration::from_secs(30), || {
            stat(&stack, "tokengate.sync.rejected") > before
        });
        for _ in 0..4 {
            let r = get(stack.front(), "/api/v1/objects/1", Some(&revoked));
            assert_eq!((r.status, r.code().as_str()), (401, "token_revoked"), "after a {what} answer: {}", r.body);
            assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&admin)).status, 200, "after a {what} answer");
        }
        let version_now = stat(&stack, "tokengate.sync.version");
        assert_eq!(version_now, version, "a {what} answer moved the proxy's version");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    stack.start_control_plane();
    let failures = stat(&stack, "tokengate.sync.failures");
    wait_until("sync again with the real control plane", Duration::from_secs(30), || {
        stack.stats("tokengate.sync.synced_at_ms").lines().any(|l| l.contains("synced_at_ms"))
            && stat(&stack, "tokengate.sync.failures") >= failures
            && get(stack.front(), "/api/v1/objects/1", Some(&admin)).status == 200
    });
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&revoked)).status, 401);
}

/// Makes a CA and a control-plane certificate with scripts/gen-tls.sh.
fn gen_tls(dir: &std::path::Path) {
    let out = std::process::Command::new("sh").arg(workspace().join("scripts/gen-tls.sh")).arg(dir).output().expect("run gen-tls.sh");
    assert!(out.status.success(), "gen-tls.sh: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Defect 4, TLS: with `TG_CP_CA` set, Envoy talks to the control plane over TLS (the
/// sync channel and the API it routes) and checks the certificate against the CA the
/// stack generated; an Envoy that trusts another CA never syncs and stays closed.
#[test]
fn security_the_control_plane_cluster_runs_over_tls_with_the_generated_ca() {
    let certs = tempfile::tempdir().expect("tempdir");
    let tls = certs.path().join("tls");
    gen_tls(&tls);
    let mut stack = Stack::start_tls(2, tls.clone());
    let admin = stack.login(None, None)["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin);
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&admin)).status, 200);
    let auth = format!("Bearer {admin}");
    let child = request(stack.front(), "POST", "/api/v1/tokens", &[("Authorization", &auth)], Some(&json!({"expiresIn": "1 hour"})));
    assert_eq!(child.status, 200, "{}", child.body);
    let (id, token) = (child.json()["_id"].as_str().expect("id").to_owned(), child.json()["token"].as_str().expect("token").to_owned());
    assert_eq!(request(stack.front(), "DELETE", &format!("/api/v1/tokens/{id}"), &[("Authorization", &auth)], None).status, 204);
    wait_until("the revocation over TLS", Duration::from_secs(5), || get(stack.front(), "/api/v1/objects/1", Some(&token)).status == 401);
    // Plain HTTP to the control plane's port gets no answer a proxy could use.
    assert!(try_request(stack.cp(), "GET", "/healthz", &[], None).is_none_or(|r| r.status != 200));

    // Another CA: the control plane's certificate is not trusted, nothing syncs.
    let other = certs.path().join("other");
    gen_tls(&other);
    stack.stop_envoy();
    std::fs::copy(other.join("ca.pem"), tls.join("ca.pem")).expect("swap the CA");
    stack.start_envoy();
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        let r = get(stack.front(), "/api/v1/objects/1", Some(&admin));
        assert_eq!((r.status, r.code().as_str()), (503, "gate_not_synced"), "{}", r.body);
        std::thread::sleep(Duration::from_millis(100));
    }
}
