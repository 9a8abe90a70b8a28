//! The space quota and alarms: `--quota-backend-bytes`, the NOSPACE alarm it raises, what
//! a raised NOSPACE or CORRUPT alarm refuses, and Maintenance.Alarm's answers.
//!
//! Pass against Cairn and etcd 3.4 (`CAIRN_TEST_SERVER_BIN=/usr/bin/etcd`) and etcd 3.7;
//! where 3.4 and 3.7 differ (raising an alarm of type NONE), the test follows 3.7, as
//! Cairn does, and checks 3.4's answer when run against it.

mod common;

use common::cluster::TestCluster;
use common::{assert_grpc_error, Code, TestServer};
use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, Client, CompactionOptions, Compare, CompareOp,
    DeleteOptions, PutOptions, Txn, TxnOp,
};
use std::time::Duration;

const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";
const CORRUPT: &str = "etcdserver: corrupt cluster";
/// etcd's own test's quota: 13 pages of bbolt.
const SMALL_QUOTA_BYTES: &str = "53248";
/// Enough 4 KiB puts to pass `SMALL_QUOTA_BYTES` many times over.
const MAX_FILLING_PUTS: usize = 400;

async fn alarms(c: &mut Client) -> Vec<(u64, AlarmType)> {
    let response = c
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    response
        .alarms()
        .iter()
        .map(|a| (a.member_id(), a.alarm()))
        .collect()
}

async fn change_alarm(
    c: &mut Client,
    action: AlarmAction,
    alarm: AlarmType,
    member_id: u64,
) -> Vec<(u64, AlarmType)> {
    let mut options = AlarmOptions::new();
    options.with_member(member_id);
    let response = c.alarm(action, alarm, Some(options)).await.unwrap();
    response
        .alarms()
        .iter()
        .map(|a| (a.member_id(), a.alarm()))
        .collect()
}

async fn member_id(c: &mut Client) -> u64 {
    c.status().await.unwrap().header().unwrap().member_id()
}

/// Puts 4 KiB values under one key until the quota refuses one; answers how many passed.
async fn fill_until_refused(c: &mut Client) -> usize {
    let value = vec![b'b'; 4096];
    for i in 0..MAX_FILLING_PUTS {
        match c.put("filler", value.clone(), None).await {
            Ok(_) => continue,
            Err(e) => {
                assert_grpc_error(Err::<(), _>(e), Code::ResourceExhausted, NO_SPACE);
                return i;
            }
        }
    }
    panic!("{MAX_FILLING_PUTS} puts of 4 KiB passed a quota of {SMALL_QUOTA_BYTES} bytes");
}

#[tokio::test]
async fn passing_the_quota_raises_nospace_which_refuses_only_growth_until_disarmed() {
    let server = TestServer::start(&["--quota-backend-bytes", SMALL_QUOTA_BYTES]);
    let mut c = server.client().await;
    c.put("small", vec![b'a'; 64], None).await.unwrap();
    let lease = c.lease_grant(60, None).await.unwrap().id();
    assert!(fill_until_refused(&mut c).await > 0, "the first puts fit");
    let me = member_id(&mut c).await;
    assert_eq!(alarms(&mut c).await, vec![(me, AlarmType::Nospace)]);

    // What could grow the store is refused, however small.
    assert_grpc_error(
        c.put("tiny", "x", None).await,
        Code::ResourceExhausted,
        NO_SPACE,
    );
    assert_grpc_error(
        c.lease_grant(60, None).await,
        Code::ResourceExhausted,
        NO_SPACE,
    );
    let put_txn = Txn::new()
        .when([Compare::version("small", CompareOp::Greater, 0)])
        .and_then([TxnOp::get("small", None)])
        .or_else([TxnOp::put("tiny", "x", None)]);
    assert_grpc_error(c.txn(put_txn).await, Code::ResourceExhausted, NO_SPACE);
    let status = c.status().await.unwrap();
    assert!(
        status.db_size() as u64 > SMALL_QUOTA_BYTES.parse::<u64>().unwrap() - 4096,
        "dbSize {} is near the quota",
        status.db_size()
    );

    // Reads, deletes, txns without puts, lease revokes and compaction still work.
    let got = c.get("small", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), &[b'a'; 64][..]);
    let delete_txn = Txn::new().and_then([TxnOp::delete("gone", None)]);
    assert!(c.txn(delete_txn).await.unwrap().succeeded());
    c.delete("small", None).await.unwrap();
    c.lease_revoke(lease).await.unwrap();
    let health = common::http::get(&server.endpoint(), "/health")
        .await
        .json();
    assert_eq!(health["health"], "false", "{health}");
    let revision = c.status().await.unwrap().header().unwrap().revision();
    c.compact(revision, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    c.defragment().await.unwrap();
    assert_grpc_error(
        c.put("tiny", "x", None).await,
        Code::ResourceExhausted,
        NO_SPACE,
    );

    // Disarmed after making space: writes pass again.
    let cleared = change_alarm(&mut c, AlarmAction::Deactivate, AlarmType::Nospace, me).await;
    assert_eq!(cleared, vec![(me, AlarmType::Nospace)]);
    assert!(alarms(&mut c).await.is_empty());
    c.put("after", vec![b'a'; 64], None).await.unwrap();
    c.lease_grant(60, None).await.unwrap();
    let health = common::http::get(&server.endpoint(), "/health")
        .await
        .json();
    assert_eq!(health["health"], "true", "{health}");
}

