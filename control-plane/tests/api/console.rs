//! The admin console (`/console`): login through `POST /auth`'s path, the session cookie's
//! attributes, CSRF on every form, the CSP, the idle limit, logout, and that what it does
//! is done through the API (a token issued in the console is an ordinary API token).

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::each_db;
use crate::helpers::{run_with, TestApp, ADMIN, ADMIN_PASSWORD};

each_db!(
    security_console_login_sets_a_strict_httponly_cookie_and_issues_an_api_token,
    security_console_wrong_password_shows_the_error_and_the_lockout,
    security_console_answers_carry_the_csp_and_no_cache,
    security_console_posts_without_the_right_csrf_token_are_refused_and_change_nothing,
    security_console_logout_revokes_its_token,
    console_pages_without_a_session_redirect_to_the_login,
    console_issues_and_revokes_through_the_api,
    console_pages_render,
    console_login_with_a_pin,
);

/// What a console answer gave: status, headers, body text.
pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The `Set-Cookie` header that sets `name`.
    fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(str::to_owned)
    }

    /// The value of the hidden `csrf` field of the page's first form.
    fn csrf(&self) -> String {
        let at = self.text.find("name=\"csrf\" value=\"").expect("a csrf field") + "name=\"csrf\" value=\"".len();
        self.text[at..].split('"').next().unwrap().to_owned()
    }
}

/// A browser without JavaScript: keeps the console's cookies, follows no redirects.
pub struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Browser { client, base: app.base.clone(), cookies: Vec::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&mut self, method: Method, path: &str, form: Option<&[(&str, &str)]>) -> Page {
        let mut req = self.client.request(method, format!("{}{path}", self.base));
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        for c in headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !v.is_empty() && !c.contains("Max-Age=0") {
                self.cookies.push((k.to_owned(), v.to_owned()));
            }
        }
        Page { status, headers, text: r.text().await.unwrap() }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, Some(form)).await
    }

    pub fn session(&self) -> Option<&str> {
        self.cookies.iter().find(|(k, _)| k == "tg_console").map(|(_, v)| v.as_str())
    }

    /// Opens the login form and submits it.
    pub async fn login(&mut self, user: &str, password: &str) -> Page {
        let form = self.get("/console/login").await;
        assert_eq!(form.status, StatusCode::OK);
        let csrf = form.csrf();
        self.post("/console/login", &[("csrf", &csrf), ("username", user), ("password", password)]).await
    }

    /// Logs in as the admin; returns the tokens page.
    pub async fn admin(&mut self) -> Page {
        let r = self.login(ADMIN, ADMIN_PASSWORD).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
        let page = self.get("/console/tokens").await;
        assert_eq!(page.status, StatusCode::OK);
        page
    }
}

