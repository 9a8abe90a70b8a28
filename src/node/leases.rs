//! Leases on a member: keep-alives and time-to-live go to the leader (which alone keeps
//! expiry times); the lessor's primary role follows Raft leadership; the leader proposes
//! the revocation of expired leases.

use std::sync::Weak;
use std::time::Duration;

use super::Node;
use crate::error::EtcdError;
use crate::proto::cairnraftpb::{internal_request, InternalRequest};
use crate::proto::etcdserverpb::LeaseRevokeRequest;
use crate::proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::raft;

/// How often expiry is checked, as etcd does.
const CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Revokes proposed per check: a burst of expiries is spread out, so writes keep flowing
/// (etcd allows 1000 a second; twice that here, since revokes share Raft entries).
const MAX_REVOKES_PER_CHECK: usize = 1000;

pub async fn run(node: Weak<Node>) {
    let Some(mut metrics) = node.upgrade().map(|n| n.raft.metrics()) else {
        return;
    };
    let mut check = tokio::time::interval(CHECK_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Metrics change on every apply; only a check tick looks for expired leases.
        let tick = tokio::select! {
            changed = metrics.changed() => { if changed.is_err() { return } false }
            _ = check.tick() => true,
        };
        let Some(node) = node.upgrade() else { return };
        follow_leadership(&node);
        if !tick {
            continue;
        }
        let expired = node.lessor.take_expired(MAX_REVOKES_PER_CHECK);
        if expired.is_empty() {
            continue;
        }
        // Proposed together, they share Raft entries; one that fails is offered again
        // (`lease::REVOKE_RETRY`). Not awaited here, so leadership is still followed.
        tokio::spawn(async move {
            let revokes = expired.into_iter().map(|id| {
                node.propose(InternalRequest {
                    request: Some(internal_request::Request::LeaseRevoke(LeaseRevokeRequest {
                        id,
                    })),
                })
            });
            for result in futures::future::join_all(revokes).await {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "revoking an expired lease");
                }
            }
        });
    }
}

fn follow_leadership(node: &Node) {
    let leader = node.is_leader();
    if leader && !node.lessor.is_primary() {
        node.lessor.promote(node.election_timeout);
    } else if !leader && node.lessor.is_primary() {
        node.lessor.demote();
    }
}

impl Node {
    /// A lease keep-alive, answered by the leader: the TTL, 0 for an unknown lease.
    pub async fn lease_renew(&self, id: i64) -> Result<i64, EtcdError> {
        match raft::leader(&self.raft, &self.peers, self.identity.member_id) {
            Some(raft::Leader::Me) => self.lease_renew_as_leader(id).await,
            Some(raft::Leader::Other(_, mut leader)) => {
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

    /// A keep-alive this member answers as the leader (its own clients' and those followers
    /// forward). A quorum confirms the leadership first (a read-index round, shared with
    /// concurrent reads): a leader deposed without knowing it (its Raft core stalled in a
    /// disk write, or cut off) must not renew a lease that the new leader may already have
    /// revoked and another client taken over (etcd #15247).
    pub async fn lease_renew_as_leader(&self, id: i64) -> Result<i64, EtcdError> {
        self.read_barrier().await?;
        // The round may have gone to a new leader elected meanwhile: renew only if this
        // member still leads after it, as etcd checks again.
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        Ok(self.lessor.renew(id)?.unwrap_or(0))
    }

    /// A lease's remaining TTL, as the leader (which keeps expiry times) knows it.
    pub async fn lease_time_to_live(
        &self,
        request: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        match raft::leader(&self.raft, &self.peers, self.identity.member_id) {
            Some(raft::Leader::Me) => Ok(self.local_lease_time_to_live(request)),
            Some(raft::Leader::Other(_, mut leader)) => {
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
}
