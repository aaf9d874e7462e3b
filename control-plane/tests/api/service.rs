//! Health, OpenAPI, restart durability, database failure, and configuration.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{run_with, Reply, TestApp, ADMIN, ADMIN_PASSWORD};

each_db!(
    health_answers_ok,
    openapi_documents_the_routes,
    openapi_states_the_limits_the_handlers_enforce,
    restart_keeps_tokens_revocations_and_the_signing_key,
    database_down_answers_503,
    custom_prefix_and_catalogue,
    metrics_count_what_happened,
);

async fn health_answers_ok(app: TestApp) {
    let r = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body, json!({"status": "ok"}));
}

/// The document is generated from the handlers: every operation it names answers at its
/// path (none is a 404 `not_found` or a 405), every operation is complete (a unique
/// operationId, a summary, its error statuses with the error body), and the schemas
/// the clients rely on carry the seed's field names.
async fn openapi_documents_the_routes(app: TestApp) {
    let r = app.call(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["openapi"], "3.1.0");
    let paths = r.body["paths"].as_object().unwrap();
    let mut operation_ids = std::collections::HashSet::new();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            operations += 1;
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
            assert!(operation_ids.insert(id.to_owned()), "{method} {path}: operationId {id} is used twice");
            assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{method} {path}: no summary");
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no success status");
            for (status, response) in responses {
                assert!(response["description"].as_str().is_some_and(|d| !d.is_empty()), "{method} {path} {status}: no description");
                let json = &response["content"]["application/json"]["schema"];
                if status.starts_with('4') && path != "/portal" && path != "/api/v1/login" {
                    assert_eq!(json["$ref"], "#/components/schemas/ErrorBody", "{method} {path} {status}: not the error body");
                }
            }
            if op["security"].as_array().is_some_and(|s| s.iter().any(|s| s.get("bearer").is_some())) && path != "/api/v1/login" {
                for status in ["400", "401", "403"] {
                    assert!(responses.contains_key(status), "{method} {path}: a guarded route that does not document {status}");
                }
            }
            // The route exists: whatever the answer, it is not the router's own 404 or 405.
            let concrete = path.replace("{id}", "000000000000000000000000");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = app.client.request(method.clone(), app.url(&concrete)).send().await.unwrap();
            let status = answer.status();
            let body: Value = answer.json().await.unwrap_or(Value::Null);
            assert!(
                status != StatusCode::METHOD_NOT_ALLOWED && body["code"] != "not_found",
                "{method} {path}: documented but not routed ({status} {body})"
            );
        }
    }
    assert!(operations >= 38, "only {operations} operations documented");
    let schemas = &r.body["components"]["schemas"];
    let props = &schemas["IssuedToken"]["properties"];
    for field in ["_id", "issuedAt", "expiresAt", "user", "token", "name", "scopes"] {
        assert!(props[field].is_object(), "IssuedToken.{field}");
    }
    for field in ["h", "app", "at", "ct", "dur", "fl", "items", "p"] {
        assert!(schemas["ManagedToken"]["properties"][field].is_object(), "ManagedToken.{field}");
    }
    assert_eq!(schemas["ManageRequest"]["additionalProperties"], false, "request bodies refuse unknown fields");
    for scheme in ["bearer", "proxy"] {
        assert_eq!(r.body["components"]["securitySchemes"][scheme]["scheme"], "bearer");
    }
}

