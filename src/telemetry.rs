//! Logs and distributed tracing: the process's `tracing` subscriber, and the OpenTelemetry
//! spans of client requests (`--enable-distributed-tracing`).
//!
//! Owns the subscriber (stderr logs, as text or as etcd's zap JSON; with tracing on, also a tracing-opentelemetry layer
//! exporting over OTLP/gRPC through a batch processor on the tokio runtime), the request
//! span every client call opens (`client_request_span`, for gRPC and the HTTP gateway
//! alike), and the spans of work done for a request in other tasks (`BatchTrace`). Calls
//! nothing else in Cairn.
//!
//! A put's spans, as a trace viewer shows them:
//!
//! ```text
//!  etcdserverpb.KV/Put        the call, parented under the client's `traceparent`, if any
//!  └─ propose                 the wait in the proposer, from enqueueing to the result
//!     ├─ raft.commit          from the batch's hand-off to Raft to the state machine
//!     │  │                    receiving its entry committed
//!     │  └─ raft.log_fsync    the log fsync the entry waited for (one fsync may serve
//!     │                       several entries: each waiting request gets a copy)
//!     └─ apply                from the state machine taking up the entry to the storage
//!                             commit that makes the request's change visible
//! ```
//!
//! With tracing off, nothing here is on a request's path but one load of a static
//! (`tracing_enabled`): no span is created, nothing is allocated, and the batches carry no
//! trace. Only sampled requests get child spans. A batch a follower forwards to the leader
//! carries no trace across: the follower's request shows its `propose` wait only.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use futures::future::Either;
use futures::FutureExt;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    span_processor_with_async_runtime::BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{filter_fn, EnvFilter, FilterExt};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// The target of the spans opened here: only the OpenTelemetry layer sees them, the logs
/// do not.
const SPAN_TARGET: &str = "cairn::spans";
/// The instrumentation scope of Cairn's spans.
const TRACER_NAME: &str = "cairn";
/// How long a stop waits for the last spans to be exported.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// `--distributed-tracing-sampling-rate` counts samples per this many traces.
pub const SAMPLES_PER: u32 = 1_000_000;

mod zap_json;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Cairn's readable lines: time, level, message, fields.
    Text,
    /// etcd's zap JSON, one object per line (see `zap_json`).
    Json,
}

/// `--enable-distributed-tracing` and its settings, as etcd names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracingSettings {
    /// The OTLP/gRPC collector, `host:port` (plain text, as etcd dials it).
    pub address: String,
    /// The resource's `service.name`.
    pub service_name: String,
    /// The resource's `service.instance.id`; none when empty, as etcd.
    pub instance_id: String,
    /// Traces sampled per million, for requests without a sampled remote parent.
    pub sampling_rate_per_million: u32,
}

/// The tracer of Cairn's spans; set once at start-up when tracing is on.
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether spans are recorded: the one check on the request path when they are not.
#[inline]
fn tracing_enabled() -> bool {
    TRACER.get().is_some()
}

/// What `init` set up, to be shut down at exit.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs the process's subscriber: logs to stderr at `log_level` (`CAIRN_LOG`, an
/// `EnvFilter` directive, overrides it), and with `tracing` the span exporter. With tracing
/// on, runs inside the tokio runtime: the exporter's batch task and gRPC channel are spawned
/// on it.
pub fn init(
    log_level: &str,
    log_format: LogFormat,
    tracing: Option<&TracingSettings>,
) -> Result<Telemetry, String> {
    let level = match log_level {
        "panic" | "fatal" => "error",
        other => other,
    };
    let filter = EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},openraft=warn")));
    let Some(settings) = tracing else {
        let logs = log_layer(log_format);
        // Exactly the logs, with their filter for the whole subscriber: nothing else runs
        // per event or span.
        tracing_subscriber::registry()
            .with(filter)
            .with(logs)
            .init();
        return Ok(Telemetry { provider: None });
    };
    let provider = tracer_provider(settings)?;
    let tracer = opentelemetry::trace::TracerProvider::tracer(&provider, TRACER_NAME);
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer.clone())
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(is_request_span));
    let logs =
        log_layer(log_format).with_filter(filter.and(filter_fn(|meta| !is_request_span(meta))));
    tracing_subscriber::registry().with(logs).with(spans).init();
    let _ = TRACER.set(tracer);
    tracing::info!(
        address = %settings.address,
        service_name = %settings.service_name,
        service_instance_id = %settings.instance_id,
        sampling_rate = settings.sampling_rate_per_million,
        "distributed tracing setup enabled"
    );
    Ok(Telemetry {
        provider: Some(provider),
    })
}

