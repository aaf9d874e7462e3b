//! The per-request decision, over the [`Host`] seam.
//!
//! A `Worker` lives once per worker VM and is shared by that worker's request contexts.
//! It mirrors the sync state from shared data (keys, revocations) and caches verified
//! tokens, so the warm path is: one read of `tokengate/meta`, a local map lookup, a
//! time check, a revocation lookup and a scope match.

use std::cell::Cell;
use std::net::IpAddr;
use std::rc::Rc;

use hashbrown::HashMap;
use sha2::{Digest, Sha256};
use tokengate_rules::denial::{bearer_unchecked, valid_token68};
use tokengate_rules::device::{normalize as normalize_device, peer_ip};
use tokengate_rules::path::{query_has_access_token, split};
use tokengate_rules::revocation::{IdSet, RevocationSet};
use tokengate_rules::route::{admits_kind, authorize, Refusal, Rights};
use tokengate_rules::sync::{Amendment, PublicKey};
use tokengate_rules::token::{inspect, verify, MAX_TOKEN_LEN};
use tokengate_rules::{Claims, Denial, KeySet, ScopeSet, TokenError, TokenKind};

use crate::config::{FailMode, GateConfig, Identity, IdentityHeaders};
use crate::host::{Host, Level};
use crate::shared::{self, Journal, Meta};

