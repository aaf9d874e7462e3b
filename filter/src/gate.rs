//! The per-request decision, over the [`Host`] seam.
//!
//! A `Worker` lives once per worker VM and is shared by that worker's request contexts.
//! It mirrors the sync state from shared data (keys, revocations) and caches verified
//! tokens, so the warm path is: one read of `tokengate/meta`, a local map lookup, a
//! time check, a revocation lookup and a scope match.

use std::rc::Rc;

use hashbrown::HashMap;
use sha2::{Digest, Sha256};
use tokengate_rules::denial::bearer;
use tokengate_rules::path::{query_has_access_token, split};
use tokengate_rules::revocation::RevocationSet;
use tokengate_rules::sync::PublicKey;
use tokengate_rules::token::{verify, VerifyingKey, MAX_TOKEN_LEN};
use tokengate_rules::{Claims, Denial, KeySet, ScopeSet, TokenError, TokenKind};

use crate::config::{FailMode, GateConfig};
use crate::host::{Host, Level};
use crate::shared::{self, Journal, Meta};

/// A verified token with its scopes compiled, as cached.
#[derive(Debug)]
pub struct Verified {
    pub kind: TokenKind,
    pub claims: Claims,
    /// `None`: the token has all the powers of its user.
    pub scopes: Option<ScopeSet>,
}

