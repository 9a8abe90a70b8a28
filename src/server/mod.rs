//! The server: the one place every client request passes, as etcd's `EtcdServer`.
//!
//! The API layers (`api` for gRPC, `peer` for what other members forward) check a request,
//! call one typed method here (`range`, `put`, `lease_grant`, `member_add`, `watch`...),
//! and send back what it returns. Behind the methods, and nowhere else: who may call what
//! (learners, `hasleader`), routing to the leader (`route`), read barriers
//! (`read_barrier`), batching writes into Raft proposals and waiting until they are
//! applied (`proposer`), who the caller is and what it may do, and the Auth service
//! (`auth`), the mapping of openraft's errors to etcd's (`raft_errors`), member roles
//! (`role`), what the health endpoints report (`health`), the lease lifecycle on a member
//! (`lease`), membership changes (`cluster`, `membership`), leadership transfer and the
//! leader monitor (`leadership`), this member's identity (`identity`), its metrics
//! (`metrics`), the space quota (`quota`), the disk reserve (`disk_space`),
//! Maintenance.Snapshot (`snapshot`), and the Lock and Election services, built on the methods above (`lock`,
//! `election`).
//!
//! A request's path: `api::kv` → `Server::put` (`kv`) → `proposer` → `raft` (log in
//! `storage`) → `raft::state_machine` → `apply` → `mvcc`/`lease` → `watch`.
//!
//! May call `raft`, `apply`, `auth`, `alarms`, `etcd_backend`, `etcd_data`, `mvcc`, `lease`, `watch`, `members`, `storage`,
//! `cluster`, `net`, `config` and `metrics`; never `api` or `peer`.

/// Proposes a write of kind `$kind` (a variant both `internal_request::Request` and
/// `apply_result::Result` have) and answers with its applied result, header completed. A
/// result of another kind can only come from a damaged log.
macro_rules! propose_as {
    ($server:expr, $ctx:expr, $kind:ident($request:expr)) => {
        match $server
            .propose(
                $ctx,
                $crate::proto::cairnraftpb::internal_request::Request::$kind($request),
            )
            .await?
        {
            $crate::proto::cairnraftpb::apply_result::Result::$kind(mut response) => {
                $server.complete_header(&mut response.header);
                Ok(response)
            }
            _ => Err($crate::error::EtcdError::Corrupt),
        }
    };
}

mod auth;
mod cluster;
mod context;
mod disk_space;
mod election;
mod health;
mod identity;
mod kv;
mod leadership;
mod lease;
mod lock;
mod maintenance;
mod membership;
mod metrics;
mod peer_requests;
mod proposer;
mod quota;
mod raft_errors;
mod read_barrier;
mod role;
mod route;
mod snapshot;
mod watch;

pub use context::RequestContext;
pub use election::Observer;
pub use health::{CheckResult, Probe, Unhealthy};
pub use identity::save_identity;
pub use snapshot::SnapshotSender;
pub use watch::{KeyRange, Outgoing, WatchHandle, WatchSpec, WatchStream, NO_WATCH_ID};

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prost::Message;

use crate::alarms::AlarmStore;
use crate::auth::{AuthSettings, AuthStore};
use crate::cluster::Identity;
use crate::config::{ClusterState, Config, MetricsLevel};
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::metrics::{MemberLabels, Metrics};
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
use role::MemberRole;

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

