//! The store's revision model, as etcd 3.4's mvcc package has it: revisions start at 1, a
//! write transaction makes one revision whatever it changes, one that changes nothing makes
//! none; history stays readable at every revision until compacted; compaction is refused
//! for future or already compacted revisions and keeps the compacted revision readable.

use std::sync::Arc;
use std::time::Duration;

use super::*;

/// A store in a temporary directory, with its storage kept for reopening and raw checks.
struct Store {
    dir: tempfile::TempDir,
    storage: Arc<Storage>,
    mvcc: Arc<Mvcc>,
}

fn open() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Storage::open(&dir.path().join("db")).unwrap());
    let mvcc = Mvcc::open(storage.clone()).unwrap();
    Store { dir, storage, mvcc }
}

/// (key, value, create_revision, mod_revision, version)
type Row = (String, String, i64, i64, i64);

fn row(key: &str, value: &str, create: i64, modified: i64, version: i64) -> Row {
    (key.into(), value.into(), create, modified, version)
}

fn rows(kvs: &[KeyValue]) -> Vec<Row> {
    kvs.iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
                kv.create_revision,
                kv.mod_revision,
                kv.version,
            )
        })
        .collect()
}

/// One write transaction putting `key`; returns its revision.
fn put(mvcc: &Mvcc, key: &str, value: &str) -> i64 {
    let mut guard = mvcc.write();
    let rev = guard
        .txn()
        .put(key.as_bytes(), value.as_bytes().to_vec(), 0);
    guard.commit().unwrap();
    rev
}

/// One write transaction deleting `key`; returns (deleted, revision).
fn delete(mvcc: &Mvcc, key: &str) -> (i64, i64) {
    let mut guard = mvcc.write();
    let deleted = guard.txn().delete_range(key.as_bytes(), RangeEnd::Single);
    guard.commit().unwrap();
    deleted
}

fn compact(mvcc: &Mvcc, rev: i64) -> Result<(), EtcdError> {
    let mut guard = mvcc.write();
    let compacted = guard.compact(rev);
    guard.commit().unwrap();
    compacted
}

/// Every key at `rev` (0: the current revision).
fn all_at(mvcc: &Mvcc, rev: i64) -> Result<Vec<Row>, EtcdError> {
    let opts = RangeOptions {
        rev,
        ..RangeOptions::default()
    };
    let result = mvcc.read_view().range(b"\0", RangeEnd::Unbounded, opts)?;
    assert_eq!(
        result.count,
        result.kvs.len(),
        "no limit: every key fetched"
    );
    Ok(rows(&result.kvs))
}

/// etcd's compaction test layout (tests/kv_compact.rs): a1@2, b1@3, a2@4, c1@5, b deleted
/// @6, a3@7, d1@8.
fn with_history() -> Store {
    let store = open();
    let m = &store.mvcc;
    assert_eq!(put(m, "a", "a1"), 2);
    assert_eq!(put(m, "b", "b1"), 3);
    assert_eq!(put(m, "a", "a2"), 4);
    assert_eq!(put(m, "c", "c1"), 5);
    assert_eq!(delete(m, "b"), (1, 6));
    assert_eq!(put(m, "a", "a3"), 7);
    assert_eq!(put(m, "d", "d1"), 8);
    store
}

/// The main revisions the `kv` column family holds, in order.
fn revisions_on_disk(storage: &Storage) -> Vec<i64> {
    storage
        .kv()
        .iter()
        .map(|item| Revision::from_key(&item.unwrap().0).unwrap().0.main)
        .collect()
}

const UNLIMITED: HistoryLimit = HistoryLimit {
    max_revs: i64::MAX,
    max_bytes: usize::MAX,
};

/// (main, sub, key, deleted, mod_revision) of each change.
fn summary(changes: &[Change]) -> Vec<(i64, i64, String, bool, i64)> {
    changes
        .iter()
        .map(|c| {
            (
                c.rev.main,
                c.rev.sub,
                String::from_utf8_lossy(&c.kv.key).into_owned(),
                c.deleted,
                c.kv.mod_revision,
            )
        })
        .collect()
}

