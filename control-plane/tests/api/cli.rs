//! The `tokengate` command line (issue 13 §2): the real built binary against the real app,
//! with its own config directory.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use reqwest::StatusCode;
use serde_json::Value;

use crate::each_db;
use crate::helpers::{TestApp, ADMIN, ADMIN_PASSWORD};

each_db!(
    cli_networks_sessions_proxies_keys_explain_and_token_update,
    cli_credentials_flag_over_env_over_file_and_pin_login,
    cli_login_stores_the_token_in_a_private_config_and_manages_tokens,
    cli_vouchers_and_users,
    cli_exit_codes_name_the_api_code_and_never_print_the_token,
    cli_audit_filters_pages_and_follows,
    security_cli_speaks_https_and_trusts_only_the_given_ca,
);

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `tokengate <args>` with `config` as XDG_CONFIG_HOME (and HOME), nothing inherited
/// that could point it elsewhere, and `stdin` on its standard input.
async fn cli(config: &Path, args: &[&str], stdin: &str) -> Run {
    cli_env(config, args, stdin, &[]).await
}

async fn cli_env(config: &Path, args: &[&str], stdin: &str, vars: &[(&str, &str)]) -> Run {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let config = config.to_owned();
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokengate"))
            .args(&args)
            .env_remove("TOKENGATE_TOKEN")
            .env_remove("TOKENGATE_ENDPOINT")
            .env("XDG_CONFIG_HOME", &config)
            .env("HOME", &config)
            .envs(vars)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A command that refuses its arguments exits without reading its input: the pipe
        // is then closed under the write (EPIPE), which is the CLI's right, not a failure.
        if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "writing the CLI's standard input: {e}");
        }
        let out = child.wait_with_output().unwrap();
        Run {
            code: out.status.code().unwrap(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    })
    .await
    .unwrap()
}

/// `tokengate --endpoint <app> <args>`, asserted to exit 0; its stdout.
async fn ok(app: &TestApp, config: &Path, args: &[&str]) -> String {
    let mut all = vec!["--endpoint", app.base.as_str()];
    all.extend_from_slice(args);
    let r = cli(config, &all, "").await;
    assert_eq!(r.code, 0, "{args:?}: {}\n{}", r.stdout, r.stderr);
    r.stdout
}

async fn json(app: &TestApp, config: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = ok(app, config, &all).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

async fn login(app: &TestApp, config: &Path) {
    let r = cli(config, &["--endpoint", &app.base, "login", "--user", ADMIN, "--password-stdin"], &format!("{ADMIN_PASSWORD}\n")).await;
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(!r.stdout.contains("eyJ") && !r.stderr.contains("eyJ"), "login printed the token: {}", r.stdout);
}

fn stored_token(config: &Path) -> String {
    let path = config.join("tokengate").join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    parsed["token"].as_str().unwrap().to_owned()
}

async fn cli_login_stores_the_token_in_a_private_config_and_manages_tokens(app: TestApp) {
    let config = tempfile::tempdir().unwrap();
    login(&app, config.path()).await;
    let path = config.path().join("tokengate").join("config.toml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let token = stored_token(config.path());
    assert_eq!(app.get("/api/v1/tokens", &token).await.status, StatusCode::OK, "the stored token works");

    // token create -> list shows it -> revoke -> the API refuses it.
    let issued = json(&app, config.path(), &["token", "create", "--name", "ci", "--scope", "GET /objects"]).await;
    let id = issued["_id"].as_str().unwrap().to_owned();
    let child = issued["token"].as_str().unwrap().to_owned();
    // Live before the revocation: a valid token without the scope is 403, not 401.
    assert_eq!(app.get("/api/v1/tokens", &child).await.status, StatusCode::FORBIDDEN);
    let listed = json(&app, config.path(), &["token", "list"]).await;
    assert!(listed.as_array().unwrap().iter().any(|t| t["_id"] == id.as_str() && t["name"] == "ci"), "{listed}");
    let table = ok(&app, config.path(), &["token", "list"]).await;
    assert!(table.contains(&id) && table.contains("ci"), "{table}");
    assert!(!table.contains(&token), "the table shows no token value");
    ok(&app, config.path(), &["token", "revoke", &id]).await;
    let r = app.get("/api/v1/tokens", &child).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.body["code"], "token_revoked");

    // logout forgets the token: exit 4.
    ok(&app, config.path(), &["logout"]).await;
    assert!(!std::fs::read_to_string(&path).unwrap().contains(&token));
    let r = cli(config.path(), &["--endpoint", &app.base, "token", "list"], "").await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("tokengate login"), "{}", r.stderr);
}

