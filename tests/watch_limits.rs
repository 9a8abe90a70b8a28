//! Watch limits and periodic progress notifications.
//!
//! The limits are Cairn's own (etcd has none): their tests skip when the server under test
//! is not Cairn. The progress test holds for etcd 3.4 as well.

mod common;

use std::time::Duration;

use common::{current_revision, TestServer};
use etcd_client::{Client, WatchOptions, WatchResponse, WatchStream};
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(20);
/// Cairn's limits (see `watch::MAX_WATCHES_PER_STREAM`, `api::watch`).
const MAX_WATCHES_PER_STREAM: usize = 10_000;
const MAX_WATCH_STREAMS_PER_CONNECTION: usize = 1024;

fn testing_cairn() -> bool {
    !common::server_bin().ends_with("etcd")
}

async fn next(ws: &mut WatchStream) -> WatchResponse {
    match timeout(WAIT, ws.message()).await {
        Ok(Ok(Some(r))) => r,
        other => panic!("no watch response: {other:?}"),
    }
}

async fn fresh(args: &[&str]) -> (TestServer, Client) {
    let server = TestServer::start(args);
    let client = server.client().await;
    (server, client)
}

#[tokio::test]
async fn periodic_progress_reaches_an_idle_watch_with_the_current_revision() {
    let (_s, mut c) = fresh(&["--experimental-watch-progress-notify-interval=200ms"]).await;
    let mut ws = c
        .watch("watched", Some(WatchOptions::new().with_progress_notify()))
        .await
        .unwrap();
    let created = next(&mut ws).await;
    assert!(created.created());
    // A write the watch does not cover moves the revision; progress must report it.
    c.put("elsewhere", "v", None).await.unwrap();
    let rev = current_revision(&mut c).await;
    loop {
        let r = next(&mut ws).await;
        assert_eq!(r.watch_id(), created.watch_id(), "{r:?}");
        assert!(r.events().is_empty() && !r.canceled(), "{r:?}");
        let header_rev = r.header().unwrap().revision();
        assert!(header_rev <= rev, "progress ahead of the store: {r:?}");
        if header_rev == rev {
            break;
        }
    }
}

#[tokio::test]
async fn a_stream_holds_a_bounded_number_of_watches() {
    if !testing_cairn() {
        return;
    }
    let (_s, mut c) = fresh(&[]).await;
    let mut ws = c.watch("k0", None).await.unwrap();
    assert!(next(&mut ws).await.created());
    for i in 1..MAX_WATCHES_PER_STREAM {
        ws.watch(format!("k{i}"), None).await.unwrap();
    }
    for _ in 1..MAX_WATCHES_PER_STREAM {
        let r = next(&mut ws).await;
        assert!(r.created() && !r.canceled(), "{r:?}");
    }
    ws.watch("one-too-many", None).await.unwrap();
    let refused = next(&mut ws).await;
    assert!(refused.created() && refused.canceled(), "{refused:?}");
    assert_eq!(refused.watch_id(), -1);
    assert_eq!(
        refused.cancel_reason(),
        format!("cairn: too many watches on one stream (at most {MAX_WATCHES_PER_STREAM})")
    );
    // The stream stays usable: a cancel frees a place.
    ws.cancel(0).await.unwrap();
    assert!(next(&mut ws).await.canceled());
    ws.watch("fits-again", None).await.unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && !r.canceled(), "{r:?}");
}

#[tokio::test]
async fn a_connection_holds_a_bounded_number_of_watch_streams() {
    if !testing_cairn() {
        return;
    }
    let (_s, mut c) = fresh(&[]).await;
    let mut open = Vec::new();
    for i in 0..MAX_WATCH_STREAMS_PER_CONNECTION {
        let mut ws = c.watch(format!("k{i}"), None).await.unwrap();
        assert!(next(&mut ws).await.created());
        open.push(ws);
    }
    let err = c.watch("one-too-many", None).await.unwrap_err();
    let etcd_client::Error::GRpcStatus(status) = err else {
        panic!("not a gRPC status: {err:?}")
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(
        status.message(),
        format!(
            "cairn: too many watch streams on one connection (at most {MAX_WATCH_STREAMS_PER_CONNECTION})"
        )
    );
    // Closing a stream gives its place back.
    drop(open.pop());
    let mut reopened = None;
    for _ in 0..100 {
        match c.watch("fits-again", None).await {
            Ok(pair) => {
                reopened = Some(pair);
                break;
            }
            // The server notices the closed stream asynchronously.
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let mut ws = reopened.expect("a closed stream's place is given back");
    assert!(next(&mut ws).await.created());
}

/// A process's resident memory, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// How much the server's memory may grow in the scenario below: the watch queues' total
/// bound (64 MiB), what the clients' flow-control windows let through (10 connections), the
/// store's own growth from 12.5 MiB of values, and slack. etcd 3.4 grew 387 MiB here.
const FAN_OUT_RSS_GROWTH_MAX_BYTES: u64 = 320 << 20;

/// Many watch streams on the whole keyspace whose clients read nothing after `created`,
/// and concurrent writers of large values whose puts share commits: what the server holds
/// for the streams stays within the watch queues' bound (the events of one commit are held
/// once, not copied per watcher, and a commit is queued only where all of it fits), so its
/// memory grows by at most a bounded amount.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_that_read_nothing_hold_bounded_memory_under_large_group_commits() {
    const CONNECTIONS: usize = 10;
    const STREAMS_PER_CONNECTION: usize = 100;
    const PUTS: usize = 200;
    const WRITERS: usize = 32;
    const VALUE_BYTES: usize = 64 << 10;
    if !testing_cairn() {
        return;
    }
    let server = TestServer::start(&[]);
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut c = server.client().await;
        for _ in 0..STREAMS_PER_CONNECTION {
            let mut stream = c
                .watch("", Some(WatchOptions::new().with_all_keys()))
                .await
                .expect("watch");
            assert!(next(&mut stream).await.created());
            held.push(stream);
        }
    }
    let before = rss_bytes(server.pid());

    let writer = server.client().await;
    let value = vec![b'v'; VALUE_BYTES];
    let mut max_growth = 0;
    use futures::StreamExt;
    let mut puts = futures::stream::iter(0..PUTS)
        .map(|i| {
            let mut w = writer.clone();
            let value = value.clone();
            async move { w.put(format!("big/{i}"), value, None).await }
        })
        .buffer_unordered(WRITERS);
    while let Some(result) = puts.next().await {
        result.expect("put");
        max_growth = max_growth.max(rss_bytes(server.pid()).saturating_sub(before));
    }
    eprintln!(
        "server RSS {} MiB before, grew at most {} MiB over {PUTS} puts",
        before >> 20,
        max_growth >> 20
    );
    assert!(
        max_growth <= FAN_OUT_RSS_GROWTH_MAX_BYTES,
        "server memory grew {} MiB (bound {} MiB)",
        max_growth >> 20,
        FAN_OUT_RSS_GROWTH_MAX_BYTES >> 20
    );
    drop(held);
}
