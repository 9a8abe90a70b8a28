//! `etcdserverpb.Maintenance`: status, alarms, defragmentation, hashes, leadership
//! transfer and downgrade checks through the server; the rest not yet.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{context, not_yet, BoxStream};
use crate::proto::etcdserverpb::maintenance_server::Maintenance;
use crate::proto::etcdserverpb::*;
use crate::server::Server;

pub struct MaintenanceService {
    server: Arc<Server>,
}

impl MaintenanceService {
    pub fn new(server: Arc<Server>) -> MaintenanceService {
        MaintenanceService { server }
    }
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<AlarmRequest>,
    ) -> Result<Response<AlarmResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server.alarm(&ctx, request.into_inner()).await?,
        ))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        Ok(Response::new(self.server.status(&context(&request))))
    }

    async fn defragment(
        &self,
        request: Request<DefragmentRequest>,
    ) -> Result<Response<DefragmentResponse>, Status> {
        Ok(Response::new(
            self.server.defragment(&context(&request)).await?,
        ))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Ok(Response::new(self.server.hash(&context(&request)).await?))
    }

    async fn hash_kv(
        &self,
        request: Request<HashKvRequest>,
    ) -> Result<Response<HashKvResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server.hash_kv(&ctx, request.into_inner()).await?,
        ))
    }

    type SnapshotStream = BoxStream<SnapshotResponse>;

    async fn snapshot(
        &self,
        _: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_yet("Maintenance.Snapshot"))
    }

    async fn move_leader(
        &self,
        request: Request<MoveLeaderRequest>,
    ) -> Result<Response<MoveLeaderResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server.move_leader(&ctx, request.into_inner()).await?,
        ))
    }

    async fn downgrade(
        &self,
        request: Request<DowngradeRequest>,
    ) -> Result<Response<DowngradeResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server.downgrade(&ctx, request.into_inner()).await?,
        ))
    }
}
