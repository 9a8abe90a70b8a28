//! Distributed tracing (`--enable-distributed-tracing`): Cairn exports the spans of client
//! requests over OTLP/gRPC to a collector, here a receiver the test runs itself.
//!
//! Each test starts its own receiver and its own server. Waits are on the receiver's
//! channel, with a deadline; a test that expects nothing waits for the server to stop
//! (which exports whatever it still buffered) and then finds the channel empty.

mod common;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cairn::proto::etcdserverpb as pb;
use common::TestServer;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

/// How long the spans of a request may take to arrive.
const ARRIVAL_DEADLINE: Duration = Duration::from_secs(30);
/// The trace and span a client's `traceparent` names.
const CLIENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID: &str = "00f067aa0ba902b7";

/// One exported span, with its resource's attributes.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    /// Empty for a root span.
    parent_span_id: String,
    resource: HashMap<String, String>,
}

struct Receiver(mpsc::Sender<Received>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        for resource_spans in request.into_inner().resource_spans {
            let resource = strings(
                resource_spans
                    .resource
                    .map(|r| r.attributes)
                    .unwrap_or_default(),
            );
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                let _ = self.0.send(Received {
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    resource: resource.clone(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

fn strings(attributes: Vec<KeyValue>) -> HashMap<String, String> {
    attributes
        .into_iter()
        .filter_map(|kv| match kv.value?.value? {
            Value::StringValue(s) => Some((kv.key, s)),
            _ => None,
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Runs an OTLP trace receiver on a port of its own, on a thread and runtime of its own (a
/// stopping server exports to it while the test blocks on the stop). Returns its address
/// and the spans it receives.
fn start_receiver() -> (String, mpsc::Receiver<Received>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (spans, received) = mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Receiver(spans)))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await
                .unwrap();
        });
    });
    (address, received)
}

/// Receives spans until `done` holds of all received so far, or panics at the deadline.
fn receive_until(
    received: &mpsc::Receiver<Received>,
    done: impl Fn(&[Received]) -> bool,
) -> Vec<Received> {
    let deadline = Instant::now() + ARRIVAL_DEADLINE;
    let mut spans = Vec::new();
    while !done(&spans) {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(span) => spans.push(span),
            Err(_) => {
                panic!("spans still missing after {ARRIVAL_DEADLINE:?}; received: {spans:#?}")
            }
        }
    }
    spans
}

/// Everything received so far, without waiting.
fn received_so_far(received: &mpsc::Receiver<Received>) -> Vec<Received> {
    received.try_iter().collect()
}

/// A put through Cairn's gRPC client, with `traceparent` metadata when given.
fn put(server: &TestServer, key: &str, traceparent: Option<String>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut kv = pb::kv_client::KvClient::connect(server.endpoint())
            .await
            .unwrap();
        let mut request = tonic::Request::new(pb::PutRequest {
            key: key.as_bytes().to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        });
        if let Some(traceparent) = traceparent {
            let metadata = request.metadata_mut();
            metadata.insert("traceparent", traceparent.parse().unwrap());
            metadata.insert("tracestate", "vendor=opaque".parse().unwrap());
        }
        kv.put(request).await.unwrap();
    });
}

fn traceparent(trace_id: &str, sampled: bool) -> String {
    format!(
        "00-{trace_id}-{CLIENT_SPAN_ID}-{}",
        if sampled { "01" } else { "00" }
    )
}

fn named<'a>(spans: &'a [Received], name: &str) -> &'a Received {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name} span expected: {spans:#?}");
    found[0]
}

const PUT_SPANS: [&str; 5] = [
    "etcdserverpb.KV/Put",
    "propose",
    "raft.commit",
    "raft.log_fsync",
    "apply",
];

fn has_put_spans(spans: &[Received], trace_id: &str) -> bool {
    PUT_SPANS.iter().all(|name| {
        spans
            .iter()
            .any(|s| s.name == *name && s.trace_id == trace_id)
    })
}

