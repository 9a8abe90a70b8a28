//! The client side of the peer API (`proto/raft_peer.proto`): Raft's messages to other
//! members, and the requests a member forwards to the leader. Connections are made on first
//! use, one per member and peer URL, and shared.
//!
//! openraft's messages travel serde-encoded (bincode) inside a protobuf envelope; members
//! of one cluster run the same version of Cairn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::AnyError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::Channel;

use super::{MemberInfo, TypeConfig};
use crate::metrics::{Metrics, PeerMetrics};
use crate::proto::cairnpeerpb::peer_client::PeerClient;
use crate::proto::cairnpeerpb::RaftMessage;

/// A peer that does not answer a connection attempt within this is unreachable for now;
/// Raft retries later.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Bytes of entries one append carries, unless its first entry alone is larger. openraft
/// 0.9 gives each append one heartbeat interval to be sent, stored and fsynced by the
/// follower; a follower catching up from far behind must get pieces it can take in that
/// time, or every append times out and is resent unchanged, for ever.
const MAX_APPEND_BYTES: usize = 1 << 20;

/// Connections to the other members' peer URLs.
pub struct Peers {
    clients: Mutex<HashMap<(u64, String), PeerClient<Channel>>>,
    /// Peer TLS, for `https` peer URLs.
    tls: Option<crate::net::tls::Tls>,
}

impl Peers {
    pub fn new(tls: Option<crate::net::tls::Tls>) -> Peers {
        Peers {
            clients: Mutex::default(),
            tls,
        }
    }

    /// A client for a peer URL, not shared (for one-off requests before Raft runs).
    pub fn client_for_url(&self, url: &str) -> Result<PeerClient<Channel>, String> {
        let channel = crate::net::tls::channel(
            url,
            self.tls.as_ref().map(crate::net::tls::Tls::connector),
            CONNECT_TIMEOUT,
        )?;
        Ok(PeerClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    /// The client for `member`, at its first peer URL.
    pub fn client(&self, member: u64, info: &MemberInfo) -> Result<PeerClient<Channel>, String> {
        let url = info
            .peer_urls
            .first()
            .ok_or_else(|| format!("member {member:x} has no peer URL"))?
            .clone();
        let mut clients = self.clients.lock().expect("peer clients lock");
        if let Some(client) = clients.get(&(member, url.clone())) {
            return Ok(client.clone());
        }
        let client = self
            .client_for_url(&url)
            .map_err(|e| format!("member {member:x}: {e}"))?;
        clients.insert((member, url), client.clone());
        Ok(client)
    }
}

/// openraft's door to the peers.
pub struct PeerNetwork {
    pub peers: Arc<Peers>,
    pub metrics: Arc<Metrics>,
}

pub struct PeerConnection {
    target: u64,
    client: Result<PeerClient<Channel>, String>,
    /// Traffic with `target`, resolved once per connection.
    traffic: PeerMetrics,
    heartbeat_send_failures: prometheus::IntCounter,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &MemberInfo) -> PeerConnection {
        PeerConnection {
            target,
            client: self.peers.client(target, node),
            traffic: self.metrics.network.peer(target),
            heartbeat_send_failures: self.metrics.server.heartbeat_send_failures.clone(),
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<u64, MemberInfo, RaftError<u64, E>>>;

impl PeerConnection {
    /// Sends one Raft message and decodes the answer: the remote member's result, or a
    /// transport failure (unreachable when the connection cannot be made).
    async fn call<Req, Resp, E>(
        &mut self,
        method: Method,
        request: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &self.client {
            Ok(client) => client.clone(),
            Err(e) => {
                return Err(RPCError::Unreachable(Unreachable::new(&AnyError::error(
                    e.clone(),
                ))))
            }
        };
        let payload =
            bincode::serialize(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.traffic.sent_bytes.inc_by(payload.len() as u64);
        let message = RaftMessage { payload };
        let mut client = client;
        let call = async {
            match method {
                Method::AppendEntries => client.append_entries(message).await,
                Method::Vote => client.vote(message).await,
                Method::InstallSnapshot => client.install_snapshot(message).await,
            }
        };
        let answer = match tokio::time::timeout(option.hard_ttl(), call).await {
            Ok(Ok(answer)) => answer.into_inner(),
            Ok(Err(status)) if status.code() == tonic::Code::Unavailable => {
                return Err(RPCError::Unreachable(Unreachable::new(&status)))
            }
            Ok(Err(status)) => return Err(RPCError::Network(NetworkError::new(&status))),
            Err(elapsed) => return Err(RPCError::Network(NetworkError::new(&elapsed))),
        };
        self.traffic
            .received_bytes
            .inc_by(answer.payload.len() as u64);
        let result: Result<Resp, RaftError<u64, E>> = bincode::deserialize(&answer.payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

#[derive(Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        fail::fail_point!("raft_before_send_append", |_| Err(RPCError::Unreachable(
            Unreachable::new(&AnyError::error("failpoint raft_before_send_append"))
        )));
        if let Some(fitting) = entries_within(&rpc.entries, MAX_APPEND_BYTES) {
            // openraft sends the next appends with at most this many entries.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(fitting),
            ));
        }
        if !rpc.entries.is_empty() {
            return self.call(Method::AppendEntries, &rpc, &option).await;
        }
        // A heartbeat: its round trip is the peers' (the follower writes nothing), and a
        // failed one is etcd's failed heartbeat send.
        let round_trip = self.traffic.round_trip_seconds.start_timer();
        let answer = self.call(Method::AppendEntries, &rpc, &option).await;
        match &answer {
            Ok(_) => round_trip.observe_duration(),
            Err(_) => {
                round_trip.stop_and_discard();
                self.heartbeat_send_failures.inc();
            }
        }
        answer
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call(Method::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<u64>, openraft::error::Infallible> {
        self.call(Method::Vote, &rpc, &option).await
    }
}

/// When `entries` come to more than `max_bytes`, how many of the first ones fit (at least
/// one); `None` when all of them fit.
fn entries_within(entries: &[openraft::Entry<TypeConfig>], max_bytes: usize) -> Option<u64> {
    let mut bytes = 0;
    for (i, entry) in entries.iter().enumerate() {
        bytes += match &entry.payload {
            openraft::EntryPayload::Normal(batch) => prost::Message::encoded_len(&*batch.0),
            // Blank and membership entries are small.
            _ => 0,
        };
        if bytes > max_bytes {
            // A single entry goes alone, whatever its size.
            return (entries.len() > 1).then_some(i.max(1) as u64);
        }
    }
    None
}
