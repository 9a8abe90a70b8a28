//! The typed handles against raw RocksDB reads (which pin the on-disk keys), and the
//! snapshot file's format and round trip.

use super::*;

fn open() -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("db")).unwrap();
    (dir, storage)
}

fn raw(storage: &Storage, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
    storage.db().get_cf(storage.cf(cf), key).unwrap()
}

fn all(iter: impl Iterator<Item = StorageResult<Record>>) -> Vec<(Vec<u8>, Vec<u8>)> {
    iter.map(|item| {
        let (key, value) = item.unwrap();
        (key.into_vec(), value.into_vec())
    })
    .collect()
}

fn write(storage: &Storage, stage: impl FnOnce(&mut WriteBatch)) {
    let mut batch = WriteBatch::default();
    stage(&mut batch);
    storage.write(batch, false).unwrap();
}

#[test]
fn raft_log_keys_entries_by_big_endian_index() {
    let (_dir, storage) = open();
    let log = storage.raft_log();
    assert_eq!(log.last().unwrap(), None);
    write(&storage, |b| {
        for index in [1u64, 2, 3, 255, 256] {
            log.put(b, index, format!("entry {index}").as_bytes());
        }
    });
    assert_eq!(
        raw(&storage, CF_RAFT_LOG, &256u64.to_be_bytes()).as_deref(),
        Some(&b"entry 256"[..])
    );
    let from = |start| -> Vec<u64> {
        log.entries_from(start)
            .map(|item| item.unwrap().0)
            .collect()
    };
    // Numeric order, not the order of the indexes' decimal strings.
    assert_eq!(from(3), vec![3, 255, 256]);
    assert_eq!(log.last().unwrap().as_deref(), Some(&b"entry 256"[..]));

    write(&storage, |b| log.delete_from(b, 255));
    assert_eq!(from(0), vec![1, 2, 3]);
    write(&storage, |b| log.delete_through(b, 2));
    assert_eq!(from(0), vec![3]);
    assert_eq!(log.last().unwrap().as_deref(), Some(&b"entry 3"[..]));

    // A key of another length is corruption, not a wrong index.
    write(&storage, |b| {
        b.put_cf(storage.cf(CF_RAFT_LOG), b"\xff", b"")
    });
    assert!(matches!(
        log.entries_from(4).next(),
        Some(Err(StorageError::Corrupt(_)))
    ));
}

#[test]
fn raft_state_records_keep_their_names() {
    let (_dir, storage) = open();
    let state = storage.raft_state();
    let keys = [
        (StateKey::Vote, &b"vote"[..]),
        (StateKey::Committed, b"committed"),
        (StateKey::LastPurged, b"last_purged"),
        (StateKey::Identity, b"identity"),
    ];
    for (key, _) in keys {
        assert_eq!(state.get(key).unwrap(), None);
    }
    write(&storage, |b| {
        for (key, name) in keys {
            state.put(b, key, name);
        }
    });
    for (key, name) in keys {
        assert_eq!(state.get(key).unwrap().as_deref(), Some(name));
        assert_eq!(raw(&storage, CF_RAFT_STATE, name).as_deref(), Some(name));
    }
}

#[test]
fn kv_reads_writes_and_views() {
    let (_dir, storage) = open();
    let kv = storage.kv();
    write(&storage, |b| {
        for key in [&b"b"[..], b"a", b"c"] {
            kv.put(b, key, &[key, b"-value"].concat());
        }
    });
    assert_eq!(raw(&storage, CF_KV, b"a").as_deref(), Some(&b"a-value"[..]));
    assert_eq!(kv.get(b"b").unwrap().as_deref(), Some(&b"b-value"[..]));
    assert_eq!(kv.get(b"z").unwrap(), None);
    let keys = |records: Vec<(Vec<u8>, Vec<u8>)>| -> Vec<Vec<u8>> {
        records.into_iter().map(|(k, _)| k).collect()
    };
    assert_eq!(keys(all(kv.iter())), [b"a", b"b", b"c"]);
    assert_eq!(keys(all(kv.iter_from(b"b"))), [b"b", b"c"]);
    let values: Vec<_> = kv
        .multi_get([&b"c"[..], b"z", b"a"])
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        values,
        [Some(b"c-value".to_vec()), None, Some(b"a-value".to_vec())]
    );

    // A view keeps what it saw.
    let view = storage.view();
    write(&storage, |b| {
        kv.delete(b, b"a");
        kv.put(b, b"d", b"d-value");
    });
    assert_eq!(keys(all(kv.iter())), [b"b", b"c", b"d"]);
    assert_eq!(keys(all(view.kv().iter())), [b"a", b"b", b"c"]);
    assert_eq!(
        view.kv().multi_get([b"a", b"d"])[..]
            .iter()
            .map(|v| v.as_ref().unwrap().is_some())
            .collect::<Vec<_>>(),
        [true, false]
    );
    assert_eq!(view.kv().get(b"d").unwrap(), None);
    kv.compact();
    assert_eq!(keys(all(kv.iter())), [b"b", b"c", b"d"]);
}

