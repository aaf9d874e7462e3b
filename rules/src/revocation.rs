//! The set of revoked token ids, bounded by the tokens' own expiry.
//!
//! Each proxy worker holds one, so entries are compact: the id as a `u128` (the control
//! plane's ids are 24 hex digits, parsed exactly; any other form is hashed with 128-bit
//! FNV-1a, where a collision could only refuse a token, never admit one) and the expiry
//! as a `u64`: 24 bytes plus the table's control byte.

use hashbrown::HashMap;

/// The compact form of a token id.
pub fn jti_key(jti: &str) -> u128 {
    if (1..=32).contains(&jti.len()) && jti.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        if let Ok(v) = u128::from_str_radix(jti, 16) {
            // Tag parsed ids with the length so "0a" and "a" stay distinct.
            return v ^ ((jti.len() as u128) << 124);
        }
    }
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in jti.bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    h | (1u128 << 127)
}

#[derive(Clone, Debug, Default)]
pub struct RevocationSet {
    entries: HashMap<u128, u64>,
}

impl RevocationSet {
    pub fn new() -> Self {
        RevocationSet::default()
    }

    pub fn insert(&mut self, jti: &str, exp: u64) {
        self.entries.insert(jti_key(jti), exp);
    }

    pub fn remove(&mut self, jti: &str) {
        self.entries.remove(&jti_key(jti));
    }

    pub fn contains(&self, jti: &str) -> bool {
        self.entries.contains_key(&jti_key(jti))
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

}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_exact_for_hex_ids_and_distinct_otherwise() {
        assert_ne!(jti_key("0a"), jti_key("a"));
        assert_ne!(jti_key("0123456789abcdef01234567"), jti_key("0123456789abcdef01234568"));
        assert_ne!(jti_key("session-1"), jti_key("session-2"));
        assert_ne!(jti_key("ABCDEF"), jti_key("abcdef"));
        let mut s = RevocationSet::new();
        s.insert("0123456789abcdef01234567", 10);
        assert!(s.contains("0123456789abcdef01234567"));
        assert!(!s.contains("0123456789abcdef01234566"));
    }

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
