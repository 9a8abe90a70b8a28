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
    let snap_dir = server.data_dir().join("member").join("snap");
    let snapshots: Vec<_> = std::fs::read_dir(&snap_dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "snap"))
        .collect();
    assert_eq!(
        snapshots.len(),
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
