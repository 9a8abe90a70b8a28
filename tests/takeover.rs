//! Migration from etcd in place: Cairn started on a stopped etcd member's data directory
//! serves the same data as the same member of the same cluster, and leaves etcd's files
//! unchanged. The etcd side is real etcd 3.4 (`/usr/bin/etcd`, installed by the test
//! command) and, when built (`compat/etcd37/build`), etcd 3.7.3.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::TestCluster;
use common::TestServer;
use etcd_client::{Client, CompactionOptions, GetOptions, PutOptions};

const ETCD34: &str = "/usr/bin/etcd";

fn cairn_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn"))
}

fn etcd37() -> Option<PathBuf> {
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/.work/etcd37/bin/etcd");
    bin.exists().then_some(bin)
}

/// Every file under `dir` with its contents' hash: etcd's files before and after.
fn file_hashes(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
                out.insert(path, digest.as_ref().to_vec());
            }
        }
    }
    out
}

/// A history with compaction, leases, deletions and a user; answers the lease, the
/// revision, and the member and cluster IDs.
async fn write_history(c: &mut Client) -> (i64, i64, u64, u64) {
    c.put("foo", "bar", None).await.unwrap();
    for i in 1..=20 {
        c.put("counter", format!("v{i}"), None).await.unwrap();
    }
    c.put("gone", "soon", None).await.unwrap();
    c.delete("gone", None).await.unwrap();
    let at = c.put("big", vec![b'x'; 10_000], None).await.unwrap();
    let compact_at = at.header().unwrap().revision();
    let lease = c.lease_grant(3600, None).await.unwrap().id();
    c.put(
        "leased",
        "with a lease",
        Some(PutOptions::new().with_lease(lease)),
    )
    .await
    .unwrap();
    c.compact(compact_at, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    c.user_add("alice", "secret", None).await.unwrap();
    // Many small writes after the last compaction: with a kill, some are only in the WAL.
    let mut last = None;
    for i in 0..200 {
        last = Some(
            c.put(format!("tail/{i:03}"), format!("{i}"), None)
                .await
                .unwrap(),
        );
    }
    let header = last.unwrap().header().unwrap().clone();
    (
        lease,
        header.revision(),
        header.member_id(),
        header.cluster_id(),
    )
}

async fn check_history(c: &mut Client, lease: i64, rev: i64, member_id: u64, cluster_id: u64) {
    let tail = c.get("tail/199", None).await.unwrap();
    let header = tail.header().unwrap();
    assert_eq!(header.revision(), rev, "the same revision");
    assert_eq!(header.member_id(), member_id, "the same member ID");
    assert_eq!(header.cluster_id(), cluster_id, "the same cluster ID");
    assert_eq!(tail.kvs()[0].value(), b"199");
    let all_tail = c
        .get(
            "tail/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(all_tail.count(), 200, "every acknowledged write");
    let counter = c.get("counter", None).await.unwrap();
    assert_eq!(
        (counter.kvs()[0].value(), counter.kvs()[0].version()),
        (&b"v20"[..], 20)
    );
    assert!(c.get("gone", None).await.unwrap().kvs().is_empty());
    let old = c
        .get("counter", Some(GetOptions::new().with_revision(3)))
        .await;
    assert!(old.is_err(), "revision 3 stays compacted");
    let ttl = c
        .lease_time_to_live(
            lease,
            Some(etcd_client::LeaseTimeToLiveOptions::new().with_keys()),
        )
        .await
        .unwrap();
    assert_eq!(
        (ttl.granted_ttl(), ttl.keys()),
        (3600, &[b"leased".to_vec()][..])
    );
    assert_eq!(c.user_list().await.unwrap().users(), &["alice".to_string()]);
    let next = c.put("after", "takeover", None).await.unwrap();
    assert_eq!(next.header().unwrap().revision(), rev + 1);
}

async fn take_over_one_member(etcd: &Path, kill: bool) {
    let mut server = TestServer::prepare_with_bin(etcd, "member", &[]);
    server.start_prepared();
    let mut c = server.client().await;
    let (lease, rev, member_id, cluster_id) = write_history(&mut c).await;
    drop(c);
    if kill {
        server.kill9();
    } else {
        server.stop();
    }
    let before = file_hashes(&server.data_dir().join("member"));

    server.set_bin(&cairn_bin());
    server.start_prepared();
    let mut c = server.client().await;
    check_history(&mut c, lease, rev, member_id, cluster_id).await;
    assert!(server.logs().contains("took over the etcd data directory"));
    drop(c);
    server.stop();

    // etcd's files are as etcd left them: Cairn's store is beside them.
    let mut after = file_hashes(&server.data_dir().join("member"));
    after.retain(|path, _| before.contains_key(path));
    assert_eq!(before, after);
    assert!(server.data_dir().join("member/db/CURRENT").exists());

    // A restart is a plain restart: the store is Cairn's now.
    server.start_prepared();
    let mut c = server.client().await;
    let got = c.get("after", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"takeover");
    assert!(!server
        .logs()
        .rsplit("[harness] starting")
        .next()
        .unwrap()
        .contains("taking over"));
}

#[tokio::test]
async fn cairn_takes_over_a_stopped_etcd_34_member() {
    take_over_one_member(Path::new(ETCD34), false).await;
}

#[tokio::test]
async fn cairn_takes_over_a_killed_etcd_34_member_with_writes_only_in_its_wal() {
    take_over_one_member(Path::new(ETCD34), true).await;
}

#[tokio::test]
async fn cairn_takes_over_a_stopped_etcd_37_member() {
    let Some(etcd) = etcd37() else {
        eprintln!("etcd 3.7 not built (compat/etcd37/build): not checked");
        return;
    };
    take_over_one_member(&etcd, true).await;
}

#[tokio::test]
async fn a_directory_a_running_etcd_holds_is_refused() {
    let mut etcd = TestServer::prepare_with_bin(Path::new(ETCD34), "member", &[]);
    etcd.start_prepared();
    let out = std::process::Command::new(cairn_bin())
        .args([
            "--data-dir",
            etcd.data_dir().to_str().unwrap(),
            "--listen-client-urls",
            "http://127.0.0.1:0",
            "--listen-peer-urls",
            "http://127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("locked by a running etcd; stop etcd first"),
        "{text}"
    );
    assert!(
        !etcd.data_dir().join("member/db").exists(),
        "nothing written"
    );
    // etcd is undisturbed.
    etcd.client().await.put("k", "v", None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_etcd_cluster_comes_back_as_cairn_with_its_data_and_ids() {
    let mut cluster = TestCluster::prepare_stopped(3, &[]);
    cluster.set_bin(Path::new(ETCD34));
    cluster.start_prepared();
    let mut c = cluster.client().await;
    let (lease, rev, _, cluster_id) = write_history(&mut c).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(cluster.member_id(i).await);
    }
    drop(c);
    for i in 0..3 {
        cluster.stop(i);
    }

    cluster.set_bin(&cairn_bin());
    cluster.start_prepared();
    cluster.wait_for_leader(Duration::from_secs(20)).await;
    for (i, id) in ids.iter().enumerate() {
        let mut c = cluster.member_client(i).await;
        let tail = c.get("tail/199", None).await.unwrap();
        assert_eq!(
            tail.header().unwrap().member_id(),
            *id,
            "member {i} keeps its ID"
        );
        assert_eq!(tail.header().unwrap().cluster_id(), cluster_id);
        assert!(tail.header().unwrap().revision() >= rev);
    }
    let mut c = cluster.member_client(1).await;
    let members = c.member_list().await.unwrap();
    let mut listed: Vec<u64> = members.members().iter().map(|m| m.id()).collect();
    listed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(listed, expected);
    check_history(&mut c, lease, rev, ids[1], cluster_id).await;
}