async fn security_console_login_sets_a_strict_httponly_cookie_and_issues_an_api_token(app: TestApp) {
    let mut b = Browser::new(&app);
    let r = b.login(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    assert_eq!(r.location(), "/console/tokens");
    let cookie = r.set_cookie("tg_console").expect("the session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(cookie.contains(attribute), "{cookie}: no {attribute}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP from a client: no Secure ({cookie})");
    // The cookie holds an ordinary API token of the admin, named "console", with all rights.
    let token = b.session().unwrap().to_owned();
    let tokens = app.get("/api/v1/tokens", &token).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let me = tokens.body.as_array().unwrap().iter().find(|t| t["name"] == "console").expect("the console token is listed").clone();
    assert_eq!(me["scopes"], Value::Null);
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM console_sessions WHERE token_id = $1")
        .bind(me["_id"].as_str().unwrap())
        .fetch_one(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    // Over HTTPS (a trusted proxy says so), the cookie is Secure too.
    let form = b.get("/console/login").await;
    let csrf = form.csrf();
    let r = b
        .client
        .post(app.url("/console/login"))
        .header("cookie", b.cookie_header())
        .header("x-forwarded-proto", "https")
        .form(&[("csrf", csrf.as_str()), ("username", ADMIN), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let secure =
        r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find(|c| c.starts_with("tg_console=")).unwrap().to_owned();
    assert!(secure.contains("; Secure"), "{secure}");
}

async fn security_console_wrong_password_shows_the_error_and_the_lockout(app: TestApp) {
    let mut b = Browser::new(&app);
    let r = b.login(ADMIN, "wrong password").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("Wrong user name or password."), "{}", r.text);
    assert!(r.set_cookie("tg_console").is_none());
    // The same throttle as POST /auth: two free failures, then waits, then the lock.
    let mut last = r;
    for _ in 0..6 {
        last = b.login(ADMIN, "wrong password").await;
        if last.status == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
    }
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS, "{}", last.text);
    assert!(last.text.contains("Try again in "), "{}", last.text);
    let retry: u64 = last.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(last.text.contains(&format!("Try again in {retry} s")), "{}", last.text);
    // The API's own login is locked for this source too: it is the same throttle.
    app.auth(&serde_json::json!({"username": ADMIN, "password": ADMIN_PASSWORD})).await.assert_error(429, "too_many_attempts");
}

async fn security_console_answers_carry_the_csp_and_no_cache(app: TestApp) {
    let mut b = Browser::new(&app);
    let login = b.get("/console/login").await;
    let tokens = b.admin().await;
    let css = b.get("/console/assets/console.css").await;
    for page in [&login, &tokens, &css] {
        let csp = page.headers.get("content-security-policy").unwrap().to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
            "base-uri 'none'",
        ] {
            assert!(csp.contains(directive), "{csp}: {directive}");
        }
        assert!(!csp.contains("unsafe-inline"));
        assert_eq!(page.headers["x-content-type-options"], "nosniff");
        assert_eq!(page.headers["referrer-policy"], "no-referrer");
        assert_eq!(page.headers["cache-control"], "no-store");
    }
    assert!(css.headers["content-type"].to_str().unwrap().starts_with("text/css"));
    // No inline script or style in the markup.
    for page in [&login, &tokens] {
        assert!(!page.text.contains("<script>") && !page.text.contains("style=") && !page.text.contains("<style"), "{}", page.text);
    }
}

async fn security_console_posts_without_the_right_csrf_token_are_refused_and_change_nothing(app: TestApp) {
    let mut b = Browser::new(&app);
    b.admin().await;
    let before = app.token_rows().await;
    let r = b.post("/console/tokens/issue", &[("name", "forged"), ("expiresIn", "1 day")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("data-code=\"csrf\""), "{}", r.text);
    let r = b.post("/console/tokens/issue", &[("csrf", "00".repeat(32).as_str()), ("name", "forged"), ("expiresIn", "1 day")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Another session's token does not pass either.
    let mut other = Browser::new(&app);
    let theirs = other.admin().await.csrf();
    let before_other = app.token_rows().await;
    assert_eq!(before_other, before + 1);
    let r = b.post("/console/tokens/issue", &[("csrf", theirs.as_str()), ("name", "forged")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(app.token_rows().await, before_other, "nothing was issued");
    // The login form needs its own token too.
    let mut fresh = Browser::new(&app);
    let r = fresh.post("/console/login", &[("username", ADMIN), ("password", ADMIN_PASSWORD)]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(fresh.session().is_none());
    // With the right token the same form works.
    let csrf = b.get("/console/tokens").await.csrf();
    let r = b
        .post("/console/tokens/issue", &[("csrf", csrf.as_str()), ("name", "real"), ("expiresIn", "1 day"), ("password", ADMIN_PASSWORD)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(app.token_rows().await, before_other + 1);
}

async fn security_console_logout_revokes_its_token(app: TestApp) {
    let mut b = Browser::new(&app);
    let page = b.admin().await;
    let token = b.session().unwrap().to_owned();
    assert_eq!(app.get("/api/v1/tokens", &token).await.status, StatusCode::OK);
    let r = b.post("/console/logout", &[("csrf", page.csrf().as_str())]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/console/login?m=out");
    assert!(b.session().is_none(), "the cookie is cleared");
    app.get("/api/v1/tokens", &token).await.assert_error(401, "token_revoked");
    // The old cookie is refused by the console too.
    let mut replay = Browser::new(&app);
    replay.cookies.push(("tg_console".into(), token));
    let r = replay.get("/console/tokens").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.location().starts_with("/console/login"));
}

async fn console_pages_without_a_session_redirect_to_the_login(app: TestApp) {
    let mut b = Browser::new(&app);
    for path in ["/console", "/console/tokens", "/console/users", "/console/vouchers/pdf", "/console/keys"] {
        let r = b.get(path).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        let to = r.location();
        assert!(to == "/console/login" || to == "/console/tokens", "{path} -> {to}");
    }
    // An ordinary API token in the cookie is not a console session.
    let api = app.admin_token(None, None).await["token"].as_str().unwrap().to_owned();
    b.cookies.push(("tg_console".into(), api));
    let r = b.get("/console/tokens").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), "/console/login");
}

async fn console_issues_and_revokes_through_the_api(app: TestApp) {
    let mut b = Browser::new(&app);
    let page = b.admin().await;
    assert!(page.text.contains("value=\"GET /objects/:id\""), "the catalogue's scopes are offered");
    let csrf = page.csrf();
    let form = [
        ("csrf", csrf.as_str()),
        ("name", "from-console"),
        ("expiresIn", "30 days"),
        ("scope", "GET /objects"),
        ("scope", "GET /objects/:id"),
    ];
    // Issuing asks for the password again.
    let r = b.post("/console/tokens/issue", &[&form[..], &[("password", "wrong password")]].concat()).await;
    assert!(r.text.contains("Wrong password: no token was issued."), "{}", r.text);
    let r = b.post("/console/tokens/issue", &[&form[..], &[("password", ADMIN_PASSWORD)]].concat()).await;
    assert_eq!(r.status, StatusCode::OK);
    let at = r.text.find("id=\"new-token\">").unwrap_or_else(|| panic!("the new token is shown: {}", r.text)) + "id=\"new-token\">".len();
    let value = r.text[at..].split('<').next().unwrap().to_owned();
    // The token issued through the console is an ordinary API token: listed, with its scopes.
    let admin = app.admin_token(None, None).await["token"].as_str().unwrap().to_owned();
    let listed = app.get("/api/v1/tokens", &admin).await.body;
    let t = listed.as_array().unwrap().iter().find(|t| t["name"] == "from-console").expect("listed").clone();
    assert_eq!(t["scopes"], serde_json::json!(["GET /objects", "GET /objects/:id"]));
    assert_eq!(t["parent"], Value::Null, "not a child of the console's token: it outlives the session");
    app.get("/api/v1/tokens", &value).await.assert_error(403, "insufficient_scope");
    // Seed 001 update through the console.
    let id = t["_id"].as_str().unwrap();
    let r = b.post("/console/tokens/update", &[("csrf", &csrf), ("id", id), ("fl", "0x200"), ("items", "42, 43"), ("app", "fleet")]).await;
    assert!(r.text.contains("data-kind=\"ok\""), "{}", r.text);
    let listed = app.get("/api/v1/tokens", &admin).await.body;
    let t = listed.as_array().unwrap().iter().find(|t| t["_id"] == id).unwrap().clone();
    assert_eq!(
        (t["fl"].clone(), t["items"].clone(), t["app"].clone()),
        (serde_json::json!(512), serde_json::json!([42, 43]), serde_json::json!("fleet"))
    );
    // Revoke: the propagation is shown (no proxy here: none live).
    let r = b.post("/console/tokens/revoke", &[("csrf", &csrf), ("id", id)]).await;
    assert!(r.text.contains("Token revoked"), "{}", r.text);
    assert!(r.text.contains("no live proxy"), "{}", r.text);
    app.get("/api/v1/scopes", &value).await.assert_error(401, "token_revoked");
    assert!(!app.listed_ids(&admin).await.contains(&id.to_owned()));
    // An API refusal is shown with its code.
    let r = b
        .post("/console/tokens/issue", &[("csrf", &csrf), ("expiresIn", "1 day"), ("scope", "GET /nowhere"), ("password", ADMIN_PASSWORD)])
        .await;
    assert!(r.text.contains("unknown_scope"), "{}", r.text);
}

/// Every page renders for the admin, and the actions of the other pages reach the API.
async fn console_pages_render(app: TestApp) {
    let mut b = Browser::new(&app);
    let csrf = b.admin().await.csrf();
    for path in [
        "/console/users",
        "/console/sessions",
        "/console/vouchers",
        "/console/networks",
        "/console/proxies",
        "/console/keys",
        "/console/explain",
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(!r.text.contains("data-kind=\"error\""), "{path}: {}", r.text);
    }
    let r = b.post("/console/networks/create", &[("csrf", &csrf), ("id", "cafe-1"), ("name", "Cafe")]).await;
    assert!(r.text.contains("Network cafe-1 created."), "{}", r.text);
    let r = b.post("/console/vouchers/generate", &[("csrf", &csrf), ("count", "3"), ("kind", "single"), ("days", "1")]).await;
    assert!(r.text.contains("3 vouchers generated"), "{}", r.text);
    let pdf = b.get("/console/vouchers/pdf").await;
    assert_eq!(pdf.status, StatusCode::OK);
    assert!(pdf.text.starts_with("%PDF"));
    let r = b
        .post(
            "/console/users/create",
            &[("csrf", &csrf), ("name", "kim"), ("password", "kim-password-1"), ("role", "user"), ("prp", "language=en")],
        )
        .await;
    assert!(r.text.contains("User kim created"), "{}", r.text);
    let admin = app.admin_token(None, None).await["token"].as_str().unwrap().to_owned();
    let users = app.get("/api/v1/users", &admin).await.body;
    let kim = users.as_array().unwrap().iter().find(|u| u["nm"] == "kim").unwrap()["id"].as_str().unwrap().to_owned();
    let r = b.get(&format!("/console/users/edit?id={kim}")).await;
    assert!(r.text.contains("Change kim"), "{}", r.text);
    let r = b
        .post(
            "/console/users/update",
            &[
                ("csrf", &csrf),
                ("id", &kim),
                ("role_was", "user"),
                ("role", "user"),
                ("fl_was", "0"),
                ("fl", "0"),
                ("pin", "482913"),
                ("prp_was", "language=en"),
                ("prp", "language=ru"),
            ],
        )
        .await;
    assert!(r.text.contains("User kim updated (pin, prp)"), "{}", r.text);
    let kim_now = app.get(&format!("/api/v1/users/{kim}"), &admin).await.body;
    assert_eq!((kim_now["pin"].clone(), kim_now["prp"]["language"].clone()), (serde_json::json!(true), serde_json::json!("ru")));
    let r = b.get("/console/tokens/edit?id=000000000000000000000000").await;
    assert!(r.text.contains("No such live token."), "{}", r.text);
    // The row actions: rename and delete a network, revoke and delete a voucher, end a
    // session, delete a user.
    let r = b.post("/console/networks/rename", &[("csrf", &csrf), ("id", "cafe-1"), ("name", "Cafe, terrace")]).await;
    assert!(r.text.contains("renamed to “Cafe, terrace”"), "{}", r.text);
    let vouchers = app.get("/api/v1/vouchers", &admin).await.body;
    let ids: Vec<String> = vouchers["vouchers"].as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect();
    let r = b.post("/console/vouchers/revoke", &[("csrf", &csrf), ("id", &ids[0])]).await;
    assert!(r.text.contains("Voucher revoked."), "{}", r.text);
    let r = b.post("/console/vouchers/delete", &[("csrf", &csrf), ("id", &ids[1])]).await;
    assert!(r.text.contains("Voucher deleted."), "{}", r.text);
    let r = b.post("/console/networks/delete", &[("csrf", &csrf), ("id", "cafe-1")]).await;
    assert!(r.text.contains("Network deleted."), "{}", r.text);
    let session =
        app.post("/api/v1/token/login", None, &serde_json::json!({"token": admin})).await.body["_id"].as_str().unwrap().to_owned();
    let r = b.get("/console/sessions").await;
    assert!(r.text.contains(&format!("data-id=\"{session}\"")), "{}", r.text);
    let r = b.post("/console/sessions/end", &[("csrf", &csrf), ("id", &session)]).await;
    assert!(r.text.contains("Session ended"), "{}", r.text);
    assert!(!r.text.contains(&format!("data-id=\"{session}\"")), "{}", r.text);
    let r = b.post("/console/users/delete", &[("csrf", &csrf), ("id", &kim)]).await;
    assert!(r.text.contains("User deleted"), "{}", r.text);
    let r = b.post("/console/explain", &[("csrf", &csrf), ("request", "GET /api/v1/objects/1")]).await;
    assert!(r.text.contains("data-allowed=\"true\""), "{}", r.text);
    let r = b.post("/console/keys/rotate", &[("csrf", &csrf)]).await;
    assert!(r.text.contains("New signing key"), "{}", r.text);
    // The audit log: what the console did, filtered by kind, paged.
    let r = b.get("/console/audit?kind=user.").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.text.contains("data-kind=\"user.create\"") && r.text.contains("data-kind=\"user.update\""), "{}", r.text);
    assert!(!r.text.contains("data-kind=\"token.issue\""), "{}", r.text);
    let r = b.get("/console/audit?since=1h&user=admin").await;
    assert!(r.text.contains("data-kind=\"key.rotate\"") && r.text.contains("data-kind=\"network.create\""), "{}", r.text);
    let r = b.get("/console/audit?kind=nonsense").await;
    assert!(r.text.contains("bad_query"), "{}", r.text);
}

/// The idle limit: a console request after `TOKENGATE_SESSION_IDLE_SECS` of silence
/// revokes the token and asks for a new login; the sweeper revokes one nobody comes back to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_console_session_obeys_the_idle_limit() {
    run_with(&[("TOKENGATE_SESSION_IDLE_SECS", "60")], |app| async move {
        let mut b = Browser::new(&app);
        b.admin().await;
        let token = b.session().unwrap().to_owned();
        // Used within the limit: still alive.
        assert_eq!(b.get("/console/users").await.status, StatusCode::OK);
        // Idle past the limit (the row is aged rather than waiting a minute).
        sqlx::query("UPDATE console_sessions SET last_seen_at = last_seen_at - 61000").execute(&app.state.pool).await.unwrap();
        let r = b.get("/console/users").await;
        assert_eq!(r.status, StatusCode::SEE_OTHER);
        assert_eq!(r.location(), "/console/login?m=expired");
        app.get("/api/v1/tokens", &token).await.assert_error(401, "token_revoked");
        let login = b.get("/console/login?m=expired").await;
        assert!(login.text.contains("session expired"), "{}", login.text);
        // The sweeper: a session left idle is revoked without a request.
        let mut c = Browser::new(&app);
        c.admin().await;
        let left = c.session().unwrap().to_owned();
        let now = tokengate_control_plane::db::now_ms();
        assert_eq!(tokengate_control_plane::console::sweep_idle(&app.state, now).await.unwrap(), 0);
        assert_eq!(tokengate_control_plane::console::sweep_idle(&app.state, now + 61_000).await.unwrap(), 1);
        app.get("/api/v1/tokens", &left).await.assert_error(401, "token_revoked");
    })
    .await;
}

/// A PIN login (seed 002 `POST /login`, Pro accounts; the first account is Pro) gives a
/// console session too; a wrong PIN is shown as such.
async fn console_login_with_a_pin(app: TestApp) {
    let admin = app.admin_token(None, None).await["token"].as_str().unwrap().to_owned();
    let r =
        app.post("/api/v1/users", Some(&admin), &serde_json::json!({"name": "pat", "password": "pat-password-1", "pin": "482913"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let mut b = Browser::new(&app);
    let form = b.get("/console/login?with=pin").await;
    assert!(form.text.contains("name=\"pin\""), "{}", form.text);
    let csrf = form.csrf();
    let r = b.post("/console/login", &[("csrf", &csrf), ("kind", "pin"), ("username", "pat"), ("pin", "000000")]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.text.contains("Wrong user name or PIN."), "{}", r.text);
    let csrf = r.csrf();
    let r = b.post("/console/login", &[("csrf", &csrf), ("kind", "pin"), ("username", "pat"), ("pin", "482913")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.text);
    let page = b.get("/console/sessions").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains(">pat<"), "{}", page.text);
    let r = b.get("/console/no-such-page").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.headers.get("content-security-policy").is_some());
}
