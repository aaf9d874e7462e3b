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
use crate::helpers::{issue_limited, now_ms, run_with, Reply, TestApp};

each_db!(
    security_children_issued_during_a_cascade_revocation_never_survive_it,
    security_narrowing_a_token_narrows_or_revokes_the_descendants_that_exceed_it,
    security_an_amended_token_never_exceeds_its_parent,
    security_the_idle_sweep_revokes_the_whole_tree,
    manage_update_clears_a_field_with_null_and_keeps_an_absent_one,
    security_clearing_a_field_stays_within_the_caller,
    manage_null_and_wrong_types_are_told_apart,
    security_revoking_a_tree_logs_every_token_once_in_consecutive_versions,
);

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
    eprintln!(
        "cascade race: {issued_total} children issued, {after_revocation_total} answered after the revocation began; survivors: {}",
        survivors.len()
    );
    assert!(survivors.is_empty(), "{} of {issued_total} children survived the revocation of their parent: {survivors:#?}", survivors.len());
}

fn now_s() -> i64 {
    now_ms() / 1000
}

async fn manage(app: &TestApp, caller: &str, body: Value) -> Value {
    let r = app.post("/api/v1/tokens/update", Some(caller), &body).await;
    assert_eq!(r.status, StatusCode::OK, "{body} -> {}", r.body);
    r.body
}

