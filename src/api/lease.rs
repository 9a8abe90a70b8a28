//! `etcdserverpb.Lease`: grants and revokes go through Raft; keep-alives, time-to-live and
//! the list are answered by the lessor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use super::{complete_header, mismatch, propose, BoxStream};
use crate::lease::NO_LEASE;
use crate::node::Node;
use crate::proto::cairnraftpb::{apply_result::Result as Applied, internal_request};
use crate::proto::etcdserverpb::lease_server::Lease;
use crate::proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseLeasesRequest, LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus,
    LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};

pub struct LeaseService {
    node: Arc<Node>,
    /// Server-chosen lease IDs, as etcd makes them: the member ID's low 16 bits, then the
    /// start time in milliseconds (40 bits), then a counter (8 bits, carrying into the time).
    next_id: AtomicU64,
}

impl LeaseService {
    pub fn new(node: Arc<Node>) -> LeaseService {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let prefix = (node.identity.member_id & 0xffff) << 48;
        let next_id = AtomicU64::new(prefix | ((now_ms & ((1 << 40) - 1)) << 8));
        LeaseService { node, next_id }
    }

    fn choose_id(&self) -> i64 {
        loop {
            let id = (self.next_id.fetch_add(1, Ordering::Relaxed) + 1) & (i64::MAX as u64);
            if id as i64 != NO_LEASE {
                return id as i64;
            }
        }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<LeaseGrantRequest>,
    ) -> Result<Response<LeaseGrantResponse>, Status> {
        let mut r = request.into_inner();
        if r.id == NO_LEASE {
            r.id = self.choose_id();
        }
        match propose(&self.node, internal_request::Request::LeaseGrant(r)).await? {
            Applied::LeaseGrant(mut response) => {
                response.header = complete_header(&self.node, response.header);
                Ok(Response::new(response))
            }
            _ => Err(mismatch()),
        }
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let r = request.into_inner();
        match propose(&self.node, internal_request::Request::LeaseRevoke(r)).await? {
            Applied::LeaseRevoke(mut response) => {
                response.header = complete_header(&self.node, response.header);
                Ok(Response::new(response))
            }
            _ => Err(mismatch()),
        }
    }

    type LeaseKeepAliveStream = BoxStream<LeaseKeepAliveResponse>;

    /// Answers each keep-alive in order; an unknown (or just expired) lease gets TTL 0, as
    /// etcd answers. Ends when the client closes its side.
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let node = self.node.clone();
        let responses = request.into_inner().then(move |request| {
            let node = node.clone();
            async move {
                let id = request?.id;
                let ttl = node.lease_renew(id).await?;
                Ok(LeaseKeepAliveResponse {
                    header: Some(node.header(0)),
                    id,
                    ttl,
                })
            }
        });
        Ok(Response::new(Box::pin(responses)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        Ok(Response::new(
            self.node.lease_time_to_live(request.into_inner()).await?,
        ))
    }

    async fn lease_leases(
        &self,
        _: Request<LeaseLeasesRequest>,
    ) -> Result<Response<LeaseLeasesResponse>, Status> {
        Ok(Response::new(LeaseLeasesResponse {
            header: Some(self.node.header(0)),
            leases: self
                .node
                .lessor
                .leases()
                .into_iter()
                .map(|id| LeaseStatus { id })
                .collect(),
        }))
    }
}
