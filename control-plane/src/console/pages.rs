//! The console's pages: each GET reads through the API and renders; each POST runs one
//! API call and renders its page again with what happened on top (a flash), so a token's
//! value, shown once, is never stored to be shown after a redirect.
//!
//! Markup from maud (every interpolated value escaped). No inline script or style (the
//! CSP forbids them): layout is classes from `assets/console.css`, behaviour
//! (copy buttons, confirmations) `data-` attributes read by `assets/console.js`.
//! Tests find things by id and `data-` attributes: `#flash .flash[data-kind]`,
//! `#new-token`, `table[data-table]`, `tr[data-id]`.

use axum::extract::Query;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::{html, Markup, DOCTYPE};
use serde_json::{json, Map, Value};

use super::{Console, Post, Problem, REVOKE_WAIT_MS};
use crate::http::wire::{
    AuditPage, Explanation, GeneratedVouchers, IssuedToken, KeyInfo, ManagedToken, NetworkInfo, NetworkList, Propagation, ProxyInfo,
    Rotated, SessionInfo, TokenInfo, UserInfo, VoucherList, VoucherRevoked,
};
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/console/tokens", get(tokens))
        .route("/console/tokens/issue", post(token_issue))
        .route("/console/tokens/edit", get(token_edit))
        .route("/console/tokens/update", post(token_update))
        .route("/console/tokens/revoke", post(token_revoke))
        .route("/console/users", get(users))
        .route("/console/users/create", post(user_create))
        .route("/console/users/edit", get(user_edit))
        .route("/console/users/update", post(user_update))
        .route("/console/users/delete", post(user_delete))
        .route("/console/sessions", get(sessions))
        .route("/console/sessions/end", post(session_end))
        .route("/console/vouchers", get(vouchers))
        .route("/console/vouchers/generate", post(voucher_generate))
        .route("/console/vouchers/revoke", post(voucher_revoke))
        .route("/console/vouchers/delete", post(voucher_delete))
        .route("/console/vouchers/pdf", get(voucher_pdf))
        .route("/console/networks", get(networks))
        .route("/console/networks/create", post(network_create))
        .route("/console/networks/rename", post(network_rename))
        .route("/console/networks/delete", post(network_delete))
        .route("/console/proxies", get(proxies))
        .route("/console/keys", get(keys))
        .route("/console/keys/rotate", post(keys_rotate))
        .route("/console/explain", get(explain).post(explain_run))
        .route("/console/audit", get(audit))
}

// ---------------------------------------------------------------- flashes and layout

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ok,
    Error,
    Info,
}

/// A message on top of a page: what an action did, or why the API refused it.
pub struct Flash {
    kind: Kind,
    text: String,
    /// The API's error code, shown beside the message.
    pub code: Option<String>,
}

impl Flash {
    pub fn ok(text: String) -> Flash {
        Flash { kind: Kind::Ok, text, code: None }
    }

    pub fn error(text: String) -> Flash {
        Flash { kind: Kind::Error, text, code: None }
    }

    pub fn info(text: String) -> Flash {
        Flash { kind: Kind::Info, text, code: None }
    }

    fn problem(p: &Problem) -> Flash {
        Flash { kind: Kind::Error, text: p.message.clone(), code: Some(format!("{} {}", p.status, p.code)) }
    }
}

fn flashes(list: &[Flash]) -> Markup {
    html! {
        div #flash role="status" {
            @for f in list {
                @let kind = match f.kind { Kind::Ok => "ok", Kind::Error => "error", Kind::Info => "info" };
                div.flash data-kind=(kind) {
                    span.flash-text { (f.text) }
                    @if let Some(code) = &f.code { " " code.flash-code { (code) } }
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Tokens,
    Users,
    Sessions,
    Vouchers,
    Networks,
    Proxies,
    Keys,
    Explain,
    Audit,
}

const NAV: [(Page, &str, &str); 9] = [
    (Page::Tokens, "/console/tokens", "Tokens"),
    (Page::Users, "/console/users", "Users"),
    (Page::Sessions, "/console/sessions", "Sessions"),
    (Page::Vouchers, "/console/vouchers", "Vouchers"),
    (Page::Networks, "/console/networks", "Networks"),
    (Page::Proxies, "/console/proxies", "Proxies"),
    (Page::Keys, "/console/keys", "Keys"),
    (Page::Explain, "/console/explain", "Explain"),
    (Page::Audit, "/console/audit", "Audit"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) " · tokengate console" }
            link rel="stylesheet" href="/console/assets/console.css";
            script src="/console/assets/console.js" defer {}
        }
    }
}

/// A page of a logged-in console.
fn layout(c: &Console, page: Page, title: &str, list: &[Flash], body: Markup) -> Response {
    let slug = NAV.iter().find(|(p, _, _)| *p == page).map_or("", |(_, href, _)| href.trim_start_matches("/console/"));
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-page=(slug) {
                header.top {
                    a.brand href="/console/tokens" { span.logo { "tg" } span.brand-name { "tokengate" } }
                    nav.nav aria-label="Console" {
                        @for (p, href, label) in NAV {
                            a href=(href) .active[p == page] aria-current=[(p == page).then_some("page")] { (label) }
                        }
                    }
                    div.who {
                        span.user title="Logged in as" { (c.user_name) }
                        form method="post" action="/console/logout" {
                            (csrf(c))
                            button.btn.btn-ghost.btn-small type="submit" { "Log out" }
                        }
                    }
                }
                main {
                    h1 { (title) }
                    (flashes(list))
                    (body)
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    response
}

/// A page without a session: the login form.
pub fn login(user: &str, csrf_token: &str, secret: super::Secret, flash: Option<super::Flash>) -> Response {
    let pin = secret == super::Secret::Pin;
    let list: Vec<Flash> = flash.into_iter().collect();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head("Log in"))
            body.login-page data-page="login" {
                main.login-box {
                    div.login-brand { span.logo { "tg" } span.brand-name { "tokengate console" } }
                    (flashes(&list))
                    form.card.stack method="post" action="/console/login" #login {
                        input type="hidden" name="csrf" value=(csrf_token);
                        label { "User name" input type="text" name="username" value=(user) autocomplete="username" autocapitalize="none" spellcheck="false" required autofocus[user.is_empty()]; }
                        @if pin {
                            input type="hidden" name="kind" value="pin";
                            label { "PIN" input type="password" name="pin" inputmode="numeric" autocomplete="off" required autofocus[!user.is_empty()]; }
                        } @else {
                            label { "Password" input type="password" name="password" autocomplete="current-password" required autofocus[!user.is_empty()]; }
                        }
                        button.btn.btn-primary.btn-wide type="submit" { "Log in" }
                        @if pin {
                            a.alt-login href="/console/login" { "Log in with a password" }
                        } @else {
                            a.alt-login href="/console/login?with=pin" { "Log in with a PIN instead" }
                        }
                    }
                    p.muted.small { "Repeated wrong passwords or PINs lock the account for a while, as every login does. The session ends after inactivity." }
                }
            }
        }
    };
    html_response(StatusCode::OK, markup)
}

