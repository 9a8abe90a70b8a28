//! `GET /metrics` on the client URL, as etcd's end-to-end suites read it
//! (TestV3MetricsInsecure in 3.4 and 3.7, TestNoMetricsMissing's families that Cairn has).
//! Passes against etcd 3.4 (`CAIRN_TEST_SERVER_BIN=/usr/bin/etcd`).

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use etcd_client::{Client, WatchOptions};
use tokio::time::timeout;

/// Generous for a loaded 2-core machine; nothing here measures speed.
const WAIT: Duration = Duration::from_secs(20);

async fn metrics(server: &TestServer) -> String {
    let response = common::http::get(&server.endpoint(), "/metrics").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    response.body
}

/// Reads /metrics until it holds `line` (a series moved by a client's going away is
/// counted once the server has seen the connection end), or fails with the last body.
async fn metrics_with_line(server: &TestServer, line: &str) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let body = metrics(server).await;
        if body.lines().any(|l| l == line) || Instant::now() >= deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn assert_line(body: &str, line: &str) {
    assert!(
        body.lines().any(|l| l == line),
        "no line {line:?} in /metrics:\n{body}"
    );
}

/// etcdctl's `watch k --rev 1` until the first event, then the process exits: a client of
/// its own, whose connection ends with it.
async fn watch_once_and_go_away(server: &TestServer) {
    let mut client: Client = server.client().await;
    let mut stream = client
        .watch("k", Some(WatchOptions::new().with_start_revision(1)))
        .await
        .unwrap();
    loop {
        let response = timeout(WAIT, stream.message())
            .await
            .expect("a watch response within the wait")
            .unwrap()
            .expect("the stream is open");
        if let Some(event) = response.events().first() {
            assert_eq!(event.kv().unwrap().key(), b"k");
            break;
        }
    }
}

/// etcd's TestV3MetricsInsecure: the lines it expects, after its puts, deletes and watches.
#[tokio::test]
async fn metrics_test_of_etcds_e2e_suite() {
    let server = TestServer::start(&[]);
    let mut client = server.client().await;
    client.put("k", "v", None).await.unwrap();
    // etcd's test names the version it was built with; here, the one the member reports.
    let version = client.status().await.unwrap().version().to_string();
    let cluster_version = version.rsplit_once('.').unwrap().0.to_string();
    for i in 1..=6 {
        client.put(i.to_string(), "v", None).await.unwrap();
        client.delete(i.to_string(), None).await.unwrap();
        watch_once_and_go_away(&server).await;
        let body = metrics(&server).await;
        match i {
            1 => assert_line(&body, "etcd_mvcc_put_total 2"),
            2 => assert_line(&body, "etcd_debugging_mvcc_keys_total 1"),
            3 => assert_line(&body, "etcd_mvcc_delete_total 3"),
            4 => assert_line(
                &body,
                &format!("etcd_server_version{{server_version=\"{version}\"}} 1"),
            ),
            5 => assert_line(
                &body,
                &format!("etcd_cluster_version{{cluster_version=\"{cluster_version}\"}} 1"),
            ),
            _ => {
                let line = "grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 6";
                assert_line(&metrics_with_line(&server, line).await, line);
            }
        }
    }
}

#[tokio::test]
async fn a_fresh_member_shows_etcds_families_and_counts_what_it_serves() {
    let server = TestServer::start(&[]);
    let mut client = server.client().await;
    for i in 0..3 {
        client
            .put(format!("key_{i}"), format!("value_{i}"), None)
            .await
            .unwrap();
    }
    client.get("k", None).await.unwrap();
    let body = metrics(&server).await;
    for family in [
        "etcd_cluster_version",
        "etcd_debugging_mvcc_compact_revision",
        "etcd_debugging_mvcc_current_revision",
        "etcd_debugging_mvcc_events_total",
        "etcd_debugging_mvcc_keys_total",
        "etcd_debugging_mvcc_slow_watcher_total",
        "etcd_debugging_mvcc_watch_stream_total",
        "etcd_debugging_mvcc_watcher_total",
        "etcd_disk_backend_commit_duration_seconds",
        "etcd_disk_wal_fsync_duration_seconds",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "etcd_mvcc_delete_total",
        "etcd_mvcc_put_total",
        "etcd_mvcc_range_total",
        "etcd_mvcc_txn_total",
        "etcd_network_client_grpc_received_bytes_total",
        "etcd_network_client_grpc_sent_bytes_total",
        "etcd_server_has_leader",
        "etcd_server_heartbeat_send_failures_total",
        "etcd_server_id",
        "etcd_server_is_leader",
        "etcd_server_is_learner",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_failed_total",
        "etcd_server_proposals_pending",
        "etcd_server_slow_apply_total",
        "etcd_server_version",
        "grpc_server_handled_total",
        "grpc_server_msg_received_total",
        "grpc_server_msg_sent_total",
        "grpc_server_started_total",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_resident_memory_bytes",
        "process_start_time_seconds",
    ] {
        assert!(
            body.contains(&format!("\n# TYPE {family} ")),
            "no family {family}:\n{body}"
        );
    }
    for line in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_server_leader_changes_seen_total 1",
        "etcd_server_proposals_pending 0",
        "etcd_mvcc_put_total 3",
        "etcd_mvcc_range_total 1",
        "etcd_debugging_mvcc_keys_total 3",
        "etcd_debugging_mvcc_current_revision 4",
        "grpc_server_started_total{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 3",
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 3",
        "grpc_server_msg_received_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1",
        "grpc_server_msg_sent_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1",
        "grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 0",
    ] {
        assert_line(&body, line);
    }
    // Applied and committed: the same index on a lone member at rest, past the three puts.
    let index = |name: &str| -> u64 {
        let prefix = format!("{name} ");
        body.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no {name}"))
            .parse()
            .unwrap()
    };
    assert!(index("etcd_server_proposals_applied_total") >= 3);
    assert!(
        index("etcd_server_proposals_committed_total")
            >= index("etcd_server_proposals_applied_total")
    );
    assert!(!body.contains("grpc_server_handling_seconds"));
}