#[test]
fn a_fresh_store_is_at_revision_one_never_compacted_and_empty() {
    let store = open();
    assert_eq!(store.mvcc.current_rev(), 1);
    assert_eq!(store.mvcc.compact_rev(), -1);
    let view = store.mvcc.read_view();
    assert_eq!(view.rev(), 1);
    let all = view
        .range(b"\0", RangeEnd::Unbounded, RangeOptions::default())
        .unwrap();
    assert_eq!((all.kvs.len(), all.count, all.rev), (0, 0, 1));
    let at_two = RangeOptions {
        rev: 2,
        ..RangeOptions::default()
    };
    assert_eq!(
        view.range(b"k", RangeEnd::Single, at_two).unwrap_err(),
        EtcdError::FutureRev
    );
}

#[test]
fn each_put_makes_one_revision_and_tracks_create_mod_and_version() {
    let store = open();
    let m = &store.mvcc;
    assert_eq!(put(m, "a", "1"), 2);
    assert_eq!(put(m, "a", "2"), 3);
    assert_eq!(put(m, "b", "x"), 4);
    // The same value again is still a change: new revision, new version.
    assert_eq!(put(m, "a", "2"), 5);
    assert_eq!(m.current_rev(), 5);
    assert_eq!(
        all_at(m, 0).unwrap(),
        vec![row("a", "2", 2, 5, 3), row("b", "x", 4, 4, 1)]
    );
    // What commit reports is the pair as stored.
    let mut guard = m.write();
    guard.txn().put(b"b", b"y".to_vec(), 42);
    let committed = guard.commit().unwrap();
    assert_eq!(committed.rev, 6);
    assert_eq!(committed.changes.len(), 1);
    let change = &committed.changes[0];
    assert_eq!((change.rev, change.deleted), (Revision::new(6, 0), false));
    assert_eq!(rows(&[change.kv.clone()]), vec![row("b", "y", 4, 6, 2)]);
    assert_eq!(change.kv.lease, 42);
}

#[test]
fn a_deleted_key_stays_readable_in_history_and_a_recreated_key_starts_a_new_life() {
    let store = open();
    let m = &store.mvcc;
    put(m, "k", "v1");
    put(m, "k", "v2");
    assert_eq!(delete(m, "k"), (1, 4));
    assert_eq!(all_at(m, 3).unwrap(), vec![row("k", "v2", 2, 3, 2)]);
    assert_eq!(all_at(m, 4).unwrap(), vec![]);
    assert_eq!(all_at(m, 0).unwrap(), vec![]);
    // Deleting it again deletes nothing and makes no revision.
    assert_eq!(delete(m, "k"), (0, 4));
    assert_eq!(put(m, "k", "v3"), 5);
    assert_eq!(all_at(m, 0).unwrap(), vec![row("k", "v3", 5, 5, 1)]);
    assert_eq!(all_at(m, 2).unwrap(), vec![row("k", "v1", 2, 2, 1)]);
}

#[test]
fn a_write_transaction_with_several_changes_makes_one_revision_with_sub_revisions() {
    let store = open();
    let m = &store.mvcc;
    put(m, "c", "c1");
    let mut guard = m.write();
    {
        let mut txn = guard.txn();
        assert_eq!(txn.put(b"a", b"1".to_vec(), 0), 3);
        assert_eq!(txn.put(b"b", b"2".to_vec(), 0), 3);
        assert_eq!(txn.delete_range(b"c", RangeEnd::Single), (1, 3));
    }
    let committed = guard.commit().unwrap();
    assert_eq!(committed.rev, 3);
    assert_eq!(
        summary(&committed.changes),
        vec![
            (3, 0, "a".into(), false, 3),
            (3, 1, "b".into(), false, 3),
            (3, 2, "c".into(), true, 3),
        ]
    );
    // A delete is reported as etcd does: the key and the revision of the delete, no more.
    assert_eq!(
        committed.changes[2].kv,
        KeyValue {
            key: b"c".to_vec(),
            mod_revision: 3,
            ..KeyValue::default()
        }
    );
    assert_eq!(m.current_rev(), 3);
    assert_eq!(
        all_at(m, 0).unwrap(),
        vec![row("a", "1", 3, 3, 1), row("b", "2", 3, 3, 1)]
    );
    assert_eq!(all_at(m, 2).unwrap(), vec![row("c", "c1", 2, 2, 1)]);
}

