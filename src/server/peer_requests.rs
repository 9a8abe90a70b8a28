//! What only the peer API asks: Raft's own messages, and the requests a follower forwards
//! to the leader that have no client method of their own (a batch of writes, a read
//! index). Forwarded keep-alives, time-to-live and membership changes come through the
//! client methods, with `RequestContext::from_peer`.

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use super::raft_errors::{read_error, write_error};
use super::{RequestContext, Server};
use crate::error::EtcdError;
use crate::proto::cairnpeerpb::{
    ClusterInfoResponse, PeerMember, ProposeResponse, ReadIndexResponse,
};
use crate::proto::cairnraftpb::Proposal;
use crate::raft::{Batch, TypeConfig};

type RaftResult<T, E = openraft::error::Infallible> = Result<T, openraft::error::RaftError<u64, E>>;

impl Server {
    pub async fn append_entries(
        &self,
        rpc: AppendEntriesRequest<TypeConfig>,
    ) -> RaftResult<AppendEntriesResponse<u64>> {
        self.raft.append_entries(rpc).await
    }

    pub async fn vote(&self, rpc: VoteRequest<u64>) -> RaftResult<VoteResponse<u64>> {
        self.raft.vote(rpc).await
    }

    pub async fn install_snapshot(
        &self,
        rpc: InstallSnapshotRequest<TypeConfig>,
    ) -> RaftResult<InstallSnapshotResponse<u64>, openraft::error::InstallSnapshotError> {
        self.raft.install_snapshot(rpc).await
    }

    /// A batch of writes a follower forwarded, proposed as it is. A member that does not
    /// lead says so before proposing: the writes were certainly not applied, and the
    /// follower answers `not leader`.
    pub async fn propose_forwarded(&self, proposal: Proposal) -> ProposeResponse {
        let refused = |error: EtcdError| ProposeResponse {
            results: None,
            error: error.number(),
            index: 0,
        };
        let from_peer = RequestContext {
            from_peer: true,
            ..RequestContext::default()
        };
        if let Err(e) = self.route(&from_peer).await {
            return refused(e);
        }
        match self
            .raft
            .client_write(Batch(std::sync::Arc::new(proposal), None))
            .await
        {
            Ok(written) => ProposeResponse {
                results: Some(written.data.0),
                error: 0,
                index: written.log_id.index,
            },
            Err(e) => refused(write_error(e)),
        }
    }

    /// The leader's read index for a follower's read barrier.
    pub async fn read_index(&self) -> ReadIndexResponse {
        match self.raft.ensure_linearizable().await {
            Ok(read_log_id) => ReadIndexResponse {
                index: read_log_id.map_or(0, |l| l.index),
                error: 0,
            },
            Err(e) => ReadIndexResponse {
                index: 0,
                error: read_error(e).number(),
            },
        }
    }

    /// Raft's TimeoutNow: campaign at once (a leadership transfer to this member).
    pub async fn campaign_now(&self) -> Result<(), EtcdError> {
        self.raft
            .trigger()
            .elect()
            .await
            .map_err(|_| EtcdError::Stopped)
    }

    /// The cluster as this member knows it, for a member joining it.
    pub fn cluster_info(&self) -> ClusterInfoResponse {
        let members = self
            .membership()
            .nodes()
            .map(|(id, info)| PeerMember {
                id: *id,
                peer_urls: info.peer_urls.clone(),
            })
            .collect();
        ClusterInfoResponse {
            cluster_id: self.identity.cluster_id,
            members,
        }
    }
}
