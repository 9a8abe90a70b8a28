//! Faults of replication between members, injected with failpoints (`src/failpoints.rs`):
//! a leader whose appends to the followers fail. Needs a Cairn built with `--features
//! failpoints`; etcd 3.4's packaged build has no failpoints, so these run against Cairn
//! only. Run them one at a time (`-- --test-threads=1`): a cluster is several processes.

#![cfg(feature = "failpoints")]

mod common;

use std::time::Duration;

use common::cluster::TestCluster;
use common::{grpc_error, Code};
use etcd_client::GetOptions;
use tokio::time::timeout;

/// Deadline for a majority to agree on a leader. It bounds a hang; it is not a performance
/// assertion.
const LEADER_WAIT: Duration = Duration::from_secs(20);
/// A write whose leader lost its leadership is answered by the member's request timeout (7
/// s) at the latest.
const ANSWER_WAIT: Duration = Duration::from_secs(20);

/// The leader appends a put to its log but cannot send it (its appends to the followers
/// fail); the followers elect a new leader, whose log replaces the old leader's entry. The
/// old leader cannot know whether another member has the entry and will commit it, so the
/// client must not be told the put failed for certain (`not leader`, after which a retry
/// of a non-idempotent txn could apply it twice): the outcome is unknown, reported as etcd
/// reports it, `request timed out`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_whose_entry_a_new_leader_replaced_is_reported_as_unknown() {
    let mut c = TestCluster::start_with_failpoints(3, &[]);
    let old = c.wait_for_leader(LEADER_WAIT).await;
    let majority = c.followers(old);

    c.set_failpoint(old, "raft_before_send_append", "return");
    let mut oc = c.member_client(old).await;
    let result = timeout(ANSWER_WAIT, oc.put("unknown", "v", None))
        .await
        .expect("the put is answered by the request timeout");
    let (code, message) = grpc_error(result);
    eprintln!("put on the cut-off leader: {code:?} {message:?}");
    assert_eq!(
        (code, message.as_str()),
        (Code::Unavailable, "etcdserver: request timed out"),
        "a write whose outcome is unknown"
    );

    let new = c.wait_for_leader_among(&majority, LEADER_WAIT).await;
    assert_ne!(new, old);
    c.clear_failpoint(old, "raft_before_send_append");
    // Here the entry was in fact lost: the new leader never had it.
    let got = c
        .client_of(&majority)
        .await
        .get("unknown", Some(GetOptions::new()))
        .await
        .expect("get");
    assert!(got.kvs().is_empty());
}
