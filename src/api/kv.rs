//! `etcdserverpb.KV`: validates, then reads the store or proposes through Raft.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::{complete_header, mismatch, propose, validate};
use crate::apply;
use crate::error::EtcdError;
use crate::node::Node;
use crate::proto::cairnraftpb::{apply_result::Result as Applied, internal_request};
use crate::proto::etcdserverpb::kv_server::Kv;
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnRequest, TxnResponse,
};

pub struct KvService {
    node: Arc<Node>,
}

impl KvService {
    pub fn new(node: Arc<Node>) -> KvService {
        KvService { node }
    }
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<RangeRequest>,
    ) -> Result<Response<RangeResponse>, Status> {
        let r = request.into_inner();
        validate::range(&r)?;
        if !r.serializable {
            if self.node.is_learner() {
                return Err(EtcdError::NotSupportedForLearner.into());
            }
            self.node.read_barrier().await?;
        }
        let mut response = self.node.read(|view| apply::range(view, &r))?;
        response.header = complete_header(&self.node, response.header);
        Ok(Response::new(response))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let r = request.into_inner();
        validate::put(&r)?;
        match propose(&self.node, internal_request::Request::Put(r)).await? {
            Applied::Put(mut response) => {
                response.header = complete_header(&self.node, response.header);
                Ok(Response::new(response))
            }
            _ => Err(mismatch()),
        }
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let r = request.into_inner();
        validate::delete_range(&r)?;
        match propose(&self.node, internal_request::Request::DeleteRange(r)).await? {
            Applied::DeleteRange(mut response) => {
                response.header = complete_header(&self.node, response.header);
                Ok(Response::new(response))
            }
            _ => Err(mismatch()),
        }
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let r = request.into_inner();
        validate::txn(&r, self.node.limits.max_txn_ops)?;
        if apply::txn::is_read_only(&r) {
            // Reads only: served here, like a Range, without a Raft round.
            if !apply::txn::is_serializable(&r) {
                self.node.read_barrier().await?;
            }
            let mut response = self
                .node
                .read(|view| apply::txn::txn(view, &self.node.lessor, &r))?;
            response.header = complete_header(&self.node, response.header);
            return Ok(Response::new(response));
        }
        match propose(&self.node, internal_request::Request::Txn(r)).await? {
            Applied::Txn(mut response) => {
                response.header = complete_header(&self.node, response.header);
                Ok(Response::new(response))
            }
            _ => Err(mismatch()),
        }
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let r = request.into_inner();
        let (revision, physical) = (r.revision, r.physical);
        match propose(&self.node, internal_request::Request::Compaction(r)).await? {
            Applied::Compaction(mut response) => {
                if physical {
                    self.node.wait_physically_compacted(revision).await?;
                }
                response.header = complete_header(&self.node, response.header);
                Ok(Response::new(response))
            }
            _ => Err(mismatch()),
        }
    }
}
