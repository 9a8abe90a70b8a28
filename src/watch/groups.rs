//! Which synced watchers a changed key concerns: single-key watches by hash lookup, range
//! watches grouped by range, so many watchers of one prefix cost one comparison.

use std::collections::HashMap;

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

    pub fn contains(&self, k: &[u8]) -> bool {
        match self {
            KeyRange::Single(key) => k == key.as_slice(),
            KeyRange::Below(start, end) => start.as_slice() <= k && k < end.as_slice(),
            KeyRange::From(start) => start.as_slice() <= k,
        }
    }
}

#[derive(Default)]
pub struct Groups {
    keys: HashMap<Vec<u8>, Vec<WatcherId>>,
    ranges: HashMap<KeyRange, Vec<WatcherId>>,
}

impl Groups {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.ranges.is_empty()
    }

    pub fn add(&mut self, id: WatcherId, range: &KeyRange) {
        match range {
            KeyRange::Single(key) => self.keys.entry(key.clone()).or_default().push(id),
            _ => self.ranges.entry(range.clone()).or_default().push(id),
        }
    }

    pub fn remove(&mut self, id: WatcherId, range: &KeyRange) {
        fn remove_from<K: std::hash::Hash + Eq>(
            map: &mut HashMap<K, Vec<WatcherId>>,
            k: &K,
            id: WatcherId,
        ) {
            if let Some(ids) = map.get_mut(k) {
                if let Some(i) = ids.iter().position(|&x| x == id) {
                    ids.swap_remove(i);
                }
                if ids.is_empty() {
                    map.remove(k);
                }
            }
        }
        match range {
            KeyRange::Single(key) => remove_from(&mut self.keys, key, id),
            _ => remove_from(&mut self.ranges, range, id),
        }
    }

    pub fn for_each_matching(&self, key: &[u8], mut f: impl FnMut(WatcherId)) {
        if let Some(ids) = self.keys.get(key) {
            ids.iter().copied().for_each(&mut f);
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
