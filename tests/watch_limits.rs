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
