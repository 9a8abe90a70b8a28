//! The client API: etcd's gRPC services, gRPC health and reflection on the client URLs.
//!
//! Translates and validates only: reads go to `apply` over the MVCC store after the node's
//! read barrier, writes go to the node's proposer, watch streams to the watch hub, lease
//! and membership requests to the node (and its lessor and Raft). May call `node`, `apply`,
//! `mvcc`, `watch`, `lease` and `raft`.

mod admission;
pub(crate) mod cluster;
mod kv;
mod lease;
mod maintenance;
mod not_yet;
mod server;
mod transport_errors;
pub(crate) mod validate;
pub(crate) mod watch;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::net::TcpListener;
use tonic::Status;
use tonic_health::ServingStatus;

use crate::error::EtcdError;
use crate::node::Node;
use crate::proto::cairnraftpb::{
    apply_result::Result as Applied, internal_request, InternalRequest,
};
use crate::proto::etcdserverpb::ResponseHeader;
use crate::proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::proto::API_FILE_DESCRIPTOR_SET;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// etcd lets gRPC messages exceed `--max-request-bytes` by this much, so the request-size
/// check answers with etcd's own error rather than a transport one.
const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Services reported by gRPC health, besides the server as a whole ("").
const HEALTH_SERVICES: [&str; 5] = [
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
];

fn not_yet(what: &str) -> Status {
    Status::unimplemented(format!("cairn: {what} is not implemented yet"))
}

/// Proposes one request through Raft and waits for its applied result.
async fn propose(node: &Node, request: internal_request::Request) -> Result<Applied, Status> {
    let request = InternalRequest {
        request: Some(request),
    };
    Ok(node.propose(request).await?)
}

/// Completes a header from `apply` (which only knows the revision).
fn complete_header(node: &Node, partial: Option<ResponseHeader>) -> Option<ResponseHeader> {
    Some(node.header(partial.map_or(0, |h| h.revision)))
}

/// The apply result did not match the request: only a damaged log could cause it.
fn mismatch() -> Status {
    EtcdError::Corrupt.into()
}

/// Health as probes see it: NOT_SERVING until ready, SERVING after, NOT_SERVING when stopping.
pub struct Health {
    reporter: tonic_health::server::HealthReporter,
}

impl Health {
    pub async fn set(&self, serving: bool) {
        let status = if serving {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        self.reporter.set_service_status("", status).await;
        for service in HEALTH_SERVICES {
            self.reporter.set_service_status(service, status).await;
        }
    }
}

/// Binds every client URL; fails before anything is served if one cannot be bound.
pub async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        listeners.push(TcpListener::bind(addr).await?);
    }
    Ok(listeners)
}

/// Serves the client API on `listeners` (each with whether it is an `https` URL's) until
/// `shutdown` resolves; the returned task ends when in-flight requests are done.
pub async fn serve(
    node: Arc<Node>,
    listeners: Vec<(TcpListener, bool)>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Health, tokio::task::JoinHandle<()>)> {
    let max_message_bytes = node.limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = Health { reporter };
    health.set(false).await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(API_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(API_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let services = vec![
        server::named(
            KvServer::new(kv::KvService::new(node.clone()))
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(usize::MAX),
        ),
        server::named(
            WatchServer::new(watch::WatchService::new(
                node.clone(),
                node.limits.watch_progress_interval,
                max_message_bytes,
            ))
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(usize::MAX),
        ),
        server::named(
            LeaseServer::new(lease::LeaseService::new(node.clone()))
                .max_decoding_message_size(max_message_bytes),
        ),
        server::named(
            ClusterServer::new(cluster::ClusterService::new(node.clone()))
                .max_decoding_message_size(max_message_bytes),
        ),
        server::named(
            MaintenanceServer::new(maintenance::MaintenanceService::new(node.clone()))
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(usize::MAX),
        ),
        server::named(
            AuthServer::new(not_yet::NotYet).max_decoding_message_size(max_message_bytes),
        ),
        server::named(
            LockServer::new(not_yet::NotYet).max_decoding_message_size(max_message_bytes),
        ),
        server::named(
            ElectionServer::new(not_yet::NotYet).max_decoding_message_size(max_message_bytes),
        ),
        server::named(health_service),
        server::named(reflection_v1),
        server::named(reflection_v1alpha),
    ];

    let incoming = crate::tls::incoming(listeners, node.client_tls.as_ref())?;
    let max_concurrent_streams = node.limits.max_concurrent_streams;
    let task = tokio::spawn(server::serve(
        node,
        services,
        max_concurrent_streams,
        incoming,
        shutdown,
    ));
    Ok((health, task))
}
