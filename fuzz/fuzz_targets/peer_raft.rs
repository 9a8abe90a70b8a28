//! Raft's messages from a peer, through the peer API's handlers: each message is built from
//! structured input, encoded as a member encodes it (bincode in a `RaftMessage`), and handed
//! to the peer API's handler (`cairn::fuzzing::handle_raft_message`) of a real Raft node (openraft, Cairn's RocksDB log
//! store and state machine) on a fresh data directory. Appended entries are committed and
//! applied; snapshot chunks are installed. No message may panic (in any task) or hang it.
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use arbitrary::Arbitrary;
use cairn::fuzzing::{self, RaftMethod};
use cairn::proto::cairnpeerpb::RaftMessage;
use cairn::proto::cairnraftpb::Proposal;
use cairn::raft::{Batch, MemberInfo, RaftSettings, TypeConfig};
use cairn_fuzz::structured::Write;
use openraft::error::{Fatal, Infallible, InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{CommittedLeaderId, Entry, EntryPayload, Membership, SnapshotMeta, Vote};

/// This member's ID; others are 2..=4.
const ME: u64 = 1;
const HANG: Duration = Duration::from_secs(5);

#[derive(Arbitrary, Debug, Clone, Copy)]
struct LogIdA {
    term: u8,
    node: u8,
    index: u8,
}

fn log_id(l: LogIdA) -> openraft::LogId<u64> {
    openraft::LogId::new(
        CommittedLeaderId::new(l.term as u64, node(l.node)),
        l.index as u64,
    )
}

fn node(n: u8) -> u64 {
    n as u64 % 4 + 1
}

#[derive(Arbitrary, Debug)]
struct VoteA {
    term: u8,
    node: u8,
    committed: bool,
}

fn vote(v: &VoteA) -> Vote<u64> {
    if v.committed {
        Vote::new_committed(v.term as u64, node(v.node))
    } else {
        Vote::new(v.term as u64, node(v.node))
    }
}

#[derive(Arbitrary, Debug)]
struct MembershipA {
    voters: Vec<u8>,
    joint: Option<Vec<u8>>,
    learners: Vec<u8>,
}

fn membership(m: &MembershipA) -> Membership<u64, MemberInfo> {
    let ids = |v: &[u8]| v.iter().map(|n| node(*n)).collect::<BTreeSet<_>>();
    let mut configs = vec![ids(&m.voters)];
    if let Some(joint) = &m.joint {
        configs.push(ids(joint));
    }
    let nodes: BTreeMap<u64, MemberInfo> = configs
        .iter()
        .flatten()
        .copied()
        .chain(ids(&m.learners))
        .map(|id| {
            let info = MemberInfo {
                name: format!("m{id}"),
                peer_urls: vec![format!("http://127.0.0.1:{}", 1 + id)],
                ..MemberInfo::default()
            };
            (id, info)
        })
        .collect();
    Membership::new(configs, nodes)
}

#[derive(Arbitrary, Debug)]
enum PayloadA {
    Blank,
    Normal(Vec<Write>),
    Membership(MembershipA),
}

#[derive(Arbitrary, Debug)]
struct EntryA {
    log_id: LogIdA,
    payload: PayloadA,
}

#[derive(Arbitrary, Debug)]
enum Call {
    Vote {
        vote: VoteA,
        last_log_id: Option<LogIdA>,
    },
    Append {
        vote: VoteA,
        prev_log_id: Option<LogIdA>,
        entries: Vec<EntryA>,
        leader_commit: Option<LogIdA>,
    },
    Snapshot {
        vote: VoteA,
        last_log_id: Option<LogIdA>,
        membership: MembershipA,
        offset: u16,
        data: Vec<u8>,
        done: bool,
    },
    /// Bytes as they come, for any of the three decoders.
    Raw { kind: u8, payload: Vec<u8> },
}

fn message(payload: Vec<u8>) -> RaftMessage {
    RaftMessage { payload }
}

async fn run(calls: &[Call]) {
    let dir = cairn_fuzz::scratch_dir("raft");
    let storage = Arc::new(cairn::storage::Storage::open(&dir.join("db")).expect("storage"));
    let mvcc = cairn::mvcc::Mvcc::open(storage.clone()).expect("mvcc");
    let watch = cairn::watch::WatchHub::start(mvcc.clone());
    let lessor = cairn::lease::Lessor::open(storage.clone(), 1).expect("lessor");
    let peers = Arc::new(cairn::raft::Peers::new(None));
    let settings = RaftSettings {
        cluster_name: "fuzz".into(),
        // Long timeouts: this member never campaigns while the input runs.
        heartbeat_interval_ms: 10_000,
        election_timeout_ms: 100_000,
        snapshot_count: 10_000,
        snapshot_catchup_requests: 5_000,
    };
    let raft = cairn::raft::start(
        ME,
        settings,
        storage,
        mvcc,
        watch,
        lessor,
        peers,
        dir.join("snap"),
    )
    .await
    .expect("start Raft");
    for call in calls.iter().take(16) {
        let work = async {
            match call {
                Call::Vote {
                    vote: v,
                    last_log_id,
                } => {
                    let rpc = VoteRequest::new(vote(v), last_log_id.map(log_id));
                    handle_vote(&raft, bincode::serialize(&rpc).unwrap()).await;
                }
                Call::Append {
                    vote: v,
                    prev_log_id,
                    entries,
                    leader_commit,
                } => {
                    let rpc = AppendEntriesRequest::<TypeConfig> {
                        vote: vote(v),
                        prev_log_id: prev_log_id.map(log_id),
                        entries: entries
                            .iter()
                            .take(16)
                            .map(|e| Entry {
                                log_id: log_id(e.log_id),
                                payload: match &e.payload {
                                    PayloadA::Blank => EntryPayload::Blank,
                                    PayloadA::Normal(writes) => {
                                        EntryPayload::Normal(Batch(Arc::new(Proposal {
                                            requests: writes.iter().map(Write::build).collect(),
                                        })))
                                    }
                                    PayloadA::Membership(m) => {
                                        EntryPayload::Membership(membership(m))
                                    }
                                },
                            })
                            .collect(),
                        leader_commit: leader_commit.map(log_id),
                    };
                    handle_append(&raft, bincode::serialize(&rpc).unwrap()).await;
                }
                Call::Snapshot {
                    vote: v,
                    last_log_id,
                    membership: m,
                    offset,
                    data,
                    done,
                } => {
                    let last_log_id = last_log_id.map(log_id);
                    let rpc = InstallSnapshotRequest::<TypeConfig> {
                        vote: vote(v),
                        meta: SnapshotMeta {
                            last_log_id,
                            last_membership: openraft::StoredMembership::new(
                                last_log_id,
                                membership(m),
                            ),
                            snapshot_id: "fuzz".into(),
                        },
                        offset: *offset as u64,
                        data: data.clone(),
                        done: *done,
                    };
                    handle_snapshot(&raft, bincode::serialize(&rpc).unwrap()).await;
                }
                Call::Raw { kind, payload } => match kind % 3 {
                    0 => handle_vote(&raft, payload.clone()).await,
                    1 => handle_append(&raft, payload.clone()).await,
                    _ => handle_snapshot(&raft, payload.clone()).await,
                },
            }
        };
        tokio::time::timeout(HANG, work)
            .await
            .unwrap_or_else(|_| panic!("Raft hangs on {call:?}"));
    }
    tokio::time::timeout(HANG, raft.shutdown())
        .await
        .expect("Raft shuts down in time")
        .expect("Raft shuts down");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The peer API's handler of one Raft message; its answer must decode as the peer client
/// decodes it, and must not say that openraft's core panicked.
async fn handle<T, E>(raft: &cairn::raft::Raft, method: RaftMethod, payload: Vec<u8>)
where
    T: serde::de::DeserializeOwned,
    E: serde::de::DeserializeOwned + std::fmt::Debug,
{
    let Ok(answer) = fuzzing::handle_raft_message(raft, method, &message(payload)).await else {
        return;
    };
    let result: Result<T, RaftError<u64, E>> =
        bincode::deserialize(&answer).expect("the answer decodes");
    if let Err(RaftError::Fatal(Fatal::Panicked)) = result {
        panic!("Raft's core panicked");
    }
}

async fn handle_vote(raft: &cairn::raft::Raft, payload: Vec<u8>) {
    handle::<VoteResponse<u64>, Infallible>(raft, RaftMethod::Vote, payload).await
}

async fn handle_append(raft: &cairn::raft::Raft, payload: Vec<u8>) {
    handle::<AppendEntriesResponse<u64>, Infallible>(raft, RaftMethod::AppendEntries, payload).await
}

async fn handle_snapshot(raft: &cairn::raft::Raft, payload: Vec<u8>) {
    handle::<InstallSnapshotResponse<u64>, InstallSnapshotError>(
        raft,
        RaftMethod::InstallSnapshot,
        payload,
    )
    .await
}

libfuzzer_sys::fuzz_target!(|calls: Vec<Call>| {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(run(&calls));
});