async fn cli_vouchers_and_users(app: TestApp) {
    let config = tempfile::tempdir().unwrap();
    login(&app, config.path()).await;
    let c = config.path();

    let generated = json(&app, c, &["voucher", "create", "--count", "3", "--kind", "single", "--days", "2"]).await;
    assert_eq!(generated["vouchers"].as_array().unwrap().len(), 3, "{generated}");
    let listed = json(&app, c, &["voucher", "list"]).await;
    assert_eq!(listed["vouchers"].as_array().unwrap().len(), 3, "{listed}");
    let r = cli(c, &["--endpoint", &app.base, "voucher", "pdf", "-o", "-"], "").await;
    assert_eq!(r.code, 2, "the sheet never goes to stdout: {}", r.stderr);
    assert!(r.stdout.is_empty());
    let pdf = c.join("sheet.pdf");
    ok(&app, c, &["voucher", "pdf", "-o", pdf.to_str().unwrap()]).await;
    let bytes = std::fs::read(&pdf).unwrap();
    assert!(bytes.starts_with(b"%PDF"), "not a PDF: {:?}", &bytes[..bytes.len().min(16)]);
    let first = listed["vouchers"][0]["id"].as_str().unwrap().to_owned();
    ok(&app, c, &["voucher", "delete", &first]).await;
    let listed = json(&app, c, &["voucher", "list"]).await;
    assert_eq!(listed["vouchers"].as_array().unwrap().len(), 2, "{listed}");

    let r =
        cli(c, &["--endpoint", &app.base, "--output", "json", "user", "create", "kim", "--password-stdin"], "kim's long password\n").await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let user: Value = serde_json::from_str(&r.stdout).unwrap();
    let uid = user["id"].as_str().unwrap().to_owned();
    assert!(!r.stdout.contains("kim's long password"));
    let users = json(&app, c, &["user", "list"]).await;
    assert!(users.as_array().unwrap().iter().any(|u| u["nm"] == "kim"), "{users}");
    let table = ok(&app, c, &["user", "list"]).await;
    assert!(table.contains("kim") && table.contains(ADMIN), "{table}");
    ok(&app, c, &["user", "delete", &uid]).await;
    let users = json(&app, c, &["user", "list"]).await;
    assert!(!users.as_array().unwrap().iter().any(|u| u["nm"] == "kim"), "{users}");
}

async fn cli_exit_codes_name_the_api_code_and_never_print_the_token(app: TestApp) {
    let config = tempfile::tempdir().unwrap();
    let c = config.path();
    // 4: nothing configured.
    let r = cli(c, &["--endpoint", &app.base, "token", "list"], "").await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    // 4: a wrong password (401 from the API), with its code.
    let r = cli(c, &["--endpoint", &app.base, "login", "--user", ADMIN, "--password-stdin"], "wrong\n").await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("wrong_credentials"), "{}", r.stderr);

    let token = app.admin_token(None, None).await["token"].as_str().unwrap().to_owned();
    // 3: a bad scope, with the API's code; the --token value is never printed.
    let r = cli(c, &["--endpoint", &app.base, "--token", &token, "token", "create", "--scope", "FROB /x"], "").await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    let body = app.post("/api/v1/tokens", Some(&token), &serde_json::json!({"scopes": ["FROB /x"]})).await.body;
    let code = body["code"].as_str().unwrap();
    assert!(r.stderr.contains(code), "{code} not in {}", r.stderr);
    assert!(!r.stderr.contains(&token) && !r.stdout.contains(&token));
    // 3: an unknown id.
    let r = cli(c, &["--endpoint", &app.base, "--token", &token, "user", "delete", "no-such-user"], "").await;
    assert_eq!(r.code, 3, "{}", r.stderr);

    // 4: a revoked token, with the API's code.
    let doomed = app.admin_token(None, None).await;
    assert_eq!(app.delete(&format!("/api/v1/tokens/{}", doomed["_id"].as_str().unwrap()), &token).await.status, StatusCode::NO_CONTENT);
    let r = cli(c, &["--endpoint", &app.base, "--token", doomed["token"].as_str().unwrap(), "token", "list"], "").await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("token_revoked") && r.stderr.contains("tokengate login"), "{}", r.stderr);

    // 5: a closed port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let r = cli(c, &["--endpoint", &format!("http://127.0.0.1:{port}"), "--token", &token, "token", "list"], "").await;
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(!r.stderr.contains(&token));
    // 2: an unknown flag.
    let r = cli(c, &["token", "list", "--frobnicate"], "").await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}

