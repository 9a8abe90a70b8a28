//! The client port's HTTP server: a hyper connection per accepted stream (HTTP/2, or
//! HTTP/1.1 as the client's first bytes say), each gRPC call handed to its service by the
//! service name at the start of its path, every other request to `http` (the JSON gateway,
//! `/version`, `/health`, ...). As etcd, a request is gRPC when it is HTTP/2 and its
//! content type says `application/grpc`.
//!
//! tonic's own server put a stack of layers and an axum router between hyper and the
//! services: about a tenth of the server's CPU under put load, for routing a dozen names.
//! This keeps what Cairn used of it: admission, each call's connection address (for
//! `Request::remote_addr`), the transport-error rewording, at most `max_concurrent_streams`
//! calls per connection, and a graceful shutdown.
//!
//! Each call runs in a task of its own. Running a connection's calls inside the connection's
//! task saved about a tenth of the server's CPU per put at 100 connections, but it put all of
//! one connection's calls on one thread: range on a single connection fell from 55–62k to
//! 49k/s, and one large range would hold up every other call of a client that, as etcd's Go
//! client does, multiplexes all its calls on one connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::server::NamedService;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::Status;
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

use super::{admission, transport_errors};
use crate::metrics::{MeteredBody, MeteredRequestBody};
use crate::net::ClientIdentity;
use crate::server::Server;

/// hyper's default, made explicit: the head of an HTTP/1.1 request must arrive within this.
const HTTP1_HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A service whose type the dispatch does not need to know.
pub type BoxedService = BoxCloneSyncService<Request<Body>, Response<Body>, Infallible>;

/// Boxes a generated service (or tonic's health or reflection service) under its gRPC name.
pub fn named<S>(service: S) -> (&'static str, BoxedService)
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + NamedService
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    (S::NAME, BoxCloneSyncService::new(service))
}

/// The client port's gRPC services, and the one way to call them: a gRPC client's calls
/// and the JSON gateway's go through `call`. One `Arc`: hyper clones a connection's service
/// for every request, and each shared count it touches is a cache line both cores write.
#[derive(Clone)]
pub struct Services(Arc<ServicesInner>);

struct ServicesInner {
    server: Arc<Server>,
    /// Scanned per call: a dozen names, shorter than hashing the path.
    by_name: Box<[(&'static str, BoxedService)]>,
    /// The JSON gateway's calls in flight, at most `--max-concurrent-streams`.
    gateway_streams: Arc<tokio::sync::Semaphore>,
}

impl Services {
    pub fn server(&self) -> &Arc<Server> {
        &self.0.server
    }

    pub fn gateway_streams(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.0.gateway_streams
    }

    /// Admits the call (`admission`) and hands it to the service its path names; counts it
    /// (as go-grpc-prometheus counts: after admission, which etcd's own interceptors decide
    /// before it) and traces it.
    pub fn call<B>(&self, request: Request<B>) -> CallFuture
    where
        B: tonic::codegen::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<tonic::codegen::StdError>,
    {
        let inner = &*self.0;
        let method = inner.server.metrics().grpc.method(request.uri().path());
        let metered = method.clone();
        let request = request.map(|body| Body::new(MeteredRequestBody::new(body, metered)));
        let request = match admission::admit(&inner.server, request) {
            Ok(request) => request,
            Err(status) => return refusal(status),
        };
        // "/etcdserverpb.KV/Put" is served by "etcdserverpb.KV".
        let path = request.uri().path();
        let name = path.strip_prefix('/').unwrap_or(path).split('/').next();
        let Some((_, service)) = inner.by_name.iter().find(|(n, _)| Some(*n) == name) else {
            // As tonic's router: UNIMPLEMENTED with no message.
            return refusal(Status::unimplemented(""));
        };
        // The gateway forwards its request's trace context too, so both get a request span.
        let span = crate::telemetry::client_request_span(path, request.headers());
        let started = MeteredBody::start(method);
        let call = service.clone().oneshot(request).map(|response| {
            response
                .map(transport_errors::oversized_message_as_grpc_go)
                .map(started)
        });
        crate::telemetry::in_request_span(span, call).boxed()
    }
}

/// The services of one connection.
#[derive(Clone)]
struct Dispatch {
    services: Services,
    connection: TcpConnectInfo,
    /// The client certificate's common name, looked up once per connection.
    common_name: Option<ClientCommonName>,
}

/// A call's connection presented a verified certificate with this common name (in each
/// call's extensions; see `api::context`).
#[derive(Clone)]
pub struct ClientCommonName(pub Arc<str>);

pub type CallFuture =
    Pin<Box<dyn Future<Output = Result<Response<MeteredBody>, Infallible>> + Send>>;

impl<B> Service<Request<B>> for Dispatch
where
    B: tonic::codegen::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<MeteredBody>;
    type Error = Infallible;
    type Future = CallFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<B>) -> CallFuture {
        request.extensions_mut().insert(self.connection.clone());
        if !is_grpc(&request) {
            let presented_common_name = self.common_name.is_some();
            let request = request.map(Body::new);
            return super::http::serve(self.services.clone(), request, presented_common_name)
                .map(|response| Ok(response.map(MeteredBody::unmetered)))
                .boxed();
        }
        if let Some(name) = &self.common_name {
            request.extensions_mut().insert(name.clone());
        }
        self.services.call(request)
    }
}