/// The request limits the OpenAPI document states are the ones the handlers enforce (so
/// a generated client, and schemathesis, can rely on them): the closed sets are exactly
/// the accepted values, and for each range or pattern the value just outside is refused
/// with the field's own code while the value at the edge is accepted.
async fn openapi_states_the_limits_the_handlers_enforce(app: TestApp) {
    let doc = app.call(Method::GET, "/api/v1/openapi.json", None, None).await.body;
    let schemas = &doc["components"]["schemas"];
    let props = |schema: &str, field: &str| schemas[schema]["properties"][field].clone();
    let int = |schema: &str, field: &str, bound: &str| {
        props(schema, field)[bound].as_i64().unwrap_or_else(|| panic!("{schema}.{field} has no {bound}"))
    };
    let len = |schema: &str, field: &str, bound: &str| usize::try_from(int(schema, field, bound)).unwrap();
    let strings = |v: &Value| v.as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(strings(&schemas["CallMode"]["enum"]), ["create", "update", "delete"]);
    assert_eq!(strings(&schemas["Role"]["enum"]), ["user", "admin"]);
    assert_eq!(strings(&schemas["VoucherKind"]["enum"]), ["single", "multi"]);
    assert_eq!(strings(&schemas["Plan"]["enum"]), ["basic", "pro"]);
    assert_eq!(props("CreateUserRequest", "pin")["pattern"], "^[0-9]{6,12}$");
    assert_eq!(props("UpdateUserRequest", "pin")["pattern"], "^[0-9]{6,12}$");
    assert_eq!(props("NetworkRequest", "id")["pattern"], "^[a-z0-9][a-z0-9._-]{0,62}$");
    // No control characters (Unicode Cc, what the handlers refuse) in names.
    for (schema, field) in [
        ("CreateUserRequest", "name"),
        ("NetworkRequest", "name"),
        ("RenameNetwork", "name"),
        ("AuthRequest", "name"),
        ("CreateTokenRequest", "name"),
    ] {
        assert_eq!(props(schema, field)["pattern"], "^[^\\x00-\\x1f\\x7f-\\x9f]*$", "{schema}.{field}");
    }

    let admin = app.admin_token(None, None).await;
    let token = admin["token"].as_str().unwrap();
    let refused = |r: Reply, code: &str, what: &str| {
        assert_eq!((r.status, r.code()), (StatusCode::BAD_REQUEST, code), "{what}: {}", r.body);
    };
    let accepted = |r: Reply, what: &str| assert!(r.status.is_success(), "{what}: {} {}", r.status, r.body);

    // The account's plan.
    refused(app.call(Method::PATCH, "/api/v1/account", Some(token), Some(&json!({"plan": "gold"}))).await, "bad_plan", "plan gold");
    for plan in ["pro", "basic"] {
        accepted(app.call(Method::PATCH, "/api/v1/account", Some(token), Some(&json!({"plan": plan}))).await, plan);
    }

    // Seed 001's callMode.
    for mode in ["Create", "read", ""] {
        refused(app.post("/api/v1/tokens/update", Some(token), &json!({"callMode": mode})).await, "bad_call_mode", mode);
    }

    // Vouchers: count, kind, days.
    let (lo, hi) = (int("GenerateVouchers", "count", "minimum"), int("GenerateVouchers", "count", "maximum"));
    assert_eq!((lo, hi), (1, 200), "seed 000: 1 to 200");
    for n in [lo - 1, hi + 1] {
        refused(
            app.post("/api/v1/vouchers", Some(token), &json!({"count": n, "kind": "single"})).await,
            "bad_count",
            &format!("count {n}"),
        );
    }
    refused(app.post("/api/v1/vouchers", Some(token), &json!({"count": 1, "kind": "double"})).await, "bad_voucher_kind", "kind double");
    let (dlo, dhi) = (int("GenerateVouchers", "days", "minimum"), int("GenerateVouchers", "days", "maximum"));
    for d in [dlo - 1, dhi + 1] {
        refused(
            app.post("/api/v1/vouchers", Some(token), &json!({"count": 1, "kind": "single", "days": d})).await,
            "bad_days",
            &format!("days {d}"),
        );
    }
    for (kind, days) in [("single", dhi), ("multi", dlo)] {
        accepted(
            app.post("/api/v1/vouchers", Some(token), &json!({"count": lo, "kind": kind, "days": days})).await,
            &format!("{kind}, {days} days"),
        );
    }

    // Users: name and password lengths, PIN, role, flags.
    let user = |name: &str, extra: Value| {
        let mut body = json!({"name": name, "password": "a password"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let (nmin, nmax) = (len("CreateUserRequest", "name", "minLength"), len("CreateUserRequest", "name", "maxLength"));
    let (pmin, pmax) = (len("CreateUserRequest", "password", "minLength"), len("CreateUserRequest", "password", "maxLength"));
    let bad_users = [
        user(&"n".repeat(nmin - 1), json!({})),
        user(&"n".repeat(nmax + 1), json!({})),
        user("a\u{0}b", json!({})),
        user("p1", json!({"password": "p".repeat(pmin - 1)})),
        user("p2", json!({"password": "p".repeat(pmax + 1)})),
        user("pin1", json!({"pin": "12345"})),
        user("pin2", json!({"pin": "1234567890123"})),
        user("pin3", json!({"pin": "12345a"})),
        user("role", json!({"role": "root"})),
        user("fl", json!({"fl": int("CreateUserRequest", "fl", "minimum") - 1})),
    ];
    for body in &bad_users {
        refused(app.post("/api/v1/users", Some(token), body).await, "bad_user", &body.to_string());
    }
    for body in [
        user(&"n".repeat(nmax), json!({"password": "p".repeat(pmin), "pin": "123456789012", "role": "admin", "fl": 0})),
        user(&"m".repeat(nmin), json!({"password": "p".repeat(pmax), "pin": "123456", "role": "user"})),
    ] {
        accepted(app.post("/api/v1/users", Some(token), &body).await, "a user at the edges");
    }

    // Networks: id pattern, name length (the rename takes the same).
    let (mmin, mmax) = (len("NetworkRequest", "name", "minLength"), len("NetworkRequest", "name", "maxLength"));
    assert_eq!((len("RenameNetwork", "name", "minLength"), len("RenameNetwork", "name", "maxLength")), (mmin, mmax));
    for (id, name) in [
        ("-cafe", "x".to_owned()),
        ("Cafe", "x".to_owned()),
        (&*"c".repeat(64), "x".to_owned()),
        ("cafe", "x".repeat(mmin - 1)),
        ("cafe", "x".repeat(mmax + 1)),
        ("cafe", "caf\u{7}e".to_owned()),
    ] {
        refused(app.post("/api/v1/networks", Some(token), &json!({"id": id, "name": name})).await, "bad_network", &format!("{id} {name}"));
    }
    let long_id = "c".repeat(63);
    for (id, name) in [(long_id.as_str(), "x".repeat(mmax)), ("0._-", "x".repeat(mmin))] {
        accepted(app.post("/api/v1/networks", Some(token), &json!({"id": id, "name": name})).await, id);
    }
}

/// Every route is registered through `utoipa_axum::routes!`, which documents it from its
/// handler's `#[utoipa::path]`: a plain axum `.route(` in the control plane's source would
/// serve a route the document does not show.
///
/// One exemption: `src/console/`, the admin console's HTML pages (`/console/...`). They are
/// not API operations (no JSON contract, no client but a browser) and they reach the API
/// only by dispatching documented API requests in-process, so the document already shows
/// everything they can do. They are a plain axum `Router` merged in `app()`.
#[test]
fn no_route_is_registered_without_its_documentation() {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut files);
    assert!(files.len() > 20);
    let mut undocumented = Vec::new();
    let console = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join("console");
    for file in files {
        if file.starts_with(&console) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(".route(") || code.contains(".route_service(") || code.contains("routing::") {
                undocumented.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(undocumented.is_empty(), "routes registered without utoipa_axum::routes!:\n{}", undocumented.join("\n"));
}

async fn restart_keeps_tokens_revocations_and_the_signing_key(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let admin_tok = admin["token"].as_str().unwrap().to_owned();
    let kept = app.child(&admin_tok, &json!({"name": "kept"})).await.body;
    let gone = app.child(&admin_tok, &json!({"name": "gone"})).await.body;
    let gone_id = gone["_id"].as_str().unwrap().to_owned();
    assert_eq!(app.delete(&format!("/api/v1/tokens/{gone_id}"), &admin_tok).await.status, StatusCode::NO_CONTENT);
    let jwks_before = app.call(Method::GET, "/.well-known/jwks.json", None, None).await.body;
    let sync_before = app.sync(0, 0).await.body;

    let app = app.restart().await;
    assert_eq!(app.call(Method::GET, "/.well-known/jwks.json", None, None).await.body, jwks_before);
    assert_eq!(app.get("/api/v1/scopes", kept["token"].as_str().unwrap()).await.status, StatusCode::OK);
    app.get("/api/v1/scopes", gone["token"].as_str().unwrap()).await.assert_error(401, "token_revoked");
    let listed = app.listed_ids(&admin_tok).await;
    assert!(listed.contains(&kept["_id"].as_str().unwrap().to_owned()));
    assert!(!listed.contains(&gone_id));
    let sync_after = app.sync(0, 0).await.body;
    assert_eq!(sync_after["version"], sync_before["version"]);
    assert_eq!(sync_after["revoked"], sync_before["revoked"]);
    // The admin was not made twice, and still logs in.
    let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&app.state.pool).await.unwrap();
    assert_eq!(users, 1);
    app.admin_token(None, None).await;
    // Versions go on from where they were.
    let fresh = app.child(&admin_tok, &json!({})).await.body;
    app.delete(&format!("/api/v1/tokens/{}", fresh["_id"].as_str().unwrap()), &admin_tok).await;
    let r = app.sync(sync_before["version"].as_u64().unwrap(), 0).await.body;
    assert_eq!(r["version"].as_u64().unwrap(), sync_before["version"].as_u64().unwrap() + 1);
}

async fn database_down_answers_503(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    app.state.pool.close().await;
    let r = app.call(Method::GET, "/healthz", None, None).await;
    r.assert_error(503, "database_unavailable");
    let r = app.get("/api/v1/tokens", admin["token"].as_str().unwrap()).await;
    r.assert_error(503, "database_unavailable");
    let r = app.auth(&json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await;
    r.assert_error(503, "database_unavailable");
    app.sync(0, 0).await.assert_error(503, "database_unavailable");
}

async fn custom_prefix_and_catalogue(app: TestApp) {
    drop(app);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("catalogue.json");
    std::fs::write(&file, r#"["GET /v2/rooms", "POST /rooms/:room/join"]"#).unwrap();
    let file = file.display().to_string();
    run_with(&[("TOKENGATE_API_PREFIX", "/v2"), ("TOKENGATE_CATALOGUE", &file)], |app| async move {
        let r = app
            .post("/v2/auth", None, &json!({"username": ADMIN, "password": ADMIN_PASSWORD, "scopes": ["GET /v2/rooms", "GET /scopes"]}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["scopes"], json!(["GET /rooms", "GET /scopes"]));
        let scopes = app.get("/v2/scopes", r.body["token"].as_str().unwrap()).await.body;
        let mut expect = vec!["GET /rooms".to_owned(), "POST /rooms/:room/join".to_owned()];
        expect.extend(tokengate_control_plane::tokens::scopes::OWN_ROUTES.iter().map(|(p, _)| (*p).to_owned()));
        assert_eq!(scopes, json!(expect));
        let r = app.post("/v2/auth", None, &json!({"username": ADMIN, "password": ADMIN_PASSWORD, "scopes": ["GET /objects"]})).await;
        r.assert_error(400, "unknown_scope");
        app.call(Method::GET, "/api/v1/scopes", None, None).await.assert_error(404, "not_found");
    })
    .await;
}

async fn metrics_count_what_happened(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let token = admin["token"].as_str().unwrap();
    let child = app.child(token, &json!({})).await.body;
    app.delete(&format!("/api/v1/tokens/{}", child["_id"].as_str().unwrap()), token).await;
    app.auth(&json!({"username": ADMIN, "password": "wrong"})).await;
    app.sync(0, 0).await;
    app.sync_as(0, 0, Some("wrong")).await;
    let r = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text; version=1.0.0"));
    let text = r.text().await.unwrap();
    for line in [
        "tokengate_tokens_issued_total 2",
        "tokengate_revocations_total 1",
        "tokengate_login_failures_total 1",
        "tokengate_sync_calls_total{result=\"snapshot\"} 1",
        "tokengate_sync_calls_total{result=\"refused\"} 1",
        "tokengate_sync_version 2",
        "tokengate_proxies_live 1",
        "tokengate_sync_held 0",
        // Credential attempts by kind and outcome: the admin's login and the wrong password.
        "tokengate_credential_attempts_total{kind=\"password\",outcome=\"success\"} 1",
        "tokengate_credential_attempts_total{kind=\"password\",outcome=\"failure\"} 1",
        "# TYPE tokengate_http_request_duration_seconds histogram",
        "# TYPE tokengate_propagation_seconds histogram",
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
    }
    // Latency by route pattern and status, never by raw path (no token id in a label).
    let child_id = child["_id"].as_str().unwrap();
    assert!(!text.contains(child_id), "a raw path in a label:\n{text}");
    let count = |route: &str, status: u16| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(&format!("tokengate_http_request_duration_seconds_count{{route=\"{route}\",status=\"{status}\"}} "))
            })
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(count("/api/v1/tokens/{id}", 204), 1, "{text}");
    // The Grafana dashboard asks only for metrics this control plane exports.
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/tokengate.json")).unwrap())
            .unwrap();
    let mut asked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            if !expr.contains("$cp_job") {
                continue;
            }
            for name in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("tokengate_")) {
                let family = ["_total", "_bucket", "_count", "_sum"].iter().fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
                assert!(text.contains(&format!("# TYPE {family} ")), "the dashboard asks for {name}, which /metrics does not export");
                asked += 1;
            }
        }
    }
    assert!(asked > 10, "{asked}");
    assert_eq!(count("/api/v1/auth", 401), 1, "{text}");
    assert!(count("/api/v1/auth", 200) >= 1, "{text}");
    drop(app);
    run_with(&[("TOKENGATE_METRICS", "off")], |app| async move {
        app.call(Method::GET, "/metrics", None, None).await.assert_error(404, "not_found");
    })
    .await;
}
