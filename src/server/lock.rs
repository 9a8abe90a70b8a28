//! `v3lockpb.Lock`: `Lock` and `Unlock`, as etcd's lock service (its client library's
//! mutex, run in the server). And what Lock and Campaign (`election`) share: the key a
//! session holds under a name, and the wait for the older holders to go.
//!
//! A lock named `n` is held by the oldest key under `n/`: each caller writes
//! `n/<lease in hex>` with its lease, then waits until every key under `n/` created before
//! its own is deleted. A waiter watches only the key just before its own, so a waiting Lock
//! costs one watch, and callers take the lock in the order their keys were written. Every
//! step is this server's own `lease_grant`, `txn`, `range`, `delete_range` and `watch`, with
//! the caller's context: auth, routing and linearizable reads apply as to the caller's own
//! requests. The API checks what the client sent (`api::validate`); the requests made here
//! are well-formed by construction.

use std::sync::Arc;

use super::{RequestContext, Server};
use crate::error::EtcdError;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, LeaseGrantRequest, PutRequest, RangeRequest, RequestOp,
    ResponseHeader, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::{event::EventType, KeyValue};
use crate::proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use crate::watch::{prefix_end, KeyRange, Outgoing, WatchSpec};

/// The TTL of the lease etcd grants a Lock or Campaign that names none (its session's
/// default). Nothing keeps it alive: the key goes when it expires.
const SESSION_TTL_SECONDS: i64 = 60;

impl Server {
    /// Takes the lock `r.name` for the lease `r.lease` (a new 60 s lease when 0), waiting
    /// for the older holders. If the wait fails or the caller goes away (the future is
    /// dropped), the caller's key is deleted, as etcd deletes it.
    pub async fn lock(
        self: &Arc<Self>,
        ctx: &RequestContext,
        r: LockRequest,
    ) -> Result<LockResponse, EtcdError> {
        let lease = self.session_lease(ctx, r.lease).await?;
        let prefix = [r.name.as_slice(), b"/"].concat();
        let key = held_key(&prefix, lease);
        let entered = self.enter(ctx, &prefix, &key, b"", lease, true).await?;
        let my_rev = entered.my_rev;
        if entered
            .owner
            .is_none_or(|owner| owner.create_revision == my_rev)
        {
            return Ok(LockResponse {
                header: Some(entered.header),
                key,
            });
        }
        let cleanup = DeleteOnDrop::new(self, ctx, key.clone());
        let waited = async {
            self.wait_deletes(ctx, &prefix, my_rev - 1).await?;
            self.range(ctx, single(&key)).await
        };
        match waited.await {
            // The lease expired while waiting: the key is gone and so is the lock.
            Ok(mine) if mine.kvs.is_empty() => {
                cleanup.disarm();
                Err(EtcdError::SessionExpired)
            }
            Ok(mine) => {
                cleanup.disarm();
                Ok(LockResponse {
                    header: mine.header,
                    key,
                })
            }
            // Deleted before answering, as etcd: a retry must not find the key still there
            // and take a lock the next waiter is about to be given.
            Err(e) => {
                cleanup.delete_now().await;
                Err(e)
            }
        }
    }

    /// Deletes the lock's key, whoever holds it.
    pub async fn unlock(
        &self,
        ctx: &RequestContext,
        r: UnlockRequest,
    ) -> Result<UnlockResponse, EtcdError> {
        let deleted = self
            .delete_range(
                ctx,
                DeleteRangeRequest {
                    key: r.key,
                    ..DeleteRangeRequest::default()
                },
            )
            .await?;
        Ok(UnlockResponse {
            header: deleted.header,
        })
    }

    /// The lease a Lock or Campaign holds its key with: the caller's, or a new one with
    /// etcd's session TTL when it names none.
    pub(super) async fn session_lease(
        &self,
        ctx: &RequestContext,
        lease: i64,
    ) -> Result<i64, EtcdError> {
        if lease != crate::lease::NO_LEASE {
            return Ok(lease);
        }
        let granted = self
            .lease_grant(
                ctx,
                LeaseGrantRequest {
                    ttl: SESSION_TTL_SECONDS,
                    id: crate::lease::NO_LEASE,
                },
            )
            .await?;
        Ok(granted.id)
    }

