//! Connections: the listeners of the client and peer ports, TLS on them and on the
//! connections a member makes to its peers, and replies coalesced into fewer writes.
//!
//! Owns sockets and rustls configuration; calls nothing else in Cairn.

mod coalesced;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use coalesced::CoalescedWrites;
pub use tls::incoming;

/// What a client connection proved about itself.
pub trait ClientIdentity {
    /// The common name of the certificate the client presented, which TLS verified; None
    /// on a plain connection or without a certificate.
    fn common_name(&self) -> Option<Arc<str>>;
}

impl<S> ClientIdentity for tls::Accepted<S> {
    fn common_name(&self) -> Option<Arc<str>> {
        let tls::Accepted::Tls(tls) = self else {
            return None;
        };
        let certificate = tls.get_ref().1.peer_certificates()?.first()?;
        let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
        let name = parsed.subject().iter_common_name().next()?;
        name.as_str().ok().map(Arc::from)
    }
}

impl<S: ClientIdentity> ClientIdentity for CoalescedWrites<S> {
    fn common_name(&self) -> Option<Arc<str>> {
        self.get_ref().common_name()
    }
}

/// Binds every address (a port's listen URLs); fails before anything is served if one
/// cannot be bound.
pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        listeners.push(TcpListener::bind(addr).await?);
    }
    Ok(listeners)
}
