//! go-grpc-prometheus's server metrics, as etcd registers them: every method of etcd's
//! services and of gRPC health is shown from the start with zero values (all codes of
//! `grpc_server_handled_total` too); other served methods (Lock, Election) appear once
//! called, as in etcd.
//!
//! A call is counted by wrapping its request and response bodies (`MeteredRequestBody`,
//! `MeteredBody`): they read the gRPC message frames going by (a 5-byte header each) and the
//! `grpc-status` that ends the call, so unary calls and every kind of stream are counted
//! alike, without the services knowing. Per call: one hash lookup of the path, two
//! reference-count increments, and a relaxed atomic add per counter moved; per message two
//! more (messages and bytes). With `--metrics extensive`, two clock reads and a histogram
//! observation more.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
};
use prost::Message;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, Response};

use super::registered;

/// The services etcd registers with go-grpc-prometheus before serving: their methods are
/// shown before any call.
const PRE_REGISTERED_SERVICES: [&str; 7] = [
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "grpc.health.v1.Health",
];

/// gRPC's status codes by number, named as grpc-go names them (`grpc_code`).
const CODE_NAMES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];
const CODE_CANCELED: usize = 1;
const CODE_UNKNOWN: usize = 2;

/// go-grpc-prometheus's `grpc_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrpcType {
    Unary,
    ClientStream,
    ServerStream,
    BidiStream,
}

impl GrpcType {
    fn of(client_streaming: bool, server_streaming: bool) -> GrpcType {
        match (client_streaming, server_streaming) {
            (false, false) => GrpcType::Unary,
            (true, false) => GrpcType::ClientStream,
            (false, true) => GrpcType::ServerStream,
            (true, true) => GrpcType::BidiStream,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            GrpcType::Unary => "unary",
            GrpcType::ClientStream => "client_stream",
            GrpcType::ServerStream => "server_stream",
            GrpcType::BidiStream => "bidi_stream",
        }
    }
}

/// The series of one method, resolved once.
pub struct MethodMetrics {
    started: IntCounter,
    messages_received: IntCounter,
    messages_sent: IntCounter,
    /// By code number.
    handled: [IntCounter; 17],
    handling_seconds: Option<Histogram>,
    /// etcd's `etcd_network_client_grpc_{received,sent}_bytes_total`: message bytes.
    bytes_received: IntCounter,
    bytes_sent: IntCounter,
}

struct Method {
    service: String,
    name: String,
    kind: GrpcType,
    resolved: OnceLock<Arc<MethodMetrics>>,
}

/// The gRPC server's series, and the table of served methods by path.
pub struct GrpcMetrics {
    /// "/etcdserverpb.KV/Put" → its method.
    methods: HashMap<String, Method>,
    started: IntCounterVec,
    handled: IntCounterVec,
    messages_received: IntCounterVec,
    messages_sent: IntCounterVec,
    handling_seconds: Option<HistogramVec>,
    bytes_received: IntCounter,
    bytes_sent: IntCounter,
}

/// `(service, method, type)` of every method in the encoded descriptor sets.
fn methods_of(descriptor_sets: &[&[u8]]) -> Vec<(String, String, GrpcType)> {
    let mut methods = Vec::new();
    for set in descriptor_sets {
        let set = prost_types::FileDescriptorSet::decode(*set).expect("built-in descriptor set");
        for file in set.file {
            for service in &file.service {
                let service_name = format!("{}.{}", file.package(), service.name());
                for method in &service.method {
                    methods.push((
                        service_name.clone(),
                        method.name().to_string(),
                        GrpcType::of(method.client_streaming(), method.server_streaming()),
                    ));
                }
            }
        }
    }
    methods
}

