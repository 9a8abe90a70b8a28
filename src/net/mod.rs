//! Connections: the listeners of the client and peer ports, TLS on them and on the
//! connections a member makes to its peers, and replies coalesced into fewer writes.
//!
//! Owns sockets and rustls configuration; calls nothing else in Cairn.

mod coalesced;
pub mod tls;

use std::net::SocketAddr;

use tokio::net::TcpListener;

pub use coalesced::CoalescedWrites;
pub use tls::incoming;

/// Binds every address (a port's listen URLs); fails before anything is served if one
/// cannot be bound.
pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        listeners.push(TcpListener::bind(addr).await?);
    }
    Ok(listeners)
}