/// The amendable state of a token's row: `(fl, items, expires_at ms, revoked)`.
async fn row(app: &TestApp, id: &str) -> (Option<i64>, Option<Vec<i64>>, i64, bool) {
    let (fl, items, expires_at, revoked_at): (Option<i64>, Option<String>, i64, Option<i64>) =
        sqlx::query_as("SELECT fl, items, expires_at, revoked_at FROM tokens WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.pool)
            .await
            .unwrap();
    (fl, items.map(|t| serde_json::from_str(&t).unwrap()), expires_at, revoked_at.is_some())
}

/// The change-log entries of a token since `version`: `(kind, expires_at ms)`.
async fn entries(app: &TestApp, id: &str, since: i64) -> Vec<(String, i64)> {
    sqlx::query_as("SELECT kind, expires_at FROM changes WHERE token_id = $1 AND version > $2 ORDER BY version")
        .bind(id)
        .bind(since)
        .fetch_all(&app.state.pool)
        .await
        .unwrap()
}

async fn version(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT version FROM sync_state WHERE id = 1").fetch_one(&app.state.pool).await.unwrap()
}

async fn signed_exp_ms(app: &TestApp, id: &str) -> i64 {
    sqlx::query_scalar("SELECT signed_expires_at FROM tokens WHERE id = $1").bind(id).fetch_one(&app.state.pool).await.unwrap()
}

/// Issue 10 defect 3: an amendment that narrows a token narrows each descendant that
/// exceeds it to the intersection (flags `&`, items `∩`, the earlier end) and revokes
/// the one that could no longer be active; each with its change-log entry (carrying the
/// signed expiry), in the amendment's transaction. Descendants already within are left
/// as they are.
async fn security_narrowing_a_token_narrows_or_revokes_the_descendants_that_exceed_it(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let p = manage(&app, tok(&admin), json!({"callMode": "create", "fl": -1, "items": [1, 2, 3], "dur": 3600})).await;
    let c1 = manage(&app, tok(&p), json!({"callMode": "create", "fl": 0x300, "items": [1, 2], "dur": 1800})).await;
    let c2 = manage(&app, tok(&p), json!({"callMode": "create", "fl": -1, "items": [2, 3], "dur": 3000})).await;
    let g = manage(&app, tok(&c2), json!({"callMode": "create", "fl": 0x200, "items": [3], "dur": 600})).await;
    let gg = manage(&app, tok(&c2), json!({"callMode": "create", "fl": 0x600, "items": [2, 3], "dur": 2000})).await;
    // Active only after the parent's new end: nothing of it would be left.
    let late = manage(&app, tok(&p), json!({"callMode": "create", "at": now_s() + 2000, "dur": 1000})).await;
    let late_child = manage(&app, tok(&p), json!({"callMode": "create", "dur": 600})).await;
    let v0 = version(&app).await;

    let r = manage(&app, tok(&admin), json!({"callMode": "update", "h": p["h"], "fl": 0x200, "items": [1, 3], "at": 0, "dur": 1500})).await;
    let (_, _, p_end, _) = row(&app, p["h"].as_str().unwrap()).await;
    assert_eq!(r["dur"], 1500);

    let id = |v: &Value| v["h"].as_str().unwrap().to_owned();
    // c1: fl 0x300 & 0x200, items [1, 2] ∩ [1, 3], end 1800 s -> the parent's.
    assert_eq!(row(&app, &id(&c1)).await, (Some(0x200), Some(vec![1]), p_end, false));
    // c2: fl -1 (unlimited) -> the parent's 0x200, items [3], end the parent's.
    assert_eq!(row(&app, &id(&c2)).await, (Some(0x200), Some(vec![3]), p_end, false));
    // g was within c2's new rights: untouched.
    let (_, _, g_end, _) = row(&app, &id(&g)).await;
    assert_eq!(row(&app, &id(&g)).await, (Some(0x200), Some(vec![3]), g_end, false));
    assert!(g_end < p_end);
    assert!(entries(&app, &id(&g), v0).await.is_empty(), "a descendant within its parent gets no entry");
    // gg is narrowed against c2 as narrowed (0x600 & 0x200, [2, 3] ∩ [3], the earlier end).
    assert_eq!(row(&app, &id(&gg)).await, (Some(0x200), Some(vec![3]), p_end, false));
    // late is revoked (and its descendants would be). late_child inherited -1 and
    // [1, 2, 3]: narrowed to the parent's, keeping its own earlier end.
    assert!(row(&app, &id(&late)).await.3, "a descendant that could no longer be active is revoked");
    let (_, _, late_child_end, _) = row(&app, &id(&late_child)).await;
    assert!(late_child_end < p_end);
    assert_eq!(row(&app, &id(&late_child)).await, (Some(0x200), Some(vec![1, 3]), late_child_end, false));
    let e = app.post("/api/v1/explain", Some(tok(&admin)), &json!({"request": "GET /api/v1/objects/1", "token": id(&late)})).await.body;
    assert_eq!(e["code"], "token_revoked", "{e}");

    // Each change has its entry, carrying the token's signed expiry.
    for (t, kind) in [(&c1, "amend"), (&c2, "amend"), (&gg, "amend"), (&late_child, "amend"), (&late, "revoke")] {
        let signed = signed_exp_ms(&app, &id(t)).await;
        assert_eq!(entries(&app, &id(t), v0).await, vec![(kind.to_owned(), signed)], "{kind} of {}", id(t));
    }
    // Proxies get the narrowed state; the control plane's guard applies it.
    let delta = app.sync(u64::try_from(v0).unwrap(), 0).await.body;
    let amended = delta["amended"].as_array().unwrap();
    let c1_entry = amended.iter().find(|a| a["jti"] == c1["h"]).unwrap();
    assert_eq!((&c1_entry["fl"], &c1_entry["items"], &c1_entry["exp"]), (&json!(0x200), &json!([1]), &json!(p_end / 1000)));
    assert!(delta["revoked"].as_array().unwrap().iter().any(|e| e["jti"] == late["h"]));
    // c2 held fl -1 and could manage tokens; narrowed to 0x200 it no longer can.
    app.get("/api/v1/tokens", tok(&c2)).await.assert_error(403, "insufficient_flags");
    let e = app.post("/api/v1/explain", Some(tok(&admin)), &json!({"request": "GET /api/v1/objects/2", "token": id(&c1)})).await.body;
    assert_eq!((&e["allowed"], &e["code"]), (&json!(false), &json!("item_not_allowed")), "{e}");

    // An amendment that narrows nothing (a new app) touches no descendant.
    let v1 = version(&app).await;
    manage(&app, tok(&admin), json!({"callMode": "update", "h": p["h"], "app": "renamed"})).await;
    assert_eq!(version(&app).await, v1 + 1, "one entry: the amended token's own");
}

/// An amendment of a child stays within its parent as the parent is now, whoever asks
/// (here the admin, whose own rights would allow more): flags or items beyond the
/// parent's are 403 `rights_exceed_parent`, and an end past the parent's is cut to it.
async fn security_an_amended_token_never_exceeds_its_parent(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let p = manage(&app, tok(&admin), json!({"callMode": "create", "fl": -1, "items": [1, 2], "dur": 3600})).await;
    let c = manage(&app, tok(&p), json!({"callMode": "create", "fl": 0x200, "items": [1], "dur": 3000})).await;
    manage(&app, tok(&admin), json!({"callMode": "update", "h": p["h"], "fl": 0x300, "dur": 1000})).await;
    let h = c["h"].as_str().unwrap();
    let rows = version(&app).await;
    for (body, what) in [
        (json!({"callMode": "update", "h": h, "fl": 0x400}), "flags"),
        (json!({"callMode": "update", "h": h, "fl": null}), "flags"),
        (json!({"callMode": "update", "h": h, "fl": -1}), "flags"),
        (json!({"callMode": "update", "h": h, "items": [3]}), "items"),
        (json!({"callMode": "update", "h": h, "items": null}), "items"),
    ] {
        let r = app.post("/api/v1/tokens/update", Some(tok(&admin)), &body).await;
        r.assert_error(403, "rights_exceed_parent");
        assert!(r.body["message"].as_str().unwrap().contains(what), "{body} -> {}", r.body);
    }
    assert_eq!(version(&app).await, rows, "a refused amendment writes nothing");
    // Within the parent: accepted.
    let r = manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "fl": 0x300, "items": [1, 2]})).await;
    assert_eq!((&r["fl"], &r["items"]), (&json!(0x300), &json!([1, 2])));
    // An end past the parent's (the child's signed end is 3000 s, the parent's 1000 s
    // now) is cut to the parent's.
    let (_, _, p_end, _) = row(&app, p["h"].as_str().unwrap()).await;
    assert!(signed_exp_ms(&app, h).await > p_end);
    for dur in [0, 2500] {
        manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "dur": dur})).await;
        assert_eq!(row(&app, h).await.2, p_end);
    }
}

