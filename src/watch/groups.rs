//! Which synced watchers a changed key concerns, without looking at every watcher on each
//! change (matching runs under the hub's lock on the apply path, on every write):
//! - single-key watches: a hash lookup of the key;
//! - prefix watches (the range etcd's `WithPrefix` makes, by far the most common): a hash
//!   lookup of each prefix of the key whose length some prefix watch has, so the cost
//!   follows the number of distinct prefix lengths, not of watchers;
//! - other ranges (rare): grouped by range and compared one by one.
//!
//! Watchers of the same key, prefix or range share one entry.

use std::collections::{BTreeMap, HashMap};

use super::WatcherId;

/// A watch's keys, as etcd reads `key` and `range_end`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyRange {
    Single(Vec<u8>),
    /// `[start, end)`.
    Below(Vec<u8>, Vec<u8>),
    /// Every key from `start` on (`range_end` is `"\0"`).
    From(Vec<u8>),
}

impl KeyRange {
    /// etcd's rules: an empty key is `"\0"`; an empty `range_end` one key; `"\0"` every
    /// key from `key` on. Fails with etcd's message when the range is empty.
    pub fn from_request(key: &[u8], range_end: &[u8]) -> Result<KeyRange, &'static str> {
        let key = if key.is_empty() {
            vec![0]
        } else {
            key.to_vec()
        };
        match range_end {
            [] => Ok(KeyRange::Single(key)),
            [0] => Ok(KeyRange::From(key)),
            end if key.as_slice() < end => Ok(KeyRange::Below(key, end.to_vec())),
            _ => Err("mvcc: watcher range is empty"),
        }
    }

    /// The prefix whose keys are exactly this range, for a range etcd's `WithPrefix` makes
    /// (`range_end` is the prefix with its last byte below 0xff incremented).
    fn as_prefix(&self) -> Option<&[u8]> {
        let KeyRange::Below(start, end) = self else {
            return None;
        };
        (prefix_end(start).as_deref() == Some(end.as_slice())).then_some(start.as_slice())
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => k == key.as_slice(),
            KeyRange::Below(start, end) => start.as_slice() <= k && k < end.as_slice(),
            KeyRange::From(start) => start.as_slice() <= k,
        }
    }
}

/// etcd's `GetPrefixRangeEnd`: the first key after every key that starts with `prefix`;
/// `None` when there is none (the prefix is all 0xff bytes, or empty).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b < 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

#[derive(Default)]
pub struct Groups {
    keys: HashMap<Vec<u8>, Vec<WatcherId>>,
    prefixes: HashMap<Vec<u8>, Vec<WatcherId>>,
    /// How many distinct prefixes of each length `prefixes` holds.
    prefix_lengths: BTreeMap<usize, usize>,
    ranges: HashMap<KeyRange, Vec<WatcherId>>,
}

