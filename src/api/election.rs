//! `v3electionpb.Election`: hands each RPC to the server; Observe's leaders become the
//! response stream.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{context, plain_error, validate, BoxStream};
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::server::Server;

pub struct ElectionService {
    server: Arc<Server>,
}

impl ElectionService {
    pub fn new(server: Arc<Server>) -> ElectionService {
        ElectionService { server }
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<CampaignRequest>,
    ) -> Result<Response<CampaignResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server
                .campaign(&ctx, request.into_inner())
                .await
                .map_err(plain_error)?,
        ))
    }

    async fn proclaim(
        &self,
        request: Request<ProclaimRequest>,
    ) -> Result<Response<ProclaimResponse>, Status> {
        let ctx = context(&request);
        let r = request.into_inner();
        validate::leader_key(r.leader.as_ref()).map_err(plain_error)?;
        Ok(Response::new(
            self.server.proclaim(&ctx, r).await.map_err(plain_error)?,
        ))
    }

    async fn leader(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<LeaderResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server
                .leader(&ctx, request.into_inner())
                .await
                .map_err(plain_error)?,
        ))
    }

    type ObserveStream = BoxStream<LeaderResponse>;

    /// Ends with OK when the observation can go no further, as etcd's does.
    async fn observe(
        &self,
        request: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let ctx = context(&request);
        let observer = self.server.observe(&ctx, request.into_inner());
        let leaders = futures::stream::unfold(observer, |mut observer| async move {
            let leader = observer.next().await?;
            Some((Ok(leader), observer))
        });
        Ok(Response::new(Box::pin(leaders)))
    }

    async fn resign(
        &self,
        request: Request<ResignRequest>,
    ) -> Result<Response<ResignResponse>, Status> {
        let ctx = context(&request);
        let r = request.into_inner();
        validate::leader_key(r.leader.as_ref()).map_err(plain_error)?;
        Ok(Response::new(
            self.server.resign(&ctx, r).await.map_err(plain_error)?,
        ))
    }
}
