//! Leadership transfer: a stopping leader hands over, and MoveLeader.

use std::time::Duration;

use super::Node;
use crate::error::EtcdError;

impl Node {
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
}
