//! The leader's side of leases: keeps the lessor's primary role in step with Raft
//! leadership, and proposes the revocation of expired leases.

use std::sync::Weak;
use std::time::Duration;

use super::Node;
use crate::proto::cairnraftpb::{internal_request, InternalRequest};
use crate::proto::etcdserverpb::LeaseRevokeRequest;

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
