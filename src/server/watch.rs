//! `Watch`: a stream handle over the watch hub. The server checks who may create each
//! watch and completes what the hub queues (headers, previous values); the API turns it
//! into responses.

use std::sync::Arc;

use super::{RequestContext, Server};
use crate::error::EtcdError;
use crate::mvcc::{KvRead, RangeEnd, RangeOptions};
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::mvccpb::{event::EventType, Event};
use crate::watch::Outbox;

pub use crate::watch::{KeyRange, Outgoing, WatchSpec, WatchStream, NO_WATCH_ID};

/// One watch stream of a client: its watches are created, canceled and asked for progress
/// through `stream()`; what they report comes out of `next()`.
pub struct WatchHandle {
    server: Arc<Server>,
    stream: Arc<WatchStream>,
    outbox: Arc<Outbox>,
    /// The stream's call: its identity is checked at each watch it creates.
    ctx: RequestContext,
}

impl Server {
    /// Opens a watch stream.
    pub fn watch(self: &Arc<Self>, ctx: &RequestContext) -> Result<WatchHandle, EtcdError> {
        let stream = Arc::new(self.watch.open_stream().map_err(|_| EtcdError::Stopped)?);
        Ok(WatchHandle {
            server: self.clone(),
            outbox: stream.outbox(),
            stream,
            ctx: ctx.clone(),
        })
    }
}

impl WatchHandle {
    /// Where the client's requests go: create, cancel, progress.
    pub fn stream(&self) -> Arc<WatchStream> {
        self.stream.clone()
    }

    /// The next queued response; None once the member stops.
    pub async fn next(&self) -> Option<Outgoing> {
        self.outbox.pop().await
    }

    /// Whether the caller may watch `key`..`range_end` (read permission), checked when each
    /// watch is created, as etcd does; the error says why not.
    pub async fn may_watch(&self, key: &[u8], range_end: &[u8]) -> Result<(), EtcdError> {
        self.server.check_watch(&self.ctx, key, range_end).await
    }

    /// The progress notification timer fired.
    pub fn progress_tick(&self) {
        self.stream.progress_tick();
    }

    /// Resolves when the stream must end for want of a leader: it asked for one
    /// (`hasleader`) and its member has been without one too long. Never otherwise.
    pub async fn leader_lost(&self) -> EtcdError {
        if !self.ctx.require_leader {
            std::future::pending::<()>().await;
        }
        self.server.leader_lost().await;
        EtcdError::NoLeader
    }

    /// A response header at `revision` (0: the current one).
    pub fn header(&self, revision: i64) -> ResponseHeader {
        self.server.header(revision)
    }

    /// The value each key had before the event, as etcd reads it: at the revision before,
    /// unless the event created the key; absent when that revision was compacted.
    pub fn fill_prev_kvs(&self, events: &mut [Event]) {
        let view = self.server.mvcc.separate_reads();
        for event in events {
            let Some(kv) = &event.kv else { continue };
            let created =
                event.r#type == EventType::Put as i32 && kv.create_revision == kv.mod_revision;
            if created {
                continue;
            }
            let opts = RangeOptions {
                rev: kv.mod_revision - 1,
                ..RangeOptions::default()
            };
            if let Ok(mut found) = view.range(&kv.key, RangeEnd::Single, opts) {
                event.prev_kv = found.kvs.pop();
            }
        }
    }
}
