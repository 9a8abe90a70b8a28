//! Consensus: openraft wired to RocksDB. Every write reaches the store through here.
//!
//! Owns the Raft type configuration, the log store (with group commit), the state machine
//! (which applies committed entries through `apply`), the client side of peer networking,
//! start-up of the Raft node, and the takeover of an etcd member's data directory
//! (`takeover`). May call `storage`, `mvcc`, `lease`, `auth`, `alarms`, `etcd_backend`,
//! `etcd_data`, `bbolt`, `cluster`,
//! `watch`, `members`, `apply`, `net` (the peers' connections), and `metrics` (disk
//! syncs and commits, slow applies, peer traffic).

mod log_store;
mod network;
mod snapshot_schedule;
mod state_machine;
mod takeover;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use openraft::{Config as RaftConfig, SnapshotPolicy};
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::lease::Lessor;
use crate::mvcc::Mvcc;
use crate::proto::cairnraftpb::{ApplyResults, Proposal};
use crate::storage::Storage;
use crate::telemetry::BatchTrace;
use crate::watch::WatchHub;

pub use log_store::LogStore;
pub use network::Peers;
use snapshot_schedule::SnapshotSchedule;
pub use state_machine::{applied_index_and_term, StateMachine};
pub use takeover::{is_etcd_member_dir, take_over, TakenOver};

/// A member as Raft knows it: the node data carried in membership entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    /// Added as a voter: it joins Raft as a learner and the leader makes it a voter once it
    /// has caught up, so an added member that has not started yet costs no quorum.
    pub voter_when_caught_up: bool,
}

impl fmt::Display for MemberInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

/// A Raft entry's payload: a batch of client requests (see `node::proposer`). Shared, so
/// that the log store's recent entries and the state machine read one copy. With it, in
/// memory only, the spans of its traced requests on the member that proposed it (never
/// stored nor sent: the entry's value is the proposal alone).
#[derive(Debug, Clone, Default)]
pub struct Batch(pub Arc<Proposal>, pub Option<Arc<BatchTrace>>);

impl PartialEq for Batch {
    fn eq(&self, other: &Batch) -> bool {
        self.0 == other.0
    }
}

/// The spans an entry carries, if any (see `telemetry`).
fn trace_of(entry: &openraft::Entry<TypeConfig>) -> Option<&Arc<BatchTrace>> {
    match &entry.payload {
        openraft::EntryPayload::Normal(Batch(_, trace)) => trace.as_ref(),
        _ => None,
    }
}

/// What applying a `Batch` returned, one result per request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchResults(pub ApplyResults);

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Batch,
        R = BatchResults,
        NodeId = u64,
        Node = MemberInfo,
        SnapshotData = tokio::fs::File,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<u64>;
pub type StoredMembership = openraft::StoredMembership<u64, MemberInfo>;

/// Raft tuning derived from etcd's flags.
pub struct RaftSettings {
    pub cluster_name: String,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    /// Requests applied between snapshots (`--snapshot-count`).
    pub snapshot_count: u64,
    /// Requests whose entries stay in the log after a snapshot, so a briefly lagging
    /// follower catches up from the log rather than a snapshot
    /// (`--snapshot-catchup-entries`).
    pub snapshot_catchup_requests: u64,
}
/// Entries sent to a follower in one append: bounds memory per replication message.
const MAX_ENTRIES_PER_APPEND: u64 = 256;

