//! `Status`, `Alarm`, `Defragment`, `HashKV` and `MoveLeader`.

use super::role::MemberRole;
use super::{RequestContext, Server};
use crate::config::ETCD_API_VERSION;
use crate::error::EtcdError;
use crate::proto::etcdserverpb::{
    AlarmResponse, DefragmentResponse, HashKvRequest, HashKvResponse, MoveLeaderRequest,
    MoveLeaderResponse, StatusResponse,
};

impl Server {
    pub fn status(&self, _ctx: &RequestContext) -> StatusResponse {
        let metrics = self.raft.metrics().borrow().clone();
        let db_size = self.storage.size_bytes() as i64;
        StatusResponse {
            header: Some(self.header(0)),
            version: ETCD_API_VERSION.to_string(),
            db_size,
            leader: self.leader_id().unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |l| l.index),
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner: self.is_learner(),
        }
    }

    /// The alarms raised: Cairn raises none yet, so the list is truly empty.
    pub fn alarm_list(&self, _ctx: &RequestContext) -> AlarmResponse {
        AlarmResponse {
            header: Some(self.header(0)),
            alarms: Vec::new(),
        }
    }

    /// Root only, once auth is enabled (as the hashes and membership changes).
    pub async fn defragment(&self, ctx: &RequestContext) -> Result<DefragmentResponse, EtcdError> {
        self.check_admin(ctx).await?;
        let mvcc = self.mvcc.clone();
        tokio::task::spawn_blocking(move || mvcc.defragment())
            .await
            .map_err(|_| EtcdError::Stopped)?;
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