/// A page for a refused request (a CSRF failure, an unreadable form).
pub fn error_page(code: &str, message: &str, status: StatusCode) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head("Refused"))
            body.login-page data-page="error" {
                main.login-box {
                    div.login-brand { span.logo { "tg" } span.brand-name { "tokengate console" } }
                    div.card #refused data-code=(code) {
                        h1 { (status.as_u16()) " · " (status.canonical_reason().unwrap_or("Refused")) }
                        p { (message) }
                        p { a.btn.btn-primary href="/console/tokens" { "Back to the console" } }
                    }
                }
            }
        }
    };
    html_response(status, markup)
}

fn csrf(c: &Console) -> Markup {
    html! { input type="hidden" name="csrf" value=(c.csrf); }
}

/// A one-button form posting `fields` to `action` (a row action: revoke, delete, end).
fn button_form(c: &Console, action: &str, fields: &[(&str, &str)], label: &str, class: &str, confirm: Option<&str>) -> Markup {
    html! {
        form.inline method="post" action=(action) data-confirm=[confirm] {
            (csrf(c))
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            button type="submit" class=(format!("btn btn-small {class}")) { (label) }
        }
    }
}

// ---------------------------------------------------------------- formatting

/// `ms` since the epoch as "2026-12-04 14:05 UTC".
fn when(ms: i64) -> Markup {
    let iso = crate::tokens::keys::iso_utc(ms);
    let shown = format!("{} {} UTC", &iso[..10], &iso[11..16]);
    html! { time datetime=(iso) title=(iso) { (shown) } }
}

fn when_opt(ms: Option<i64>) -> Markup {
    match ms {
        Some(ms) => when(ms),
        None => html! { span.muted { "—" } },
    }
}

/// Seed 001 flags in words.
fn flags(fl: Option<i64>) -> Markup {
    const NAMES: [(i64, &str); 6] =
        [(0x100, "online"), (0x200, "view"), (0x400, "edit"), (0x800, "sensitive"), (0x1000, "critical"), (0x2000, "commands")];
    match fl {
        None => html! { span.muted { "any" } },
        Some(-1) => html! { span.badge.badge-strong { "unlimited" } },
        Some(0) => html! { span.badge { "none" } },
        Some(fl) => html! {
            span.flags title=(format!("0x{fl:X}")) {
                @for (bit, name) in NAMES { @if fl & bit != 0 { span.badge { (name) } } }
            }
        },
    }
}