/// Starts the Raft node on the member's storage.
pub async fn start(
    member_id: u64,
    settings: RaftSettings,
    storage: Arc<Storage>,
    mvcc: Arc<Mvcc>,
    watch: Arc<WatchHub>,
    lessor: Arc<Lessor>,
    auth: Arc<crate::auth::AuthStore>,
    alarms: Arc<crate::alarms::AlarmStore>,
    peers: Arc<Peers>,
    snapshot_dir: std::path::PathBuf,
    metrics: Arc<crate::metrics::Metrics>,
) -> anyhow::Result<Raft> {
    let config = RaftConfig {
        cluster_name: settings.cluster_name,
        heartbeat_interval: settings.heartbeat_interval_ms,
        // A follower that has heard from a leader waits openraft's leader lease (the
        // maximum election timeout) plus a random election timeout before it campaigns; so
        // the silence before an election is [1.25, 1.5) × --election-timeout, near etcd's
        // randomised [1, 2) ×. Within the lease it also refuses to vote for another
        // member. (No pre-vote in openraft 0.9: a member rejoining with a higher term still
        // makes the leader step down; see README.)
        election_timeout_min: settings.election_timeout_ms / 2,
        election_timeout_max: settings.election_timeout_ms * 3 / 4,
        // Snapshots and purges are counted in requests, not entries (`snapshot_schedule`):
        // openraft takes a snapshot when asked, and keeps the whole log until told to purge.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: u64::MAX,
        max_payload_entries: MAX_ENTRIES_PER_APPEND,
        ..RaftConfig::default()
    }
    .validate()?;
    let schedule = Arc::new(SnapshotSchedule::new(
        settings.snapshot_count,
        settings.snapshot_catchup_requests,
    ));
    let state_machine = StateMachine::open(
        storage.clone(),
        mvcc,
        watch,
        lessor,
        auth,
        alarms,
        snapshot_dir,
        schedule.clone(),
        metrics.clone(),
    )?;
    let log_store = LogStore::open(storage, state_machine.recoverable_index(), metrics.clone())?;
    let raft = Raft::new(
        member_id,
        Arc::new(config),
        network::PeerNetwork { peers, metrics },
        log_store,
        state_machine,
    )
    .await?;
    tokio::spawn(run_snapshot_schedule(raft.clone(), schedule));
    Ok(raft)
}

/// Asks Raft for a snapshot when one is due, and once one is taken, purges the log it makes
/// unnecessary (see `snapshot_schedule`). Ends with Raft.
async fn run_snapshot_schedule(raft: Raft, schedule: Arc<SnapshotSchedule>) {
    let mut metrics = raft.metrics();
    let mut last_snapshot = metrics.borrow().snapshot.map(|l| l.index);
    loop {
        tokio::select! {
            _ = schedule.due() => {
                if raft.trigger().snapshot().await.is_err() {
                    return;
                }
            }
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let snapshot = metrics.borrow_and_update().snapshot.map(|l| l.index);
                if snapshot <= last_snapshot {
                    continue;
                }
                last_snapshot = snapshot;
                let purge_to = snapshot.and_then(|index| schedule.snapshot_taken(index));
                if let Some(purge_to) = purge_to {
                    if raft.trigger().purge_log(purge_to).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Makes `members` the initial voters, once, on a fresh data directory.
pub async fn bootstrap(raft: &Raft, members: BTreeMap<u64, MemberInfo>) -> anyhow::Result<()> {
    if raft.is_initialized().await? {
        return Ok(());
    }
    raft.initialize(members).await?;
    Ok(())
}

// The payload is protobuf inside the serde-encoded log entry: prost encodes it compactly
// and its field numbers keep the on-disk format stable.
fn serialize_message<S: Serializer>(m: &impl Message, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(&m.encode_to_vec())
}

fn deserialize_message<'de, M: Message + Default, D: Deserializer<'de>>(
    d: D,
) -> Result<M, D::Error> {
    struct BytesVisitor;
    impl serde::de::Visitor<'_> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("protobuf bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }
    let bytes = d.deserialize_byte_buf(BytesVisitor)?;
    M::decode(bytes.as_slice()).map_err(serde::de::Error::custom)
}

impl Serialize for Batch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_message(&*self.0, s)
    }
}

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_message(d).map(|p| Batch(Arc::new(p), None))
    }
}

impl Serialize for BatchResults {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_message(&self.0, s)
    }
}

impl<'de> Deserialize<'de> for BatchResults {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_message(d).map(BatchResults)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cairnraftpb::{internal_request, InternalRequest};
    use crate::proto::etcdserverpb::PutRequest;

    #[test]
    fn batch_survives_the_log_encoding() {
        let batch = Batch(
            Arc::new(Proposal {
                requests: vec![InternalRequest {
                    request: Some(internal_request::Request::Put(PutRequest {
                        key: b"k".to_vec(),
                        value: vec![0, 255, 1],
                        ..PutRequest::default()
                    })),
                    caller: None,
                }],
            }),
            None,
        );
        let bytes = bincode::serialize(&batch).unwrap();
        let back: Batch = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, batch);
    }
}
