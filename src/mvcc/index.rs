//! The in-memory key index: for every key, the revisions at which it changed.
//!
//! Reads find a key's revision at any point in history here, then fetch the value from the
//! `kv` column family by that revision; so a read costs the same however many versions the
//! store holds. Rebuilt from disk at start-up.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::revision::Revision;

/// One change of a key. `version == 0` marks a tombstone (the key was deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub rev: Revision,
    pub create_rev: i64,
    pub version: i64,
}

impl IndexEntry {
    pub fn is_tombstone(&self) -> bool {
        self.version == 0
    }
}

#[derive(Debug, Default)]
pub struct KeyIndex {
    /// Boxed slices, not `Vec`s: 8 bytes less per key, and more keys per cache line while
    /// a lookup walks the tree.
    keys: BTreeMap<Box<[u8]>, Vec<IndexEntry>>,
    /// Keys whose last entry is not a tombstone, kept as entries are added (compaction
    /// never changes a key's last entry's liveness).
    live_keys: u64,
}

/// Where a range stops: one key, below a bound, or at the end of the key space.
#[derive(Debug, Clone, Copy)]
pub enum RangeEnd<'a> {
    Single,
    Before(&'a [u8]),
    Unbounded,
}

impl<'a> RangeEnd<'a> {
    /// etcd's encoding: empty `range_end` is one key, `"\0"` is every key from `key` on.
    pub fn from_request(range_end: &'a [u8]) -> RangeEnd<'a> {
        match range_end {
            [] => RangeEnd::Single,
            [0] => RangeEnd::Unbounded,
            end => RangeEnd::Before(end),
        }
    }
}

/// The entry in force at `rev` in a key's history, unless the key did not exist then.
fn live_at(history: &[IndexEntry], rev: i64) -> Option<&IndexEntry> {
    let n = history.partition_point(|e| e.rev.main <= rev);
    let entry = history[..n].last()?;
    (!entry.is_tombstone()).then_some(entry)
}

/// Appends `entry` to a key's history; returns the change in live keys (-1, 0 or 1).
fn push(history: &mut Vec<IndexEntry>, entry: IndexEntry) -> i64 {
    let was_live = history.last().is_some_and(|l| !l.is_tombstone());
    history.push(entry);
    i64::from(!entry.is_tombstone()) - i64::from(was_live)
}

impl KeyIndex {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Keys that exist at the latest revision.
    pub fn live_keys(&self) -> u64 {
        self.live_keys
    }

    fn count(&mut self, change: i64) {
        self.live_keys = self.live_keys.wrapping_add_signed(change);
    }

    /// The key's live entry at `rev`.
    pub fn get(&self, key: &[u8], rev: i64) -> Option<IndexEntry> {
        self.keys.get(key).and_then(|h| live_at(h, rev)).copied()
    }

    /// Visits keys live at `rev` in `[start, end)` in key order until `visit` returns false.
    pub fn range(
        &self,
        start: &[u8],
        end: RangeEnd<'_>,
        rev: i64,
        mut visit: impl FnMut(&[u8], &IndexEntry) -> bool,
    ) {
        if let RangeEnd::Single = end {
            if let Some(entry) = self.get(start, rev) {
                visit(start, &entry);
            }
            return;
        }
        let upper = match end {
            RangeEnd::Before(e) if e <= start => return,
            RangeEnd::Before(e) => Bound::Excluded(e),
            _ => Bound::Unbounded,
        };
        for (key, history) in self.keys.range::<[u8], _>((Bound::Included(start), upper)) {
            if let Some(entry) = live_at(history, rev) {
                if !visit(key, entry) {
                    return;
                }
            }
        }
    }

    /// Records a put of `key` at `rev` and returns its entry (create revision, version).
    pub fn put(&mut self, key: &[u8], rev: Revision) -> IndexEntry {
        let history = match self.keys.get_mut(key) {
            Some(h) => h,
            None => self.keys.entry(key.into()).or_default(),
        };
        let entry = match history.last() {
            Some(last) if !last.is_tombstone() => IndexEntry {
                rev,
                create_rev: last.create_rev,
                version: last.version + 1,
            },
            _ => IndexEntry {
                rev,
                create_rev: rev.main,
                version: 1,
            },
        };
        debug_assert!(history.last().is_none_or(|l| l.rev < rev));
        let change = push(history, entry);
        self.count(change);
        entry
    }

    /// Records the deletion of a live key at `rev`.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) {
        let history = self.keys.get_mut(key).expect("only live keys are deleted");
        debug_assert!(history.last().is_some_and(|l| !l.is_tombstone()));
        let change = push(
            history,
            IndexEntry {
                rev,
                create_rev: 0,
                version: 0,
            },
        );
        self.count(change);
    }

