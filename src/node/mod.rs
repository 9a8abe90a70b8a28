//! A running member: storage, MVCC store, Raft and the proposer, started and stopped
//! together, and the two doors the API uses: `propose` for writes, `read_barrier` for
//! linearizable reads.
//!
//! Also the leader's side of leases: promotion and expiry (`lease_expiry`).
//!
//! May call `storage`, `mvcc`, `watch`, `lease`, `raft`, `cluster` and `config`.

mod lease_expiry;
mod membership;
mod proposer;
mod read_barrier;

pub use read_barrier::read_error;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prost::Message;

use crate::cluster::Identity;
use crate::config::{ClusterState, Config};
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::mvcc::Mvcc;
use crate::proto::cairnraftpb::{
    apply_result, internal_request, ApplyResult, InternalRequest, MemberAttributes,
};
use crate::proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};
use crate::raft::{self, MemberInfo, Peers, Raft, RaftSettings};
use crate::storage::{Storage, CF_RAFT_STATE};
use crate::watch::WatchHub;
use proposer::Proposer;
use read_barrier::ReadBarrier;

/// Bytes etcd adds around a request in its Raft entry; counted against
/// `--max-request-bytes` so the same requests pass and fail as with etcd.
const RAFT_REQUEST_OVERHEAD_BYTES: usize = 12;
const KEY_IDENTITY: &[u8] = b"identity";

/// Limits from the command line that the API enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_request_bytes: usize,
    pub max_txn_ops: usize,
    /// gRPC streams per client connection; None is unlimited, as etcd's default.
    pub max_concurrent_streams: Option<u32>,
    pub watch_progress_interval: Duration,
}

pub struct Node {
    pub identity: Identity,
    pub raft: Raft,
    pub mvcc: Arc<Mvcc>,
    pub watch: Arc<WatchHub>,
    pub lessor: Arc<Lessor>,
    /// Connections to the other members.
    pub peers: Arc<Peers>,
    pub storage: Arc<Storage>,
    pub limits: Limits,
    proposer: Proposer,
    read_barrier: ReadBarrier,
    /// etcd's request timeout: 5 s plus two election timeouts.
    request_timeout: Duration,
    election_timeout: Duration,
    /// Set once this member finds itself removed from the cluster: it should stop.
    removed: tokio::sync::watch::Sender<bool>,
}

impl Node {
    /// Opens the data directory and starts Raft; on a fresh directory, bootstraps the
    /// initial cluster.
    pub async fn start(config: &Config) -> anyhow::Result<Arc<Node>> {
        let member_dir = config.data_dir.join("member");
        std::fs::create_dir_all(&member_dir)
            .with_context(|| format!("cannot create data dir {}", member_dir.display()))?;
        let storage = Arc::new(
            Storage::open(&member_dir.join("db"))
                .with_context(|| format!("cannot open storage in {}", member_dir.display()))?,
        );
        let mut derived = Identity::from_config(config);
        if config.initial_cluster_state == ClusterState::Existing && !has_identity(&storage)? {
            derived = join(
                derived,
                Duration::from_millis(5000 + 2 * config.election_timeout_ms),
            )
            .await?;
        }
        let identity = restore_or_save_identity(&storage, derived)?;
        let mvcc = Mvcc::open(storage.clone())?;
        let watch = WatchHub::start(mvcc.clone());
        let peers = Arc::new(Peers::default());
        let lessor = Lessor::open(
            storage.clone(),
            min_lease_ttl_secs(config.heartbeat_interval_ms, config.election_timeout_ms),
        )?;
        let raft = raft::start(
            identity.member_id,
            RaftSettings {
                cluster_name: format!("{:x}", identity.cluster_id),
                heartbeat_interval_ms: config.heartbeat_interval_ms,
                election_timeout_ms: config.election_timeout_ms,
                snapshot_count: config.snapshot_count,
            },
            storage.clone(),
            mvcc.clone(),
            watch.clone(),
            lessor.clone(),
            peers.clone(),
            member_dir.join("snap"),
        )
        .await?;
        if config.initial_cluster_state == ClusterState::New {
            let members: BTreeMap<u64, MemberInfo> = identity
                .initial_members
                .iter()
                .map(|m| {
                    let client_urls = if m.id == identity.member_id {
                        identity.client_urls.clone()
                    } else {
                        Vec::new()
                    };
                    let info = MemberInfo {
                        name: m.name.clone(),
                        peer_urls: m.peer_urls.clone(),
                        client_urls,
                        voter_when_caught_up: false,
                    };
                    (m.id, info)
                })
                .collect();
            raft::bootstrap(&raft, members).await?;
        }
        let request_timeout = Duration::from_millis(5000 + 2 * config.election_timeout_ms);
        let me = identity.member_id;
        let proposer = Proposer::spawn(raft.clone(), peers.clone(), me, request_timeout);
        let read_barrier = ReadBarrier::spawn(raft.clone(), peers.clone(), me, request_timeout);
        let node = Arc::new(Node {
            identity,
            raft,
            mvcc,
            watch,
            lessor,
            peers,
            storage,
            limits: Limits {
                max_request_bytes: config.max_request_bytes as usize,
                max_txn_ops: config.max_txn_ops as usize,
                max_concurrent_streams: config.max_concurrent_streams,
                watch_progress_interval: config.watch_progress_interval,
            },
            proposer,
            read_barrier,
            request_timeout,
            election_timeout: Duration::from_millis(config.election_timeout_ms),
            removed: tokio::sync::watch::channel(false).0,
        });
        tokio::spawn(lease_expiry::run(Arc::downgrade(&node)));
        tokio::spawn(membership::run(Arc::downgrade(&node)));
        Ok(node)
    }

