//! Snapshots written by etcd 3.4 and 3.7 (`tests/fixtures/bbolt`, see `tests/bbolt.rs` for
//! their history) imported into Cairn's storage, and exported back.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::bbolt::Reader;
use crate::mvcc::Mvcc;
use crate::storage::Storage;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bbolt")
        .join(name)
}

/// A store in a temporary directory. Its RocksDB stays open to the end of the process (the
/// MVCC compactor holds it): its background work is stopped when the test is done, so that
/// none runs into the process's exit (which aborts in RocksDB's static destructors).
struct Fresh {
    storage: Arc<Storage>,
    _dir: tempfile::TempDir,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        self.storage.stop_background_work();
    }
}

fn fresh_storage() -> (Fresh, Arc<Storage>) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Storage::open(&dir.path().join("db")).unwrap());
    (
        Fresh {
            storage: storage.clone(),
            _dir: dir,
        },
        storage,
    )
}

/// Every record of the families a snapshot carries, for comparing two stores.
fn records(storage: &Storage) -> Vec<(Vec<u8>, Vec<u8>)> {
    let view = storage.view();
    let mut all = Vec::new();
    for family in [view.kv(), view.lease(), view.auth()] {
        for item in family.iter() {
            let (k, v) = item.unwrap();
            all.push((k.to_vec(), v.to_vec()));
        }
    }
    all
}

fn check_fixture_store(storage: &Arc<Storage>, imported: &Imported) {
    // Revision 1 is the empty store; 25 puts and deletes made revisions 2..=26.
    assert_eq!(imported.current_rev, 26);
    assert_eq!(imported.revisions, 25);
    assert_eq!(imported.leases, 1);
    assert_eq!(imported.members.len(), 1);
    assert!(imported.consistent_index > 0);
    let mvcc = Mvcc::open(storage.clone()).unwrap();
    assert_eq!(mvcc.current_rev(), 26);
    let read = |key: &[u8], rev: i64| {
        crate::apply::range(
            &mvcc.read_view(),
            &crate::proto::etcdserverpb::RangeRequest {
                key: key.to_vec(),
                revision: rev,
                ..Default::default()
            },
        )
        .unwrap()
        .kvs
    };
    let counter = read(b"counter", 0);
    assert_eq!(
        (counter[0].version, counter[0].value.as_slice()),
        (20, &b"v20"[..])
    );
    assert_eq!(
        read(b"counter", 10)[0].value,
        b"v8",
        "history comes through"
    );
    assert!(read(b"gone", 0).is_empty(), "the delete comes through");
    assert_eq!(read(b"gone", 24)[0].value, b"soon");
    assert_eq!(read(b"big", 0)[0].value.len(), 10_000);
    let leased = &read(b"leased", 0)[0];
    let lessor = crate::lease::Lessor::open(storage.clone(), 1).unwrap();
    let status = lessor.time_to_live(leased.lease, true).expect("the lease");
    assert_eq!(
        (status.granted_secs, status.keys),
        (3600, vec![b"leased".to_vec()])
    );
}

#[test]
fn snapshots_of_etcd_34_and_37_import_with_history_and_leases() {
    for name in ["etcd34.snap", "etcd37.snap"] {
        let (_dir, storage) = fresh_storage();
        let db = Reader::open(fixture(name)).unwrap();
        let imported = import(&db, &storage, ImportOptions::default()).unwrap();
        check_fixture_store(&storage, &imported);
        if name == "etcd37.snap" {
            assert!(imported
                .cluster_version
                .as_deref()
                .unwrap()
                .starts_with("3.7"));
        }
    }
}

#[test]
fn an_export_imports_back_to_the_same_records() {
    let (_dir, storage) = fresh_storage();
    let imported = import(
        &Reader::open(fixture("etcd34.snap")).unwrap(),
        &storage,
        ImportOptions::default(),
    )
    .unwrap();
    let info = SnapshotInfo {
        consistent_index: 42,
        term: 7,
        members: imported.members.clone(),
        cluster_version: Some("3.7.0".into()),
        storage_version: None,
        physically_compacted_rev: i64::MAX,
    };
    let file = tempfile::tempfile().unwrap();
    let (summary, file) = export(&storage.view(), &info, file).unwrap();
    assert!(summary.file_size > 0);

    let db = Reader::from_file(file).unwrap();
    let (_dir2, again) = fresh_storage();
    let reimported = import(&db, &again, ImportOptions::default()).unwrap();
    assert_eq!(records(&storage), records(&again));
    assert_eq!(reimported.consistent_index, 42);
    assert_eq!(reimported.term, 7);
    assert_eq!(reimported.members, imported.members);
    assert_eq!(reimported.cluster_version.as_deref(), Some("3.7.0"));
    check_fixture_store(&again, &reimported);
}

