//! Who may call what, before a request is read, as etcd's interceptors: the gRPC method
//! and the `hasleader` metadata go to the server, which decides (`Server::admit`).

use tonic::codegen::http::Request;
use tonic::Status;

use crate::server::Server;

/// etcd's metadata key for "fail unless there is a leader" (clientv3.WithRequireLeader).
pub const REQUIRE_LEADER_KEY: &str = "hasleader";

pub fn admit<B>(server: &Server, request: Request<B>) -> Result<Request<B>, Status> {
    let path = request.uri().path();
    if !path.starts_with("/etcdserverpb.") && !path.starts_with("/v3") {
        // Health and reflection are for everyone.
        return Ok(request);
    }
    let require_leader = requires_leader(
        request
            .headers()
            .get(REQUIRE_LEADER_KEY)
            .map(|v| v.as_bytes()),
    );
    server.admit(path, require_leader)?;
    Ok(request)
}

/// Whether a call's `hasleader` metadata asks for a leader.
pub fn requires_leader(value: Option<&[u8]>) -> bool {
    value == Some(b"true")
}
