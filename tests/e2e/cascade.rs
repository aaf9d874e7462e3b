//! A cascade revocation through real Envoy while children are being issued (issue 10
//! defect 2): no child issued during it outlives it at the gate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::*;

const ISSUERS: usize = 4;
const MAX_REQUESTS: usize = 100;

/// Four threads issue children of one parent (`POST /tokens` and seed 001's
/// `POST /tokens/update`, at most 100 requests each) while the parent is revoked; every
/// child that was answered 200 is refused (401 `token_revoked`) at the gate, on every
/// worker, once the proxy has caught up.
#[test]
fn security_children_issued_during_a_cascade_revocation_are_refused_at_the_gate() {
    let stack = Stack::start(2);
    let admin = stack.login(None, Some("1 hour"))["token"].as_str().expect("token").to_owned();
    stack.wait_synced(&admin);
    let auth = format!("Bearer {admin}");
    let r = request(stack.cp(), "POST", "/api/v1/tokens", &[("Authorization", &auth)], Some(&json!({"name": "parent"})));
    assert_eq!(r.status, 200, "{}", r.body);
    let parent = r.json();
    let parent_id = parent["_id"].as_str().expect("id").to_owned();
    let parent_token = parent["token"].as_str().expect("token").to_owned();
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&parent_token)).status, 200);

    let cp = stack.cp();
    let issued = Arc::new(AtomicUsize::new(0));
    let issuers: Vec<_> = (0..ISSUERS)
        .map(|t| {
            let (issued, bearer) = (issued.clone(), format!("Bearer {parent_token}"));
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for n in 0..MAX_REQUESTS {
                    let (path, body) = if (t + n) % 2 == 0 {
                        ("/api/v1/tokens/update", json!({"callMode": "create", "dur": 600}))
                    } else {
                        ("/api/v1/tokens", json!({"expiresIn": "10 minutes"}))
                    };
                    let r = request(cp, "POST", path, &[("Authorization", &bearer)], Some(&body));
                    match r.status {
                        200 => {
                            let v = r.json();
                            let id = v["_id"].as_str().or(v["h"].as_str()).expect("id").to_owned();
                            got.push((id, v["token"].as_str().expect("token").to_owned()));
                            issued.fetch_add(1, Ordering::SeqCst);
                        }
                        401 => {
                            assert_eq!(r.code(), "token_revoked", "{}", r.body);
                            break;
                        }
                        other => panic!("issuing a child: {other} {}", r.body),
                    }
                }
                got
            })
        })
        .collect();
    wait_until("the issuers to get going", Duration::from_secs(30), || issued.load(Ordering::SeqCst) >= 10 * ISSUERS);
    let sent_at = issued.load(Ordering::SeqCst);
    let r = request(cp, "DELETE", &format!("/api/v1/tokens/{parent_id}"), &[("Authorization", &auth)], None);
    assert_eq!(r.status, 204, "{}", r.body);
    let answered_at = issued.load(Ordering::SeqCst);
    let children: Vec<(String, String)> = issuers.into_iter().flat_map(|h| h.join().expect("issuer thread")).collect();
    eprintln!(
        "cascade at the gate: {} children issued, {} while the DELETE was in flight, {} after its 204",
        children.len(),
        answered_at - sent_at,
        children.len().saturating_sub(answered_at)
    );
    assert!(!children.is_empty());

    // Every child refused on every worker (fresh connections spread over both), within
    // a bound far beyond the propagation time.
    let started = Instant::now();
    let mut allowed: Vec<&str> = Vec::new();
    wait_until("every child refused at the gate", Duration::from_secs(15), || {
        allowed = children
            .iter()
            .filter(|(_, token)| {
                (0..2).any(|_| {
                    let r = get(stack.front(), "/api/v1/objects/1", Some(token));
                    r.status != 401 || r.code() != "token_revoked"
                })
            })
            .map(|(id, _)| id.as_str())
            .collect();
        if !allowed.is_empty() && started.elapsed() > Duration::from_secs(14) {
            eprintln!("{} of {} children still allowed at the gate: {allowed:?}", allowed.len(), children.len());
        }
        allowed.is_empty()
    });
    assert_eq!(get(stack.front(), "/api/v1/objects/1", Some(&admin)).status, 200, "the admin's own token is untouched");
}
