//! Raft log compaction: with a small `--snapshot-count`, snapshots are taken and the log is
//! purged behind them, and a restart still finds every key at its revision.

mod common;

use common::TestServer;

#[tokio::test]
async fn snapshots_and_log_purge_keep_every_write_across_restart() {
    let mut server = TestServer::start(&["--snapshot-count", "10"]);
    let mut client = server.client().await;
    let mut last_revision = 0;
    for i in 0..120 {
        let resp = client
            .put(format!("k{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
        last_revision = resp.header().unwrap().revision();
    }
    client.delete("k000", None).await.unwrap();
    // A snapshot taken just now is published before the one it replaces is removed: for a
    // moment there are two. Older ones must be gone soon after.
    let snap_dir = server.data_dir().join("member").join("snap");
    let count_snapshots = || {
        std::fs::read_dir(&snap_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count_snapshots() > 1 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        count_snapshots(),
        1,
        "one current snapshot in {}",
        snap_dir.display()
    );

    drop(client);
    server.restart();
    let mut client = server.client().await;
    let all = client
        .get("k", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(all.count(), 119);
    assert_eq!(all.header().unwrap().revision(), last_revision + 1);
    let got = client.get("k119", None).await.unwrap();
    let k119 = &got.kvs()[0];
    assert_eq!(k119.value(), b"v119");
    assert_eq!(k119.mod_revision(), last_revision);
    let next = client.put("after", "restart", None).await.unwrap();
    assert_eq!(next.header().unwrap().revision(), last_revision + 2);
}

/// `--snapshot-count` counts applied requests, as etcd's does, however many of them share a
/// Raft entry: 300 concurrent puts, which share a few entries, are past a count of 100 and
/// get a snapshot.
#[tokio::test]
async fn snapshot_count_counts_requests_not_raft_entries() {
    use futures::StreamExt;
    if common::server_bin().ends_with("etcd") {
        // etcd writes its snapshots elsewhere (member/snap/*.snap after --snapshot-count
        // requests too, but only once past its own minimum of entries).
        return;
    }
    let server = TestServer::start(&["--snapshot-count", "100"]);
    let client = server.client().await;
    futures::stream::iter(0..300)
        .map(|i| {
            let mut c = client.clone();
            async move { c.put(format!("c{i:03}"), "v", None).await.unwrap() }
        })
        .buffer_unordered(300)
        .collect::<Vec<_>>()
        .await;
    let snap_dir = server.data_dir().join("member").join("snap");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let snapshots = std::fs::read_dir(&snap_dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
            .count();
        if snapshots > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot in {} after 300 requests with --snapshot-count 100",
            snap_dir.display()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
