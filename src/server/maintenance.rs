//! `Status`, `Alarm` (the alarms are `alarms`'), `Defragment`, `Hash`, `HashKV`, `MoveLeader` and `Downgrade`.

use super::role::MemberRole;
use super::{RequestContext, Server};
use crate::config::ETCD_API_VERSION;
use crate::error::EtcdError;
use crate::proto::cairnraftpb::{apply_result, internal_request, DowngradeInfoSet};
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::downgrade_request::DowngradeAction;
use crate::proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentResponse, DowngradeInfo,
    DowngradeRequest, DowngradeResponse, HashKvRequest, HashKvResponse, HashResponse,
    MoveLeaderRequest, MoveLeaderResponse, StatusResponse,
};

impl Server {
    pub fn status(&self, _ctx: &RequestContext) -> StatusResponse {
        let metrics = self.raft.metrics().borrow().clone();
        let size = self.storage.store_size();
        StatusResponse {
            header: Some(self.header(0)),
            version: ETCD_API_VERSION.to_string(),
            db_size: size.total_bytes as i64,
            leader: self.leader_id().unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |l| l.index),
            errors: Vec::new(),
            db_size_in_use: size.in_use_bytes as i64,
            is_learner: self.is_learner(),
            storage_version: self.storage_version().unwrap_or_default(),
            db_size_quota: i64::try_from(self.quota_backend_bytes).unwrap_or(i64::MAX),
            downgrade_info: Some(match self.downgrade_in_progress() {
                Some(d) => DowngradeInfo {
                    target_version: d.target_version,
                    enabled: true,
                },
                None => DowngradeInfo::default(),
            }),
        }
    }

    /// The alarms this member has applied, of every type.
    pub fn alarm_list(&self) -> Vec<AlarmMember> {
        self.alarms.list(AlarmType::None)
    }

    /// etcd's Alarm: GET lists the alarms after a read barrier (etcd reads them through
    /// Raft); ACTIVATE and DEACTIVATE go through Raft. Any user may, as in etcd 3.4, whose
    /// permissions Cairn's Auth follows (3.7 wants root for the changes).
    pub async fn alarm(
        &self,
        ctx: &RequestContext,
        r: AlarmRequest,
    ) -> Result<AlarmResponse, EtcdError> {
        match AlarmAction::try_from(r.action) {
            Ok(AlarmAction::Get) => {
                self.read_barrier(ctx).await?;
                let alarm = AlarmType::try_from(r.alarm).unwrap_or(AlarmType::None);
                Ok(AlarmResponse {
                    header: Some(self.header(0)),
                    alarms: self.alarms.list(alarm),
                })
            }
            _ => propose_as!(self, ctx, Alarm(r)),
        }
    }

    /// Root only, once auth is enabled (as the hashes and membership changes).
    pub async fn defragment(&self, ctx: &RequestContext) -> Result<DefragmentResponse, EtcdError> {
        self.check_admin(ctx).await?;
        let mvcc = self.mvcc.clone();
        tokio::task::spawn_blocking(move || mvcc.defragment())
            .await
            .map_err(|_| EtcdError::Stopped)?;
        self.forget_store_size();
        // etcd answers defragmentation with no header at all.
        Ok(DefragmentResponse { header: None })
    }

    pub async fn hash_kv(
        &self,
        ctx: &RequestContext,
        r: HashKvRequest,
    ) -> Result<HashKvResponse, EtcdError> {
        self.check_admin(ctx).await?;
        let mvcc = self.mvcc.clone();
        // Reads the whole history: off the async workers.
        let hashed = tokio::task::spawn_blocking(move || mvcc.hash_kv(r.revision))
            .await
            .map_err(|_| EtcdError::Stopped)??;
        Ok(HashKvResponse {
            header: Some(self.header(hashed.current_rev)),
            hash: hashed.hash,
            compact_revision: hashed.compact_rev,
            hash_revision: hashed.hash_rev,
        })
    }

    /// Root only, as `hash_kv`. A hash of the state machine's records (`Mvcc::hash`), not
    /// of a file as etcd's: equal on members that applied the same entries.
    pub async fn hash(&self, ctx: &RequestContext) -> Result<HashResponse, EtcdError> {
        self.check_admin(ctx).await?;
        let mvcc = self.mvcc.clone();
        // Reads every record: off the async workers.
        let hashed = tokio::task::spawn_blocking(move || mvcc.hash())
            .await
            .map_err(|_| EtcdError::Stopped)??;
        Ok(HashResponse {
            header: Some(self.header(hashed.rev)),
            hash: hashed.hash,
        })
    }

    /// etcd 3.7's Downgrade, root only. VALIDATE and ENABLE check the target as etcd does
    /// (one minor below the cluster version, no downgrade in progress, after a read
    /// barrier). ENABLE records the downgrade through Raft, and the cluster version follows
    /// its target; CANCEL ends it (with nothing to cancel, etcd answers success all the
    /// same). Both answer the cluster version from before the change, as etcd does (its
    /// version monitor moves the cluster version afterwards). Cairn serves the same API
    /// whatever the cluster version: the downgrade is finished by replacing members with an
    /// older release. Without a cluster version yet, every action is refused (etcd's
    /// VALIDATE error; etcd's ENABLE and CANCEL do not expect that case).
    pub async fn downgrade(
        &self,
        ctx: &RequestContext,
        r: DowngradeRequest,
    ) -> Result<DowngradeResponse, EtcdError> {
        self.check_admin(ctx).await?;
        let action = DowngradeAction::try_from(r.action).map_err(|_| EtcdError::UnknownMethod)?;
        let checks_target = matches!(action, DowngradeAction::Validate | DowngradeAction::Enable);
        let target = match checks_target {
            true => Some(downgrade_target_of(&r.version)?),
            false => None,
        };
        let (major, minor) = self
            .cluster_version()
            .ok_or(EtcdError::ClusterVersionUnavailable)?;
        if let Some(target) = target {
            self.read_barrier(ctx).await?;
            // Re-read: the barrier may have applied a member's newer version.
            let (major, minor) = self
                .cluster_version()
                .ok_or(EtcdError::ClusterVersionUnavailable)?;
            if minor == 0 || target != (major, minor - 1) {
                return Err(EtcdError::InvalidDowngradeTargetVersion);
            }
            if self.downgrade_in_progress().is_some() {
                return Err(EtcdError::DowngradeInProcess);
            }
        }
        let change = match action {
            DowngradeAction::Enable => target.map(|(major, minor)| DowngradeInfoSet {
                enabled: true,
                target_version: format!("{major}.{minor}.0"),
            }),
            DowngradeAction::Cancel => {
                self.read_barrier(ctx).await?;
                self.downgrade_in_progress()
                    .map(|_| DowngradeInfoSet::default())
            }
            DowngradeAction::Validate => None,
        };
        if let Some(change) = change {
            match self
                .propose(ctx, internal_request::Request::DowngradeInfoSet(change))
                .await?
            {
                apply_result::Result::Downgrade(_) => {}
                _ => return Err(EtcdError::Corrupt),
            }
        }
        Ok(DowngradeResponse {
            header: Some(self.header(0)),
            version: format!("{major}.{minor}"),
        })
    }

    /// Leadership transfer, asked of the leader, as etcd's.
    pub async fn move_leader(
        &self,
        ctx: &RequestContext,
        r: MoveLeaderRequest,
    ) -> Result<MoveLeaderResponse, EtcdError> {
        if !self.is_leader() {
            return Err(EtcdError::NotLeader);
        }
        let target = r.target_id;
        if MemberRole::of(&self.membership(), target) != Some(MemberRole::Voter) {
            return Err(EtcdError::BadLeaderTransferee);
        }
        if target != self.identity.member_id {
            let within = self.deadline(ctx) - tokio::time::Instant::now();
            self.transfer_leadership(target, within)
                .await
                .map_err(|_| EtcdError::LeaderTransferTimeout)?;
        }
        Ok(MoveLeaderResponse {
            header: Some(self.header(0)),
        })
    }
}

