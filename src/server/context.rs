//! What a request carries besides its message.

/// Who is asking, under which conditions, and until when. The API layers fill it from the
/// call's metadata; the server's methods honour it.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    /// The authenticated user, from a token or the client certificate's common name. None
    /// until Auth is built: every caller then may do everything, as in etcd without auth.
    pub user: Option<String>,
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
