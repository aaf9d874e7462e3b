//! Renders the Envoy configuration of one benchmark variant.
//!
//! Every variant has the same skeleton: one listener on 127.0.0.1, the front door's
//! HTTP connection manager settings (path normalization as in `envoy/envoy.yaml`), a
//! `direct_response` route (no upstream: what is measured is the proxy and its auth),
//! circuit breakers raised on every cluster. Only the HTTP filters before the router
//! differ. The tokengate variants take the wasm HTTP filter, the sync service and the
//! control-plane cluster from `envoy/envoy.yaml` itself, after substituting its
//! `${TG_*}` placeholders, so the plugin configuration is exactly the shipped one.

use serde_yaml::{Mapping, Value};

use crate::Args;

const CIRCUIT_BREAKERS: &str = r#"
thresholds:
  - priority: DEFAULT
    max_connections: 100000
    max_pending_requests: 100000
    max_requests: 100000
    max_retries: 100000
"#;

fn y(s: &str) -> Result<Value, String> {
    serde_yaml::from_str(s).map_err(|e| format!("internal YAML: {e}"))
}

fn key(v: &Value, k: &str) -> Result<Value, String> {
    v.get(k).cloned().ok_or_else(|| format!("envoy template: no `{k}`"))
}

/// The pieces of `envoy/envoy.yaml` the tokengate variants reuse.
struct Shipped {
    bootstrap_extensions: Value,
    filters: Vec<Value>,
    cp_cluster: Value,
}

impl Shipped {
    /// The gate's plugin configuration: the JSON text in the wasm filter's `configuration`.
    fn plugin_config(&mut self) -> Result<&mut Value, String> {
        self.filters
            .iter_mut()
            .find(|f| f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm"))
            .and_then(|f| f.get_mut("typed_config"))
            .and_then(|t| t.get_mut("config"))
            .and_then(|c| c.get_mut("configuration"))
            .and_then(|c| c.get_mut("value"))
            .filter(|v| v.is_string())
            .ok_or_else(|| "envoy template: no plugin configuration value in the envoy.filters.http.wasm filter".to_owned())
    }

    /// Sets `identity_headers` in the gate's plugin configuration.
    fn set_identity_headers(&mut self, names: &[&str]) -> Result<(), String> {
        let value = self.plugin_config()?;
        let mut json: serde_json::Value =
            serde_json::from_str(value.as_str().unwrap_or_default()).map_err(|e| format!("envoy template: plugin configuration: {e}"))?;
        json["identity_headers"] = serde_json::json!(names);
        *value = Value::String(json.to_string());
        Ok(())
    }
}

/// E2 (issue 14 target 6): E with the identity headers cut to the subject. The shipped
/// config's portal needs -network and -device, which only a voucher's token or the portal
/// page gets, so E's requests carry `x-tokengate-subject` alone.
const E2_IDENTITY_HEADERS: [&str; 3] = ["x-tokengate-subject", "x-tokengate-network", "x-tokengate-device"];

fn shipped(args: &Args) -> Result<Shipped, String> {
    let path = args.get("template")?;
    let mut text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let vars = [
        ("TG_LISTEN_ADDR", "127.0.0.1".to_owned()),
        ("TG_LISTEN_PORT", args.get("port")?.to_owned()),
        ("TG_ADMIN_PORT", args.get("admin-port")?.to_owned()),
        ("TG_CP_HOST", "127.0.0.1".to_owned()),
        ("TG_CP_PORT", args.get("cp-port")?.to_owned()),
        ("TG_UPSTREAM_HOST", "127.0.0.1".to_owned()),
        ("TG_UPSTREAM_PORT", "9".to_owned()),
        ("TG_WASM", args.get("wasm")?.to_owned()),
        ("TG_PROXY_SECRET", args.get("secret")?.to_owned()),
        ("TG_PROXY_ID", "bench".to_owned()),
        // Plain HTTP to the control plane: the `#tls:` lines that use it stay comments,
        // as scripts/render-envoy.sh leaves them when TG_CP_CA is empty.
        ("TG_CP_CA", String::new()),
    ];
    for (k, v) in &vars {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    // A placeholder this renderer does not know would reach Envoy verbatim. (The
    // template's comments mention `${TG_*}`, which is not one.)
    for (at, _) in text.match_indices("${TG_") {
        let name: String = text[at + 2..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
        if text[at + 2 + name.len()..].starts_with('}') {
            return Err(format!("envoy template: unknown placeholder ${{{name}}}"));
        }
    }
    let doc: Value = serde_yaml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let sr = key(&doc, "static_resources")?;
    let hcm = sr
        .get("listeners")
        .and_then(|l| l.get(0))
        .and_then(|l| l.get("filter_chains"))
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("filters"))
        .and_then(|f| f.get(0))
        .and_then(|f| f.get("typed_config"))
        .ok_or("envoy template: no http_connection_manager")?;
    // Every HTTP filter the front door runs before the router: the native strip of
    // forged headers, then the gate.
    let filters: Vec<Value> = hcm
        .get("http_filters")
        .and_then(Value::as_sequence)
        .ok_or("envoy template: no http_filters")?
        .iter()
        .filter(|f| f.get("name").and_then(Value::as_str) != Some("envoy.filters.http.router"))
        .cloned()
        .collect();
    if !filters.iter().any(|f| f.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm")) {
        return Err("envoy template: no envoy.filters.http.wasm filter".into());
    }
    let mut cp_cluster = sr
        .get("clusters")
        .and_then(Value::as_sequence)
        .and_then(|cs| cs.iter().find(|c| c.get("name").and_then(Value::as_str) == Some("tokengate_control_plane")))
        .cloned()
        .ok_or("envoy template: no tokengate_control_plane cluster")?;
    if let Value::Mapping(m) = &mut cp_cluster {
        m.insert("circuit_breakers".into(), y(CIRCUIT_BREAKERS)?);
    }
    Ok(Shipped { bootstrap_extensions: key(&doc, "bootstrap_extensions")?, filters, cp_cluster })
}

fn static_cluster(name: &str, port: &str) -> Result<Value, String> {
    let mut c = y(&format!(
        r#"
name: {name}
type: STATIC
connect_timeout: 1s
load_assignment:
  cluster_name: {name}
  endpoints:
    - lb_endpoints:
        - endpoint: {{ address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }} }}
"#
    ))?;
    if let Value::Mapping(m) = &mut c {
        m.insert("circuit_breakers".into(), y(CIRCUIT_BREAKERS)?);
    }
    Ok(c)
}