impl Groups {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.prefixes.is_empty() && self.ranges.is_empty()
    }

    pub fn add(&mut self, id: WatcherId, range: &KeyRange) {
        if let Some(prefix) = range.as_prefix() {
            let ids = self.prefixes.entry(prefix.to_vec()).or_default();
            if ids.is_empty() {
                *self.prefix_lengths.entry(prefix.len()).or_default() += 1;
            }
            ids.push(id);
            return;
        }
        match range {
            KeyRange::Single(key) => self.keys.entry(key.clone()).or_default().push(id),
            _ => self.ranges.entry(range.clone()).or_default().push(id),
        }
    }

    pub fn remove(&mut self, id: WatcherId, range: &KeyRange) {
        /// Whether the entry was emptied and removed.
        fn remove_from<
            K: std::hash::Hash + Eq + std::borrow::Borrow<Q>,
            Q: std::hash::Hash + Eq + ?Sized,
        >(
            map: &mut HashMap<K, Vec<WatcherId>>,
            k: &Q,
            id: WatcherId,
        ) -> bool {
            if let Some(ids) = map.get_mut(k) {
                if let Some(i) = ids.iter().position(|&x| x == id) {
                    ids.swap_remove(i);
                }
                if ids.is_empty() {
                    map.remove(k);
                    return true;
                }
            }
            false
        }
        if let Some(prefix) = range.as_prefix() {
            if remove_from(&mut self.prefixes, prefix, id) {
                let count = self
                    .prefix_lengths
                    .get_mut(&prefix.len())
                    .expect("a length of a held prefix");
                *count -= 1;
                if *count == 0 {
                    self.prefix_lengths.remove(&prefix.len());
                }
            }
            return;
        }
        match range {
            KeyRange::Single(key) => remove_from(&mut self.keys, key.as_slice(), id),
            _ => remove_from(&mut self.ranges, range, id),
        };
    }

    pub fn for_each_matching(&self, key: &[u8], mut f: impl FnMut(WatcherId)) {
        if let Some(ids) = self.keys.get(key) {
            ids.iter().copied().for_each(&mut f);
        }
        for &len in self.prefix_lengths.range(..=key.len()).map(|(len, _)| len) {
            if let Some(ids) = self.prefixes.get(&key[..len]) {
                ids.iter().copied().for_each(&mut f);
            }
        }
        for (range, ids) in &self.ranges {
            if range.contains(key) {
                ids.iter().copied().for_each(&mut f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_etcd_rules() {
        assert_eq!(
            KeyRange::from_request(b"", b""),
            Ok(KeyRange::Single(vec![0]))
        );
        let from = KeyRange::from_request(b"a", b"\0").unwrap();
        assert!(from.contains(b"a") && from.contains(b"zzz") && !from.contains(b"\x01"));
        let below = KeyRange::from_request(b"a", b"c").unwrap();
        assert!(below.contains(b"b") && !below.contains(b"c"));
        assert!(KeyRange::from_request(b"b", b"a").is_err());
        assert!(KeyRange::from_request(b"a", b"a").is_err());
    }

    #[test]
    fn prefix_ranges_are_found_by_prefix() {
        let mut groups = Groups::default();
        let prefix = |p: &[u8]| KeyRange::from_request(p, &prefix_end(p).unwrap()).unwrap();
        groups.add(1, &prefix(b"a/"));
        groups.add(2, &prefix(b"a/b/"));
        groups.add(3, &prefix(b"a\xff"));
        groups.add(4, &KeyRange::Below(b"a/".to_vec(), b"a/c".to_vec()));
        assert!(prefix(b"a/").as_prefix().is_some());
        assert!(
            groups.ranges.len() == 1,
            "a range that is no prefix stays a range"
        );
        let matching = |groups: &Groups, key: &[u8]| {
            let mut found = Vec::new();
            groups.for_each_matching(key, |id| found.push(id));
            found.sort();
            found
        };
        assert_eq!(matching(&groups, b"a/b/c"), vec![1, 2, 4]);
        assert_eq!(matching(&groups, b"a/"), vec![1, 4]);
        assert_eq!(matching(&groups, b"a"), Vec::<u64>::new());
        assert_eq!(matching(&groups, b"a\xff\xff"), vec![3]);
        assert_eq!(matching(&groups, b"a/d"), vec![1]);
        groups.remove(1, &prefix(b"a/"));
        groups.remove(2, &prefix(b"a/b/"));
        groups.remove(3, &prefix(b"a\xff"));
        groups.remove(4, &KeyRange::Below(b"a/".to_vec(), b"a/c".to_vec()));
        assert!(groups.is_empty() && groups.prefix_lengths.is_empty());
    }

    #[test]
    fn matching_finds_keys_and_ranges_and_forgets_removed() {
        let mut groups = Groups::default();
        let single = KeyRange::Single(b"k".to_vec());
        let prefix = KeyRange::Below(b"k".to_vec(), b"l".to_vec());
        groups.add(1, &single);
        groups.add(2, &prefix);
        groups.add(3, &prefix);
        let mut found = Vec::new();
        groups.for_each_matching(b"k", |id| found.push(id));
        found.sort();
        assert_eq!(found, vec![1, 2, 3]);
        groups.remove(2, &prefix);
        groups.remove(1, &single);
        found.clear();
        groups.for_each_matching(b"k1", |id| found.push(id));
        assert_eq!(found, vec![3]);
        groups.remove(3, &prefix);
        assert!(groups.is_empty());
    }
}