/// Issue 10 defect 3: a token revoked by the idle sweep takes its whole tree with it,
/// also the descendants that were used (a child never outlives its parent's revocation).
async fn security_the_idle_sweep_revokes_the_whole_tree(app: TestApp) {
    drop(app);
    run_with(&[("TOKENGATE_IDLE_SECS", "60")], |app| async move {
        let admin = app.admin_token(None, None).await;
        let parent = app.child(tok(&admin), &json!({"name": "idle parent"})).await.body;
        let child = app.child(tok(&parent), &json!({"name": "busy child"})).await.body;
        let grandchild = app.child(tok(&child), &json!({"name": "grandchild"})).await.body;
        let sibling = app.child(tok(&admin), &json!({"name": "fresh sibling"})).await.body;
        // The parent was issued (and last used) two minutes ago; the others just now.
        sqlx::query("UPDATE tokens SET issued_at = issued_at - 120000, not_before = not_before - 120000 WHERE id = $1")
            .bind(parent["_id"].as_str().unwrap())
            .execute(&app.state.pool)
            .await
            .unwrap();
        let v0 = version(&app).await;
        let revoked = tokengate_control_plane::sync::usage::sweep_idle(&app.state, now_ms()).await.unwrap();
        assert_eq!(revoked, 3, "the idle parent and its two descendants");
        for t in [&parent, &child, &grandchild] {
            app.get("/api/v1/scopes", tok(t)).await.assert_error(401, "token_revoked");
            let id = t["_id"].as_str().unwrap();
            assert_eq!(entries(&app, id, v0).await, vec![("revoke".to_owned(), signed_exp_ms(&app, id).await)]);
        }
        for t in [&admin, &sibling] {
            assert_eq!(app.get("/api/v1/scopes", tok(t)).await.status, StatusCode::OK);
        }
        assert!(descendants(&app, parent["_id"].as_str().unwrap()).await.iter().all(|(_, r)| r.is_some()));
    })
    .await;
}