    /// Restores an entry read from disk at start-up (entries arrive in revision order).
    pub fn restore(&mut self, key: &[u8], entry: IndexEntry) {
        let history = match self.keys.get_mut(key) {
            Some(h) => h,
            None => self.keys.entry(key.into()).or_default(),
        };
        let change = push(history, entry);
        self.count(change);
    }

    /// Forgets history before `at_rev`, keeping for each key the entry in force at `at_rev`.
    /// A tombstone in force is dropped too, unless the delete happened at `at_rev` itself:
    /// a watch resuming from the compacted revision must still see that delete (etcd issue
    /// 18089, fixed in etcd 3.4.34, 3.5.16 and 3.6). Returns the revisions no read can reach
    /// any more, with their tombstone marks, for physical deletion.
    pub fn compact(&mut self, at_rev: i64) -> Vec<(Revision, bool)> {
        let mut dropped = Vec::new();
        self.keys.retain(|_, history| {
            let n = history.partition_point(|e| e.rev.main <= at_rev);
            if n == 0 {
                return true;
            }
            let last = history[n - 1];
            let keep_from = if last.is_tombstone() && last.rev.main < at_rev {
                n
            } else {
                n - 1
            };
            dropped.extend(
                history
                    .drain(..keep_from)
                    .map(|e| (e.rev, e.is_tombstone())),
            );
            !history.is_empty()
        });
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn versions_and_generations() {
        let mut idx = KeyIndex::default();
        assert_eq!(idx.put(b"a", rev(2)).version, 1);
        assert_eq!(idx.put(b"a", rev(3)).version, 2);
        idx.tombstone(b"a", rev(4));
        let e = idx.put(b"a", rev(5));
        assert_eq!((e.create_rev, e.version), (5, 1));
        assert_eq!(idx.get(b"a", 3).unwrap().version, 2);
        assert!(idx.get(b"a", 4).is_none());
        assert!(idx.get(b"a", 1).is_none());
    }

    #[test]
    fn live_keys_follow_puts_deletes_and_restores() {
        let mut idx = KeyIndex::default();
        idx.put(b"a", rev(2));
        idx.put(b"a", rev(3));
        idx.put(b"b", rev(4));
        assert_eq!(idx.live_keys(), 2);
        idx.tombstone(b"a", rev(5));
        assert_eq!(idx.live_keys(), 1);
        idx.put(b"a", rev(6));
        assert_eq!(idx.live_keys(), 2);
        let mut restored = KeyIndex::default();
        for (key, main, tombstone) in [(b"a", 2, false), (b"a", 3, true), (b"b", 4, false)] {
            let entry = IndexEntry {
                rev: rev(main),
                create_rev: if tombstone { 0 } else { 2 },
                version: if tombstone { 0 } else { 1 },
            };
            restored.restore(key, entry);
        }
        assert_eq!(restored.live_keys(), 1);
    }

    #[test]
    fn compaction_keeps_what_reads_at_the_compact_revision_need() {
        let mut idx = KeyIndex::default();
        idx.put(b"a", rev(2));
        idx.put(b"a", rev(3));
        idx.put(b"b", rev(4));
        idx.tombstone(b"b", rev(5));
        idx.put(b"c", rev(6));
        let dropped = idx.compact(5);
        // b's delete at the compacted revision stays, for watches resuming from there.
        assert_eq!(dropped, vec![(rev(2), false), (rev(4), false)]);
        assert_eq!(idx.get(b"a", 5).unwrap().rev, rev(3));
        assert!(idx.get(b"b", 5).is_none());
        // A later compaction drops it, with the key.
        idx.put(b"a", rev(7));
        assert_eq!(idx.compact(6), vec![(rev(5), true)]);
        assert!(idx.get(b"b", 6).is_none());
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.live_keys(), 2, "a and c");
    }

    #[test]
    fn range_bounds() {
        let mut idx = KeyIndex::default();
        for (i, k) in [b"a", b"b", b"c"].iter().enumerate() {
            idx.put(*k, rev(i as i64 + 2));
        }
        let mut seen = Vec::new();
        idx.range(b"a", RangeEnd::Before(b"c"), 10, |k, _| {
            seen.push(k.to_vec());
            true
        });
        assert_eq!(seen, vec![b"a".to_vec(), b"b".to_vec()]);
        let mut n = 0;
        idx.range(b"b", RangeEnd::Unbounded, 10, |_, _| {
            n += 1;
            true
        });
        assert_eq!(n, 2);
        idx.range(b"c", RangeEnd::Before(b"a"), 10, |_, _| {
            panic!("empty range")
        });
    }
}