/// A span of a client request, opened here (`client_request_span`, `Proposing`).
fn is_request_span(meta: &tracing::Metadata<'_>) -> bool {
    meta.is_span() && meta.target() == SPAN_TARGET
}

/// The stderr log lines, in `format`.
fn log_layer<S>(format: LogFormat) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_target(false)
            .boxed(),
        LogFormat::Json => logs.event_format(zap_json::ZapJson).boxed(),
    }
}

/// The OTLP/gRPC exporter behind a batch processor on the tokio runtime, sampling as etcd:
/// a sampled remote parent is followed, other traces are sampled at the configured rate.
fn tracer_provider(settings: &TracingSettings) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig;
    let endpoint = if settings.address.contains("://") {
        settings.address.clone()
    } else {
        format!("http://{}", settings.address)
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("distributed tracing: {e}"))?;
    let processor =
        BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
    // A rate of 0 samples nothing but what a sampled parent asks for.
    let rate = Sampler::TraceIdRatioBased(
        f64::from(settings.sampling_rate_per_million) / f64::from(SAMPLES_PER),
    );
    // etcd's resource: the service name, and the instance id when one is given.
    let mut resource = Resource::builder_empty().with_service_name(settings.service_name.clone());
    if !settings.instance_id.is_empty() {
        resource = resource.with_attribute(KeyValue::new(
            "service.instance.id",
            settings.instance_id.clone(),
        ));
    }
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(rate)))
        .with_resource(resource.build())
        .build())
}

impl Telemetry {
    /// Exports the spans still buffered, within `FLUSH_TIMEOUT` (an unreachable collector
    /// does not hold up the stop). Runs on the runtime the exporter was started on.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The provider's shutdown blocks until the batch task has exported: off the
        // runtime's worker threads, which that task needs.
        let flushed = tokio::task::spawn_blocking(move || provider.shutdown());
        match tokio::time::timeout(FLUSH_TIMEOUT, flushed).await {
            Ok(flushed) => {
                if let Err(e) = flushed
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                {
                    tracing::warn!(error = %e, "exporting the last spans");
                }
            }
            Err(_) => tracing::warn!("the last spans not exported within {FLUSH_TIMEOUT:?}"),
        }
    }
}

/// The span of one client request, named as etcd's gRPC instrumentation names it: the
/// full method without its leading slash (`etcdserverpb.KV/Put`). A W3C `traceparent`
/// (with `tracestate`) among `headers` is its remote parent. gRPC metadata arrives as
/// HTTP/2 headers, so the gRPC port and the HTTP gateway both call this, the gateway with
/// the gRPC method its path stands for. `Span::none()` when tracing is off.
pub fn client_request_span(method: &str, headers: &http::HeaderMap) -> tracing::Span {
    if !tracing_enabled() {
        return tracing::Span::none();
    }
    let method = method.strip_prefix('/').unwrap_or(method);
    let (service, name) = method.split_once('/').unwrap_or((method, ""));
    let span = tracing::info_span!(
        target: SPAN_TARGET,
        "request",
        otel.name = method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = name,
    );
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        // Cannot fail: the span was just created and is enabled for the layer.
        let _ = span.set_parent(parent);
    }
    span
}

/// Runs `call` in its request span (from `client_request_span`), and records a gRPC error
/// status answered in the response's headers (a call that fails before its first message,
/// as a failed unary call does). Returns `call` itself when the span is none.
pub fn in_request_span<F, B, E>(
    span: tracing::Span,
    call: F,
) -> impl Future<Output = Result<http::Response<B>, E>>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    if span.is_none() {
        return Either::Left(call);
    }
    let recorded = span.clone();
    Either::Right(call.instrument(span).map(move |result| {
        if let Ok(response) = &result {
            record_grpc_status(&recorded, response.headers());
        }
        result
    }))
}

fn record_grpc_status(span: &tracing::Span, headers: &http::HeaderMap) {
    let Some(status) = tonic::Status::from_header_map(headers) else {
        return;
    };
    span.set_attribute("rpc.grpc.status_code", status.code() as i64);
    if status.code() != tonic::Code::Ok {
        span.set_status(Status::error(status.message().to_string()));
    }
}

