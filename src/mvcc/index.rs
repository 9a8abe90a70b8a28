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
    #[cfg(test)]
    pub fn compact(&mut self, at_rev: i64) -> Vec<(Revision, bool)> {
        let mut dropped = Vec::new();
        let mut from = CompactFrom::Start;
        while let Some(next) = self.compact_slice(at_rev, from, usize::MAX, &mut dropped) {
            from = next;
        }
        dropped
    }

    /// One slice of `compact`: from `from` on, in key order, until `max_dropped` revisions
    /// were added to `dropped` or `COMPACTION_KEYS_PER_SLICE` keys were visited. Returns
    /// where the next slice starts, or `None` once every key was visited. Keys put or
    /// deleted between slices are handled as if the compaction had found them then: only
    /// entries at or below `at_rev` are ever dropped, and those never change.
    pub fn compact_slice(
        &mut self,
        at_rev: i64,
        from: CompactFrom,
        max_dropped: usize,
        dropped: &mut Vec<(Revision, bool)>,
    ) -> Option<CompactFrom> {
        let lower = match &from {
            CompactFrom::Start => Bound::Unbounded,
            CompactFrom::Key(key) => Bound::Included(&**key),
        };
        let limit = dropped.len().saturating_add(max_dropped);
        let mut emptied: Vec<Box<[u8]>> = Vec::new();
        let mut next = None;
        for (visited, (key, history)) in self
            .keys
            .range_mut::<[u8], _>((lower, Bound::Unbounded))
            .enumerate()
        {
            if visited == COMPACTION_KEYS_PER_SLICE || dropped.len() >= limit {
                next = Some(CompactFrom::Key(key.clone()));
                break;
            }
            let n = history.partition_point(|e| e.rev.main <= at_rev);
            if n == 0 {
                continue;
            }
            let last = history[n - 1];
            let keep_from = if last.is_tombstone() && last.rev.main < at_rev {
                n
            } else {
                n - 1
            };
            // A key with a long history may take more than one slice.
            let drop_now = keep_from.min(limit - dropped.len());
            dropped.extend(history.drain(..drop_now).map(|e| (e.rev, e.is_tombstone())));
            if history.is_empty() {
                emptied.push(key.clone());
            } else if drop_now < keep_from {
                next = Some(CompactFrom::Key(key.clone()));
                break;
            }
        }
        for key in emptied {
            self.keys.remove(&key);
        }
        next
    }
}

/// Keys a compaction visits in one slice at most (`KeyIndex::compact_slice`): bounds how
/// long it holds the store's write lock (well under a millisecond) however large the index.
const COMPACTION_KEYS_PER_SLICE: usize = 10_000;