impl GrpcMetrics {
    pub(super) fn new(registry: &Registry, extensive: bool) -> GrpcMetrics {
        let labels = ["grpc_type", "grpc_service", "grpc_method"];
        let counters = |name: &str, help: &str, labels: &[&str]| {
            registered(
                registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter"),
            )
        };
        let started = counters(
            "grpc_server_started_total",
            "Total number of RPCs started on the server.",
            &labels,
        );
        let handled = counters(
            "grpc_server_handled_total",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            &["grpc_type", "grpc_service", "grpc_method", "grpc_code"],
        );
        let messages_received = counters(
            "grpc_server_msg_received_total",
            "Total number of RPC stream messages received on the server.",
            &labels,
        );
        let messages_sent = counters(
            "grpc_server_msg_sent_total",
            "Total number of gRPC stream messages sent by the server.",
            &labels,
        );
        let handling_seconds = extensive.then(|| {
            registered(
                registry,
                HistogramVec::new(
                    HistogramOpts::new(
                        "grpc_server_handling_seconds",
                        "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
                    ),
                    &labels,
                )
                .expect("valid histogram"),
            )
        });
        let bytes_received = registered(
            registry,
            IntCounter::new(
                "etcd_network_client_grpc_received_bytes_total",
                "The total number of bytes received from grpc clients.",
            )
            .expect("valid counter"),
        );
        let bytes_sent = registered(
            registry,
            IntCounter::new(
                "etcd_network_client_grpc_sent_bytes_total",
                "The total number of bytes sent to grpc clients.",
            )
            .expect("valid counter"),
        );
        let methods = methods_of(&[
            crate::proto::API_FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ])
        .into_iter()
        .map(|(service, name, kind)| {
            let path = format!("/{service}/{name}");
            let method = Method {
                service,
                name,
                kind,
                resolved: OnceLock::new(),
            };
            (path, method)
        })
        .collect();
        let grpc = GrpcMetrics {
            methods,
            started,
            handled,
            messages_received,
            messages_sent,
            handling_seconds,
            bytes_received,
            bytes_sent,
        };
        for method in grpc.methods.values() {
            if PRE_REGISTERED_SERVICES.contains(&method.service.as_str()) {
                grpc.resolve(method);
            }
        }
        grpc
    }

    fn resolve(&self, method: &Method) -> Arc<MethodMetrics> {
        method
            .resolved
            .get_or_init(|| {
                let labels = [method.kind.label(), &method.service, &method.name];
                let handled = std::array::from_fn(|code| {
                    self.handled.with_label_values(&[
                        labels[0],
                        labels[1],
                        labels[2],
                        CODE_NAMES[code],
                    ])
                });
                Arc::new(MethodMetrics {
                    started: self.started.with_label_values(&labels),
                    messages_received: self.messages_received.with_label_values(&labels),
                    messages_sent: self.messages_sent.with_label_values(&labels),
                    handled,
                    handling_seconds: self
                        .handling_seconds
                        .as_ref()
                        .map(|h| h.with_label_values(&labels)),
                    bytes_received: self.bytes_received.clone(),
                    bytes_sent: self.bytes_sent.clone(),
                })
            })
            .clone()
    }

    /// The series of the method at `path` ("/etcdserverpb.KV/Put"); None for a path that
    /// names no served method (which go-grpc-prometheus does not count either).
    pub fn method(&self, path: &str) -> Option<Arc<MethodMetrics>> {
        self.methods.get(path).map(|method| self.resolve(method))
    }
}

/// One call's request body, counting the messages and bytes received.
pub struct MeteredRequestBody<B> {
    inner: B,
    call: Option<Arc<MethodMetrics>>,
    frames: Frames,
}

impl<B> MeteredRequestBody<B> {
    pub fn new(inner: B, call: Option<Arc<MethodMetrics>>) -> Self {
        MeteredRequestBody {
            inner,
            call,
            frames: Frames::default(),
        }
    }
}

