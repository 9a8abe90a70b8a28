//! `etcdserverpb.Cluster`: the member list and membership changes, which Raft applies
//! (openraft's joint consensus).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use url::Url;

use crate::error::EtcdError;
use crate::node::Node;
use crate::proto::etcdserverpb::cluster_client::ClusterClient;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::*;
use crate::raft::{self, MemberInfo};

pub struct ClusterService {
    node: Arc<Node>,
}

impl ClusterService {
    pub fn new(node: Arc<Node>) -> ClusterService {
        ClusterService { node }
    }

    /// Members as Raft's membership has them, with the name and client URLs each
    /// published (a member that has not started yet has neither, as in etcd).
    fn members(&self) -> Vec<Member> {
        let metrics = self.node.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let published = raft::published_members(&self.node.storage);
        membership
            .nodes()
            .map(|(id, info)| {
                let (name, client_urls) = match published.get(id) {
                    Some(p) => (p.name.clone(), p.client_urls.clone()),
                    None => (info.name.clone(), info.client_urls.clone()),
                };
                Member {
                    id: *id,
                    name,
                    peer_ur_ls: info.peer_urls.clone(),
                    client_ur_ls: client_urls,
                    is_learner: !voters.contains(id) && !info.voter_when_caught_up,
                }
            })
            .collect()
    }
}

/// etcd's membership errors.
mod errors {
    use tonic::Status;

    pub fn peer_url_exists() -> Status {
        Status::failed_precondition("etcdserver: Peer URLs already exists")
    }
    pub fn bad_urls() -> Status {
        Status::invalid_argument("etcdserver: given member URLs are invalid")
    }
    pub fn not_found() -> Status {
        Status::not_found("etcdserver: member not found")
    }
    pub fn not_learner() -> Status {
        Status::failed_precondition("etcdserver: can only promote a learner member")
    }
    pub fn learner_not_ready() -> Status {
        Status::failed_precondition(
            "etcdserver: can only promote a learner member which is in sync with leader",
        )
    }
    pub fn too_many_learners() -> Status {
        Status::failed_precondition("etcdserver: too many learner members in cluster")
    }
}

/// etcd allows one learner at a time.
const MAX_LEARNERS: usize = 1;

impl ClusterService {
    /// Membership changes are the leader's: on a follower, the request goes to the
    /// leader's client URL, as a client would send it. Without a leader (one just removed
    /// included), it waits for the next one, at most the request timeout, as a proposal
    /// waits in etcd.
    async fn leader_client(&self) -> Result<Option<ClusterClient<Channel>>, Status> {
        let me = self.node.identity.member_id;
        let raft = &self.node.raft;
        let leader = match raft
            .wait(Some(self.node.request_timeout()))
            .metrics(|m| raft::leader_id(raft, m).is_some(), "a leader")
            .await
        {
            Ok(m) => raft::leader_id(raft, &m),
            Err(_) => None,
        };
        match leader {
            Some(id) if id == me => Ok(None),
            Some(id) => {
                let published = raft::published_members(&self.node.storage);
                let url = published
                    .get(&id)
                    .and_then(|m| m.client_urls.first().cloned())
                    .ok_or_else(|| Status::from(EtcdError::NotLeader))?;
                let channel = crate::tls::channel(
                    &url,
                    self.node
                        .client_tls
                        .as_ref()
                        .map(crate::tls::Tls::connector),
                    self.node.request_timeout(),
                )
                .map_err(|_| Status::from(EtcdError::NotLeader))?;
                Ok(Some(ClusterClient::new(channel)))
            }
            None => Err(EtcdError::NoLeader.into()),
        }
    }

    fn membership(&self) -> (BTreeMap<u64, MemberInfo>, BTreeSet<u64>) {
        let metrics = self.node.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        let nodes = membership.nodes().map(|(id, n)| (*id, n.clone())).collect();
        (nodes, membership.voter_ids().collect())
    }

    async fn change(&self, changes: ChangeMembers<u64, MemberInfo>) -> Result<(), Status> {
        let outcome = tokio::time::timeout(
            self.node.request_timeout(),
            self.node.raft.change_membership(changes, false),
        )
        .await
        .map_err(|_| Status::from(EtcdError::Timeout))?;
        outcome.map(|_| ()).map_err(|e| match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                EtcdError::NotLeader.into()
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
                Status::failed_precondition(format!("cairn: membership change refused: {e}"))
            }
            RaftError::Fatal(_) => EtcdError::Stopped.into(),
        })
    }

    fn response_header(&self) -> Option<ResponseHeader> {
        Some(self.node.cluster_header())
    }
}

/// The leader's own answer to a forwarded change passes as it is. A failure to reach the
/// leader (a status with a local transport error as its source) becomes etcd's timeout, its
/// answer when a proposal's outcome is unknown.
fn forwarded(status: Status) -> Status {
    if std::error::Error::source(&status).is_some() {
        EtcdError::Timeout.into()
    } else {
        status
    }
}