#[tokio::test]
async fn extensive_metrics_add_the_handling_time_histograms() {
    let server = TestServer::start(&["--metrics", "extensive"]);
    let mut client = server.client().await;
    client.put("k", "v", None).await.unwrap();
    let body = metrics(&server).await;
    assert!(body.contains("\n# TYPE grpc_server_handling_seconds histogram\n"));
    assert_line(
        &body,
        "grpc_server_handling_seconds_count{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1",
    );
}

/// The value of an unlabelled series.
fn value(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{body}"))
}

/// A watch's prev_kv reads are the watch's, not a client's transaction: etcd reads each on
/// its own, so only the client's txn moves `etcd_mvcc_txn_total`.
#[tokio::test]
async fn prev_kv_reads_of_a_watch_are_no_transaction() {
    let server = TestServer::start(&[]);
    let mut client = server.client().await;
    client.put("p/a", "1", None).await.unwrap();
    client.put("p/b", "1", None).await.unwrap();
    let mut stream = client
        .watch(
            "p/",
            Some(WatchOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    let before = value(&metrics(&server).await, "etcd_mvcc_txn_total");
    // One txn of two puts: one watch response with two events, each with its prev_kv.
    client
        .txn(etcd_client::Txn::new().and_then([
            etcd_client::TxnOp::put("p/a", "2", None),
            etcd_client::TxnOp::put("p/b", "2", None),
        ]))
        .await
        .unwrap();
    let mut events = 0;
    while events < 2 {
        let response = timeout(WAIT, stream.message())
            .await
            .expect("a watch response within the wait")
            .unwrap()
            .expect("the stream is open");
        assert!(response.events().iter().all(|e| e.prev_kv().is_some()));
        events += response.events().len();
    }
    let after = value(&metrics(&server).await, "etcd_mvcc_txn_total");
    assert_eq!(after - before, 1.0, "the client's txn, and only it");
}

/// `--listen-metrics-urls`: a URL of its own serving `/metrics`, `/health`, `/livez` and
/// `/readyz` and nothing else, while the client URL keeps serving them too. (The two probes
/// are etcd 3.6+'s; 3.4's metrics URL serves the first two.)
#[tokio::test]
async fn metrics_url_serves_metrics_and_health_alone() {
    let metrics_url = format!("http://127.0.0.1:{}", common::free_port());
    let server = TestServer::start(&["--listen-metrics-urls", &metrics_url]);
    let get = |path: &'static str| common::http::get(&metrics_url, path);

    let scraped = get("/metrics").await;
    assert_eq!(scraped.status, 200, "{}", scraped.body);
    assert_line(&scraped.body, "etcd_server_has_leader 1");
    let health = get("/health").await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, "{\"health\":\"true\",\"reason\":\"\"}")
    );
    for probe in ["/livez", "/readyz"] {
        let reply = get(probe).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (200, "ok\n"),
            "{probe}"
        );
    }
    for path in ["/version", "/v3/kv/range"] {
        let reply = get(path).await;
        assert_eq!(
            (reply.status, reply.body.as_str()),
            (404, "404 page not found\n"),
            "{path}"
        );
    }
    assert_line(&metrics(&server).await, "etcd_server_has_leader 1");
}
