//! The sync service (singleton VM): long-polls the control plane and publishes keys and
//! revocations into shared data for the workers.

use std::collections::VecDeque;

use hashbrown::HashMap;
use tokengate_rules::sync::{Amendment, PublicKey, SyncResponse, Usage, UsageReport, PROTOCOL, USAGE_PATH};
use tokengate_rules::token::{VerifyingKey, DEFAULT_LEEWAY_SECS};

use crate::config::ControlPlaneConfig;
use crate::host::{Host, Level};
use crate::shared::{self, Journal, JournalEntry, Meta};

/// Where the poll loop stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Ready to poll.
    Idle,
    /// A long-poll is outstanding.
    InFlight { token: u32, since_ms: u64 },
    /// Waiting after a failure.
    Backoff { until_ms: u64 },
}

/// How often the sync service sends usage reports, and the most it holds.
pub const USAGE_EVERY_MS: u64 = 5_000;
pub const USAGE_MAX_PENDING: usize = 100_000;
pub const USAGE_MAX_BATCH: usize = 10_000;

pub const BACKOFF_MIN_MS: u64 = 100;
/// The most revocations a paged snapshot may bring (the sync VM holds them all while the
/// parts arrive).
pub const MAX_STAGED: usize = 5_000_000;
pub const BACKOFF_MAX_MS: u64 = 10_000;
const PRUNE_EVERY_MS: u64 = 60_000;

pub struct Syncer {
    pub cfg: ControlPlaneConfig,
    pub state: SyncState,
    pub failures: u32,
    meta: Meta,
    synced: bool,
    keys: Vec<PublicKey>,
    buckets: Vec<HashMap<Box<str>, u64>>,
    amendments: Vec<HashMap<Box<str>, Amendment>>,
    journal: VecDeque<JournalEntry>,
    journal_from: u64,
    last_prune_ms: u64,
    /// Token use waiting to be reported: jti -> latest ms.
    usage: HashMap<Box<str>, u64>,
    last_usage_ms: u64,
    /// A snapshot arriving in parts: applied only once the last part is here.
    staging: Option<SyncResponse>,
}

impl Syncer {
    pub fn new(cfg: ControlPlaneConfig) -> Self {
        Syncer {
            cfg,
            state: SyncState::Idle,
            failures: 0,
            meta: Meta::default(),
            synced: false,
            keys: Vec::new(),
            buckets: (0..shared::REV_BUCKETS).map(|_| HashMap::new()).collect(),
            amendments: (0..shared::AMEND_BUCKETS).map(|_| HashMap::new()).collect(),
            journal: VecDeque::new(),
            journal_from: 0,
            last_prune_ms: 0,
            usage: HashMap::new(),
            last_usage_ms: 0,
            staging: None,
        }
    }

    /// Records one queue message: `<jti> <ms>` lines (a worker's batch); malformed lines
    /// are dropped.
    pub fn note_usage(&mut self, msg: &[u8]) {
        let Ok(text) = std::str::from_utf8(msg) else { return };
        for line in text.lines() {
            let Some((jti, at)) = line.split_once(' ') else { continue };
            let (Ok(at), true) = (at.parse::<u64>(), tokengate_rules::token::valid_kid(jti)) else { continue };
            if self.usage.len() >= USAGE_MAX_PENDING && !self.usage.contains_key(jti) {
                continue;
            }
            let e = self.usage.entry(jti.into()).or_insert(at);
            *e = (*e).max(at);
        }
    }

    pub fn pending_usage(&self) -> usize {
        self.usage.len()
    }

    /// The next usage report to send, if one is due; taken out of the pending set (give it
    /// back with [`Syncer::usage_failed`]).
    pub fn usage_batch(&mut self, now_ms: u64) -> Option<(String, Vec<u8>)> {
        if self.usage.is_empty() || now_ms.saturating_sub(self.last_usage_ms) < USAGE_EVERY_MS {
            return None;
        }
        self.last_usage_ms = now_ms;
        let keys: Vec<Box<str>> = self.usage.keys().take(USAGE_MAX_BATCH).cloned().collect();
        let used: Vec<Usage> =
            keys.into_iter().filter_map(|k| self.usage.remove(&k).map(|at| Usage { jti: k.into(), at })).collect();
        let body = serde_json::to_vec(&UsageReport { proxy: self.cfg.proxy_id.clone(), used }).ok()?;
        Some((USAGE_PATH.to_owned(), body))
    }

