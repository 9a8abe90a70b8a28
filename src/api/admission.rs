//! Who may call what, before a request reaches a service, as etcd's interceptors decide:
//! a learner serves only `Maintenance.Status` and serializable ranges (checked in `kv`),
//! and a request that asks for a leader (`hasleader` metadata) is refused without one.

use std::sync::Arc;

use tonic::codegen::http::Request;
use tonic::Status;

use crate::error::EtcdError;
use crate::node::Node;

/// etcd's metadata key for "fail unless there is a leader" (clientv3.WithRequireLeader).
const REQUIRE_LEADER_KEY: &str = "hasleader";

/// RPCs a learner serves: everything but writes and linearizable reads, which it cannot.
/// A range is let through here and checked for `serializable` by the KV service.
const LEARNER_PATHS: [&str; 2] = ["/etcdserverpb.Maintenance/Status", "/etcdserverpb.KV/Range"];

pub fn admit<B>(node: &Arc<Node>, request: Request<B>) -> Result<Request<B>, Status> {
    let path = request.uri().path();
    if !path.starts_with("/etcdserverpb.") && !path.starts_with("/v3") {
        // Health and reflection are for everyone.
        return Ok(request);
    }
    if node.is_learner() && !LEARNER_PATHS.contains(&path) {
        return Err(EtcdError::NotSupportedForLearner.into());
    }
    let wants_leader = requires_leader(
        request
            .headers()
            .get(REQUIRE_LEADER_KEY)
            .map(|v| v.as_bytes()),
    );
    if wants_leader && node.leader_id().is_none() {
        return Err(EtcdError::NoLeader.into());
    }
    Ok(request)
}

/// Whether a request's `hasleader` metadata asks for a leader.
fn requires_leader(value: Option<&[u8]>) -> bool {
    value == Some(b"true")
}

/// Whether a stream asked for a leader: it then ends when its member has been without one
/// for too long (`Node::leader_lost`), as etcd's do.
pub fn stream_requires_leader(metadata: &tonic::metadata::MetadataMap) -> bool {
    requires_leader(metadata.get(REQUIRE_LEADER_KEY).map(|v| v.as_bytes()))
}
