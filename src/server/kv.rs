//! `Range`, `Put`, `DeleteRange`, `Txn` and `Compact`: reads are served here after a read
//! barrier (unless serializable) and a permission check (`auth`), writes are proposed
//! through Raft with their caller, and checked when applied.

use super::{RequestContext, Server};
use crate::apply::{self, authorize};
use crate::error::EtcdError;
use crate::proto::cairnraftpb::{
    apply_result::Result as Applied, internal_request::Request, Caller,
};
use crate::proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};

impl Server {
    pub async fn range(
        &self,
        ctx: &RequestContext,
        r: RangeRequest,
    ) -> Result<RangeResponse, EtcdError> {
        if !r.serializable {
            self.read_barrier(ctx).await?;
        }
        let check = |caller: Option<&Caller>| authorize::range(&self.auth, caller, &r);
        let read = || self.read(|view| apply::range(view, &r));
        let mut response = self.authorized_read(ctx, check, read).await?;
        self.complete_header(&mut response.header);
        Ok(response)
    }

    pub async fn put(&self, ctx: &RequestContext, r: PutRequest) -> Result<PutResponse, EtcdError> {
        propose_as!(self, ctx, Put(r))
    }

    pub async fn delete_range(
        &self,
        ctx: &RequestContext,
        r: DeleteRangeRequest,
    ) -> Result<DeleteRangeResponse, EtcdError> {
        propose_as!(self, ctx, DeleteRange(r))
    }

    /// A txn that only reads is served here, like a Range, without a Raft round.
    pub async fn txn(&self, ctx: &RequestContext, r: TxnRequest) -> Result<TxnResponse, EtcdError> {
        if apply::txn::is_read_only(&r) {
            if !apply::txn::is_serializable(&r) {
                self.read_barrier(ctx).await?;
            }
            let check = |caller: Option<&Caller>| authorize::txn(&self.auth, caller, &r);
            let read = || self.read(|view| apply::txn::txn(view, &self.lessor, &r));
            let mut response = self.authorized_read(ctx, check, read).await?;
            self.complete_header(&mut response.header);
            return Ok(response);
        }
        propose_as!(self, ctx, Txn(r))
    }

    /// A `physical` compaction is answered once the revisions it made unreachable are
    /// deleted from storage, or at the deadline: a deletion that failed is retried only at
    /// the next start. The compaction itself is done (logically) either way.
    pub async fn compact(
        &self,
        ctx: &RequestContext,
        r: CompactionRequest,
    ) -> Result<CompactionResponse, EtcdError> {
        let (revision, physical) = (r.revision, r.physical);
        match self.propose(ctx, Request::Compaction(r)).await? {
            Applied::Compaction(mut response) => {
                if physical {
                    let deleted = self.mvcc.wait_physically_compacted(revision);
                    tokio::time::timeout_at(self.deadline(ctx), deleted)
                        .await
                        .map_err(|_| EtcdError::Timeout)?;
                }
                self.complete_header(&mut response.header);
                Ok(response)
            }
            _ => Err(EtcdError::Corrupt),
        }
    }

    /// Completes a header from `apply`, which only knows the revision.
    pub(super) fn complete_header(&self, partial: &mut Option<ResponseHeader>) {
        *partial = Some(self.header(partial.as_ref().map_or(0, |h| h.revision)));
    }
}