    /// Waits until a leader is known and this member has applied what it had committed.
    pub async fn wait_ready(&self) -> anyhow::Result<()> {
        let mut metrics = self.raft.metrics();
        metrics
            .wait_for(|m| {
                m.current_leader.is_some() && m.last_applied.map(|l| l.index) >= m.last_log_index
            })
            .await
            .context("raft stopped before it was ready")?;
        Ok(())
    }

    /// Publishes this member's name and client URLs through Raft, as etcd does once it
    /// serves: other members list them.
    pub async fn publish(&self) -> Result<(), EtcdError> {
        let attributes = MemberAttributes {
            member_id: self.identity.member_id,
            name: self.identity.name.clone(),
            client_urls: self.identity.client_urls.clone(),
        };
        let request = InternalRequest {
            request: Some(internal_request::Request::Publish(attributes)),
        };
        self.propose(request).await.map(|_| ())
    }

    /// Proposes a write through Raft and waits for its result.
    pub async fn propose(
        &self,
        request: InternalRequest,
    ) -> Result<apply_result::Result, EtcdError> {
        let size_bytes = request.encoded_len() + RAFT_REQUEST_OVERHEAD_BYTES;
        if size_bytes > self.limits.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        let result = tokio::time::timeout(
            self.request_timeout,
            self.proposer.propose(request, size_bytes),
        )
        .await
        .map_err(|_| EtcdError::Timeout)??;
        match result {
            ApplyResult {
                result: Some(apply_result::Result::Error(n)),
            } => Err(EtcdError::from_number(n)),
            ApplyResult { result: Some(r) } => Ok(r),
            ApplyResult { result: None } => Err(EtcdError::Corrupt),
        }
    }

    /// Returns once this member has applied everything committed before the call, as
    /// confirmed by a quorum (Raft's ReadIndex): what a linearizable read needs.
    pub async fn read_barrier(&self) -> Result<(), EtcdError> {
        tokio::time::timeout(self.request_timeout, self.read_barrier.wait())
            .await
            .map_err(|_| EtcdError::Timeout)?
    }

    /// A response header: this cluster and member, the current term, and `revision` (or
    /// the store's current revision when 0).
    pub fn header(&self, revision: i64) -> ResponseHeader {
        ResponseHeader {
            cluster_id: self.identity.cluster_id,
            member_id: self.identity.member_id,
            revision: if revision == 0 {
                self.mvcc.current_rev()
            } else {
                revision
            },
            raft_term: self.raft.metrics().borrow().current_term,
        }
    }

