//! A member's disk really full: its data directory on a small tmpfs of the test's own
//! (`tests/common/tmpfs.rs`), filled by the member's own writes and by a filler file next
//! to it, so that writes fail with ENOSPC as on a full disk. The member must refuse writes
//! with a clear error, lose nothing it acknowledged, keep serving reads, recover when the
//! space returns, and never exit in a loop or corrupt anything.
//!
//! Needs root to mount the tmpfs (CI runs as root); elsewhere each test prints why and
//! passes without running. Cairn only: etcd has no such behaviour to compare with. Run
//! them one at a time (`-- --test-threads=1`): a cluster is several processes.

mod common;

use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use common::{grpc_error, Code, TestServer};
use etcd_client::{Client, GetOptions};

/// The size of a member's own filesystem: room for RocksDB's files and the reserve Cairn
/// keeps free (64 MiB), and little enough to fill in a moment.
const DISK_BYTES: u64 = 160 << 20;
/// The free space Cairn keeps for what must still be written when it refuses writes.
const RESERVE_BYTES: u64 = 64 << 20;
/// Each value: large, so that a few hundred writes fill the space left.
const VALUE_BYTES: usize = 64 << 10;
/// Deadline for writes to pass again once space returns: RocksDB looks for free space
/// every 5 s after a full disk stopped its writes.
const RECOVERY_WAIT: Duration = Duration::from_secs(30);

fn value(i: usize) -> Vec<u8> {
    let mut v = format!("value {i} ").into_bytes();
    v.resize(VALUE_BYTES, b'a' + (i % 26) as u8);
    v
}

/// Puts `key/{i}` from `from` on until a put fails or `to` is reached: the indexes
/// acknowledged, and the error that ended it.
async fn put_until_refused(
    c: &mut Client,
    from: usize,
    to: usize,
) -> (Vec<usize>, Option<etcd_client::Error>) {
    let mut acked = Vec::new();
    for i in from..to {
        match c.put(format!("key/{i:05}"), value(i), None).await {
            Ok(_) => acked.push(i),
            Err(e) => return (acked, Some(e)),
        }
    }
    (acked, None)
}

/// Every acknowledged key holds its value, read linearizably (or serializably), one key at
/// a time (all of them are more than a client takes in one answer).
async fn assert_all_readable(c: &mut Client, acked: &[usize], serializable: bool) {
    for &i in acked {
        let key = format!("key/{i:05}");
        let options = serializable.then(|| GetOptions::new().with_serializable());
        let response = c
            .get(key.as_str(), options)
            .await
            .unwrap_or_else(|e| panic!("read {key}: {e}"));
        match response.kvs().first() {
            Some(kv) => assert!(kv.value() == value(i), "{key} holds another value"),
            None => panic!("acknowledged {key} is gone"),
        }
    }
}

fn assert_disk_full_error(e: etcd_client::Error) {
    let (code, message) = grpc_error::<()>(Err(e));
    assert_eq!(code, Code::ResourceExhausted, "error {message:?}");
    assert!(
        message.contains("disk"),
        "the error says it is the disk: {message:?}"
    );
}

/// A member whose disk is full still sends a snapshot (a backup is what an operator takes
/// first): the file goes straight to the client, nothing of it to the member's disk. Its
/// bytes hash to the sha256 sent after them and hold every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_on_a_full_disk_still_sends_a_snapshot() {
    let Some(mut s) = TestServer::start_on_tmpfs(DISK_BYTES, &[]) else {
        return;
    };
    let mut c = s.client().await;
    // About 19 MiB of values, more than the filesystem will have free.
    let (acked, refused) = put_until_refused(&mut c, 0, 300).await;
    assert!(refused.is_none(), "{refused:?}");
    s.disk().fill_leaving(1 << 20);
    eprintln!("{} bytes free", s.disk().free_bytes());

    let mut stream = c.snapshot().await.expect("a snapshot starts");
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await.expect("the snapshot is sent whole") {
        messages.push(message.blob().to_vec());
    }
    let sha = messages.pop().expect("a hash after the file");
    let file: Vec<u8> = messages.concat();
    let digest = ring::digest::digest(&ring::digest::SHA256, &file);
    assert_eq!(sha, digest.as_ref(), "the sha256 of the bytes sent");
    assert!(file.len() > 19 << 20, "{} bytes", file.len());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backup.db");
    std::fs::write(&path, &file).unwrap();
    let db = cairn::bbolt::Reader::open(&path).unwrap();
    let revisions = db.entries(b"key").unwrap().map(|e| e.unwrap()).count();
    assert_eq!(revisions, acked.len(), "one revision per acknowledged put");
    assert!(!s.has_exited(), "the member exited:\n{}", s.logs());
}