async fn cli_credentials_flag_over_env_over_file_and_pin_login(app: TestApp) {
    let config = tempfile::tempdir().unwrap();
    let c = config.path();
    // The file gives the endpoint and a token.
    let r =
        cli(c, &["--endpoint", &app.base, "login", "--user", ADMIN, "--password-stdin", "--save-endpoint"], &format!("{ADMIN_PASSWORD}\n"))
            .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli(c, &["--output", "json", "token", "list"], "").await;
    assert_eq!(r.code, 0, "the file's endpoint and token: {}", r.stderr);
    let file_token = stored_token(c);

    // The environment beats the file: a revoked token in TOKENGATE_TOKEN is refused.
    let revoked = app.admin_token(None, None).await;
    assert_eq!(
        app.delete(&format!("/api/v1/tokens/{}", revoked["_id"].as_str().unwrap()), &file_token).await.status,
        StatusCode::NO_CONTENT
    );
    let revoked = revoked["token"].as_str().unwrap();
    let r = cli_env(c, &["token", "list"], "", &[("TOKENGATE_TOKEN", revoked)]).await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    // The flag beats the environment.
    let r = cli_env(c, &["--token", &file_token, "token", "list"], "", &[("TOKENGATE_TOKEN", revoked)]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    // TOKENGATE_ENDPOINT beats the file's endpoint; --endpoint beats it.
    let r = cli_env(c, &["token", "list"], "", &[("TOKENGATE_ENDPOINT", "http://127.0.0.1:1")]).await;
    assert_eq!(r.code, 5, "{}", r.stderr);
    let r = cli_env(c, &["--endpoint", &app.base, "token", "list"], "", &[("TOKENGATE_ENDPOINT", "http://127.0.0.1:1")]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    // A user with a PIN logs in with it.
    // The PIN is never an argument (it would stay in the shell history): asked like the
    // password, or the second line of stdin.
    let r = cli(c, &["user", "create", "pat", "--pin", "482913", "--password-stdin"], "pat's long password\n").await;
    assert_eq!(r.code, 2, "a PIN as an argument must be refused: {}", r.stderr);
    let r = cli(c, &["user", "create", "pat", "--pin", "--password-stdin"], "pat's long password\n").await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("empty PIN for the new user"), "{}", r.stderr);
    let r = cli(c, &["--output", "json", "user", "create", "pat", "--pin", "--password-stdin"], "pat's long password\n482913\n").await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("482913"), "{}", r.stdout);
    let pat_id = serde_json::from_str::<Value>(&r.stdout).unwrap()["id"].as_str().unwrap().to_owned();
    let other = tempfile::tempdir().unwrap();
    let r = cli(other.path(), &["--endpoint", &app.base, "login", "--user", "pat", "--pin", "--password-stdin"], "482913\n").await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pat = stored_token(other.path());
    let me = app.get("/api/v1/tokens", &pat).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    let r = cli(other.path(), &["--endpoint", &app.base, "login", "--user", "pat", "--pin", "--password-stdin"], "000000\n").await;
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(r.stderr.contains("wrong_credentials"), "{}", r.stderr);
    // A new PIN, then none.
    let r = cli(c, &["user", "update", &pat_id, "--pin", "--password-stdin"], "135790\n").await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli(other.path(), &["--endpoint", &app.base, "login", "--user", "pat", "--pin", "--password-stdin"], "135790\n").await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli(c, &["user", "update", &pat_id, "--remove-pin"], "").await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli(other.path(), &["--endpoint", &app.base, "login", "--user", "pat", "--pin", "--password-stdin"], "135790\n").await;
    assert_eq!(r.code, 4, "{}", r.stderr);
}

