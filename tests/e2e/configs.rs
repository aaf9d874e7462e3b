//! Every Envoy config in `envoy/` validates in the real Envoy and carries the settings
//! SECURITY.md requires; docker compose renders the same template and validates too.

use std::path::PathBuf;
use std::process::Command;

use serde_yaml::Value;

use crate::harness::*;

fn templates() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(workspace().join("envoy"))
        .expect("envoy/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no Envoy configs in envoy/");
    out
}

fn test_vars() -> Vec<(&'static str, String)> {
    vec![
        ("TG_LISTEN_ADDR", "127.0.0.1".into()),
        ("TG_LISTEN_PORT", "10000".into()),
        ("TG_ADMIN_PORT", "9901".into()),
        ("TG_CP_HOST", "127.0.0.1".into()),
        ("TG_CP_PORT", "8080".into()),
        ("TG_UPSTREAM_HOST", "127.0.0.1".into()),
        ("TG_UPSTREAM_PORT", "8081".into()),
        ("TG_WASM", wasm().display().to_string()),
        ("TG_PROXY_SECRET", "validate-secret-0123456789abcdef0123456789".into()),
        ("TG_PROXY_ID", "validate".into()),
    ]
}

fn validate(rendered: &str, name: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, rendered).expect("write");
    let out = Command::new(envoy_bin()).args(["--mode", "validate", "-c"]).arg(&path).output().expect("run envoy");
    assert!(
        out.status.success(),
        "envoy --mode validate failed for {name}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Finds every mapping in the document that has `key`.
fn find_all<'a>(v: &'a Value, key: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Mapping(m) => {
            for (k, val) in m {
                if k.as_str() == Some(key) {
                    out.push(val);
                }
                find_all(val, key, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|x| find_all(x, key, out)),
        _ => {}
    }
}

fn security_settings(doc: &Value, name: &str) {
    assert_eq!(doc["admin"]["address"]["socket_address"]["address"].as_str(), Some("127.0.0.1"), "{name}: admin must bind 127.0.0.1");
    let mut hcms = Vec::new();
    find_all(doc, "http_filters", &mut hcms);
    assert!(!hcms.is_empty(), "{name}: no HTTP connection manager");
    let mut managers = Vec::new();
    find_all(doc, "typed_config", &mut managers);
    let managers: Vec<&Value> =
        managers.into_iter().filter(|t| t["@type"].as_str().is_some_and(|s| s.ends_with("HttpConnectionManager"))).collect();
    for hcm in &managers {
        assert_eq!(hcm["normalize_path"].as_bool(), Some(true), "{name}: normalize_path");
        assert_eq!(hcm["merge_slashes"].as_bool(), Some(true), "{name}: merge_slashes");
        assert_eq!(hcm["path_with_escaped_slashes_action"].as_str(), Some("REJECT_REQUEST"), "{name}");
        assert_eq!(hcm["common_http_protocol_options"]["headers_with_underscores_action"].as_str(), Some("REJECT_REQUEST"), "{name}");
        assert_eq!(hcm["use_remote_address"].as_bool(), Some(true), "{name}: use_remote_address");
        assert!(hcm["xff_num_trusted_hops"].as_u64().is_some(), "{name}: xff_num_trusted_hops must be explicit");
        let filters = hcm["http_filters"].as_sequence().expect("http_filters");
        assert_eq!(filters[0]["name"].as_str(), Some("envoy.filters.http.wasm"), "{name}: the gate must be first");
        let wasm = &filters[0]["typed_config"]["config"];
        assert_eq!(wasm["failure_policy"].as_str(), Some("FAIL_CLOSED"), "{name}: failure_policy");
        assert_eq!(wasm["vm_config"]["allow_precompiled"].as_bool(), Some(false), "{name}: allow_precompiled");
    }
    assert!(!managers.is_empty(), "{name}: no HttpConnectionManager found");
    let mut vms = Vec::new();
    find_all(doc, "vm_config", &mut vms);
    for vm in vms {
        assert_eq!(vm["allow_precompiled"].as_bool(), Some(false), "{name}: every vm_config sets allow_precompiled: false");
        assert_eq!(vm["vm_id"].as_str(), Some("tokengate"), "{name}: gate and sync share one vm_id");
    }
}

#[test]
fn security_envoy_every_config_validates_with_the_required_settings() {
    for path in templates() {
        let name = path.file_name().expect("name").to_string_lossy().into_owned();
        let rendered = render(&std::fs::read_to_string(&path).expect("read"), &test_vars());
        validate(&rendered, &name);
        let doc: Value = serde_yaml::from_str(&rendered).expect("yaml");
        security_settings(&doc, &name);
    }
}

/// docker-compose.yml renders the same template with its own values; those must
/// validate too, and must name every variable the template uses.
#[test]
fn compose_renders_the_tested_envoy_config() {
    let compose: Value =
        serde_yaml::from_str(&std::fs::read_to_string(workspace().join("docker-compose.yml")).expect("docker-compose.yml"))
            .expect("compose yaml");
    let envoy = &compose["services"]["envoy"];
    let env = envoy["environment"].as_mapping().expect("services.envoy.environment is a mapping");
    let mut vars: Vec<(&str, String)> = Vec::new();
    for (k, v) in env {
        let (Some(k), Some(v)) = (k.as_str(), v.as_str().map(str::to_owned).or_else(|| v.as_u64().map(|n| n.to_string()))) else {
            continue;
        };
        if k.starts_with("TG_") {
            // Compose-level defaults such as ${TOKENGATE_PROXY_SECRET:-x} are taken as x.
            let value = match v.strip_prefix("${").and_then(|s| s.strip_suffix('}')).and_then(|s| s.split_once(":-")) {
                Some((_, default)) => default.to_owned(),
                None => v,
            };
            vars.push((Box::leak(k.to_owned().into_boxed_str()), value));
        }
    }
    // The proxy secret is not in the environment: the `secrets` service generates it
    // into a volume and Envoy's command reads it from there (nothing fixed is shipped).
    let text = std::fs::read_to_string(workspace().join("docker-compose.yml")).expect("docker-compose.yml");
    assert!(!vars.iter().any(|(k, _)| *k == "TG_PROXY_SECRET"), "compose must not give Envoy a fixed proxy secret");
    assert!(!text.contains("change-me"), "compose ships a default proxy secret");
    let command = envoy["command"].as_sequence().expect("envoy command").iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" ");
    assert!(command.contains("TG_PROXY_SECRET=$$(cat /run/tokengate/proxy-secret)"), "{command}");
    let cp_env = &compose["services"]["control-plane"]["environment"];
    assert_eq!(cp_env["TOKENGATE_PROXY_SECRET_FILE"].as_str(), Some("/run/tokengate/proxy-secret"));
    vars.push(("TG_PROXY_SECRET", "0".repeat(64)));
    let template = std::fs::read_to_string(workspace().join("envoy/envoy.yaml")).expect("template");
    // The wasm path inside the container does not exist here: point it at the built one.
    let vars: Vec<(&str, String)> =
        vars.into_iter().map(|(k, v)| if k == "TG_WASM" { (k, wasm().display().to_string()) } else { (k, v) }).collect();
    let rendered = render(&template, &vars);
    let doc: Value = serde_yaml::from_str(&rendered).expect("yaml");
    security_settings(&doc, "envoy.yaml (compose values)");
    // Hostnames such as `control-plane` do not resolve here, which validate does not need.
    validate(&rendered, "compose-envoy.yaml");
}
