//! The sync service (singleton VM): long-polls the control plane and publishes keys and
//! revocations into shared data for the workers.

use std::collections::VecDeque;

use hashbrown::HashMap;
use tokengate_rules::revocation::{self, Record};
use tokengate_rules::sync::{
    Amendment, ProxyKeys, PublicKey, Revocation, SyncResponse, Usage, UsageReport, FORMAT_BINARY, PROTOCOL, USAGE_PATH,
};
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

fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<Vec<u8>, SyncError> {
    serde_json::to_vec(v).map_err(|e| SyncError::Failed(e.to_string()))
}

/// Why an answer was not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncError {
    /// Not authentic, a replay or a rollback: refused before anything was applied, and
    /// counted (`sync.rejected`).
    Rejected(String),
    /// Anything else (bad JSON, a bad key, a failed shared-data write): retried.
    Failed(String),
}

impl std::fmt::Display for SyncError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncError::Rejected(why) => write!(f, "answer refused: {why}"),
            SyncError::Failed(why) => f.write_str(why),
        }
    }
}

pub struct Syncer {
    pub cfg: ControlPlaneConfig,
    /// The bearer this proxy presents and the key its answers are checked with.
    proxy_keys: ProxyKeys,
    /// The nonce of the outstanding call; its answer must carry a MAC over it.
    nonce: String,
    nonce_seq: u64,
    nonce_base: u64,
    /// Shared-data keys whose write is still owed (a failed write is retried with the
    /// next answer, and `meta` is not published until every one succeeded).
    dirty_rev: [bool; shared::REV_BUCKETS],
    dirty_amend: [bool; shared::AMEND_BUCKETS],
    dirty_sess: [bool; shared::SESS_BUCKETS],
    dirty_keys: bool,
    dirty_journal: bool,
    /// Generations to bump in the next published `meta`.
    bump_keys_gen: bool,
    bump_rev_gen: bool,
    /// Shared-data writes that failed (`sync.write_failures`).
    pub write_failures: u64,
    /// Answers refused as not authentic, replayed or rolled back (`sync.rejected`).
    pub rejected: u64,
    pub state: SyncState,
    pub failures: u32,
    meta: Meta,
    synced: bool,
    keys: Vec<PublicKey>,
    /// Revocations: per bucket, records sorted by key once `unsorted` is clear (16 bytes
    /// an entry; the bucket's bytes are what shared data gets).
    buckets: Vec<Vec<Record>>,
    unsorted: [bool; shared::REV_BUCKETS],
    amendments: Vec<HashMap<Box<str>, Amendment>>,
    /// Live sessions: id -> end (s).
    sessions: Vec<HashMap<Box<str>, u64>>,
    journal: VecDeque<JournalEntry>,
    journal_from: u64,
    last_prune_ms: u64,
    /// Token use waiting to be reported: jti -> latest ms.
    usage: HashMap<Box<str>, u64>,
    last_usage_ms: u64,
    /// How often usage is sent at most: [`USAGE_EVERY_MS`], or the plugin config's
    /// `session_report_ms` when shorter (session use must arrive within it).
    pub usage_every_ms: u64,
    /// A snapshot arriving in parts: applied only once the last part is here.
    staging: Option<Staged>,
}

/// The parts of a snapshot received so far: the first part's answer (without its
/// revocations) and every part's revocations, already bucketed as records.
struct Staged {
    first: SyncResponse,
    buckets: Vec<Vec<Record>>,
    count: usize,
}

impl Staged {
    fn new(first: SyncResponse) -> Staged {
        Staged { first, buckets: vec![Vec::new(); shared::REV_BUCKETS], count: 0 }
    }

