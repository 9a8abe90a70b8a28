//! `HashKV` hashes the same bytes as etcd: the same history gives the same hash on both.
//! The expected values were read off etcd 3.4.23 running this same sequence.

mod common;

use common::{assert_grpc_error, Code, TestServer};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};

#[tokio::test]
async fn hash_matches_etcd_for_the_same_history() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    c.put("a", "1", None).await.unwrap(); // 2
    c.put("b", "2", None).await.unwrap(); // 3
    c.put("a", "3", None).await.unwrap(); // 4
    c.delete("b", None).await.unwrap(); // 5
    let txn = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "3")])
        .and_then([TxnOp::put("c", "4", None), TxnOp::delete("a", None)]); // 6
    c.txn(txn).await.unwrap();
    c.put("b", "5", None).await.unwrap(); // 7

    let mut m = c.maintenance_client();
    let at = |r: etcd_client::HashKvResponse| (r.hash(), r.compact_version());
    let full = at(m.hash_kv(0).await.unwrap());
    let at_4 = at(m.hash_kv(4).await.unwrap());
    println!("full={full:?} at_4={at_4:?}");
    assert_eq!(full, (EXPECTED_FULL, -1));
    assert_eq!(at_4, (EXPECTED_AT_4, -1));

    c.compact(5, None).await.unwrap();
    let after = at(m.hash_kv(0).await.unwrap());
    println!("after_compact={after:?}");
    assert_eq!(after, (EXPECTED_AFTER_COMPACT, 5));
    assert_grpc_error(
        m.hash_kv(5).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_grpc_error(
        m.hash_kv(100).await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
}

const EXPECTED_FULL: u32 = 234909186;
const EXPECTED_AT_4: u32 = 2069675932;
const EXPECTED_AFTER_COMPACT: u32 = 1835002373;
