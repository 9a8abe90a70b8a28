//! Who the leader is, and how a request only the leader serves reaches it: the one
//! implementation of that rule. The proposer, the read barrier, leases and membership
//! changes all route through here, over the peer API's connections (`raft::Peers`).

use std::time::Duration;

use tonic::transport::Channel;

use super::{RequestContext, Server};
use crate::error::EtcdError;
use crate::proto::cairnpeerpb::peer_client::PeerClient;
use crate::raft::{MemberInfo, Peers, Raft};

/// Where requests only the leader can serve go.
pub enum Route {
    /// This member leads.
    Me,
    /// Another member leads: its ID, and a client of its peer API.
    Other(u64, PeerClient<Channel>),
}

impl Route {
    pub fn id(&self, me: u64) -> u64 {
        match self {
            Route::Me => me,
            Route::Other(id, _) => *id,
        }
    }
}

/// Completes once this member knows a leader other than `leader` (it ended or lost its
/// leadership): a request sent to `leader` and still unanswered then will most likely
/// never be, and its caller should stop waiting for it. Never completes while `leader`
/// still leads or no other is known.
pub async fn leader_replaced(raft: &Raft, peers: &Peers, me: u64, leader: u64) {
    let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
    if wait_for_leader(raft, peers, me, Some(leader), far)
        .await
        .is_none()
    {
        std::future::pending::<()>().await;
    }
}

/// Whether a failed peer request certainly never reached the peer: no connection could be
/// made (refused, unreachable, a failed TLS handshake), so nothing was sent. Any other
/// failure may come after the peer received the request.
pub fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// How often a wait for a leader looks again when Raft's metrics do not change: whether a
/// leader counts also depends on how long ago a quorum answered it (`leader_id`).
const LEADER_RECHECK: Duration = Duration::from_millis(50);

/// The leader, waiting for one until `deadline` if there is none (an election, a leader
/// cut off from its quorum) or only `not` (a leader a request to just failed): as in etcd,
/// a request that finds no leader waits for the next election instead of failing at once.
/// `None` at the deadline.
pub async fn wait_for_leader(
    raft: &Raft,
    peers: &Peers,
    me: u64,
    not: Option<u64>,
    deadline: tokio::time::Instant,
) -> Option<Route> {
    let found = || route_to_leader(raft, peers, me).filter(|l| Some(l.id(me)) != not);
    // Nearly always there is one: answered without subscribing to Raft's changes.
    if let Some(leader) = found() {
        return Some(leader);
    }
    let mut metrics = raft.metrics();
    loop {
        metrics.borrow_and_update();
        if let Some(leader) = found() {
            return Some(leader);
        }
        let wait = deadline
            .checked_duration_since(tokio::time::Instant::now())
            .filter(|left| !left.is_zero())?
            .min(LEADER_RECHECK);
        if let Ok(Err(_)) = tokio::time::timeout(wait, metrics.changed()).await {
            // Raft stopped: no leader will come.
            return None;
        }
    }
}

/// How to reach the current leader as this member knows it; `None` while there is none
/// (an election, or no quorum).
pub fn route_to_leader(raft: &Raft, peers: &Peers, me: u64) -> Option<Route> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let leader = leader_id(raft, &metrics)?;
    if leader == me {
        return Some(Route::Me);
    }
    let info = metrics.membership_config.membership().get_node(&leader)?;
    peers
        .client(leader, info)
        .ok()
        .map(|c| Route::Other(leader, c))
}

/// The leader, except that a leader no quorum has answered for longer than an election
/// timeout is no leader: cut off from its peers, it cannot commit anything, and etcd's
/// leader steps down then (CheckQuorum). openraft 0.9's leader does not step down, so
/// Cairn reports it the way etcd would. Nor is a leader that has just been removed from
/// the membership: it has left, and the rest have yet to elect the next one.
pub fn leader_id(raft: &Raft, metrics: &openraft::RaftMetrics<u64, MemberInfo>) -> Option<u64> {
    let leader = metrics.current_leader?;
    metrics.membership_config.membership().get_node(&leader)?;
    let quorum_timeout_ms = raft.config().election_timeout_max;
    let lost_quorum = leader == metrics.id
        && metrics.membership_config.membership().voter_ids().count() > 1
        && metrics
            .millis_since_quorum_ack
            .is_some_and(|ms| ms > quorum_timeout_ms);
    (!lost_quorum).then_some(leader)
}

impl Server {
    /// Where a request only the leader serves goes: here, or another member. Without a
    /// leader it waits for one until the request's deadline, as a proposal waits in etcd,
    /// then `no leader`. A request another member forwarded here is served only if this
    /// member leads (`not leader` otherwise): it is never forwarded twice.
    pub(super) async fn route(&self, ctx: &RequestContext) -> Result<Route, EtcdError> {
        let me = self.identity.member_id;
        if ctx.from_peer {
            return match self.leader_id() {
                Some(id) if id == me => Ok(Route::Me),
                Some(_) => Err(EtcdError::NotLeader),
                None => Err(EtcdError::NoLeader),
            };
        }
        wait_for_leader(&self.raft, &self.peers, me, None, self.deadline(ctx))
            .await
            .ok_or(EtcdError::NoLeader)
    }

    /// Runs `local` if this member leads, else sends the request to the leader with
    /// `remote` (over the peer API) and takes its answer, until the request's deadline.
    pub(super) async fn on_leader<T, L, R>(
        &self,
        ctx: &RequestContext,
        local: impl FnOnce() -> L,
        remote: impl FnOnce(PeerClient<Channel>) -> R,
    ) -> Result<T, EtcdError>
    where
        L: std::future::Future<Output = Result<T, EtcdError>>,
        R: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let deadline = self.deadline(ctx);
        let ctx = &RequestContext {
            deadline: Some(deadline),
            ..ctx.clone()
        };
        match self.route(ctx).await? {
            Route::Me => local().await,
            Route::Other(_, client) => {
                let answer = tokio::time::timeout_at(deadline, remote(client))
                    .await
                    .map_err(|_| EtcdError::Timeout)?;
                answer
                    .map(tonic::Response::into_inner)
                    .map_err(forwarded_error)
            }
        }
    }
}

/// The outcome of a request the leader did not answer with a result: the leader's own
/// etcd error passes as it is; any other failure (the leader unreachable, the connection
/// lost) leaves the outcome unknown, which etcd reports as `request timed out`.
fn forwarded_error(status: tonic::Status) -> EtcdError {
    if std::error::Error::source(&status).is_some() {
        return EtcdError::Timeout;
    }
    EtcdError::from_status(&status).unwrap_or(EtcdError::Timeout)
}