#[test]
fn a_delete_of_nothing_makes_no_revision_unless_the_transaction_already_wrote() {
    let store = open();
    let m = &store.mvcc;
    put(m, "a", "1");
    let mut guard = m.write();
    assert_eq!(
        guard.txn().delete_range(b"missing", RangeEnd::Single),
        (0, 2)
    );
    assert_eq!(guard.txn().delete_range(b"b", RangeEnd::Unbounded), (0, 2));
    // A transaction that does nothing at all makes no revision either.
    drop(guard.txn());
    let committed = guard.commit().unwrap();
    assert_eq!((committed.rev, committed.changes.len()), (2, 0));
    assert_eq!(m.current_rev(), 2);
    // etcd: after a write in the same transaction, a delete of nothing answers the
    // transaction's new revision.
    let mut guard = m.write();
    {
        let mut txn = guard.txn();
        txn.put(b"b", b"2".to_vec(), 0);
        assert_eq!(txn.delete_range(b"missing", RangeEnd::Single), (0, 3));
    }
    assert_eq!(guard.commit().unwrap().rev, 3);
    assert_eq!(put(m, "c", "3"), 4);
}

#[test]
fn several_transactions_in_one_batch_each_get_their_own_revision() {
    let store = open();
    let m = &store.mvcc;
    let mut guard = m.write();
    assert_eq!(guard.txn().put(b"a", b"1".to_vec(), 0), 2);
    assert_eq!(guard.current_rev(), 2);
    assert_eq!(guard.txn().put(b"a", b"2".to_vec(), 0), 3);
    assert_eq!(guard.txn().delete_range(b"zzz", RangeEnd::Single), (0, 3));
    assert_eq!(guard.txn().delete_range(b"a", RangeEnd::Single), (1, 4));
    let committed = guard.commit().unwrap();
    assert_eq!(committed.rev, 4);
    assert_eq!(
        summary(&committed.changes),
        vec![
            (2, 0, "a".into(), false, 2),
            (3, 0, "a".into(), false, 3),
            (4, 0, "a".into(), true, 4),
        ]
    );
    assert_eq!(all_at(m, 3).unwrap(), vec![row("a", "2", 2, 3, 2)]);
    assert_eq!(all_at(m, 4).unwrap(), vec![]);
}

#[test]
fn reads_inside_a_transaction_see_its_own_uncommitted_changes() {
    let store = open();
    let m = &store.mvcc;
    put(m, "k", "v1");
    put(m, "o", "o1");
    let mut guard = m.write();
    {
        let mut txn = guard.txn();
        let before = txn
            .range(b"k", RangeEnd::Single, RangeOptions::default())
            .unwrap();
        assert_eq!(
            (rows(&before.kvs), before.rev),
            (vec![row("k", "v1", 2, 2, 1)], 3)
        );
        txn.put(b"k", b"v2".to_vec(), 0);
        let after = txn
            .range(b"k", RangeEnd::Single, RangeOptions::default())
            .unwrap();
        assert_eq!(
            (rows(&after.kvs), after.rev),
            (vec![row("k", "v2", 2, 4, 2)], 4)
        );
        // The committed revision is still there to read.
        let old = RangeOptions {
            rev: 3,
            ..RangeOptions::default()
        };
        let at_three = txn.range(b"k", RangeEnd::Single, old).unwrap();
        assert_eq!(rows(&at_three.kvs), vec![row("k", "v1", 2, 2, 1)]);
        txn.delete_range(b"o", RangeEnd::Single);
        let gone = txn
            .range(b"o", RangeEnd::Single, RangeOptions::default())
            .unwrap();
        assert_eq!((gone.kvs.len(), gone.count), (0, 0));
    }
    // The next transaction of the batch reads the first one's values, still uncommitted.
    {
        let txn = guard.txn();
        let all = txn
            .range(b"\0", RangeEnd::Unbounded, RangeOptions::default())
            .unwrap();
        assert_eq!(
            (rows(&all.kvs), all.rev),
            (vec![row("k", "v2", 2, 4, 2)], 4)
        );
    }
    guard.commit().unwrap();
    assert_eq!(all_at(m, 0).unwrap(), vec![row("k", "v2", 2, 4, 2)]);
}

