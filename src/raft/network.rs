//! The client side of the peer API (`proto/raft_peer.proto`): Raft's messages to other
//! members, and the requests a member forwards to the leader. Connections are made on first
//! use, one per member and peer URL, and shared.
//!
//! openraft's messages travel serde-encoded (bincode) inside a protobuf envelope; members
//! of one cluster run the same version of Cairn.

use std::collections::HashMap;
use std::sync::Mutex;
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
    tls: Option<crate::tls::Tls>,
}

impl Peers {
    pub fn new(tls: Option<crate::tls::Tls>) -> Peers {
        Peers {
            clients: Mutex::default(),
            tls,
        }
    }

    /// A client for a peer URL, not shared (for one-off requests before Raft runs).
    pub fn client_for_url(&self, url: &str) -> Result<PeerClient<Channel>, String> {
        let channel = crate::tls::channel(
            url,
            self.tls.as_ref().map(crate::tls::Tls::connector),
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
    pub peers: std::sync::Arc<Peers>,
}

pub struct PeerConnection {
    target: u64,
    client: Result<PeerClient<Channel>, String>,
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &MemberInfo) -> PeerConnection {
        PeerConnection {
            target,
            client: self.peers.client(target, node),
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
        self.call(Method::AppendEntries, &rpc, &option).await
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

/// Where requests only the leader can serve go.
pub enum Leader {
    /// This member leads.
    Me,
    /// Another member leads: its ID, and a client of its peer API.
    Other(u64, PeerClient<Channel>),
}

impl Leader {
    pub fn id(&self, me: u64) -> u64 {
        match self {
            Leader::Me => me,
            Leader::Other(id, _) => *id,
        }
    }
}

/// Completes once this member knows a leader other than `leader` (it ended or lost its
/// leadership): a request sent to `leader` and still unanswered then will most likely
/// never be, and its caller should stop waiting for it. Never completes while `leader`
/// still leads or no other is known.
pub async fn leader_replaced(raft: &super::Raft, peers: &Peers, me: u64, leader: u64) {
    let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
    if wait_for_leader(raft, peers, me, Some(leader), far)
        .await
        .is_none()
    {
        std::future::pending::<()>().await;
    }
}

/// Whether a failed peer request certainly never reached the peer: no connection could be
/// made (refused, unreachable, a failed TLS handshake), so nothing was sent. Any other
/// failure may come after the peer received the request.
pub fn never_sent(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// How often a wait for a leader looks again when Raft's metrics do not change: whether a
/// leader counts also depends on how long ago a quorum answered it (`leader_id`).
const LEADER_RECHECK: Duration = Duration::from_millis(50);

/// The leader, waiting for one until `deadline` if there is none (an election, a leader
/// cut off from its quorum) or only `not` (a leader a request to just failed): as in etcd,
/// a request that finds no leader waits for the next election instead of failing at once.
/// `None` at the deadline.
pub async fn wait_for_leader(
    raft: &super::Raft,
    peers: &Peers,
    me: u64,
    not: Option<u64>,
    deadline: tokio::time::Instant,
) -> Option<Leader> {
    let mut metrics = raft.metrics();
    loop {
        metrics.borrow_and_update();
        if let Some(leader) = leader(raft, peers, me).filter(|l| Some(l.id(me)) != not) {
            return Some(leader);
        }
        let wait = deadline
            .checked_duration_since(tokio::time::Instant::now())
            .filter(|left| !left.is_zero())?
            .min(LEADER_RECHECK);
        if let Ok(Err(_)) = tokio::time::timeout(wait, metrics.changed()).await {
            // Raft stopped: no leader will come.
            return None;
        }
    }
}

/// The current leader as this member knows it; `None` while there is none (an election,
/// or no quorum).
pub fn leader(raft: &super::Raft, peers: &Peers, me: u64) -> Option<Leader> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let leader = leader_id(raft, &metrics)?;
    if leader == me {
        return Some(Leader::Me);
    }
    let info = metrics.membership_config.membership().get_node(&leader)?;
    peers
        .client(leader, info)
        .ok()
        .map(|c| Leader::Other(leader, c))
}

/// The leader, except that a leader no quorum has answered for longer than an election
/// timeout is no leader: cut off from its peers, it cannot commit anything, and etcd's
/// leader steps down then (CheckQuorum). openraft 0.9's leader does not step down, so
/// Cairn reports it the way etcd would. Nor is a leader that has just been removed from
/// the membership: it has left, and the rest have yet to elect the next one.
pub fn leader_id(
    raft: &super::Raft,
    metrics: &openraft::RaftMetrics<u64, MemberInfo>,
) -> Option<u64> {
    let leader = metrics.current_leader?;
    metrics.membership_config.membership().get_node(&leader)?;
    let quorum_timeout_ms = raft.config().election_timeout_max;
    let lost_quorum = leader == metrics.id
        && metrics.membership_config.membership().voter_ids().count() > 1
        && metrics
            .millis_since_quorum_ack
            .is_some_and(|ms| ms > quorum_timeout_ms);
    (!lost_quorum).then_some(leader)
}
