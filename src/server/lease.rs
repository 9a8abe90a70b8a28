//! `LeaseGrant`, `LeaseRevoke`, `LeaseKeepAlive`, `LeaseTimeToLive` and `LeaseLeases`.
//! Keep-alives and time-to-live are the leader's to answer: routed there. And what the
//! server does for the lessor (`lease`, which keeps expiry and finds expired leases): tells
//! it when this member leads, and proposes the revocation of the leases it finds expired,
//! as etcd's server does with its lessor.

use std::sync::atomic::Ordering;
use std::sync::Weak;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{RequestContext, Server};
use crate::error::EtcdError;
use crate::lease::NO_LEASE;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

/// How often leadership is looked at when Raft reports no change.
const LEADERSHIP_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The first server-chosen lease ID, as etcd makes them: the member ID's low 16 bits, then
/// the start time in milliseconds (40 bits), then a counter (8 bits, carrying into the time).
pub(super) fn first_id(member_id: u64) -> u64 {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    ((member_id & 0xffff) << 48) | ((now_ms & ((1 << 40) - 1)) << 8)
}

impl Server {
    /// A grant; the server chooses the ID when the request leaves it 0.
    pub async fn lease_grant(
        &self,
        ctx: &RequestContext,
        mut r: LeaseGrantRequest,
    ) -> Result<LeaseGrantResponse, EtcdError> {
        if r.id == NO_LEASE {
            r.id = self.choose_lease_id();
        }
        propose_as!(self, ctx, LeaseGrant(r))
    }

    pub async fn lease_revoke(
        &self,
        ctx: &RequestContext,
        r: LeaseRevokeRequest,
    ) -> Result<LeaseRevokeResponse, EtcdError> {
        propose_as!(self, ctx, LeaseRevoke(r))
    }

    /// A keep-alive, answered by the leader: the TTL, 0 for an unknown (or just expired)
    /// lease, as etcd answers. The header is this member's, as etcd's.
    pub async fn lease_keep_alive(
        &self,
        ctx: &RequestContext,
        id: i64,
    ) -> Result<LeaseKeepAliveResponse, EtcdError> {
        let renewed = self
            .on_leader(
                ctx,
                || self.lease_renew_here(id),
                |mut leader| async move {
                    leader
                        .lease_keep_alive(LeaseKeepAliveRequest { id })
                        .await
                },
            )
            .await?;
        Ok(LeaseKeepAliveResponse {
            header: Some(self.header(0)),
            ..renewed
        })
    }

    /// A keep-alive this member answers as the leader. A quorum confirms the leadership
    /// first (a read-index round, shared with concurrent reads): a leader deposed without
    /// knowing it (its Raft core stalled in a disk write, or cut off) must not renew a
    /// lease that the new leader may already have revoked and another client taken over
    /// (etcd #15247).
    async fn lease_renew_here(&self, id: i64) -> Result<LeaseKeepAliveResponse, EtcdError> {
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        self.quorum_confirmed(deadline).await?;
        // The round may have gone to a new leader elected meanwhile: renew only if this
        // member still leads after it, as etcd checks again.
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        Ok(LeaseKeepAliveResponse {
            header: None,
            id,
            ttl: self.lessor.renew(id)?.unwrap_or(0),
        })
    }

    /// A lease's remaining TTL, as the leader (which keeps expiry times) knows it; -1 for an
    /// unknown lease, as etcd answers.
    pub async fn lease_time_to_live(
        &self,
        ctx: &RequestContext,
        r: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, EtcdError> {
        let forwarded = r.clone();
        let answer = self
            .on_leader(
                ctx,
                || async { Ok(self.lease_time_to_live_here(r)) },
                |mut leader| async move { leader.lease_time_to_live(forwarded).await },
            )
            .await?;
        Ok(LeaseTimeToLiveResponse {
            header: Some(self.header(0)),
            ..answer
        })
    }

    fn lease_time_to_live_here(&self, r: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let header = None;
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

    /// Every lease, as this member has applied them.
    pub fn lease_leases(&self, _ctx: &RequestContext) -> LeaseLeasesResponse {
        LeaseLeasesResponse {
            header: Some(self.header(0)),
            leases: self
                .lessor
                .leases()
                .into_iter()
                .map(|id| LeaseStatus { id })
                .collect(),
        }
    }

    fn choose_lease_id(&self) -> i64 {
        loop {
            let id = (self.next_lease_id.fetch_add(1, Ordering::Relaxed) + 1) & (i64::MAX as u64);
            if id as i64 != NO_LEASE {
                return id as i64;
            }
        }
    }

    /// The lessor keeps expiry times while this member leads, and only then.
    fn follow_leadership(&self) {
        let leader = self.is_leader();
        if leader && !self.lessor.is_primary() {
            self.lessor.promote(self.election_timeout);
        } else if !leader && self.lessor.is_primary() {
            self.lessor.demote();
        }
    }
}

/// Follows leadership on every Raft change, and proposes the revocation of the leases the
/// lessor finds expired. Ends with the server.
pub(super) async fn run(server: Weak<Server>) {
    let Some((mut metrics, mut expired_leases)) = server
        .upgrade()
        .map(|s| (s.raft.metrics(), s.lessor.expired_leases()))
    else {
        return;
    };
    // Leadership also lapses without a Raft change (a leader that no quorum answers).
    let mut check = tokio::time::interval(LEADERSHIP_CHECK_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let expired = tokio::select! {
            changed = metrics.changed() => { if changed.is_err() { return } None }
            _ = check.tick() => None,
            expired = expired_leases.recv() => match expired {
                Some(expired) => Some(expired),
                None => return,
            },
        };
        let Some(server) = server.upgrade() else {
            return;
        };
        server.follow_leadership();
        let Some(expired) = expired else { continue };
        // Proposed together, they share Raft entries; one that fails is offered again by
        // the lessor. Not awaited here, so leadership is still followed.
        tokio::spawn(async move {
            let ctx = RequestContext::internal();
            let revokes = expired
                .into_iter()
                .map(|id| server.lease_revoke(&ctx, LeaseRevokeRequest { id }));
            for result in futures::future::join_all(revokes).await {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "revoking an expired lease");
                }
            }
        });
    }
}
