//! A running member: storage, MVCC store, Raft and the proposer, started and stopped
//! together, and the two doors the API uses: `propose` for writes, `read_barrier` for
//! linearizable reads.
//!
//! Also: leases (`leases`), membership (`membership`), leadership transfer and the
//! leader monitor (`leadership`) and this member's identity (`identity`).
//!
//! May call `storage`, `mvcc`, `watch`, `lease`, `raft`, `cluster` and `config`.

mod identity;
mod leadership;
mod leases;
mod membership;
mod proposer;
mod read_barrier;

pub use proposer::write_error;
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
use crate::proto::etcdserverpb::ResponseHeader;
use crate::raft::{self, MemberInfo, Peers, Raft, RaftSettings};
use crate::storage::Storage;
use crate::watch::WatchHub;
use identity::{has_identity, join, restore_or_save_identity};
use proposer::Proposer;
use read_barrier::ReadBarrier;

/// Bytes etcd adds around a request in its Raft entry; counted against
/// `--max-request-bytes` so the same requests pass and fail as with etcd.
const RAFT_REQUEST_OVERHEAD_BYTES: usize = 12;

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
    /// TLS of the client port, when its flags configure it.
    pub client_tls: Option<crate::tls::Tls>,
    /// TLS of the peer port, when its flags configure it.
    pub peer_tls: Option<crate::tls::Tls>,
    pub storage: Arc<Storage>,
    pub limits: Limits,
    proposer: Proposer,
    read_barrier: ReadBarrier,
    /// etcd's request timeout: 5 s plus two election timeouts.
    request_timeout: Duration,
    election_timeout: Duration,
    /// Set once this member finds itself removed from the cluster: it should stop.
    removed: tokio::sync::watch::Sender<bool>,
    /// Set while this member has been without a leader for too long (`leadership`).
    leader_lost: tokio::sync::watch::Sender<bool>,
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
        let client_tls = crate::tls::load_for_port(
            &config.client_tls,
            &config.data_dir,
            "client",
            &config.listen_client_urls,
        )?;
        let peer_tls = crate::tls::load_for_port(
            &config.peer_tls,
            &config.data_dir,
            "peer",
            &config.listen_peer_urls,
        )?;
        let peers = Arc::new(Peers::new(peer_tls.clone()));
        let mut derived = Identity::from_config(config);
        if config.initial_cluster_state == ClusterState::Existing && !has_identity(&storage)? {
            derived = join(
                derived,
                &peers,
                Duration::from_millis(5000 + 2 * config.election_timeout_ms),
            )
            .await?;
        }
        let identity = restore_or_save_identity(&storage, derived)?;
        let mvcc = Mvcc::open(storage.clone())?;
        let watch = WatchHub::start(mvcc.clone());
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
                snapshot_catchup_requests: config.snapshot_catchup_entries,
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
            client_tls,
            peer_tls,
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
            leader_lost: tokio::sync::watch::channel(false).0,
        });
        tokio::spawn(leases::run(Arc::downgrade(&node)));
        tokio::spawn(leadership::monitor_leader(Arc::downgrade(&node)));
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
        // The proposer answers by the request's deadline (see `Proposer::spawn`).
        let result = self.proposer.propose(request, size_bytes).await?;
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

    /// Runs `read` on a fresh view of the store (a Range, a read-only txn). A compaction that
    /// lands between taking the view and reading it can pass the view's own revision, and the
    /// read would fail with `compacted` though it asked for nothing compacted; etcd makes a
    /// compaction wait for the reads in progress, so there it never does. Such a read is done
    /// again on a new view (at most `READ_ATTEMPTS` times), which is as linearizable: it
    /// still starts after the read barrier.
    pub fn read<T>(
        &self,
        mut read: impl FnMut(&mut crate::mvcc::ReadView<'_>) -> Result<T, EtcdError>,
    ) -> Result<T, EtcdError> {
        use crate::mvcc::KvRead;
        const READ_ATTEMPTS: usize = 4;
        let mut outcome = Err(EtcdError::Compacted);
        for _ in 0..READ_ATTEMPTS {
            let mut view = self.mvcc.read_view();
            fail::fail_point!("kv_read_after_view");
            outcome = read(&mut view);
            let overtaken = view.rev() < self.mvcc.compact_rev();
            if !(matches!(outcome, Err(EtcdError::Compacted)) && overtaken) {
                break;
            }
        }
        outcome
    }

    /// Waits until the revisions a `physical` compaction made unreachable are deleted from
    /// storage, for at most the request timeout: a deletion that failed is retried only at
    /// the next start, and its client must not wait for ever. The compaction itself is done
    /// (logically) either way.
    pub async fn wait_physically_compacted(&self, rev: i64) -> Result<(), EtcdError> {
        tokio::time::timeout(
            self.request_timeout,
            self.mvcc.wait_physically_compacted(rev),
        )
        .await
        .map_err(|_| EtcdError::Timeout)
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

    /// Resolves when Raft has stopped on its own: a fatal error (a failed or full disk, a
    /// state machine that could not apply) ended its core. The member can then neither
    /// commit nor learn of commits, and must not go on serving frozen data: the answer is
    /// the reason, for the log before the process exits (as etcd exits).
    pub async fn raft_stopped(&self) -> String {
        let mut metrics = self.raft.metrics();
        let stopped = metrics.wait_for(|m| m.running_state.is_err()).await;
        stopped
            .ok()
            .and_then(|m| m.running_state.as_ref().err().map(ToString::to_string))
            .unwrap_or_else(|| "raft stopped".to_string())
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

/// Waits until this member has applied the log up to `index`: after the leader answered (a
/// forwarded write's entry, a read index), what this member serves must include it.
async fn applied_up_to(raft: &Raft, index: u64) -> Result<(), EtcdError> {
    raft.wait(None)
        .applied_index_at_least(Some(index), "applied up to the leader's answer")
        .await
        .map(|_| ())
        .map_err(|_| EtcdError::Stopped)
}

/// etcd's shortest lease TTL: one and a half election timeouts (counted in whole
/// heartbeats), rounded up to whole seconds.
fn min_lease_ttl_secs(heartbeat_interval_ms: u64, election_timeout_ms: u64) -> i64 {
    let election_ticks = election_timeout_ms / heartbeat_interval_ms.max(1);
    let min_ttl_ms = (3 * election_ticks / 2) * heartbeat_interval_ms;
    min_ttl_ms.div_ceil(1000) as i64
}
