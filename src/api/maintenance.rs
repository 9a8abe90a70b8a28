//! `etcdserverpb.Maintenance`: status, alarms, defragmentation, hashes, leadership
//! transfer, downgrade checks and snapshots through the server.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{context, BoxStream};
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

    /// Each message is taken from the snapshot's writer when the transport asks for it.
    async fn snapshot(
        &self,
        request: Request<SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let sender = self.server.snapshot(&context(&request)).await?;
        let stream = futures::stream::unfold(sender, |mut sender| async move {
            let message = sender.next_message().await?.map_err(Status::from);
            Some((message, sender))
        });
        Ok(Response::new(Box::pin(stream)))
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
