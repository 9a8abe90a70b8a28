//! The peer API's server, on the peer URLs: the peer side's API layer, as `api` is the
//! client side's. Decodes and checks Raft's messages from other members and hands them to
//! the server; answers what followers forward to the leader (writes, read indexes, lease
//! keep-alives and time-to-live, membership changes) through the same server methods the
//! client API calls.
//!
//! May call `server`, and `raft` for the types of Raft's messages only.

use std::sync::Arc;

use futures::stream::BoxStream;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use openraft::Vote;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::server::Connected;
use tonic::transport::Server as TonicServer;
use tonic::{Request, Response, Status};

use crate::proto::cairnpeerpb::peer_server::{Peer, PeerServer};
use crate::proto::cairnpeerpb::{
    ClusterInfoRequest, ClusterInfoResponse, ProposeResponse, RaftMessage, ReadIndexRequest,
    ReadIndexResponse, RemovedRequest, RemovedResponse, TimeoutNowRequest, TimeoutNowResponse,
};
use crate::proto::cairnraftpb::Proposal;
use crate::proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
    MemberAddRequest, MemberAddResponse, MemberPromoteRequest, MemberPromoteResponse,
    MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest, MemberUpdateResponse,
};
use crate::raft::TypeConfig;
use crate::server::{RequestContext, Server};

pub struct PeerService {
    server: Arc<Server>,
}

/// A request another member forwarded to this one as the leader. The member the client
/// called checked who may make it (membership changes need the root role there, as in
/// etcd); writes carry their caller inside the proposal.
fn forwarded() -> RequestContext {
    RequestContext {
        from_peer: true,
        internal: true,
        ..RequestContext::default()
    }
}

pub(crate) fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, Status> {
    bincode::deserialize(&message.payload)
        .map_err(|e| Status::invalid_argument(format!("cairn: undecodable Raft message: {e}")))
}

pub(crate) fn encode<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
    let payload = bincode::serialize(result)
        .map_err(|e| Status::internal(format!("cairn: unencodable Raft message: {e}")))?;
    Ok(Response::new(RaftMessage { payload }))
}

/// Appends and snapshot chunks come from a leader, whose vote is committed. openraft takes
/// that for granted: from any other vote, its core stops on a failed debug assertion (and
/// without debug assertions a follower would accept entries from a candidate). Refused.
fn from_leader(vote: &Vote<u64>) -> Result<(), Status> {
    if vote.is_committed() {
        Ok(())
    } else {
        Err(Status::invalid_argument(
            "cairn: Raft message from a vote that is not a leader's",
        ))
    }
}

/// A leader sends entries that follow `prev_log_id` index by index, their log ids in order.
/// openraft takes that for granted too (its core stops on a failed debug assertion, and a
/// log with a gap would be stored as it came). Refused otherwise.
fn consecutive(rpc: &AppendEntriesRequest<TypeConfig>) -> Result<(), Status> {
    let mut previous = rpc.prev_log_id;
    for entry in &rpc.entries {
        let follows = entry.log_id.index == previous.map_or(0, |p| p.index + 1)
            && previous.is_none_or(|p| p.leader_id <= entry.log_id.leader_id);
        if !follows {
            return Err(Status::invalid_argument(
                "cairn: Raft entries that do not follow one another",
            ));
        }
        previous = Some(entry.log_id);
    }
    Ok(())
}

/// The Raft messages, decoded and checked before openraft sees them.
pub(crate) fn decode_append(
    message: &RaftMessage,
) -> Result<AppendEntriesRequest<TypeConfig>, Status> {
    let rpc: AppendEntriesRequest<TypeConfig> = decode(message)?;
    from_leader(&rpc.vote)?;
    consecutive(&rpc)?;
    Ok(rpc)
}

pub(crate) fn decode_vote(message: &RaftMessage) -> Result<VoteRequest<u64>, Status> {
    decode(message)
}

pub(crate) fn decode_snapshot(
    message: &RaftMessage,
) -> Result<InstallSnapshotRequest<TypeConfig>, Status> {
    let rpc: InstallSnapshotRequest<TypeConfig> = decode(message)?;
    from_leader(&rpc.vote)?;
    Ok(rpc)
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode_append(request.get_ref())?;
        encode(&self.server.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode_vote(request.get_ref())?;
        encode(&self.server.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode_snapshot(request.get_ref())?;
        encode(&self.server.install_snapshot(rpc).await)
    }

    async fn propose(
        &self,
        request: Request<Proposal>,
    ) -> Result<Response<ProposeResponse>, Status> {
        // No member forwards a request that carries nothing; applied, it would be corrupt
        // and stop Raft on every member once committed.
        let proposal = request.into_inner();
        if proposal.requests.is_empty() || proposal.requests.iter().any(|r| r.request.is_none()) {
            return Err(Status::invalid_argument("proposal with an empty request"));
        }
        Ok(Response::new(self.server.propose_forwarded(proposal).await))
    }

    async fn read_index(
        &self,
        _: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        Ok(Response::new(self.server.read_index().await))
    }

    async fn timeout_now(
        &self,
        _: Request<TimeoutNowRequest>,
    ) -> Result<Response<TimeoutNowResponse>, Status> {
        self.server.campaign_now().await?;
        Ok(Response::new(TimeoutNowResponse {}))
    }

    async fn removed(
        &self,
        _: Request<RemovedRequest>,
    ) -> Result<Response<RemovedResponse>, Status> {
        self.server.mark_removed();
        Ok(Response::new(RemovedResponse {}))
    }

    async fn cluster_info(
        &self,
        _: Request<ClusterInfoRequest>,
    ) -> Result<Response<ClusterInfoResponse>, Status> {
        Ok(Response::new(self.server.cluster_info()))
    }

    async fn lease_keep_alive(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        Ok(Response::new(
            self.server.lease_keep_alive(&forwarded(), id).await?,
        ))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.server.lease_time_to_live(&forwarded(), r).await?,
        ))
    }

    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.server.member_add(&forwarded(), r).await?,
        ))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.server.member_remove(&forwarded(), r).await?,
        ))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.server.member_update(&forwarded(), r).await?,
        ))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(
            self.server.member_promote(&forwarded(), r).await?,
        ))
    }
}

/// Serves the peer API on `incoming` connections (TCP, with TLS when the peer URLs are
/// `https`) and `unix_listeners` (unix sockets) until `shutdown` resolves.
pub fn serve<IO>(
    server: Arc<Server>,
    incoming: BoxStream<'static, std::io::Result<IO>>,
    unix_listeners: Vec<UnixListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Connected + Unpin + Send + 'static,
{
    // Members are trusted, and one append may carry many large entries.
    let service = PeerServer::new(PeerService { server })
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopped_unix = stopped.clone();
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let unix_incoming =
        futures::stream::select_all(unix_listeners.into_iter().map(UnixListenerStream::new));
    let unix_service = service.clone();
    tokio::spawn(async move {
        let tcp = TonicServer::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, until_stopped(stopped));
        let unix = TonicServer::builder()
            .add_service(unix_service)
            .serve_with_incoming_shutdown(unix_incoming, until_stopped(stopped_unix));
        let stopper = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let (tcp, unix, ()) = tokio::join!(tcp, unix, stopper);
        if let Err(e) = tcp.and(unix) {
            tracing::error!(error = %e, "peer API server failed");
        }
    })
}
