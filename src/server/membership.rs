//! Membership seen from this member: the leader makes a member added as a voter (it joined
//! as a learner) a voter once it has caught up, so it then counts in the quorum; and a
//! member that finds itself removed from the cluster stops, as etcd's does.

use std::collections::BTreeSet;
use std::sync::Weak;
use std::time::Duration;

use openraft::ChangeMembers;

use super::role::{learner_in_sync, members_with, MemberRole};
use super::{RequestContext, Server};

const CHECK_INTERVAL: Duration = Duration::from_millis(500);

pub async fn run(node: Weak<Server>) {
    let mut check = tokio::time::interval(CHECK_INTERVAL);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Whether a membership this member has seen listed it. A member that joins replays the
    // log from memberships older than its own add, which do not list it: only a membership
    // that leaves it out after one that had it, and that is applied (committed, not an
    // entry a new leader may still replace), removes it.
    let mut was_member = false;
    loop {
        check.tick().await;
        let Some(node) = node.upgrade() else { return };
        let metrics = node.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let me = node.identity.member_id;
        if membership.get_node(&me).is_some() {
            was_member = true;
        } else if was_member
            && membership.nodes().next().is_some()
            && metrics.membership_config.log_id().as_ref() <= metrics.last_applied.as_ref()
        {
            node.mark_removed();
            return;
        }
        if !node.is_leader() {
            continue;
        }
        let ready: BTreeSet<u64> = members_with(membership, MemberRole::CatchingUp)
            .into_iter()
            .filter(|id| learner_in_sync(&metrics, *id))
            .collect();
        if ready.is_empty() {
            continue;
        }
        let change = ChangeMembers::AddVoterIds(ready.clone());
        match node
            .change_membership(&RequestContext::internal(), change)
            .await
        {
            Ok(()) => tracing::info!(members = ?ready, "added members are voters now"),
            Err(e) => tracing::warn!(error = %e, "making caught-up members voters"),
        }
    }
}
