//! `tokengate <command>`: the command line over the REST API. `tokengate` alone or
//! `tokengate serve` runs the server (main.rs); every other subcommand is a client.

pub mod client;
pub mod output;

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use crate::http::wire::{GeneratedVouchers, IssuedToken, KeyInfo, NetworkList, ProxyInfo, TokenInfo, UserInfo, VoucherList};
use client::{CliError, Client, ConfigFile, DEFAULT_ENDPOINT};
use output::Output;

const EXIT_CODES: &str = "Exit codes: 0 ok; 2 usage error; 3 the API refused (4xx other than 401); \
4 not authenticated (401, or no token configured); 5 endpoint unreachable, bad answer or 5xx.\n\
Server configuration (`tokengate` / `tokengate serve`) comes from the environment: TOKENGATE_LISTEN, \
DATABASE_URL, TOKENGATE_ADMIN_USER, TOKENGATE_ADMIN_PASSWORD, TOKENGATE_PROXY_SECRET, TOKENGATE_ISSUER, \
TOKENGATE_AUDIENCE, TOKENGATE_API_PREFIX, TOKENGATE_CATALOGUE, TOKENGATE_IDLE_SECS, TOKENGATE_SWEEP_SECS, \
TOKENGATE_SYNC_RECHECK_MS, TOKENGATE_METRICS (see ARCHITECTURE.md).";

#[derive(Parser, Debug)]
#[command(name = "tokengate", version, about = "The tokengate control plane (no command: serve) and its command line", after_help = EXIT_CODES)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug)]
pub struct Global {
    /// The control plane, e.g. http://127.0.0.1:8080 [env TOKENGATE_ENDPOINT; config file; default http://127.0.0.1:8080]
    #[arg(long, global = true)]
    pub endpoint: Option<String>,
    /// A bearer token (visible in shell history and `ps`: prefer `tokengate login` or TOKENGATE_TOKEN)
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// The CA certificate (PEM) that signed an https endpoint's certificate, when it is not
    /// in the system's roots [env TOKENGATE_CA_CERT; config file ca_cert]
    #[arg(long, global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    /// The API prefix of the control plane (its TOKENGATE_API_PREFIX)
    #[arg(long, global = true, default_value = "/api/v1")]
    pub prefix: String,
    /// table for people, json for scripts (the API's JSON unchanged)
    #[arg(long, global = true, value_enum, default_value = "table")]
    pub output: Output,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the control plane (the default)
    Serve,
    /// Get a token with a password and store it in the config file
    Login(Login),
    /// Forget the stored token
    Logout,
    /// API tokens
    #[command(subcommand)]
    Token(TokenCmd),
    /// Users of your account
    #[command(subcommand)]
    User(UserCmd),
    /// Seed-003 sessions
    #[command(subcommand)]
    Session(SessionCmd),
    /// Wi-Fi vouchers
    #[command(subcommand)]
    Voucher(VoucherCmd),
    /// Wi-Fi networks
    #[command(subcommand)]
    Network(NetworkCmd),
    /// The proxies: applied version, lag, liveness
    Proxies,
    /// Signing keys
    #[command(subcommand)]
    Keys(KeysCmd),
    /// Why the gate would allow or refuse a request
    Explain {
        /// "METHOD /path", e.g. "GET /api/v1/objects/42"
        request: String,
        /// The `_id` of a token of your account (default: your own token)
        #[arg(long = "token-id")]
        token_id: Option<String>,
    },
    /// The audit log (admins)
    Audit(Audit),
}