    /// Adds a part's revocations: its JSON list and its binary records.
    fn add(&mut self, revoked: &[Revocation], records: &[u8]) -> Result<(), SyncError> {
        let bin = revocation::records(records).ok_or_else(|| SyncError::Failed("a snapshot part holds a partial record".into()))?;
        self.count += revoked.len() + records.len() / revocation::RECORD_BYTES;
        if self.count > MAX_STAGED {
            return Err(SyncError::Failed(format!("a snapshot of more than {MAX_STAGED} revocations is refused")));
        }
        // Grown by what this part brings (ids spread evenly), not doubled: the VM's peak
        // memory is what it keeps.
        let per_bucket = (revoked.len() + records.len() / revocation::RECORD_BYTES) / shared::REV_BUCKETS;
        for b in &mut self.buckets {
            b.reserve_exact(per_bucket + per_bucket / 8 + 16);
        }
        for r in revoked.iter().map(|r| revocation::record(&revocation::id_key(&r.jti), r.exp)).chain(bin) {
            self.buckets[revocation::bucket_of(&revocation::record_key(&r))].push(r);
        }
        Ok(())
    }
}

/// Id buckets (`jti -> exp`: revocations, live sessions): drops the entries past their
/// expiry (plus the leeway) and marks the buckets that changed.
fn prune_id_buckets(buckets: &mut [HashMap<Box<str>, u64>], dirty: &mut [bool], now: u64) {
    for (b, d) in buckets.iter_mut().zip(dirty.iter_mut()) {
        let before = b.len();
        b.retain(|_, exp| exp.saturating_add(DEFAULT_LEEWAY_SECS) > now);
        *d |= b.len() != before;
    }
}

/// Writes the dirty id buckets as `jti exp` lines under `key(i)`; a failed write stays
/// dirty. Returns how many failed.
fn write_id_buckets(host: &dyn Host, buckets: &[HashMap<Box<str>, u64>], dirty: &mut [bool], key: fn(usize) -> String) -> u64 {
    let mut failed = 0;
    for (i, (b, d)) in buckets.iter().zip(dirty.iter_mut()).enumerate() {
        if *d {
            let ok = host.set_shared(&key(i), &shared::encode_bucket(b.iter().map(|(k, v)| (&**k, *v))));
            *d = !ok;
            failed += u64::from(!ok);
        }
    }
    failed
}