#[test]
fn a_read_view_keeps_its_revision_while_later_writes_commit() {
    let store = open();
    let m = &store.mvcc;
    put(m, "k", "v1");
    let view = m.read_view();
    put(m, "k", "v2");
    put(m, "n", "new");
    delete(m, "k");
    let seen = view
        .range(b"\0", RangeEnd::Unbounded, RangeOptions::default())
        .unwrap();
    assert_eq!(
        (rows(&seen.kvs), seen.rev),
        (vec![row("k", "v1", 2, 2, 1)], 2)
    );
    // The view's revision is its latest: later ones are in its future.
    let later = RangeOptions {
        rev: 3,
        ..RangeOptions::default()
    };
    assert_eq!(
        view.range(b"k", RangeEnd::Single, later).unwrap_err(),
        EtcdError::FutureRev
    );
    assert_eq!(m.read_view().rev(), 5);
    assert_eq!(all_at(m, 0).unwrap(), vec![row("n", "new", 4, 4, 1)]);
}

#[test]
fn ranges_honour_the_end_bound_the_limit_and_count_only() {
    let store = open();
    let m = &store.mvcc;
    for key in ["a", "b", "c", "d"] {
        put(m, key, key);
    }
    let view = m.read_view();
    fn keys_of(
        view: &ReadView<'_>,
        key: &[u8],
        end: RangeEnd<'_>,
        opts: RangeOptions,
    ) -> (Vec<String>, usize) {
        let r = view.range(key, end, opts).unwrap();
        let keys = rows(&r.kvs).into_iter().map(|row| row.0).collect();
        (keys, r.count)
    }
    let keys = |key: &[u8], end, opts| keys_of(&view, key, end, opts);
    let all = RangeOptions::default();
    assert_eq!(keys(b"b", RangeEnd::Single, all), (vec!["b".into()], 1));
    assert_eq!(keys(b"bb", RangeEnd::Single, all), (vec![], 0));
    assert_eq!(
        keys(b"a", RangeEnd::Before(b"c"), all),
        (vec!["a".into(), "b".into()], 2)
    );
    assert_eq!(keys(b"c", RangeEnd::Before(b"a"), all), (vec![], 0));
    assert_eq!(keys(b"c", RangeEnd::Before(b"c"), all), (vec![], 0));
    assert_eq!(
        keys(b"b", RangeEnd::Unbounded, all),
        (vec!["b".into(), "c".into(), "d".into()], 3)
    );
    // The count is of every key in range, whatever the limit.
    let limited = RangeOptions { limit: 2, ..all };
    assert_eq!(
        keys(b"\0", RangeEnd::Unbounded, limited),
        (vec!["a".into(), "b".into()], 4)
    );
    let count_only = RangeOptions {
        count_only: true,
        limit: 1,
        ..all
    };
    assert_eq!(keys(b"\0", RangeEnd::Unbounded, count_only), (vec![], 4));
}

#[test]
fn reads_at_a_revision_see_that_revision_and_refuse_future_ones() {
    let store = with_history();
    let m = &store.mvcc;
    assert_eq!(all_at(m, 1).unwrap(), vec![]);
    assert_eq!(all_at(m, 2).unwrap(), vec![row("a", "a1", 2, 2, 1)]);
    assert_eq!(
        all_at(m, 5).unwrap(),
        vec![
            row("a", "a2", 2, 4, 2),
            row("b", "b1", 3, 3, 1),
            row("c", "c1", 5, 5, 1)
        ]
    );
    assert_eq!(
        all_at(m, 6).unwrap(),
        vec![row("a", "a2", 2, 4, 2), row("c", "c1", 5, 5, 1)]
    );
    let latest = vec![
        row("a", "a3", 2, 7, 3),
        row("c", "c1", 5, 5, 1),
        row("d", "d1", 8, 8, 1),
    ];
    // 0 and below read the current revision, as in etcd.
    assert_eq!(all_at(m, 0).unwrap(), latest);
    assert_eq!(all_at(m, -4).unwrap(), latest);
    assert_eq!(all_at(m, 8).unwrap(), latest);
    assert_eq!(all_at(m, 9).unwrap_err(), EtcdError::FutureRev);
    // A read of the past answers the store's revision, not the one read.
    let opts = RangeOptions {
        rev: 3,
        ..RangeOptions::default()
    };
    assert_eq!(
        m.read_view()
            .range(b"b", RangeEnd::Single, opts)
            .unwrap()
            .rev,
        8
    );
}

