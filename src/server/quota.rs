//! The space quota (`--quota-backend-bytes`), as etcd checks it before proposing: a
//! request that would grow the store (`apply::quota` says by how much) past the quota is
//! refused with `database space exceeded`, and this member raises the NOSPACE alarm
//! through Raft. While the alarm is raised, apply refuses such requests on every member
//! (`apply`), until `alarm disarm`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{RequestContext, Server};
use crate::apply::quota::cost_bytes;
use crate::error::EtcdError;
use crate::proto::cairnraftpb::internal_request::Request;
use crate::proto::etcdserverpb::alarm_request::AlarmAction;
use crate::proto::etcdserverpb::{AlarmRequest, AlarmType};
use crate::storage::StoreSize;

/// How long a measured store size is used: measuring takes RocksDB's lock, and the size
/// moves slowly next to a request rate (etcd's own size moves once per backend commit,
/// every 100 ms).
const SIZE_FRESH_FOR: Duration = Duration::from_millis(50);

/// The last measured size, shared by all requests.
#[derive(Default)]
pub(super) struct SizeCache(Mutex<Option<(Instant, StoreSize)>>);

impl Server {
    /// The store's size, measured at most `SIZE_FRESH_FOR` ago.
    pub(super) fn store_size(&self) -> StoreSize {
        let mut cached = self.store_size_cache.0.lock().expect("size cache lock");
        match *cached {
            Some((at, size)) if at.elapsed() < SIZE_FRESH_FOR => size,
            _ => {
                let size = self.storage.store_size();
                *cached = Some((Instant::now(), size));
                size
            }
        }
    }

    /// Forgets the measured size: a defragmentation changes it at once.
    pub(super) fn forget_store_size(&self) {
        *self.store_size_cache.0.lock().expect("size cache lock") = None;
    }

    /// Refuses `request` if it would take the store past the quota, and raises the NOSPACE
    /// alarm (whether that proposal succeeds or not, the request is refused, as etcd's).
    pub(super) async fn check_quota(&self, request: &Request) -> Result<(), EtcdError> {
        let cost = cost_bytes(request);
        if cost == 0 || self.store_size().total_bytes + cost < self.quota_backend_bytes {
            return Ok(());
        }
        let me = self.identity.member_id;
        let raised = self
            .alarms
            .list(AlarmType::Nospace)
            .iter()
            .any(|a| a.member_id == me);
        // Raised once; etcd proposes it again with every refused request.
        if !raised {
            let alarm = AlarmRequest {
                action: AlarmAction::Activate as i32,
                member_id: me,
                alarm: AlarmType::Nospace as i32,
            };
            let ctx = RequestContext::internal();
            if let Err(e) = Box::pin(self.propose(&ctx, Request::Alarm(alarm))).await {
                tracing::warn!(error = %e, "cannot raise the NOSPACE alarm");
            }
        }
        Err(EtcdError::NoSpace)
    }
}
