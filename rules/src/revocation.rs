//! Revoked token ids, bounded by the tokens' own expiry, in a compact binary form that
//! the control plane, the sync service and every worker share (issue 14).
//!
//! An entry is a 16-byte [`Record`]: the token id as a 12-byte [`IdKey`] then its expiry
//! as seconds, `u32` little-endian. The control plane's ids (tokens, voucher activations)
//! are 24 lower-case hex digits, so the key *is* the id; any other spelling is hashed to
//! 96 bits (FNV-1a 128, truncated), where a collision could only refuse a token, never
//! admit one. An expiry past 2106 is kept as `u32::MAX` (longer, never shorter).
//!
//! Records are spread over [`BUCKETS`] buckets by a hash of the key and each bucket is
//! kept sorted by key, so a lookup is a binary search and a bucket's
//! bytes go to shared data and back without a parse.
//!
//! Live sessions (seed 003) still use the hashed [`IdSet`]: they are added *and* removed
//! one by one, and are far fewer.

use hashbrown::HashMap;

/// Bytes of a token id's key, and of a whole record.
pub const KEY_BYTES: usize = 12;
pub const RECORD_BYTES: usize = 16;
/// Revocation buckets (shared-data keys `tokengate/rev/<0..63>`).
pub const BUCKETS: usize = 64;
/// Journal entries a worker holds beside its buckets before it merges them in.
pub const RECENT_MAX: usize = 4096;

pub type IdKey = [u8; KEY_BYTES];
pub type Record = [u8; RECORD_BYTES];

/// The key of a token id: the id itself when it is 24 lower-case hex digits, else a
/// 96-bit hash of it.
pub fn id_key(jti: &str) -> IdKey {
    let b = jti.as_bytes();
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    if b.len() == 2 * KEY_BYTES {
        let mut key = [0u8; KEY_BYTES];
        let mut exact = true;
        for (k, pair) in key.iter_mut().zip(b.chunks_exact(2)) {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => *k = hi << 4 | lo,
                _ => {
                    exact = false;
                    break;
                }
            }
        }
        if exact {
            return key;
        }
    }
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for c in b {
        h ^= u128::from(*c);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    let mut key = [0u8; KEY_BYTES];
    key.copy_from_slice(&h.to_be_bytes()[..KEY_BYTES]);
    key
}

/// The key as 24 lower-case hex digits: a token id that has this very key (a journal
/// entry for a record that came without its id).
pub fn key_hex(key: &IdKey) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 * KEY_BYTES);
    for b in key {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// The bucket of a key: the top 6 bits of its last 8 bytes times a large odd constant
/// (Fibonacci hashing), so ids that share a prefix still spread evenly.
pub fn bucket_of(key: &IdKey) -> usize {
    let low = u64::from_be_bytes([key[4], key[5], key[6], key[7], key[8], key[9], key[10], key[11]]);
    (low.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize
}

pub fn record(key: &IdKey, exp: u64) -> Record {
    let mut r = [0u8; RECORD_BYTES];
    r[..KEY_BYTES].copy_from_slice(key);
    r[KEY_BYTES..].copy_from_slice(&u32::try_from(exp).unwrap_or(u32::MAX).to_le_bytes());
    r
}

pub fn record_key(r: &Record) -> IdKey {
    let mut k = [0u8; KEY_BYTES];
    k.copy_from_slice(&r[..KEY_BYTES]);
    k
}

pub fn record_exp(r: &Record) -> u64 {
    u64::from(u32::from_le_bytes([r[12], r[13], r[14], r[15]]))
}

/// Whole records of `bytes`, or `None` when its length is not a multiple of 16.
pub fn records(bytes: &[u8]) -> Option<impl Iterator<Item = Record> + '_> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return None;
    }
    Some(bytes.chunks_exact(RECORD_BYTES).map(|c| {
        let mut r = [0u8; RECORD_BYTES];
        r.copy_from_slice(c);
        r
    }))
}

/// Sorts a bucket by key and keeps one record per key (the latest expiry). Buckets that
/// grow by appends are mostly sorted already, which the stable sort finds in one pass.
pub fn normalize(bucket: &mut Vec<Record>) {
    if !bucket.windows(2).all(|w| w[0][..KEY_BYTES] < w[1][..KEY_BYTES]) {
        bucket.sort_by(|a, b| a[..KEY_BYTES].cmp(&b[..KEY_BYTES]));
        bucket.dedup_by(|later, kept| {
            if later[..KEY_BYTES] == kept[..KEY_BYTES] {
                if record_exp(later) > record_exp(kept) {
                    kept[KEY_BYTES..].copy_from_slice(&later[KEY_BYTES..]);
                }
                true
            } else {
                false
            }
        });
    }
}