#[derive(Args, Debug)]
pub struct Login {
    /// The user name
    #[arg(long, short = 'u')]
    pub user: String,
    /// Read the password (or PIN) from stdin (first line) instead of the terminal
    #[arg(long)]
    pub password_stdin: bool,
    /// Log in with the user's PIN instead of the password (seed-002 `POST /login`)
    #[arg(long, conflicts_with = "expires_in")]
    pub pin: bool,
    /// The token's lifetime, e.g. "12 hours"
    #[arg(long)]
    pub expires_in: Option<String>,
    /// Store this endpoint (and --ca-cert) in the config file as well
    #[arg(long)]
    pub save_endpoint: bool,
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a child of your token (never more powerful)
    Create {
        #[arg(long)]
        name: Option<String>,
        /// e.g. "7 days"
        #[arg(long)]
        expires_in: Option<String>,
        /// A scope pattern such as "GET /objects/:id" (repeat; none: your token's scopes)
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Your account's tokens
    List,
    /// Revoke a token and its descendants, or every token of your user
    Revoke {
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Amend a live token (seed 001 `token/update`): flags, app, params, duration
    Update {
        id: String,
        #[arg(long)]
        app: Option<String>,
        /// Lifetime after activation, s
        #[arg(long)]
        dur: Option<u64>,
        #[arg(long)]
        fl: Option<i64>,
        /// Params: a JSON object
        #[arg(long)]
        params: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UserCmd {
    /// Create a user (the password, and with --pin the PIN, are read from the terminal
    /// without echo, or from stdin one per line with --password-stdin)
    Create {
        name: String,
        #[arg(long)]
        password_stdin: bool,
        /// user or admin
        #[arg(long)]
        role: Option<String>,
        /// Also give the user a PIN (asked like the password; never an argument, which
        /// would stay in the shell history)
        #[arg(long)]
        pin: bool,
        #[arg(long)]
        fl: Option<i64>,
    },
    List,
    /// Change a user's role, flags or password
    Update {
        id: String,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        fl: Option<i64>,
        /// Set a new password, read from the terminal or stdin
        #[arg(long)]
        password: bool,
        /// Set a new PIN, read from the terminal or stdin (after the password when both)
        #[arg(long, conflicts_with = "remove_pin")]
        pin: bool,
        /// Remove the user's PIN
        #[arg(long)]
        remove_pin: bool,
        /// Read the new password and/or PIN from stdin, one per line
        #[arg(long)]
        password_stdin: bool,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SessionCmd {
    List,
    End { id: String },
}

#[derive(Subcommand, Debug)]
pub enum VoucherCmd {
    /// Generate vouchers
    Create {
        #[arg(long, default_value_t = 1)]
        count: i64,
        /// single or multi
        #[arg(long, default_value = "single")]
        kind: String,
        /// 1..=30 days from activation (none: unlimited)
        #[arg(long)]
        days: Option<i64>,
    },
    List,
    Revoke {
        id: String,
    },
    Delete {
        id: String,
    },
    /// The printable sheet of unused vouchers
    Pdf {
        /// The file to write
        #[arg(long = "out", short = 'o', value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum NetworkCmd {
    List,
    Create {
        id: String,
        name: String,
    },
    /// Rename a network (its id, which tokens carry, stays)
    Update {
        id: String,
        #[arg(long)]
        name: String,
    },
    Delete {
        id: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    List,
    /// Rotate the signing key (two-phase)
    Rotate {
        /// Retire the oldest key
        #[arg(long)]
        retire_oldest: bool,
    },
}

#[derive(Args, Debug)]
pub struct Audit {
    /// Entries of this actor user name
    #[arg(long)]
    pub user: Option<String>,
    /// A kind (`token.revoke`) or prefix ending in '.' (`token.`)
    #[arg(long)]
    pub kind: Option<String>,
    /// From this time: ms since the epoch, or a duration back such as 1h, 30m, 2d
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub limit: Option<u32>,
    /// Entries older than this id (the `next` of the previous page)
    #[arg(long, conflicts_with = "follow")]
    pub before: Option<i64>,
    /// Keep polling for new entries (every 2 s)
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// Runs a client command; the caller maps the error to its exit code.
pub async fn run(global: Global, command: Command) -> Result<(), CliError> {
    let file = ConfigFile::load()?;
    let endpoint = global
        .endpoint
        .clone()
        .or_else(|| env("TOKENGATE_ENDPOINT"))
        .or(file.endpoint.clone())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned());
    let token = global.token.clone().or_else(|| env("TOKENGATE_TOKEN")).or(file.token.clone());
    let ca_cert = global.ca_cert.clone().or_else(|| env("TOKENGATE_CA_CERT").map(Into::into)).or(file.ca_cert.clone());
    let client = Client::new(&endpoint, &global.prefix, token, ca_cert.as_deref())?;
    let out = global.output;
    match command {
        Command::Serve => Err(CliError::usage("serve runs the server")),
        Command::Login(l) => {
            let mut file = file;
            if l.save_endpoint {
                if let Some(ca) = ca_cert {
                    // Stored absolute: later commands run from anywhere.
                    file.ca_cert = Some(std::path::absolute(&ca).unwrap_or(ca));
                }
            }
            login(&client, out, file, &endpoint, l).await
        }
        Command::Logout => {
            let mut file = file;
            file.token = None;
            let path = file.save()?;
            output::done(out, &format!("logged out ({} holds no token)", path.display()));
            Ok(())
        }
        Command::Token(c) => token_cmd(&client, out, c).await,
        Command::User(c) => user_cmd(&client, out, c).await,
        Command::Session(SessionCmd::List) => get(&client, out, "/sessions").await,
        Command::Session(SessionCmd::End { id }) => {
            send(&client, out, Method::DELETE, &format!("/sessions/{}", seg(&id)), None, "session ended").await
        }
        Command::Voucher(c) => voucher_cmd(&client, out, c).await,
        Command::Network(NetworkCmd::List) => shown::<NetworkList>(&client, out, Method::GET, "/networks", &[], None).await,
        Command::Network(NetworkCmd::Create { id, name }) => {
            send(&client, out, Method::POST, "/networks", Some(json!({"id": id, "name": name})), "").await
        }
        Command::Network(NetworkCmd::Update { id, name }) => {
            send(&client, out, Method::PATCH, &format!("/networks/{}", seg(&id)), Some(json!({"name": name})), "").await
        }
        Command::Network(NetworkCmd::Delete { id }) => {
            send(&client, out, Method::DELETE, &format!("/networks/{}", seg(&id)), None, "network deleted").await
        }
        Command::Proxies => shown::<Vec<ProxyInfo>>(&client, out, Method::GET, "/proxies", &[], None).await,
        Command::Keys(KeysCmd::List) => shown::<Vec<KeyInfo>>(&client, out, Method::GET, "/keys", &[], None).await,
        Command::Keys(KeysCmd::Rotate { retire_oldest }) => {
            let query: Vec<(&str, String)> = if retire_oldest { vec![("retireOldest", "true".to_owned())] } else { vec![] };
            let r = client.call(Method::POST, "/keys/rotate", &query, None).await?;
            output::show(out, &r)
        }
        Command::Explain { request, token_id } => {
            let mut body = json!({"request": request});
            put(&mut body, "token", token_id);
            send(&client, out, Method::POST, "/explain", Some(body), "").await
        }
        Command::Audit(a) => audit(&client, out, a).await,
    }
}

/// Sets `key` in a request body when the option has a value (absent fields stay unchanged).
fn put<T: serde::Serialize>(body: &mut Value, key: &str, value: Option<T>) {
    if let Some(v) = value {
        body[key] = json!(v);
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A path segment from user input, percent-encoded.
fn seg(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn get(client: &Client, out: Output, path: &str) -> Result<(), CliError> {
    let r = client.call(Method::GET, path, &[], None).await?;
    output::show(out, &r)
}

/// A call whose answer is shown as it comes, or `what` when it has no body (204).
async fn send(client: &Client, out: Output, method: Method, path: &str, body: Option<Value>, what: &str) -> Result<(), CliError> {
    let r = client.call(method, path, &[], body.as_ref()).await?;
    if r.body.is_empty() {
        output::done(out, what);
        return Ok(());
    }
    output::show(out, &r)
}

/// Calls the API, checks the answer has the shape of `T` (the server's wire type) and
/// shows it.
async fn shown<T: serde::de::DeserializeOwned>(
    client: &Client,
    out: Output,
    method: Method,
    path: &str,
    query: &[(&str, String)],
    body: Option<&Value>,
) -> Result<(), CliError> {
    let r = client.call(method, path, query, body).await?;
    r.typed::<T>()?;
    output::show(out, &r)
}

/// A secret from the terminal without echo, or the first line of stdin.
fn secret(prompt: &str, from_stdin: bool) -> Result<String, CliError> {
    let mut values = secrets(&[prompt], from_stdin)?;
    values.pop().ok_or_else(|| CliError::usage("empty password"))
}

/// Secrets asked at the terminal without echo, one prompt each, or read from stdin one
/// per line in the same order (with `from_stdin`, or when stdin is not a terminal).
fn secrets(prompts: &[&str], from_stdin: bool) -> Result<Vec<String>, CliError> {
    let values: Vec<String> = if from_stdin || !std::io::stdin().is_terminal() {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(|e| CliError::usage(format!("cannot read stdin: {e}")))?;
        text.lines().take(prompts.len()).map(str::to_owned).collect()
    } else {
        prompts
            .iter()
            .map(|p| rpassword::prompt_password(p).map_err(|e| CliError::usage(format!("cannot read the terminal: {e}"))))
            .collect::<Result<_, _>>()?
    };
    for (i, prompt) in prompts.iter().enumerate() {
        if values.get(i).is_none_or(String::is_empty) {
            let what = prompt.trim().trim_end_matches(':');
            return Err(CliError::usage(format!(
                "empty {what}: give one per line on stdin, in this order: {}",
                prompts.join(" ").replace(": ", ", ")
            )));
        }
    }
    Ok(values)
}

async fn login(client: &Client, out: Output, mut file: ConfigFile, endpoint: &str, l: Login) -> Result<(), CliError> {
    let secret = secret(if l.pin { "PIN: " } else { "password: " }, l.password_stdin)?;
    let issued: IssuedToken = if l.pin {
        let body = json!({"method": "auth", "requestId": "tokengate-cli", "type": "secured", "username": l.user, "credentials": secret, "credentialsKind": "pin"});
        let answer = client.open(Method::POST, "/login", &body).await?.json()?;
        let field = |k: &str| answer.get(k).cloned().unwrap_or(Value::Null);
        serde_json::from_value(json!({"_id": field("_id"), "issuedAt": 0, "expiresAt": field("expiresAt"), "user": {"name": l.user}, "token": field("token"), "name": null, "scopes": null}))
            .map_err(|e| CliError::new(client::EXIT_UNREACHABLE, format!("unexpected answer from /login: {e}")))?
    } else {
        let mut body = json!({"username": l.user, "password": secret, "name": "tokengate-cli"});
        put(&mut body, "expiresIn", l.expires_in);
        client.open(Method::POST, "/auth", &body).await?.typed()?
    };
    file.token = Some(issued.token);
    if l.save_endpoint {
        file.endpoint = Some(endpoint.to_owned());
    }
    let path = file.save()?;
    let summary =
        json!({"user": issued.user.name, "tokenId": issued.id, "expiresAt": issued.expires_at, "config": path.display().to_string()});
    match out {
        Output::Json => println!("{summary}"),
        Output::Table => {
            println!("logged in as {} (token {}), saved in {}", summary["user"].as_str().unwrap_or_default(), issued.id, path.display())
        }
    }
    Ok(())
}

async fn token_cmd(client: &Client, out: Output, c: TokenCmd) -> Result<(), CliError> {
    match c {
        TokenCmd::Create { name, expires_in, scopes } => {
            let mut body = json!({});
            put(&mut body, "name", name);
            put(&mut body, "expiresIn", expires_in);
            put(&mut body, "scopes", Some(scopes).filter(|s| !s.is_empty()));
            let r = client.call(Method::POST, "/tokens", &[], Some(&body)).await?;
            r.typed::<IssuedToken>()?;
            output::show(out, &r)
        }
        TokenCmd::List => shown::<Vec<TokenInfo>>(client, out, Method::GET, "/tokens", &[], None).await,
        TokenCmd::Revoke { id: Some(id), .. } => {
            send(client, out, Method::DELETE, &format!("/tokens/{}", seg(&id)), None, &format!("token {id} revoked")).await
        }
        TokenCmd::Revoke { id: None, .. } => {
            send(client, out, Method::POST, "/tokens/update", Some(json!({"callMode": "delete", "deleteAll": true})), "every token revoked")
                .await
        }
        TokenCmd::Update { id, app, dur, fl, params } => {
            let mut body = json!({"callMode": "update", "h": id});
            put(&mut body, "app", app);
            put(&mut body, "dur", dur);
            put(&mut body, "fl", fl);
            if let Some(p) = params {
                body["p"] = serde_json::from_str(&p).map_err(|e| CliError::usage(format!("--params is not JSON: {e}")))?;
            }
            send(client, out, Method::POST, "/tokens/update", Some(body), "token updated").await
        }
    }
}

async fn user_cmd(client: &Client, out: Output, c: UserCmd) -> Result<(), CliError> {
    match c {
        UserCmd::Create { name, password_stdin, role, pin, fl } => {
            let prompts: &[&str] =
                if pin { &["password for the new user: ", "PIN for the new user: "] } else { &["password for the new user: "] };
            let mut given = secrets(prompts, password_stdin)?.into_iter();
            let mut body = json!({"name": name, "password": given.next()});
            put(&mut body, "role", role);
            put(&mut body, "pin", given.next());
            put(&mut body, "fl", fl);
            let r = client.call(Method::POST, "/users", &[], Some(&body)).await?;
            r.typed::<UserInfo>()?;
            output::show(out, &r)
        }
        UserCmd::List => shown::<Vec<UserInfo>>(client, out, Method::GET, "/users", &[], None).await,
        UserCmd::Update { id, role, fl, password, pin, remove_pin, password_stdin } => {
            let mut body = json!({});
            put(&mut body, "role", role);
            put(&mut body, "fl", fl);
            let mut prompts = Vec::new();
            if password || (password_stdin && !pin) {
                prompts.push("new password: ");
            }
            if pin {
                prompts.push("new PIN: ");
            }
            let mut given = secrets(&prompts, password_stdin)?.into_iter();
            if prompts.first() == Some(&"new password: ") {
                body["password"] = json!(given.next());
            }
            if pin {
                body["pin"] = json!(given.next());
            }
            if remove_pin {
                body["pin"] = Value::Null;
            }
            send(client, out, Method::PATCH, &format!("/users/{}", seg(&id)), Some(body), "user updated").await
        }
        UserCmd::Delete { id } => {
            send(client, out, Method::DELETE, &format!("/users/{}", seg(&id)), None, &format!("user {id} deleted")).await
        }
    }
}

async fn voucher_cmd(client: &Client, out: Output, c: VoucherCmd) -> Result<(), CliError> {
    match c {
        VoucherCmd::Create { count, kind, days } => {
            shown::<GeneratedVouchers>(
                client,
                out,
                Method::POST,
                "/vouchers",
                &[],
                Some(&json!({"count": count, "kind": kind, "days": days})),
            )
            .await
        }
        VoucherCmd::List => shown::<VoucherList>(client, out, Method::GET, "/vouchers", &[], None).await,
        VoucherCmd::Revoke { id } => {
            send(client, out, Method::POST, &format!("/vouchers/{}/revoke", seg(&id)), None, "voucher revoked").await
        }
        VoucherCmd::Delete { id } => {
            send(client, out, Method::DELETE, &format!("/vouchers/{}", seg(&id)), None, &format!("voucher {id} deleted")).await
        }
        VoucherCmd::Pdf { out: path } => {
            if path.as_os_str() == "-" {
                return Err(CliError::usage("-o -: the sheet is binary; give a file name (it is never written to the terminal)"));
            }
            let r = client.call(Method::GET, "/vouchers/pdf", &[], None).await?;
            std::fs::write(&path, &r.body).map_err(|e| CliError::new(1, format!("cannot write {}: {e}", path.display())))?;
            output::done(out, &format!("wrote {} ({} bytes)", path.display(), r.body.len()));
            Ok(())
        }
    }
}

/// `--since`: ms since the epoch, or `<n>s|m|h|d` back from now.
fn since_ms(s: &str) -> Result<i64, CliError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let (n, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = n.parse().map_err(|_| CliError::usage(format!("--since {s:?}: use ms since the epoch or 30s, 15m, 2h, 7d")))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(CliError::usage(format!("--since {s:?}: use ms since the epoch or 30s, 15m, 2h, 7d"))),
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    Ok(now - secs * 1000)
}

async fn audit(client: &Client, out: Output, a: Audit) -> Result<(), CliError> {
    let mut query: Vec<(&str, String)> = Vec::new();
    if let Some(u) = &a.user {
        query.push(("user", u.clone()));
    }
    if let Some(k) = &a.kind {
        query.push(("kind", k.clone()));
    }
    if let Some(s) = &a.since {
        query.push(("from", since_ms(s)?.to_string()));
    }
    if let Some(l) = a.limit {
        query.push(("limit", l.to_string()));
    }
    if let Some(b) = a.before {
        query.push(("before", b.to_string()));
    }
    let r = client.call(Method::GET, "/audit", &query, None).await.map_err(|e| match e.status {
        Some(404) => {
            CliError::new(e.exit, format!("{}\n  this control plane has no audit log (GET <prefix>/audit): upgrade it", e.message))
        }
        _ => e,
    })?;
    show_audit(out, &r, true)?;
    if !a.follow {
        return Ok(());
    }
    let page = r.json()?;
    let mut last = page["entries"].as_array().and_then(|e| e.iter().filter_map(|x| x["id"].as_i64()).max()).unwrap_or(0);
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let mut q = query.clone();
        q.push(("after", last.to_string()));
        let r = client.call(Method::GET, "/audit", &q, None).await?;
        let page = r.json()?;
        let entries = page["entries"].as_array().cloned().unwrap_or_default();
        if entries.is_empty() {
            continue;
        }
        last = entries.iter().filter_map(|x| x["id"].as_i64()).max().unwrap_or(last);
        show_audit(out, &r, false)?;
    }
}

/// An audit page: JSON unchanged, or a table with the actor's user in a column of its own
/// (and, on the first page, `next` for paging back).
fn show_audit(out: Output, r: &client::Reply, first: bool) -> Result<(), CliError> {
    if out == Output::Json {
        return output::show(out, r);
    }
    let page = r.json()?;
    let rows: Vec<Value> = page["entries"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| json!({"id": e["id"], "at": e["at"], "kind": e["kind"], "user": e["actor"]["user"], "tokenId": e["actor"]["tokenId"], "target": e["target"], "address": e["address"], "detail": e["detail"]}))
                .collect()
        })
        .unwrap_or_default();
    if rows.is_empty() && !first {
        return Ok(());
    }
    println!("{}", output::render(&Value::Array(rows)));
    if first && !page["next"].is_null() {
        println!("older entries: tokengate audit --before {}", page["next"]);
    }
    Ok(())
}