#[test]
fn a_put_exports_its_span_tree_under_the_clients_trace() {
    let (address, received) = start_receiver();
    let server = TestServer::start_with_env(
        &[
            "--experimental-enable-distributed-tracing",
            "--experimental-distributed-tracing-address",
            &address,
            "--experimental-distributed-tracing-service-name",
            "cairn-test-service",
            "--experimental-distributed-tracing-instance-id",
            "member-1",
            "--experimental-distributed-tracing-sampling-rate",
            "1000000",
        ],
        // The SDK's batch delay (5 s by default), short: the spans come while it runs.
        &[("OTEL_BSP_SCHEDULE_DELAY", "100".to_string())],
    );
    put(&server, "traced", Some(traceparent(CLIENT_TRACE_ID, true)));
    let spans = receive_until(&received, |spans| has_put_spans(spans, CLIENT_TRACE_ID));
    let spans: Vec<Received> = spans
        .into_iter()
        .filter(|s| s.trace_id == CLIENT_TRACE_ID)
        .collect();

    let request = named(&spans, "etcdserverpb.KV/Put");
    assert_eq!(request.parent_span_id, CLIENT_SPAN_ID, "{spans:#?}");
    assert_eq!(request.kind, SpanKind::Server as i32);
    let propose = named(&spans, "propose");
    assert_eq!(propose.parent_span_id, request.span_id, "{spans:#?}");
    let commit = named(&spans, "raft.commit");
    assert_eq!(commit.parent_span_id, propose.span_id, "{spans:#?}");
    let fsync = named(&spans, "raft.log_fsync");
    assert_eq!(fsync.parent_span_id, commit.span_id, "{spans:#?}");
    let apply = named(&spans, "apply");
    assert_eq!(apply.parent_span_id, propose.span_id, "{spans:#?}");
    for span in &spans {
        assert_eq!(
            span.resource.get("service.name").map(String::as_str),
            Some("cairn-test-service")
        );
        assert_eq!(
            span.resource.get("service.instance.id").map(String::as_str),
            Some("member-1")
        );
    }
}

#[test]
fn spans_buffered_at_stop_are_exported_and_root_traces_are_sampled_at_the_rate() {
    let (address, received) = start_receiver();
    // etcd 3.7's flag names; the SDK's default batch delay (5 s).
    let mut server = TestServer::start(&[
        "--enable-distributed-tracing",
        "--distributed-tracing-address",
        &address,
        "--distributed-tracing-sampling-rate=1000000",
    ]);
    put(&server, "root", None);
    server.stop();
    let spans = received_so_far(&received);
    let request = named(&spans, "etcdserverpb.KV/Put");
    assert_eq!(request.parent_span_id, "", "a root span: {spans:#?}");
    assert!(has_put_spans(&spans, &request.trace_id), "{spans:#?}");
    // etcd's default service name, and no instance id unless one is given.
    assert_eq!(
        request.resource.get("service.name").map(String::as_str),
        Some("etcd")
    );
    assert!(!request.resource.contains_key("service.instance.id"));
}

#[test]
fn at_rate_zero_only_a_sampled_parent_is_followed() {
    let (address, received) = start_receiver();
    let mut server = TestServer::start(&[
        "--enable-distributed-tracing",
        "--distributed-tracing-address",
        &address,
    ]);
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    put(
        &server,
        "unsampled",
        Some(traceparent(unsampled_trace, false)),
    );
    put(&server, "root", None);
    put(&server, "sampled", Some(traceparent(CLIENT_TRACE_ID, true)));
    server.stop();
    let spans = received_so_far(&received);
    assert!(has_put_spans(&spans, CLIENT_TRACE_ID), "{spans:#?}");
    assert!(
        spans.iter().all(|s| s.trace_id == CLIENT_TRACE_ID),
        "only the sampled parent's trace: {spans:#?}"
    );
}

#[test]
fn with_tracing_off_nothing_is_exported() {
    let (address, received) = start_receiver();
    let mut server = TestServer::start(&[
        "--distributed-tracing-address",
        &address,
        "--distributed-tracing-sampling-rate=1000000",
    ]);
    put(
        &server,
        "untraced",
        Some(traceparent(CLIENT_TRACE_ID, true)),
    );
    server.stop();
    let spans = received_so_far(&received);
    assert!(spans.is_empty(), "{spans:#?}");
    // Settings given without tracing on are reported, not silently dropped.
    let logs = server.logs();
    assert!(
        logs.contains("--distributed-tracing-address: distributed tracing is off"),
        "{logs}"
    );
}
