//! The set of revoked token ids, bounded by the tokens' own expiry.

use hashbrown::HashMap;

use crate::sync::Revocation;

#[derive(Clone, Debug, Default)]
pub struct RevocationSet {
    entries: HashMap<Box<str>, u64>,
}

impl RevocationSet {
    pub fn new() -> Self {
        RevocationSet::default()
    }

    pub fn insert(&mut self, jti: &str, exp: u64) {
        self.entries.insert(jti.into(), exp);
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.entries.contains_key(jti)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Drops entries whose token has expired (plus `leeway`): they can no longer pass anyway.
    pub fn prune(&mut self, now: u64, leeway: u64) {
        self.entries.retain(|_, exp| exp.saturating_add(leeway) > now);
    }

    pub fn extend<'a>(&mut self, revs: impl IntoIterator<Item = &'a Revocation>) {
        for r in revs {
            self.insert(&r.jti, r.exp);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.entries.iter().map(|(k, v)| (&**k, *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_drops_only_expired() {
        let mut s = RevocationSet::new();
        s.insert("a", 100);
        s.insert("b", 200);
        s.prune(150, 30);
        assert!(!s.contains("a"));
        assert!(s.contains("b"));
    }
}
