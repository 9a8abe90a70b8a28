//! Compaction semantics, checked against etcd 3.4.

mod common;

use common::{assert_grpc_error, current_revision, rev, Code, TestServer};
use etcd_client::{Client, CompactionOptions, GetOptions, GetResponse};

const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE: &str = "etcdserver: mvcc: required revision is a future revision";

/// a=a1 (2), b=b1 (3), a=a2 (4), c=c1 (5), delete b (6), a=a3 (7), d=d1 (8).
async fn with_history() -> (TestServer, Client) {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    c.put("a", "a1", None).await.unwrap();
    c.put("b", "b1", None).await.unwrap();
    c.put("a", "a2", None).await.unwrap();
    c.put("c", "c1", None).await.unwrap();
    c.delete("b", None).await.unwrap();
    c.put("a", "a3", None).await.unwrap();
    c.put("d", "d1", None).await.unwrap();
    assert_eq!(current_revision(&mut c).await, 8);
    (server, c)
}

fn summary(resp: &GetResponse) -> Vec<(String, String, i64, i64, i64)> {
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
            )
        })
        .collect()
}

async fn all_at(c: &mut Client, revision: i64) -> Result<GetResponse, etcd_client::Error> {
    c.get(
        "",
        Some(GetOptions::new().with_all_keys().with_revision(revision)),
    )
    .await
}

fn row(k: &str, v: &str, create: i64, m: i64, ver: i64) -> (String, String, i64, i64, i64) {
    (k.to_string(), v.to_string(), create, m, ver)
}

#[tokio::test]
async fn compact_returns_current_revision_and_does_not_bump_it() {
    let (_s, mut c) = with_history().await;
    let resp = c.compact(5, None).await.unwrap();
    assert_eq!(rev(resp.header()), 8);
    assert_eq!(current_revision(&mut c).await, 8);
    let resp = c.put("e", "e1", None).await.unwrap();
    assert_eq!(rev(resp.header()), 9);
}

#[tokio::test]
async fn compact_then_reading_older_revision_fails() {
    let (_s, mut c) = with_history().await;
    c.compact(5, None).await.unwrap();
    for r in [1, 2, 4] {
        assert_grpc_error(all_at(&mut c, r).await, Code::OutOfRange, COMPACTED);
    }
    let r = c.get("a", Some(GetOptions::new().with_revision(3))).await;
    assert_grpc_error(r, Code::OutOfRange, COMPACTED);
}

#[tokio::test]
async fn compact_keeps_the_compacted_revision_readable() {
    let (_s, mut c) = with_history().await;
    c.compact(5, None).await.unwrap();
    let resp = all_at(&mut c, 5).await.unwrap();
    assert_eq!(
        summary(&resp),
        vec![
            row("a", "a2", 2, 4, 2),
            row("b", "b1", 3, 3, 1),
            row("c", "c1", 5, 5, 1),
        ]
    );
    let resp = all_at(&mut c, 6).await.unwrap();
    assert_eq!(
        summary(&resp),
        vec![row("a", "a2", 2, 4, 2), row("c", "c1", 5, 5, 1)]
    );
}

#[tokio::test]
async fn compact_keeps_latest_values_and_their_metadata() {
    let (_s, mut c) = with_history().await;
    c.compact(8, None).await.unwrap();
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(
        summary(&resp),
        vec![
            row("a", "a3", 2, 7, 3),
            row("c", "c1", 5, 5, 1),
            row("d", "d1", 8, 8, 1),
        ]
    );
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn compact_removes_key_deleted_before_compact_revision() {
    let (_s, mut c) = with_history().await;
    c.compact(7, None).await.unwrap();
    // b was deleted at 6: it exists at no readable revision.
    for r in [7, 8] {
        let resp = c
            .get("b", Some(GetOptions::new().with_revision(r)))
            .await
            .unwrap();
        assert!(resp.kvs().is_empty(), "b visible at {r}");
    }
    let resp = c.get("b", None).await.unwrap();
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 0);
    // Re-creating it starts a new life.
    c.put("b", "b2", None).await.unwrap(); // 9
    let resp = c.get("b", None).await.unwrap();
    assert_eq!(summary(&resp), vec![row("b", "b2", 9, 9, 1)]);
}