impl Syncer {
    pub fn new(cfg: ControlPlaneConfig) -> Self {
        Syncer {
            proxy_keys: ProxyKeys::derive(cfg.credential.as_bytes()),
            nonce: String::new(),
            nonce_seq: 0,
            nonce_base: 0,
            dirty_rev: [false; shared::REV_BUCKETS],
            dirty_amend: [false; shared::AMEND_BUCKETS],
            dirty_sess: [false; shared::SESS_BUCKETS],
            dirty_keys: false,
            dirty_journal: false,
            bump_keys_gen: false,
            bump_rev_gen: false,
            write_failures: 0,
            rejected: 0,
            cfg,
            state: SyncState::Idle,
            failures: 0,
            meta: Meta::default(),
            synced: false,
            keys: Vec::new(),
            buckets: vec![Vec::new(); shared::REV_BUCKETS],
            unsorted: [false; shared::REV_BUCKETS],
            amendments: (0..shared::AMEND_BUCKETS).map(|_| HashMap::new()).collect(),
            sessions: (0..shared::SESS_BUCKETS).map(|_| HashMap::new()).collect(),
            journal: VecDeque::new(),
            journal_from: 0,
            last_prune_ms: 0,
            usage: HashMap::new(),
            last_usage_ms: 0,
            usage_every_ms: USAGE_EVERY_MS,
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
        if self.usage.is_empty() || now_ms.saturating_sub(self.last_usage_ms) < self.usage_every_ms {
            return None;
        }
        self.last_usage_ms = now_ms;
        let keys: Vec<Box<str>> = self.usage.keys().take(USAGE_MAX_BATCH).cloned().collect();
        let used: Vec<Usage> = keys.into_iter().filter_map(|k| self.usage.remove(&k).map(|at| Usage { jti: k.into(), at })).collect();
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
        self.buckets.iter().map(Vec::len).sum()
    }

    pub fn amendments(&self) -> usize {
        self.amendments.iter().map(HashMap::len).sum()
    }

    /// Live sessions held.
    pub fn sessions(&self) -> usize {
        self.sessions.iter().map(HashMap::len).sum()
    }

    /// The bearer for calls to the control plane (derived from the secret; the secret
    /// itself never leaves the proxy).
    pub fn bearer(&self) -> &str {
        self.proxy_keys.bearer()
    }

    /// The long-poll request: path and headers. Each call gets a new nonce, which its
    /// answer's MAC must cover: `<ms of the first call, hex>.<sequence, hex>`, never
    /// repeated within a process, nor across restarts that are a millisecond apart.
    pub fn request(&mut self, now_ms: u64) -> (String, Vec<(&'static str, String)>) {
        if self.nonce_base == 0 {
            self.nonce_base = now_ms.max(1);
        }
        self.nonce_seq += 1;
        self.nonce = format!("{:x}.{:x}", self.nonce_base, self.nonce_seq);
        // Before the first sync: ask for a snapshot and do not wait, so the gate opens as
        // soon as the control plane answers.
        let (since, wait) = if self.synced { (self.meta.version, self.cfg.wait_ms) } else { (0, 0) };
        // `format=bin`: snapshot parts come as 16-byte records (a control plane that
        // predates it ignores the parameter and answers JSON, which is read as well).
        let path = match self.staging.as_ref().and_then(|s| s.first.next.as_deref()) {
            // The next part of a snapshot: at once, from where the last part ended.
            Some(after) => format!(
                "{}?since=0&wait_ms=0&after={after}&proxy={}&nonce={}&format={FORMAT_BINARY}",
                tokengate_rules::sync::PATH,
                self.cfg.proxy_id,
                self.nonce
            ),
            None => format!(
                "{}?since={since}&wait_ms={wait}&proxy={}&nonce={}&format={FORMAT_BINARY}",
                tokengate_rules::sync::PATH,
                self.cfg.proxy_id,
                self.nonce
            ),
        };
        let headers = vec![
            (":method", "GET".to_owned()),
            (":path", path.clone()),
            (":authority", self.cfg.authority.clone()),
            (":scheme", "http".to_owned()),
            ("authorization", format!("Bearer {}", self.proxy_keys.bearer())),
            ("accept", "application/json".to_owned()),
        ];
        (path, headers)
    }

    /// Takes one raw answer to the outstanding call: its MAC (the [`MAC_HEADER`] value)
    /// must cover this call's nonce and the exact body, or nothing is applied. Then as
    /// [`Syncer::apply`].
    ///
    /// [`MAC_HEADER`]: tokengate_rules::sync::MAC_HEADER
    pub fn accept(&mut self, host: &dyn Host, body: &[u8], mac: Option<&str>) -> Result<bool, SyncError> {
        let authentic = !self.nonce.is_empty() && mac.is_some_and(|m| self.proxy_keys.check_answer_mac(&self.nonce, body, m));
        // One answer per nonce: a second delivery is a replay.
        self.nonce.clear();
        if !authentic {
            self.rejected += 1;
            let why = if mac.is_none() { "it carries no MAC" } else { "its MAC does not match (forged, replayed or for another call)" };
            return Err(SyncError::Rejected(why.into()));
        }
        let answer = tokengate_rules::sync::decode_answer(body).map_err(SyncError::Failed)?;
        self.apply_with(host, answer.header, answer.records)
    }

    /// Takes one answer. A snapshot part with a `next` is kept aside (false: nothing
    /// published yet); the last part completes it, and the whole snapshot is published at
    /// the first part's version, so the following delta covers whatever was revoked while
    /// the parts arrived. On error nothing is published and the parts are dropped.
    pub fn apply(&mut self, host: &dyn Host, resp: SyncResponse) -> Result<bool, SyncError> {
        self.apply_with(host, resp, &[])
    }

    /// As [`Syncer::apply`], with the answer's binary revocation records (`format=bin`).
    fn apply_with(&mut self, host: &dyn Host, mut resp: SyncResponse, records: &[u8]) -> Result<bool, SyncError> {
        if resp.protocol != PROTOCOL {
            self.staging = None;
            return Err(SyncError::Failed(format!("sync protocol {} is not supported (want {PROTOCOL})", resp.protocol)));
        }
        if !resp.snapshot {
            if self.staging.take().is_some() {
                return Err(SyncError::Failed("a snapshot part was expected; starting the snapshot again".into()));
            }
            // A delta's records (the control plane sends deltas as JSON) join its list,
            // spelt as their key: the journal carries ids.
            let rs = revocation::records(records).ok_or_else(|| SyncError::Failed("an answer holds a partial record".into()))?;
            resp.revoked
                .extend(rs.map(|r| Revocation { jti: revocation::key_hex(&revocation::record_key(&r)), exp: revocation::record_exp(&r) }));
            return self.publish(host, resp, None).map(|()| true);
        }
        let revoked = std::mem::take(&mut resp.revoked);
        let mut staged = match self.staging.take() {
            Some(mut staged) => {
                staged.first.keys = std::mem::take(&mut resp.keys);
                staged.first.next = resp.next.take();
                staged
            }
            None => Staged::new(resp),
        };
        staged.add(&revoked, records)?;
        drop(revoked);
        if staged.first.next.is_some() {
            self.staging = Some(staged);
            return Ok(false);
        }
        let Staged { first, buckets, .. } = staged;
        self.publish(host, first, Some(buckets)).map(|()| true)
    }

    /// Applies one complete answer and publishes it. On error `meta` is not published:
    /// a rolled-back answer changes nothing; after a failed shared-data write the keys
    /// still owed are retried with the next answer (the call is repeated from the last
    /// published version), and workers keep the last complete version meanwhile.
    ///
    /// A snapshot's revocations come in `snapshot` (bucketed records), a delta's in
    /// `resp.revoked`.
    fn publish(&mut self, host: &dyn Host, resp: SyncResponse, snapshot: Option<Vec<Vec<Record>>>) -> Result<(), SyncError> {
        if self.synced && resp.version < self.meta.version {
            // A rolled-back or replayed answer: never let a revocation be undone.
            self.rejected += 1;
            return Err(SyncError::Rejected(format!("the version goes backwards ({} < {})", resp.version, self.meta.version)));
        }
        for k in &resp.keys {
            VerifyingKey::check(&k.kid, &k.x)
                .map_err(|e| SyncError::Failed(format!("sync answer has a bad key {:?}: {}", k.kid, e.code())))?;
        }
        let now_ms = host.now_ms();
        if !self.synced || resp.keys != self.keys {
            self.keys = resp.keys.clone();
            self.dirty_keys = true;
            self.bump_keys_gen = true;
        }
        if resp.snapshot || !self.synced {
            // The old buckets go before the new ones are sorted: the VM's memory never
            // shrinks, so its peak is what it keeps.
            self.buckets = Vec::new();
            self.buckets = snapshot.unwrap_or_else(|| vec![Vec::new(); shared::REV_BUCKETS]);
            self.buckets.resize_with(shared::REV_BUCKETS, Vec::new);
            self.unsorted = [true; shared::REV_BUCKETS];
            for b in &mut self.amendments {
                b.clear();
            }
            for b in &mut self.sessions {
                b.clear();
            }
            self.dirty_rev = [true; shared::REV_BUCKETS];
            self.dirty_amend = [true; shared::AMEND_BUCKETS];
            self.dirty_sess = [true; shared::SESS_BUCKETS];
            self.journal.clear();
            self.journal_from = resp.version;
            self.bump_rev_gen = true;
        }
        for r in &resp.revoked {
            let key = revocation::id_key(&r.jti);
            let i = revocation::bucket_of(&key);
            revocation::push(&mut self.buckets[i], revocation::record(&key, r.exp));
            (self.dirty_rev[i], self.unsorted[i]) = (true, true);
            if !resp.snapshot && self.synced {
                self.journal.push_back(JournalEntry { v: resp.version, jti: r.jti.clone(), exp: r.exp, amend: None, session: None });
            }
        }
        for a in &resp.amended {
            let i = shared::amend_bucket_of(&a.jti);
            self.amendments[i].insert(a.jti.as_str().into(), a.clone());
            self.dirty_amend[i] = true;
            if !resp.snapshot && self.synced {
                self.journal.push_back(JournalEntry {
                    v: resp.version,
                    jti: a.jti.clone(),
                    exp: a.exp.max(a.signed_exp),
                    amend: Some(a.clone()),
                    session: None,
                });
            }
        }
        // Sessions: started ones join the live set, then ended ones leave it (a session
        // started and ended within one answer is in both lists).
        let delta = !resp.snapshot && self.synced;
        for live in &resp.sessions {
            let i = shared::bucket_of(&live.jti);
            self.sessions[i].insert(live.jti.as_str().into(), live.exp);
            self.dirty_sess[i] = true;
            if delta {
                self.journal.push_back(JournalEntry {
                    v: resp.version,
                    jti: live.jti.clone(),
                    exp: live.exp,
                    amend: None,
                    session: Some(true),
                });
            }
        }
        for jti in &resp.ended {
            let i = shared::bucket_of(jti);
            if self.sessions[i].remove(jti.as_str()).is_some() {
                self.dirty_sess[i] = true;
            }
            if delta {
                self.journal.push_back(JournalEntry { v: resp.version, jti: jti.clone(), exp: 0, amend: None, session: Some(false) });
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
                b.retain(|r| revocation::record_exp(r).saturating_add(DEFAULT_LEEWAY_SECS) > now);
                self.dirty_rev[i] |= b.len() != before;
            }
            for (i, b) in self.amendments.iter_mut().enumerate() {
                let before = b.len();
                // Until the signed expiry: past its own `exp` the amendment is what
                // refuses the token.
                b.retain(|_, a| a.exp.max(a.signed_exp).saturating_add(DEFAULT_LEEWAY_SECS) > now);
                self.dirty_amend[i] |= b.len() != before;
            }
            prune_id_buckets(&mut self.sessions, &mut self.dirty_sess, now);
        }
        let changed = self.dirty_rev.iter().chain(&self.dirty_amend).chain(&self.dirty_sess).any(|c| *c) || self.dirty_keys;
        self.dirty_journal |= changed || resp.version != self.meta.version;
        let failed = self.write_owed(host)?;
        if failed > 0 {
            self.write_failures += failed;
            return Err(SyncError::Failed(format!(
                "{failed} shared-data writes failed; version {} is not published, retrying",
                resp.version
            )));
        }
        let mut meta = self.meta;
        meta.keys_gen += u64::from(self.bump_keys_gen);
        meta.rev_gen += u64::from(self.bump_rev_gen);
        meta.version = resp.version;
        meta.synced_at_ms = now_ms;
        // Written last: workers read `meta` first, so everything it points at is there.
        if !host.set_shared(shared::META_KEY, &meta.encode()) {
            self.write_failures += 1;
            return Err(SyncError::Failed(format!(
                "writing {} failed; version {} is not published, retrying",
                shared::META_KEY,
                resp.version
            )));
        }
        (self.bump_keys_gen, self.bump_rev_gen) = (false, false);
        if !self.synced {
            host.log(
                Level::Info,
                &format!(
                    "tokengate sync: first sync at version {} ({} keys, {} revocations)",
                    resp.version,
                    self.keys.len(),
                    self.revocations()
                ),
            );
        }
        self.meta = meta;
        self.synced = true;
        self.failures = 0;
        Ok(())
    }

    /// Writes every shared-data key still owed; returns how many writes failed (those
    /// stay owed).
    fn write_owed(&mut self, host: &dyn Host) -> Result<u64, SyncError> {
        let mut failed = 0;
        for i in 0..shared::AMEND_BUCKETS {
            if self.dirty_amend[i] {
                let list: Vec<&Amendment> = self.amendments[i].values().collect();
                let ok = host.set_shared(&shared::amend_key(i), &json(&list)?);
                self.dirty_amend[i] = !ok;
                failed += u64::from(!ok);
            }
        }
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if std::mem::take(&mut self.unsorted[i]) {
                revocation::normalize(b);
            }
            if self.dirty_rev[i] {
                let ok = host.set_shared(&shared::bucket_key(i), b.as_flattened());
                self.dirty_rev[i] = !ok;
                failed += u64::from(!ok);
            }
        }
        failed += write_id_buckets(host, &self.sessions, &mut self.dirty_sess, shared::sess_key);
        if self.dirty_keys {
            let ok = host.set_shared(shared::KEYS_KEY, &json(&self.keys)?);
            self.dirty_keys = !ok;
            failed += u64::from(!ok);
        }
        if self.dirty_journal {
            let journal = Journal { from: self.journal_from, entries: self.journal.iter().cloned().collect() };
            let ok = host.set_shared(shared::JOURNAL_KEY, &json(&journal)?);
            self.dirty_journal = !ok;
            failed += u64::from(!ok);
        }
        Ok(failed)
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
        ControlPlaneConfig {
            cluster: "cp".into(),
            authority: "cp".into(),
            credential: SECRET.into(),
            proxy_id: "p".into(),
            wait_ms: 1000,
            insecure_short_credential: false,
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// The nonce of the request the syncer would send now.
    fn nonce_of(s: &mut Syncer) -> String {
        let (path, _) = s.request(1_000);
        path.split("nonce=").nth(1).unwrap().split('&').next().unwrap().to_owned()
    }

    /// An answer as the control plane sends it: JSON and its MAC over `nonce`.
    fn signed(r: &SyncResponse, nonce: &str) -> (Vec<u8>, String) {
        let body = serde_json::to_vec(r).unwrap();
        let mac = ProxyKeys::derive(SECRET.as_bytes()).answer_mac(nonce, &body);
        (body, mac)
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
            sessions: vec![],
            ended: vec![],
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
        assert!(s.request(1_000).0.starts_with("/sync/v1/changes?since=3&wait_ms=1000&proxy=p&nonce="));
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
        assert!(s.request(1_000).0.starts_with("/sync/v1/changes?since=0&wait_ms=0&after=c&proxy=p&nonce="));
        assert_eq!(s.revocations(), 1, "the old state stays until the snapshot is whole");
        let mut last = resp(9, true, &["d"]);
        last.next = None;
        assert!(s.apply(&host, last).unwrap());
        assert_eq!((s.version(), s.revocations()), (7, 3));
        assert!(s.request(1_000).0.starts_with("/sync/v1/changes?since=7&wait_ms=1000&proxy=p&nonce="));
        let meta = Meta::decode(&host.shared.borrow()[shared::META_KEY]).unwrap();
        assert_eq!(meta.version, 7);
    }

    /// Issue 14: snapshot parts in binary (asked with `format=bin`), under the same MAC
    /// as JSON, mixed with JSON parts (an older control plane), are published whole as
    /// sorted 16-byte records that a worker loads without a parse.
    #[test]
    fn binary_snapshot_parts_are_published_as_sorted_records() {
        use tokengate_rules::sync::encode_binary;
        let host = FakeHost::at(1_000);
        let mut s = Syncer::new(cfg());
        let ids: Vec<String> = (0..1000u128).map(|i| format!("{:024x}", (i * 0x9e37_79b9_7f4a_7c15) & ((1 << 96) - 1))).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert!(s.request(1_000).0.ends_with("&format=bin"));
        let mut first = resp(7, true, &refs[..600]);
        first.next = Some("x".into());
        let body = encode_binary(first).unwrap();
        // The MAC covers the binary body exactly: one flipped bit of a record is refused.
        let n1 = nonce_of(&mut s);
        let mac1 = ProxyKeys::derive(SECRET.as_bytes()).answer_mac(&n1, &body);
        let mut tampered = body.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(s.accept(&host, &tampered, Some(&mac1)), Err(SyncError::Rejected(_))));
        let n3 = nonce_of(&mut s);
        let mac3 = ProxyKeys::derive(SECRET.as_bytes()).answer_mac(&n3, &body);
        assert_eq!(s.accept(&host, &body, Some(&mac3)), Ok(false));
        assert!(s.request(1_000).0.contains("after=x&"));
        let n4 = nonce_of(&mut s);
        let (json, mac4) = signed(&resp(8, true, &refs[550..]), &n4);
        assert_eq!(s.accept(&host, &json, Some(&mac4)), Ok(true));
        assert_eq!((s.version(), s.revocations()), (7, 1000), "the overlap is kept once");
        let mut worker = tokengate_rules::revocation::RevocationSet::new();
        for i in 0..shared::REV_BUCKETS {
            let bytes = host.shared.borrow().get(&shared::bucket_key(i)).cloned().unwrap_or_default();
            let records: Vec<Record> = revocation::records(&bytes).unwrap().collect();
            assert!(records.windows(2).all(|w| w[0] < w[1]), "bucket {i} is sorted");
            assert!(worker.load_bucket(i, &bytes));
        }
        assert!(ids.iter().all(|id| worker.contains(id)));
        assert!(!worker.contains("ffffffffffffffffffffffff"));
        // A partial record is refused and publishes nothing.
        let n5 = nonce_of(&mut s);
        let mut bad = encode_binary(resp(9, true, &refs[..1])).unwrap();
        bad.pop();
        let mac5 = ProxyKeys::derive(SECRET.as_bytes()).answer_mac(&n5, &bad);
        assert!(matches!(s.accept(&host, &bad, Some(&mac5)), Err(SyncError::Failed(_))));
        assert_eq!((s.version(), s.revocations()), (7, 1000));
    }

    /// Issue 10 defect 4: an answer with a bad MAC, no MAC, or a MAC over an earlier
    /// call's nonce (a replay) is refused and counted, and changes nothing.
    #[test]
    fn security_reliability_forged_or_replayed_sync_answer_is_refused() {
        let host = FakeHost::at(1_000);
        let mut s = Syncer::new(cfg());
        let n1 = nonce_of(&mut s);
        let (body, mac) = signed(&resp(5, true, &["a"]), &n1);
        assert_eq!(s.accept(&host, &body, Some(&mac)), Ok(true));
        let before = host.shared.borrow().clone();

        // A replay of that very answer to the next call.
        let _n2 = nonce_of(&mut s);
        assert!(matches!(s.accept(&host, &body, Some(&mac)), Err(SyncError::Rejected(_))));
        // A higher version that wipes the revocations, without the MAC key.
        let n3 = nonce_of(&mut s);
        let (wipe, _) = signed(&resp(9, true, &[]), &n3);
        let forged = ProxyKeys::derive(b"not the secret, but 32 bytes long").answer_mac(&n3, &wipe);
        assert!(matches!(s.accept(&host, &wipe, Some(&forged)), Err(SyncError::Rejected(_))));
        let _n4 = nonce_of(&mut s);
        assert!(matches!(s.accept(&host, &wipe, None), Err(SyncError::Rejected(_))));
        // The bearer the proxy sends (what an impostor sees) does not make a valid MAC.
        let n5 = nonce_of(&mut s);
        let bearer_as_secret = ProxyKeys::derive(s.bearer().as_bytes()).answer_mac(&n5, &wipe);
        assert!(matches!(s.accept(&host, &wipe, Some(&bearer_as_secret)), Err(SyncError::Rejected(_))));
        // A genuine answer delivered twice for one call: the second is a replay.
        let n6 = nonce_of(&mut s);
        let (same, mac6) = signed(&resp(5, false, &[]), &n6);
        assert_eq!(s.accept(&host, &same, Some(&mac6)), Ok(true));
        assert!(matches!(s.accept(&host, &same, Some(&mac6)), Err(SyncError::Rejected(_))));
        // A genuine answer that goes backwards.
        let n7 = nonce_of(&mut s);
        let (old, mac7) = signed(&resp(4, true, &[]), &n7);
        assert!(matches!(s.accept(&host, &old, Some(&mac7)), Err(SyncError::Rejected(_))));

        assert_eq!(s.rejected, 6);
        assert_eq!((s.version(), s.revocations()), (5, 1));
        let after = host.shared.borrow().clone();
        assert_eq!(Meta::decode(&after[shared::META_KEY]).unwrap().version, 5);
        let keys: Vec<&String> = before.keys().filter(|k| *k != shared::META_KEY).collect();
        for k in keys {
            assert_eq!(before[k], after[k], "{k} changed");
        }
    }

    /// The proxy never sends its secret: the bearer is derived from it.
    #[test]
    fn security_sync_calls_carry_a_derived_bearer_not_the_secret() {
        let mut s = Syncer::new(cfg());
        let (path, headers) = s.request(1_000);
        assert!(!path.contains(SECRET));
        let auth = headers.iter().find(|(k, _)| *k == "authorization").unwrap();
        assert_eq!(auth.1, format!("Bearer {}", ProxyKeys::derive(SECRET.as_bytes()).bearer()));
        assert!(!auth.1.contains(SECRET));
        let n1 = nonce_of(&mut s);
        assert_ne!(n1, nonce_of(&mut s), "a nonce is never repeated");
    }

    /// Issue 10 defect 8: a failed shared-data write publishes no `meta` for that
    /// version; the write is retried with the next answer and counted.
    #[test]
    fn reliability_failed_shared_write_publishes_no_version_and_is_retried() {
        let host = FakeHost::at(1_000);
        let mut s = Syncer::new(cfg());
        s.apply(&host, resp(1, true, &[])).unwrap();
        *host.fail_writes.borrow_mut() = Some("tokengate/rev/".into());
        let r = s.apply(&host, resp(2, false, &["a"]));
        assert!(matches!(r, Err(SyncError::Failed(_))), "{r:?}");
        assert_eq!(s.write_failures, 1);
        assert_eq!(Meta::decode(&host.shared.borrow()[shared::META_KEY]).unwrap().version, 1, "meta was published");
        assert_eq!(s.version(), 1);
        // The store recovers; the next answer (the same delta, asked again from version 1,
        // or a newer one) writes the owed bucket and publishes.
        *host.fail_writes.borrow_mut() = None;
        s.apply(&host, resp(2, false, &[])).unwrap();
        let meta = Meta::decode(&host.shared.borrow()[shared::META_KEY]).unwrap();
        assert_eq!(meta.version, 2);
        let key = revocation::id_key("a");
        let bucket = host.shared.borrow()[&shared::bucket_key(revocation::bucket_of(&key))].clone();
        assert_eq!(bucket, revocation::record(&key, 4_000_000_000).to_vec());
        // A failed keys write: the key generation is bumped only when it is written.
        *host.fail_writes.borrow_mut() = Some(shared::KEYS_KEY.into());
        let mut r = resp(3, false, &[]);
        let x = base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key().as_bytes(),
        );
        r.keys = vec![PublicKey { kid: "k2".into(), x }];
        assert!(s.apply(&host, r.clone()).is_err());
        assert_eq!(Meta::decode(&host.shared.borrow()[shared::META_KEY]).unwrap().keys_gen, meta.keys_gen);
        *host.fail_writes.borrow_mut() = None;
        s.apply(&host, r).unwrap();
        let after = Meta::decode(&host.shared.borrow()[shared::META_KEY]).unwrap();
        assert_eq!((after.version, after.keys_gen), (3, meta.keys_gen + 1));
        assert!(host.shared.borrow().contains_key(shared::KEYS_KEY));
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