/// A downgrade target as etcd reads it: a semantic version, or major.minor; only major and
/// minor count. A negative number is no version the cluster can have.
fn downgrade_target_of(v: &str) -> Result<(u64, u64), EtcdError> {
    let (major, minor) = semver_major_minor(v)
        .or_else(|| semver_major_minor(&format!("{v}.0")))
        .ok_or(EtcdError::WrongDowngradeVersionFormat)?;
    match (u64::try_from(major), u64::try_from(minor)) {
        (Ok(major), Ok(minor)) => Ok((major, minor)),
        _ => Err(EtcdError::InvalidDowngradeTargetVersion),
    }
}

/// Major and minor of a version as go-semver parses it (`MAJOR.MINOR.PATCH[-pre][+meta]`),
/// which etcd uses; None where it fails.
fn semver_major_minor(v: &str) -> Option<(i64, i64)> {
    let (v, metadata) = v.split_once('+').unwrap_or((v, ""));
    let (v, pre_release) = v.split_once('-').unwrap_or((v, ""));
    let parts: Vec<&str> = v.splitn(3, '.').collect();
    let identifier = |id: &str| {
        id.is_empty()
            || id.split('.').all(|part| {
                !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            })
    };
    if parts.len() != 3 || !identifier(pre_release) || !identifier(metadata) {
        return None;
    }
    let numbers: Vec<i64> = parts
        .iter()
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    Some((numbers[0], numbers[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downgrade_targets_parse_as_etcd_reads_them() {
        assert_eq!(downgrade_target_of("3.6"), Ok((3, 6)));
        assert_eq!(downgrade_target_of("3.6.9"), Ok((3, 6)));
        assert_eq!(downgrade_target_of("3.6.0-alpha.1+build-2"), Ok((3, 6)));
        assert_eq!(downgrade_target_of("3.6.0-"), Ok((3, 6)));
        for wrong in [
            "",
            "3",
            "v3.6",
            "+3.6",
            "3.6-alpha",
            "3.6.0.1",
            "3.6.x",
            "3.6.0-a..b",
        ] {
            assert_eq!(
                downgrade_target_of(wrong),
                Err(EtcdError::WrongDowngradeVersionFormat),
                "{wrong:?}"
            );
        }
    }
}
