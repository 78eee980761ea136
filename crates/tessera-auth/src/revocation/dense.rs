//! A set of 16-byte keys (UUIDs), each with a time until which it is kept, packed for millions
//! of entries: the revocation state must hold every denylisted `jti` and every recently revoked
//! session, and a mass revocation makes those millions.
//!
//! Most entries live in one array sorted by key, 20 bytes each (a hash map holds the same at
//! 40–60 bytes once its power-of-two capacity and control bytes are counted). What arrives
//! one at a time (notifications, polls) goes to a small hash map first and is merged into the
//! array, in one linear pass, once the map has grown to a fraction of the array.

use std::collections::HashMap;

/// One entry: the key's bytes (big-endian, so byte order is the UUID's order) and the time it
/// is kept until, in whole seconds rounded up (a `u32` reaches the year 2106; later clamps).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    key: [u8; 16],
    until: u32,
}

impl Entry {
    /// `key`, kept until `until_ms`.
    pub(super) fn new(key: [u8; 16], until_ms: i64) -> Self {
        Self {
            key,
            until: ceil_secs(until_ms),
        }
    }
}

/// Milliseconds to whole seconds, rounded up: an entry is never dropped early.
fn ceil_secs(ms: i64) -> u32 {
    let secs = ms.div_euclid(1000) + i64::from(ms.rem_euclid(1000) != 0);
    u32::try_from(secs.max(0)).unwrap_or(u32::MAX)
}

/// See the module documentation.
#[derive(Default)]
pub(super) struct DenseSet {
    /// Sorted by key, without duplicates, and holding no key of `recent`.
    sorted: Vec<Entry>,
    /// Inserted since the last merge.
    recent: HashMap<[u8; 16], u32>,
}

/// `recent` is merged into `sorted` once it holds this many entries, or an eighth of `sorted`
/// if more: merging is linear in `sorted`, so it must not run for every few inserts.
const MERGE_AT: usize = 4096;

impl DenseSet {
    pub(super) fn len(&self) -> usize {
        self.sorted.len() + self.recent.len()
    }

    pub(super) fn contains(&self, key: &[u8; 16]) -> bool {
        self.recent.contains_key(key) || self.position(key).is_ok()
    }

    fn position(&self, key: &[u8; 16]) -> Result<usize, usize> {
        self.sorted.binary_search_by(|e| e.key.cmp(key))
    }

    /// Adds `key`, kept until `until_ms` (or longer, if it is already held for longer).
    pub(super) fn insert(&mut self, key: [u8; 16], until_ms: i64) {
        self.insert_secs(key, ceil_secs(until_ms));
    }

    fn insert_secs(&mut self, key: [u8; 16], until: u32) {
        if let Ok(i) = self.position(&key) {
            let e = &mut self.sorted[i];
            e.until = e.until.max(until);
            return;
        }
        let held = self.recent.entry(key).or_insert(until);
        *held = (*held).max(until);
        if self.recent.len() >= MERGE_AT.max(self.sorted.len() / 8) {
            self.merge();
        }
    }

    /// A set of many entries at once (the first load): one sort instead of a merge per few
    /// thousand inserts. Made apart from the live set, then [`absorb`](Self::absorb)ed.
    pub(super) fn from_entries(mut all: Vec<Entry>) -> Self {
        // The key as a big-endian integer orders as the bytes do, and compares in one step;
        // among equal keys the latest time comes first, and is the one `dedup` keeps.
        all.sort_unstable_by_key(|e| (u128::from_be_bytes(e.key), std::cmp::Reverse(e.until)));
        all.dedup_by_key(|e| e.key);
        all.shrink_to_fit();
        Self {
            sorted: all,
            recent: HashMap::new(),
        }
    }

    /// Adds every entry of `other` (the larger of the two keeps its array).
    pub(super) fn absorb(&mut self, mut other: DenseSet) {
        if other.len() > self.len() {
            std::mem::swap(self, &mut other);
        }
        for e in other.sorted {
            self.insert_secs(e.key, e.until);
        }
        for (key, until) in other.recent {
            self.insert_secs(key, until);
        }
    }