/// What the filter needs to know about a request.
pub struct Request<'a> {
    pub method: &'a str,
    /// `:path` as Envoy forwards it (after normalization), with the query.
    pub path: &'a str,
    /// Every `authorization` header value, in order.
    pub authorization: &'a [&'a str],
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Let it through with these identity headers.
    Allow(Vec<(&'static str, String)>),
    Deny(Denial),
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
    cache: HashMap<Box<[u8]>, Rc<Verified>>,
    last_prune_ms: u64,
    stale_logged: bool,
    pub last_cache: CacheResult,
}

const PRUNE_EVERY_MS: u64 = 60_000;

impl Worker {
    pub fn new(cfg: Rc<GateConfig>) -> Self {
        Worker {
            cfg,
            meta: None,
            keys: KeySet::new(),
            revoked: RevocationSet::new(),
            cache: HashMap::new(),
            last_prune_ms: 0,
            stale_logged: false,
            last_cache: CacheResult::Miss,
        }
    }

    pub fn realm(&self) -> &str {
        &self.cfg.realm
    }

    pub fn revocations(&self) -> usize {
        self.revoked.len()
    }

    pub fn decide(&mut self, host: &dyn Host, req: &Request) -> Outcome {
        match self.check(host, req) {
            Ok(headers) => Outcome::Allow(headers),
            Err(d) => Outcome::Deny(d),
        }
    }

    fn check(&mut self, host: &dyn Host, req: &Request) -> Result<Vec<(&'static str, String)>, Denial> {
        // Exactly one credential (SECURITY.md): one Authorization header, none in the query.
        if req.authorization.len() > 1 || query_has_access_token(req.path) {
            return Err(Denial::InvalidRequest("multiple_credentials"));
        }
        let token = match req.authorization.first() {
            None => return Err(Denial::MissingToken),
            Some(v) => bearer(v)?.ok_or(Denial::MissingToken)?,
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(Denial::InvalidToken(TokenError::TooLarge));
        }
        let now_ms = host.now_ms();
        self.refresh(host, now_ms)?;
        let now = now_ms / 1000;
        let verified = self.verified(host, token, now)?;
        if self.revoked.contains(&verified.claims.jti) {
            return Err(Denial::InvalidToken(TokenError::Revoked));
        }
        let (_, segments) = split(req.path).map_err(Denial::BadPath)?;
        let scope = match &verified.scopes {
            None => "*".to_owned(),
            Some(set) => self
                .cfg
                .prefix
                .strip(&segments)
                .and_then(|rest| set.find(req.method, rest))
                .map(ToString::to_string)
                .ok_or(Denial::InsufficientScope)?,
        };
        Ok(identity_headers(&verified, scope))
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
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let slot = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) % self.cfg.shared_cache_slots;
        let key = shared::claims_key(slot);
        let from_shared = host.get_shared(&key).and_then(|bytes| shared::decode_slot(&bytes, &digest));
        let (kind, claims) = match from_shared {
            Some((kind, claims)) => {
                self.last_cache = CacheResult::Shared;
                claims.check_policy(kind, &self.cfg.policy, now).map_err(Denial::InvalidToken)?;
                (kind, claims)
            }
            None => {
                self.last_cache = CacheResult::Miss;
                let (kind, claims) = verify(token, &self.keys, &self.cfg.policy, now).map_err(Denial::InvalidToken)?;
                if let Some(bytes) = shared::encode_slot(&digest, kind, &claims) {
                    host.set_shared(&key, &bytes);
                }
                (kind, claims)
            }
        };
        let scopes = match &claims.scp {
            None => None,
            Some(list) => Some(
                ScopeSet::parse(list, &self.cfg.prefix).map_err(|_| Denial::InvalidToken(TokenError::BadClaims))?,
            ),
        };
        let verified = Rc::new(Verified { kind, claims, scopes });
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

    /// Brings the worker's mirror of the sync state up to `tokengate/meta`, and applies
    /// the fail mode.
    pub fn refresh(&mut self, host: &dyn Host, now_ms: u64) -> Result<(), Denial> {
        let Some(meta) = host.get_shared(shared::META_KEY).as_deref().and_then(Meta::decode) else {
            // Before the first sync there is nothing to enforce revocations with: fail closed.
            return Err(Denial::Unavailable("gate_not_synced"));
        };
        let prev = self.meta.unwrap_or_default();
        if self.meta.is_none() || meta.keys_gen != prev.keys_gen {
            self.load_keys(host)?;
        }
        if self.meta.is_none() || meta.rev_gen != prev.rev_gen {
            self.reload_revocations(host);
        } else if meta.version != prev.version && !self.apply_journal(host, prev.version) {
            self.reload_revocations(host);
        }
        self.meta = Some(meta);
        if now_ms.saturating_sub(self.last_prune_ms) > PRUNE_EVERY_MS {
            self.last_prune_ms = now_ms;
            self.revoked.prune(now_ms / 1000, self.cfg.policy.leeway_secs);
        }
        let age = now_ms.saturating_sub(meta.synced_at_ms);
        if age > self.cfg.max_staleness_ms {
            if !self.stale_logged {
                self.stale_logged = true;
                host.log(
                    Level::Warn,
                    &format!("tokengate: sync state is {age} ms old (max {} ms); fail mode {:?}", self.cfg.max_staleness_ms, self.cfg.fail_mode),
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
        let mut set = KeySet::new();
        for k in keys {
            if let Ok(vk) = VerifyingKey::from_x(&k.kid, &k.x) {
                set.insert(vk);
            }
        }
        self.keys = set;
        Ok(())
    }

    fn reload_revocations(&mut self, host: &dyn Host) {
        self.revoked.clear();
        for i in 0..shared::REV_BUCKETS {
            if let Some(bytes) = host.get_shared(&shared::bucket_key(i)) {
                let revoked = &mut self.revoked;
                shared::decode_bucket(&bytes, |jti, exp| revoked.insert(jti, exp));
            }
        }
    }

    /// Applies the journal entries after `since`; false when the journal no longer
    /// reaches back that far (the caller reloads everything).
    fn apply_journal(&mut self, host: &dyn Host, since: u64) -> bool {
        let Some(journal) = host.get_shared(shared::JOURNAL_KEY).and_then(|b| serde_json::from_slice::<Journal>(&b).ok())
        else {
            return false;
        };
        if journal.from > since {
            return false;
        }
        for e in journal.entries.iter().filter(|e| e.v > since) {
            self.revoked.insert(&e.jti, e.exp);
        }
        true
    }
}

fn identity_headers(v: &Verified, scope: String) -> Vec<(&'static str, String)> {
    let c = &v.claims;
    let mut h = vec![
        ("x-tokengate-subject", c.sub.clone()),
        ("x-tokengate-token-id", c.jti.clone()),
        ("x-tokengate-scope", scope),
        ("x-tokengate-kind", v.kind.typ().to_owned()),
    ];
    let printable = |s: &str| s.bytes().all(|b| (0x20..0x7f).contains(&b));
    if let Some(u) = c.unm.as_deref().filter(|u| printable(u)) {
        h.push(("x-tokengate-user", u.to_owned()));
    }
    if let Some(a) = c.app.as_deref().filter(|a| printable(a)) {
        h.push(("x-tokengate-app", a.to_owned()));
    }
    if let Some(p) = c.p.as_deref().filter(|p| printable(p)) {
        h.push(("x-tokengate-params", p.to_owned()));
    }
    if let Some(fl) = c.fl {
        h.push(("x-tokengate-flags", fl.to_string()));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PluginConfig;
    use crate::host::tests::FakeHost;
    use crate::sync::Syncer;
    use base64::Engine as _;
    use tokengate_rules::sync::{Revocation, SyncResponse};
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
                    server_time: t0(),
                },
            )
            .unwrap();
        Fixture { host, signer, syncer, worker: Worker::new(Rc::new(cfg.gate().unwrap())) }
    }

    const CFG: &str = r#"{"audiences":["tokengate"],"control_plane":{"cluster":"cp","credential":"s","proxy_id":"p1"}}"#;

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
        }
    }

    fn ask(f: &mut Fixture, method: &str, path: &str, auth: &[&str]) -> Outcome {
        f.worker.decide(&f.host, &Request { method, path, authorization: auth })
    }

    #[test]
    fn fails_closed_before_first_sync() {
        let cfg = PluginConfig::parse(CFG.as_bytes()).unwrap();
        let mut w = Worker::new(Rc::new(cfg.gate().unwrap()));
        let host = FakeHost::at(t0());
        let out = w.decide(&host, &Request { method: "GET", path: "/api/v1/objects", authorization: &["Bearer a.b.c"] });
        assert_eq!(out, Outcome::Deny(Denial::Unavailable("gate_not_synced")));
    }

    #[test]
    fn allows_in_scope_and_sets_identity() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::Api, &claims("aaaaaaaaaaaaaaaaaaaaaaaa", Some(&["GET /objects/:id"]))).unwrap();
        let auth = format!("Bearer {t}");
        let Outcome::Allow(h) = ask(&mut f, "GET", "/api/v1/objects/42?x=1", &[&auth]) else { panic!() };
        assert!(h.contains(&("x-tokengate-subject", "u1".into())));
        assert!(h.contains(&("x-tokengate-scope", "GET /objects/:id".into())));
        assert!(h.contains(&("x-tokengate-user", "alice".into())));
        assert_eq!(f.worker.last_cache, CacheResult::Miss);
        assert_eq!(ask(&mut f, "DELETE", "/api/v1/objects/42", &[&auth]), Outcome::Deny(Denial::InsufficientScope));
        assert_eq!(f.worker.last_cache, CacheResult::Local);
        assert_eq!(ask(&mut f, "GET", "/objects/42", &[&auth]), Outcome::Deny(Denial::InsufficientScope));
        assert_eq!(ask(&mut f, "GET", "/api/v1/objects/42/x", &[&auth]), Outcome::Deny(Denial::InsufficientScope));
    }

    #[test]
    fn second_worker_uses_the_shared_claims_slot() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::Api, &claims("aaaaaaaaaaaaaaaaaaaaaaaa", None)).unwrap();
        let auth = format!("Bearer {t}");
        assert!(matches!(ask(&mut f, "GET", "/anything", &[&auth]), Outcome::Allow(_)));
        let cfg = PluginConfig::parse(CFG.as_bytes()).unwrap();
        let mut w2 = Worker::new(Rc::new(cfg.gate().unwrap()));
        let out = w2.decide(&f.host, &Request { method: "GET", path: "/anything", authorization: &[&auth] });
        assert!(matches!(out, Outcome::Allow(_)));
        assert_eq!(w2.last_cache, CacheResult::Shared);
    }

    #[test]
    fn credentials_are_exactly_one_bearer() {
        let mut f = fixture(CFG);
        assert_eq!(ask(&mut f, "GET", "/x", &[]), Outcome::Deny(Denial::MissingToken));
        assert_eq!(ask(&mut f, "GET", "/x", &["Basic YTpi"]), Outcome::Deny(Denial::MissingToken));
        assert_eq!(ask(&mut f, "GET", "/x", &["Bearer a", "Bearer b"]), Outcome::Deny(Denial::InvalidRequest("multiple_credentials")));
        assert_eq!(ask(&mut f, "GET", "/x?access_token=a", &["Bearer a"]), Outcome::Deny(Denial::InvalidRequest("multiple_credentials")));
        assert_eq!(ask(&mut f, "GET", "/x", &["Bearer a.b.c"]), Outcome::Deny(Denial::InvalidToken(TokenError::BadEncoding)));
    }

    #[test]
    fn revocation_reaches_warm_tokens() {
        let mut f = fixture(CFG);
        let jti = "bbbbbbbbbbbbbbbbbbbbbbbb";
        let t = f.signer.sign(TokenKind::Api, &claims(jti, None)).unwrap();
        let auth = format!("Bearer {t}");
        assert!(matches!(ask(&mut f, "GET", "/x", &[&auth]), Outcome::Allow(_)));
        let resp = SyncResponse {
            protocol: 1,
            version: 2,
            snapshot: false,
            keys: f.syncer.keys().to_vec(),
            revoked: vec![Revocation { jti: jti.into(), exp: t0() / 1000 + 3600 }],
            server_time: t0(),
        };
        f.syncer.apply(&f.host, resp).unwrap();
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Outcome::Deny(Denial::InvalidToken(TokenError::Revoked)));
        // A fresh worker (e.g. after a restart of the worker VM) loads it from the buckets.
        let cfg = PluginConfig::parse(CFG.as_bytes()).unwrap();
        let mut w2 = Worker::new(Rc::new(cfg.gate().unwrap()));
        let out = w2.decide(&f.host, &Request { method: "GET", path: "/x", authorization: &[&auth] });
        assert_eq!(out, Outcome::Deny(Denial::InvalidToken(TokenError::Revoked)));
    }

    #[test]
    fn stale_state_fails_closed_or_open_by_config() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::Api, &claims("cccccccccccccccccccccccc", None)).unwrap();
        let auth = format!("Bearer {t}");
        f.host.now_ms.set(t0() + 121_000);
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Outcome::Deny(Denial::Unavailable("gate_stale")));
        let open = r#"{"audiences":["tokengate"],"fail_mode":"open","control_plane":{"cluster":"cp","credential":"s","proxy_id":"p1"}}"#;
        let mut g = fixture(open);
        let t = g.signer.sign(TokenKind::Api, &claims("cccccccccccccccccccccccc", None)).unwrap();
        let auth = format!("Bearer {t}");
        g.host.now_ms.set(t0() + 121_000);
        assert!(matches!(ask(&mut g, "GET", "/x", &[&auth]), Outcome::Allow(_)));
    }

    #[test]
    fn unsafe_paths_are_refused_even_with_an_unscoped_token() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::Api, &claims("dddddddddddddddddddddddd", None)).unwrap();
        let auth = format!("Bearer {t}");
        assert!(matches!(ask(&mut f, "GET", "/a/%2e%2e/b", &[&auth]), Outcome::Deny(Denial::BadPath(_))));
    }

    #[test]
    fn other_kinds_are_refused() {
        let mut f = fixture(CFG);
        let t = f.signer.sign(TokenKind::VoucherAccess, &claims("eeeeeeeeeeeeeeeeeeeeeeee", None)).unwrap();
        let auth = format!("Bearer {t}");
        assert_eq!(ask(&mut f, "GET", "/x", &[&auth]), Outcome::Deny(Denial::InvalidToken(TokenError::WrongType)));
    }
}
