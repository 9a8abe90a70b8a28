//! Backup, restore and migration: Maintenance.Snapshot writes an etcd snapshot (a bbolt
//! file in etcd's layout, then its sha256), which etcd's own tools read and real etcd
//! restores and serves.
//!
//! Uses etcd 3.4's `etcdctl` and `etcd` (`/usr/bin`, Debian's packages, installed by the
//! test command) and, when built (`compat/etcd37/build`), etcd 3.7's `etcdutl` and `etcd`.
//! The snapshot tests pass against etcd too (`CAIRN_TEST_SERVER_BIN`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::TestServer;

const ETCD34: &str = "/usr/bin/etcd";
const ETCDCTL34: &str = "/usr/bin/etcdctl";

fn etcd37_bin(name: &str) -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat/.work/etcd37/bin")
        .join(name);
    bin.exists().then_some(bin)
}

/// Runs a command; panics with its output unless it succeeds. Answers its stdout.
fn run(bin: &Path, args: &[&str]) -> String {
    let out = Command::new(bin)
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap_or_else(|e| panic!("run {bin:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{bin:?} {args:?} failed: {}\n{stdout}\n{stderr}",
        out.status
    );
    stdout + &stderr
}

/// `etcdctl snapshot save`, checked as etcdctl reports it.
fn save_snapshot(endpoint: &str, file: &Path) {
    let file_str = file.to_str().unwrap();
    let out = run(
        Path::new(ETCDCTL34),
        &["--endpoints", endpoint, "snapshot", "save", file_str],
    );
    assert!(
        out.contains(&format!("Snapshot saved at {file_str}")),
        "{out}"
    );
}

fn snapshot_status(file: &Path) -> serde_json::Value {
    let out = run(
        Path::new(ETCDCTL34),
        &["snapshot", "status", "-w", "json", file.to_str().unwrap()],
    );
    serde_json::from_str(out.lines().next().unwrap()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test]
async fn a_snapshot_is_read_by_etcdctl_and_restored_and_served_by_etcd() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let written = common::history::write(&mut c).await;
    let rev = written.revision;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    save_snapshot(&server.endpoint(), &file);

    let status = snapshot_status(&file);
    assert_eq!(status["revision"], rev, "{status}");
    assert!(status["totalKey"].as_i64().unwrap() >= 10, "{status}");
    assert_eq!(
        status["totalSize"].as_u64().unwrap(),
        std::fs::metadata(&file).unwrap().len() - 32,
        "{status}"
    );

    // etcd 3.4 (etcdctl) restores the snapshot and serves it; so does etcd 3.7 (etcdutl),
    // when built.
    restore_with_etcd(
        Path::new(ETCDCTL34),
        Path::new(ETCD34),
        "restored",
        &file,
        &written,
    )
    .await;
    let (Some(etcdutl), Some(etcd37)) = (etcd37_bin("etcdutl"), etcd37_bin("etcd")) else {
        eprintln!("etcd 3.7 not built (compat/etcd37/build): its restore is not checked");
        return;
    };
    restore_with_etcd(&etcdutl, &etcd37, "restored37", &file, &written).await;
}

/// `tool snapshot restore` of `file` into a new member `name` of `etcd`, which must then
/// serve `written`.
async fn restore_with_etcd(
    tool: &Path,
    etcd: &Path,
    name: &str,
    file: &Path,
    written: &common::history::Written,
) {
    let mut server = TestServer::prepare_with_bin(etcd, name, &[]);
    run(
        tool,
        &[
            "snapshot",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            server.data_dir().to_str().unwrap(),
            "--name",
            name,
            "--initial-cluster",
            &format!("{name}={}", server.peer_url()),
            "--initial-advertise-peer-urls",
            &server.peer_url(),
        ],
    );
    server.start_prepared();
    common::history::check(&mut server.client().await, written).await;
}

/// Reads a snapshot's `key` bucket: the revisions it holds, in order.
fn snapshot_revisions(file: &Path) -> Vec<i64> {
    let db = cairn::bbolt::Reader::open(file).unwrap();
    db.entries(b"key")
        .unwrap()
        .map(|e| {
            let key = e.unwrap().key;
            i64::from_be_bytes(key[..8].try_into().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_taken_under_writes_is_one_point_in_time() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let mut writer = c.clone();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let writes = tokio::spawn(async move {
        let mut revisions = Vec::new();
        for i in 0.. {
            if stop_rx.try_recv().is_ok() {
                break;
            }
            let put = writer.put(format!("k{i:06}"), vec![b'v'; 512], None).await;
            revisions.push(put.unwrap().header().unwrap().revision());
        }
        revisions
    });
    // Writes are under way before and during the snapshot.
    while c.get("k000100", None).await.unwrap().kvs().is_empty() {
        tokio::task::yield_now().await;
    }
    let before = c.get("k", None).await.unwrap().header().unwrap().revision();
    let mut stream = c.snapshot().await.unwrap();
    let mut bytes = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        bytes.extend_from_slice(message.blob());
    }
    let after = c.get("k", None).await.unwrap().header().unwrap().revision();
    let _ = stop_tx.send(());
    let acknowledged = writes.await.unwrap();
    assert!(acknowledged.len() > 100);

    let (db, sha) = bytes.split_at(bytes.len() - 32);
    let digest = ring_sha256(db);
    assert_eq!(sha, digest, "the last message is the sha256 of the others");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    std::fs::write(&file, db).unwrap();
    // Every revision from the first write to the snapshot's last, and none missing: a
    // prefix of the history, taken at one point between the two reads.
    let revisions = snapshot_revisions(&file);
    let last = *revisions.last().unwrap();
    assert!(
        (before..=after).contains(&last),
        "snapshot at {last}, taken between {before} and {after}"
    );
    assert_eq!(revisions, (2..=last).collect::<Vec<_>>());
}

/// At most four snapshots are written at once (each holds a view of the store and a thread
/// for as long as its client reads): a fifth is refused with etcd's `too many requests`,
/// and one more is taken once a client gives up. Cairn only: etcd has no such limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_four_snapshots_are_written_at_once() {
    if !against_cairn() {
        return;
    }
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    // 16 MiB: more than a stream's messages in flight and its transport's buffers, so a
    // client that reads nothing holds its snapshot open.
    for i in 0..256 {
        c.put(format!("k{i:03}"), vec![b'v'; 64 << 10], None)
            .await
            .unwrap();
    }
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut client = server.client().await;
        let stream = client.snapshot().await.expect("one of the first four");
        open.push((client, stream));
    }
    let refused = server.client().await.snapshot().await.map(|_| ());
    let (code, message) = common::grpc_error(refused);
    assert_eq!(
        (code, message.as_str()),
        (
            common::Code::ResourceExhausted,
            "etcdserver: too many requests"
        )
    );

    // A client that goes away frees its room: a new snapshot is taken then, and whole.
    drop(open.pop());
    let mut stream = loop {
        match server.client().await.snapshot().await {
            Ok(stream) => break stream,
            Err(e) => {
                let (code, _) = common::grpc_error::<()>(Err(e));
                assert_eq!(code, common::Code::ResourceExhausted);
                tokio::task::yield_now().await;
            }
        }
    };
    let mut bytes = 0;
    while let Some(message) = stream.message().await.unwrap() {
        bytes += message.blob().len();
    }
    assert!(bytes > 16 << 20, "{bytes} bytes");
}

fn ring_sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// The server binary's `snapshot` command (Cairn's, whatever server is under test).
/// Whether the server under test is Cairn; says so when a Cairn-only test is skipped.
fn against_cairn() -> bool {
    let cairn = common::server_bin() == cairn_bin();
    if !cairn {
        eprintln!("runs against Cairn only");
    }
    cairn
}

fn cairn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn"))
}