/// Where a slice of a compaction starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompactFrom {
    Start,
    /// At this key, included.
    Key(Box<[u8]>),
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

    /// Keys `k00000`.. with histories: every key put at two revisions, every third key then
    /// deleted, and key `hot` put `hot_versions` times; revisions follow one another.
    fn layered_index(keys: usize, hot_versions: usize) -> (KeyIndex, i64) {
        let mut idx = KeyIndex::default();
        let mut next = 2;
        let mut bump = || {
            next += 1;
            rev(next - 1)
        };
        for round in 0..2 {
            for k in 0..keys {
                idx.put(format!("k{k:05}").as_bytes(), bump());
                if round == 1 && k % 3 == 0 {
                    idx.tombstone(format!("k{k:05}").as_bytes(), bump());
                }
            }
        }
        for _ in 0..hot_versions {
            idx.put(b"hot", bump());
        }
        (idx, next - 1)
    }

    /// Every entry in force at `at` for each key, as a read at `at` finds it.
    fn reads_at(idx: &KeyIndex, at: i64) -> Vec<(Vec<u8>, IndexEntry)> {
        let mut found = Vec::new();
        idx.range(b"", RangeEnd::Unbounded, at, |k, e| {
            found.push((k.to_vec(), *e));
            true
        });
        found
    }

    #[test]
    fn compaction_in_slices_is_bounded_and_drops_exactly_the_unreachable_revisions() {
        let (mut idx, last) = layered_index(25_000, 2_500);
        let at = last - 100; // the hot key's last 100 versions stay above it
        let before: Vec<_> = (at..=last).map(|r| reads_at(&idx, r)).collect();
        let (mut dropped, mut from, mut slices) = (Vec::new(), CompactFrom::Start, 0);
        loop {
            let len = dropped.len();
            let next = idx.compact_slice(at, from, 1_000, &mut dropped);
            assert!(
                dropped.len() - len <= 1_000,
                "a slice drops at most its share"
            );
            slices += 1;
            match next {
                Some(n) => from = n,
                None => break,
            }
        }
        // Dropped: one put of each of the 16,666 keys not deleted, all 3 entries of the
        // 8,334 deleted ones, and 2,399 versions of `hot`: 1,000 a slice at most.
        assert_eq!(dropped.len(), 16_666 + 8_334 * 3 + 2_399);
        assert!(slices > dropped.len() / 1_000, "{slices} slices");
        let mut all: Vec<Revision> = dropped.iter().map(|(r, _)| *r).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), dropped.len(), "each revision dropped once");
        for (i, r) in (at..=last).enumerate() {
            assert_eq!(reads_at(&idx, r), before[i], "reads at {r} unchanged");
        }
        // Every key remaining has exactly one entry at or below `at`, unless it is
        // a delete at `at` itself; keys deleted before `at` are gone.
        for (key, history) in &idx.keys {
            let below = history.iter().filter(|e| e.rev.main <= at).count();
            assert!(below <= 1, "{key:?} keeps {below} entries at or below {at}");
        }
        // Nothing reachable was dropped: dropped revisions plus kept entries are all there were.
        let kept: usize = idx.keys.values().map(Vec::len).sum();
        assert_eq!(kept + dropped.len(), 25_000 * 2 + 8_334 + 2_500);
        // Again at the same revision: nothing left to drop.
        let (mut again, mut from) = (Vec::new(), CompactFrom::Start);
        while let Some(next) = idx.compact_slice(at, from, usize::MAX, &mut again) {
            from = next;
        }
        assert!(again.is_empty());
    }

    #[test]
    fn keys_changed_between_slices_keep_their_new_history() {
        let (mut idx, last) = layered_index(25_000, 0);
        let at = last;
        let mut dropped = Vec::new();
        let mut from = idx
            .compact_slice(at, CompactFrom::Start, usize::MAX, &mut dropped)
            .expect("more than one slice");
        let CompactFrom::Key(cursor) = from.clone() else {
            panic!("a slice ends at a key")
        };
        // Writes land between slices, on keys already compacted and keys still to come,
        // including a key re-created after its delete and keys new to the index.
        let mut next = last + 1;
        let mut changed = Vec::new();
        for key in ["k00001", "k00003", "k20001", "k20003", "a-new", "z-new"] {
            idx.put(key.as_bytes(), rev(next));
            changed.push((key.as_bytes().to_vec(), next));
            next += 1;
        }
        idx.tombstone(b"k20002", rev(next));
        assert!(&*cursor > b"k00003".as_slice() && &*cursor < b"k20001".as_slice());
        while let Some(n) = idx.compact_slice(at, from, usize::MAX, &mut dropped) {
            from = n;
        }
        for (key, r) in &changed {
            let e = idx
                .get(key, *r)
                .expect("a write after the compaction stays");
            assert_eq!(e.rev.main, *r);
        }
        // k00003 was deleted before `at`: compaction dropped its history; the put after
        // it created it afresh.
        let created = idx.get(b"k00003", next).unwrap();
        assert_eq!((created.create_rev, created.version), (changed[1].1, 1));
        assert!(
            idx.get(b"k20002", next).is_none(),
            "deleted after the compaction"
        );
        assert!(
            idx.get(b"k20002", at).is_some(),
            "still readable at the compacted revision"
        );
        assert!(dropped.iter().all(|(r, _)| r.main <= at));
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
