//! `etcdserverpb.Maintenance`: status, alarms and defragmentation; the rest not yet.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{not_yet, BoxStream};
use crate::config::ETCD_API_VERSION;
use crate::error::EtcdError;
use crate::node::Node;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::*;

pub struct MaintenanceService {
    node: Arc<Node>,
}

impl MaintenanceService {
    pub fn new(node: Arc<Node>) -> MaintenanceService {
        MaintenanceService { node }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        // Cairn raises no alarms yet, so the list is truly empty; changing alarms is not built.
        match AlarmAction::try_from(request.get_ref().action) {
            Ok(AlarmAction::Get) => Ok(Response::new(AlarmResponse {
                header: Some(self.node.header(0)),
                alarms: Vec::new(),
            })),
            _ => Err(not_yet("Maintenance.Alarm activate/deactivate")),
        }
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let metrics = self.node.raft.metrics().borrow().clone();
        let db_size = self.node.storage.size_bytes() as i64;
        Ok(Response::new(StatusResponse {
            header: Some(self.node.header(0)),
            version: ETCD_API_VERSION.to_string(),
            db_size,
            leader: self.node.leader_id().unwrap_or(0),
            raft_index: metrics.last_log_index.unwrap_or(0),
            raft_term: metrics.current_term,
            raft_applied_index: metrics.last_applied.map_or(0, |l| l.index),
            errors: Vec::new(),
            db_size_in_use: db_size,
            is_learner: self.node.is_learner(),
        }))
    }

    async fn defragment(
        &self,
        _: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        // RocksDB's equivalent of defragmentation: a full compaction of the key-value data.
        let storage = self.node.storage.clone();
        tokio::task::spawn_blocking(move || {
            let cf = storage.cf(crate::storage::CF_KV);
            storage
                .db()
                .compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
        // etcd answers defragmentation with no header at all.
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(not_yet("Maintenance.Hash"))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let mvcc = self.node.mvcc.clone();
        let rev = request.get_ref().revision;
        // Reads the whole history: off the async workers.
        let hashed = tokio::task::spawn_blocking(move || mvcc.hash_kv(rev))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(HashKvResponse {
            header: Some(self.node.header(hashed.current_rev)),
            hash: hashed.hash,
            compact_revision: hashed.compact_rev,
        }))
    }

    type SnapshotStream = BoxStream<SnapshotResponse>;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_yet("Maintenance.Snapshot"))
    }

    /// Leadership transfer, asked of the leader, as etcd's.
    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let target = request.into_inner().target_id;
        if !self.node.is_leader() {
            return Err(EtcdError::NotLeader.into());
        }
        let metrics = self.node.raft.metrics().borrow().clone();
        if !metrics
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id == target)
        {
            return Err(Status::failed_precondition(
                "etcdserver: bad leader transferee",
            ));
        }
        if target != self.node.identity.member_id {
            self.node
                .transfer_leadership(target, self.node.request_timeout())
                .await
                .map_err(|_| {
                    Status::unavailable(
                        "etcdserver: request timed out, leader transfer took too long",
                    )
                })?;
        }
        Ok(Response::new(MoveLeaderResponse {
            header: Some(self.node.header(0)),
        }))
    }

    async fn downgrade(
        &self,
        _: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_yet("Maintenance.Downgrade"))
    }
}