/// Issue 10 defect 3: `update` clears `fl`, `items`, `app` and `p` with an explicit
/// `null` ("none": no flag limit, all items, no app, no params); an absent field keeps
/// its stored value.
async fn manage_update_clears_a_field_with_null_and_keeps_an_absent_one(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t =
        manage(&app, tok(&admin), json!({"callMode": "create", "fl": 0x200, "items": [5], "app": "a", "p": {"k": 1}, "dur": 600})).await;
    let h = t["h"].as_str().unwrap();
    app.get("/api/v1/tokens", tok(&t)).await.assert_error(403, "insufficient_flags");
    // Absent: kept.
    let r = manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "dur": 500})).await;
    assert_eq!((&r["fl"], &r["items"], &r["app"], &r["p"]), (&json!(0x200), &json!([5]), &json!("a"), &json!({"k": 1})));
    // null: cleared.
    let v0 = version(&app).await;
    let r = manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "fl": null, "items": null})).await;
    assert_eq!((&r["fl"], &r["items"], &r["app"], &r["p"]), (&Value::Null, &Value::Null, &json!("a"), &json!({"k": 1})));
    let r = manage(&app, tok(&admin), json!({"callMode": "update", "h": h, "app": null, "p": null})).await;
    assert_eq!((&r["fl"], &r["items"], &r["app"], &r["p"]), (&Value::Null, &Value::Null, &Value::Null, &Value::Null));
    let (fl, items, _, _) = row(&app, h).await;
    assert_eq!((fl, items), (None, None));
    let (app_col, p_col): (Option<String>, Option<String>) =
        sqlx::query_as("SELECT app, p FROM tokens WHERE id = $1").bind(h).fetch_one(&app.state.pool).await.unwrap();
    assert_eq!((app_col, p_col), (None, None));
    // The proxies get the cleared state; the guard applies it (no flag limit: it may
    // manage tokens now).
    let delta = app.sync(u64::try_from(v0).unwrap(), 0).await.body;
    let last = delta["amended"].as_array().unwrap().iter().find(|a| a["jti"] == h).unwrap().clone();
    for field in ["fl", "items", "app", "p"] {
        assert!(last.get(field).is_none(), "{field} still set: {last}");
    }
    assert_eq!(app.get("/api/v1/tokens", tok(&t)).await.status, StatusCode::OK);
    let list = app.get("/api/v1/tokens", tok(&admin)).await.body;
    let listed = list.as_array().unwrap().iter().find(|x| x["_id"] == h).unwrap();
    assert_eq!((&listed["fl"], &listed["items"], &listed["app"]), (&Value::Null, &Value::Null, &Value::Null));

    // On create, null is "none" too, where absent is the caller's value.
    let limited = issue_limited(&app, None, Some(-1), None, 3_600_000).await;
    let inherited = manage(&app, &limited.token, json!({"callMode": "create", "dur": 60})).await;
    assert_eq!(inherited["fl"], json!(-1));
    let none = manage(&app, &limited.token, json!({"callMode": "create", "dur": 60, "fl": null, "app": null, "p": null})).await;
    assert_eq!((&none["fl"], &none["app"], &none["p"]), (&Value::Null, &Value::Null, &Value::Null));
}

/// Clearing is widening: it stays subject to the caller's rights. A caller limited to
/// items [1, 2] cannot clear a token's items (all items); a caller limited to flags
/// 0x200 cannot manage tokens at all.
async fn security_clearing_a_field_stays_within_the_caller(app: TestApp) {
    let limited = issue_limited(&app, None, Some(-1), Some(vec![1, 2]), 3_600_000).await;
    let t = manage(&app, &limited.token, json!({"callMode": "create", "fl": 0x200, "items": [1], "dur": 600})).await;
    let h = t["h"].as_str().unwrap();
    let v0 = version(&app).await;
    let r = app.post("/api/v1/tokens/update", Some(&limited.token), &json!({"callMode": "update", "h": h, "items": null})).await;
    r.assert_error(403, "rights_exceed_caller");
    assert!(r.body["message"].as_str().unwrap().contains("items"), "{}", r.body);
    let r = app.post("/api/v1/tokens/update", Some(&limited.token), &json!({"callMode": "create", "items": null})).await;
    r.assert_error(403, "rights_exceed_caller");
    let viewer = issue_limited(&app, None, Some(0x200), None, 3_600_000).await;
    let r = app.post("/api/v1/tokens/update", Some(&viewer.token), &json!({"callMode": "update", "h": h, "fl": null})).await;
    r.assert_error(403, "insufficient_flags");
    assert_eq!(version(&app).await, v0);
    assert_eq!(row(&app, h).await.1, Some(vec![1]));
    // Clearing flags is within a caller with fl -1.
    let r = manage(&app, &limited.token, json!({"callMode": "update", "h": h, "fl": null})).await;
    assert_eq!(r["fl"], Value::Null);
}