/// Appends a record, growing the bucket by an eighth when full rather than doubling it:
/// buckets are long-lived and Wasm memory never shrinks.
pub fn push(bucket: &mut Vec<Record>, r: Record) {
    if bucket.len() == bucket.capacity() {
        bucket.reserve_exact(bucket.len() / 8 + 16);
    }
    bucket.push(r);
}

/// The key's 96 bits as a number (keys sort as these numbers).
fn key_value(k: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    b[4..].copy_from_slice(&k[..KEY_BYTES]);
    u128::from_be_bytes(b)
}

/// The expiry recorded for `key` in a sorted bucket.
///
/// Ids are random, so a bucket's keys are spread evenly between its first and last: a
/// few interpolation steps land next to the key (about 3 probes in a bucket of 16k, where
/// a binary search makes 14, each a cache miss in a 16 MB set), then a binary search
/// finishes in what is left. Skewed keys only cost the steps back.
pub fn find(bucket: &[Record], key: &IdKey) -> Option<u64> {
    let k = key_value(key);
    let (mut lo, mut hi) = (0usize, bucket.len());
    for _ in 0..4 {
        if hi - lo < 16 {
            break;
        }
        let (first, last) = (key_value(&bucket[lo]), key_value(&bucket[hi - 1]));
        if k < first || k > last {
            return None;
        }
        if first == last {
            break;
        }
        // (k - first) < 2^96 and the span < 2^32: the product fits.
        let pos = lo + ((k - first) * (hi - 1 - lo) as u128 / (last - first)) as usize;
        let v = key_value(&bucket[pos]);
        if v == k {
            return Some(record_exp(&bucket[pos]));
        }
        if v < k {
            lo = pos + 1;
        } else {
            hi = pos;
        }
    }
    let rest = &bucket[lo..hi];
    rest.binary_search_by(|r| r[..KEY_BYTES].cmp(&key[..])).ok().map(|i| record_exp(&rest[i]))
}

/// A worker's revoked ids: the sorted buckets as the sync service published them, plus
/// the few added since from the journal (merged in once there are [`RECENT_MAX`]).
/// 16 bytes an entry.
#[derive(Clone, Debug)]
pub struct RevocationSet {
    buckets: Vec<Vec<Record>>,
    recent: HashMap<IdKey, u64>,
}

impl Default for RevocationSet {
    fn default() -> Self {
        RevocationSet { buckets: vec![Vec::new(); BUCKETS], recent: HashMap::new() }
    }
}

impl RevocationSet {
    pub fn new() -> Self {
        RevocationSet::default()
    }

    /// Replaces bucket `i` with the records in `bytes` (a bucket as the sync service
    /// writes it). Returns false, and keeps only the whole records, when `bytes` is not
    /// whole records; records filed under the wrong bucket are moved to their own.
    pub fn load_bucket(&mut self, i: usize, bytes: &[u8]) -> bool {
        let whole = bytes.len() - bytes.len() % RECORD_BYTES;
        let mut misplaced = Vec::new();
        if let (Some(bucket), Some(rs)) = (self.buckets.get_mut(i), records(&bytes[..whole])) {
            bucket.clear();
            bucket.reserve_exact(whole / RECORD_BYTES);
            for r in rs {
                if bucket_of(&record_key(&r)) == i {
                    bucket.push(r);
                } else {
                    misplaced.push(r);
                }
            }
            normalize(bucket);
        }
        let ok = whole == bytes.len() && misplaced.is_empty() && i < BUCKETS;
        for r in misplaced {
            self.insert_key(&record_key(&r), record_exp(&r));
        }
        ok
    }

    pub fn insert(&mut self, jti: &str, exp: u64) {
        self.insert_key(&id_key(jti), exp);
    }

    pub fn insert_key(&mut self, key: &IdKey, exp: u64) {
        let i = bucket_of(key);
        if find(&self.buckets[i], key).is_some_and(|e| e >= exp.min(u64::from(u32::MAX))) {
            return;
        }
        let e = self.recent.entry(*key).or_insert(exp);
        *e = (*e).max(exp);
        if self.recent.len() > RECENT_MAX {
            self.merge_recent();
        }
    }