#[tokio::test]
async fn compact_at_current_revision_works() {
    let (_s, mut c) = with_history().await;
    c.compact(8, None).await.unwrap();
    assert_grpc_error(all_at(&mut c, 7).await, Code::OutOfRange, COMPACTED);
    let resp = all_at(&mut c, 8).await.unwrap();
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn compact_to_future_revision_fails() {
    let (_s, mut c) = with_history().await;
    let r = c.compact(9, None).await;
    assert_grpc_error(r, Code::OutOfRange, FUTURE);
    let r = c.compact(1000, None).await;
    assert_grpc_error(r, Code::OutOfRange, FUTURE);
    // Nothing was compacted.
    let resp = all_at(&mut c, 2).await.unwrap();
    assert_eq!(summary(&resp), vec![row("a", "a1", 2, 2, 1)]);
}

#[tokio::test]
async fn compact_twice_at_same_revision_fails() {
    let (_s, mut c) = with_history().await;
    c.compact(5, None).await.unwrap();
    let r = c.compact(5, None).await;
    assert_grpc_error(r, Code::OutOfRange, COMPACTED);
}

#[tokio::test]
async fn compact_to_older_revision_than_previous_compaction_fails() {
    let (_s, mut c) = with_history().await;
    c.compact(5, None).await.unwrap();
    let r = c.compact(3, None).await;
    assert_grpc_error(r, Code::OutOfRange, COMPACTED);
    // Moving forward is fine.
    c.compact(6, None).await.unwrap();
    assert_grpc_error(all_at(&mut c, 5).await, Code::OutOfRange, COMPACTED);
}

#[tokio::test]
async fn physical_compaction_succeeds() {
    let (_s, mut c) = with_history().await;
    let resp = c
        .compact(6, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    assert_eq!(rev(resp.header()), 8);
    assert_grpc_error(all_at(&mut c, 5).await, Code::OutOfRange, COMPACTED);
    let resp = all_at(&mut c, 6).await.unwrap();
    assert_eq!(
        summary(&resp),
        vec![row("a", "a2", 2, 4, 2), row("c", "c1", 5, 5, 1)]
    );
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn compaction_does_not_affect_writes_or_compares_on_surviving_keys() {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let (_s, mut c) = with_history().await;
    c.compact(8, None).await.unwrap();
    let resp = c
        .txn(
            Txn::new()
                .when(vec![
                    Compare::mod_revision("a", CompareOp::Equal, 7),
                    Compare::create_revision("a", CompareOp::Equal, 2),
                    Compare::version("a", CompareOp::Equal, 3),
                ])
                .and_then(vec![TxnOp::put("a", "a4", None)]),
        )
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(rev(resp.header()), 9);
    let resp = c.get("a", None).await.unwrap();
    assert_eq!(summary(&resp), vec![row("a", "a4", 2, 9, 4)]);
}

#[tokio::test]
async fn compact_zero_succeeds_once_then_is_compacted() {
    // Before any compaction etcd's compacted revision is -1, so revision 0 is accepted once.
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    c.put("a", "1", None).await.unwrap();
    c.compact(0, None).await.unwrap();
    assert_grpc_error(c.compact(0, None).await, Code::OutOfRange, COMPACTED);
    assert_grpc_error(c.compact(-3, None).await, Code::OutOfRange, COMPACTED);
    let got = c
        .get("a", Some(GetOptions::new().with_revision(1)))
        .await
        .unwrap();
    assert!(got.kvs().is_empty());
}

/// A Range of the latest revision, and a read-only txn, over which a compaction lands: the
/// compaction (of a revision written after the read took its view of the store) passes the
/// view's revision mid-read. The read must still succeed, as with etcd, where a compaction
/// waits for the reads in progress: the client asked for nothing compacted. A failpoint
/// holds the read between taking its view and reading it, so Cairn only.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_landing_mid_read_does_not_fail_a_read_of_the_latest_revision() {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp};
    let c = common::cluster::TestCluster::start_with_failpoints(1, &[]);
    let mut client = c.client().await;
    client.put("k", "v1", None).await.unwrap();
    for read_only_txn in [false, true] {
        // Only the next read pauses; everything else goes through.
        c.set_failpoint(0, "kv_read_after_view", "1*sleep(1500)");
        let mut reader = client.clone();
        let read = tokio::spawn(async move {
            if read_only_txn {
                let txn = Txn::new()
                    .when([Compare::version("k", CompareOp::Greater, 0)])
                    .and_then([TxnOp::get("k", None)]);
                reader.txn(txn).await.map(|_| ())
            } else {
                reader.get("k", None).await.map(|_| ())
            }
        });
        // While the read pauses, a newer revision is written and compacted.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let put = client.put("k", "v2", None).await.unwrap();
        client
            .compact(rev(put.header()), Some(CompactionOptions::new()))
            .await
            .unwrap();
        let result = read.await.unwrap();
        assert!(
            result.is_ok(),
            "read-only txn {read_only_txn}: a read of the latest revision failed: {result:?}"
        );
    }
}

/// A physical compaction whose deletes fail (a failed disk write; the deletion is retried
/// at the next start) is answered `request timed out` as soon as it fails, instead of
/// keeping its client waiting for ever (a healthy one is waited for however long it
/// takes, as etcd does). Cairn only (failpoints).
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn physical_compaction_whose_deletes_fail_is_answered_in_bounded_time() {
    let c = common::cluster::TestCluster::start_with_failpoints(1, &[]);
    let mut client = c.client().await;
    client.put("k", "v1", None).await.unwrap();
    let put = client.put("k", "v2", None).await.unwrap();
    c.set_failpoint(0, "mvcc_compaction_before_delete", "return");
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        client.compact(
            rev(put.header()),
            Some(CompactionOptions::new().with_physical()),
        ),
    )
    .await
    .expect("a physical compaction is answered within the request timeout");
    assert_grpc_error(answer, Code::Unavailable, "etcdserver: request timed out");
}