/// etcd's rule: gRPC is HTTP/2 with a content type that mentions `application/grpc`.
fn is_grpc<B>(request: &Request<B>) -> bool {
    request.version() == http::Version::HTTP_2
        && request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("application/grpc"))
}

fn refusal(status: Status) -> CallFuture {
    let (head, ()) = status.into_http::<()>().into_parts();
    let body = MeteredBody::unmetered(Body::empty());
    futures::future::ready(Ok(Response::from_parts(head, body))).boxed()
}

/// Serves `incoming` connections until `shutdown` resolves; then asks every connection to
/// finish (HTTP/2 GOAWAY: calls in progress complete, no new ones start) and returns once
/// all have.
pub async fn serve<IO>(
    server: Arc<Server>,
    services: Vec<(&'static str, BoxedService)>,
    max_concurrent_streams: Option<u32>,
    incoming: BoxStream<'static, io::Result<IO>>,
    shutdown: impl Future<Output = ()>,
) where
    IO: AsyncRead
        + AsyncWrite
        + Connected<ConnectInfo = TcpConnectInfo>
        + ClientIdentity
        + Unpin
        + Send
        + 'static,
{
    let gateway_streams = max_concurrent_streams
        .map_or(u32::MAX as usize, |n| n as usize)
        .min(tokio::sync::Semaphore::MAX_PERMITS);
    let services = Services(Arc::new(ServicesInner {
        server,
        by_name: services.into(),
        gateway_streams: Arc::new(tokio::sync::Semaphore::new(gateway_streams)),
    }));
    serve_connections(
        http_builder(max_concurrent_streams),
        incoming,
        shutdown,
        |io: &IO| Dispatch {
            services: services.clone(),
            connection: io.connect_info(),
            common_name: io.common_name().map(ClientCommonName),
        },
    )
    .await;
}

/// hyper's connection settings for client connections (the client URLs and the metrics
/// URLs): HTTP/2 with at most `max_concurrent_streams` streams, or HTTP/1.1.
pub fn http_builder(max_concurrent_streams: Option<u32>) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(max_concurrent_streams);
    // A slow or silent HTTP/1.1 client holds its connection at most this long before its
    // request's head has arrived.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HTTP1_HEADER_READ_TIMEOUT);
    builder
}

/// Serves each of `incoming`'s connections with the service `service_for` makes for it,
/// until `shutdown` resolves; then asks every connection to finish (HTTP/2 GOAWAY: calls
/// in progress complete, no new ones start) and returns once all have.
pub async fn serve_connections<IO, S, B>(
    builder: auto::Builder<TokioExecutor>,
    incoming: BoxStream<'static, io::Result<IO>>,
    shutdown: impl Future<Output = ()>,
    mut service_for: impl FnMut(&IO) -> S,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: Service<Request<hyper::body::Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<tonic::codegen::StdError>,
{
    // Each connection holds a receiver: the sender learns when the last one has finished.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    let mut incoming = incoming;
    let mut shutdown = pin!(shutdown);
    loop {
        let io = tokio::select! {
            () = &mut shutdown => break,
            next = incoming.next() => match next {
                Some(Ok(io)) => io,
                // A connection that failed before it was served (a reset during accept,
                // a refused TLS handshake) costs only itself.
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "client connection not accepted");
                    continue;
                }
                None => break,
            },
        };
        let service = service_for(&io);
        let builder = builder.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let connection =
                builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
            let mut connection = pin!(connection);
            let finished = tokio::select! {
                finished = connection.as_mut() => finished,
                // The only change is to stopping.
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = finished {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
        });
    }
    drop(incoming);
    drop(stop);
    let _ = stopping.send(true);
    stopping.closed().await;
}