/// A single member fills its own disk: it refuses writes with a clear error, keeps every
/// acknowledged write and its reads, takes writes again when the space returns, and a
/// restart on a full disk fails once, clearly, without damage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_on_a_full_disk_refuses_writes_keeps_its_data_and_recovers() {
    let Some(mut s) = TestServer::start_on_tmpfs(DISK_BYTES, &[]) else {
        return;
    };
    let mut c = s.client().await;

    // Its own writes take it below the reserve: refused, with a clear error.
    s.disk().fill_leaving(RESERVE_BYTES + (16 << 20));
    let (mut acked, refused) = put_until_refused(&mut c, 0, 2000).await;
    eprintln!(
        "{} writes acknowledged, {} bytes free",
        acked.len(),
        s.disk().free_bytes()
    );
    assert!(!s.has_exited(), "the member exited:\n{}", s.logs());
    assert_disk_full_error(refused.expect("a write is refused before the disk is full"));
    assert!(!acked.is_empty(), "writes passed before the disk filled");
    assert_all_readable(&mut c, &acked, false).await;

    // Not a byte left: still refused, still up, every acknowledged write still read.
    s.disk().fill_leaving(0);
    let e = c
        .put("key/late", "x", None)
        .await
        .expect_err("a write on a full disk");
    assert_disk_full_error(e);
    assert_all_readable(&mut c, &acked, false).await;
    assert!(!s.has_exited(), "the member exited:\n{}", s.logs());

    // The space returns: writes pass again, without a restart. The filler goes, and the disk
    // grows by the reserve, as when an operator adds space: the member itself went below
    // the reserve before it refused (by up to one write and what RocksDB wrote meanwhile),
    // and how much of that RocksDB frees again is its own business.
    s.disk().free_filler();
    s.disk().grow_by(RESERVE_BYTES);
    let deadline = Instant::now() + RECOVERY_WAIT;
    let next = acked.last().unwrap() + 1;
    loop {
        match c.put(format!("key/{next:05}"), value(next), None).await {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "writes still fail {RECOVERY_WAIT:?} after the space returned: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    acked.push(next);
    assert_all_readable(&mut c, &acked, false).await;

    // A restart on a disk without a byte free fails once, with a clear message (RocksDB
    // writes as it opens), and loses nothing. The stop may free what RocksDB had set aside
    // for its log: the disk is filled again after it.
    s.stop();
    s.disk().fill_leaving(0);
    let status = s.restart_expecting_exit();
    assert!(!status.success(), "exit status {status}");
    let logs = s.logs();
    let last_run = &logs[logs.rfind("[harness] starting").unwrap()..];
    assert!(
        last_run.contains("no space left on the disk of the data directory"),
        "the member says why it cannot start:\n{last_run}"
    );

    // Below the reserve but not quite full, it starts: reads served, writes refused.
    s.disk().free_filler();
    s.disk().fill_leaving(RESERVE_BYTES / 2);
    s.restart();
    let mut c = s.client().await;
    assert_all_readable(&mut c, &acked, false).await;
    let e = c
        .put("key/late", "x", None)
        .await
        .expect_err("a write below the reserve");
    assert_disk_full_error(e);

    // With the space back, writes pass, and everything acknowledged is there.
    s.disk().free_filler();
    let deadline = Instant::now() + RECOVERY_WAIT;
    while let Err(e) = c.put("key/after-restart", "x", None).await {
        assert!(
            Instant::now() < deadline,
            "writes still fail {RECOVERY_WAIT:?} after the space returned: {e}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_all_readable(&mut c, &acked, false).await;
}

/// One member of three fills its disk while the others take writes: the two go on, the
/// full one neither exits nor stops answering reads, and it catches up once the space
/// returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_whose_disk_fills_stalls_and_catches_up_when_space_returns() {
    const FULL: usize = 2;
    let Some(mut cluster) = TestCluster::start_with_tmpfs(3, &[], FULL, DISK_BYTES) else {
        return;
    };
    let others = [0, 1];
    let mut c = cluster.client_of(&others).await;
    let mut full = cluster.member_client(FULL).await;

    cluster.disk(FULL).fill_leaving(0);
    // More than RocksDB's write-ahead log has room for in what it set aside beforehand.
    const WRITES: usize = 600;
    let mut acked = Vec::new();
    for i in 0..WRITES {
        // A leader on the full disk stalls; the others elect another and go on.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match c.put(format!("key/{i:05}"), value(i), None).await {
                Ok(_) => break,
                Err(e) => assert!(Instant::now() < deadline, "put {i}: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        acked.push(i);
    }
    assert!(
        cluster.wait_exit(FULL, Duration::ZERO).is_none(),
        "the member on the full disk exited:\n{}",
        cluster.logs(FULL)
    );
    // It still answers reads of what it has (its own state: serializable).
    tokio::time::timeout(
        Duration::from_secs(10),
        full.get(
            "key/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_count_only()
                    .with_serializable(),
            ),
        ),
    )
    .await
    .expect("a read on the full member answers")
    .expect("a read on the full member");
    assert!(
        cluster.logs(FULL).contains("no space left"),
        "the full member says why it waits"
    );

    cluster.disk(FULL).free_filler();
    cluster
        .wait_key_count(FULL, "key/", WRITES as i64, Duration::from_secs(60))
        .await;
    assert_all_readable(&mut full, &acked, true).await;
    assert!(cluster.wait_exit(FULL, Duration::ZERO).is_none());
}
