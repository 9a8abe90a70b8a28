//! `Range`, `RangeStream`, `Put`, `DeleteRange`, `Txn` and `Compact`: reads are served here
//! after a read barrier (unless serializable) and a permission check (`auth`), writes are
//! proposed through Raft with their caller, and checked when applied.

use std::sync::Arc;

use prost::Message;

use super::{RequestContext, Server};
use crate::apply::{self, authorize};
use crate::error::EtcdError;
use crate::mvcc::{KvRead, RangeEnd, RangeOptions};
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

    /// etcd 3.7's RangeStream: the range of `r` in chunks, all read at one revision (the
    /// request's, else the store's when the first is read), in key order (`api::validate`
    /// refused other orders and revision filters), each read from the store as it is
    /// sent. Only the last chunk has a header, `more` and `count`. The read barrier, the
    /// permission check and the first chunk come before the answer, so their errors are the
    /// call's, as etcd's are; a later one (compaction past the revision) ends the stream.
    pub async fn range_stream(
        self: &Arc<Self>,
        ctx: &RequestContext,
        r: RangeRequest,
    ) -> Result<RangeStream, EtcdError> {
        if !r.serializable {
            self.read_barrier(ctx).await?;
        }
        let check = |caller: Option<&Caller>| authorize::range(&self.auth, caller, &r);
        let caller = self.read_caller(ctx, check).await?;
        let total_limit = match usize::try_from(r.limit) {
            Ok(0) | Err(_) => usize::MAX,
            Ok(limit) => limit,
        };
        let mut stream = RangeStream {
            server: self.clone(),
            caller,
            next_key: r.key.clone(),
            read_rev: r.revision,
            header_rev: 0,
            chunk_limit: FIRST_CHUNK_KEYS.min(total_limit),
            total_limit,
            sent: 0,
            first: None,
            done: false,
            r,
        };
        stream.first = Some(stream.read_chunk()?);
        Ok(stream)
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
    /// deleted from storage, however long that takes at the compactor's pace (etcd waits
    /// as long), unless the client gives up first; if a deletion fails (the next start
    /// deletes them), with `request timed out`, as etcd answers what it could not finish.
    /// The compaction itself is done (logically) either way.
    pub async fn compact(
        &self,
        ctx: &RequestContext,
        r: CompactionRequest,
    ) -> Result<CompactionResponse, EtcdError> {
        let (revision, physical) = (r.revision, r.physical);
        match self.propose(ctx, Request::Compaction(r)).await? {
            Applied::Compaction(mut response) => {
                if physical {
                    self.mvcc
                        .wait_physically_compacted(revision)
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

/// Keys in RangeStream's first chunk, as etcd 3.7.
const FIRST_CHUNK_KEYS: usize = 10;
/// Most keys in one chunk: bounds the index walk and the revisions collected per chunk.
const MAX_CHUNK_KEYS: usize = 1 << 16;

/// A RangeStream being served (`Server::range_stream`): one chunk in memory at a time.
pub struct RangeStream {
    server: Arc<Server>,
    r: RangeRequest,
    /// Checked before the first chunk; its auth state must still hold at the last.
    caller: Option<Caller>,
    next_key: Vec<u8>,
    /// The revision every chunk reads: the request's, else pinned at the first chunk.
    read_rev: i64,
    /// The store's revision when the first chunk was read: the last chunk's header's.
    header_rev: i64,
    chunk_limit: usize,
    total_limit: usize,
    sent: usize,
    /// The first chunk, read before the call was answered.
    first: Option<RangeResponse>,
    done: bool,
}

impl RangeStream {
    /// The next chunk; None after the last or after an error.
    pub fn next_chunk(&mut self) -> Option<Result<RangeResponse, EtcdError>> {
        if let Some(first) = self.first.take() {
            return Some(Ok(first));
        }
        if self.done {
            return None;
        }
        let chunk = self.read_chunk();
        if chunk.is_err() {
            self.done = true;
        }
        Some(chunk)
    }

    fn read_chunk(&mut self) -> Result<RangeResponse, EtcdError> {
        let server = self.server.clone();
        if self.r.count_only {
            // One answer, as Range's.
            self.done = true;
            let mut response = server.read(|view| apply::range(view, &self.r))?;
            server.auth_unchanged(self.caller.as_ref())?;
            server.complete_header(&mut response.header);
            return Ok(response);
        }
        // A chunk never grows past the size a request may have.
        let max_bytes = server.limits.max_request_bytes;
        let end = RangeEnd::from_request(&self.r.range_end);
        let limit = self.chunk_limit.min(self.total_limit - self.sent);
        let (chunk, view_rev) = server.read(|view| {
            let chunk = view.range_chunk(&self.next_key, end, self.read_rev, limit, max_bytes)?;
            Ok((chunk, view.rev()))
        })?;
        if self.header_rev == 0 {
            self.header_rev = view_rev;
            if self.read_rev <= 0 {
                self.read_rev = view_rev;
            }
        }
        self.sent += chunk.kvs.len();
        let mut kvs = chunk.kvs;
        if let Some(last) = kvs.last() {
            self.next_key = [last.key.as_slice(), &[0]].concat();
        }
        if self.r.keys_only {
            for kv in &mut kvs {
                kv.value.clear();
            }
        }
        let mut response = RangeResponse {
            kvs,
            ..RangeResponse::default()
        };
        self.done = !chunk.more || self.sent == self.total_limit;
        if self.done {
            let mut count = self.sent as i64;
            if chunk.more {
                let opts = RangeOptions {
                    rev: self.read_rev,
                    count_only: true,
                    ..RangeOptions::default()
                };
                let rest = server.read(|view| view.range(&self.next_key, end, opts))?;
                count += rest.count as i64;
            }
            server.auth_unchanged(self.caller.as_ref())?;
            response.header = Some(server.header(self.header_rev));
            response.more = chunk.more;
            response.count = count;
        }
        self.chunk_limit = next_chunk_limit(self.chunk_limit, response.encoded_len(), max_bytes);
        Ok(response)
    }
}

/// etcd 3.7's rule for the next chunk's key limit: double it after a chunk under half the
/// target size, halve it after one over twice the target (never below one key).
fn next_chunk_limit(limit: usize, chunk_bytes: usize, target_bytes: usize) -> usize {
    let limit = if chunk_bytes < target_bytes / 2 {
        limit.saturating_mul(2)
    } else if chunk_bytes > target_bytes.saturating_mul(2) {
        limit / 2
    } else {
        limit
    };
    limit.clamp(1, MAX_CHUNK_KEYS)
}
