//! A child never holds more than its parent holds now (issue 10, defects 2 and 3):
//! issuance serializes with a cascade revocation, an amendment that narrows a token
//! narrows (or revokes) its descendants, the idle sweep revokes a tree, and `update`
//! clears a field with an explicit `null`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::each_db;
use crate::helpers::{Reply, TestApp};

each_db!(security_children_issued_during_a_cascade_revocation_never_survive_it);

fn tok(v: &Value) -> &str {
    v["token"].as_str().unwrap()
}

/// Every token below `root` (not `root` itself), walking `parent_id`, as
/// `(id, revoked_at)`.
pub async fn descendants(app: &TestApp, root: &str) -> Vec<(String, Option<i64>)> {
    let mut out = Vec::new();
    let mut frontier = vec![root.to_owned()];
    while let Some(id) = frontier.pop() {
        let rows: Vec<(String, Option<i64>)> =
            sqlx::query_as("SELECT id, revoked_at FROM tokens WHERE parent_id = $1").bind(&id).fetch_all(&app.state.pool).await.unwrap();
        for (child, revoked_at) in rows {
            frontier.push(child.clone());
            out.push((child, revoked_at));
        }
    }
    out
}

/// One child request from a spawned task: `POST /tokens`, or seed 001's
/// `POST /tokens/update` create; the token value when it was issued.
async fn issue_child(client: &reqwest::Client, base: &str, parent: &str, seed: bool, minutes: u64) -> Result<(String, String), StatusCode> {
    let (path, body) = if seed {
        ("/api/v1/tokens/update", json!({"callMode": "create", "dur": minutes * 60}))
    } else {
        ("/api/v1/tokens", json!({"expiresIn": format!("{minutes} minutes")}))
    };
    let r = Reply::from(client.post(format!("{base}{path}")).bearer_auth(parent).json(&body).send().await.unwrap()).await;
    match r.status {
        StatusCode::OK if seed => Ok((r.body["h"].as_str().unwrap().to_owned(), tok(&r.body).to_owned())),
        StatusCode::OK => Ok((r.body["_id"].as_str().unwrap().to_owned(), tok(&r.body).to_owned())),
        StatusCode::UNAUTHORIZED => {
            r.assert_error(401, "token_revoked");
            Err(r.status)
        }
        other => panic!("issuing a child: {other} {}", r.body),
    }
}

/// Issue 10 defect 2: four tasks issue children (and grandchildren, from the children
/// they got) of one parent in a loop while the parent is revoked. Afterwards no live
/// descendant of the parent exists, and every child that was answered 200 is refused
/// (401) by the control plane. Five rounds, each with a fresh parent.
async fn security_children_issued_during_a_cascade_revocation_never_survive_it(app: TestApp) {
    const ROUNDS: usize = 5;
    const TASKS: usize = 4;
    const MAX_REQUESTS: usize = 100;
    let admin = app.admin_token(None, None).await;
    let (mut issued_total, mut after_revocation_total) = (0, 0);
    let mut survivors = std::collections::BTreeMap::new();
    for round in 0..ROUNDS {
        let parent = app.child(tok(&admin), &json!({"name": format!("parent {round}")})).await.body;
        let parent_id = parent["_id"].as_str().unwrap().to_owned();
        let issued = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let (client, base, parent_token, issued) = (app.client.clone(), app.base.clone(), tok(&parent).to_owned(), issued.clone());
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                for n in 0..MAX_REQUESTS {
                    match issue_child(&client, &base, &parent_token, (task + n) % 2 == 0, 10).await {
                        Ok((id, token)) => {
                            issued.fetch_add(1, Ordering::SeqCst);
                            // A grandchild from every third child: the walk must catch
                            // those too.
                            if n % 3 == 0 {
                                if let Ok(grandchild) = issue_child(&client, &base, &token, n % 2 == 0, 5).await {
                                    got.push(grandchild);
                                }
                            }
                            got.push((id, token));
                        }
                        // The parent is revoked and the guard says so: done.
                        Err(_) => break,
                    }
                }
                got
            }));
        }
        // Revoke once the issuers are running.
        let started = Instant::now();
        while issued.load(Ordering::SeqCst) < 8 * TASKS {
            assert!(started.elapsed() < Duration::from_secs(30), "the issuers did not start");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let before = issued.load(Ordering::SeqCst);
        let r = app.delete(&format!("/api/v1/tokens/{parent_id}"), tok(&admin)).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
        let mut children = Vec::new();
        for t in tasks {
            children.extend(t.await.unwrap());
        }
        issued_total += children.len();
        after_revocation_total += issued.load(Ordering::SeqCst).saturating_sub(before);

        let live: Vec<String> = descendants(&app, &parent_id).await.into_iter().filter(|(_, r)| r.is_none()).map(|(id, _)| id).collect();
        for (id, token) in &children {
            let r = app.get("/api/v1/scopes", token).await;
            if r.status != StatusCode::UNAUTHORIZED {
                survivors.insert(id.clone(), format!("round {round}: answered {}", r.status));
            } else {
                r.assert_error(401, "token_revoked");
            }
        }
        for id in live {
            survivors.entry(id).or_insert_with(|| format!("round {round}: live in the database"));
        }
    }
    eprintln!("cascade race: {issued_total} children issued, {after_revocation_total} answered after the revocation began; survivors: {}", survivors.len());
    assert!(survivors.is_empty(), "{} of {issued_total} children survived the revocation of their parent: {survivors:#?}", survivors.len());
}
