//! The peer API's server, on the peer URLs: hands Raft's messages from other members to
//! openraft, and answers what followers forward to the leader (client writes, read
//! indexes, lease keep-alives and time-to-live).
//!
//! May call `node` and `raft`.

use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest};
use openraft::Vote;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use crate::error::EtcdError;
use crate::node::Node;
use crate::proto::cairnpeerpb::peer_server::{Peer, PeerServer};
use crate::proto::cairnpeerpb::{
    ClusterInfoRequest, ClusterInfoResponse, PeerMember, ProposeResponse, RaftMessage,
    ReadIndexRequest, ReadIndexResponse, RemovedRequest, RemovedResponse, TimeoutNowRequest,
    TimeoutNowResponse,
};
use crate::proto::cairnraftpb::Proposal;
use crate::proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse,
};
use crate::raft::{Batch, Raft, TypeConfig};

pub struct PeerService {
    node: Arc<Node>,
}

pub(crate) fn decode<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, Status> {
    bincode::deserialize(&message.payload)
        .map_err(|e| Status::invalid_argument(format!("cairn: undecodable Raft message: {e}")))
}

fn encode<T: Serialize>(result: &T) -> Result<Response<RaftMessage>, Status> {
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

/// The Raft messages' handlers: decode, check, hand to openraft, encode its answer.
pub(crate) async fn append_entries(
    raft: &Raft,
    message: &RaftMessage,
) -> Result<Response<RaftMessage>, Status> {
    let rpc: AppendEntriesRequest<TypeConfig> = decode(message)?;
    from_leader(&rpc.vote)?;
    consecutive(&rpc)?;
    encode(&raft.append_entries(rpc).await)
}

pub(crate) async fn vote(
    raft: &Raft,
    message: &RaftMessage,
) -> Result<Response<RaftMessage>, Status> {
    let rpc = decode(message)?;
    encode(&raft.vote(rpc).await)
}

pub(crate) async fn install_snapshot(
    raft: &Raft,
    message: &RaftMessage,
) -> Result<Response<RaftMessage>, Status> {
    let rpc: InstallSnapshotRequest<TypeConfig> = decode(message)?;
    from_leader(&rpc.vote)?;
    encode(&raft.install_snapshot(rpc).await)
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        append_entries(&self.node.raft, request.get_ref()).await
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        vote(&self.node.raft, request.get_ref()).await
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        install_snapshot(&self.node.raft, request.get_ref()).await
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
        // A member that does not lead says so before proposing: the write was certainly not
        // applied, and the forwarding member answers `not leader`.
        if !self.node.is_leader() {
            let error = match self.node.leader_id() {
                Some(_) => EtcdError::NotLeader,
                None => EtcdError::NoLeader,
            };
            return Ok(Response::new(ProposeResponse {
                results: None,
                error: error.number(),
                index: 0,
            }));
        }
        let batch = Batch(std::sync::Arc::new(proposal));
        let response = match self.node.raft.client_write(batch).await {
            Ok(written) => ProposeResponse {
                results: Some(written.data.0),
                error: 0,
                index: written.log_id.index,
            },
            Err(e) => ProposeResponse {
                results: None,
                error: crate::node::write_error(e).number(),
                index: 0,
            },
        };
        Ok(Response::new(response))
    }

    async fn read_index(
        &self,
        _: Request<ReadIndexRequest>,
    ) -> Result<Response<ReadIndexResponse>, Status> {
        let response = match self.node.raft.ensure_linearizable().await {
            Ok(read_log_id) => ReadIndexResponse {
                index: read_log_id.map_or(0, |l| l.index),
                error: 0,
            },
            Err(e) => ReadIndexResponse {
                index: 0,
                error: crate::node::read_error(e).number(),
            },
        };
        Ok(Response::new(response))
    }

    async fn timeout_now(
        &self,
        _: Request<TimeoutNowRequest>,
    ) -> Result<Response<TimeoutNowResponse>, Status> {
        self.node
            .raft
            .trigger()
            .elect()
            .await
            .map_err(|_| Status::from(EtcdError::Stopped))?;
        Ok(Response::new(TimeoutNowResponse {}))
    }

    async fn removed(
        &self,
        _: Request<RemovedRequest>,
    ) -> Result<Response<RemovedResponse>, Status> {
        self.node.mark_removed();
        Ok(Response::new(RemovedResponse {}))
    }

    async fn cluster_info(
        &self,
        _: Request<ClusterInfoRequest>,
    ) -> Result<Response<ClusterInfoResponse>, Status> {
        let metrics = self.node.raft.metrics().borrow().clone();
        let members = metrics
            .membership_config
            .membership()
            .nodes()
            .map(|(id, info)| PeerMember {
                id: *id,
                peer_urls: info.peer_urls.clone(),
            })
            .collect();
        Ok(Response::new(ClusterInfoResponse {
            cluster_id: self.node.identity.cluster_id,
            members,
        }))
    }

    async fn lease_keep_alive(
        &self,
        request: Request<LeaseKeepAliveRequest>,
    ) -> Result<Response<LeaseKeepAliveResponse>, Status> {
        let id = request.into_inner().id;
        let ttl = self.node.lease_renew_as_leader(id).await?;
        Ok(Response::new(LeaseKeepAliveResponse {
            header: Some(self.node.header(0)),
            id,
            ttl,
        }))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        if !self.node.lessor.is_primary() {
            return Err(EtcdError::NotLeader.into());
        }
        Ok(Response::new(
            self.node.local_lease_time_to_live(request.into_inner()),
        ))
    }
}

/// Serves the peer API on `listeners` (TCP) and `unix_listeners` (unix sockets) until
/// `shutdown` resolves.
pub fn serve(
    node: Arc<Node>,
    listeners: Vec<(TcpListener, bool)>,
    unix_listeners: Vec<UnixListener>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    // Members are trusted, and one append may carry many large entries.
    let service = PeerServer::new(PeerService { node: node.clone() })
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    let incoming = match crate::tls::incoming(listeners, node.peer_tls.as_ref()) {
        Ok(incoming) => incoming,
        Err(e) => {
            tracing::error!(error = %e, "peer API server cannot start");
            return tokio::spawn(async {});
        }
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stopped_unix = stopped.clone();
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let unix_incoming =
        futures::stream::select_all(unix_listeners.into_iter().map(UnixListenerStream::new));
    let unix_service = service.clone();
    tokio::spawn(async move {
        let tcp = Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, until_stopped(stopped));
        let unix = Server::builder()
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