#[test]
fn bump_and_mark_compacted_move_the_revisions() {
    let (_dir, storage) = fresh_storage();
    let options = ImportOptions {
        bump_revision: 1000,
        mark_compacted: true,
    };
    let db = Reader::open(fixture("etcd37.snap")).unwrap();
    let imported = import(&db, &storage, options).unwrap();
    assert_eq!(imported.current_rev, 1026);
    assert_eq!(imported.compact_rev, Some(1026));
    // As the store records them (opening the MVCC store would start a compaction).
    let meta = |key| {
        let bytes = storage.meta().get(key).unwrap().unwrap();
        i64::from_be_bytes(bytes.try_into().unwrap())
    };
    assert_eq!(
        (
            meta(crate::storage::MetaKey::CurrentRev),
            meta(crate::storage::MetaKey::CompactRev)
        ),
        (1026, 1026)
    );
}

#[test]
fn a_damaged_snapshot_file_is_refused_as_etcd_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let mut bytes = std::fs::read(fixture("etcd34.snap")).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let db_len = check_snapshot_file(&path, false).unwrap();
    assert_eq!(db_len as usize, bytes.len() - SHA256_LEN);
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let error = check_snapshot_file(&path, false).unwrap_err().to_string();
    assert!(error.starts_with("expected sha256 ["), "{error}");
    assert!(check_snapshot_file(&path, true).is_ok());
    std::fs::write(&path, &bytes[..bytes.len() - SHA256_LEN]).unwrap();
    assert_eq!(
        check_snapshot_file(&path, false).unwrap_err().to_string(),
        "snapshot missing hash but --skip-hash-check=false"
    );
}

/// A snapshot taken while the compactor still deletes the revisions a compaction made
/// unreachable carries them; the file then says the compaction is unfinished (finished
/// behind scheduled), so that etcd finishes it when it restores; Cairn's import keeps the
/// compacted revision.
#[test]
fn an_export_during_a_physical_compaction_says_it_is_unfinished() {
    let (_dir, storage) = fresh_storage();
    let options = ImportOptions {
        mark_compacted: true,
        ..ImportOptions::default()
    };
    let imported = import(
        &Reader::open(fixture("etcd34.snap")).unwrap(),
        &storage,
        options,
    )
    .unwrap();
    let compacted = imported.compact_rev.expect("marked compacted");
    let meta_of = |physically_compacted_rev: i64| {
        let info = SnapshotInfo {
            consistent_index: 42,
            term: 7,
            members: imported.members.clone(),
            cluster_version: None,
            storage_version: None,
            physically_compacted_rev,
        };
        let (_, file) = export(&storage.view(), &info, tempfile::tempfile().unwrap()).unwrap();
        let db = Reader::from_file(file).unwrap();
        let mut meta = std::collections::BTreeMap::new();
        db.for_each(BUCKET_META.as_bytes(), |k, v, _| {
            meta.insert(k.to_vec(), compact_rev_of(v));
            Ok(())
        })
        .unwrap();
        let (_dir, again) = fresh_storage();
        let reimported = import(&db, &again, ImportOptions::default()).unwrap();
        assert_eq!(reimported.compact_rev, Some(compacted));
        (
            meta.get(META_SCHEDULED_COMPACT).copied().flatten(),
            meta.get(META_FINISHED_COMPACT).copied().flatten(),
        )
    };
    assert_eq!(meta_of(compacted), (Some(compacted), Some(compacted)));
    assert_eq!(meta_of(i64::MAX), (Some(compacted), Some(compacted)));
    assert_eq!(meta_of(5), (Some(compacted), Some(5)));
    assert_eq!(meta_of(0), (Some(compacted), None));
}
