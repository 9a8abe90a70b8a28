//! `v3electionpb.Election`: `Campaign`, `Proclaim`, `Leader`, `Observe` and `Resign`, as
//! etcd's election service (its client library's election, run in the server).
//!
//! An election named `n` is a lock on `n/` whose key holds the leader's value: the oldest
//! key under `n/` is the leader. A candidate writes its key and waits as Lock does
//! (`lock::wait_deletes`); Proclaim and Resign act only while the key is still the one the
//! candidate created (same create revision). Every step is this server's own `txn`,
//! `range` and `watch` with the caller's context.

use std::collections::VecDeque;
use std::sync::Arc;

use super::lock::{created_at, first_created, held_key, Waiter};
use super::{RequestContext, Server};
use crate::error::EtcdError;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RequestOp, ResponseHeader, TxnRequest,
};
use crate::proto::mvccpb::event::EventType;
use crate::proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest,
    ProclaimResponse, ResignRequest, ResignResponse,
};
use crate::watch::KeyRange;

impl Server {
    /// Becomes the leader of `r.name` with `r.value`, once every older candidate is gone.
    /// A candidate that already holds its key proclaims the new value. If the caller goes
    /// away while waiting (the future is dropped), its key is deleted, as etcd resigns it.
    pub async fn campaign(
        self: &Arc<Self>,
        ctx: &RequestContext,
        r: CampaignRequest,
    ) -> Result<CampaignResponse, EtcdError> {
        let lease = self.session_lease(ctx, r.lease).await?;
        let prefix = [r.name.as_slice(), b"/"].concat();
        let key = held_key(&prefix, lease);
        let entered = self
            .enter(ctx, &prefix, &key, &r.value, lease, false)
            .await?;
        let leader = LeaderKey {
            name: r.name,
            key,
            rev: entered.my_rev,
            lease,
        };
        if entered.existing.is_some_and(|kv| kv.value != r.value) {
            if let Err(e) = self.proclaim_as(ctx, &leader, r.value).await {
                let _ = self.resign_as(ctx, &leader).await;
                return Err(e);
            }
        }
        let resign = ResignOnDrop {
            server: self.clone(),
            ctx: ctx.clone(),
            leader: Some(leader.clone()),
        };
        let waited = self.wait_deletes(ctx, &prefix, leader.rev - 1).await;
        // Only a caller that went away resigns; after a failed wait etcd keeps the key.
        resign.disarm();
        waited?;
        // The header is the first txn's, as etcd answers.
        Ok(CampaignResponse {
            header: Some(entered.header),
            leader: Some(leader),
        })
    }

    /// Sets the leader's value, if `r.leader` still holds the leadership.
    pub async fn proclaim(
        &self,
        ctx: &RequestContext,
        r: ProclaimRequest,
    ) -> Result<ProclaimResponse, EtcdError> {
        let mut leader = r.leader.ok_or(EtcdError::MissingLeaderKey)?;
        leader.lease = self.session_lease(ctx, leader.lease).await?;
        let header = self.proclaim_as(ctx, &leader, r.value).await?;
        Ok(ProclaimResponse {
            header: Some(header),
        })
    }

    /// Gives up the leadership (or the candidacy) `r.leader` holds; nothing if it holds
    /// none any more.
    pub async fn resign(
        &self,
        ctx: &RequestContext,
        r: ResignRequest,
    ) -> Result<ResignResponse, EtcdError> {
        let mut leader = r.leader.ok_or(EtcdError::MissingLeaderKey)?;
        // As etcd, which opens a session (granting a lease when none is named) first.
        leader.lease = self.session_lease(ctx, leader.lease).await?;
        let header = self.resign_as(ctx, &leader).await?;
        Ok(ResignResponse {
            header: Some(header),
        })
    }

    /// The current leader of `r.name`: the oldest key under `name/`.
    pub async fn leader(
        &self,
        ctx: &RequestContext,
        r: LeaderRequest,
    ) -> Result<LeaderResponse, EtcdError> {
        let prefix = [r.name.as_slice(), b"/"].concat();
        let found = self.range(ctx, first_created(&prefix)).await?;
        let kv = found
            .kvs
            .into_iter()
            .next()
            .ok_or(EtcdError::ElectionNoLeader)?;
        Ok(LeaderResponse {
            header: found.header,
            kv: Some(kv),
        })
    }

    /// Follows the leaders of `r.name`: each leader's value as it is elected and each value
    /// it proclaims, in order (`Observer::next`).
    pub fn observe(self: &Arc<Self>, ctx: &RequestContext, r: LeaderRequest) -> Observer {
        Observer {
            server: self.clone(),
            ctx: ctx.clone(),
            prefix: [r.name.as_slice(), b"/"].concat(),
            following: None,
            ready: VecDeque::new(),
            ended: false,
        }
    }