fn items(list: Option<&[i64]>) -> Markup {
    match list {
        None => html! { span.muted { "all" } },
        Some(v) => html! { code { (v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")) } },
    }
}

fn scopes(list: Option<&[String]>) -> Markup {
    match list {
        None => html! { span.badge.badge-strong { "all rights" } },
        Some([]) => html! { span.muted { "none" } },
        Some(v) => html! { ul.scopes { @for s in v { li { code { (s) } } } } },
    }
}

fn yes_no(b: bool, yes: &str, no: &str) -> Markup {
    if b {
        html! { span.badge.badge-ok { (yes) } }
    } else {
        html! { span.badge.badge-off { (no) } }
    }
}

fn short(id: &str) -> Markup {
    let head: String = id.chars().take(8).collect();
    html! { code.id title=(id) { (head) "…" } }
}

fn empty_row(cols: usize, text: &str) -> Markup {
    html! { tr.empty { td colspan=(cols) { (text) } } }
}

/// "enforced at 1/1 proxies" from a propagation answer.
fn enforced(p: &crate::http::wire::ProxyCounts) -> String {
    if p.live == 0 {
        "no live proxy is connected now; each one applies it at its next sync".to_owned()
    } else if p.applied == p.live {
        format!("enforced at {}/{} proxies", p.applied, p.live)
    } else {
        format!("enforced at {}/{} proxies so far; the others apply it at their next sync", p.applied, p.live)
    }
}

/// Reads `path` as `T`, or notes the refusal in `list`.
async fn load<T: serde::de::DeserializeOwned>(c: &Console, path: &str, list: &mut Vec<Flash>) -> Option<T> {
    match c.get(path).await.json::<T>() {
        Ok(v) => Some(v),
        Err(p) => {
            list.push(Flash::problem(&p));
            None
        }
    }
}

/// Turns an action's result into a flash: `ok` says what happened.
fn outcome<T>(result: Result<T, Problem>, ok: impl FnOnce(T) -> String) -> Flash {
    match result {
        Ok(v) => Flash::ok(ok(v)),
        Err(p) => Flash::problem(&p),
    }
}

/// An optional number field: blank is `None`, `0x..` is hexadecimal.
fn number(form: &super::Form, name: &str) -> Result<Option<i64>, Problem> {
    let Some(text) = form.text(name) else { return Ok(None) };
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => i64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    };
    parsed.map(Some).ok_or_else(|| bad_field(name, "must be a whole number (or 0x… hexadecimal)"))
}

fn bad_field(name: &str, what: &str) -> Problem {
    Problem { status: 400, code: "bad_form".into(), message: format!("{name} {what}") }
}

/// "1, 2, 3" → [1, 2, 3]; blank → `None`.
fn id_list(form: &super::Form, name: &str) -> Result<Option<Vec<i64>>, Problem> {
    let Some(text) = form.text(name) else { return Ok(None) };
    text.split([',', ' ', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<i64>().map_err(|_| bad_field(name, "must be whole numbers separated by commas")))
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// "key=value" lines → a JSON object of strings.
fn properties(form: &super::Form, name: &str) -> Result<Map<String, Value>, Problem> {
    let mut out = Map::new();
    for line in form.get(name).unwrap_or_default().lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once('=').ok_or_else(|| bad_field(name, "must be key=value lines"))?;
        out.insert(k.trim().to_owned(), Value::String(v.trim().to_owned()));
    }
    Ok(out)
}

fn properties_text(prp: &Value) -> String {
    prp.as_object()
        .map(|m| {
            m.iter().map(|(k, v)| format!("{k}={}", v.as_str().map_or_else(|| v.to_string(), str::to_owned))).collect::<Vec<_>>().join("\n")
        })
        .unwrap_or_default()
}

/// The API call `method` on `path` with the form's `id` field in place of `{id}`: the
/// row actions (revoke, delete, end, rename).
async fn on_id(c: &Console, form: &super::Form, method: Method, path: &str, body: Option<&Value>) -> Result<super::Answer, Problem> {
    let id = id_field(form, "id")?;
    Ok(c.api(method, &path.replace("{id}", id), body).await)
}

fn id_field<'f>(form: &'f super::Form, name: &str) -> Result<&'f str, Problem> {
    form.text(name)
        .filter(|id| id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        .ok_or_else(|| bad_field(name, "is missing or malformed"))
}

// ---------------------------------------------------------------- tokens

const LIFETIMES: [&str; 7] = ["1 hour", "12 hours", "1 day", "7 days", "30 days", "90 days", "1 year"];

async fn tokens(c: Console) -> Response {
    tokens_page(&c, Vec::new(), None).await
}

async fn tokens_page(c: &Console, mut list: Vec<Flash>, issued: Option<IssuedToken>) -> Response {
    let tokens: Vec<TokenInfo> = load(c, "/tokens", &mut list).await.unwrap_or_default();
    let catalogue: Vec<String> = load(c, "/scopes", &mut list).await.unwrap_or_default();
    let body = html! {
        @if let Some(t) = &issued {
            section.card.reveal #issued data-id=(t.id) {
                h2 { "New token " @if let Some(n) = &t.name { "“" (n) "”" } }
                p { "Copy it now: its value is shown this once and can never be retrieved again." }
                div.secret {
                    code #new-token { (t.token) }
                    button.btn.btn-primary type="button" data-copy="new-token" { "Copy" }
                }
                p.muted.small { "ID " code { (t.id) } " · expires " (when(t.expires_at)) }
            }
        }
        section.card {
            h2 { "Live tokens " span.count { (tokens.len()) } }
            div.table-wrap {
                table data-table="tokens" {
                    thead { tr { th { "Name" } th { "ID" } th { "Scopes" } th { "Flags" } th { "Items" } th { "App" } th { "Expires" } th { "Last use" } th { } } }
                    tbody {
                        @if tokens.is_empty() { (empty_row(9, "No live tokens.")) }
                        @for t in &tokens {
                            @let mine = t.id == c.token_id;
                            tr data-id=(t.id) {
                                td { (t.name.as_deref().unwrap_or("—")) @if mine { " " span.badge.badge-ok { "this console" } } }
                                td { (short(&t.id)) }
                                td { (scopes(t.scopes.as_deref())) }
                                td { (flags(t.fl)) }
                                td { (items(t.items.as_deref())) }
                                td { (t.app.as_deref().unwrap_or("—")) }
                                td { (when(t.expires_at)) }
                                td { (when_opt(t.last_used_at)) }
                                td.actions {
                                    (button_form(c, "/console/tokens/revoke", &[("id", &t.id)], "Revoke", "btn-danger",
                                        Some(if mine { "Revoke this console's own token? You will be logged out." } else { "Revoke this token and every token issued from it?" })))
                                    a.btn.btn-small.btn-ghost href=(format!("/console/tokens/edit?id={}", t.id)) { "Edit" }
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Issue a token" }
            form.stack method="post" action="/console/tokens/issue" #issue {
                (csrf(c))
                div.row {
                    label { "Name" input type="text" name="name" placeholder="ci, fleet-app …" maxlength="100"; }
                    label { "Expires in"
                        select name="expiresIn" {
                            @for l in LIFETIMES { option value=(l) selected[l == "7 days"] { (l) } }
                        }
                    }
                }
                fieldset.scopes-pick {
                    legend { "Scopes " span.muted { "(none checked: all of your rights)" } }
                    div.checks {
                        @for s in &catalogue {
                            label.check { input type="checkbox" name="scope" value=(s); code { (s) } }
                        }
                    }
                }
                div.row.confirm-row {
                    label { span { "Your password " span.muted { "(confirms issuing a credential)" } }
                        input type="password" name="password" autocomplete="current-password" required; }
                    div.confirm-button { button.btn.btn-primary type="submit" { "Issue token" } }
                }
                p.muted.small { "Issued like " code { "POST /api/v1/auth" } ": the token does not depend on this console session and outlives its logout." }
            }
        }
    };
    layout(c, Page::Tokens, "Tokens", &list, body)
}

/// Issues a token the way `POST /auth` does, with the user's password again: a token
/// issued from the console's own token (`POST /tokens`) would be its child, and die with
/// the console session at logout or after the idle limit (a child never outlives its
/// parent's revocation), and could not outlive its 12 hours. Asking for the password
/// before minting a credential is also what a stolen session cookie alone cannot do.
async fn token_issue(Post { console: c, form }: Post) -> Response {
    let scopes: Vec<&str> = form.all("scope");
    let mut body = json!({
        "username": c.user_name,
        "password": form.get("password").unwrap_or_default(),
        "expiresIn": form.text("expiresIn").unwrap_or("7 days"),
    });
    if let Some(name) = form.text("name") {
        body["name"] = json!(name);
    }
    if !scopes.is_empty() {
        body["scopes"] = json!(scopes);
    }
    let answer = c.api(Method::POST, "/auth", Some(&body)).await;
    match answer.json::<IssuedToken>() {
        Ok(t) => {
            let flash = Flash::ok(format!("Token issued{}.", t.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()));
            tokens_page(&c, vec![flash], Some(t)).await
        }
        Err(p) => {
            let mut flash = Flash::problem(&p);
            match p.code.as_str() {
                "wrong_credentials" | "empty_credentials" => flash.text = "Wrong password: no token was issued.".into(),
                "too_many_attempts" => {
                    if let Some(secs) = answer.retry_after() {
                        flash.text = format!("Too many wrong passwords: try again in {secs} s.");
                    }
                }
                _ => {}
            }
            tokens_page(&c, vec![flash], None).await
        }
    }
}

#[derive(serde::Deserialize)]
struct IdQuery {
    id: Option<String>,
}

/// The `?id=` of an edit page.
fn query_id(query: Result<Query<IdQuery>, axum::extract::rejection::QueryRejection>) -> String {
    query.ok().and_then(|Query(q)| q.id).unwrap_or_default()
}

/// `GET /console/tokens/edit?id=`: the seed-001 update form of one token.
async fn token_edit(c: Console, query: Result<Query<IdQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let id = query_id(query);
    let mut list = Vec::new();
    let tokens: Vec<TokenInfo> = load(&c, "/tokens", &mut list).await.unwrap_or_default();
    let Some(t) = tokens.iter().find(|t| t.id == id) else {
        list.push(Flash::error("No such live token.".into()));
        return tokens_page(&c, list, None).await;
    };
    let fl = t.fl.map(|f| if f == -1 { "-1".to_owned() } else { format!("0x{f:X}") }).unwrap_or_default();
    let items = t.items.as_ref().map(|v| v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")).unwrap_or_default();
    let body = html! {
        p { a href="/console/tokens" { "← Tokens" } }
        section.card.narrow {
            h2 { "Update " (t.name.as_deref().unwrap_or("token")) " " span.count { code { (t.id) } } }
            p.muted.small { "Seed 001 update: the token keeps its string, and every proxy applies the change as fast as a revocation. Blank flags: no flag limit; blank items: all items. A token never gets more than the token it was issued from." }
            dl.facts { dt { "Scopes" } dd { (scopes(t.scopes.as_deref())) } dt { "Expires" } dd { (when(t.expires_at)) } }
            form.stack method="post" action="/console/tokens/update" #update-token {
                (csrf(&c))
                input type="hidden" name="id" value=(t.id);
                label { span { "Flags " span.muted { "(0x100 online, 0x200 view, 0x400 edit, 0x800 sensitive, 0x1000 critical, 0x2000 commands; -1 unlimited)" } }
                    input type="text" name="fl" value=(fl) placeholder="no flag limit"; }
                label { span { "Items " span.muted { "(object ids, comma-separated)" } } input type="text" name="items" value=(items) placeholder="all items"; }
                label { "App" input type="text" name="app" value=(t.app.as_deref().unwrap_or("")); }
                div { button.btn.btn-primary type="submit" { "Save" } }
            }
        }
    };
    layout(&c, Page::Tokens, "Update a token", &list, body)
}

async fn token_update(Post { console: c, form }: Post) -> Response {
    let result = async {
        let id = id_field(&form, "id")?;
        let app = form.text("app");
        let body = json!({"callMode": "update", "h": id, "fl": number(&form, "fl")?, "items": id_list(&form, "items")?, "app": app});
        c.api(Method::POST, "/tokens/update", Some(&body)).await.json::<ManagedToken>()
    }
    .await;
    let flash = outcome(result, |t| format!("Token {} updated; every proxy applies the change without a new token string.", t.h));
    tokens_page(&c, vec![flash], None).await
}

async fn token_revoke(Post { console: c, form }: Post) -> Response {
    let path = format!("/tokens/{{id}}?wait={REVOKE_WAIT_MS}");
    let result = on_id(&c, &form, Method::DELETE, &path, None).await.and_then(|a| a.json::<Propagation>());
    let own = form.get("id") == Some(c.token_id.as_str());
    let flash = outcome(result, |p| format!("Token revoked with its descendants: {} (version {}).", enforced(&p.proxies), p.version));
    if own && flash.kind == Kind::Ok {
        return super::to_login(Some("out"), c.origin.https);
    }
    tokens_page(&c, vec![flash], None).await
}

// ---------------------------------------------------------------- users

async fn users(c: Console) -> Response {
    users_page(&c, Vec::new()).await
}

/// The users in tree order with their depth.
fn tree(users: &[UserInfo]) -> Vec<(usize, &UserInfo)> {
    let ids: std::collections::HashSet<&str> = users.iter().map(|u| u.id.as_str()).collect();
    let mut out = Vec::new();
    fn visit<'u>(
        users: &'u [UserInfo],
        parent: Option<&str>,
        depth: usize,
        out: &mut Vec<(usize, &'u UserInfo)>,
        ids: &std::collections::HashSet<&str>,
    ) {
        for u in users {
            let is_root = u.crt.as_deref().is_none_or(|p| !ids.contains(p));
            let here = if parent.is_none() { is_root } else { u.crt.as_deref() == parent };
            if here && depth < 32 {
                out.push((depth, u));
                visit(users, Some(&u.id), depth + 1, out, ids);
            }
        }
    }
    visit(users, None, 0, &mut out, &ids);
    out
}

async fn users_page(c: &Console, mut list: Vec<Flash>) -> Response {
    let all: Vec<UserInfo> = load(c, "/users", &mut list).await.unwrap_or_default();
    let ordered = tree(&all);
    let name_of = |id: &Option<String>| id.as_ref().and_then(|id| all.iter().find(|u| &u.id == id)).map(|u| u.nm.clone());
    let body = html! {
        section.card {
            h2 { "Users " span.count { (all.len()) } }
            p.muted.small { "Your user and the users under it. Deleting a user revokes every token of it and of the users under it." }
            div.table-wrap {
                table data-table="users" {
                    thead { tr { th { "Name" } th { "Role" } th { "Flags" } th { "PIN" } th { "Properties" } th { "Created" } th { "Last login" } th { } } }
                    tbody {
                        @for (depth, u) in &ordered {
                            tr data-id=(u.id) data-name=(u.nm) {
                                td { span class=(format!("tree depth-{}", depth.min(&6))) { @if *depth > 0 { span.branch { "└ " } } strong { (u.nm) } } br; span.muted.small { (short(&u.id)) @if let Some(p) = name_of(&u.crt) { " · under " (p) } } }
                                td { span.badge.badge-strong[u.role == "admin"] { (u.role) } }
                                td { (flags(Some(u.fl))) }
                                td { @if u.pin { span.badge.badge-ok { "set" } } @else { span.muted { "—" } } }
                                td { @if let Some(m) = u.prp.as_object() { @for (k, v) in m { span.kv { (k) "=" (v.as_str().map_or_else(|| v.to_string(), str::to_owned)) } " " } } }
                                td { (when(u.ct.saturating_mul(1000))) }
                                td { (when_opt(u.ld.map(|s| s.saturating_mul(1000)))) }
                                td.actions {
                                    a.btn.btn-small.btn-ghost href=(format!("/console/users/edit?id={}", u.id)) { "Edit" }
                                    (button_form(c, "/console/users/delete", &[("id", &u.id)], "Delete", "btn-danger", Some("Delete this user and every user under it, and revoke all their tokens?")))
                                }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Create a user" }
            form.stack method="post" action="/console/users/create" #create-user {
                (csrf(c))
                div.row {
                    label { "Name" input type="text" name="name" required autocapitalize="none" spellcheck="false"; }
                    label { "Role" select name="role" { option value="user" selected { "user" } option value="admin" { "admin" } } }
                }
                div.row {
                    label { span { "Password " span.muted { "(at least 8 characters)" } } input type="password" name="password" autocomplete="new-password" required; }
                    label { span { "PIN " span.muted { "(optional, 6-12 digits)" } } input type="password" name="pin" inputmode="numeric" autocomplete="off"; }
                }
                div.row {
                    label { "Flags" input type="text" name="fl" placeholder="0"; }
                    label { span { "Properties " span.muted { "(key=value lines)" } } textarea name="prp" rows="2" placeholder="language=en" {} }
                }
                div { button.btn.btn-primary type="submit" { "Create user" } }
            }
            p.muted.small { "The new user is created under your user." }
        }
    };
    layout(c, Page::Users, "Users", &list, body)
}

async fn user_create(Post { console: c, form }: Post) -> Response {
    let result = async {
        let mut body = json!({
            "name": form.text("name").unwrap_or_default(),
            "password": form.get("password").unwrap_or_default(),
            "role": form.text("role").unwrap_or("user"),
        });
        if let Some(pin) = form.text("pin") {
            body["pin"] = json!(pin);
        }
        if let Some(fl) = number(&form, "fl")? {
            body["fl"] = json!(fl);
        }
        let prp = properties(&form, "prp")?;
        if !prp.is_empty() {
            body["prp"] = Value::Object(prp);
        }
        c.api(Method::POST, "/users", Some(&body)).await.json::<UserInfo>()
    }
    .await;
    let flash = outcome(result, |u| format!("User {} created ({}).", u.nm, u.role));
    users_page(&c, vec![flash]).await
}

/// `GET /console/users/edit?id=`: role, flags, password, PIN and properties of one user.
async fn user_edit(c: Console, query: Result<Query<IdQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let id = query_id(query);
    let mut list = Vec::new();
    let all: Vec<UserInfo> = load(&c, "/users", &mut list).await.unwrap_or_default();
    let Some(u) = all.iter().find(|u| u.id == id) else {
        list.push(Flash::error("No such user under yours.".into()));
        return users_page(&c, list).await;
    };
    let body = html! {
        p { a href="/console/users" { "← Users" } }
        section.card.narrow {
            h2 { "Change " (u.nm) " " span.count { code { (u.id) } } }
            p.muted.small { "Blank password and PIN stay as they are. Changing another user's role or flags needs the admin role; you never change your own role." }
            form.stack method="post" action="/console/users/update" #update-user {
                (csrf(&c))
                input type="hidden" name="id" value=(u.id);
                input type="hidden" name="role_was" value=(u.role);
                input type="hidden" name="fl_was" value=(u.fl);
                input type="hidden" name="prp_was" value=(properties_text(&u.prp));
                div.row {
                    label { "Role" select name="role" { @for r in ["user", "admin"] { option value=(r) selected[r == u.role] { (r) } } } }
                    label { "Flags" input type="text" name="fl" value=(u.fl); }
                }
                div.row {
                    label { "New password" input type="password" name="password" autocomplete="new-password" placeholder="unchanged"; }
                    label { "New PIN" input type="password" name="pin" inputmode="numeric" autocomplete="off" placeholder=(if u.pin { "unchanged (6-12 digits)" } else { "none (6-12 digits)" }); }
                }
                @if u.pin { label.check { input type="checkbox" name="pin_remove" value="1"; "Remove the PIN" } }
                label { span { "Properties " span.muted { "(key=value lines)" } } textarea name="prp" rows="4" { (properties_text(&u.prp)) } }
                div { button.btn.btn-primary type="submit" { "Save" } }
            }
        }
    };
    layout(&c, Page::Users, "Change a user", &list, body)
}

async fn user_update(Post { console: c, form }: Post) -> Response {
    let result = async {
        let id = id_field(&form, "id")?;
        let mut body = Map::new();
        if form.text("role") != form.text("role_was") {
            body.insert("role".into(), json!(form.text("role")));
        }
        let fl = number(&form, "fl")?;
        if fl.map(|f| f.to_string()).as_deref() != form.text("fl_was") {
            body.insert("fl".into(), json!(fl.unwrap_or(0)));
        }
        if let Some(p) = form.get("password").filter(|p| !p.is_empty()) {
            body.insert("password".into(), json!(p));
        }
        if form.get("pin_remove") == Some("1") {
            body.insert("pin".into(), Value::Null);
        } else if let Some(pin) = form.text("pin") {
            body.insert("pin".into(), json!(pin));
        }
        let prp = properties(&form, "prp")?;
        let was = properties(&form, "prp_was")?;
        if prp != was {
            body.insert("prp".into(), Value::Object(prp));
        }
        if body.is_empty() {
            return Err(Problem { status: 400, code: "nothing_changed".into(), message: "Nothing was changed.".into() });
        }
        let fields = body.keys().cloned().collect::<Vec<_>>().join(", ");
        c.api(Method::PATCH, &format!("/users/{id}"), Some(&Value::Object(body))).await.json::<UserInfo>().map(|u| (u, fields))
    }
    .await;
    let flash = outcome(result, |(u, fields)| format!("User {} updated ({fields}).", u.nm));
    users_page(&c, vec![flash]).await
}

async fn user_delete(Post { console: c, form }: Post) -> Response {
    let result = on_id(&c, &form, Method::DELETE, "/users/{id}", None).await.and_then(|a| a.done());
    let flash = outcome(result, |()| "User deleted, with the users under it; their tokens are revoked.".to_owned());
    users_page(&c, vec![flash]).await
}

// ---------------------------------------------------------------- sessions

async fn sessions(c: Console) -> Response {
    sessions_page(&c, Vec::new()).await
}

async fn sessions_page(c: &Console, mut list: Vec<Flash>) -> Response {
    let all: Vec<SessionInfo> = load(c, "/sessions", &mut list).await.unwrap_or_default();
    let body = html! {
        section.card {
            h2 { "Live sessions " span.count { (all.len()) } }
            p.muted.small { "Seed 003 sessions (POST /api/v1/token/login) of your user and the users under it. A session unused for "
                (c.state.config.session_idle_secs / 60) " minutes ends at every proxy." }
            div.table-wrap {
                table data-table="sessions" {
                    thead { tr { th { "Session" } th { "User" } th { "Operator" } th { "Token" } th { "Started" } th { "Last use" } th { "Idle end" } th { } } }
                    tbody {
                        @if all.is_empty() { (empty_row(8, "No live sessions.")) }
                        @for s in &all {
                            tr data-id=(s.id) {
                                td { (short(&s.id)) }
                                td { (s.user.nm) }
                                td { (s.operator.nm) }
                                td { (short(&s.token)) }
                                td { (when(s.created_at)) }
                                td { (when(s.last_used_at)) }
                                td { (when(s.idle_ends_at)) }
                                td.actions { (button_form(c, "/console/sessions/end", &[("id", &s.id)], "End", "btn-danger", Some("End this session at every proxy?"))) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(c, Page::Sessions, "Sessions", &list, body)
}

async fn session_end(Post { console: c, form }: Post) -> Response {
    let result = on_id(&c, &form, Method::DELETE, "/sessions/{id}", None).await.and_then(|a| a.done());
    let flash = outcome(result, |()| "Session ended; every proxy refuses it.".to_owned());
    sessions_page(&c, vec![flash]).await
}

// ---------------------------------------------------------------- vouchers

#[derive(serde::Deserialize)]
struct PageQuery {
    after: Option<String>,
}

async fn vouchers(c: Console, query: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>) -> Response {
    let after = query.ok().and_then(|Query(q)| q.after);
    vouchers_page(&c, Vec::new(), after.as_deref(), None).await
}

/// "100123456789" → "1001 2345 6789", as printed on the voucher.
fn grouped(code: &str) -> String {
    code.as_bytes().chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect::<Vec<_>>().join(" ")
}

async fn vouchers_page(c: &Console, mut list: Vec<Flash>, after: Option<&str>, fresh: Option<GeneratedVouchers>) -> Response {
    let path = match after.filter(|a| a.bytes().all(|b| b.is_ascii_alphanumeric())) {
        Some(a) => format!("/vouchers?after={a}&limit=100"),
        None => "/vouchers?limit=100".to_owned(),
    };
    let page: Option<VoucherList> = load(c, &path, &mut list).await;
    let networks: Vec<NetworkInfo> = load::<NetworkList>(c, "/networks", &mut list).await.map(|n| n.networks).unwrap_or_default();
    let body = html! {
        @if let Some(g) = &fresh {
            section.card.reveal #generated {
                h2 { (g.vouchers.len()) " new vouchers" }
                ul.codes { @for v in &g.vouchers { li { code { (grouped(&v.code)) } } } }
                p { a.btn.btn-primary href="/console/vouchers/pdf" download="vouchers.pdf" { "Download the PDF" } }
            }
        }
        @if networks.is_empty() {
            div.flash data-kind="info" { "No network yet: a voucher works only in its account's networks. " a href="/console/networks" { "Create one" } "." }
        }
        section.card {
            h2 { "Generate vouchers" }
            form.stack method="post" action="/console/vouchers/generate" #generate {
                (csrf(c))
                div.row {
                    label { "How many" input type="number" name="count" min="1" max="200" value="10" required; }
                    label { "Kind" select name="kind" { option value="single" selected { "single-use (one device)" } option value="multi" { "multi-use (any number of devices)" } } }
                    label { "Valid for"
                        select name="days" {
                            option value="" { "unlimited" }
                            @for d in [1, 2, 3, 7, 14, 30] { option value=(d) selected[d == 1] { (d) @if d == 1 { " day" } @else { " days" } } }
                        }
                    }
                }
                p.muted.small { "Time runs from each device's activation; an unused voucher never expires." }
                div { button.btn.btn-primary type="submit" { "Generate" } }
            }
        }
        @if let Some(p) = &page {
            section.card {
                div.card-head {
                    h2 { "Vouchers " span.count { (p.unused) " unused of " (p.limit) } }
                    a.btn #pdf href="/console/vouchers/pdf" download="vouchers.pdf" { "Download PDF" }
                }
                div.table-wrap {
                    table data-table="vouchers" {
                        thead { tr { th { "Code" } th { "State" } th { "Kind" } th { "Days" } th { "Created" } th { "Devices" } th { } } }
                        tbody {
                            @if p.vouchers.is_empty() { (empty_row(7, "No vouchers.")) }
                            @for v in &p.vouchers {
                                tr data-id=(v.id) data-state=(v.state) {
                                    td { @if let Some(code) = &v.code { code.voucher { (grouped(code)) } } @else { (short(&v.id)) } }
                                    td { span class=(format!("badge state-{}", v.state)) { (v.state) } }
                                    td { (v.kind) }
                                    td { (v.days.map_or_else(|| "unlimited".to_owned(), |d| d.to_string())) }
                                    td { (when(v.created_at)) }
                                    td {
                                        @if v.activations.is_empty() { span.muted { "—" } }
                                        @for a in &v.activations { div.small { code { (a.device) } " on " (a.network) " · " (a.state) } }
                                    }
                                    td.actions {
                                        @if v.state != "revoked" {
                                            (button_form(c, "/console/vouchers/revoke", &[("id", &v.id)], "Revoke", "btn-ghost", Some("Revoke this voucher? Its devices lose access at every proxy.")))
                                        }
                                        (button_form(c, "/console/vouchers/delete", &[("id", &v.id)], "Delete", "btn-danger", Some("Delete this voucher?")))
                                    }
                                }
                            }
                        }
                    }
                }
                @if let Some(next) = &p.next { p { a.btn href=(format!("/console/vouchers?after={next}")) { "Next page →" } } }
            }
        }
    };
    layout(c, Page::Vouchers, "Vouchers", &list, body)
}

async fn voucher_generate(Post { console: c, form }: Post) -> Response {
    let result = async {
        let count = number(&form, "count")?.ok_or_else(|| bad_field("count", "is required"))?;
        let body = json!({"count": count, "kind": form.text("kind").unwrap_or("single"), "days": number(&form, "days")?});
        c.api(Method::POST, "/vouchers", Some(&body)).await.json::<GeneratedVouchers>()
    }
    .await;
    match result {
        Ok(g) => {
            let flash = Flash::ok(format!("{} vouchers generated; {} unused of {}.", g.vouchers.len(), g.unused, g.limit));
            vouchers_page(&c, vec![flash], None, Some(g)).await
        }
        Err(p) => vouchers_page(&c, vec![Flash::problem(&p)], None, None).await,
    }
}

async fn voucher_revoke(Post { console: c, form }: Post) -> Response {
    voucher_end(c, form, false).await
}

async fn voucher_delete(Post { console: c, form }: Post) -> Response {
    voucher_end(c, form, true).await
}

async fn voucher_end(c: Console, form: super::Form, delete: bool) -> Response {
    let (method, path) = if delete { (Method::DELETE, "/vouchers/{id}") } else { (Method::POST, "/vouchers/{id}/revoke") };
    let result = on_id(&c, &form, method, path, None).await.and_then(|a| a.json::<VoucherRevoked>());
    let flash = outcome(result, |r| {
        let what = if delete { "deleted" } else { "revoked" };
        match &r.proxies {
            Some(p) if r.revoked_activations > 0 => {
                format!("Voucher {what}; {} activations revoked, {}.", r.revoked_activations, enforced(p))
            }
            _ => format!("Voucher {what}."),
        }
    });
    vouchers_page(&c, vec![flash], None, None).await
}

/// `GET /console/vouchers/pdf`: the API's PDF, passed through.
async fn voucher_pdf(c: Console) -> Response {
    let answer = c.get("/vouchers/pdf").await;
    if !answer.status.is_success() {
        let mut list = vec![Flash::problem(&answer.problem())];
        list.push(Flash::info("The PDF could not be made.".into()));
        return vouchers_page(&c, list, None, None).await;
    }
    let mut response = answer.body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/pdf"));
    let disposition = answer
        .headers
        .get(header::CONTENT_DISPOSITION)
        .cloned()
        .unwrap_or(HeaderValue::from_static("attachment; filename=\"vouchers.pdf\""));
    h.insert(header::CONTENT_DISPOSITION, disposition);
    response
}

// ---------------------------------------------------------------- networks

/// A network id (`vouchers::check_network_id`) as an HTML `pattern` (a `v`-mode regular
/// expression: the `-` in the class is escaped).
const NETWORK_ID_PATTERN: &str = r"[a-z0-9][a-z0-9._\-]{0,62}";

async fn networks(c: Console) -> Response {
    networks_page(&c, Vec::new()).await
}

async fn networks_page(c: &Console, mut list: Vec<Flash>) -> Response {
    let all: Vec<NetworkInfo> = load::<NetworkList>(c, "/networks", &mut list).await.map(|n| n.networks).unwrap_or_default();
    let body = html! {
        section.card {
            h2 { "Networks " span.count { (all.len()) } }
            p.muted.small { "A network's id is what a proxy lists in its " code { "audiences" } " and what its voucher tokens carry; only the display name can change." }
            div.table-wrap {
                table data-table="networks" {
                    thead { tr { th { "ID" } th { "Name" } th { "Created" } th { } } }
                    tbody {
                        @if all.is_empty() { (empty_row(4, "No networks.")) }
                        @for n in &all {
                            tr data-id=(n.id) {
                                td { code { (n.id) } }
                                td {
                                    form.inline-edit method="post" action="/console/networks/rename" {
                                        (csrf(c))
                                        input type="hidden" name="id" value=(n.id);
                                        input type="text" name="name" value=(n.name) aria-label="Name" required;
                                        button.btn.btn-small.btn-ghost type="submit" { "Rename" }
                                    }
                                }
                                td { (when(n.created_at)) }
                                td.actions { (button_form(c, "/console/networks/delete", &[("id", &n.id)], "Delete", "btn-danger", Some("Delete this network? Devices activated on it lose access."))) }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Create a network" }
            form.stack method="post" action="/console/networks/create" #create-network {
                (csrf(c))
                div.row {
                    label { span { "ID " span.muted { "(a-z 0-9 . _ -)" } } input type="text" name="id" required pattern=(NETWORK_ID_PATTERN) placeholder="cafe-1" autocapitalize="none" spellcheck="false"; }
                    label { "Name" input type="text" name="name" required placeholder="Cafe, first floor"; }
                }
                div { button.btn.btn-primary type="submit" { "Create network" } }
            }
        }
    };
    layout(c, Page::Networks, "Networks", &list, body)
}

async fn network_create(Post { console: c, form }: Post) -> Response {
    let body = json!({"id": form.text("id").unwrap_or_default(), "name": form.text("name").unwrap_or_default()});
    let result = c.api(Method::POST, "/networks", Some(&body)).await.json::<NetworkInfo>();
    let flash = outcome(result, |n| format!("Network {} created.", n.id));
    networks_page(&c, vec![flash]).await
}

async fn network_rename(Post { console: c, form }: Post) -> Response {
    let body = json!({"name": form.text("name").unwrap_or_default()});
    let result = on_id(&c, &form, Method::PATCH, "/networks/{id}", Some(&body)).await.and_then(|a| a.json::<NetworkInfo>());
    let flash = outcome(result, |n| format!("Network {} renamed to “{}”.", n.id, n.name));
    networks_page(&c, vec![flash]).await
}

async fn network_delete(Post { console: c, form }: Post) -> Response {
    let result = on_id(&c, &form, Method::DELETE, "/networks/{id}", None).await.and_then(|a| a.json::<VoucherRevoked>());
    let flash = outcome(result, |r| match &r.proxies {
        Some(p) if r.revoked_activations > 0 => format!("Network deleted; {} activations revoked, {}.", r.revoked_activations, enforced(p)),
        _ => "Network deleted.".to_owned(),
    });
    networks_page(&c, vec![flash]).await
}

// ---------------------------------------------------------------- proxies and keys

async fn proxies(c: Console) -> Response {
    let mut list = Vec::new();
    let all: Vec<ProxyInfo> = load(&c, "/proxies", &mut list).await.unwrap_or_default();
    let live = all.iter().filter(|p| p.live).count();
    let body = html! {
        section.card {
            h2 { "Proxies " span.count { (live) " live of " (all.len()) } }
            p.muted.small { "Each proxy reports the change-log version it has applied; a revocation, amendment or key reaches a proxy when its version passes the change's." }
            div.table-wrap {
                table data-table="proxies" {
                    thead { tr { th { "Proxy" } th { "State" } th { "Applied version" } th { "Lag" } th { "Last seen" } } }
                    tbody {
                        @if all.is_empty() { (empty_row(5, "No proxy has synced yet.")) }
                        @for p in &all {
                            tr data-id=(p.id) {
                                td { code { (p.id) } }
                                td { (yes_no(p.live, "live", "gone")) }
                                td { (p.version) }
                                td { @if p.lag_versions == 0 { span.badge.badge-ok { "current" } } @else { span.badge.badge-warn { (p.lag_versions) " behind" } } }
                                td { (when(p.last_seen_at)) }
                            }
                        }
                    }
                }
            }
        }
    };
    layout(&c, Page::Proxies, "Proxies", &list, body)
}

async fn keys(c: Console) -> Response {
    keys_page(&c, Vec::new()).await
}

async fn keys_page(c: &Console, mut list: Vec<Flash>) -> Response {
    let all: Vec<KeyInfo> = load(c, "/keys", &mut list).await.unwrap_or_default();
    let body = html! {
        section.card {
            h2 { "Signing keys " span.count { (all.iter().filter(|k| k.published).count()) " published" } }
            div.table-wrap {
                table data-table="keys" {
                    thead { tr { th { "Key id" } th { "State" } th { "Created" } th { "Retired" } th { "Withdrawn" } } }
                    tbody {
                        @if all.is_empty() { (empty_row(5, "No keys to show.")) }
                        @for k in &all {
                            tr data-id=(k.kid) {
                                td { code { (k.kid) } }
                                td {
                                    @if k.signing { span.badge.badge-ok { "signing" } " " }
                                    (yes_no(k.published, "published", "not published"))
                                }
                                td { (when(k.created_at)) }
                                td { (when_opt(k.retired_at)) }
                                td { (when_opt(k.withdrawn_at)) }
                            }
                        }
                    }
                }
            }
        }
        section.card {
            h2 { "Rotate" }
            p { "A new key is published at once and signs 2 s later, after the proxies have it. Old keys stay published while their tokens live." }
            form.stack method="post" action="/console/keys/rotate" data-confirm="Rotate the signing key?" #rotate {
                (csrf(c))
                label.check { input type="checkbox" name="retireOldest" value="1"; "Withdraw the oldest key if the cap is reached (revokes every live token it signed)" }
                div { button.btn.btn-primary type="submit" { "Rotate the signing key" } }
            }
        }
    };
    layout(c, Page::Keys, "Keys", &list, body)
}

async fn keys_rotate(Post { console: c, form }: Post) -> Response {
    let path = if form.get("retireOldest") == Some("1") { "/keys/rotate?retireOldest=true" } else { "/keys/rotate" };
    let result = c.api(Method::POST, path, None).await.json::<Rotated>();
    let flash = outcome(result, |r| {
        let mut text = format!("New signing key {}: {}.", r.kid, enforced(&r.proxies));
        if !r.withdrawn.is_empty() {
            text.push_str(&format!(" Withdrawn: {} ({} tokens revoked).", r.withdrawn.join(", "), r.revoked_tokens));
        }
        text
    });
    keys_page(&c, vec![flash]).await
}

// ---------------------------------------------------------------- explain

async fn explain(c: Console) -> Response {
    explain_page(&c, Vec::new(), "", "", None).await
}

async fn explain_page(c: &Console, mut list: Vec<Flash>, request: &str, token: &str, verdict: Option<Explanation>) -> Response {
    let tokens: Vec<TokenInfo> = load(c, "/tokens", &mut list).await.unwrap_or_default();
    let body = html! {
        section.card {
            h2 { "Why was this refused?" }
            p.muted.small { "Runs the gate's own decision (path checks, scopes, the route table's flags and items, amendments) for a token, without calling the API." }
            form.stack method="post" action="/console/explain" #explain {
                (csrf(c))
                label { span { "Request " span.muted { "(METHOD /path, as the gate sees it)" } } input type="text" name="request" value=(request) placeholder="DELETE /api/v1/objects/42" required spellcheck="false" autocapitalize="none"; }
                label { span { "Token " span.muted { "(its _id; empty: this console's token)" } }
                    input type="text" name="token" value=(token) list="live-tokens" placeholder="_id of a token" spellcheck="false" autocapitalize="none";
                }
                datalist #live-tokens {
                    @for t in &tokens { option value=(t.id) { (t.name.as_deref().unwrap_or("(no name)")) } }
                }
                div { button.btn.btn-primary type="submit" { "Explain" } }
            }
        }
        @if let Some(v) = &verdict {
            section.card #verdict data-allowed=(v.allowed) {
                @if v.allowed {
                    div.verdict.verdict-ok { "Allowed" }
                } @else {
                    div.verdict.verdict-no { "Refused" @if let Some(code) = &v.code { ": " code { (code) } } }
                }
                dl.facts {
                    dt { "Scope that allowed it" } dd { (v.scope.as_deref().unwrap_or("—")) }
                    dt { "Route" } dd { code { (v.route.as_deref().unwrap_or("—")) } }
                    dt { "Flags needed" } dd { (flags(v.required_flags)) }
                    dt { "Flags missing" } dd { (v.missing_flags.map_or_else(|| "—".to_owned(), |m| if m == 0 { "none".to_owned() } else { format!("0x{m:X}") })) }
                    @if let Some(i) = &v.item { dt { "Item refused" } dd { code { ":" (i.param) " = " (i.value) } } }
                    dt { "Token" } dd { code { (v.token.id) } }
                    dt { "Its scopes" } dd { (scopes(v.token.scopes.as_deref())) }
                    dt { "Its flags" } dd { (flags(v.token.fl)) }
                    dt { "Its items" } dd { (items(v.token.items.as_deref())) }
                }
            }
        }
    };
    layout(c, Page::Explain, "Explain", &list, body)
}

async fn explain_run(Post { console: c, form }: Post) -> Response {
    let request = form.text("request").unwrap_or_default().to_owned();
    let token = form.text("token").unwrap_or_default().to_owned();
    let mut body = json!({"request": request});
    if !token.is_empty() {
        body["token"] = json!(token);
    }
    match c.api(Method::POST, "/explain", Some(&body)).await.json::<Explanation>() {
        Ok(v) => explain_page(&c, Vec::new(), &request, &token, Some(v)).await,
        Err(p) => explain_page(&c, vec![Flash::problem(&p)], &request, &token, None).await,
    }
}

// ---------------------------------------------------------------- audit

/// The audit page's filters (`GET /console/audit?user=&kind=&since=&before=`).
#[derive(serde::Deserialize, Default)]
struct AuditFilters {
    user: Option<String>,
    kind: Option<String>,
    /// `1h`, `24h`, `7d`, `30d` or empty (all).
    since: Option<String>,
    before: Option<String>,
}

const SINCE: [(&str, &str, i64); 4] = [
    ("1h", "the last hour", 3_600_000),
    ("24h", "the last 24 hours", 86_400_000),
    ("7d", "the last 7 days", 7 * 86_400_000),
    ("30d", "the last 30 days", 30 * 86_400_000),
];

/// The kind filter's choices: every prefix, then every kind.
fn kind_choices() -> Vec<String> {
    let mut prefixes: Vec<String> = crate::audit::KINDS.iter().filter_map(|k| k.split_once('.').map(|(p, _)| format!("{p}."))).collect();
    prefixes.dedup();
    prefixes.into_iter().chain(crate::audit::KINDS.iter().map(|k| (*k).to_owned())).collect()
}

/// Percent-encodes a query value.
fn query_value(v: &str) -> String {
    serde_urlencoded::to_string([("v", v)]).map(|s| s.trim_start_matches("v=").to_owned()).unwrap_or_default()
}

/// An entry's detail as `key=value` chips (nulls left out).
fn detail(v: &Value) -> Markup {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    };
    match v.as_object() {
        Some(m) => html! { @for (k, v) in m { @if !v.is_null() { span.kv { (k) "=" (text(v)) } " " } } },
        None if v.is_null() => html! {},
        None => html! { span.kv { (text(v)) } },
    }
}

async fn audit(c: Console, query: Result<Query<AuditFilters>, axum::extract::rejection::QueryRejection>) -> Response {
    let f = query.map(|Query(q)| q).unwrap_or_default();
    let text = |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
    let (user, kind, since, before) = (text(&f.user), text(&f.kind), text(&f.since), text(&f.before));
    // The filters without the page, for the "older" link.
    let mut filters = Vec::new();
    if let Some(u) = &user {
        filters.push(format!("user={}", query_value(u)));
    }
    if let Some(k) = &kind {
        filters.push(format!("kind={}", query_value(k)));
    }
    let mut api = vec!["limit=50".to_owned()];
    api.extend(filters.iter().cloned());
    if let Some(s) = &since {
        filters.push(format!("since={}", query_value(s)));
        if let Some((_, _, ms)) = SINCE.iter().find(|(k, _, _)| k == s) {
            api.push(format!("from={}", crate::db::now_ms().saturating_sub(*ms)));
        }
    }
    if let Some(b) = &before {
        api.push(format!("before={}", query_value(b)));
    }
    let mut list = Vec::new();
    let page: Option<AuditPage> = load(&c, &format!("/audit?{}", api.join("&")), &mut list).await;
    let body = html! {
        section.card {
            form.filters method="get" action="/console/audit" #audit-filter {
                div.row {
                    label { "User" input type="text" name="user" value=(user.as_deref().unwrap_or("")) placeholder="any user" autocapitalize="none" spellcheck="false"; }
                    label { "Kind"
                        select name="kind" {
                            option value="" { "any" }
                            @for k in kind_choices() { option value=(k) selected[kind.as_deref() == Some(k.as_str())] { (k) @if k.ends_with('.') { "*" } } }
                        }
                    }
                    label { "Since"
                        select name="since" {
                            option value="" { "the beginning" }
                            @for (k, label, _) in SINCE { option value=(k) selected[since.as_deref() == Some(k)] { (label) } }
                        }
                    }
                    div.confirm-button.filter-button { button.btn.btn-primary type="submit" { "Filter" } }
                }
            }
        }
        @if let Some(p) = &page {
            section.card {
                h2 { "Entries " span.count { @if before.is_some() { "older page" } @else { "newest first" } } }
                div.table-wrap {
                    table data-table="audit" {
                        thead { tr { th { "When" } th { "What" } th { "Who" } th { "Target" } th { "From" } th { "Detail" } } }
                        tbody {
                            @if p.entries.is_empty() { (empty_row(6, "No entries.")) }
                            @for e in &p.entries {
                                tr data-id=(e.id) data-kind=(e.kind) {
                                    td { (when(e.at)) }
                                    td { span class=(format!("badge kind-{}", e.kind.split('.').next().unwrap_or(""))) { (e.kind) } }
                                    td {
                                        @match (&e.actor.user, &e.actor.token_id) {
                                            (None, None) => span.muted { "control plane" },
                                            (user, token) => {
                                                (user.as_deref().unwrap_or("?"))
                                                @if let Some(t) = token { br; span.small.muted { "token " (short(t)) } }
                                            }
                                        }
                                    }
                                    td { @if let Some(t) = &e.target { code.small { (t) } } @else { span.muted { "—" } } }
                                    td { (e.address.as_deref().unwrap_or("—")) }
                                    td.detail { (detail(&e.detail)) }
                                }
                            }
                        }
                    }
                }
                @if let Some(next) = p.next {
                    @let mut link = filters.clone();
                    p { a.btn #older href=({ link.push(format!("before={next}")); format!("/console/audit?{}", link.join("&")) }) { "Older entries →" } }
                }
            }
        }
    };
    layout(&c, Page::Audit, "Audit log", &list, body)
}
