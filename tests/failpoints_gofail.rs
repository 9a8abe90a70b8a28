//! The failpoint endpoint as etcd's robustness suite drives it (`src/failpoints.rs`):
//! etcd's gofail names and actions, and an endpoint that answers while a `sleep` failpoint
//! stalls the server. Needs a Cairn built with `--features failpoints`.

#![cfg(feature = "failpoints")]

mod common;

use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use etcd_client::WatchOptions;

/// The suite gives the endpoint one second to answer; a `sleep("3s")` hit on every watch
/// response must not hold it up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gofail_sleep_on_watch_responses_can_be_turned_off_in_time() {
    let cluster = TestCluster::start_with_failpoints(1, &[]);
    let mut client = cluster.client().await;
    let mut watches = Vec::new();
    for _ in 0..8 {
        let stream = client
            .watch("k", Some(WatchOptions::new().with_prefix()))
            .await
            .unwrap();
        watches.push(stream);
    }
    // etcd's name and gofail's action syntax, as the suite sends them.
    cluster.set_failpoint(0, "beforeSendWatchResponse", r#"sleep("3s")"#);
    for i in 0..4 {
        client.put(format!("k{i}"), "v", None).await.unwrap();
    }
    // Let the watch responses reach the failpoint.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    cluster.clear_failpoint(0, "beforeSendWatchResponse");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "turning the failpoint off took {:?}",
        started.elapsed()
    );
    drop(watches);
}