    async fn proclaim_as(
        &self,
        ctx: &RequestContext,
        leader: &LeaderKey,
        value: Vec<u8>,
    ) -> Result<ResponseHeader, EtcdError> {
        let put = Op::RequestPut(PutRequest {
            key: leader.key.clone(),
            value,
            lease: leader.lease,
            ..PutRequest::default()
        });
        let response = self.if_leader(ctx, leader, put).await?;
        if !response.succeeded {
            return Err(EtcdError::ElectionNotLeader);
        }
        response.header.ok_or(EtcdError::Corrupt)
    }

    async fn resign_as(
        &self,
        ctx: &RequestContext,
        leader: &LeaderKey,
    ) -> Result<ResponseHeader, EtcdError> {
        let delete = Op::RequestDeleteRange(DeleteRangeRequest {
            key: leader.key.clone(),
            ..DeleteRangeRequest::default()
        });
        let response = self.if_leader(ctx, leader, delete).await?;
        response.header.ok_or(EtcdError::Corrupt)
    }

    /// `op`, if the leader's key is still the one it created.
    async fn if_leader(
        &self,
        ctx: &RequestContext,
        leader: &LeaderKey,
        op: Op,
    ) -> Result<crate::proto::etcdserverpb::TxnResponse, EtcdError> {
        let txn = TxnRequest {
            compare: vec![created_at(&leader.key, leader.rev)],
            success: vec![RequestOp { request: Some(op) }],
            failure: vec![],
        };
        self.txn(ctx, txn).await
    }
}

/// Deletes a candidate's key if the caller goes away while it waits.
struct ResignOnDrop {
    server: Arc<Server>,
    ctx: RequestContext,
    leader: Option<LeaderKey>,
}

impl ResignOnDrop {
    fn disarm(mut self) {
        self.leader = None;
    }
}

impl Drop for ResignOnDrop {
    fn drop(&mut self) {
        let Some(leader) = self.leader.take() else {
            return;
        };
        let (server, ctx) = (self.server.clone(), self.ctx.clone());
        tokio::spawn(async move {
            if let Err(e) = server.resign_as(&ctx, &leader).await {
                tracing::warn!(error = %e, "could not resign an abandoned campaign");
            }
        });
    }
}

/// An Observe in progress: one watch at a time, on the leader's key, or on the whole
/// election while it has no leader.
pub struct Observer {
    server: Arc<Server>,
    ctx: RequestContext,
    prefix: Vec<u8>,
    /// The watch of the current leader's key; None until a leader is found.
    following: Option<Waiter>,
    ready: VecDeque<LeaderResponse>,
    /// Set once a read or watch failed: what is ready is still sent, then nothing.
    ended: bool,
}

impl Observer {
    /// The next leader value; None when the observation ends (a failed read or watch, or
    /// the member stopping), which etcd reports as the stream's end, not as an error.
    pub async fn next(&mut self) -> Option<LeaderResponse> {
        loop {
            if let Some(ready) = self.ready.pop_front() {
                return Some(ready);
            }
            if self.ended {
                return None;
            }
            match self.following.as_mut() {
                None => self.ended = self.find_leader().await.is_err(),
                Some(waiter) => {
                    let (rev, events) = waiter.next_with_rev().await.ok()?;
                    for event in events {
                        if event.r#type == EventType::Delete as i32 {
                            self.following = None;
                            break;
                        }
                        self.ready.push_back(LeaderResponse {
                            header: Some(waiter.header(rev)),
                            kv: event.kv.clone(),
                        });
                    }
                }
            }
        }
    }

    /// Reads the leader, waiting for the first put under the prefix when there is none;
    /// queues it and starts following its key.
    async fn find_leader(&mut self) -> Result<(), EtcdError> {
        let server = &self.server;
        let found = server.range(&self.ctx, first_created(&self.prefix)).await?;
        let mut header = found.header.ok_or(EtcdError::Corrupt)?;
        let kv = match found.kvs.into_iter().next() {
            Some(kv) => kv,
            None => {
                let range = &first_created(&self.prefix).range_end;
                let range =
                    KeyRange::from_request(&self.prefix, range).map_err(|_| EtcdError::Corrupt)?;
                let mut waiter = server.watch_key(&self.ctx, range, header.revision).await?;
                loop {
                    let (rev, events) = waiter.next_with_rev().await?;
                    let put = events.iter().find(|e| e.r#type == EventType::Put as i32);
                    if let Some(kv) = put.and_then(|e| e.kv.clone()) {
                        // A response may hold several revisions: the header is the put's.
                        header = waiter.header(rev);
                        header.revision = kv.mod_revision;
                        break kv;
                    }
                }
            }
        };
        let key = KeyRange::Single(kv.key.clone());
        let next_rev = header.revision + 1;
        self.ready.push_back(LeaderResponse {
            header: Some(header),
            kv: Some(kv),
        });
        self.following = Some(server.watch_key(&self.ctx, key, next_rev).await?);
        Ok(())
    }
}
