//! What a request carries besides its message.

use std::sync::Arc;

/// Who is asking, under which conditions, and until when. The API layers fill it from the
/// call's metadata; the server's methods honour it. The default is an anonymous client.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The auth token the call carried (`token` metadata, or `authorization`).
    pub token: Option<String>,
    /// The common name of the client certificate the connection presented and TLS verified:
    /// the user, with `--client-cert-auth` and no token.
    pub common_name: Option<Arc<str>>,
    /// Cairn's own request (lease expiry, publishing, auto compaction), or one another member
    /// received, checked and forwarded: no client identity to check.
    pub internal: bool,
    /// The caller asked for a leader (`hasleader` metadata, clientv3's WithRequireLeader):
    /// refused without one, and a stream ends once its member has been without one too long.
    pub require_leader: bool,
    /// When the caller gets `request timed out` at the latest; None: the server's request
    /// timeout (5 s plus two election timeouts, as etcd's) from the call.
    pub deadline: Option<tokio::time::Instant>,
    /// Forwarded by another member to this one as the leader: served here or refused with
    /// `not leader`, never forwarded again.
    pub from_peer: bool,
}

impl RequestContext {
    /// Cairn's own request.
    pub fn internal() -> RequestContext {
        RequestContext {
            internal: true,
            ..RequestContext::default()
        }
    }
}
