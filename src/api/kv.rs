//! `etcdserverpb.KV`: checks each request, then calls the server.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{context, validate, BoxStream};
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, RangeStreamResponse, TxnRequest, TxnResponse,
};
use crate::server::Server;

pub struct KvService {
    server: Arc<Server>,
}

impl KvService {
    pub fn new(server: Arc<Server>) -> KvService {
        KvService { server }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let ctx = context(&request);
        let r = request.into_inner();
        validate::range(&r)?;
        Ok(Response::new(self.server.range(&ctx, r).await?))
    }

    type RangeStreamStream = BoxStream<RangeStreamResponse>;

    /// Each chunk is read when the transport asks for the next message: a client that
    /// reads slowly holds one chunk in memory, not the range.
    async fn range_stream(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        let ctx = context(&request);
        let r = request.into_inner();
        validate::range_stream(&r)?;
        let chunks = self.server.range_stream(&ctx, r).await?;
        let stream = futures::stream::unfold(chunks, |mut chunks| async move {
            let chunk = chunks.next_chunk()?.map_err(Status::from);
            let message = chunk.map(|range_response| RangeStreamResponse {
                range_response: Some(range_response),
            });
            Some((message, chunks))
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let ctx = context(&request);
        let r = request.into_inner();
        validate::put(&r)?;
        Ok(Response::new(self.server.put(&ctx, r).await?))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let ctx = context(&request);
        let r = request.into_inner();
        validate::delete_range(&r)?;
        Ok(Response::new(self.server.delete_range(&ctx, r).await?))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let ctx = context(&request);
        let r = request.into_inner();
        validate::txn(&r, self.server.limits().max_txn_ops)?;
        Ok(Response::new(self.server.txn(&ctx, r).await?))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let ctx = context(&request);
        Ok(Response::new(
            self.server.compact(&ctx, request.into_inner()).await?,
        ))
    }
}
