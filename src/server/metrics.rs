//! This member's metrics (`crate::metrics`): made at start, sampled from the member's state
//! at each render, and the leader changes it sees.

use std::sync::{Arc, Weak};

use super::Server;
use crate::metrics::{Metrics, Sample};
use crate::raft::Raft;

impl Server {
    /// This member's metrics: `render()` answers `GET /metrics`; the client port counts
    /// its gRPC calls through `grpc`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What the sampled series report now.
    fn sample(&self) -> Sample {
        // One reading of Raft's state, so that leader and applied index agree.
        let raft = self.raft.metrics().borrow().clone();
        let leader = super::route::leader_id(&self.raft, &raft);
        let applied_index = raft.last_applied.map_or(0, |l| l.index);
        let ops = self.mvcc.op_counts();
        let watches = self.watch.counts();
        let size = self.storage.store_size();
        Sample {
            has_leader: leader.is_some(),
            is_leader: leader == Some(self.identity.member_id),
            is_learner: self.is_learner(),
            applied_index,
            ranges: ops.ranges,
            puts: ops.puts,
            deletes: ops.deletes,
            txns: ops.txns,
            live_keys: self.mvcc.live_keys(),
            current_revision: self.mvcc.current_rev(),
            compact_revision: self.mvcc.compact_rev(),
            db_size_bytes: size.total_bytes,
            db_size_in_use_bytes: size.in_use_bytes,
            watch_streams: watches.streams,
            watchers: watches.watchers,
            slow_watchers: watches.slow_watchers,
            events: watches.events_sent,
            cluster_version: self.cluster_version(),
        }
    }
}

/// Lets `render` sample the member while it runs (and nothing once it is gone).
pub(super) fn install_sampler(server: &Arc<Server>) {
    let member: Weak<Server> = Arc::downgrade(server);
    server.metrics.set_sampler(move || {
        member
            .upgrade()
            .map(|member| member.sample())
            .unwrap_or_default()
    });
}

/// Counts each change to a known leader, as etcd does (a leader, then none, then the same
/// one again is two changes). Wakes only when Raft's server state changes.
pub(super) async fn count_leader_changes(raft: Raft, metrics: Arc<Metrics>) {
    let mut server_state = raft.server_metrics();
    let mut last_leader = None;
    loop {
        let leader = server_state.borrow_and_update().current_leader;
        if leader.is_some() && leader != last_leader {
            metrics.server.leader_changes_seen.inc();
        }
        last_leader = leader;
        if server_state.changed().await.is_err() {
            return;
        }
    }
}