#[test]
fn compaction_refuses_future_and_already_compacted_revisions_without_a_new_revision() {
    let store = with_history();
    let m = &store.mvcc;
    assert_eq!(compact(m, 9), Err(EtcdError::FutureRev));
    assert_eq!(m.compact_rev(), -1);
    assert_eq!(compact(m, 5), Ok(()));
    assert_eq!((m.compact_rev(), m.current_rev()), (5, 8));
    assert_eq!(compact(m, 5), Err(EtcdError::Compacted));
    assert_eq!(compact(m, 3), Err(EtcdError::Compacted));
    assert_eq!(compact(m, 8), Ok(()));
    assert_eq!((m.compact_rev(), m.current_rev()), (8, 8));
    assert_eq!(put(m, "e", "e1"), 9);

    // etcd's compacted revision starts at -1: compacting 0 succeeds once.
    let fresh = open();
    assert_eq!(compact(&fresh.mvcc, 0), Ok(()));
    assert_eq!(compact(&fresh.mvcc, 0), Err(EtcdError::Compacted));
    assert_eq!(compact(&fresh.mvcc, -3), Err(EtcdError::Compacted));
    assert_eq!(fresh.mvcc.current_rev(), 1);
}

#[test]
fn compaction_keeps_the_compacted_revision_readable_and_drops_keys_deleted_before_it() {
    let store = with_history();
    let m = &store.mvcc;
    compact(m, 5).unwrap();
    for rev in [1, 2, 4] {
        assert_eq!(
            all_at(m, rev).unwrap_err(),
            EtcdError::Compacted,
            "at {rev}"
        );
    }
    assert_eq!(
        all_at(m, 5).unwrap(),
        vec![
            row("a", "a2", 2, 4, 2),
            row("b", "b1", 3, 3, 1),
            row("c", "c1", 5, 5, 1)
        ]
    );
    compact(m, 7).unwrap();
    // b was deleted at 6: it exists at no readable revision any more.
    assert_eq!(
        all_at(m, 7).unwrap(),
        vec![row("a", "a3", 2, 7, 3), row("c", "c1", 5, 5, 1)]
    );
    // Recreated, it starts a new life.
    assert_eq!(put(m, "b", "b2"), 9);
    assert_eq!(
        all_at(m, 0).unwrap(),
        vec![
            row("a", "a3", 2, 7, 3),
            row("b", "b2", 9, 9, 1),
            row("c", "c1", 5, 5, 1),
            row("d", "d1", 8, 8, 1)
        ]
    );
}

#[tokio::test]
async fn physical_compaction_removes_exactly_the_unreachable_revisions_from_disk() {
    let store = with_history();
    let m = &store.mvcc;
    assert_eq!(revisions_on_disk(&store.storage), vec![2, 3, 4, 5, 6, 7, 8]);
    compact(m, 7).unwrap();
    tokio::time::timeout(Duration::from_secs(30), m.wait_physically_compacted(7))
        .await
        .expect("physical compaction within 30 s")
        .unwrap();
    // a1@2 and a2@4 are overwritten by 7, b (put @3, deleted @6) is gone: c@5, a@7, d@8 stay.
    assert_eq!(revisions_on_disk(&store.storage), vec![5, 7, 8]);
    assert_eq!(
        all_at(m, 7).unwrap(),
        vec![row("a", "a3", 2, 7, 3), row("c", "c1", 5, 5, 1)]
    );
}