    /// Writes `key` (with `value` and `lease`) unless it exists, in one txn that also reads
    /// the oldest key under `prefix` when `read_owner` (Lock's txn; Campaign's reads only
    /// the caller's key, and so needs no permission on the rest of the prefix).
    pub(super) async fn enter(
        &self,
        ctx: &RequestContext,
        prefix: &[u8],
        key: &[u8],
        value: &[u8],
        lease: i64,
        read_owner: bool,
    ) -> Result<Entered, EtcdError> {
        let put = RequestOp {
            request: Some(Op::RequestPut(PutRequest {
                key: key.to_vec(),
                value: value.to_vec(),
                lease,
                ..PutRequest::default()
            })),
        };
        let get = RequestOp {
            request: Some(Op::RequestRange(single(key))),
        };
        let mut txn = TxnRequest {
            compare: vec![created_at(key, 0)],
            success: vec![put],
            failure: vec![get],
        };
        if read_owner {
            let owner = RequestOp {
                request: Some(Op::RequestRange(first_created(prefix))),
            };
            txn.success.push(owner.clone());
            txn.failure.push(owner);
        }
        let mut response = self.txn(ctx, txn).await?;
        let header = response.header.take().ok_or(EtcdError::Corrupt)?;
        let existing = if response.succeeded {
            None
        } else {
            Some(first_kv(&mut response, 0).ok_or(EtcdError::Corrupt)?)
        };
        Ok(Entered {
            my_rev: existing
                .as_ref()
                .map_or(header.revision, |kv| kv.create_revision),
            owner: first_kv(&mut response, 1),
            existing,
            header,
        })
    }

    /// Returns once every key under `prefix` created at or before `max_create_rev` is gone:
    /// watches the newest of them until it is deleted, then looks again.
    pub(super) async fn wait_deletes(
        self: &Arc<Self>,
        ctx: &RequestContext,
        prefix: &[u8],
        max_create_rev: i64,
    ) -> Result<(), EtcdError> {
        loop {
            let newest = RangeRequest {
                sort_order: SortOrder::Descend as i32,
                max_create_revision: max_create_rev,
                ..first_created(prefix)
            };
            let found = self.range(ctx, newest).await?;
            let Some(kv) = found.kvs.into_iter().next() else {
                return Ok(());
            };
            let revision = found.header.ok_or(EtcdError::Corrupt)?.revision;
            self.wait_delete(ctx, &kv.key, revision).await?;
        }
    }

    /// Returns once `key` is deleted at or after `start_rev`.
    async fn wait_delete(
        self: &Arc<Self>,
        ctx: &RequestContext,
        key: &[u8],
        start_rev: i64,
    ) -> Result<(), EtcdError> {
        let mut events = self
            .watch_key(ctx, KeyRange::Single(key.to_vec()), start_rev)
            .await?;
        loop {
            if events
                .next()
                .await?
                .iter()
                .any(|e| e.r#type == EventType::Delete as i32)
            {
                return Ok(());
            }
        }
    }

    /// A watch of `range` from `start_rev`, for a waiter; checked as the caller's own watch.
    pub(super) async fn watch_key(
        self: &Arc<Self>,
        ctx: &RequestContext,
        range: KeyRange,
        start_rev: i64,
    ) -> Result<Waiter, EtcdError> {
        let handle = self.watch(ctx)?;
        let (key, range_end) = match &range {
            KeyRange::Single(key) => (key.as_slice(), &[][..]),
            KeyRange::Below(start, end) => (start.as_slice(), end.as_slice()),
            KeyRange::From(start) => (start.as_slice(), &[0u8][..]),
        };
        handle.may_watch(key, range_end).await?;
        handle.stream().create(WatchSpec::of(range, start_rev));
        Ok(Waiter { handle })
    }
}

/// What `enter` found and did.
pub(super) struct Entered {
    /// The create revision of the caller's key: now, or earlier when it already existed.
    pub my_rev: i64,
    /// The oldest key under the prefix: the holder.
    pub owner: Option<KeyValue>,
    /// The caller's key as it was, when it already existed.
    pub existing: Option<KeyValue>,
    /// The txn's header.
    pub header: ResponseHeader,
}

/// A waiter's watch: its events as they come.
pub(super) struct Waiter {
    handle: super::WatchHandle,
}

impl Waiter {
    /// The next events of the watch, with the revision of the response that carried them.
    /// Fails when the watch ends: compacted, refused, or the member stopping.
    pub async fn next_with_rev(
        &mut self,
    ) -> Result<(i64, Vec<Arc<crate::proto::mvccpb::Event>>), EtcdError> {
        loop {
            match self.handle.next().await {
                Some(Outgoing::Events { rev, events, .. }) => return Ok((rev, events)),
                Some(Outgoing::Created { .. } | Outgoing::Progress { .. }) => continue,
                Some(Outgoing::Compacted { .. }) => return Err(EtcdError::Compacted),
                Some(Outgoing::CreateFailed { .. } | Outgoing::Canceled { .. }) | None => {
                    return Err(EtcdError::Stopped)
                }
            }
        }
    }

