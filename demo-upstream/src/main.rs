//! The demo upstream: an API that echoes what it received, so a new user sees the gate
//! work (which identity headers Envoy added, which path reached the upstream).
//!
//! Every method on every path answers 200 with
//! `{"service","method","path","query","headers","body_bytes"}`. `path` is the raw path
//! exactly as the request line carried it (the end-to-end tests compare it with what the
//! filter authorized, so it must not be decoded or normalized here), `query` the raw query
//! string or `null`. `headers` holds every received header but the credentials
//! (`authorization`, `proxy-authorization`, `cookie`): an echo must never show a token.

use std::net::SocketAddr;

use axum::body::{to_bytes, Body};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Map, Value};

const DEFAULT_LISTEN: &str = "127.0.0.1:8081";
/// Bodies are read only to report their size; anything larger is refused.
const MAX_BODY: usize = 1024 * 1024;
/// Headers never echoed: they carry credentials.
const HIDDEN_HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "cookie"];

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() {
    if let Err(err) = run().await {
        eprintln!("demo-upstream: {err}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let listen = listen_addr(std::env::args().skip(1), std::env::var("DEMO_UPSTREAM_LISTEN").ok())?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|err| format!("cannot listen on {listen}: {err}"))?;
    // The bound address, so `--listen 127.0.0.1:0` reports the port it got.
    let local = listener.local_addr()?;
    println!("demo-upstream listening on {local}");
    axum::serve(listener, app()).with_graceful_shutdown(shutdown()).await?;
    Ok(())
}

/// `--listen ADDR` (or `--listen=ADDR`) wins over `DEMO_UPSTREAM_LISTEN`, which wins over
/// the default.
fn listen_addr(mut args: impl Iterator<Item = String>, env: Option<String>) -> Result<SocketAddr, BoxError> {
    let mut chosen = env.filter(|value| !value.is_empty());
    while let Some(arg) = args.next() {
        if arg == "--listen" {
            chosen = Some(args.next().ok_or("--listen needs an address, e.g. 127.0.0.1:8081")?);
        } else if let Some(value) = arg.strip_prefix("--listen=") {
            chosen = Some(value.to_owned());
        } else if arg == "--help" || arg == "-h" {
            println!("usage: demo-upstream [--listen ADDR]   (or DEMO_UPSTREAM_LISTEN=ADDR; default {DEFAULT_LISTEN})");
            std::process::exit(0);
        } else {
            return Err(format!("unknown argument {arg:?} (usage: demo-upstream [--listen ADDR])").into());
        }
    }
    let addr = chosen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    addr.parse().map_err(|err| format!("bad listen address {addr:?}: {err}").into())
}

fn app() -> Router {
    // One fallback for every method and path: the demo API's routes
    // (`/api/v1/objects`, `/api/v1/objects/:id`, ...) are all the same echo.
    Router::new().fallback(echo_handler)
}

async fn echo_handler(method: Method, uri: Uri, headers: HeaderMap, body: Body) -> Response {
    match to_bytes(body, MAX_BODY).await {
        Ok(bytes) => axum::Json(echo(&method, &uri, &headers, bytes.len())).into_response(),
        Err(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(json!({
                "service": "demo-upstream",
                "error": "payload_too_large",
                "message": format!("the demo upstream reads at most {MAX_BODY} bytes"),
            })),
        )
            .into_response(),
    }
}

/// The echo document. A header sent several times is joined with `", "` (its HTTP meaning),
/// so a forged `x-tokengate-*` header that survived next to the real one shows up.
fn echo(method: &Method, uri: &Uri, headers: &HeaderMap, body_bytes: usize) -> Value {
    let mut echoed = Map::new();
    for name in headers.keys() {
        let name = name.as_str();
        if HIDDEN_HEADERS.contains(&name) {
            continue;
        }
        let values: Vec<String> =
            headers.get_all(name).iter().map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned()).collect();
        echoed.insert(name.to_owned(), Value::String(values.join(", ")));
    }
    json!({
        "service": "demo-upstream",
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": echoed,
        "body_bytes": body_bytes,
    })
}

async fn shutdown() {
    let ctrl_c = async {
        // If the handler cannot be installed, serve until killed.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn echo_has_the_documented_shape() {
        let uri: Uri = "/api/v1/objects/%2e%2E/42?b=2&a=%41".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-tokengate-subject", HeaderValue::from_static("u1"));
        headers.append("x-tokengate-scope", HeaderValue::from_static("GET /objects/:id"));
        headers.append("x-forwarded-proto", HeaderValue::from_static("http"));
        headers.append("x-forged", HeaderValue::from_static("a"));
        headers.append("x-forged", HeaderValue::from_static("b"));
        headers.insert("authorization", HeaderValue::from_static("Bearer secret"));
        headers.insert("proxy-authorization", HeaderValue::from_static("Basic secret"));
        headers.insert("cookie", HeaderValue::from_static("session=secret"));

        let body = echo(&Method::DELETE, &uri, &headers, 3);

        assert_eq!(
            body,
            json!({
                "service": "demo-upstream",
                "method": "DELETE",
                "path": "/api/v1/objects/%2e%2E/42",
                "query": "b=2&a=%41",
                "headers": {
                    "x-tokengate-subject": "u1",
                    "x-tokengate-scope": "GET /objects/:id",
                    "x-forwarded-proto": "http",
                    "x-forged": "a, b",
                },
                "body_bytes": 3,
            })
        );
        assert!(!body.to_string().contains("secret"));
    }

    #[test]
    fn query_is_null_when_absent() {
        let uri: Uri = "/api/v1/objects".parse().unwrap();
        let body = echo(&Method::GET, &uri, &HeaderMap::new(), 0);
        assert_eq!(body["query"], Value::Null);
        assert_eq!(body["path"], "/api/v1/objects");
    }

    #[test]
    fn listen_address_precedence() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>().into_iter();
        assert_eq!(listen_addr(args(&[]), None).unwrap().to_string(), DEFAULT_LISTEN);
        assert_eq!(listen_addr(args(&[]), Some("127.0.0.1:9".into())).unwrap().to_string(), "127.0.0.1:9");
        assert_eq!(listen_addr(args(&["--listen", "0.0.0.0:7"]), Some("127.0.0.1:9".into())).unwrap().to_string(), "0.0.0.0:7");
        assert_eq!(listen_addr(args(&["--listen=127.0.0.1:0"]), None).unwrap().port(), 0);
        assert!(listen_addr(args(&["--listen"]), None).is_err());
        assert!(listen_addr(args(&["--bogus"]), None).is_err());
        assert!(listen_addr(args(&["--listen", "nope"]), None).is_err());
    }
}