#[tokio::test]
async fn a_compaction_larger_than_many_slices_leaves_exactly_the_reachable_revisions() {
    let store = open();
    let m = &store.mvcc;
    // 12,000 keys put twice, every third deleted, one key with 2,500 versions: more keys
    // than one slice visits and more revisions than one slice drops.
    let mut guard = m.write();
    for round in 0..2 {
        for k in 0..12_000 {
            let key = format!("k{k:05}");
            let mut txn = guard.txn();
            txn.put(key.as_bytes(), b"v".to_vec(), 0);
            if round == 1 && k % 3 == 0 {
                drop(txn);
                guard.txn().delete_range(key.as_bytes(), RangeEnd::Single);
            }
        }
    }
    for _ in 0..2_500 {
        guard.txn().put(b"hot", b"h".to_vec(), 0);
    }
    guard.commit().unwrap();
    let last = m.current_rev();
    let at = last - 10;
    compact(m, at).unwrap();
    // Writes and reads go on while the compactor works.
    put(m, "k00003", "again");
    tokio::time::timeout(Duration::from_secs(60), m.wait_physically_compacted(at))
        .await
        .expect("physical compaction within 60 s")
        .unwrap();
    // Kept: one put of each of the 8,000 keys not deleted, the 11 versions of `hot` from
    // `at` on, and the put after the compaction.
    assert_eq!(revisions_on_disk(&store.storage).len(), 8_000 + 11 + 1);
    let live = all_at(m, m.current_rev()).unwrap();
    assert_eq!(live.len(), 8_000 + 2);
    assert_eq!(m.live_keys(), 8_000 + 2);
    assert!(live.contains(&row("k00003", "again", last + 1, last + 1, 1)));
    assert!(live.contains(&row("hot", "h", last - 2_499, last, 2_500)));
}

#[tokio::test]
async fn a_stopped_compactor_lets_go_of_the_store_and_the_next_open_finishes_its_work() {
    let store = open();
    let mut guard = store.mvcc.write();
    for round in 0..3 {
        for k in 0..5_000 {
            guard
                .txn()
                .put(format!("k{k:05}").as_bytes(), vec![round], 0);
        }
    }
    guard.commit().unwrap();
    let last = store.mvcc.current_rev();
    compact(&store.mvcc, last).unwrap();
    store.mvcc.stop_compactor();
    let Store { dir, storage, mvcc } = store;
    drop(mvcc);
    assert_eq!(
        Arc::strong_count(&storage),
        1,
        "nothing else holds the storage"
    );
    let reopened = Mvcc::open(storage.clone()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        reopened.wait_physically_compacted(last),
    )
    .await
    .expect("physical compaction within 30 s")
    .unwrap();
    assert_eq!(
        revisions_on_disk(&storage).len(),
        5_000,
        "the last put of each key"
    );
    drop(dir);
}

#[test]
fn history_lists_every_change_in_revision_order_cut_at_revision_boundaries() {
    let store = open();
    let m = &store.mvcc;
    put(m, "a", "1");
    let mut guard = m.write();
    {
        let mut txn = guard.txn();
        txn.put(b"b", b"2".to_vec(), 0);
        txn.put(b"c", b"3".to_vec(), 0);
    }
    guard.commit().unwrap();
    delete(m, "a");
    put(m, "d", "4");
    let history = m.changes(2, 5, UNLIMITED).unwrap();
    assert_eq!(
        summary(&history.changes),
        vec![
            (2, 0, "a".into(), false, 2),
            (3, 0, "b".into(), false, 3),
            (3, 1, "c".into(), false, 3),
            (4, 0, "a".into(), true, 4),
            (5, 0, "d".into(), false, 5),
        ]
    );
    assert_eq!(history.last_rev, 5);
    assert_eq!(history.changes[1].kv.value, b"2");
    let middle = m.changes(3, 4, UNLIMITED).unwrap();
    assert_eq!(
        summary(&middle.changes)
            .iter()
            .map(|c| (c.0, c.1))
            .collect::<Vec<_>>(),
        vec![(3, 0), (3, 1), (4, 0)]
    );
    assert_eq!(middle.last_rev, 4);
    let two_revs = HistoryLimit {
        max_revs: 2,
        ..UNLIMITED
    };
    let cut = m.changes(2, 5, two_revs).unwrap();
    assert_eq!((cut.changes.len(), cut.last_rev), (3, 3));
    // A byte limit never splits a revision, and always lets one through.
    let one_byte = HistoryLimit {
        max_bytes: 1,
        ..UNLIMITED
    };
    let cut = m.changes(3, 5, one_byte).unwrap();
    assert_eq!(
        summary(&cut.changes)
            .iter()
            .map(|c| (c.0, c.1))
            .collect::<Vec<_>>(),
        vec![(3, 0), (3, 1)]
    );
    assert_eq!(cut.last_rev, 3);

    // Below the compacted revision, history is refused; from it, it is whole.
    compact(m, 4).unwrap();
    assert_eq!(
        m.changes(3, 5, UNLIMITED).unwrap_err(),
        HistoryError::Compacted(4)
    );
    let from_compacted = m.changes(4, 5, UNLIMITED).unwrap();
    assert_eq!(
        summary(&from_compacted.changes),
        vec![(4, 0, "a".into(), true, 4), (5, 0, "d".into(), false, 5)]
    );
}