    pub async fn next(&mut self) -> Result<Vec<Arc<crate::proto::mvccpb::Event>>, EtcdError> {
        Ok(self.next_with_rev().await?.1)
    }

    /// A response header at `rev`.
    pub fn header(&self, rev: i64) -> ResponseHeader {
        self.handle.header(rev)
    }
}

/// Deletes a waiter's key if the wait does not end well (an error, or the caller gone),
/// in a task of its own, since it may run as the caller's future is dropped.
struct DeleteOnDrop {
    server: Arc<Server>,
    ctx: RequestContext,
    key: Option<Vec<u8>>,
}

impl DeleteOnDrop {
    fn new(server: &Arc<Server>, ctx: &RequestContext, key: Vec<u8>) -> DeleteOnDrop {
        DeleteOnDrop {
            server: server.clone(),
            ctx: ctx.clone(),
            key: Some(key),
        }
    }

    fn disarm(mut self) {
        self.key = None;
    }

    /// Deletes the key now. Dropped half way, the delete is spawned again (it is idempotent).
    async fn delete_now(mut self) {
        if let Some(key) = self.key.clone() {
            delete_abandoned(&self.server, &self.ctx, key).await;
        }
        self.key = None;
    }
}

async fn delete_abandoned(server: &Server, ctx: &RequestContext, key: Vec<u8>) {
    let delete = DeleteRangeRequest {
        key,
        ..DeleteRangeRequest::default()
    };
    if let Err(e) = server.delete_range(ctx, delete).await {
        tracing::warn!(error = %e, "could not delete an abandoned lock key");
    }
}

impl Drop for DeleteOnDrop {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let (server, ctx) = (self.server.clone(), self.ctx.clone());
        tokio::spawn(async move { delete_abandoned(&server, &ctx, key).await });
    }
}

/// The key a session holds under `prefix`: its lease ID in hex, as Go's `%x` writes it.
pub(super) fn held_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    let hex = if lease < 0 {
        format!("-{:x}", lease.unsigned_abs())
    } else {
        format!("{lease:x}")
    };
    [prefix, hex.as_bytes()].concat()
}

/// A read of one key.
pub(super) fn single(key: &[u8]) -> RangeRequest {
    RangeRequest {
        key: key.to_vec(),
        ..RangeRequest::default()
    }
}

/// clientv3's `WithFirstCreate`: the oldest key under `prefix`.
pub(super) fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix).unwrap_or_else(|| vec![0]),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..RangeRequest::default()
    }
}

/// A compare: `key` was created at `revision` (0: does not exist).
pub(super) fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        ..Compare::default()
    }
}

/// The first key of the `i`th response of a txn made of ranges.
pub(super) fn first_kv(response: &mut TxnResponse, i: usize) -> Option<KeyValue> {
    use crate::proto::etcdserverpb::response_op::Response;
    match response.responses.get_mut(i)?.response.as_mut()? {
        Response::ResponseRange(range) if !range.kvs.is_empty() => Some(range.kvs.swap_remove(0)),
        _ => None,
    }
}