    /// Drops the entries kept until `now_ms` or earlier.
    pub(super) fn retain_after(&mut self, now_ms: i64) {
        let keep = |until: u32| i64::from(until) * 1000 > now_ms;
        self.recent.retain(|_, until| keep(*until));
        self.sorted.retain(|e| keep(e.until));
    }

    /// Moves `recent` into `sorted`: sorts the few new entries, then merges from the back, in
    /// place, so no second copy of the array is ever made.
    fn merge(&mut self) {
        let mut new: Vec<Entry> = self
            .recent
            .drain()
            .map(|(key, until)| Entry { key, until })
            .collect();
        new.sort_unstable_by_key(|e| u128::from_be_bytes(e.key));
        let old = self.sorted.len();
        let filler = Entry {
            key: [0; 16],
            until: 0,
        };
        self.sorted.resize(old + new.len(), filler);
        let (mut i, mut j) = (old, new.len());
        while j > 0 {
            let k = i + j - 1;
            if i > 0 && self.sorted[i - 1].key > new[j - 1].key {
                self.sorted[k] = self.sorted[i - 1];
                i -= 1;
            } else {
                self.sorted[k] = new[j - 1];
                j -= 1;
            }
        }
        self.recent.shrink_to(MERGE_AT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u128) -> [u8; 16] {
        n.to_be_bytes()
    }

    #[test]
    fn merges_keep_order_and_every_entry() {
        let mut s = DenseSet::default();
        s.absorb(DenseSet::from_entries(
            (0..10_000u128)
                .map(|n| Entry::new(key(n * 7 % 10_007), 5_000))
                .collect(),
        ));
        assert_eq!(s.len(), 10_000);
        // Interleaved inserts: every one lands, in order, through several merges.
        for n in 0..20_000u128 {
            s.insert(key(n * 3 + 1), 9_000);
        }
        assert!(s.recent.len() < MERGE_AT.max(s.sorted.len() / 8));
        assert!(s.sorted.windows(2).all(|w| w[0].key < w[1].key));
        for n in 0..10_000u128 {
            assert!(s.contains(&key(n * 7 % 10_007)));
        }
        for n in 0..20_000u128 {
            assert!(s.contains(&key(n * 3 + 1)));
        }
        assert!(!s.contains(&key(u128::MAX)));
        let distinct: std::collections::HashSet<u128> = (0..10_000u128)
            .map(|n| n * 7 % 10_007)
            .chain((0..20_000u128).map(|n| n * 3 + 1))
            .collect();
        assert_eq!(s.len(), distinct.len());
    }

    #[test]
    fn a_key_is_kept_for_its_latest_time_and_never_dropped_early() {
        let mut s = DenseSet::default();
        s.insert(key(2), 2_000);
        let loaded = [(1, 1_001), (1, 5_000), (1, 3_000), (5, 10_000)];
        s.absorb(DenseSet::from_entries(
            loaded
                .iter()
                .map(|&(k, ms)| Entry::new(key(k), ms))
                .collect(),
        ));
        assert_eq!(s.len(), 3);
        s.insert(key(2), 7_000);
        s.insert(key(3), 3_500);
        s.insert(key(3), 1_000);
        s.retain_after(4_000);
        assert!(s.contains(&key(1)) && s.contains(&key(2)) && !s.contains(&key(3)));
        s.retain_after(5_000);
        assert!(!s.contains(&key(1)) && s.contains(&key(2)));
        assert!(s.contains(&key(5)));
        s.retain_after(i64::MAX);
        assert_eq!(s.len(), 0);
        // A time is rounded up to the second: 1_001 ms is kept at 1_999 ms.
        s.insert(key(6), 1_001);
        s.retain_after(1_999);
        assert!(s.contains(&key(6)));
        // Times far beyond a u32 of seconds clamp to the latest it can hold.
        s.insert(key(4), i64::MAX);
        s.retain_after(4_000_000_000_000);
        assert!(s.contains(&key(4)));
    }
}
