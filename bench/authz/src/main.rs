//! An Envoy `ext_authz` HTTP service that makes the gate's decision out of process: the
//! filter's own `Worker` (Bearer extraction, `rules::token::verify` with its verified-token
//! cache, time checks, revocation by `jti`, path safety, scopes, flags and items) compiled
//! natively, fed by the filter's own `Syncer` from the control plane's
//! `GET /sync/v1/changes` (a snapshot at start, then long polls). Same plugin
//! configuration as the filter (`envoy/envoy.yaml`'s JSON, passed as a file).
//!
//! Variant G of `bench/run.sh`: the comparison point for "why not ext_authz". One thread
//! (tokio current-thread), HTTP/1.1 keep-alive.
//!
//! Usage: `bench-authz LISTEN CP_ADDR PLUGIN_CONFIG_JSON_FILE`.

use std::cell::RefCell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;

use bench_fixture::LocalHost;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokengate_filter::config::{ControlPlaneConfig, PluginConfig};
use tokengate_filter::gate::{self, Outcome, Worker};
use tokengate_filter::host::Host;
use tokengate_filter::sync::Syncer;

struct Gate {
    host: LocalHost,
    worker: Worker,
    syncer: Syncer,
}

fn handle(gate: &Rc<RefCell<Gate>>, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    // Envoy's HTTP ext_authz sends the original method and path.
    let method = req.method().as_str();
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let auth: Vec<&str> = req.headers().get_all("authorization").iter().filter_map(|v| v.to_str().ok()).collect();
    let mut g = gate.borrow_mut();
    let Gate { host, worker, .. } = &mut *g;
    let realm = worker.realm().to_owned();
    let outcome = worker.decide(&*host, &gate::Request { method, path, authorization: &auth, device_header: None });
    let resp = match outcome {
        Outcome::Allow(allowed) => {
            let mut b = Response::builder().status(StatusCode::OK);
            allowed.headers(|k, v| {
                b = std::mem::take(&mut b).header(k, v);
            });
            b.body(Full::new(Bytes::new()))
        }
        Outcome::Deny(d) => {
            let mut b = Response::builder().status(d.status()).header("content-type", "application/json");
            if let Some(w) = d.www_authenticate(&realm) {
                b = b.header("www-authenticate", w);
            }
            b.body(Full::new(Bytes::from(d.body())))
        }
        // The captive portal's page passes without a token, with the gate's headers.
        Outcome::Portal(headers) => {
            let mut b = Response::builder().status(StatusCode::OK);
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(Full::new(Bytes::new()))
        }
    };
    resp.unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

/// One `GET /sync/v1/changes` to the control plane, as the filter's sync VM sends it
/// (the first asks for a snapshot without waiting, the next ones long-poll).
/// One sync call: the raw body and its MAC header, checked by `Syncer::accept`.
async fn fetch_changes(addr: &str, (path, headers): (String, Vec<(&'static str, String)>)) -> Result<(Vec<u8>, Option<String>), String> {
    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::task::spawn_local(conn);
    let mut b = Request::get(path).header("host", "control-plane");
    for (k, v) in headers.iter().filter(|(k, _)| !k.starts_with(':')) {
        b = b.header(*k, v);
    }
    let req = b.body(Empty::<Bytes>::new()).map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let mac = resp.headers().get(tokengate_rules::sync::MAC_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if status != StatusCode::OK {
        return Err(format!("sync answered {status}: {}", String::from_utf8_lossy(&body)));
    }
    Ok((body.to_vec(), mac))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: bench-authz LISTEN CP_ADDR PLUGIN_CONFIG_JSON_FILE");
        std::process::exit(2);
    }
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| tokio::task::LocalSet::new().block_on(&rt, run(&args[1], &args[2], &args[3])));
    if let Err(e) = result {
        eprintln!("bench-authz: {e}");
        std::process::exit(1);
    }
}

async fn run(listen: &str, cp: &str, config: &str) -> Result<(), String> {
    let bytes = std::fs::read(config).map_err(|e| format!("{config}: {e}"))?;
    let cfg = PluginConfig::parse(&bytes)?;
    let cp_cfg: ControlPlaneConfig = cfg.control_plane.clone().ok_or("the plugin configuration has no control_plane")?;
    let mut syncer = Syncer::new(cp_cfg);
    let host = LocalHost::default();
    let (body, mac) = fetch_changes(cp, syncer.request(host.now_ms())).await?;
    syncer.accept(&host, &body, mac.as_deref()).map_err(|e| e.to_string())?;
    eprintln!("bench-authz: synced version {} with {} revocations", syncer.version(), syncer.revocations());
    let worker = Worker::new(Rc::new(cfg.gate()?));
    let gate = Rc::new(RefCell::new(Gate { host, worker, syncer }));

    let poller = gate.clone();
    let cp = cp.to_owned();
    tokio::task::spawn_local(async move {
        loop {
            let request = {
                let mut g = poller.borrow_mut();
                let now = g.host.now_ms();
                g.syncer.request(now)
            };
            let result = fetch_changes(&cp, request).await;
            match result {
                Ok((body, mac)) => {
                    let mut g = poller.borrow_mut();
                    let Gate { host, syncer, .. } = &mut *g;
                    if let Err(e) = syncer.accept(&*host, &body, mac.as_deref()) {
                        host.log(tokengate_filter::host::Level::Warn, &e.to_string());
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    });

    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("bind {listen}: {e}"))?;
    eprintln!("bench-authz: listening on {listen}");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let gate = gate.clone();
        tokio::task::spawn_local(async move {
            let svc = hyper::service::service_fn(move |req| {
                let resp = handle(&gate, &req);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