    /// A lease keep-alive, answered by the leader: the TTL, 0 for an unknown lease.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, EtcdError> {
        match raft::leader(&self.raft, &self.peers, self.identity.member_id) {
            Some(raft::Leader::Me) => Ok(self.lessor.renew(id)?.unwrap_or(0)),
            Some(raft::Leader::Other(mut leader)) => {
                let request = LeaseKeepAliveRequest { id };
                let answer =
                    tokio::time::timeout(self.request_timeout, leader.lease_keep_alive(request))
                        .await
                        .map_err(|_| EtcdError::Timeout)?
                        .map_err(|_| EtcdError::Timeout)?;
                Ok(answer.into_inner().ttl)
            }
            None => Err(EtcdError::NoLeader),
        }
    }

    /// A lease's remaining TTL, as the leader (which keeps expiry times) knows it.
    pub async fn lease_time_to_live(
        &self,
        request: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        match raft::leader(&self.raft, &self.peers, self.identity.member_id) {
            Some(raft::Leader::Me) => Ok(self.local_lease_time_to_live(request)),
            Some(raft::Leader::Other(mut leader)) => {
                let answer =
                    tokio::time::timeout(self.request_timeout, leader.lease_time_to_live(request))
                        .await
                        .map_err(|_| EtcdError::Timeout)?
                        .map_err(|_| EtcdError::Timeout)?;
                let mut response = answer.into_inner();
                response.header = Some(self.header(0));
                Ok(response)
            }
            None => Err(EtcdError::NoLeader),
        }
    }

    /// This member's answer to a time-to-live request: an unknown lease has TTL -1, as
    /// etcd answers.
    pub fn local_lease_time_to_live(&self, r: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let header = Some(self.header(0));
        match self.lessor.time_to_live(r.id, r.keys) {
            Some(status) => LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: status.remaining_secs,
                granted_ttl: status.granted_secs,
                keys: status.keys,
            },
            None => LeaseTimeToLiveResponse {
                header,
                id: r.id,
                ttl: -1,
                ..LeaseTimeToLiveResponse::default()
            },
        }
    }

    /// This member has been removed from the cluster: it should stop.
    pub fn mark_removed(&self) {
        if !self.removed.send_replace(true) {
            tracing::warn!("the member has been permanently removed from the cluster");
        }
    }

    /// Resolves when this member has been removed from the cluster.
    pub async fn removed(&self) {
        let mut removed = self.removed.subscribe();
        let _ = removed.wait_for(|removed| *removed).await;
    }

    /// etcd's request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// A learner in the membership (not one added as a voter, waiting to catch up): it
    /// serves only what etcd lets learners serve.
    pub fn is_learner(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        let me = self.identity.member_id;
        membership
            .get_node(&me)
            .is_some_and(|info| !info.voter_when_caught_up)
            && !membership.voter_ids().any(|id| id == me)
    }

    /// Whether this member leads and a quorum still answers it.
    pub fn is_leader(&self) -> bool {
        self.leader_id() == Some(self.identity.member_id)
    }

    /// The leader as clients should see it (see `raft::leader_id`).
    pub fn leader_id(&self) -> Option<u64> {
        raft::leader_id(&self.raft, &self.raft.metrics().borrow())
    }

    /// The header etcd gives cluster (membership) responses: no revision.
    pub fn cluster_header(&self) -> ResponseHeader {
        ResponseHeader {
            revision: 0,
            ..self.header(0)
        }
    }

    /// Before a leader stops: hands leadership to the most caught-up voter, so clients see a
    /// new leader within milliseconds rather than after an election timeout, as with etcd.
    pub async fn hand_off_leadership(&self) {
        if !self.is_leader() {
            return;
        }
        let me = self.identity.member_id;
        let metrics = self.raft.metrics().borrow().clone();
        let Some(target) = metrics
            .membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != me)
            .max_by_key(|id| {
                metrics
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id).cloned().flatten())
                    .map_or(0, |log_id| log_id.index)
            })
        else {
            return;
        };
        let started = std::time::Instant::now();
        match self
            .transfer_leadership(target, self.election_timeout)
            .await
        {
            Ok(()) => tracing::info!(
                new_leader = %format!("{target:x}"),
                took = ?started.elapsed(),
                "leadership handed off"
            ),
            Err(_) => tracing::warn!("leadership handoff did not complete; an election follows"),
        }
    }

    /// Makes voter `target` the leader: asks it to campaign at once (Raft's TimeoutNow),
    /// again each half election timeout, until it leads or `within` has passed. A leader
    /// elected less than openraft's leader lease ago refuses to vote for the target, so the
    /// first ask may not do; a later one does.
    pub async fn transfer_leadership(
        &self,
        target: u64,
        within: Duration,
    ) -> Result<(), EtcdError> {
        let deadline = tokio::time::Instant::now() + within;
        let info = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&target)
            .cloned()
            .ok_or(EtcdError::NotLeader)?;
        let mut client = self
            .peers
            .client(target, &info)
            .map_err(|_| EtcdError::Timeout)?;
        loop {
            let ask = client.timeout_now(crate::proto::cairnpeerpb::TimeoutNowRequest {});
            let _ = tokio::time::timeout(self.election_timeout / 2, ask).await;
            let leads = self
                .raft
                .wait(Some(self.election_timeout / 2))
                .metrics(|m| m.current_leader == Some(target), "the target leads")
                .await;
            if leads.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EtcdError::Timeout);
            }
        }
    }

    /// Stops Raft and makes every write durable.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = self.storage.sync_wal() {
            tracing::warn!(error = %e, "final sync of the write-ahead log");
        }
        self.storage.stop_background_work();
    }
}