#[test]
fn reopening_over_the_same_storage_rebuilds_revisions_index_and_compaction() {
    let store = with_history();
    compact(&store.mvcc, 5).unwrap();
    let before = all_at(&store.mvcc, 5).unwrap();
    let reopened = Mvcc::open(store.storage.clone()).unwrap();
    assert_eq!((reopened.current_rev(), reopened.compact_rev()), (8, 5));
    assert_eq!(all_at(&reopened, 5).unwrap(), before);
    assert_eq!(
        all_at(&reopened, 6).unwrap(),
        all_at(&store.mvcc, 6).unwrap()
    );
    assert_eq!(all_at(&reopened, 4).unwrap_err(), EtcdError::Compacted);
    // Versions and create revisions carry on from the rebuilt index.
    assert_eq!(put(&reopened, "a", "a4"), 9);
    assert_eq!(put(&reopened, "b", "b2"), 10);
    assert_eq!(
        all_at(&reopened, 0).unwrap(),
        vec![
            row("a", "a4", 2, 9, 4),
            row("b", "b2", 10, 10, 1),
            row("c", "c1", 5, 5, 1),
            row("d", "d1", 8, 8, 1)
        ]
    );
}

#[test]
fn replace_installs_a_snapshot_and_a_failed_rewrite_keeps_the_old_state() {
    let source = with_history();
    compact(&source.mvcc, 5).unwrap();
    let snapshot = source.dir.path().join("snapshot");
    source.storage.view().export_snapshot(&snapshot).unwrap();

    let target = open();
    put(&target.mvcc, "x", "x1");
    let failed = target
        .mvcc
        .replace(|| Err(StorageError::Io("injected".into())));
    assert!(failed.is_err());
    assert_eq!(target.mvcc.current_rev(), 2);
    assert_eq!(
        all_at(&target.mvcc, 0).unwrap(),
        vec![row("x", "x1", 2, 2, 1)]
    );

    target
        .mvcc
        .replace(|| target.storage.import_snapshot(&snapshot))
        .unwrap();
    let m = &target.mvcc;
    assert_eq!((m.current_rev(), m.compact_rev()), (8, 5));
    assert_eq!(all_at(m, 0).unwrap(), all_at(&source.mvcc, 0).unwrap());
    assert_eq!(all_at(m, 5).unwrap(), all_at(&source.mvcc, 5).unwrap());
    assert_eq!(all_at(m, 4).unwrap_err(), EtcdError::Compacted);
    // x is gone; c carries on from the snapshot's index.
    assert_eq!(put(m, "c", "c2"), 9);
    assert_eq!(
        all_at(m, 0).unwrap(),
        vec![
            row("a", "a3", 2, 7, 3),
            row("c", "c2", 5, 9, 2),
            row("d", "d1", 8, 8, 1)
        ]
    );
}

