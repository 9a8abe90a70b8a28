//! Messages on the peer port that no leader sends must not stop a member. Found by the
//! fuzz target `peer_raft` (FUZZING.md).

mod common;

use std::time::Duration;

use cairn::proto::cairnpeerpb::peer_client::PeerClient;
use cairn::proto::cairnpeerpb::RaftMessage;
use cairn::raft::TypeConfig;
use common::TestServer;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest};
use openraft::{SnapshotMeta, StoredMembership, Vote};

async fn peer(server: &TestServer) -> PeerClient<tonic::transport::Channel> {
    PeerClient::connect(server.peer_url())
        .await
        .expect("peer port")
}

async fn assert_still_writes(server: &TestServer) {
    let mut c = server.client().await;
    let put = tokio::time::timeout(Duration::from_secs(10), c.put("after", "ok", None)).await;
    assert!(
        matches!(put, Ok(Ok(_))),
        "the member no longer writes: {put:?}\n{}",
        server.logs()
    );
}

/// openraft expects a leader's vote to be committed and stopped its core (a failed debug
/// assertion) on an append or snapshot from an uncommitted vote of a higher term.
#[tokio::test]
async fn append_and_snapshot_from_an_uncommitted_vote_are_refused() {
    let server = TestServer::start(&[]);
    assert_still_writes(&server).await;
    let mut peer = peer(&server).await;
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new(1000, 2),
        prev_log_id: None,
        entries: Vec::new(),
        leader_commit: None,
    };
    let appended = peer
        .append_entries(RaftMessage {
            payload: bincode::serialize(&append).unwrap(),
        })
        .await;
    let snapshot = InstallSnapshotRequest::<TypeConfig> {
        vote: Vote::new(1001, 2),
        meta: SnapshotMeta {
            last_log_id: None,
            last_membership: StoredMembership::default(),
            snapshot_id: "1".into(),
        },
        offset: 0,
        data: Vec::new(),
        done: true,
    };
    let installed = peer
        .install_snapshot(RaftMessage {
            payload: bincode::serialize(&snapshot).unwrap(),
        })
        .await;
    assert_still_writes(&server).await;
    assert_eq!(appended.unwrap_err().code(), tonic::Code::InvalidArgument);
    assert_eq!(installed.unwrap_err().code(), tonic::Code::InvalidArgument);
}

/// openraft expects an append's entries to follow its `prev_log_id` index by index, and
/// stopped its core (a failed debug assertion) on entries that do not.
#[tokio::test]
async fn append_of_entries_that_do_not_follow_prev_log_id_is_refused() {
    let server = TestServer::start(&[]);
    assert_still_writes(&server).await;
    let mut peer = peer(&server).await;
    let leader = openraft::CommittedLeaderId::new(1000, 2);
    let entry = |index| openraft::Entry::<TypeConfig> {
        log_id: openraft::LogId::new(leader, index),
        payload: openraft::EntryPayload::Blank,
    };
    let append = AppendEntriesRequest::<TypeConfig> {
        vote: Vote::new_committed(1000, 2),
        prev_log_id: None,
        entries: vec![entry(5), entry(6)],
        leader_commit: None,
    };
    let appended = peer
        .append_entries(RaftMessage {
            payload: bincode::serialize(&append).unwrap(),
        })
        .await;
    assert_still_writes(&server).await;
    assert_eq!(appended.unwrap_err().code(), tonic::Code::InvalidArgument);
}

/// A forwarded proposal with a request that carries nothing (no member sends one) was
/// proposed as it came; applying it failed as corrupt, and once the entry was committed
/// every member's Raft stopped. The peer API refuses it before proposing.
#[tokio::test]
async fn proposal_with_an_empty_request_is_refused() {
    use cairn::proto::cairnraftpb::{InternalRequest, Proposal};
    let server = TestServer::start(&[]);
    assert_still_writes(&server).await;
    let mut peer = peer(&server).await;
    let empty = Proposal {
        requests: vec![InternalRequest {
            request: None,
            caller: None,
        }],
    };
    let refused = peer.propose(empty).await;
    assert_eq!(
        refused.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::InvalidArgument)
    );
    assert_still_writes(&server).await;
}