pub struct Server {
    identity: Identity,
    raft: Raft,
    mvcc: Arc<Mvcc>,
    watch: Arc<WatchHub>,
    lessor: Arc<Lessor>,
    auth: Arc<AuthStore>,
    alarms: Arc<AlarmStore>,
    /// `--client-cert-auth`: a verified certificate's common name is the user.
    client_cert_auth: bool,
    /// `--quota-backend-bytes` (etcd's default when 0): the space quota (`quota`).
    quota_backend_bytes: u64,
    store_size_cache: quota::SizeCache,
    /// Maintenance.Snapshot streams being written (`snapshot`).
    snapshots: snapshot::SnapshotSlots,
    /// Free space on the data directory's disk (`disk_space`).
    disk_space: disk_space::DiskSpace,
    /// Connections to the other members.
    peers: Arc<Peers>,
    storage: Arc<Storage>,
    limits: Limits,
    proposer: Proposer,
    read_barrier: ReadBarrier,
    /// The next server-chosen lease ID (`lease`).
    next_lease_id: AtomicU64,
    /// etcd's request timeout: 5 s plus two election timeouts.
    request_timeout: Duration,
    election_timeout: Duration,
    /// Set once this member finds itself removed from the cluster: it should stop.
    removed: tokio::sync::watch::Sender<bool>,
    /// Set while this member has been without a leader for too long (`leadership`).
    leader_lost: tokio::sync::watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl Server {
    /// Opens the data directory and starts Raft; on a fresh directory, bootstraps the
    /// initial cluster. `peer_tls` secures the connections to the other members.
    pub async fn start(
        config: &Config,
        peer_tls: Option<crate::net::tls::Tls>,
    ) -> anyhow::Result<Arc<Server>> {
        let member_dir = config.data_dir.join("member");
        std::fs::create_dir_all(&member_dir)
            .with_context(|| format!("cannot create data dir {}", member_dir.display()))?;
        if raft::is_etcd_member_dir(&member_dir) {
            let flags = Identity::from_config(config);
            raft::take_over(&member_dir, config.bcrypt_cost, &flags.initial_members)
                .context("cannot take over the etcd data directory")?;
        }
        let storage = Arc::new(Storage::open(&member_dir.join("db")).map_err(|e| {
            // RocksDB writes as it opens (it flushes what it recovers from its log).
            if e.is_no_space() {
                let free = crate::storage::free_bytes(&member_dir).unwrap_or(0);
                anyhow::anyhow!(
                    "no space left on the disk of the data directory {} ({free} bytes free):                      cannot open storage; free space there and start the member again                      (nothing was lost): {e}",
                    member_dir.display()
                )
            } else {
                anyhow::Error::new(e)
                    .context(format!("cannot open storage in {}", member_dir.display()))
            }
        })?);
        let peers = Arc::new(Peers::new(peer_tls));
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
        let metrics = Arc::new(Metrics::new(
            &MemberLabels {
                server_id: format!("{:x}", identity.member_id),
                server_version: crate::config::ETCD_API_VERSION.to_string(),
                cluster_version: crate::config::ETCD_CLUSTER_VERSION.to_string(),
            },
            config.metrics == MetricsLevel::Extensive,
        ));
        let mvcc = Mvcc::open_paced(storage.clone(), config.compaction_pace)?;
        let watch = WatchHub::start(mvcc.clone());
        let lessor = Lessor::open(
            storage.clone(),
            min_lease_ttl_secs(config.heartbeat_interval_ms, config.election_timeout_ms),
        )?;
        let auth = AuthStore::open(
            storage.clone(),
            &AuthSettings {
                token: config.auth_token.clone(),
                token_ttl: config.auth_token_ttl,
                bcrypt_cost: config.bcrypt_cost,
            },
        )?;
        let alarms = Arc::new(AlarmStore::open(storage.clone())?);
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
            auth.clone(),
            alarms.clone(),
            peers.clone(),
            member_dir.join("snap"),
            metrics.clone(),
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
        let proposer = Proposer::spawn(raft.clone(), peers.clone(), me);
        let read_barrier = ReadBarrier::spawn(raft.clone(), peers.clone(), me, request_timeout);
        let server = Arc::new(Server {
            identity,
            raft,
            mvcc,
            watch,
            lessor,
            auth,
            alarms,
            client_cert_auth: config.client_tls.client_cert_auth,
            quota_backend_bytes: config.quota_backend_bytes,
            store_size_cache: quota::SizeCache::default(),
            snapshots: snapshot::SnapshotSlots::default(),
            disk_space: disk_space::DiskSpace::default(),
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
            next_lease_id: AtomicU64::new(lease::first_id(me)),
            request_timeout,
            election_timeout: Duration::from_millis(config.election_timeout_ms),
            removed: tokio::sync::watch::channel(false).0,
            leader_lost: tokio::sync::watch::channel(false).0,
            metrics,
        });
        metrics::install_sampler(&server);
        tokio::spawn(metrics::count_leader_changes(
            server.raft.clone(),
            server.metrics.clone(),
        ));
        tokio::spawn(lease::run(Arc::downgrade(&server)));
        tokio::spawn(leadership::monitor_leader(Arc::downgrade(&server)));
        tokio::spawn(membership::run(Arc::downgrade(&server)));
        Ok(server)
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

    /// Publishes this member's name, client URLs and server version through Raft, as etcd
    /// does once it serves: other members list them, and the cluster version follows.
    pub async fn publish(&self) -> Result<(), EtcdError> {
        let attributes = MemberAttributes {
            member_id: self.identity.member_id,
            name: self.identity.name.clone(),
            client_urls: self.identity.client_urls.clone(),
            server_version: crate::config::ETCD_API_VERSION.to_string(),
        };
        let ctx = RequestContext::internal();
        self.propose(&ctx, internal_request::Request::Publish(attributes))
            .await
            .map(|_| ())
    }

    /// Who this member is.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The limits the API enforces before calling in.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The store's current revision.
    pub fn current_revision(&self) -> i64 {
        self.mvcc.current_rev()
    }

    /// Whether the caller may make this call at all, before its request is read, as etcd's
    /// interceptors decide: a learner serves only `Maintenance.Status` and ranges (a
    /// linearizable one is refused later, in `range`), and a caller that asked for a leader
    /// (`hasleader`) is refused without one. `rpc` is the gRPC method's path.
    pub fn admit(&self, rpc: &str, require_leader: bool) -> Result<(), EtcdError> {
        /// RPCs a learner serves: everything but writes and linearizable reads, which it
        /// cannot.
        const LEARNER_RPCS: [&str; 2] =
            ["/etcdserverpb.Maintenance/Status", "/etcdserverpb.KV/Range"];
        if self.is_learner() && !LEARNER_RPCS.contains(&rpc) {
            return Err(EtcdError::NotSupportedForLearner);
        }
        if require_leader && self.leader_id().is_none() {
            return Err(EtcdError::NoLeader);
        }
        Ok(())
    }

    /// When a request with `ctx` must be answered: its own deadline, else the request
    /// timeout from now.
    fn deadline(&self, ctx: &RequestContext) -> tokio::time::Instant {
        ctx.deadline
            .unwrap_or_else(|| tokio::time::Instant::now() + self.request_timeout)
    }

    /// Proposes a write through Raft, with who asked, and waits until it is applied here:
    /// its result.
    async fn propose(
        &self,
        ctx: &RequestContext,
        request: internal_request::Request,
    ) -> Result<apply_result::Result, EtcdError> {
        // Checked where the client called; a forwarded proposal does not come back here.
        self.check_disk_space(ctx)?;
        self.check_quota(&request).await?;
        let mut request = InternalRequest {
            request: Some(request),
            caller: None,
        };
        let caller = self.caller(ctx).await?;
        // Counted as etcd counts its header's user name and auth revision: nothing for a
        // caller without identity, so the same requests pass and fail with auth off.
        let caller_bytes = caller.as_ref().map_or(0, Message::encoded_len);
        let size_bytes = request.encoded_len() + caller_bytes + RAFT_REQUEST_OVERHEAD_BYTES;
        request.caller = caller;
        if size_bytes > self.limits.max_request_bytes {
            return Err(EtcdError::RequestTooLarge);
        }
        // The proposer answers by the request's deadline (see `Proposer::spawn`).
        let deadline = self.deadline(ctx);
        let pending = crate::metrics::Pending::new(&self.metrics.server.proposals_pending);
        let result = self.proposer.propose(request, size_bytes, deadline).await;
        drop(pending);
        let result = result.inspect_err(|_| self.metrics.server.proposals_failed.inc())?;
        match result {
            ApplyResult {
                result: Some(apply_result::Result::Error(n)),
            } => Err(EtcdError::from_number(n)),
            ApplyResult { result: Some(r) } => Ok(r),
            ApplyResult { result: None } => Err(EtcdError::Corrupt),
        }
    }

    /// Returns once this member has applied everything committed before the call, as
    /// confirmed by a quorum (Raft's ReadIndex): what a linearizable read needs. A learner
    /// cannot take part, as in etcd.
    async fn read_barrier(&self, ctx: &RequestContext) -> Result<(), EtcdError> {
        if self.is_learner() {
            return Err(EtcdError::NotSupportedForLearner);
        }
        self.quorum_confirmed(self.deadline(ctx)).await
    }

    /// The read barrier itself, for a caller that cannot be a learner (the leader).
    async fn quorum_confirmed(&self, deadline: tokio::time::Instant) -> Result<(), EtcdError> {
        tokio::time::timeout_at(deadline, self.read_barrier.wait())
            .await
            .map_err(|_| EtcdError::Timeout)?
    }

    /// Runs `read` on a fresh view of the store (a Range, a read-only txn). A compaction that
    /// lands between taking the view and reading it can pass the view's own revision, and the
    /// read would fail with `compacted` though it asked for nothing compacted; etcd makes a
    /// compaction wait for the reads in progress, so there it never does. Such a read is done
    /// again on a new view (at most `READ_ATTEMPTS` times), which is as linearizable: it
    /// still starts after the read barrier.
    fn read<T>(
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

    /// A response header: this cluster and member, the current term, and `revision` (or
    /// the store's current revision when 0).
    fn header(&self, revision: i64) -> ResponseHeader {
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

    /// The header etcd gives cluster (membership) responses: no revision.
    fn cluster_header(&self) -> ResponseHeader {
        ResponseHeader {
            revision: 0,
            ..self.header(0)
        }
    }

    /// Resolves when Raft has stopped on its own: a fatal error (a failed disk or fsync, a
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

    /// A learner in the membership (not one added as a voter, waiting to catch up): it
    /// serves only what etcd lets learners serve.
    fn is_learner(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership: &role::Membership = metrics.membership_config.membership();
        MemberRole::of(membership, self.identity.member_id).is_some_and(MemberRole::is_learner)
    }

    /// Whether this member leads and a quorum still answers it.
    pub fn is_leader(&self) -> bool {
        self.leader_id() == Some(self.identity.member_id)
    }

    /// The leader as clients should see it (see `route::leader_id`).
    fn leader_id(&self) -> Option<u64> {
        route::leader_id(&self.raft, &self.raft.metrics().borrow())
    }

    /// Ends every watch stream (as the member stops), so clients reconnect elsewhere.
    pub fn close_watches(&self) {
        self.watch.close();
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
