//! A member's role in the membership: the one place that tells voters from learners.

use crate::raft::MemberInfo;

pub type Membership = openraft::Membership<u64, MemberInfo>;

/// What a member of the membership is, as etcd's clients see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    /// Counts in the quorum.
    Voter,
    /// Added as a voter, it joined Raft as a learner and is made a voter once it has caught
    /// up (`membership`); etcd lists it as a voter, and so does Cairn.
    CatchingUp,
    /// Added as a learner (etcd's `--learner`): serves only what etcd lets learners serve.
    Learner,
}

impl MemberRole {
    /// The role of member `id`, or None if it is not a member.
    pub fn of(membership: &Membership, id: u64) -> Option<MemberRole> {
        let info = membership.get_node(&id)?;
        Some(if membership.voter_ids().any(|v| v == id) {
            MemberRole::Voter
        } else if info.voter_when_caught_up {
            MemberRole::CatchingUp
        } else {
            MemberRole::Learner
        })
    }

    /// Whether etcd's clients see this member as a learner.
    pub fn is_learner(self) -> bool {
        self == MemberRole::Learner
    }
}

/// The members in `membership` with `role`.
pub fn members_with(membership: &Membership, role: MemberRole) -> Vec<u64> {
    membership
        .nodes()
        .map(|(id, _)| *id)
        .filter(|id| MemberRole::of(membership, *id) == Some(role))
        .collect()
}

/// Whether learner `id` has replicated most of the leader's log (etcd's 90% rule); only
/// the leader's metrics know.
pub fn learner_in_sync(metrics: &openraft::RaftMetrics<u64, MemberInfo>, id: u64) -> bool {
    const READY_PERCENT: u64 = 90;
    let leader_index = metrics.last_log_index.unwrap_or(0);
    let matched = metrics
        .replication
        .as_ref()
        .and_then(|r| r.get(&id).cloned().flatten())
        .map_or(0, |log_id| log_id.index);
    matched > 0 && matched * 100 >= leader_index * READY_PERCENT
}