#[test]
fn meta_records_keep_their_names_and_members_stay_apart() {
    let (_dir, storage) = open();
    let meta = storage.meta();
    let named = [
        (MetaKey::Applied, &b"applied"[..]),
        (MetaKey::Membership, b"membership"),
        (MetaKey::CurrentRev, b"current_rev"),
        (MetaKey::CompactRev, b"compact_rev"),
    ];
    write(&storage, |b| {
        for (key, name) in named {
            meta.put(b, key, name);
        }
        // Out of order: the scan is in member ID order.
        meta.put(b, MetaKey::Member(0x0102), b"second");
        meta.put(b, MetaKey::Member(7), b"first");
        meta.put(b, MetaKey::Member(u64::MAX), b"last");
    });
    for (key, name) in named {
        assert_eq!(meta.get(key).unwrap().as_deref(), Some(name));
        assert_eq!(raw(&storage, CF_META, name).as_deref(), Some(name));
    }
    let member_key = [&b"member/"[..], &0x0102u64.to_be_bytes()].concat();
    assert_eq!(
        raw(&storage, CF_META, &member_key).as_deref(),
        Some(&b"second"[..])
    );
    assert_eq!(
        meta.get(MetaKey::Member(7)).unwrap().as_deref(),
        Some(&b"first"[..])
    );
    // `membership` sorts right after the member records: the scan stops before it.
    let members: Vec<_> = meta.members().map(|v| v.unwrap().into_vec()).collect();
    assert_eq!(members, [&b"first"[..], b"second", b"last"]);
    let view = storage.view();
    write(&storage, |b| meta.put(b, MetaKey::Applied, b"later"));
    assert_eq!(
        view.meta().get(MetaKey::Applied).unwrap().as_deref(),
        Some(&b"applied"[..])
    );
}

#[test]
fn lease_records_are_written_and_listed() {
    let (_dir, storage) = open();
    let lease = storage.lease();
    write(&storage, |b| {
        lease.put(b, b"L1", b"ttl");
        lease.put(b, b"A1key", b"");
    });
    assert_eq!(raw(&storage, CF_LEASE, b"L1").as_deref(), Some(&b"ttl"[..]));
    write(&storage, |b| lease.delete(b, b"A1key"));
    assert_eq!(all(lease.iter()), [(b"L1".to_vec(), b"ttl".to_vec())]);
}

/// One record in every family, the four a snapshot carries and the two it does not.
fn fill(storage: &Storage, tag: &str) {
    let t = tag.as_bytes();
    write(storage, |b| {
        storage
            .kv()
            .put(b, &[b"k-", t].concat(), &[b"kv-", t].concat());
        storage
            .meta()
            .put(b, MetaKey::Applied, &[b"applied-", t].concat());
        storage
            .lease()
            .put(b, &[b"L-", t].concat(), &[b"lease-", t].concat());
        storage
            .auth()
            .put(b, &[b"user/", t].concat(), &[b"auth-", t].concat());
        storage
            .raft_state()
            .put(b, StateKey::Vote, &[b"vote-", t].concat());
        storage.raft_log().put(b, 1, &[b"entry-", t].concat());
    });
}