/// A verified token with its rights compiled, as cached: everything the warm path and
/// the identity headers need, computed once per token.
#[derive(Debug)]
pub struct Verified {
    pub kind: TokenKind,
    pub claims: Claims,
    pub rights: Rights,
    /// Canonical text of each scope, for `x-tokengate-scope`.
    scope_names: Vec<String>,
    /// The optional identity headers (user, app, params, flags, ...) the configuration
    /// asks for, decided once per token.
    extra_headers: Vec<(&'static str, String)>,
    /// A voucher token's device (`dev`) when it is an IP address in its canonical text, the
    /// only spelling a peer's address can equal: parsed once, so the device check compares
    /// addresses and formats none per request.
    device_ip: Option<IpAddr>,
    /// When this worker last reported the token's use (ms).
    reported_ms: Cell<u64>,
}

/// An allowed request: the token, and which of its scopes allowed it.
#[derive(Debug)]
pub struct Allowed {
    pub verified: Rc<Verified>,
    pub scope: Option<usize>,
    /// The configured `identity_headers`.
    identity: IdentityHeaders,
}

impl Allowed {
    /// Calls `f` with each configured identity header for the upstream; no allocation.
    pub fn headers(&self, mut f: impl FnMut(&'static str, &str)) {
        let v = &*self.verified;
        if self.identity.has(Identity::Subject) {
            f(Identity::Subject.name(), &v.claims.sub);
        }
        if self.identity.has(Identity::TokenId) {
            f(Identity::TokenId.name(), &v.claims.jti);
        }
        if self.identity.has(Identity::Scope) {
            f(Identity::Scope.name(), self.scope.and_then(|i| v.scope_names.get(i)).map_or("*", String::as_str));
        }
        // Already only the configured ones.
        for (name, value) in &v.extra_headers {
            f(name, value);
        }
    }
}

/// What the filter needs to know about a request.
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path` as Envoy forwards it (after normalization), with the query.
    pub path: &'a str,
    /// Every `authorization` header value, in order.
    pub authorization: &'a [&'a str],
    /// The configured `device_header`'s value, when present and sent by a peer trusted
    /// to set it (the caller strips it otherwise).
    pub device_header: Option<&'a str>,
}

#[derive(Debug)]
pub enum Outcome {
    /// Let it through, with identity headers from [`Allowed::headers`].
    Allow(Allowed),
    Deny(Denial),
    /// The captive portal's page (seed 000): no token; pass it on with these headers (the
    /// network, and the device when the gate can tell it).
    Portal(Vec<(&'static str, String)>),
}

/// Where the verified claims came from, for the cache metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    Local,
    Shared,
    Miss,
}

pub struct Worker {
    cfg: Rc<GateConfig>,
    meta: Option<Meta>,
    keys: KeySet,
    revoked: RevocationSet,
    /// Live sessions (seed 003): a session token passes only while its id is here.
    sessions: IdSet,
    amendments: HashMap<Box<str>, Amendment>,
    cache: HashMap<Box<[u8]>, Rc<Verified>>,
    last_prune_ms: u64,
    stale_logged: bool,
    meta_read_ms: u64,
    /// The clock as of the last [`Worker::tick`]; `None` until the first tick (then each
    /// request reads the host's clock).
    tick_ms: Option<u64>,
    /// Requests since the last tick, to notice a timer that stopped firing.
    since_tick: u32,
    usage_queue: Option<u32>,
    /// Uses noted since the last flush, `<jti> <ms>` lines.
    usage_lines: String,
    pub last_cache: CacheResult,
}

const PRUNE_EVERY_MS: u64 = 60_000;
/// Without ticks, a worker re-reads `tokengate/meta` at most this often. Reading it costs
/// a locked copy out of shared data on every request otherwise; this bounds the extra
/// propagation delay of a revocation at 5 ms.
pub const STATE_CHECK_MS: u64 = tokengate_rules::sync::WORKER_LAG_MS;
/// The gate's tick: it reads the clock and `tokengate/meta` so that requests do neither.
/// Under [`STATE_CHECK_MS`], so a worker is at most that far behind the sync state
/// even when its timer fires a little late.
pub const TICK_MS: u64 = STATE_CHECK_MS - 1;
/// How many requests without a tick before the worker checks that its timer still fires
/// (a power of two).
const TICK_GUARD_EVERY: u32 = 256;
/// A tick this late means the timer stopped.
const TICK_STALL_MS: u64 = 100;
/// Noted uses are put on the shared queue at once beyond this many bytes (about 1000 lines).
const USAGE_BUFFER_MAX: usize = 32 * 1024;

impl Worker {
    pub fn new(cfg: Rc<GateConfig>) -> Self {
        Worker {
            cfg,
            meta: None,
            keys: KeySet::new(),
            revoked: RevocationSet::new(),
            sessions: IdSet::new(),
            amendments: HashMap::new(),
            cache: HashMap::new(),
            last_prune_ms: 0,
            stale_logged: false,
            meta_read_ms: 0,
            tick_ms: None,
            since_tick: 0,
            usage_queue: None,
            usage_lines: String::new(),
            last_cache: CacheResult::Miss,
        }
    }

    /// On the worker's timer (every [`TICK_MS`]): takes the time for the requests until
    /// the next tick and reads the sync state, so the request path makes no host call
    /// for either. Exp/nbf are checked in seconds, so the tick's clock is precise enough.
    pub fn tick(&mut self, host: &dyn Host, now_ms: u64) {
        self.tick_ms = Some(now_ms);
        self.since_tick = 0;
        self.flush_usage(host);
        // A failure (not synced yet) is answered per request, by `refresh`.
        let _ = self.read_state(host, now_ms);
    }

    pub fn realm(&self) -> &str {
        &self.cfg.realm
    }

    pub fn revocations(&self) -> usize {
        self.revoked.len()
    }

    /// Live sessions this worker knows.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    pub fn decide(&mut self, host: &dyn Host, req: &Request) -> Outcome {
        if let Some(portal) = self.cfg.portal.as_ref().filter(|_| self.cfg.is_portal(req.path)) {
            // `identity_headers` has both whenever a portal is configured (checked then).
            let mut headers = vec![(Identity::Network.name(), portal.network.clone())];
            if let Some(device) = self.device(host, req) {
                headers.push((Identity::Device.name(), device));
            }
            return Outcome::Portal(headers);
        }
        match self.check(host, req) {
            Ok(allowed) => Outcome::Allow(allowed),
            Err(d) => Outcome::Deny(d),
        }
    }

    fn check(&mut self, host: &dyn Host, req: &Request) -> Result<Allowed, Denial> {
        // Exactly one credential (SECURITY.md): one Authorization header, none in the query.
        if req.authorization.len() > 1 || query_has_access_token(req.path) {
            return Err(Denial::InvalidRequest("multiple_credentials"));
        }
        let token = match req.authorization.first() {
            None => return Err(Denial::MissingToken),
            Some(v) => bearer_unchecked(v)?.ok_or(Denial::MissingToken)?,
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(Denial::InvalidToken(TokenError::TooLarge));
        }
        let now_ms = self.clock(host);
        self.refresh(host, now_ms)?;
        let now = now_ms / 1000;
        let verified = self.verified(host, token, now)?;
        if self.revoked.contains(&verified.claims.jti) {
            return Err(Denial::InvalidToken(TokenError::Revoked));
        }
        // A session lives while it is in the synced live set and its token is not revoked
        // (the control plane ends it then too; this refuses it even before that arrives).
        if verified.kind == TokenKind::Session {
            let token_revoked = verified.claims.par.as_deref().is_none_or(|par| self.revoked.contains(par));
            if token_revoked || !self.sessions.contains(&verified.claims.jti) {
                return Err(Denial::InvalidToken(TokenError::SessionEnded));
            }
        }
        let (_, segments) = split(req.path).map_err(Denial::BadPath)?;
        // A login's HTTP-server token and a voucher's token only on the routes marked for
        // them, and no other kind there.
        admits_kind(&self.cfg.routes, &self.cfg.prefix, req.method, &segments, verified.kind).map_err(Denial::Refused)?;
        // A voucher's token (seed 000) only from its device; its network was checked with
        // the audience (`wrong_network`).
        if verified.kind == TokenKind::VoucherAccess && !self.same_device(host, req, &verified) {
            return Err(Denial::Refused(Refusal::DeviceMismatch));
        }
        let decision = authorize(&verified.rights, &self.cfg.routes, &self.cfg.prefix, req.method, &segments);
        decision.result.map_err(Denial::Refused)?;
        let scope = match (decision.scope, &verified.rights.scopes) {
            (Some(found), Some(set)) => set.patterns().iter().position(|p| std::ptr::eq(p, found)),
            _ => None,
        };
        drop(decision);
        self.report_use(host, &verified, now_ms);
        Ok(Allowed { verified, scope, identity: self.cfg.identity_headers })
    }

    /// The request's device (seed 000): the trusted device header, normalized, when one is
    /// configured, else the peer's IP address. `None` when it cannot be told.
    fn device(&self, host: &dyn Host, req: &Request) -> Option<String> {
        match &self.cfg.device_header {
            Some(_) => req.device_header.and_then(normalize_device),
            None => host.peer_address().and_then(|a| peer_ip(&a)).map(|ip| ip.to_string()),
        }
    }

    /// Is the request from the voucher token's device? The same answer as comparing
    /// [`Worker::device`] with `dev`, without building the peer's text: this runs on every
    /// request of a voucher token.
    fn same_device(&self, host: &dyn Host, req: &Request, v: &Verified) -> bool {
        match &self.cfg.device_header {
            Some(_) => req.device_header.and_then(normalize_device).is_some_and(|d| v.claims.dev.as_deref() == Some(d.as_str())),
            None => v.device_ip.is_some_and(|ip| host.peer_address().and_then(|a| peer_ip(&a)) == Some(ip)),
        }
    }

    /// Notes the token's use, at most once per `usage_report_ms` per token and worker, for
    /// the sync service to report (idle expiry, last use). The lines go on the shared
    /// queue together, once per tick: an enqueue is a host call and wakes the sync VM, which
    /// a request with a never-seen token would otherwise pay every time. Without ticks (or
    /// with a full buffer) they go at once.
    fn report_use(&mut self, host: &dyn Host, v: &Verified, now_ms: u64) {
        // Sessions die when idle, so their use is reported sooner.
        let every = if v.kind == TokenKind::Session { self.cfg.session_report_ms } else { self.cfg.usage_report_ms };
        if every == 0 || now_ms.saturating_sub(v.reported_ms.get()) < every {
            return;
        }
        use std::fmt::Write as _;
        let _ = writeln!(self.usage_lines, "{} {now_ms}", v.claims.jti);
        v.reported_ms.set(now_ms);
        if self.tick_ms.is_none() || self.usage_lines.len() >= USAGE_BUFFER_MAX {
            self.flush_usage(host);
        }
    }

    /// Puts the noted uses on the shared queue as one message of `<jti> <ms>` lines.
    fn flush_usage(&mut self, host: &dyn Host) {
        if self.usage_lines.is_empty() {
            return;
        }
        if self.usage_queue.is_none() {
            self.usage_queue = host.resolve_queue(shared::VM_ID, shared::USAGE_QUEUE);
        }
        match self.usage_queue {
            Some(q) => {
                // Best effort, like the report itself: a lost batch is sent again by the
                // next use after `usage_report_ms`.
                let _ = host.enqueue(q, self.usage_lines.trim_end().as_bytes());
                self.usage_lines.clear();
            }
            // No sync service (yet): keep what fits, for the next tick.
            None if self.usage_lines.len() >= USAGE_BUFFER_MAX => self.usage_lines.clear(),
            None => {}
        }
    }

    /// Verified claims for `token`: from the worker's map, else the shared slot, else
    /// a full signature check (stored in both).
    fn verified(&mut self, host: &dyn Host, token: &str, now: u64) -> Result<Rc<Verified>, Denial> {
        let leeway = self.cfg.policy.leeway_secs;
        if let Some(v) = self.cache.get(token.as_bytes()) {
            self.last_cache = CacheResult::Local;
            v.claims.check_time(now, leeway).map_err(Denial::InvalidToken)?;
            return Ok(v.clone());
        }
        // Not a token this worker validated before: check the header's alphabet now.
        if !valid_token68(token) {
            return Err(Denial::InvalidRequest("malformed_authorization"));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let slot = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % self.cfg.shared_cache_slots;
        let key = shared::claims_key(slot);
        let keys_gen = self.meta.map_or(0, |m| m.keys_gen);
        let from_shared = host.get_shared(&key).and_then(|bytes| shared::decode_slot(&bytes, &digest, keys_gen));
        let (kind, mut claims) = match from_shared {
            Some((kind, claims)) => {
                self.last_cache = CacheResult::Shared;
                claims.check_policy(kind, &self.cfg.policy, now).map_err(|e| refusal(e, kind))?;
                (kind, claims)
            }
            None => {
                self.last_cache = CacheResult::Miss;
                let (kind, claims) = verify(token, &self.keys, &self.cfg.policy, now).map_err(|e| match e {
                    // Signed by us for another audience: for a voucher's token that is
                    // another Wi-Fi network (its kind is read only after the signature held).
                    TokenError::WrongAudience => refusal(e, inspect(token).map_or(TokenKind::Api, |(k, _)| k)),
                    _ => Denial::InvalidToken(e),
                })?;
                if let Some(bytes) = shared::encode_slot(&digest, kind, keys_gen, &claims) {
                    host.set_shared(&key, &bytes);
                }
                (kind, claims)
            }
        };
        // Amendments (seed 001 update) apply over the signed claims; the shared slot keeps
        // the signed ones, and the local cache is emptied whenever an amendment arrives.
        // A session has its token's rights as they are now: its token's amendment applies.
        let amended_id = if kind == TokenKind::Session { claims.par.as_deref() } else { Some(claims.jti.as_str()) };
        if let Some(a) = amended_id.and_then(|id| self.amendments.get(id)) {
            a.apply(&mut claims);
            claims.check_time(now, leeway).map_err(Denial::InvalidToken)?;
        }
        let scopes = match &claims.scp {
            None => None,
            Some(list) => Some(ScopeSet::parse(list, &self.cfg.prefix).map_err(|_| Denial::InvalidToken(TokenError::BadClaims))?),
        };
        let scope_names = scopes.as_ref().map(ScopeSet::to_strings).unwrap_or_default();
        let rights = Rights::new(scopes, claims.fl, claims.items.as_deref());
        let extra_headers = extra_headers(kind, &claims, self.cfg.identity_headers);
        let device_ip = claims.dev.as_deref().and_then(|d| d.parse::<IpAddr>().ok().filter(|ip| ip.to_string() == d));
        let verified = Rc::new(Verified { kind, claims, rights, scope_names, extra_headers, device_ip, reported_ms: Cell::new(0) });
        if self.cache.len() >= self.cfg.local_cache_entries {
            // Bounded: linear memory never shrinks, so never let the map grow past its cap.
            self.cache.retain(|_, v| v.claims.exp.saturating_add(leeway) > now);
            if self.cache.len() >= self.cfg.local_cache_entries {
                self.cache.clear();
            }
        }
        self.cache.insert(token.as_bytes().into(), verified.clone());
        Ok(verified)
    }

    /// The tick's clock; the host's when there is no tick. Every [`TICK_GUARD_EVERY`]
    /// requests without a tick it checks the host's clock: a timer that stopped firing
    /// must not freeze time (expiry, staleness) for the requests, so the worker then goes
    /// back to reading the clock per request until the next tick.
    fn clock(&mut self, host: &dyn Host) -> u64 {
        self.since_tick = self.since_tick.wrapping_add(1);
        match self.tick_ms {
            Some(t) if self.since_tick & (TICK_GUARD_EVERY - 1) != 0 => t,
            Some(t) => {
                let now = host.now_ms();
                if now.saturating_sub(t) > TICK_STALL_MS {
                    host.log(Level::Warn, &format!("tokengate: the gate's tick is {} ms late; reading the clock per request", now - t));
                    self.tick_ms = None;
                }
                now
            }
            None => host.now_ms(),
        }
    }

    /// Brings the worker's mirror of the sync state up to `tokengate/meta`, and applies
    /// the fail mode.
    pub fn refresh(&mut self, host: &dyn Host, now_ms: u64) -> Result<(), Denial> {
        if let Some(meta) = self.meta {
            if now_ms.saturating_sub(self.meta_read_ms) < STATE_CHECK_MS {
                return self.check_fresh(host, &meta, now_ms);
            }
        }
        self.read_state(host, now_ms)
    }

    /// Reads `tokengate/meta` and applies what changed (keys, revocations, amendments).
    fn read_state(&mut self, host: &dyn Host, now_ms: u64) -> Result<(), Denial> {
        let Some(meta) = host.get_shared(shared::META_KEY).as_deref().and_then(Meta::decode) else {
            // Before the first sync there is nothing to enforce revocations with: fail closed.
            return Err(Denial::Unavailable("gate_not_synced"));
        };
        self.meta_read_ms = now_ms;
        let prev = self.meta.unwrap_or_default();
        if self.meta.is_none() || meta.keys_gen != prev.keys_gen {
            self.load_keys(host)?;
            // Entries verified under a key that may have left the set are not served
            // again (the shared slots carry the key generation for the same reason).
            self.cache.clear();
        }
        let snapshot = self.meta.is_none() || meta.rev_gen != prev.rev_gen;
        // A delta the journal no longer covers needs a full reload too.
        if snapshot || (meta.version != prev.version && !self.apply_journal(host, prev.version)) {
            self.reload_revocations(host);
        }
        self.meta = Some(meta);
        if now_ms.saturating_sub(self.last_prune_ms) > PRUNE_EVERY_MS {
            self.last_prune_ms = now_ms;
            let (now, leeway) = (now_ms / 1000, self.cfg.policy.leeway_secs);
            self.revoked.prune(now, leeway);
            self.sessions.prune(now, leeway);
            // Kept until the token's signed expiry: past the amended end the amendment
            // is what refuses it.
            self.amendments.retain(|_, a| a.exp.max(a.signed_exp).saturating_add(leeway) > now);
        }
        self.check_fresh(host, &meta, now_ms)
    }

    /// Applies the fail mode to the sync state's age.
    fn check_fresh(&mut self, host: &dyn Host, meta: &Meta, now_ms: u64) -> Result<(), Denial> {
        let age = now_ms.saturating_sub(meta.synced_at_ms);
        if age > self.cfg.max_staleness_ms {
            if !self.stale_logged {
                self.stale_logged = true;
                host.log(
                    Level::Warn,
                    &format!(
                        "tokengate: sync state is {age} ms old (max {} ms); fail mode {:?}",
                        self.cfg.max_staleness_ms, self.cfg.fail_mode
                    ),
                );
            }
            if self.cfg.fail_mode == FailMode::Closed {
                return Err(Denial::Unavailable("gate_stale"));
            }
        } else {
            self.stale_logged = false;
        }
        Ok(())
    }

    fn load_keys(&mut self, host: &dyn Host) -> Result<(), Denial> {
        let keys: Vec<PublicKey> = host
            .get_shared(shared::KEYS_KEY)
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(Denial::Unavailable("gate_not_synced"))?;
        // A key this worker already holds keeps its table (640 KiB, milliseconds to build).
        let mut set = KeySet::new();
        for k in keys {
            if let Ok(vk) = self.keys.key_for(&k.kid, &k.x) {
                set.insert(vk);
            }
        }
        self.keys = set;
        Ok(())
    }

    fn reload_revocations(&mut self, host: &dyn Host) {
        self.revoked.clear();
        for i in 0..shared::REV_BUCKETS {
            // The bucket's bytes are the set's records: copied, never parsed.
            let bytes = host.get_shared(&shared::bucket_key(i)).unwrap_or_default();
            if !self.revoked.load_bucket(i, &bytes) {
                host.log(
                    Level::Warn,
                    &format!("tokengate: {} is not whole sorted records; the whole ones are enforced", shared::bucket_key(i)),
                );
            }
        }
        load_id_buckets(host, &mut self.sessions, shared::SESS_BUCKETS, shared::sess_key);
        self.amendments.clear();
        for i in 0..shared::AMEND_BUCKETS {
            let list = host.get_shared(&shared::amend_key(i)).and_then(|b| serde_json::from_slice::<Vec<Amendment>>(&b).ok());
            for a in list.unwrap_or_default() {
                self.amendments.insert(a.jti.as_str().into(), a);
            }
        }
        self.cache.clear();
    }

    /// Applies the journal entries after `since`; false when the journal no longer
    /// reaches back that far (the caller reloads everything).
    fn apply_journal(&mut self, host: &dyn Host, since: u64) -> bool {
        let Some(journal) = host.get_shared(shared::JOURNAL_KEY).and_then(|b| serde_json::from_slice::<Journal>(&b).ok()) else {
            return false;
        };
        if journal.from > since {
            return false;
        }
        for e in journal.entries.into_iter().filter(|e| e.v > since) {
            match (e.amend, e.session) {
                (Some(a), _) => {
                    self.amendments.insert(a.jti.as_str().into(), a);
                    self.cache.clear();
                }
                (None, Some(true)) => self.sessions.insert(&e.jti, e.exp),
                (None, Some(false)) => self.sessions.remove(&e.jti),
                (None, None) => self.revoked.insert(&e.jti, e.exp),
            }
        }
        true
    }
}

/// Replaces `set` with the `jti exp` lines of the `n` shared buckets `key(0..n)` (live
/// sessions).
fn load_id_buckets(host: &dyn Host, set: &mut IdSet, n: usize, key: fn(usize) -> String) {
    set.clear();
    for i in 0..n {
        if let Some(bytes) = host.get_shared(&key(i)) {
            shared::decode_bucket(&bytes, |jti, exp| set.insert(jti, exp));
        }
    }
}

/// A policy refusal: a voucher's token for a network this proxy does not serve is 403
/// `wrong_network`; everything else is the token's own error.
fn refusal(e: TokenError, kind: TokenKind) -> Denial {
    match (e, kind) {
        (TokenError::WrongAudience, TokenKind::VoucherAccess) => Denial::Refused(Refusal::WrongNetwork),
        _ => Denial::InvalidToken(e),
    }
}

/// The optional identity headers of a token that `identity` asks for; a value that is not
/// printable ASCII is left out rather than sent as a broken header.
fn extra_headers(kind: TokenKind, c: &Claims, identity: IdentityHeaders) -> Vec<(&'static str, String)> {
    let printable = |s: &&str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
    let mut out = Vec::new();
    let mut push = |h: Identity, value: Option<&str>| {
        if let Some(value) = value.filter(|v| identity.has(h) && printable(v)) {
            out.push((h.name(), value.to_owned()));
        }
    };
    if kind == TokenKind::Session {
        push(Identity::Session, Some(&c.jti));
    }
    if kind == TokenKind::VoucherAccess {
        push(Identity::Network, Some(&c.aud));
        push(Identity::Device, c.dev.as_deref());
    }
    for (h, value) in [(Identity::User, &c.unm), (Identity::Operator, &c.opr), (Identity::App, &c.app), (Identity::Params, &c.p)] {
        push(h, value.as_deref());
    }
    if let Some(fl) = c.fl.filter(|_| identity.has(Identity::Flags)) {
        out.push((Identity::Flags.name(), fl.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PluginConfig;
    use crate::host::tests::FakeHost;
    use crate::sync::Syncer;
    use base64::Engine as _;
    use tokengate_rules::sync::{LiveSession, Revocation, SyncResponse};
    use tokengate_rules::token::SigningKey;

    // jsonwebtoken checks exp/nbf against the real clock, so the fake clock starts there.
    fn t0() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
    }

    struct Fixture {
        host: FakeHost,
        signer: SigningKey,
        syncer: Syncer,
        worker: Worker,
    }

    fn fixture(cfg_json: &str) -> Fixture {
        let cfg = PluginConfig::parse(cfg_json.as_bytes()).unwrap();
        let seed: [u8; 32] = rand::random();
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().as_bytes());
        let signer = SigningKey::from_seed("k1", &seed).unwrap();
        let host = FakeHost::at(t0());
        let mut syncer = Syncer::new(cfg.control_plane.clone().unwrap());
        syncer
            .apply(
                &host,
                SyncResponse {
                    protocol: 1,
                    version: 1,
                    snapshot: true,
                    keys: vec![PublicKey { kid: "k1".into(), x }],
                    revoked: vec![],
                    amended: vec![],
                    server_time: t0(),
                    next: None,
                    sessions: vec![],
                    ended: vec![],
                },
            )
            .unwrap();
        Fixture { host, signer, syncer, worker: Worker::new(Rc::new(cfg.gate().unwrap())) }
    }

    const CFG: &str =
        r#"{"audiences":["tokengate"],"control_plane":{"cluster":"cp","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p1"}}"#;

    fn claims(jti: &str, scopes: Option<&[&str]>) -> Claims {
        let now = t0() / 1000;
        Claims {
            iss: "tokengate".into(),
            sub: "u1".into(),
            aud: "tokengate".into(),
            exp: now + 3600,
            nbf: now,
            iat: now,
            jti: jti.into(),
            unm: Some("alice".into()),
            scp: scopes.map(|s| s.iter().map(|x| (*x).to_owned()).collect()),
            fl: None,
            items: None,
            app: Some("demo".into()),
            p: None,
            par: None,
            opr: None,
            dev: None,
        }
    }

    /// The outcome as the identity headers (allowed) or the denial.
    fn ask(f: &mut Fixture, method: &str, path: &str, auth: &[&str]) -> Result<Vec<(&'static str, String)>, Denial> {
        outcome(f.worker.decide(&f.host, &Request { method, path, authorization: auth, device_header: None }))
    }

    fn outcome(o: Outcome) -> Result<Vec<(&'static str, String)>, Denial> {
        match o {
            Outcome::Allow(a) => {
                let mut h = Vec::new();
                a.headers(|k, v| h.push((k, v.to_owned())));
                Ok(h)
            }
            Outcome::Deny(d) => Err(d),
            Outcome::Portal(mut h) => {
                h.insert(0, ("portal", String::new()));
                Ok(h)
            }
        }
    }

    #[test]
    fn fails_closed_before_first_sync() {
        let cfg = PluginConfig::parse(CFG.as_bytes()).unwrap();
        let mut w = Worker::new(Rc::new(cfg.gate().unwrap()));
        let host = FakeHost::at(t0());
        let out =
            w.decide(&host, &Request { method: "GET", path: "/api/v1/objects", authorization: &["Bearer a.b.c"], device_header: None });
        assert_eq!(outcome(out).unwrap_err(), Denial::Unavailable("gate_not_synced"));
    }

    #[test]
    fn allows_in_scope_and_sets_identity() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::Api, &claims("aaaaaaaaaaaaaaaaaaaaaaaa", Some(&["GET /objects/:id"]))).unwrap();
        let auth = format!("Bearer {t}");
        let h = ask(&mut f, "GET", "/api/v1/objects/42?x=1", &[&auth]).unwrap();
        assert!(h.contains(&("x-tokengate-subject", "u1".into())));
        assert!(h.contains(&("x-tokengate-scope", "GET /objects/:id".into())));
        assert!(h.contains(&("x-tokengate-user", "alice".into())));
        assert_eq!(f.worker.last_cache, CacheResult::Miss);
        assert_eq!(ask(&mut f, "DELETE", "/api/v1/objects/42", &[&auth]), Err(Denial::Refused(Refusal::NoScope)));
        assert_eq!(f.worker.last_cache, CacheResult::Local);
        assert_eq!(ask(&mut f, "GET", "/objects/42", &[&auth]), Err(Denial::Refused(Refusal::OutsidePrefix)));
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/42/x", &[&auth]), Err(Denial::Refused(Refusal::NoScope)));
    }

    /// Issue 14 target 6: the gate writes only the configured identity headers (all of
    /// them by default), for every kind of token, from the cache too.
    #[test]
    fn writes_only_the_configured_identity_headers() {
        let with = |list: &str| {
            let cfg = format!(
                r#"{{"audiences":["tokengate","cafe-1"],"control_plane":{{"cluster":"cp","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p1"}},
                "routes":[{{"pattern":"GET /wifi/:page","voucher":true}}]{list}}}"#
            );
            fixture(&cfg)
        };
        let names = |h: Vec<(&'static str, String)>| h.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        let api = |f: &Fixture| {
            let mut c = claims("aaaaaaaaaaaaaaaaaaaaaaaa", Some(&["GET /objects/:id"]));
            c.fl = Some(512);
            c.p = Some("x=1".into());
            format!("Bearer {}", f.signer.sign(TokenKind::Api, &c).unwrap())
        };
        let voucher = |f: &Fixture| {
            let mut c = claims("bbbbbbbbbbbbbbbbbbbbbbbb", None);
            (c.aud, c.dev) = ("cafe-1".into(), Some("127.0.0.9".into()));
            format!("Bearer {}", f.signer.sign(TokenKind::VoucherAccess, &c).unwrap())
        };

        let mut f = with("");
        let auth = api(&f);
        let all = [
            "x-tokengate-subject",
            "x-tokengate-token-id",
            "x-tokengate-scope",
            "x-tokengate-user",
            "x-tokengate-app",
            "x-tokengate-params",
            "x-tokengate-flags",
        ];
        assert_eq!(names(ask(&mut f, "GET", "/api/v1/objects/1", &[&auth]).unwrap()), all);
        *f.host.peer.borrow_mut() = Some("127.0.0.9:1".into());
        let v = voucher(&f);
        let every = [
            "x-tokengate-subject",
            "x-tokengate-token-id",
            "x-tokengate-scope",
            "x-tokengate-network",
            "x-tokengate-device",
            "x-tokengate-user",
            "x-tokengate-app",
        ];
        assert_eq!(names(ask(&mut f, "GET", "/api/v1/wifi/status", &[&v]).unwrap()), every);

        let mut f = with(r#","identity_headers":["x-tokengate-subject","x-tokengate-flags","x-tokengate-device"]"#);
        let auth = api(&f);
        for _ in 0..2 {
            let h = ask(&mut f, "GET", "/api/v1/objects/1", &[&auth]).unwrap();
            assert_eq!(h, vec![("x-tokengate-subject", "u1".into()), ("x-tokengate-flags", "512".into())]);
        }
        assert_eq!(f.worker.last_cache, CacheResult::Local);
        *f.host.peer.borrow_mut() = Some("127.0.0.9:1".into());
        let v = voucher(&f);
        assert_eq!(names(ask(&mut f, "GET", "/api/v1/wifi/status", &[&v]).unwrap()), ["x-tokengate-subject", "x-tokengate-device"]);

        // None: still allowed, with nothing written.
        let mut f = with(r#","identity_headers":[]"#);
        let auth = api(&f);
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/1", &[&auth]), Ok(vec![]));
        assert_eq!(ask(&mut f, "DELETE", "/api/v1/objects/1", &[&auth]), Err(Denial::Refused(Refusal::NoScope)));
    }

    #[test]
    fn second_worker_uses_the_shared_claims_slot() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::Api, &claims("aaaaaaaaaaaaaaaaaaaaaaaa", None)).unwrap();
        let auth = format!("Bearer {t}");
        assert!(ask(&mut f, "GET", "/anything", &[&auth]).is_ok());
        let cfg = PluginConfig::parse(CFG.as_bytes()).unwrap();
        let mut w2 = Worker::new(Rc::new(cfg.gate().unwrap()));
        let out = w2.decide(&f.host, &Request { method: "GET", path: "/anything", authorization: &[&auth], device_header: None });
        assert!(outcome(out).is_ok());
        assert_eq!(w2.last_cache, CacheResult::Shared);
    }

    #[test]
    fn credentials_are_exactly_one_bearer() {
        let mut f = fixture(CFG);
        assert_eq!(ask(&mut f, "GET", "/x", &[]), Err(Denial::MissingToken));
        assert_eq!(ask(&mut f, "GET", "/x", &["Basic YTpi"]), Err(Denial::MissingToken));
        assert_eq!(ask(&mut f, "GET", "/x", &["Bearer a", "Bearer b"]), Err(Denial::InvalidRequest("multiple_credentials")));
        assert_eq!(ask(&mut f, "GET", "/x?access_token=a", &["Bearer a"]), Err(Denial::InvalidRequest("multiple_credentials")));
        assert_eq!(ask(&mut f, "GET", "/x", &["Bearer a.b.c"]), Err(Denial::InvalidToken(TokenError::BadEncoding)));
        // The alphabet is checked on a cache miss (a hit was checked when it was cached).
        assert_eq!(ask(&mut f, "GET", "/x", &["Bearer a\"b.c"]), Err(Denial::InvalidRequest("malformed_authorization")));
    }

    /// The sync service applies a delta revoking `jti` as `version`.
    fn revoke(f: &mut Fixture, jti: &str, version: u64) {
        let resp = SyncResponse {
            protocol: 1,
            version,
            snapshot: false,
            keys: f.syncer.keys().to_vec(),
            revoked: vec![Revocation { jti: jti.into(), exp: t0() / 1000 + 3600 }],
            amended: vec![],
            server_time: t0(),
            next: None,
            sessions: vec![],
            ended: vec![],
        };
        f.syncer.apply(&f.host, resp).unwrap();
    }

    #[test]
    fn revocation_reaches_warm_tokens() {
        let mut f = fixture(CFG);
        let jti = "bbbbbbbbbbbbbbbbbbbbbbbb";
        let t = f.signer.sign(TokenKind::Api, &claims(jti, None)).unwrap();
        let auth = format!("Bearer {t}");
        assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
        revoke(&mut f, jti, 2);
        f.host.now_ms.set(f.host.now_ms.get() + STATE_CHECK_MS);
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Err(Denial::InvalidToken(TokenError::Revoked)));
        // A fresh worker (e.g. after a restart of the worker VM) loads it from the buckets.
        let cfg = PluginConfig::parse(CFG.as_bytes()).unwrap();
        let mut w2 = Worker::new(Rc::new(cfg.gate().unwrap()));
        let out = w2.decide(&f.host, &Request { method: "GET", path: "/x", authorization: &[&auth], device_header: None });
        assert_eq!(outcome(out).unwrap_err(), Denial::InvalidToken(TokenError::Revoked));
    }

    /// With ticks, requests neither read the clock nor `tokengate/meta`: the tick does,
    /// and a revocation is enforced from the next tick on.
    #[test]
    fn ticks_take_the_clock_and_state_reads_off_the_request_path() {
        let mut f = fixture(CFG);
        let jti = "dddddddddddddddddddddddd";
        let t = f.signer.sign(TokenKind::Api, &claims(jti, None)).unwrap();
        let auth = format!("Bearer {t}");
        f.worker.tick(&f.host, f.host.now_ms.get());
        assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
        let reads = f.host.reads.get();
        // Far past the request path's own check interval: still no read without a tick.
        f.host.now_ms.set(f.host.now_ms.get() + 10 * STATE_CHECK_MS);
        for _ in 0..3 {
            assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
        }
        assert_eq!(f.host.reads.get(), reads, "a warm request read shared data");
        revoke(&mut f, jti, 2);
        f.worker.tick(&f.host, f.host.now_ms.get());
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Err(Denial::InvalidToken(TokenError::Revoked)));
        // Staleness is judged on the tick's clock.
        f.worker.tick(&f.host, t0() + 121_000);
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Err(Denial::Unavailable("gate_stale")));
    }

    /// A timer that stops firing does not freeze the gate's clock: after a bounded number
    /// of requests it reads the real one again (here: the state has gone stale meanwhile).
    #[test]
    fn a_stopped_tick_does_not_freeze_time() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::Api, &claims("eeeeeeeeeeeeeeeeeeeeeeee", None)).unwrap();
        let auth = format!("Bearer {t}");
        f.worker.tick(&f.host, f.host.now_ms.get());
        assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
        f.host.now_ms.set(t0() + 121_000);
        let mut refused_after = None;
        for i in 1..=TICK_GUARD_EVERY {
            if ask(&mut f, "GET", "/x", &[&auth]).is_err() {
                refused_after = Some(i);
                break;
            }
        }
        assert_eq!(refused_after, Some(TICK_GUARD_EVERY - 1), "requests before the guard noticed");
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Err(Denial::Unavailable("gate_stale")));
        assert!(f.host.logs.borrow().iter().any(|(_, m)| m.contains("tick is")));
    }

    #[test]
    fn stale_state_fails_closed_or_open_by_config() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::Api, &claims("cccccccccccccccccccccccc", None)).unwrap();
        let auth = format!("Bearer {t}");
        f.host.now_ms.set(t0() + 121_000);
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Err(Denial::Unavailable("gate_stale")));
        let open = r#"{"audiences":["tokengate"],"fail_mode":"open","control_plane":{"cluster":"cp","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p1"}}"#;
        let mut g = fixture(open);
        let t = g.signer.sign(TokenKind::Api, &claims("cccccccccccccccccccccccc", None)).unwrap();
        let auth = format!("Bearer {t}");
        g.host.now_ms.set(t0() + 121_000);
        assert!(ask(&mut g, "GET", "/x", &[&auth]).is_ok());
    }

    #[test]
    fn unsafe_paths_are_refused_even_with_an_unscoped_token() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::Api, &claims("dddddddddddddddddddddddd", None)).unwrap();
        let auth = format!("Bearer {t}");
        assert!(matches!(ask(&mut f, "GET", "/a/%2e%2e/b", &[&auth]), Err(Denial::BadPath(_))));
    }

    #[test]
    fn route_table_flags_and_items() {
        let cfg = r#"{"audiences":["tokengate"],"control_plane":{"cluster":"cp","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p1"},
            "routes":[{"pattern":"DELETE /objects/:id/messages","flags":4096,"items":["id"]},{"pattern":"GET /objects/:id","flags":512,"items":["id"]}]}"#;
        let mut f = fixture(cfg);
        let mut c = claims("ffffffffffffffffffffffff", None);
        c.fl = Some(0x200);
        c.items = Some(vec![42]);
        let t = f.signer.sign(TokenKind::Api, &c).unwrap();
        let auth = format!("Bearer {t}");
        let h = ask(&mut f, "GET", "/api/v1/objects/42", &[&auth]).unwrap();
        assert!(h.contains(&("x-tokengate-flags", "512".into())));
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/43", &[&auth]), Err(Denial::Refused(Refusal::ItemNotAllowed)));
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/4x", &[&auth]), Err(Denial::Refused(Refusal::ItemNotNumeric)));
        assert_eq!(ask(&mut f, "DELETE", "/api/v1/objects/42/messages", &[&auth]), Err(Denial::Refused(Refusal::MissingFlags)));
    }

    #[test]
    fn amendments_apply_over_signed_claims_without_a_new_token() {
        let cfg = r#"{"audiences":["tokengate"],"control_plane":{"cluster":"cp","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p1"},
            "routes":[{"pattern":"GET /objects/:id","flags":512,"items":["id"]}]}"#;
        let mut f = fixture(cfg);
        let jti = "abababababababababababab";
        let mut c = claims(jti, None);
        c.fl = Some(0x200);
        let t = f.signer.sign(TokenKind::Api, &c).unwrap();
        let auth = format!("Bearer {t}");
        assert!(ask(&mut f, "GET", "/api/v1/objects/5", &[&auth]).is_ok());
        let now = t0() / 1000;
        let amend = |version: u64, fl: Option<i64>, items: Option<Vec<i64>>, nbf: u64| SyncResponse {
            protocol: 1,
            version,
            snapshot: false,
            keys: vec![],
            revoked: vec![],
            amended: vec![Amendment {
                jti: jti.into(),
                nbf,
                exp: now + 3600,
                signed_exp: now + 7200,
                app: Some("fleet".into()),
                fl,
                p: None,
                items,
            }],
            server_time: t0(),
            next: None,
            sessions: vec![],
            ended: vec![],
        };
        let keys = f.syncer.keys().to_vec();
        let mut r = amend(2, Some(0x100), None, now);
        r.keys.clone_from(&keys);
        f.syncer.apply(&f.host, r).unwrap();
        f.host.now_ms.set(f.host.now_ms.get() + STATE_CHECK_MS);
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/5", &[&auth]), Err(Denial::Refused(Refusal::MissingFlags)));
        let mut r = amend(3, Some(0x200), Some(vec![5]), now);
        r.keys.clone_from(&keys);
        f.syncer.apply(&f.host, r).unwrap();
        f.host.now_ms.set(f.host.now_ms.get() + STATE_CHECK_MS);
        let h = ask(&mut f, "GET", "/api/v1/objects/5", &[&auth]).unwrap();
        assert!(h.contains(&("x-tokengate-app", "fleet".into())));
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/6", &[&auth]), Err(Denial::Refused(Refusal::ItemNotAllowed)));
        // Activation moved into the future: refused until then.
        let mut r = amend(4, None, None, now + 600);
        r.keys.clone_from(&keys);
        f.syncer.apply(&f.host, r).unwrap();
        f.host.now_ms.set(f.host.now_ms.get() + STATE_CHECK_MS);
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/5", &[&auth]), Err(Denial::InvalidToken(TokenError::NotYetValid)));
        // A fresh worker sees the same state from the buckets.
        let cfg = PluginConfig::parse(cfg.as_bytes()).unwrap();
        let mut w2 = Worker::new(Rc::new(cfg.gate().unwrap()));
        let out = w2.decide(&f.host, &Request { method: "GET", path: "/api/v1/objects/5", authorization: &[&auth], device_header: None });
        assert_eq!(outcome(out).unwrap_err(), Denial::InvalidToken(TokenError::NotYetValid));
    }

    /// Issue 10 defect 1: a token shortened by an amendment stays refused after the
    /// amended end, through the sync VM's and the workers' prunes, and in a worker that
    /// starts afterwards, until its signed expiry.
    #[test]
    fn security_shortened_token_never_outlives_its_amendment() {
        let mut f = fixture(CFG);
        let jti = "acacacacacacacacacacacac";
        let mut c = claims(jti, None);
        let now = t0() / 1000;
        c.exp = now + 5 * 365 * 86_400;
        let auth = format!("Bearer {}", f.signer.sign(TokenKind::Api, &c).unwrap());
        assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
        let mut r = SyncResponse {
            protocol: 1,
            version: 2,
            snapshot: false,
            keys: f.syncer.keys().to_vec(),
            revoked: vec![],
            amended: vec![Amendment {
                jti: jti.into(),
                nbf: now,
                exp: now + 60,
                signed_exp: c.exp,
                app: None,
                fl: None,
                p: None,
                items: None,
            }],
            server_time: t0(),
            next: None,
            sessions: vec![],
            ended: vec![],
        };
        f.syncer.apply(&f.host, r.clone()).unwrap();
        // Ten minutes later, past the amended end and both prune intervals.
        for v in 3..6 {
            f.host.now_ms.set(f.host.now_ms.get() + 4 * 60_000);
            r.version = v;
            r.amended.clear();
            f.syncer.apply(&f.host, r.clone()).unwrap();
            assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Err(Denial::InvalidToken(TokenError::Expired)), "at version {v}");
        }
        assert_eq!(f.syncer.amendments(), 1, "the sync VM pruned the amendment before the signed expiry");
        let cfg = PluginConfig::parse(CFG.as_bytes()).unwrap();
        let mut fresh = Worker::new(Rc::new(cfg.gate().unwrap()));
        let out = fresh.decide(&f.host, &Request { method: "GET", path: "/x", authorization: &[&auth], device_header: None });
        assert_eq!(outcome(out).unwrap_err(), Denial::InvalidToken(TokenError::Expired));
    }

    /// Seed 003: a session passes only while it is in the synced live set and its token
    /// is not revoked; it has its token's amended rights and names its operator.
    #[test]
    fn security_sessions_pass_only_while_live_with_their_tokens_rights_now() {
        let mut f = fixture(CFG);
        let (token, sid) = ("abababababababababababab", "cdcdcdcdcdcdcdcdcdcdcdcd");
        let mut c = claims(sid, None);
        c.par = Some(token.into());
        c.opr = Some("boss".into());
        let auth = format!("Bearer {}", f.signer.sign(TokenKind::Session, &c).unwrap());
        let exp = c.exp;
        let delta = |version: u64, sessions: Vec<LiveSession>, ended: Vec<String>, amended: Vec<Amendment>| SyncResponse {
            protocol: 1,
            version,
            snapshot: false,
            keys: vec![],
            revoked: vec![],
            amended,
            server_time: t0(),
            next: None,
            sessions,
            ended,
        };
        let apply = |f: &mut Fixture, mut r: SyncResponse| {
            r.keys = f.syncer.keys().to_vec();
            f.syncer.apply(&f.host, r).unwrap();
            f.host.now_ms.set(f.host.now_ms.get() + STATE_CHECK_MS + 1);
        };
        // Not started (or not synced yet): refused.
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Err(Denial::InvalidToken(TokenError::SessionEnded)));
        apply(&mut f, delta(2, vec![LiveSession { jti: sid.into(), exp }], vec![], vec![]));
        let h = ask(&mut f, "GET", "/api/v1/objects/7", &[&auth]).unwrap();
        assert!(h.contains(&("x-tokengate-session", sid.into())), "{h:?}");
        assert!(h.contains(&("x-tokengate-operator", "boss".into())), "{h:?}");
        assert!(h.contains(&("x-tokengate-user", "alice".into())), "{h:?}");
        // Its token narrowed: the session is narrowed with it.
        let now = t0() / 1000;
        let narrowed = Amendment {
            jti: token.into(),
            nbf: now - 10,
            exp: now + 600,
            signed_exp: now + 3600,
            app: None,
            fl: Some(0x200),
            p: None,
            items: Some(vec![7]),
        };
        apply(&mut f, delta(3, vec![], vec![], vec![narrowed]));
        let h = ask(&mut f, "GET", "/api/v1/objects/7", &[&auth]).unwrap();
        assert!(h.contains(&("x-tokengate-flags", "512".into())), "the token's amended flags: {h:?}");
        // A worker that starts now loads the live set from shared data.
        let cfg = PluginConfig::parse(CFG.as_bytes()).unwrap();
        let mut fresh = Worker::new(Rc::new(cfg.gate().unwrap()));
        assert!(outcome(
            fresh.decide(&f.host, &Request { method: "GET", path: "/api/v1/objects/7", authorization: &[&auth], device_header: None })
        )
        .is_ok());
        assert_eq!(fresh.sessions(), 1);
        // Ended (logout, idle): refused at once, from the cache too, and by a fresh worker.
        apply(&mut f, delta(4, vec![], vec![sid.into()], vec![]));
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/7", &[&auth]), Err(Denial::InvalidToken(TokenError::SessionEnded)));
        assert_eq!(f.syncer.sessions(), 0);
        assert_eq!(f.syncer.revocations(), 0, "an ended session leaves no revocation behind");
        let mut fresh = Worker::new(Rc::new(cfg.gate().unwrap()));
        let out =
            fresh.decide(&f.host, &Request { method: "GET", path: "/api/v1/objects/7", authorization: &[&auth], device_header: None });
        assert_eq!(outcome(out).unwrap_err(), Denial::InvalidToken(TokenError::SessionEnded));

        // Another live session whose token is revoked is refused before its end arrives.
        let sid2 = "efefefefefefefefefefefef";
        let mut c2 = claims(sid2, None);
        c2.par = Some(token.into());
        let auth2 = format!("Bearer {}", f.signer.sign(TokenKind::Session, &c2).unwrap());
        apply(&mut f, delta(5, vec![LiveSession { jti: sid2.into(), exp }], vec![], vec![]));
        assert!(ask(&mut f, "GET", "/api/v1/objects/7", &[&auth2]).is_ok());
        revoke(&mut f, token, 6);
        f.host.now_ms.set(f.host.now_ms.get() + STATE_CHECK_MS + 1);
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/7", &[&auth2]), Err(Denial::InvalidToken(TokenError::SessionEnded)));
        // A session token without its token's id is refused whatever the live set says.
        let mut c3 = claims("dededededededededededede", None);
        c3.par = None;
        let auth3 = format!("Bearer {}", f.signer.sign(TokenKind::Session, &c3).unwrap());
        apply(&mut f, delta(7, vec![LiveSession { jti: c3.jti.clone(), exp }], vec![], vec![]));
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth3]), Err(Denial::InvalidToken(TokenError::SessionEnded)));
    }

    /// Issue 10 defect 6: when a `kid` leaves the key set, tokens it verified are not
    /// served from the local cache nor from the shared claims slots any more.
    #[test]
    fn security_cached_claims_die_with_their_key() {
        let mut f = fixture(CFG);
        let auth = format!("Bearer {}", f.signer.sign(TokenKind::Api, &claims("bcbcbcbcbcbcbcbcbcbcbcbc", None)).unwrap());
        assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
        assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
        assert_eq!(f.worker.last_cache, CacheResult::Local);
        // k1 is withdrawn: the set now holds only k2.
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key().as_bytes());
        let r = SyncResponse {
            protocol: 1,
            version: 2,
            snapshot: false,
            keys: vec![PublicKey { kid: "k2".into(), x }],
            revoked: vec![],
            amended: vec![],
            server_time: t0(),
            next: None,
            sessions: vec![],
            ended: vec![],
        };
        f.syncer.apply(&f.host, r).unwrap();
        f.host.now_ms.set(f.host.now_ms.get() + STATE_CHECK_MS);
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Err(Denial::InvalidToken(TokenError::UnknownKey)));
        // Another worker that finds the token in its shared slot refuses it too.
        let cfg = PluginConfig::parse(CFG.as_bytes()).unwrap();
        let mut other = Worker::new(Rc::new(cfg.gate().unwrap()));
        let out = other.decide(&f.host, &Request { method: "GET", path: "/x", authorization: &[&auth], device_header: None });
        assert_eq!(outcome(out).unwrap_err(), Denial::InvalidToken(TokenError::UnknownKey));
    }

    #[test]
    fn use_is_reported_once_per_interval() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::Api, &claims("cdcdcdcdcdcdcdcdcdcdcdcd", None)).unwrap();
        let auth = format!("Bearer {t}");
        for _ in 0..5 {
            assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
        }
        assert_eq!(f.host.queue.borrow().len(), 1);
        let line = String::from_utf8(f.host.queue.borrow()[0].clone()).unwrap();
        assert!(line.starts_with("cdcdcdcdcdcdcdcdcdcdcdcd "), "{line}");
        f.host.now_ms.set(f.host.now_ms.get() + 31_000);
        assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
        assert_eq!(f.host.queue.borrow().len(), 2);
        // Refused requests are not use.
        let scoped = format!("Bearer {}", f.signer.sign(TokenKind::Api, &claims("dcdcdcdcdcdcdcdcdcdcdcdc", Some(&["GET /x"]))).unwrap());
        assert!(ask(&mut f, "DELETE", "/api/v1/objects/1", &[&scoped]).is_err());
        assert_eq!(f.host.queue.borrow().len(), 2);
    }

    /// With ticks, the uses of many tokens reach the sync service as one queue message
    /// per tick, which it reads line by line.
    #[test]
    fn uses_are_batched_per_tick() {
        let mut f = fixture(CFG);
        f.worker.tick(&f.host, f.host.now_ms.get());
        let jtis = ["aaaaaaaaaaaaaaaaaaaaaaa1", "aaaaaaaaaaaaaaaaaaaaaaa2", "aaaaaaaaaaaaaaaaaaaaaaa3"];
        for jti in jtis {
            let auth = format!("Bearer {}", f.signer.sign(TokenKind::Api, &claims(jti, None)).unwrap());
            assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
            assert!(ask(&mut f, "GET", "/x", &[&auth]).is_ok());
        }
        assert!(f.host.queue.borrow().is_empty(), "enqueued before the tick");
        f.worker.tick(&f.host, f.host.now_ms.get());
        assert_eq!(f.host.queue.borrow().len(), 1);
        f.worker.tick(&f.host, f.host.now_ms.get());
        assert_eq!(f.host.queue.borrow().len(), 1, "an empty batch was sent");
        let msg = f.host.queue.borrow()[0].clone();
        f.syncer.note_usage(&msg);
        assert_eq!(f.syncer.pending_usage(), 3);
    }

    #[test]
    fn security_http_server_tokens_pass_only_on_routes_marked_for_them() {
        let cfg = r#"{"audiences":["tokengate"],"control_plane":{"cluster":"cp","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p1"},
            "routes":[{"pattern":"GET /files/:name","http_token":true},{"pattern":"GET /objects/:id","flags":512}]}"#;
        let mut f = fixture(cfg);
        let http = format!("Bearer {}", f.signer.sign(TokenKind::HttpServer, &claims("a1a1a1a1a1a1a1a1a1a1a1a1", None)).unwrap());
        let api = format!("Bearer {}", f.signer.sign(TokenKind::Api, &claims("b1b1b1b1b1b1b1b1b1b1b1b1", None)).unwrap());
        assert!(ask(&mut f, "GET", "/api/v1/files/a.pdf", &[&http]).is_ok());
        assert_eq!(ask(&mut f, "GET", "/api/v1/files/a.pdf", &[&api]), Err(Denial::Refused(Refusal::WrongTokenKind)));
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/1", &[&http]), Err(Denial::Refused(Refusal::WrongTokenKind)));
        assert_eq!(ask(&mut f, "GET", "/api/v1/other", &[&http]), Err(Denial::Refused(Refusal::WrongTokenKind)));
        assert!(ask(&mut f, "GET", "/api/v1/objects/1", &[&api]).is_ok());
    }

    #[test]
    fn security_voucher_tokens_pass_only_from_their_device_on_their_network() {
        let cfg = r#"{"audiences":["tokengate","cafe-1"],"control_plane":{"cluster":"cp","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p1"},
            "routes":[{"pattern":"GET /wifi/:page","voucher":true},{"pattern":"GET /objects/:id","flags":512}],
            "portal":{"path":"/portal","network":"cafe-1"}}"#;
        let mut f = fixture(cfg);
        let voucher = |f: &Fixture, jti: &str, net: &str, dev: &str| {
            let mut c = claims(jti, None);
            c.aud = net.into();
            c.dev = Some(dev.into());
            c.unm = None;
            format!("Bearer {}", f.signer.sign(TokenKind::VoucherAccess, &c).unwrap())
        };
        let mine = voucher(&f, "a0a0a0a0a0a0a0a0a0a0a0a0", "cafe-1", "127.0.0.9");
        *f.host.peer.borrow_mut() = Some("127.0.0.9:50000".into());
        let headers = ask(&mut f, "GET", "/api/v1/wifi/status", &[&mine]).unwrap();
        assert!(headers.contains(&("x-tokengate-network", "cafe-1".into())), "{headers:?}");
        assert!(headers.contains(&("x-tokengate-device", "127.0.0.9".into())), "{headers:?}");
        // Another device with the same token, warm in the cache: refused.
        *f.host.peer.borrow_mut() = Some("127.0.0.10:50000".into());
        assert_eq!(ask(&mut f, "GET", "/api/v1/wifi/status", &[&mine]), Err(Denial::Refused(Refusal::DeviceMismatch)));
        *f.host.peer.borrow_mut() = None;
        assert_eq!(ask(&mut f, "GET", "/api/v1/wifi/status", &[&mine]), Err(Denial::Refused(Refusal::DeviceMismatch)));
        // Another network (fresh, then from the shared claims slot on a second worker).
        *f.host.peer.borrow_mut() = Some("127.0.0.9:50000".into());
        let elsewhere = voucher(&f, "a1a1a1a1a1a1a1a1a1a1a1a1", "cafe-2", "127.0.0.9");
        assert_eq!(ask(&mut f, "GET", "/api/v1/wifi/status", &[&elsewhere]), Err(Denial::Refused(Refusal::WrongNetwork)));
        assert_eq!(ask(&mut f, "GET", "/api/v1/wifi/status", &[&elsewhere]), Err(Denial::Refused(Refusal::WrongNetwork)));
        // Never an API token, nor the reverse.
        let api = format!("Bearer {}", f.signer.sign(TokenKind::Api, &claims("b1b1b1b1b1b1b1b1b1b1b1b1", None)).unwrap());
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/1", &[&mine]), Err(Denial::Refused(Refusal::WrongTokenKind)));
        assert_eq!(ask(&mut f, "GET", "/api/v1/other", &[&mine]), Err(Denial::Refused(Refusal::WrongTokenKind)));
        assert_eq!(ask(&mut f, "GET", "/api/v1/wifi/status", &[&api]), Err(Denial::Refused(Refusal::WrongTokenKind)));
        assert!(ask(&mut f, "GET", "/api/v1/objects/1", &[&api]).is_ok());
        // Revoking the activation (its id is the token's jti) refuses every token of it.
        revoke(&mut f, "a0a0a0a0a0a0a0a0a0a0a0a0", 2);
        f.host.now_ms.set(f.host.now_ms.get() + STATE_CHECK_MS + 1);
        assert_eq!(ask(&mut f, "GET", "/api/v1/wifi/status", &[&mine]), Err(Denial::InvalidToken(TokenError::Revoked)));
        // The portal's page needs no token and learns the device and the network.
        let portal = ask(&mut f, "GET", "/portal?lang=ru", &[]).unwrap();
        assert_eq!(
            portal,
            vec![("portal", String::new()), ("x-tokengate-network", "cafe-1".into()), ("x-tokengate-device", "127.0.0.9".into())]
        );
        assert_eq!(ask(&mut f, "GET", "/portal/x", &[]), Err(Denial::MissingToken));
    }

    /// Issue 14 target 5: the device check compares the peer's address with `dev` parsed
    /// once per token; only `dev`'s canonical spelling matches, as when it compared text.
    #[test]
    fn security_voucher_device_check_compares_addresses_as_text_did() {
        let cfg = r#"{"audiences":["tokengate","cafe-1"],"control_plane":{"cluster":"cp","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p1"},
            "routes":[{"pattern":"GET /wifi/:page","voucher":true}]}"#;
        let mut f = fixture(cfg);
        let mut n = 0;
        let mut from = |f: &mut Fixture, dev: &str, peer: &str| {
            n += 1;
            let mut c = claims(&format!("{n:024x}"), None);
            (c.aud, c.dev) = ("cafe-1".into(), Some(dev.into()));
            let auth = format!("Bearer {}", f.signer.sign(TokenKind::VoucherAccess, &c).unwrap());
            *f.host.peer.borrow_mut() = Some(peer.into());
            // Twice: a miss, then from the worker's cache.
            let first = ask(f, "GET", "/api/v1/wifi/status", &[&auth]).map(|_| ());
            assert_eq!(first, ask(f, "GET", "/api/v1/wifi/status", &[&auth]).map(|_| ()));
            first
        };
        let mismatch = Err(Denial::Refused(Refusal::DeviceMismatch));
        assert_eq!(from(&mut f, "10.0.0.7", "10.0.0.7:4000"), Ok(()));
        assert_eq!(from(&mut f, "10.0.0.7", "[::ffff:10.0.0.7]:4000"), Ok(()), "a mapped peer is its IPv4 address");
        assert_eq!(from(&mut f, "2001:db8::1", "[2001:db8::1]:4000"), Ok(()));
        assert_eq!(from(&mut f, "10.0.0.7", "10.0.0.8:4000"), mismatch);
        for dev in ["::ffff:10.0.0.7", "2001:DB8::1", "aa:bb:cc:dd:ee:ff", "kiosk-7", ""] {
            let peer = if dev.contains(':') && !dev.contains('.') { "[2001:db8::1]:4000" } else { "10.0.0.7:4000" };
            assert_eq!(from(&mut f, dev, peer), mismatch, "{dev}");
        }
        assert_eq!(from(&mut f, "10.0.0.7", "not an address"), mismatch);
    }

    #[test]
    fn security_voucher_device_from_the_trusted_header() {
        let cfg = r#"{"audiences":["tokengate","cafe-1"],"control_plane":{"cluster":"cp","credential":"0123456789abcdef0123456789abcdef","proxy_id":"p1"},
            "routes":[{"pattern":"GET /wifi/:page","voucher":true}],"device_header":"x-client-mac","device_header_trusted_from":["127.0.0.1"]}"#;
        let mut f = fixture(cfg);
        let mut c = claims("c0c0c0c0c0c0c0c0c0c0c0c0", None);
        c.aud = "cafe-1".into();
        c.dev = Some("aa:bb:cc:dd:ee:ff".into());
        let auth = format!("Bearer {}", f.signer.sign(TokenKind::VoucherAccess, &c).unwrap());
        let ask_as =
            |f: &mut Fixture, device: Option<&str>| {
                outcome(f.worker.decide(
                    &f.host,
                    &Request { method: "GET", path: "/api/v1/wifi/status", authorization: &[&auth], device_header: device },
                ))
            };
        // The peer address does not matter with a device header; its spelling does not either.
        *f.host.peer.borrow_mut() = Some("127.0.0.1:1".into());
        assert!(ask_as(&mut f, Some("AA-BB-CC-DD-EE-FF")).is_ok());
        assert_eq!(ask_as(&mut f, Some("aa:bb:cc:dd:ee:00")), Err(Denial::Refused(Refusal::DeviceMismatch)));
        assert_eq!(ask_as(&mut f, None), Err(Denial::Refused(Refusal::DeviceMismatch)));
        assert_eq!(ask_as(&mut f, Some("not a mac")), Err(Denial::Refused(Refusal::DeviceMismatch)));
    }

    #[test]
    fn other_kinds_are_refused() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::VoucherAccess, &claims("eeeeeeeeeeeeeeeeeeeeeeee", None)).unwrap();
        let auth = format!("Bearer {t}");
        // A voucher's token where no route takes it.
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Err(Denial::Refused(Refusal::WrongTokenKind)));
    }
}