async fn cli_networks_sessions_proxies_keys_explain_and_token_update(app: TestApp) {
    let config = tempfile::tempdir().unwrap();
    login(&app, config.path()).await;
    let c = config.path();

    let created = json(&app, c, &["network", "create", "cafe-1", "Cafe, first floor"]).await;
    assert_eq!(created["id"], "cafe-1", "{created}");
    let listed = json(&app, c, &["network", "list"]).await;
    assert!(listed.to_string().contains("Cafe, first floor"), "{listed}");
    let table = ok(&app, c, &["network", "list"]).await;
    assert!(table.contains("cafe-1"), "{table}");
    let renamed = json(&app, c, &["network", "update", "cafe-1", "--name", "Cafe, terrace"]).await;
    assert_eq!(renamed["name"], "Cafe, terrace", "{renamed}");
    let listed = json(&app, c, &["network", "list"]).await;
    assert_eq!(listed["networks"][0]["name"], "Cafe, terrace", "{listed}");
    let r = cli(c, &["--endpoint", &app.base, "network", "update", "cafe-1", "--name", "  "], "").await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("bad_network"), "{}", r.stderr);
    let r = cli(c, &["--endpoint", &app.base, "network", "update", "nowhere", "--name", "x"], "").await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("network_not_found"), "{}", r.stderr);
    ok(&app, c, &["network", "delete", "cafe-1"]).await;
    let listed = json(&app, c, &["network", "list"]).await;
    assert!(!listed.to_string().contains("cafe-1"), "{listed}");

    let generated = json(&app, c, &["voucher", "create", "--count", "1", "--kind", "multi"]).await;
    let vid = generated["vouchers"][0]["id"].as_str().unwrap().to_owned();
    let revoked = json(&app, c, &["voucher", "revoke", &vid]).await;
    assert_eq!(revoked["state"], "revoked", "{revoked}");

    let sessions = json(&app, c, &["session", "list"]).await;
    assert!(sessions.is_array() || sessions.is_object(), "{sessions}");
    assert!(json(&app, c, &["proxies"]).await.is_array());
    let keys = json(&app, c, &["keys", "list"]).await;
    assert!(!keys.as_array().unwrap().is_empty(), "{keys}");

    let explained = json(&app, c, &["explain", "GET /api/v1/tokens"]).await;
    assert_eq!(explained["allowed"], true, "{explained}");
    let issued = json(&app, c, &["token", "create", "--scope", "GET /objects"]).await;
    let id = issued["_id"].as_str().unwrap();
    let explained = json(&app, c, &["explain", "DELETE /api/v1/tokens/x", "--token-id", id]).await;
    assert_eq!(explained["allowed"], false, "{explained}");

    let updated = json(&app, c, &["token", "update", id, "--fl", "256"]).await;
    assert!(updated.to_string().contains(id), "{updated}");
    // revoke --all: every token of the user, the CLI's own included.
    ok(&app, c, &["token", "revoke", "--all"]).await;
    let r = app.get("/api/v1/tokens", issued["token"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    let r = cli(c, &["--endpoint", &app.base, "token", "list"], "").await;
    assert_eq!(r.code, 4, "{}", r.stderr);
}

async fn cli_audit_filters_pages_and_follows(app: TestApp) {
    let config = tempfile::tempdir().unwrap();
    let c = config.path();
    login(&app, c).await;
    let admin = app.admin_token(None, None).await;
    let t = admin["token"].as_str().unwrap();
    let doomed = app.child(t, &serde_json::json!({"name": "doomed"})).await.body;
    let doomed_id = doomed["_id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/api/v1/tokens/{doomed_id}"), t).await.status, StatusCode::NO_CONTENT);

    // A table, newest first, with the actor's user.
    let table = ok(&app, c, &["audit", "--limit", "50"]).await;
    assert!(table.contains("token.revoke") && table.contains("login.ok") && table.contains(ADMIN), "{table}");
    assert!(!table.contains("eyJ"), "a token value in the audit table: {table}");
    // JSON: the API's page; filters by kind and time.
    let page = json(&app, c, &["audit", "--kind", "token.revoke", "--since", "1h"]).await;
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{page}");
    assert_eq!(entries[0]["target"], format!("token:{doomed_id}"));
    // Paging back with --before.
    let first = json(&app, c, &["audit", "--limit", "2"]).await;
    let next = first["next"].as_i64().expect("older entries exist");
    let older = json(&app, c, &["audit", "--limit", "2", "--before", &next.to_string()]).await;
    assert!(older["entries"].as_array().unwrap().iter().all(|e| e["id"].as_i64().unwrap() < next), "{older}");
    // A bad filter: the API's code, exit 3.
    let r = cli(c, &["--endpoint", &app.base, "audit", "--kind", "nonsense"], "").await;
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(r.stderr.contains("bad_query"), "{}", r.stderr);

    // --follow prints what happens after it started.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tokengate"))
        .args(["--endpoint", app.base.as_str(), "audit", "--follow", "--limit", "1"])
        .env_remove("TOKENGATE_TOKEN")
        .env_remove("TOKENGATE_ENDPOINT")
        .env("XDG_CONFIG_HOME", c)
        .env("HOME", c)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let r = app.child(t, &serde_json::json!({"name": "followed-token"})).await;
    assert_eq!(r.status, StatusCode::OK);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let mut seen = String::new();
    while std::time::Instant::now() < deadline && !seen.contains("followed-token") {
        if let Ok(line) = lines_rx.recv_timeout(std::time::Duration::from_millis(200)) {
            seen.push_str(&line);
            seen.push('\n');
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("followed-token"), "audit --follow did not show the new entry: {seen}");
}