/// etcd's shortest lease TTL: one and a half election timeouts (counted in whole
/// heartbeats), rounded up to whole seconds.
fn min_lease_ttl_secs(heartbeat_interval_ms: u64, election_timeout_ms: u64) -> i64 {
    let election_ticks = election_timeout_ms / heartbeat_interval_ms.max(1);
    let min_ttl_ms = (3 * election_ticks / 2) * heartbeat_interval_ms;
    min_ttl_ms.div_ceil(1000) as i64
}

fn has_identity(storage: &Storage) -> anyhow::Result<bool> {
    Ok(storage
        .db()
        .get_cf(storage.cf(CF_RAFT_STATE), KEY_IDENTITY)?
        .is_some())
}

/// A member started with `--initial-cluster-state existing` and no data learns its ID and
/// the cluster's from the running members (it was given an ID by `member add`), as etcd
/// does: it is the member whose peer URLs are this member's.
async fn join(derived: Identity, timeout: Duration) -> anyhow::Result<Identity> {
    let me = derived
        .initial_members
        .iter()
        .find(|m| m.id == derived.member_id)
        .context("this member is not in --initial-cluster")?
        .clone();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = String::from("no other member in --initial-cluster");
    loop {
        for other in derived.initial_members.iter().filter(|m| m.id != me.id) {
            let Some(url) = other.peer_urls.first() else {
                continue;
            };
            let answer = async {
                let mut client =
                    crate::proto::cairnpeerpb::peer_client::PeerClient::connect(url.clone())
                        .await
                        .map_err(|e| e.to_string())?;
                client
                    .cluster_info(crate::proto::cairnpeerpb::ClusterInfoRequest {})
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(Duration::from_secs(1), answer).await {
                Ok(Ok(info)) => {
                    let mut mine = me.peer_urls.clone();
                    mine.sort();
                    let found = info.members.iter().find(|m| {
                        let mut urls = m.peer_urls.clone();
                        urls.sort();
                        urls == mine
                    });
                    let Some(found) = found else {
                        anyhow::bail!(
                            "no member of the running cluster has peer URLs {:?}; add this member first (etcdctl member add)",
                            me.peer_urls
                        );
                    };
                    return Ok(Identity {
                        member_id: found.id,
                        cluster_id: info.cluster_id,
                        ..derived
                    });
                }
                Ok(Err(e)) => last_error = format!("{}: {e}", other.name),
                Err(_) => last_error = format!("{}: no answer", other.name),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("cannot reach the running cluster to join it: {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The member and cluster IDs are fixed when the data directory is created: a restart with
/// other flags keeps them, as etcd does.
fn restore_or_save_identity(storage: &Storage, derived: Identity) -> anyhow::Result<Identity> {
    let cf = storage.cf(CF_RAFT_STATE);
    if let Some(bytes) = storage.db().get_cf(cf, KEY_IDENTITY)? {
        let (member_id, cluster_id): (u64, u64) = bincode::deserialize(&bytes)?;
        return Ok(Identity {
            member_id,
            cluster_id,
            ..derived
        });
    }
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(
        cf,
        KEY_IDENTITY,
        bincode::serialize(&(derived.member_id, derived.cluster_id))?,
    );
    storage.write(batch, true)?;
    Ok(derived)
}