/// `null` clears, a value of the wrong type is still 400 with its code, and nothing is
/// written.
async fn manage_null_and_wrong_types_are_told_apart(app: TestApp) {
    let admin = app.admin_token(None, None).await;
    let t = manage(&app, tok(&admin), json!({"callMode": "create", "fl": 0x200, "items": [5], "dur": 600})).await;
    let h = t["h"].clone();
    let (rows, v0) = (app.token_rows().await, version(&app).await);
    for (field, bad, code) in [
        ("fl", json!("x"), "wrong_type"),
        ("fl", json!("0x200"), "wrong_type"),
        ("fl", json!(1.5), "wrong_type"),
        ("fl", json!([null]), "wrong_type"),
        ("fl", json!(7), "bad_flags"),
        ("items", json!("x"), "wrong_type"),
        ("items", json!([null]), "wrong_type"),
        ("items", json!([1, "2"]), "wrong_type"),
        ("items", json!({}), "wrong_type"),
        ("app", json!(5), "wrong_type"),
        ("app", json!("a\u{7}"), "bad_app"),
        ("p", json!(1), "bad_params"),
        ("p", json!("null"), "bad_params"),
    ] {
        for mode in ["create", "update"] {
            let mut body = json!({"callMode": mode, "h": h});
            body[field] = bad.clone();
            let r = app.post("/api/v1/tokens/update", Some(tok(&admin)), &body).await;
            r.assert_error(400, code);
            if code == "wrong_type" {
                assert!(r.body["message"].as_str().unwrap().contains(field), "{body} -> {}", r.body);
            }
        }
    }
    assert_eq!((app.token_rows().await, version(&app).await), (rows, v0));
    assert_eq!(row(&app, h.as_str().unwrap()).await.0, Some(0x200));
}

/// Revoking a tree writes it in batches (one `UPDATE`, one version bump and one insert per
/// 300 tokens, not three statements a token): every live token of the tree gets exactly
/// one `revoke` entry carrying its signed expiry, in consecutive versions that end at the
/// version the answer gives; a token revoked before keeps its one entry, a token outside
/// the tree none, and revoking again writes nothing. 305 children cross the batch size.
async fn security_revoking_a_tree_logs_every_token_once_in_consecutive_versions(app: TestApp) {
    const CHILDREN: usize = 305;
    let admin = app.admin_token(None, None).await;
    let root = app.child(tok(&admin), &json!({"name": "root"})).await.body;
    let outside = app.child(tok(&admin), &json!({"name": "outside"})).await.body;
    let root_id = root["_id"].as_str().unwrap().to_owned();
    let mut tree = vec![root_id.clone()];
    let mut first_child = None;
    for n in 0..CHILDREN {
        let child = app.child(tok(&root), &json!({"name": format!("child {n}")})).await.body;
        tree.push(child["_id"].as_str().unwrap().to_owned());
        if n == 0 {
            let grandchild = app.child(tok(&child), &json!({"name": "grandchild"})).await.body;
            tree.push(grandchild["_id"].as_str().unwrap().to_owned());
            first_child = Some(child);
        }
    }
    // One child revoked on its own first: it keeps that one entry.
    let early = first_child.unwrap()["_id"].as_str().unwrap().to_owned();
    assert_eq!(app.delete(&format!("/api/v1/tokens/{early}"), tok(&admin)).await.status, StatusCode::NO_CONTENT);
    let v0 = version(&app).await;

    let r = app.delete(&format!("/api/v1/tokens/{root_id}?wait=0"), tok(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let v1 = r.body["version"].as_i64().unwrap();
    let logged: Vec<(i64, String, String, i64)> =
        sqlx::query_as("SELECT version, kind, token_id, expires_at FROM changes WHERE version > $1 ORDER BY version")
            .bind(v0)
            .fetch_all(&app.state.pool)
            .await
            .unwrap();
    // The early child's grandchild went with it; everything else now.
    let expected: std::collections::BTreeSet<String> = tree.iter().filter(|id| **id != early && **id != tree[2]).cloned().collect();
    assert_eq!(logged.len(), expected.len(), "one entry per token revoked now");
    assert_eq!(
        logged.iter().map(|e| e.0).collect::<Vec<_>>(),
        (v0 + 1..=v1).collect::<Vec<_>>(),
        "consecutive versions ending at the answer's"
    );
    assert_eq!(logged.iter().map(|e| e.2.clone()).collect::<std::collections::BTreeSet<_>>(), expected);
    for (_, kind, id, expires_at) in &logged {
        assert_eq!(kind, "revoke");
        assert_eq!(*expires_at, signed_exp_ms(&app, id).await, "{id}: the entry carries the signed expiry");
    }
    for id in &tree {
        assert!(row(&app, id).await.3, "{id} is revoked");
    }
    assert_eq!(entries(&app, &early, 0).await.len(), 1, "revoked once, logged once");
    assert!(!row(&app, outside["_id"].as_str().unwrap()).await.3, "a token outside the tree stays live");
    assert!(entries(&app, outside["_id"].as_str().unwrap(), 0).await.is_empty());

    assert_eq!(app.delete(&format!("/api/v1/tokens/{root_id}"), tok(&admin)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(version(&app).await, v1, "revoking again writes nothing");
}
