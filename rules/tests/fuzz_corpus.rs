//! Replays every saved fuzz input (`fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`)
//! through the same checks the fuzzer runs, so CI keeps what fuzzing found fixed.
#![allow(clippy::panic)]

use std::path::{Path, PathBuf};

#[path = "support/ed25519_oracle.rs"]
mod ed25519_oracle;

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) {
            out.extend(entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()));
        }
    }
    out.sort();
    out
}

fn replay(target: &str, f: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no saved inputs for fuzz target {target}");
    for file in &files {
        let data = std::fs::read(file).unwrap_or_default();
        if std::panic::catch_unwind(|| f(&data)).is_err() {
            panic!("fuzz input {} violates an invariant", file.display());
        }
    }
    eprintln!("{target}: replayed {} inputs", files.len());
}

#[test]
fn scope_corpus() {
    replay("scope", tokengate_rules::fuzzing::scope);
}

#[test]
fn token_corpus() {
    replay("token", tokengate_rules::fuzzing::token);
}

#[test]
fn verify_diff_corpus() {
    replay("verify_diff", |data| {
        ed25519_oracle::verify_diff(data);
    });
}

#[test]
fn path_corpus() {
    replay("path", tokengate_rules::fuzzing::path);
}

#[test]
fn sync_answer_corpus() {
    replay("sync_answer", tokengate_rules::fuzzing::sync_answer);
}

#[test]
fn usage_report_corpus() {
    replay("usage_report", tokengate_rules::fuzzing::usage_report);
}