    /// Moves the journal's entries into the sorted buckets.
    fn merge_recent(&mut self) {
        let mut touched = [false; BUCKETS];
        for (key, exp) in self.recent.drain() {
            let i = bucket_of(&key);
            push(&mut self.buckets[i], record(&key, exp));
            touched[i] = true;
        }
        for (b, t) in self.buckets.iter_mut().zip(touched) {
            if t {
                normalize(b);
            }
        }
    }

    pub fn contains(&self, jti: &str) -> bool {
        let key = id_key(jti);
        self.recent.contains_key(&key) || find(&self.buckets[bucket_of(&key)], &key).is_some()
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum::<usize>() + self.recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&mut self) {
        for b in &mut self.buckets {
            b.clear();
        }
        self.recent.clear();
    }

    /// Drops entries whose token has expired (plus `leeway`): they can no longer pass anyway.
    pub fn prune(&mut self, now: u64, leeway: u64) {
        for b in &mut self.buckets {
            b.retain(|r| record_exp(r).saturating_add(leeway) > now);
        }
        self.recent.retain(|_, exp| exp.saturating_add(leeway) > now);
    }
}

/// The hashed form of an id for [`IdSet`]: exact for up to 32 hex digits, else FNV-1a 128.
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

/// A set of ids that are added and removed one by one (live sessions): `u128` id +
/// `u64` end, 24 bytes plus the table's control byte.
#[derive(Clone, Debug, Default)]
pub struct IdSet {
    entries: HashMap<u128, u64>,
}