fn jwt_authn(args: &Args, cache: Option<&str>) -> Result<Value, String> {
    let cache = cache.map(|n| format!("jwt_cache_config: {{ jwt_cache_size: {n} }}")).unwrap_or_default();
    y(&format!(
        r#"
name: envoy.filters.http.jwt_authn
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
  providers:
    tokengate:
      issuer: tokengate
      audiences: [tokengate]
      local_jwks: {{ filename: {jwks} }}
      forward: true
      clock_skew_seconds: 30
      {cache}
  rules:
    - match: {{ prefix: / }}
      requires: {{ provider_name: tokengate }}
"#,
        jwks = args.get("jwks")?,
    ))
}

/// The attribution variants: the empty filter (B) making some host calls, with no logic.
/// (name, steps for `bench/noop-filter`, label in the report.)
pub const NOOP_VARIANTS: [(&str, &str, &str); 12] = [
    ("B1", "read", "B1 empty filter + every header, clock, shared meta, 3 metrics (the gate's reads before the rework)"),
    ("B2", "write", "B2 empty filter + 5 header sets (the gate's writes before the rework)"),
    ("B3", "all", "B3 B1 + B2: the gate's host calls before the rework, no logic"),
    ("B4", "all_headers", "B4 empty filter + read every header (get_map_bytes)"),
    ("B5", "three_headers", "B5 empty filter + read 3 headers (get_map_value x3)"),
    ("B6", "clock", "B6 empty filter + read the clock"),
    ("B7", "add3", "B7 empty filter + add 3 headers (add_map_value x3)"),
    ("B8", "all_headers,replace_all", "B8 empty filter + read every header, write them all back plus 3 (set_map_bytes)"),
    ("B9", "", "B9 native header_mutation stripping x-tokengate-* + the empty filter"),
    (
        "B10",
        "all_headers,add3",
        "B10 empty filter + read every header, add 3 headers (the gate's host calls now, one identity header fewer)",
    ),
    ("B11", "peer", "B11 empty filter + read the peer address (get_property source.address: the voucher device check)"),
    ("B12", "peer,add3", "B12 empty filter + the peer address + add 3 headers"),
];

fn noop_steps(variant: &str) -> Option<&'static str> {
    NOOP_VARIANTS.iter().find(|(v, _, _)| *v == variant).map(|(_, s, _)| *s)
}

