//! `etcdserverpb.Cluster`: checks peer URLs, then calls the server.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{context, validate};
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::*;
use crate::server::Server;

pub struct ClusterService {
    server: Arc<Server>,
}

impl ClusterService {
    pub fn new(server: Arc<Server>) -> ClusterService {
        ClusterService { server }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let ctx = context(&request);
        let mut r = request.into_inner();
        r.peer_ur_ls = validate::peer_urls(&r.peer_ur_ls)?;
        Ok(Response::new(self.server.member_add(&ctx, r).await?))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server
                .member_remove(&ctx, request.into_inner())
                .await?,
        ))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let ctx = context(&request);
        let mut r = request.into_inner();
        r.peer_ur_ls = validate::peer_urls(&r.peer_ur_ls)?;
        Ok(Response::new(self.server.member_update(&ctx, r).await?))
    }

    async fn member_list(
        &self,
        request: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server.member_list(&ctx, request.into_inner()).await?,
        ))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server
                .member_promote(&ctx, request.into_inner())
                .await?,
        ))
    }
}