#[test]
fn a_range_chunk_stops_at_its_limit_or_byte_budget_and_says_whether_more_follow() {
    let s = open();
    for (k, v) in [("a", "1"), ("b", "22"), ("c", "333"), ("d", "4444")] {
        put(&s.mvcc, k, v);
    }
    let first = put(&s.mvcc, "e", "55555") - 1;
    put(&s.mvcc, "a", "newer");
    let view = s.mvcc.read_view();
    let keys =
        |chunk: &RangeChunk| -> Vec<String> { rows(&chunk.kvs).into_iter().map(|r| r.0).collect() };
    let all = RangeEnd::Unbounded;

    let chunk = view.range_chunk(b"a", all, 0, 2, usize::MAX).unwrap();
    assert_eq!(
        (keys(&chunk), chunk.more),
        (vec!["a".into(), "b".into()], true)
    );
    assert_eq!(rows(&chunk.kvs)[0].1, "newer");
    let chunk = view.range_chunk(b"b\0", all, 0, 10, usize::MAX).unwrap();
    assert_eq!(keys(&chunk), ["c", "d", "e"]);
    assert!(!chunk.more);
    // At the revision asked for, not the view's.
    let chunk = view.range_chunk(b"a", all, first, 10, usize::MAX).unwrap();
    assert_eq!(keys(&chunk), ["a", "b", "c", "d"]);
    assert_eq!(rows(&chunk.kvs)[0].1, "1");

    // The byte budget cuts the chunk once reached, after at least one key.
    let one = view.range_chunk(b"a", all, 0, 10, 1).unwrap();
    assert_eq!((keys(&one), one.more), (vec!["a".to_string()], true));
    let size = |k: &str| -> usize {
        let r = view.range_chunk(k.as_bytes(), RangeEnd::Single, 0, 1, usize::MAX);
        r.unwrap().kvs[0].encoded_len()
    };
    let budget = size("a") + size("b") + 1;
    let cut = view.range_chunk(b"a", all, 0, 10, budget).unwrap();
    assert_eq!(
        (keys(&cut), cut.more),
        (vec!["a".into(), "b".into(), "c".into()], true)
    );

    assert_eq!(
        view.range_chunk(b"a", all, 100, 10, usize::MAX)
            .unwrap_err(),
        EtcdError::FutureRev
    );
    drop(view);
    compact(&s.mvcc, first + 1).unwrap();
    assert_eq!(
        s.mvcc
            .read_view()
            .range_chunk(b"a", all, first, 10, usize::MAX)
            .unwrap_err(),
        EtcdError::Compacted
    );
}

#[tokio::test]
async fn hash_covers_the_replicated_records_but_not_unreachable_revisions_or_raft_records() {
    let store = with_history();
    let m = &store.mvcc;
    let before = m.hash().unwrap();
    assert_eq!(before.rev, 8);
    put(m, "e", "e1");
    let after_put = m.hash().unwrap();
    assert_ne!(after_put.hash, before.hash);
    assert_eq!(after_put.rev, 9);

    compact(m, 7).unwrap();
    tokio::time::timeout(Duration::from_secs(30), m.wait_physically_compacted(7))
        .await
        .expect("physical compaction within 30 s")
        .unwrap();
    let compacted = m.hash().unwrap();
    assert_ne!(
        compacted.hash, after_put.hash,
        "compaction changes the state"
    );
    // A member whose physical compaction has not run yet still holds a1@2: same hash.
    let a1 = KeyValue {
        key: b"a".to_vec(),
        value: b"a1".to_vec(),
        create_revision: 2,
        mod_revision: 2,
        version: 1,
        lease: 0,
    };
    let mut batch = WriteBatch::default();
    let kv = store.storage.kv();
    kv.put(
        &mut batch,
        &Revision::new(2, 0).to_key(false),
        &a1.encode_to_vec(),
    );
    // Raft's records differ between members at the same state.
    let meta = store.storage.meta();
    meta.put(&mut batch, MetaKey::Applied, b"elsewhere in the log");
    store.storage.write(batch, false).unwrap();
    assert_eq!(revisions_on_disk(&store.storage), vec![2, 5, 7, 8, 9]);
    assert_eq!(m.hash().unwrap().hash, compacted.hash);

    // Leases are part of the state, as users and roles are.
    let mut batch = WriteBatch::default();
    store.storage.lease().put(&mut batch, b"L-a-lease", b"60");
    store.storage.write(batch, false).unwrap();
    assert_ne!(m.hash().unwrap().hash, compacted.hash);
}