fn snapshot_families(storage: &Storage) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
    [CF_KV, CF_META, CF_LEASE, CF_AUTH]
        .iter()
        .map(|name| {
            let cf = storage.cf(name);
            all(storage
                .db()
                .iterator_cf(cf, rocksdb::IteratorMode::Start)
                .map(|item| item.map_err(StorageError::from)))
        })
        .collect()
}

/// The file's bytes are fixed: members of other versions install it.
#[test]
fn snapshot_file_format_is_fixed() {
    let (dir, storage) = open();
    write(&storage, |b| {
        storage.kv().put(b, b"kk", b"v");
        storage
            .meta()
            .put(b, MetaKey::CurrentRev, &5i64.to_be_bytes());
        storage.lease().put(b, b"L", b"");
        storage.auth().put(b, b"enabled", &[1]);
        storage.raft_state().put(b, StateKey::Vote, b"not carried");
        storage.raft_log().put(b, 1, b"not carried");
    });
    let path = dir.path().join("format.snap");
    storage.view().export_snapshot(&path).unwrap();
    let expected = [
        &[0u8, 0, 0, 0, 2][..],
        b"kk",
        &[0, 0, 0, 1],
        b"v",
        &[1, 0, 0, 0, 11],
        b"current_rev",
        &[0, 0, 0, 8],
        &5i64.to_be_bytes(),
        &[2, 0, 0, 0, 1],
        b"L",
        &[0, 0, 0, 0],
        // The auth family came later, with the next tag.
        &[3, 0, 0, 0, 7],
        b"enabled",
        &[0, 0, 0, 1, 1],
    ]
    .concat();
    assert_eq!(std::fs::read(&path).unwrap(), expected);
}

#[test]
fn snapshot_export_then_import_replaces_the_carried_families() {
    let (dir, source) = open();
    fill(&source, "source");
    let view = source.view();
    // After the view: not in the snapshot.
    write(&source, |b| source.kv().put(b, b"k-later", b"later"));
    let path = dir.path().join("round-trip.snap");
    view.export_snapshot(&path).unwrap();
    drop(view);
    write(&source, |b| source.kv().delete(b, b"k-later"));

    let (_dir, target) = open();
    fill(&target, "target");
    assert_eq!(target.interrupted_import().unwrap(), None);
    target.begin_import(&path).unwrap();
    assert_eq!(target.interrupted_import().unwrap(), Some(path.clone()));
    target.import_snapshot(&path).unwrap();
    assert_eq!(target.interrupted_import().unwrap(), None);

    assert_eq!(snapshot_families(&target), snapshot_families(&source));
    // What a snapshot does not carry is the member's own.
    assert_eq!(
        target.raft_state().get(StateKey::Vote).unwrap().as_deref(),
        Some(&b"vote-target"[..])
    );
    assert_eq!(
        target.raft_log().last().unwrap().as_deref(),
        Some(&b"entry-target"[..])
    );
    // Importing again (a redo after a crash) gives the same state.
    target.import_snapshot(&path).unwrap();
    assert_eq!(snapshot_families(&target), snapshot_families(&source));
}

