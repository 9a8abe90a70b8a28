//! `etcdserverpb.Cluster`: the member list; membership changes not yet.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::not_yet;
use crate::node::Node;
use crate::proto::etcdserverpb::cluster_server::Cluster;
use crate::proto::etcdserverpb::*;
use crate::raft;

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
                    is_learner: !voters.contains(id),
                }
            })
            .collect()
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<MemberAddRequest>,
    ) -> Result<Response<MemberAddResponse>, Status> {
        Err(not_yet("Cluster.MemberAdd"))
    }

    async fn member_remove(
        &self,
        _: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(not_yet("Cluster.MemberRemove"))
    }

    async fn member_update(
        &self,
        _: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(not_yet("Cluster.MemberUpdate"))
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
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(not_yet("Cluster.MemberPromote"))
    }
}
