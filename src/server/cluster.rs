//! `MemberAdd`, `MemberRemove`, `MemberUpdate`, `MemberPromote` and `MemberList`: the
//! membership rules, checked on the leader, and the change through Raft (openraft's joint
//! consensus). A follower forwards the request to the leader over the peer API.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::ChangeMembers;

use super::raft_errors::write_error;
use super::role::{learner_in_sync, members_with, MemberRole, Membership};
use super::{RequestContext, Server};
use crate::error::EtcdError;
use crate::proto::cairnpeerpb::RemovedRequest;
use crate::proto::cairnraftpb::{DowngradeInfoSet, MemberAttributes};
use crate::proto::etcdserverpb::{
    Member, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse,
    MemberUpdateRequest, MemberUpdateResponse,
};
use crate::raft::MemberInfo;

/// etcd allows one learner at a time.
const MAX_LEARNERS: usize = 1;
/// How long a removed member is given to hear that it was removed.
const TELL_REMOVED_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause before a membership change waiting for the one in progress asks again.
const CHANGE_IN_PROGRESS_RETRY: Duration = Duration::from_millis(50);

impl Server {
    /// Adds a member with `peer_urls` (already checked by the API, in etcd's spelling).
    pub async fn member_add(
        &self,
        ctx: &RequestContext,
        r: MemberAddRequest,
    ) -> Result<MemberAddResponse, EtcdError> {
        self.check_admin(ctx).await?;
        let forwarded = r.clone();
        self.on_leader(
            ctx,
            || self.member_add_here(ctx, r),
            |mut leader| async move { leader.member_add(forwarded).await },
        )
        .await
    }

