//! Leadership transfer (a stopping leader hands over, and MoveLeader), and the monitor
//! that tells streams which asked for a leader when there has been none for too long.

use std::sync::Weak;
use std::time::Duration;

use super::Server;
use crate::error::EtcdError;

/// Election timeouts without a leader after which streams that require one end, as etcd's
/// `monitorLeader` decides (kube-apiserver then moves to a member that has a leader).
const MAX_ELECTIONS_WITHOUT_LEADER: u32 = 3;

/// Checks once per election timeout whether a leader is known; after
/// `MAX_ELECTIONS_WITHOUT_LEADER` checks in a row without one, `Server::leader_lost` fires
/// (until a leader is known again).
pub(super) async fn monitor_leader(node: Weak<Server>) {
    let Some(period) = node.upgrade().map(|n| n.election_timeout) else {
        return;
    };
    let mut check = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checks_without_leader = 0;
    loop {
        check.tick().await;
        let Some(node) = node.upgrade() else { return };
        if node.leader_id().is_some() {
            checks_without_leader = 0;
        } else {
            checks_without_leader += 1;
        }
        let lost = checks_without_leader >= MAX_ELECTIONS_WITHOUT_LEADER;
        node.leader_lost
            .send_if_modified(|was| std::mem::replace(was, lost) != lost);
    }
}

impl Server {
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

    /// Resolves once this member has been without a leader for `MAX_ELECTIONS_WITHOUT_LEADER`
    /// election timeouts (at once if it is now): streams that require a leader then end.
    pub async fn leader_lost(&self) {
        let mut lost = self.leader_lost.subscribe();
        let _ = lost.wait_for(|lost| *lost).await;
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
}