/// The shipped front door's native filter that strips forged identity and method-override
/// headers before the gate (taken from `envoy/envoy.yaml` when rendering E/F).
fn native_strip() -> Result<Value, String> {
    y(r#"
name: envoy.filters.http.header_mutation
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
  mutations:
    request_mutations:
      - remove_on_match: { key_matcher: { prefix: x-tokengate- } }
      - remove: x-envoy-original-path
      - remove: x-http-method-override
      - remove: x-http-method
      - remove: x-method-override
"#)
}

pub fn render(args: &Args) -> Result<(), String> {
    let variant = args.get("variant")?;
    let mut filters: Vec<Value> = Vec::new();
    let mut clusters: Vec<Value> = Vec::new();
    let mut bootstrap = None;
    match variant {
        "A" => {}
        v if v == "B" || noop_steps(v).is_some() => {
            if v == "B9" {
                filters.push(native_strip()?);
            }
            filters.push(y(&format!(
                r#"
name: envoy.filters.http.wasm
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
  config:
    name: noop
    root_id: noop
    configuration:
      "@type": type.googleapis.com/google.protobuf.StringValue
      value: "{steps}"
    vm_config:
      vm_id: noop
      runtime: envoy.wasm.runtime.v8
      code: {{ local: {{ filename: {wasm} }} }}
"#,
                steps = noop_steps(v).unwrap_or(""),
                wasm = args.get("noop-wasm")?
            ))?)
        }
        "C" => filters.push(jwt_authn(args, None)?),
        "D" => filters.push(jwt_authn(args, Some(args.get("cache-size")?))?),
        "E" | "F" | "E2" => {
            let mut s = shipped(args)?;
            if variant == "E2" {
                s.set_identity_headers(&E2_IDENTITY_HEADERS)?;
            }
            filters.extend(s.filters);
            clusters.push(s.cp_cluster);
            bootstrap = Some(s.bootstrap_extensions);
        }
        "plugin-json" => {
            // The tokengate plugin configuration alone, for bench-authz.
            let mut s = shipped(args)?;
            let json = s.plugin_config()?.as_str().unwrap_or_default().to_owned();
            let out = args.get("out")?;
            return std::fs::write(out, json).map_err(|e| format!("{out}: {e}"));
        }
        "G" => {
            filters.push(y(r#"
name: envoy.filters.http.ext_authz
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
  transport_api_version: V3
  failure_mode_allow: false
  http_service:
    server_uri: { uri: "http://127.0.0.1", cluster: bench_authz, timeout: 1s }
    authorization_response:
      allowed_upstream_headers:
        patterns: [{ prefix: x-tokengate- }]
"#)?);
            clusters.push(static_cluster("bench_authz", args.get("authz-port")?)?);
        }
        other => return Err(format!("unknown variant {other}")),
    }
    filters.push(y(r#"
name: envoy.filters.http.router
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
"#)?);

    let mut doc = y(&format!(
        r#"
admin:
  address: {{ socket_address: {{ address: 127.0.0.1, port_value: {admin} }} }}
static_resources:
  listeners:
    - name: bench
      address: {{ socket_address: {{ address: 127.0.0.1, port_value: {port} }} }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: bench
                normalize_path: true
                merge_slashes: true
                path_with_escaped_slashes_action: REJECT_REQUEST
                use_remote_address: true
                xff_num_trusted_hops: 0
                common_http_protocol_options:
                  headers_with_underscores_action: REJECT_REQUEST
                http_filters: []
                route_config:
                  name: bench
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        - match: {{ prefix: / }}
                          direct_response: {{ status: 200, body: {{ inline_string: "ok\n" }} }}
  clusters: []
"#,
        admin = args.get("admin-port")?,
        port = args.get("port")?,
    ))?;
    let hcm = doc
        .get_mut("static_resources")
        .and_then(|s| s.get_mut("listeners"))
        .and_then(|l| l.get_mut(0))
        .and_then(|l| l.get_mut("filter_chains"))
        .and_then(|c| c.get_mut(0))
        .and_then(|c| c.get_mut("filters"))
        .and_then(|f| f.get_mut(0))
        .and_then(|f| f.get_mut("typed_config"))
        .and_then(Value::as_mapping_mut)
        .ok_or("internal: skeleton")?;
    hcm.insert("http_filters".into(), Value::Sequence(filters));
    let root: &mut Mapping = doc.as_mapping_mut().ok_or("internal: skeleton")?;
    if let Some(b) = bootstrap {
        root.insert("bootstrap_extensions".into(), b);
    }
    if let Some(sr) = root.get_mut("static_resources").and_then(Value::as_mapping_mut) {
        sr.insert("clusters".into(), Value::Sequence(clusters));
    }
    let text = serde_yaml::to_string(&doc).map_err(|e| e.to_string())?;
    let out = args.get("out")?;
    std::fs::write(out, format!("# Generated by bench/run.sh (tg-bench render --variant {variant}); do not edit.\n{text}"))
        .map_err(|e| format!("{out}: {e}"))
}