    async fn member_add_here(
        &self,
        ctx: &RequestContext,
        r: MemberAddRequest,
    ) -> Result<MemberAddResponse, EtcdError> {
        let membership = self.membership();
        if membership
            .nodes()
            .any(|(_, n)| n.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExists);
        }
        if r.is_learner && members_with(&membership, MemberRole::Learner).len() >= MAX_LEARNERS {
            return Err(EtcdError::TooManyLearners);
        }
        let now_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id =
            crate::cluster::added_member_id(&r.peer_ur_ls, &self.identity.cluster_token, now_secs);
        // Every member joins as a learner; one added as a voter is made a voter once it has
        // caught up (`membership`), which etcd's quorum counts at once.
        let info = MemberInfo {
            name: String::new(),
            peer_urls: r.peer_ur_ls.clone(),
            client_urls: Vec::new(),
            voter_when_caught_up: !r.is_learner,
        };
        self.change_membership(ctx, ChangeMembers::AddNodes(BTreeMap::from([(id, info)])))
            .await?;
        Ok(MemberAddResponse {
            header: Some(self.cluster_header()),
            member: Some(Member {
                id,
                name: String::new(),
                peer_ur_ls: r.peer_ur_ls,
                client_ur_ls: Vec::new(),
                is_learner: r.is_learner,
            }),
            members: self.members(),
        })
    }

    pub async fn member_remove(
        &self,
        ctx: &RequestContext,
        r: MemberRemoveRequest,
    ) -> Result<MemberRemoveResponse, EtcdError> {
        self.check_admin(ctx).await?;
        self.on_leader(
            ctx,
            || self.member_remove_here(ctx, r.id),
            |mut leader| async move { leader.member_remove(r).await },
        )
        .await
    }

    async fn member_remove_here(
        &self,
        ctx: &RequestContext,
        id: u64,
    ) -> Result<MemberRemoveResponse, EtcdError> {
        let membership = self.membership();
        let info = membership
            .get_node(&id)
            .cloned()
            .ok_or(EtcdError::MemberNotFound)?;
        let changes = if MemberRole::of(&membership, id) == Some(MemberRole::Voter) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.change_membership(ctx, changes).await?;
        // The removed member no longer hears from the leader: tell it, so it stops. Best
        // effort: it may be down already.
        if let Ok(mut removed) = self.peers.client(id, &info) {
            let tell = removed.removed(RemovedRequest {});
            let _ = tokio::time::timeout(TELL_REMOVED_TIMEOUT, tell).await;
        }
        Ok(MemberRemoveResponse {
            header: Some(self.cluster_header()),
            members: self.members(),
        })
    }

    /// Gives a member new peer URLs (already checked by the API, in etcd's spelling).
    pub async fn member_update(
        &self,
        ctx: &RequestContext,
        r: MemberUpdateRequest,
    ) -> Result<MemberUpdateResponse, EtcdError> {
        self.check_admin(ctx).await?;
        let forwarded = r.clone();
        self.on_leader(
            ctx,
            || self.member_update_here(ctx, r),
            |mut leader| async move { leader.member_update(forwarded).await },
        )
        .await
    }

    async fn member_update_here(
        &self,
        ctx: &RequestContext,
        r: MemberUpdateRequest,
    ) -> Result<MemberUpdateResponse, EtcdError> {
        let membership = self.membership();
        let current = membership
            .get_node(&r.id)
            .ok_or(EtcdError::MemberNotFound)?;
        if membership
            .nodes()
            .any(|(id, n)| *id != r.id && n.peer_urls.iter().any(|u| r.peer_ur_ls.contains(u)))
        {
            return Err(EtcdError::PeerUrlExists);
        }
        let info = MemberInfo {
            peer_urls: r.peer_ur_ls,
            ..current.clone()
        };
        self.change_membership(ctx, ChangeMembers::SetNodes(BTreeMap::from([(r.id, info)])))
            .await?;
        Ok(MemberUpdateResponse {
            header: Some(self.cluster_header()),
            members: self.members(),
        })
    }

    pub async fn member_promote(
        &self,
        ctx: &RequestContext,
        r: MemberPromoteRequest,
    ) -> Result<MemberPromoteResponse, EtcdError> {
        self.check_admin(ctx).await?;
        self.on_leader(
            ctx,
            || self.member_promote_here(ctx, r.id),
            |mut leader| async move { leader.member_promote(r).await },
        )
        .await
    }

    async fn member_promote_here(
        &self,
        ctx: &RequestContext,
        id: u64,
    ) -> Result<MemberPromoteResponse, EtcdError> {
        match MemberRole::of(&self.membership(), id) {
            None => return Err(EtcdError::MemberNotFound),
            Some(MemberRole::Voter | MemberRole::CatchingUp) => {
                return Err(EtcdError::MemberNotLearner)
            }
            Some(MemberRole::Learner) => {}
        }
        if !learner_in_sync(&self.raft.metrics().borrow(), id) {
            return Err(EtcdError::LearnerNotReady);
        }
        self.change_membership(ctx, ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await?;
        Ok(MemberPromoteResponse {
            header: Some(self.cluster_header()),
            members: self.members(),
        })
    }

    /// A `linearizable` list (etcd 3.5) comes after a read barrier.
    pub async fn member_list(
        &self,
        ctx: &RequestContext,
        r: MemberListRequest,
    ) -> Result<MemberListResponse, EtcdError> {
        if r.linearizable {
            self.read_barrier(ctx).await?;
        }
        Ok(MemberListResponse {
            header: Some(self.cluster_header()),
            members: self.members(),
        })
    }

    /// The membership as this member knows it.
    pub(super) fn membership(&self) -> Membership {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
    }

    /// The cluster version, by etcd's rule: the lowest major.minor among the server versions
    /// of the members, as they published them (a member that has not published yet does not
    /// count; one that published no version served 3.4), or a downgrade's target while one is
    /// in progress. None, etcd's "not decided", until a member has published.
    pub fn cluster_version(&self) -> Option<(u64, u64)> {
        let membership = self.membership();
        let published = crate::members::published_members(&self.storage);
        let lowest = lowest_version(membership.nodes().filter_map(|(id, _)| published.get(id)))?;
        let downgrade = self.downgrade_in_progress();
        Some(
            downgrade
                .and_then(|d| major_minor(&d.target_version))
                .unwrap_or(lowest),
        )
    }

    /// The downgrade enabled and not cancelled, if any.
    pub(super) fn downgrade_in_progress(&self) -> Option<DowngradeInfoSet> {
        crate::members::MemberStore::new(&self.storage).downgrade()
    }

    /// The storage version etcd 3.6+ reports (`Status`, `/version`): it follows the cluster
    /// version, as major.minor.0; None while that is not decided.
    pub fn storage_version(&self) -> Option<String> {
        self.cluster_version()
            .map(|(major, minor)| format!("{major}.{minor}.0"))
    }

    /// Members as Raft's membership has them, with the name and client URLs each
    /// published (a member that has not started yet has neither, as in etcd).
    pub(super) fn members(&self) -> Vec<Member> {
        let membership = self.membership();
        let published = crate::members::published_members(&self.storage);
        membership
            .nodes()
            .map(|(id, info)| {
                let (name, client_urls) = match published.get(id) {
                    Some(p) => (p.name.clone(), p.client_urls.clone()),
                    None => (info.name.clone(), info.client_urls.clone()),
                };
                Member {
                    id: *id,
                    name,
                    peer_ur_ls: info.peer_urls.clone(),
                    client_ur_ls: client_urls,
                    is_learner: MemberRole::of(&membership, *id)
                        .is_some_and(MemberRole::is_learner),
                }
            })
            .collect()
    }

    /// Changes the membership through Raft, on the leader, by the request's deadline. A
    /// change that finds another still in progress (the promotion of a caught-up member,
    /// a concurrent request) waits for it and is tried again: nothing was appended.
    pub(super) async fn change_membership(
        &self,
        ctx: &RequestContext,
        changes: ChangeMembers<u64, MemberInfo>,
    ) -> Result<(), EtcdError> {
        let deadline = self.deadline(ctx);
        loop {
            let change = self.raft.change_membership(changes.clone(), false);
            let outcome = tokio::time::timeout_at(deadline, change)
                .await
                .map_err(|_| EtcdError::Timeout)?;
            match outcome {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    ChangeMembershipError::InProgress(_),
                ))) if tokio::time::Instant::now() + CHANGE_IN_PROGRESS_RETRY < deadline => {
                    tokio::time::sleep(CHANGE_IN_PROGRESS_RETRY).await;
                }
                Err(e) => return Err(write_error(e)),
            }
        }
    }
}

