//! `v3lockpb.Lock`: hands `Lock` and `Unlock` to the server.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{context, plain_error, validate};
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::server::Server;

pub struct LockService {
    server: Arc<Server>,
}

impl LockService {
    pub fn new(server: Arc<Server>) -> LockService {
        LockService { server }
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server
                .lock(&ctx, request.into_inner())
                .await
                .map_err(plain_error)?,
        ))
    }

    async fn unlock(
        &self,
        request: Request<UnlockRequest>,
    ) -> Result<Response<UnlockResponse>, Status> {
        let ctx = context(&request);
        let r = request.into_inner();
        validate::unlock(&r.key).map_err(plain_error)?;
        Ok(Response::new(
            self.server.unlock(&ctx, r).await.map_err(plain_error)?,
        ))
    }
}