impl<B> HttpBody for MeteredRequestBody<B>
where
    B: HttpBody<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let (Some(call), Some(Ok(frame))) = (&this.call, &frame) {
            if let Some(data) = frame.data_ref() {
                let (messages, bytes) = this.frames.feed(data);
                if messages > 0 {
                    call.messages_received.inc_by(messages);
                }
                call.bytes_received.inc_by(bytes);
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// One call's response body (or, unmetered, any response of the client port): counts the
/// messages and bytes sent and, once, how the call ended.
pub struct MeteredBody {
    inner: Body,
    call: Option<Call>,
}

/// A call counted as started and not yet as handled.
struct Call {
    method: Arc<MethodMetrics>,
    frames: Frames,
    /// Set with `--metrics extensive`.
    started_at: Option<Instant>,
    handled: bool,
}

impl Call {
    fn handled(&mut self, code: usize) {
        if std::mem::replace(&mut self.handled, true) {
            return;
        }
        self.method.handled[code].inc();
        if let (Some(histogram), Some(started_at)) =
            (&self.method.handling_seconds, self.started_at)
        {
            histogram.observe(started_at.elapsed().as_secs_f64());
        }
    }
}

impl Drop for Call {
    /// Dropped before its status was sent: the client reset the stream or went away (the
    /// call may not even have answered yet), which grpc-go reports as `Canceled`.
    fn drop(&mut self) {
        self.handled(CODE_CANCELED);
    }
}

impl MeteredBody {
    /// A response no gRPC method answered (a refusal before the call, another protocol).
    pub fn unmetered(inner: Body) -> MeteredBody {
        MeteredBody { inner, call: None }
    }

    /// Counts the call as started and wraps its response. A call answered with its status
    /// in the headers alone (most errors) is handled here.
    pub fn start(
        method: Option<Arc<MethodMetrics>>,
    ) -> impl FnOnce(Response<Body>) -> Response<MeteredBody> {
        let call = method.map(|method| {
            method.started.inc();
            let started_at = method.handling_seconds.is_some().then(Instant::now);
            Call {
                method,
                frames: Frames::default(),
                started_at,
                handled: false,
            }
        });
        move |response| {
            let mut call = call;
            if let Some(code) = status_code(response.headers()) {
                if let Some(mut call) = call.take() {
                    call.handled(code);
                }
            }
            response.map(|inner| MeteredBody { inner, call })
        }
    }
}

/// The `grpc-status` of a header or trailer map, as an index into `CODE_NAMES` (tonic's
/// reading: a value it does not know is Unknown).
fn status_code(headers: &HeaderMap) -> Option<usize> {
    let value = headers.get("grpc-status")?;
    Some(tonic::Code::from_bytes(value.as_bytes()) as usize)
}

impl HttpBody for MeteredBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let this = &mut *self;
        let frame = std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx));
        if let Some(call) = &mut this.call {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let (messages, bytes) = call.frames.feed(data);
                        if messages > 0 {
                            call.method.messages_sent.inc_by(messages);
                        }
                        call.method.bytes_sent.inc_by(bytes);
                    } else if let Some(trailers) = frame.trailers_ref() {
                        let code = status_code(trailers).unwrap_or(CODE_UNKNOWN);
                        if let Some(mut call) = this.call.take() {
                            call.handled(code);
                        }
                    }
                }
                // The body failed, or ended without a status: no status reached the client.
                Some(Err(_)) | None => {
                    if let Some(mut call) = this.call.take() {
                        call.handled(CODE_UNKNOWN);
                    }
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Where a body is in gRPC's framing: each message is a 1-byte flag, a 4-byte big-endian
/// length, and that many bytes, and may be split across data frames anywhere.
#[derive(Debug, Default)]
struct Frames {
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
}

impl Frames {
    /// Reads `data`; returns how many messages began in it and their announced bytes.
    fn feed(&mut self, mut data: &[u8]) -> (u64, u64) {
        let (mut messages, mut bytes) = (0, 0);
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
            self.header_len += n;
            data = &data[n..];
            if self.header_len == 5 {
                let length = u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]) as u64;
                messages += 1;
                bytes += length;
                self.remaining = length;
                self.header_len = 0;
            }
        }
        (messages, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: &[u8]) -> Vec<u8> {
        let mut framed = vec![0];
        framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        framed.extend_from_slice(payload);
        framed
    }

    #[test]
    fn frames_are_counted_however_the_data_is_split() {
        let mut stream = message(b"hello");
        stream.extend(message(b""));
        stream.extend(message(&[7; 300]));
        for split in [1, 2, 3, 5, 7, 64, stream.len()] {
            let mut frames = Frames::default();
            let (mut messages, mut bytes) = (0, 0);
            for chunk in stream.chunks(split) {
                let (m, b) = frames.feed(chunk);
                messages += m;
                bytes += b;
            }
            assert_eq!((messages, bytes), (3, 305), "split every {split} bytes");
            assert_eq!((frames.header_len, frames.remaining), (0, 0));
        }
    }

    #[test]
    fn the_method_table_holds_etcds_services_with_their_types() {
        let grpc = GrpcMetrics::new(&Registry::new(), false);
        let kind = |path: &str| grpc.methods.get(path).map(|m| m.kind);
        assert_eq!(kind("/etcdserverpb.KV/Put"), Some(GrpcType::Unary));
        assert_eq!(
            kind("/etcdserverpb.Watch/Watch"),
            Some(GrpcType::BidiStream)
        );
        assert_eq!(
            kind("/etcdserverpb.Lease/LeaseKeepAlive"),
            Some(GrpcType::BidiStream)
        );
        assert_eq!(
            kind("/etcdserverpb.Maintenance/Snapshot"),
            Some(GrpcType::ServerStream)
        );
        assert_eq!(kind("/grpc.health.v1.Health/Check"), Some(GrpcType::Unary));
        assert_eq!(
            kind("/grpc.health.v1.Health/Watch"),
            Some(GrpcType::ServerStream)
        );
        assert!(grpc.method("/etcdserverpb.KV/Nothing").is_none());
        // Pre-registered as etcd does; Lock only once called.
        assert!(grpc.methods["/etcdserverpb.Auth/UserAdd"]
            .resolved
            .get()
            .is_some());
        assert!(grpc.methods["/v3lockpb.Lock/Lock"].resolved.get().is_none());
        assert!(grpc.method("/v3lockpb.Lock/Lock").is_some());
    }
}
