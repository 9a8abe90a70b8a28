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
use etcd_client::Client;

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

/// `history::check`, plus the IDs and the next revision.
async fn check_taken_over(c: &mut Client, written: &common::history::Written) {
    common::history::check(c, written).await;
    let header = c.get("foo", None).await.unwrap().header().unwrap().clone();
    assert_eq!(header.member_id(), written.member_id, "the same member ID");
    assert_eq!(
        header.cluster_id(),
        written.cluster_id,
        "the same cluster ID"
    );
    let next = c.put("after", "takeover", None).await.unwrap();
    assert_eq!(next.header().unwrap().revision(), written.revision + 1);
}

async fn take_over_one_member(etcd: &Path, kill: bool) {
    let mut server = TestServer::prepare_with_bin(etcd, "member", &[]);
    server.start_prepared();
    let mut c = server.client().await;
    let written = common::history::write(&mut c).await;
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
    check_taken_over(&mut c, &written).await;
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
    let written = common::history::write(&mut c).await;
    let (rev, cluster_id) = (written.revision, written.cluster_id);
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
    common::history::check(&mut c, &written).await;
}