/// The lowest major.minor of the server versions `published`.
fn lowest_version<'a>(published: impl Iterator<Item = &'a MemberAttributes>) -> Option<(u64, u64)> {
    published
        .filter_map(|p| {
            let version = match p.server_version.as_str() {
                "" => crate::config::UNPUBLISHED_SERVER_VERSION,
                v => v,
            };
            major_minor(version)
        })
        .min()
}

/// The major and minor numbers of a version such as `3.7.3`; None if it is not one.
pub(super) fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published(server_version: &str) -> MemberAttributes {
        MemberAttributes {
            server_version: server_version.to_string(),
            ..MemberAttributes::default()
        }
    }

    #[test]
    fn the_cluster_version_is_the_lowest_members_major_minor() {
        assert_eq!(
            lowest_version([].iter()),
            None,
            "nobody published: not decided"
        );
        let same = [published("3.7.3"), published("3.7.3")];
        assert_eq!(lowest_version(same.iter()), Some((3, 7)));
        let upgrading = [published("3.7.3"), published("3.4.0"), published("3.7.3")];
        assert_eq!(lowest_version(upgrading.iter()), Some((3, 4)));
        // A member from before versions were published served 3.4.
        let older = [published("3.7.3"), published("")];
        assert_eq!(lowest_version(older.iter()), Some((3, 4)));
        assert_eq!(
            lowest_version([published("3.10.0"), published("3.9.1")].iter()),
            Some((3, 9))
        );
    }

    #[test]
    fn versions_are_read_as_major_and_minor() {
        assert_eq!(major_minor("3.7.3"), Some((3, 7)));
        assert_eq!(major_minor("3.4"), Some((3, 4)));
        assert_eq!(major_minor("three"), None);
        assert_eq!(major_minor("3"), None);
    }
}
