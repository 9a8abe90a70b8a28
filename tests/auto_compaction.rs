//! `--auto-compaction-retention` compacts on its own. Checked against etcd 3.4 too.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use etcd_client::GetOptions;

#[tokio::test]
async fn periodic_retention_compacts_old_revisions() {
    let server = TestServer::start(&["--auto-compaction-retention", "1s"]);
    let mut c = server.client().await;
    c.put("k", "v1", None).await.unwrap();
    c.put("k", "v2", None).await.unwrap();
    // Compaction happens in the background about one retention after start; nothing marks
    // it but the old revision becoming unreadable, so poll for that, with a deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let old = c.get("k", Some(GetOptions::new().with_revision(2))).await;
        match old {
            Err(etcd_client::Error::GRpcStatus(s)) => {
                assert_eq!(
                    s.message(),
                    "etcdserver: mvcc: required revision has been compacted"
                );
                break;
            }
            Ok(_) => assert!(Instant::now() < deadline, "revision 2 never compacted"),
            Err(e) => panic!("unexpected error {e}"),
        }
        // Keep writing: periodic compaction samples revisions as they move.
        c.put("k", "more", None).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let latest = c.get("k", None).await.unwrap();
    assert_eq!(latest.kvs()[0].value(), b"more");
}