    /// Puts a batch that could not be delivered back.
    pub fn usage_failed(&mut self, body: &[u8]) {
        if let Ok(report) = serde_json::from_slice::<UsageReport>(body) {
            for u in report.used {
                self.note_usage(format!("{} {}", u.jti, u.at).as_bytes());
            }
        }
    }

    pub fn version(&self) -> u64 {
        self.meta.version
    }

    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    pub fn revocations(&self) -> usize {
        self.buckets.iter().map(HashMap::len).sum()
    }

    pub fn amendments(&self) -> usize {
        self.amendments.iter().map(HashMap::len).sum()
    }

    /// The long-poll request: path and headers.
    pub fn request(&self) -> (String, Vec<(&'static str, String)>) {
        // Before the first sync: ask for a snapshot and do not wait, so the gate opens as
        // soon as the control plane answers.
        let (since, wait) = if self.synced { (self.meta.version, self.cfg.wait_ms) } else { (0, 0) };
        let path = match self.staging.as_ref().and_then(|s| s.next.as_deref()) {
            // The next part of a snapshot: at once, from where the last part ended.
            Some(after) => format!("{}?since=0&wait_ms=0&after={after}&proxy={}", tokengate_rules::sync::PATH, self.cfg.proxy_id),
            None => format!("{}?since={since}&wait_ms={wait}&proxy={}", tokengate_rules::sync::PATH, self.cfg.proxy_id),
        };
        let headers = vec![
            (":method", "GET".to_owned()),
            (":path", path.clone()),
            (":authority", self.cfg.authority.clone()),
            (":scheme", "http".to_owned()),
            ("authorization", format!("Bearer {}", self.cfg.credential)),
            ("accept", "application/json".to_owned()),
        ];
        (path, headers)
    }

    /// Takes one answer. A snapshot part with a `next` is kept aside (false: nothing
    /// published yet); the last part completes it, and the whole snapshot is published at
    /// the first part's version, so the following delta covers whatever was revoked while
    /// the parts arrived. On error nothing is published and the parts are dropped.
    pub fn apply(&mut self, host: &dyn Host, resp: SyncResponse) -> Result<bool, String> {
        if resp.protocol != PROTOCOL {
            self.staging = None;
            return Err(format!("sync protocol {} is not supported (want {PROTOCOL})", resp.protocol));
        }
        let resp = match self.staging.take() {
            Some(mut first) => {
                if !resp.snapshot {
                    return Err("a snapshot part was expected; starting the snapshot again".into());
                }
                first.revoked.extend(resp.revoked);
                first.keys = resp.keys;
                first.next = resp.next;
                first
            }
            None => resp,
        };
        if resp.snapshot && resp.next.is_some() {
            if resp.revoked.len() > MAX_STAGED {
                return Err(format!("a snapshot of more than {MAX_STAGED} revocations is refused"));
            }
            self.staging = Some(resp);
            return Ok(false);
        }
        self.publish(host, resp).map(|()| true)
    }

    /// Applies one complete answer and publishes it. On error nothing is published.
    fn publish(&mut self, host: &dyn Host, resp: SyncResponse) -> Result<(), String> {
        if self.synced && resp.version < self.meta.version {
            // A rolled-back or replayed answer: never let a revocation be undone.
            return Err(format!("sync answer goes backwards (version {} < {}); refused", resp.version, self.meta.version));
        }
        for k in &resp.keys {
            VerifyingKey::check(&k.kid, &k.x).map_err(|e| format!("sync answer has a bad key {:?}: {}", k.kid, e.code()))?;
        }
        let now_ms = host.now_ms();
        let mut meta = self.meta;
        if !self.synced || resp.keys != self.keys {
            self.keys = resp.keys.clone();
            meta.keys_gen += 1;
            let json = serde_json::to_vec(&self.keys).map_err(|e| e.to_string())?;
            host.set_shared(shared::KEYS_KEY, &json);
        }
        let mut changed = [false; shared::REV_BUCKETS];
        let mut amend_changed = [false; shared::AMEND_BUCKETS];
        if resp.snapshot || !self.synced {
            for b in &mut self.buckets {
                b.clear();
            }
            for b in &mut self.amendments {
                b.clear();
            }
            changed.iter_mut().for_each(|c| *c = true);
            amend_changed.iter_mut().for_each(|c| *c = true);
            self.journal.clear();
            self.journal_from = resp.version;
            meta.rev_gen += 1;
        }
        for r in &resp.revoked {
            let i = shared::bucket_of(&r.jti);
            self.buckets[i].insert(r.jti.as_str().into(), r.exp);
            changed[i] = true;
            if !resp.snapshot && self.synced {
                self.journal.push_back(JournalEntry { v: resp.version, jti: r.jti.clone(), exp: r.exp, amend: None });
            }
        }
        for a in &resp.amended {
            let i = shared::amend_bucket_of(&a.jti);
            self.amendments[i].insert(a.jti.as_str().into(), a.clone());
            amend_changed[i] = true;
            if !resp.snapshot && self.synced {
                self.journal.push_back(JournalEntry { v: resp.version, jti: a.jti.clone(), exp: a.exp, amend: Some(a.clone()) });
            }
        }
        while self.journal.len() > shared::JOURNAL_CAP {
            if let Some(e) = self.journal.pop_front() {
                self.journal_from = self.journal_from.max(e.v);
            }
        }
        if now_ms.saturating_sub(self.last_prune_ms) > PRUNE_EVERY_MS {
            self.last_prune_ms = now_ms;
            let now = now_ms / 1000;
            for (i, b) in self.buckets.iter_mut().enumerate() {
                let before = b.len();
                b.retain(|_, exp| exp.saturating_add(DEFAULT_LEEWAY_SECS) > now);
                changed[i] |= b.len() != before;
            }
            for (i, b) in self.amendments.iter_mut().enumerate() {
                let before = b.len();
                b.retain(|_, a| a.exp.saturating_add(DEFAULT_LEEWAY_SECS) > now);
                amend_changed[i] |= b.len() != before;
            }
        }
        for (i, b) in self.amendments.iter().enumerate() {
            if amend_changed[i] {
                let list: Vec<&Amendment> = b.values().collect();
                let json = serde_json::to_vec(&list).map_err(|e| e.to_string())?;
                host.set_shared(&shared::amend_key(i), &json);
            }
        }
        for (i, b) in self.buckets.iter().enumerate() {
            if changed[i] {
                host.set_shared(&shared::bucket_key(i), &shared::encode_bucket(b.iter().map(|(k, v)| (&**k, *v))));
            }
        }
        if changed.iter().chain(&amend_changed).any(|c| *c) || resp.version != meta.version {
            let journal = Journal { from: self.journal_from, entries: self.journal.iter().cloned().collect() };
            let json = serde_json::to_vec(&journal).map_err(|e| e.to_string())?;
            host.set_shared(shared::JOURNAL_KEY, &json);
        }
        meta.version = resp.version;
        meta.synced_at_ms = now_ms;
        // Written last: workers read `meta` first, so everything it points at is there.
        host.set_shared(shared::META_KEY, &meta.encode());
        if !self.synced {
            host.log(Level::Info, &format!("tokengate sync: first sync at version {} ({} keys, {} revocations)", resp.version, self.keys.len(), self.revocations()));
        }
        self.meta = meta;
        self.synced = true;
        self.failures = 0;
        Ok(())
    }

    /// After a failure: exponential backoff with jitter, 100 ms to 10 s.
    pub fn back_off(&mut self, now_ms: u64, jitter_seed: u64) -> u64 {
        self.failures = self.failures.saturating_add(1);
        let exp = BACKOFF_MIN_MS.saturating_mul(1u64 << self.failures.min(10).saturating_sub(1));
        let base = exp.min(BACKOFF_MAX_MS);
        // Full jitter over the upper half, so a fleet of proxies does not reconnect in step.
        let delay = base / 2 + jitter_seed % (base / 2 + 1);
        self.state = SyncState::Backoff { until_ms: now_ms + delay };
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::tests::FakeHost;
    use tokengate_rules::sync::Revocation;

    fn cfg() -> ControlPlaneConfig {
        ControlPlaneConfig { cluster: "cp".into(), authority: "cp".into(), credential: "s".into(), proxy_id: "p".into(), wait_ms: 1000 }
    }

    fn resp(version: u64, snapshot: bool, revoked: &[&str]) -> SyncResponse {
        SyncResponse {
            protocol: 1,
            version,
            snapshot,
            keys: vec![],
            revoked: revoked.iter().map(|j| Revocation { jti: (*j).into(), exp: 4_000_000_000 }).collect(),
            amended: vec![],
            server_time: 0,
            next: None,
        }
    }

    #[test]
    fn security_reliability_rolled_back_payload_is_refused() {
        let host = FakeHost::at(1_000);
        let mut s = Syncer::new(cfg());
        s.apply(&host, resp(5, true, &["a"])).unwrap();
        assert!(s.apply(&host, resp(4, true, &[])).is_err());
        assert_eq!(s.version(), 5);
        assert_eq!(s.revocations(), 1);
        let meta = Meta::decode(&host.shared.borrow()[shared::META_KEY]).unwrap();
        assert_eq!(meta.version, 5);
    }

    #[test]
    fn deltas_go_to_the_journal_and_snapshots_reset_it() {
        let host = FakeHost::at(1_000);
        let mut s = Syncer::new(cfg());
        s.apply(&host, resp(1, true, &[])).unwrap();
        s.apply(&host, resp(2, false, &["a", "b"])).unwrap();
        let j: Journal = serde_json::from_slice(&host.shared.borrow()[shared::JOURNAL_KEY]).unwrap();
        assert_eq!(j.from, 1);
        assert_eq!(j.entries.len(), 2);
        s.apply(&host, resp(3, true, &["c"])).unwrap();
        let j: Journal = serde_json::from_slice(&host.shared.borrow()[shared::JOURNAL_KEY]).unwrap();
        assert_eq!((j.from, j.entries.len()), (3, 0));
        assert_eq!(s.revocations(), 1);
        assert_eq!(s.request().0, "/sync/v1/changes?since=3&wait_ms=1000&proxy=p");
    }

    #[test]
    fn bad_protocol_or_key_publishes_nothing() {
        let host = FakeHost::at(1_000);
        let mut s = Syncer::new(cfg());
        let mut r = resp(1, true, &[]);
        r.protocol = 2;
        assert!(s.apply(&host, r).is_err());
        let mut r = resp(1, true, &[]);
        r.keys = vec![PublicKey { kid: "k".into(), x: "not-a-key".into() }];
        assert!(s.apply(&host, r).is_err());
        assert!(host.shared.borrow().get(shared::META_KEY).is_none());
    }

    #[test]
    fn usage_is_batched_and_kept_on_failure() {
        let mut s = Syncer::new(cfg());
        s.note_usage(b"aaaaaaaaaaaaaaaaaaaaaaaa 1000");
        s.note_usage(b"aaaaaaaaaaaaaaaaaaaaaaaa 900");
        s.note_usage(b"bbbbbbbbbbbbbbbbbbbbbbbb 2000");
        s.note_usage(b"garbage");
        s.note_usage(b"../x 5");
        assert_eq!(s.pending_usage(), 2);
        let (path, body) = s.usage_batch(10_000).unwrap();
        assert_eq!(path, "/sync/v1/usage");
        let report: UsageReport = serde_json::from_slice(&body).unwrap();
        assert_eq!(report.proxy, "p");
        assert!(report.used.contains(&Usage { jti: "aaaaaaaaaaaaaaaaaaaaaaaa".into(), at: 1000 }));
        assert_eq!(s.pending_usage(), 0);
        assert!(s.usage_batch(11_000).is_none());
        s.usage_failed(&body);
        assert_eq!(s.pending_usage(), 2);
        assert!(s.usage_batch(12_000).is_none(), "not before the interval");
        assert!(s.usage_batch(15_001).is_some());
    }

    #[test]
    fn a_paged_snapshot_is_published_whole_at_the_first_parts_version() {
        let host = FakeHost::at(1_000);
        let mut s = Syncer::new(cfg());
        s.apply(&host, resp(1, true, &["a"])).unwrap();
        let mut part = resp(7, true, &["b", "c"]);
        part.next = Some("c".into());
        assert!(!s.apply(&host, part).unwrap(), "a part is not published");
        assert_eq!(s.request().0, "/sync/v1/changes?since=0&wait_ms=0&after=c&proxy=p");
        assert_eq!(s.revocations(), 1, "the old state stays until the snapshot is whole");
        let mut last = resp(9, true, &["d"]);
        last.next = None;
        assert!(s.apply(&host, last).unwrap());
        assert_eq!((s.version(), s.revocations()), (7, 3));
        assert_eq!(s.request().0, "/sync/v1/changes?since=7&wait_ms=1000&proxy=p");
        let meta = Meta::decode(&host.shared.borrow()[shared::META_KEY]).unwrap();
        assert_eq!(meta.version, 7);
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let mut s = Syncer::new(cfg());
        let first = s.back_off(0, 0);
        assert!((50..=100).contains(&first));
        for _ in 0..20 {
            let d = s.back_off(0, u64::MAX / 3);
            assert!(d <= BACKOFF_MAX_MS);
        }
    }
}
