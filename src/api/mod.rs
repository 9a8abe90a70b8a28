//! The client API: etcd's gRPC services, gRPC health and reflection on the client URLs,
//! and beside them on the same port etcd's plain HTTP: the JSON gateway (`gateway`, which
//! calls the gRPC services in process), `/version`, `/health`, `/livez`, `/readyz` (`http`);
//! and on the `--listen-metrics-urls` URLs, `/metrics` and the health probes alone.
//!
//! Each handler checks its request (`validate`), calls one typed method of the server
//! (`server::Server`) with the call's `RequestContext`, and sends back what it returns.
//! Nothing else: who may do what, routing to the leader, reads and writes are the server's.
//! May call `server` only (and `cluster` for etcd's spelling of URLs, `net` for what a
//! connection's certificate says, `metrics` for the bodies that count each gRPC call,
//! `telemetry` for each call's trace span, `config` for the versions `/version` reports).

mod admission;
mod auth;
mod cluster;
mod dispatch;
mod election;
mod gateway;
mod http;
mod kv;
mod lease;
mod lock;
mod maintenance;
mod transport_errors;
pub(crate) mod validate;
pub(crate) mod watch;

use std::pin::Pin;
use std::sync::Arc;

use futures::stream::BoxStream as BoxIncoming;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::Status;
use tonic_health::ServingStatus;

use crate::proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use crate::proto::v3electionpb::election_server::ElectionServer;
use crate::proto::v3lockpb::lock_server::LockServer;
use crate::proto::API_FILE_DESCRIPTOR_SET;
use crate::server::{RequestContext, Server};

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

/// The error of a Lock or Election call: etcd runs them as a client of its own server, so
/// the errors of their inner requests reach callers as plain errors, code Unknown, with
/// etcd's text.
fn plain_error(e: crate::error::EtcdError) -> Status {
    Status::unknown(e.to_string())
}

/// etcd's metadata keys for the auth token: gRPC clients send `token`, the JSON gateway
/// `authorization`.
const TOKEN_KEYS: [&str; 2] = ["token", "authorization"];

/// What a call carries besides its message: its token or client certificate, and whether
/// it asked for a leader.
fn context<T>(request: &tonic::Request<T>) -> RequestContext {
    let metadata = request.metadata();
    RequestContext {
        token: TOKEN_KEYS
            .iter()
            .find_map(|key| metadata.get(*key))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        common_name: request
            .extensions()
            .get::<dispatch::ClientCommonName>()
            .map(|name| name.0.clone()),
        require_leader: admission::requires_leader(
            metadata
                .get(admission::REQUIRE_LEADER_KEY)
                .map(|v| v.as_bytes()),
        ),
        ..RequestContext::default()
    }
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

/// Serves the client API on `incoming` connections until `shutdown` resolves; the returned
/// task ends when in-flight requests are done.
pub async fn serve<IO>(
    server: Arc<Server>,
    incoming: BoxIncoming<'static, std::io::Result<IO>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Health, tokio::task::JoinHandle<()>)>
where
    IO: AsyncRead
        + AsyncWrite
        + Connected<ConnectInfo = TcpConnectInfo>
        + crate::net::ClientIdentity
        + Unpin
        + Send
        + 'static,
{
    let limits = server.limits();
    let max_message_bytes = limits.max_request_bytes + GRPC_OVERHEAD_BYTES;
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
        dispatch::named(
            KvServer::new(kv::KvService::new(server.clone()))
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(usize::MAX),
        ),
        dispatch::named(
            WatchServer::new(watch::WatchService::new(
                server.clone(),
                limits.watch_progress_interval,
                max_message_bytes,
            ))
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(usize::MAX),
        ),
        dispatch::named(
            LeaseServer::new(lease::LeaseService::new(server.clone()))
                .max_decoding_message_size(max_message_bytes),
        ),
        dispatch::named(
            ClusterServer::new(cluster::ClusterService::new(server.clone()))
                .max_decoding_message_size(max_message_bytes),
        ),
        dispatch::named(
            MaintenanceServer::new(maintenance::MaintenanceService::new(server.clone()))
                .max_decoding_message_size(max_message_bytes)
                .max_encoding_message_size(usize::MAX),
        ),
        dispatch::named(
            AuthServer::new(auth::AuthService::new(server.clone()))
                .max_decoding_message_size(max_message_bytes),
        ),
        dispatch::named(
            LockServer::new(lock::LockService::new(server.clone()))
                .max_decoding_message_size(max_message_bytes),
        ),
        dispatch::named(
            ElectionServer::new(election::ElectionService::new(server.clone()))
                .max_decoding_message_size(max_message_bytes),
        ),
        dispatch::named(health_service),
        dispatch::named(reflection_v1),
        dispatch::named(reflection_v1alpha),
    ];

    let task = tokio::spawn(dispatch::serve(
        server,
        services,
        limits.max_concurrent_streams,
        incoming,
        shutdown,
    ));
    Ok((health, task))
}

/// Serves `/metrics`, `/health`, `/livez` and `/readyz` alone on the connections of the
/// `--listen-metrics-urls` URLs until `shutdown` resolves; the returned task ends when
/// in-flight requests are done.
pub fn serve_metrics_urls<IO>(
    server: Arc<Server>,
    incoming: BoxIncoming<'static, std::io::Result<IO>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let builder = dispatch::http_builder(server.limits().max_concurrent_streams);
    let answer = tower::service_fn(move |request: ::http::Request<hyper::body::Incoming>| {
        let server = server.clone();
        async move {
            let request = request.map(tonic::body::Body::new);
            Ok::<_, std::convert::Infallible>(http::serve_metrics_url(&server, request).await)
        }
    });
    tokio::spawn(dispatch::serve_connections(
        builder,
        incoming,
        shutdown,
        move |_: &IO| answer.clone(),
    ))
}