/// `http::HeaderMap` as the propagator reads it.
struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A request's wait for its proposal (the `propose` span), open until dropped; `None` when
/// tracing is off or the current request is not sampled (then nothing is recorded for it).
pub struct Proposing {
    span: tracing::Span,
    context: Context,
}

impl Proposing {
    /// Opens the `propose` span under the current request span, if that is sampled.
    pub fn start() -> Option<Proposing> {
        if !tracing_enabled() {
            return None;
        }
        let request = tracing::Span::current();
        if request.is_none() || !request.context().span().span_context().is_sampled() {
            return None;
        }
        let span = tracing::info_span!(target: SPAN_TARGET, parent: &request, "propose");
        let context = span.context();
        Some(Proposing { span, context })
    }

    /// What the proposal carries to the tasks that commit and apply it.
    pub fn context(&self) -> Context {
        self.context.clone()
    }

    /// Records the outcome on the span (an error's etcd message) and closes it.
    pub fn finish(self, error: Option<&dyn std::fmt::Display>) {
        if let Some(e) = error {
            self.span.set_status(Status::error(e.to_string()));
        }
        drop(self.span);
    }
}

/// The traced requests of one Raft entry (a proposer batch), carried with the entry in
/// memory (never stored or replicated): their `propose` contexts and their open
/// `raft.commit` spans.
pub struct BatchTrace {
    requests: Vec<TracedRequest>,
    batch_requests: usize,
}

struct TracedRequest {
    propose: Context,
    /// The `raft.commit` span, open from the hand-off to Raft until the entry is applied.
    commit: Context,
}

impl std::fmt::Debug for BatchTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "BatchTrace({} of {} requests)",
            self.requests.len(),
            self.batch_requests
        )
    }
}

impl BatchTrace {
    /// Opens `raft.commit` for each traced request (their `propose` contexts) of a batch of
    /// `batch_requests` handed to Raft now; `None` when none is traced.
    pub fn start(traced: Vec<Context>, batch_requests: usize) -> Option<Arc<BatchTrace>> {
        let tracer = TRACER.get()?;
        if traced.is_empty() {
            return None;
        }
        let requests = traced
            .into_iter()
            .map(|propose| {
                let span = tracer
                    .span_builder("raft.commit")
                    .with_kind(SpanKind::Internal)
                    .with_attributes([KeyValue::new("batch.requests", batch_requests as i64)])
                    .start_with_context(tracer, &propose);
                let commit = propose.with_span(span);
                TracedRequest { propose, commit }
            })
            .collect();
        Some(Arc::new(BatchTrace {
            requests,
            batch_requests,
        }))
    }

    /// Records the log fsync from `started` to `ended` that made this entry durable, under
    /// each traced request's `raft.commit`. `appends` is how many log appends it served.
    pub fn fsynced(&self, started: SystemTime, ended: SystemTime, appends: usize) {
        let Some(tracer) = TRACER.get() else {
            return;
        };
        for request in &self.requests {
            tracer
                .span_builder("raft.log_fsync")
                .with_start_time(started)
                .with_attributes([KeyValue::new("fsync.appends", appends as i64)])
                .start_with_context(tracer, &request.commit)
                .end_with_timestamp(ended);
        }
    }

    /// The state machine takes up the entry: `raft.commit` ends, `apply` begins, for each
    /// traced request. The `apply` spans end when the result is dropped or `applied`.
    pub fn applying(&self) -> Applying {
        let Some(tracer) = TRACER.get() else {
            return Applying(Vec::new());
        };
        let spans = self
            .requests
            .iter()
            .map(|request| {
                request.commit.span().end();
                tracer
                    .span_builder("apply")
                    .with_attributes([KeyValue::new("batch.requests", self.batch_requests as i64)])
                    .start_with_context(tracer, &request.propose)
            })
            .collect();
        Applying(spans)
    }
}

/// The open `apply` spans of one entry's traced requests.
pub struct Applying(Vec<opentelemetry_sdk::trace::Span>);

impl Applying {
    /// The entry's changes are committed to storage: its `apply` spans end.
    pub fn applied(self) {
        for mut span in self.0 {
            span.end();
        }
    }
}