/// The control plane served over TLS (its own listener, certificates from
/// scripts/gen-tls.sh): the CLI trusts it with --ca-cert, and refuses it without, saying
/// what to do.
async fn security_cli_speaks_https_and_trusts_only_the_given_ca(app: TestApp) {
    let certs = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gen-tls.sh");
    for dir in ["tls", "other"] {
        let out = Command::new("sh").arg(&script).arg(certs.path().join(dir)).output().unwrap();
        assert!(out.status.success(), "gen-tls.sh: {}", String::from_utf8_lossy(&out.stderr));
    }
    let tls = certs.path().join("tls");
    let config = tokengate_control_plane::http::tls::server_config(&tls.join("cp.pem"), &tls.join("cp.key")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // As main.rs does: through `tap_io`, for which axum provides the peer as `ConnectInfo`.
    let listener =
        axum::serve::ListenerExt::tap_io(tokengate_control_plane::http::tls::TlsListener::new(listener, config).unwrap(), |_| {});
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(tokengate_control_plane::serve(app.state.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let endpoint = format!("https://127.0.0.1:{port}");
    let ca = tls.join("ca.pem");
    let ca = ca.to_str().unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let c = config_dir.path();

    // Without the CA (not in the system's roots): exit 5 and the way out.
    let r = cli(c, &["--endpoint", &endpoint, "login", "--user", ADMIN, "--password-stdin"], &format!("{ADMIN_PASSWORD}\n")).await;
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(r.stderr.contains("--ca-cert"), "{}", r.stderr);
    // Another CA is refused the same way.
    let other = certs.path().join("other/ca.pem");
    let r = cli(
        c,
        &["--endpoint", &endpoint, "--ca-cert", other.to_str().unwrap(), "login", "--user", ADMIN, "--password-stdin"],
        &format!("{ADMIN_PASSWORD}\n"),
    )
    .await;
    assert_eq!(r.code, 5, "{}", r.stderr);
    // A file that is no certificate is a usage error.
    let r = cli(c, &["--endpoint", &endpoint, "--ca-cert", script.to_str().unwrap(), "token", "list"], "").await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    // With it: login saves the endpoint and the CA; later commands need neither flag.
    let r = cli(
        c,
        &["--endpoint", &endpoint, "--ca-cert", ca, "login", "--user", ADMIN, "--password-stdin", "--save-endpoint"],
        &format!("{ADMIN_PASSWORD}\n"),
    )
    .await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = cli(c, &["--output", "json", "token", "list"], "").await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(serde_json::from_str::<Value>(&r.stdout).unwrap().is_array(), "{}", r.stdout);
    let saved = std::fs::read_to_string(c.join("tokengate/config.toml")).unwrap();
    assert!(saved.contains("ca_cert") && saved.contains("https://127.0.0.1"), "{saved}");
    // TOKENGATE_CA_CERT works too.
    let r = cli_env(c, &["--endpoint", &endpoint, "token", "list"], "", &[("TOKENGATE_CA_CERT", ca)]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