/// Peer URLs as etcd accepts them: absolute http(s) URLs, printed as etcd prints them.
pub(crate) fn parse_peer_urls(urls: &[String]) -> Result<Vec<String>, Status> {
    if urls.is_empty() {
        return Err(errors::bad_urls());
    }
    urls.iter()
        .map(|u| match Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.port().is_some() => {
                Ok(crate::cluster::url_string(&url))
            }
            _ => Err(errors::bad_urls()),
        })
        .collect()
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        request: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        if let Some(mut leader) = self.leader_client().await? {
            return leader
                .member_add(request.into_inner())
                .await
                .map_err(forwarded);
        }
        let r = request.into_inner();
        let peer_urls = parse_peer_urls(&r.peer_ur_ls)?;
        let (nodes, voters) = self.membership();
        if nodes
            .values()
            .any(|n| n.peer_urls.iter().any(|u| peer_urls.contains(u)))
        {
            return Err(errors::peer_url_exists());
        }
        let learners = nodes
            .iter()
            .filter(|(id, n)| !voters.contains(id) && !n.voter_when_caught_up)
            .count();
        if r.is_learner && learners >= MAX_LEARNERS {
            return Err(errors::too_many_learners());
        }
        let now_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let id = crate::cluster::added_member_id(
            &peer_urls,
            &self.node.identity.cluster_token,
            now_secs,
        );
        // Every member joins as a learner; one added as a voter is made a voter once it has
        // caught up (`node::membership`), which etcd's quorum counts at once.
        let info = MemberInfo {
            name: String::new(),
            peer_urls: peer_urls.clone(),
            client_urls: Vec::new(),
            voter_when_caught_up: !r.is_learner,
        };
        self.change(ChangeMembers::AddNodes(BTreeMap::from([(id, info)])))
            .await?;
        Ok(Response::new(MemberAddResponse {
            header: self.response_header(),
            member: Some(Member {
                id,
                name: String::new(),
                peer_ur_ls: peer_urls,
                client_ur_ls: Vec::new(),
                is_learner: r.is_learner,
            }),
            members: self.members(),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        if let Some(mut leader) = self.leader_client().await? {
            return leader
                .member_remove(request.into_inner())
                .await
                .map_err(forwarded);
        }
        let id = request.into_inner().id;
        let (nodes, voters) = self.membership();
        if !nodes.contains_key(&id) {
            return Err(errors::not_found());
        }
        let changes = if voters.contains(&id) {
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        self.change(changes).await?;
        // The removed member no longer hears from the leader: tell it, so it stops. Best
        // effort: it may be down already.
        if let Ok(mut removed) = self.node.peers.client(id, &nodes[&id]) {
            let tell = removed.removed(crate::proto::cairnpeerpb::RemovedRequest {});
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tell).await;
        }
        Ok(Response::new(MemberRemoveResponse {
            header: self.response_header(),
            members: self.members(),
        }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        if let Some(mut leader) = self.leader_client().await? {
            return leader
                .member_update(request.into_inner())
                .await
                .map_err(forwarded);
        }
        let r = request.into_inner();
        let peer_urls = parse_peer_urls(&r.peer_ur_ls)?;
        let (nodes, _) = self.membership();
        let Some(current) = nodes.get(&r.id) else {
            return Err(errors::not_found());
        };
        if nodes
            .iter()
            .any(|(id, n)| *id != r.id && n.peer_urls.iter().any(|u| peer_urls.contains(u)))
        {
            return Err(errors::peer_url_exists());
        }
        let info = MemberInfo {
            peer_urls,
            ..current.clone()
        };
        self.change(ChangeMembers::SetNodes(BTreeMap::from([(r.id, info)])))
            .await?;
        Ok(Response::new(MemberUpdateResponse {
            header: self.response_header(),
            members: self.members(),
        }))
    }

    async fn member_list(
        &self,
        _: Request<MemberListRequest>,
    ) -> Result<Response<MemberListResponse>, Status> {
        Ok(Response::new(MemberListResponse {
            header: Some(self.node.cluster_header()),
            members: self.members(),
        }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        if let Some(mut leader) = self.leader_client().await? {
            return leader
                .member_promote(request.into_inner())
                .await
                .map_err(forwarded);
        }
        let id = request.into_inner().id;
        let (nodes, voters) = self.membership();
        if !nodes.contains_key(&id) {
            return Err(errors::not_found());
        }
        if voters.contains(&id) || nodes[&id].voter_when_caught_up {
            return Err(errors::not_learner());
        }
        let metrics = self.node.raft.metrics().borrow().clone();
        if !raft::learner_in_sync(&metrics, id) {
            return Err(errors::learner_not_ready());
        }
        self.change(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
            .await?;
        Ok(Response::new(MemberPromoteResponse {
            header: self.response_header(),
            members: self.members(),
        }))
    }
}