#[tokio::test]
async fn a_raised_alarm_survives_a_restart() {
    let mut server = TestServer::start(&[]);
    let mut c = server.client().await;
    let me = member_id(&mut c).await;
    change_alarm(&mut c, AlarmAction::Activate, AlarmType::Nospace, me).await;
    assert_grpc_error(
        c.put("k", "v", None).await,
        Code::ResourceExhausted,
        NO_SPACE,
    );
    server.restart();
    let mut c = server.client().await;
    assert_eq!(alarms(&mut c).await, vec![(me, AlarmType::Nospace)]);
    assert_grpc_error(
        c.put("k", "v", None).await,
        Code::ResourceExhausted,
        NO_SPACE,
    );
}

#[tokio::test]
async fn alarm_answers_as_etcd() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let etcd_34 = common::is_etcd_34(&mut c).await;
    // Any member ID is taken, as etcd takes it.
    let other = 0x1234;
    let raised = change_alarm(&mut c, AlarmAction::Activate, AlarmType::Nospace, other).await;
    assert_eq!(raised, vec![(other, AlarmType::Nospace)]);
    let again = change_alarm(&mut c, AlarmAction::Activate, AlarmType::Nospace, other).await;
    assert_eq!(again, vec![(other, AlarmType::Nospace)], "raised once");
    let none = change_alarm(&mut c, AlarmAction::Activate, AlarmType::None, other).await;
    match etcd_34 {
        // etcd 3.4 records an alarm of type NONE.
        true => {
            assert_eq!(none, vec![(other, AlarmType::None)]);
            change_alarm(&mut c, AlarmAction::Deactivate, AlarmType::None, other).await;
        }
        false => assert!(none.is_empty(), "{none:?}"),
    }
    assert_eq!(alarms(&mut c).await, vec![(other, AlarmType::Nospace)]);
    let corrupt = c
        .alarm(AlarmAction::Get, AlarmType::Corrupt, None)
        .await
        .unwrap();
    assert!(corrupt.alarms().is_empty());
    let not_raised = change_alarm(&mut c, AlarmAction::Deactivate, AlarmType::Corrupt, other).await;
    assert!(not_raised.is_empty(), "{not_raised:?}");
    change_alarm(&mut c, AlarmAction::Deactivate, AlarmType::Nospace, other).await;
    assert!(alarms(&mut c).await.is_empty());
}

#[tokio::test]
async fn a_corrupt_alarm_refuses_every_write_but_serves_reads() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    c.put("k", "v", None).await.unwrap();
    let lease = c.lease_grant(60, None).await.unwrap().id();
    let me = member_id(&mut c).await;
    change_alarm(&mut c, AlarmAction::Activate, AlarmType::Corrupt, me).await;

    assert_grpc_error(c.put("k", "w", None).await, Code::DataLoss, CORRUPT);
    assert_grpc_error(c.delete("k", None).await, Code::DataLoss, CORRUPT);
    let write_txn = Txn::new().and_then([TxnOp::delete("k", Some(DeleteOptions::new()))]);
    assert_grpc_error(c.txn(write_txn).await, Code::DataLoss, CORRUPT);
    assert_grpc_error(c.lease_grant(60, None).await, Code::DataLoss, CORRUPT);
    assert_grpc_error(c.lease_revoke(lease).await, Code::DataLoss, CORRUPT);
    assert_grpc_error(c.compact(1, None).await, Code::DataLoss, CORRUPT);
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"v");
    let read_txn = Txn::new().and_then([TxnOp::get("k", None)]);
    assert!(c.txn(read_txn).await.unwrap().succeeded());
    let health = common::http::get(&server.endpoint(), "/health")
        .await
        .json();
    assert_eq!(health["health"], "false", "{health}");

    change_alarm(&mut c, AlarmAction::Deactivate, AlarmType::Corrupt, me).await;
    c.put("k", "w", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_alarm_raised_through_one_member_holds_on_all() {
    let mut cluster = TestCluster::start(3, &[]);
    cluster.wait_for_leader(Duration::from_secs(10)).await;
    let mut first = cluster.member_client(0).await;
    let id = member_id(&mut first).await;
    change_alarm(&mut first, AlarmAction::Activate, AlarmType::Nospace, id).await;
    for i in 0..cluster.len() {
        let mut c = cluster.member_client(i).await;
        assert_eq!(
            alarms(&mut c).await,
            vec![(id, AlarmType::Nospace)],
            "member {i}"
        );
        assert_grpc_error(
            c.put("k", "v", None).await,
            Code::ResourceExhausted,
            NO_SPACE,
        );
    }
    let mut last = cluster.member_client(2).await;
    change_alarm(&mut last, AlarmAction::Deactivate, AlarmType::Nospace, id).await;
    for i in 0..cluster.len() {
        let mut c = cluster.member_client(i).await;
        c.put(format!("k{i}"), "v", None).await.unwrap();
    }
}