impl IdSet {
    pub fn new() -> Self {
        IdSet::default()
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

    pub fn prune(&mut self, now: u64, leeway: u64) {
        self.entries.retain(|_, exp| exp.saturating_add(leeway) > now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef01234567";

    #[test]
    fn hex_ids_are_their_own_key_and_other_ids_are_hashed() {
        assert_eq!(id_key(A), [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0x01, 0x23, 0x45, 0x67]);
        assert_eq!(key_hex(&id_key(A)), A);
        assert_ne!(id_key(A), id_key("0123456789abcdef01234568"));
        assert_ne!(id_key("session-1"), id_key("session-2"));
        assert_ne!(id_key("0123456789ABCDEF01234567"), id_key(A), "upper case is another id");
        assert_ne!(id_key("0a"), id_key("a"));
        // The key of a hashed id, spelt as hex, is the same key (journal entries).
        let k = id_key("not-hex");
        assert_eq!(id_key(&key_hex(&k)), k);
    }

    #[test]
    fn buckets_spread_sequential_and_random_ids() {
        let mut counts = [0usize; BUCKETS];
        for i in 0..64_000u64 {
            counts[bucket_of(&id_key(&format!("{i:024x}")))] += 1;
        }
        assert!(counts.iter().all(|c| (700..1300).contains(c)), "{counts:?}");
    }

    #[test]
    fn records_round_trip_and_clamp_the_expiry() {
        let r = record(&id_key(A), 1_800_000_000);
        assert_eq!((record_key(&r), record_exp(&r)), (id_key(A), 1_800_000_000));
        assert_eq!(record_exp(&record(&id_key(A), u64::MAX)), u64::from(u32::MAX), "kept longer, never shorter");
        let bytes: Vec<u8> = [r, record(&id_key("b"), 5)].concat();
        let back: Vec<Record> = records(&bytes).unwrap().collect();
        assert_eq!(back.concat(), bytes);
        assert!(records(&bytes[..31]).is_none(), "a truncated record");
        assert!(records(&[]).unwrap().next().is_none());
    }

    #[test]
    fn normalize_sorts_and_keeps_the_latest_expiry() {
        let (a, b) = (id_key("ffffffffffffffffffffffff"), id_key("000000000000000000000001"));
        let mut v = vec![record(&a, 5), record(&b, 1), record(&a, 9), record(&a, 7)];
        normalize(&mut v);
        assert_eq!(v, vec![record(&b, 1), record(&a, 9)]);
        assert_eq!(find(&v, &a), Some(9));
        assert_eq!(find(&v, &id_key("c")), None);
    }

    #[test]
    fn find_agrees_with_a_plain_search_on_even_and_skewed_keys() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for skew in [0u32, 40, 90] {
            let mut keys: Vec<IdKey> = (0..5000)
                .map(|_| {
                    let v = (u128::from(next()) << 32 | u128::from(next() >> 32)) >> skew;
                    let mut k = [0u8; KEY_BYTES];
                    k.copy_from_slice(&v.to_be_bytes()[4..]);
                    k
                })
                .collect();
            keys.push([0; KEY_BYTES]);
            keys.push([0xff; KEY_BYTES]);
            let mut bucket: Vec<Record> = keys.iter().map(|k| record(k, 9)).collect();
            normalize(&mut bucket);
            for (i, k) in keys.iter().enumerate() {
                assert_eq!(find(&bucket, k), Some(9), "skew {skew}");
                let mut other = *k;
                other[KEY_BYTES - 1] ^= 1 + (i as u8 & 3);
                let plain = bucket.binary_search_by(|r| r[..KEY_BYTES].cmp(&other[..])).ok().map(|_| 9);
                assert_eq!(find(&bucket, &other), plain, "skew {skew}");
            }
            for n in 0..20 {
                assert_eq!(find(&bucket[..n], &keys[0]), bucket[..n].iter().position(|r| record_key(r) == keys[0]).map(|_| 9));
            }
        }
    }

    #[test]
    fn a_set_loads_buckets_takes_journal_entries_and_prunes() {
        let ids: Vec<String> =
            (0..10_000u64).map(|i| format!("{:024x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15) as u128 * 0x1_0000)).collect();
        let mut buckets = vec![Vec::new(); BUCKETS];
        for (n, id) in ids.iter().enumerate() {
            let k = id_key(id);
            buckets[bucket_of(&k)].push(record(&k, 100 + n as u64 % 2 * 100));
        }
        let mut s = RevocationSet::new();
        for (i, b) in buckets.iter_mut().enumerate() {
            normalize(b);
            assert!(s.load_bucket(i, &b.concat()));
        }
        assert_eq!(s.len(), ids.len());
        assert!(ids.iter().all(|id| s.contains(id)));
        assert!(!s.contains("ffffffffffffffffffffffff"));
        // Journal entries, past the point where they are merged into the buckets.
        for n in 0..(RECENT_MAX + 10) {
            s.insert(&format!("j{n}"), 300);
        }
        assert!(s.contains("j0") && s.contains(&format!("j{}", RECENT_MAX + 9)));
        assert_eq!(s.len(), ids.len() + RECENT_MAX + 10);
        s.insert(&ids[0], 100);
        assert_eq!(s.len(), ids.len() + RECENT_MAX + 10, "already there");
        s.prune(150, 30);
        assert_eq!(s.len(), ids.len() / 2 + RECENT_MAX + 10);
        assert!(!s.contains(&ids[0]) && s.contains(&ids[1]));
    }

    #[test]
    fn bad_bucket_bytes_keep_the_whole_records_and_never_panic() {
        let mut s = RevocationSet::new();
        let k = id_key(A);
        let good = record(&k, 50);
        let mut bytes = good.to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        assert!(!s.load_bucket(bucket_of(&k), &bytes), "a truncated record");
        assert!(s.contains(A));
        // A record in the wrong bucket is still enforced.
        assert!(!s.load_bucket((bucket_of(&k) + 1) % BUCKETS, &good));
        assert!(s.contains(A));
        assert!(!s.load_bucket(BUCKETS + 3, &good), "no such bucket");
        // Unsorted, duplicated, garbage: whatever comes, lookups stay correct.
        let junk: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for i in 0..BUCKETS {
            s.load_bucket(i, &junk);
        }
        for r in records(&junk).unwrap() {
            assert!(s.contains(&key_hex(&record_key(&r))));
        }
    }

    #[test]
    fn id_sets_are_exact_for_hex_ids() {
        assert_ne!(jti_key("0a"), jti_key("a"));
        assert_ne!(jti_key("ABCDEF"), jti_key("abcdef"));
        let mut s = IdSet::new();
        s.insert(A, 10);
        assert!(s.contains(A));
        s.remove(A);
        assert!(s.is_empty());
        s.insert("a", 100);
        s.insert("b", 200);
        s.prune(150, 30);
        assert!(!s.contains("a") && s.contains("b"));
    }
}