#[test]
fn snapshot_import_rejects_an_unknown_family() {
    let (dir, storage) = open();
    let path = dir.path().join("bad.snap");
    std::fs::write(&path, [4u8, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    assert!(matches!(
        storage.import_snapshot(&path),
        Err(StorageError::Corrupt(_))
    ));
    // A record cut short is an error too, not a clean end.
    std::fs::write(&path, [0u8, 0, 0, 0, 2, b'k']).unwrap();
    assert!(matches!(
        storage.import_snapshot(&path),
        Err(StorageError::Io(_))
    ));
}

/// Writes 48 MiB of incompressible values into `kv` in files, then deletes them all and
/// compacts: the files they were in become obsolete. Returns the largest trash seen while
/// polling until the store's files are gone.
fn obsolete_files_and_watch_trash(storage: &Storage) -> u64 {
    let kv = storage.kv();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for chunk in 0..48 {
        write(storage, |b| {
            for i in 0..64 {
                let value: Vec<u8> = (0..16 * 1024 / 8)
                    .flat_map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed.to_le_bytes()
                    })
                    .collect();
                kv.put(b, format!("{chunk:02}-{i:02}").as_bytes(), &value);
            }
        });
    }
    storage.compact_state_machine();
    let live = |s: &Storage| s.store_size().total_bytes;
    assert!(live(storage) > 40 << 20, "{} bytes in files", live(storage));
    write(storage, |b| {
        for chunk in 0..48 {
            for i in 0..64 {
                kv.delete(b, format!("{chunk:02}-{i:02}").as_bytes());
            }
        }
    });
    storage.compact_state_machine();
    // Poll until the files on disk (live, and trash not yet deleted) are next to nothing.
    let on_disk = || -> u64 {
        std::fs::read_dir(&storage.path)
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file() && m.len() > 1 << 20)
            .map(|m| m.len())
            .sum()
    };
    let mut most_trash = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    // The trash is counted down just after each file is gone.
    while on_disk() > (1 << 20) || storage.trash_bytes() > 0 {
        most_trash = most_trash.max(storage.trash_bytes());
        assert!(
            Instant::now() < deadline,
            "obsolete files deleted within 30 s"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    most_trash
}

#[test]
fn obsolete_files_are_deleted_at_a_bounded_rate_unless_the_disk_is_short() {
    let (_dir, storage) = open();
    // At 64 MiB/s, 48 MiB in 16 MiB files wait their turn as trash (for about 0.75 s: the
    // polling sees some of it however late it starts within that).
    let slow = obsolete_files_and_watch_trash(&storage);
    assert!(slow > 0, "no trash seen");
    // Short of space: deleted at once, never kept as trash.
    let (_dir2, short) = open();
    short.slow_deletion.require_free_bytes(u64::MAX, 0);
    assert_eq!(obsolete_files_and_watch_trash(&short), 0);
}

/// Bytes of write-ahead log files in the database's directory.
fn wal_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn the_write_ahead_log_is_kept_to_its_cap_while_small_families_take_a_write_each_batch() {
    let (dir, storage) = open();
    // As the apply does: each batch carries the store's writes and the applied index.
    let value = vec![0x5a; 64 << 10];
    let mut most = 0;
    for i in 0u64..(2 * MAX_TOTAL_WAL_BYTES / (256 << 10)) {
        write(&storage, |b| {
            for j in 0..4 {
                storage.kv().put(b, &(i * 4 + j).to_be_bytes(), &value);
            }
            storage.meta().put(b, MetaKey::CurrentRev, &i.to_be_bytes());
        });
        most = most.max(wal_bytes(&dir.path().join("db")));
    }
    // Past the cap, RocksDB flushes at the next write: a kv memtable's worth more at most.
    assert!(
        most <= MAX_TOTAL_WAL_BYTES + 2 * WRITE_BUFFER_BYTES as u64,
        "{most} bytes of write-ahead log"
    );
}

#[test]
fn trash_is_capped_at_about_half_of_what_a_compaction_left_plus_one_file() {
    let (_dir, storage) = open();
    // 48 MiB become obsolete at once and nothing stays live. A file becomes trash while the
    // trash is no larger than the other files counted (here the obsolete ones not yet handed
    // over): about half of them plus one file wait, the rest are deleted at once. Without the
    // cap all 48 MiB would wait.
    let obsolete: u64 = 48 << 20;
    let most_trash = obsolete_files_and_watch_trash(&storage);
    assert!(
        most_trash <= obsolete / 2 + slow_deletion::TARGET_FILE_BYTES,
        "{most_trash} bytes of trash of {obsolete} made obsolete"
    );
}

#[test]
fn a_file_written_with_writeback_holds_what_was_written_and_sends_it_as_it_goes() {
    use std::io::{Read, Seek, Write};
    let mut file = snapshot::WritebackFile::new(tempfile::tempfile().unwrap());
    let chunk: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    for _ in 0..20 {
        file.write_all(&chunk).unwrap();
    }
    // Every full 8 MiB has been handed to the disk; the rest waits for the final fsync.
    assert_eq!(file.unsent_from, 16 << 20);
    file.flush().unwrap();
    let mut inner = file.file;
    inner.sync_all().unwrap();
    inner.rewind().unwrap();
    let mut back = Vec::new();
    inner.read_to_end(&mut back).unwrap();
    assert_eq!(back.len(), 20 << 20);
    assert!(back.chunks(1 << 20).all(|c| c == chunk.as_slice()));
}