/// `cairn snapshot restore`: its exit status and output.
fn cairn_restore(args: &[&str]) -> (bool, String) {
    let out = Command::new(cairn_bin())
        .arg("snapshot")
        .arg("restore")
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Restores `file` for member `name` of the cluster `initial_cluster` into `data_dir`.
fn restore_for(
    file: &Path,
    data_dir: &Path,
    name: &str,
    peer_url: &str,
    initial_cluster: &str,
    token: &str,
) {
    let (ok, out) = cairn_restore(&[
        file.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--name",
        name,
        "--initial-cluster",
        initial_cluster,
        "--initial-cluster-token",
        token,
        "--initial-advertise-peer-urls",
        peer_url,
    ]);
    assert!(ok, "restore failed: {out}");
    assert!(out.contains("added member"), "{out}");
}

#[tokio::test]
async fn cairn_restores_a_snapshot_from_itself_or_etcd_and_serves_it() {
    // The snapshot comes from the server under test: Cairn, or etcd 3.4 / 3.7.
    let source = TestServer::start(&[]);
    let mut c = source.client().await;
    let written = common::history::write(&mut c).await;
    let rev = written.revision;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    save_snapshot(&source.endpoint(), &file);
    drop(source);

    let mut restored = TestServer::prepare_with_bin(&cairn_bin(), "restored", &[]);
    let peer = restored.peer_url();
    restore_for(
        &file,
        &restored.data_dir(),
        "restored",
        &peer,
        &format!("restored={peer}"),
        "etcd-cluster",
    );
    restored.start_prepared();
    let mut c = restored.client().await;
    common::history::check(&mut c, &written).await;
    // The restored member is a new cluster that takes writes after the old history.
    let next = c.put("after", "restore", None).await.unwrap();
    assert_eq!(next.header().unwrap().revision(), rev + 1);
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members().len(), 1);
    assert_eq!(members.members()[0].name(), "restored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_restored_from_one_snapshot_form_a_cluster_with_its_data() {
    // The cluster harness runs the server under test; Cairn's restore is for Cairn.
    if !against_cairn() {
        return;
    }
    let source = TestServer::start(&[]);
    let mut c = source.client().await;
    let written = common::history::write(&mut c).await;
    let rev = written.revision;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.db");
    save_snapshot(&source.endpoint(), &file);
    drop(source);

    let mut cluster = common::cluster::TestCluster::prepare_stopped(3, &[]);
    let all = cluster.initial_cluster_of(&[0, 1, 2]);
    let token = cluster.token().to_string();
    for i in 0..3 {
        restore_for(
            &file,
            &cluster.data_dir(i),
            cluster.name(i),
            &cluster.peer_url(i),
            &all,
            &token,
        );
    }
    cluster.start_prepared();
    cluster
        .wait_for_leader(std::time::Duration::from_secs(20))
        .await;
    for i in 0..3 {
        let mut c = cluster.member_client(i).await;
        common::history::check(&mut c, &written).await;
    }
    let mut c = cluster.member_client(2).await;
    let put = c.put("after", "restore", None).await.unwrap();
    assert_eq!(put.header().unwrap().revision(), rev + 1);
}

#[test]
fn a_damaged_or_unhashed_snapshot_is_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bbolt/etcd34.snap");
    let mut bytes = std::fs::read(fixture).unwrap();
    let data_dir = dir.path().join("out.etcd");
    let restore = |file: &Path, extra: &[&str]| {
        let mut args = vec![
            file.to_str().unwrap(),
            "--data-dir",
            data_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        cairn_restore(&args)
    };

    // A flipped byte: the hash check refuses it (etcd's words).
    let damaged = dir.path().join("damaged.db");
    bytes[5000] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    let (ok, out) = restore(&damaged, &[]);
    assert!(!ok && out.contains("Error: expected sha256 ["), "{out}");
    assert!(!data_dir.exists(), "nothing written");

    // Without the hash: refused unless told to skip the check.
    let unhashed = dir.path().join("unhashed.db");
    std::fs::write(&unhashed, &bytes[..bytes.len() - 32]).unwrap();
    let (ok, out) = restore(&unhashed, &[]);
    assert!(
        !ok && out.contains("Error: snapshot missing hash but --skip-hash-check=false"),
        "{out}"
    );

    // Truncated inside its pages, hash check skipped: the file itself is refused.
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..20_000]).unwrap();
    let (ok, out) = restore(&truncated, &["--skip-hash-check"]);
    assert!(
        !ok && out.contains("snapshot file integrity check failed"),
        "{out}"
    );
    assert!(!data_dir.exists(), "nothing written");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("restoring"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // An existing, non-empty data directory is never overwritten.
    std::fs::create_dir_all(data_dir.join("member")).unwrap();
    bytes[5000] ^= 0xff;
    let good = dir.path().join("good.db");
    std::fs::write(&good, &bytes).unwrap();
    let (ok, out) = restore(&good, &[]);
    assert!(
        !ok && out.contains("not empty or could not be read"),
        "{out}"
    );
}

#[test]
fn snapshot_status_answers_as_etcdutl() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bbolt/etcd37.snap");
    let out = Command::new(cairn_bin())
        .args([
            "snapshot",
            "status",
            "-w",
            "json",
            fixture.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // What etcd 3.7.3's etcdutl answers for the same file.
    assert_eq!(
        status,
        serde_json::json!({"hash": 147424902, "revision": 26, "totalKey": 4,
            "totalSize": 57344, "version": "3.7.0"})
    );
    let simple = Command::new(cairn_bin())
        .args(["snapshot", "status", fixture.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&simple.stdout),
        "8c98686, 26, 4, 57 kB, 3.7.0\n"
    );
}
