//! Prometheus metrics under etcd's names, types, labels and help texts, so that dashboards
//! and alerts written for etcd read Cairn unchanged.
//!
//! Owns one registry per member (`Metrics`, made at start-up by the server) and its text
//! exposition (`Metrics::render`, format 0.0.4 as Go's client writes it). Two kinds of
//! series:
//! - *pushed*: counted where the thing happens, through handles resolved once (a relaxed
//!   atomic add per event; a histogram observation is a bucket search and three atomic
//!   adds). gRPC calls (`grpc`), disk syncs and commits, peer traffic, proposals.
//! - *sampled*: read from the member's own state when rendered (leader, indexes, key and
//!   watcher counts, sizes), through the sampler the server installs
//!   (`Metrics::set_sampler`). Their cost is paid by the scrape, not by requests.
//!
//! Calls nothing else in Cairn but `proto` (the served API's descriptors, in `grpc`).

pub mod grpc;

use std::sync::{Mutex, OnceLock};

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

pub use grpc::{GrpcMetrics, GrpcType, MeteredBody, MeteredRequestBody, MethodMetrics};

/// What `render` answers with: Go's client's text format 0.0.4, as etcd serves it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The labels that name this member and what it runs.
#[derive(Debug, Clone)]
pub struct MemberLabels {
    /// The member ID in hexadecimal (`etcd_server_id{server_id=…}`).
    pub server_id: String,
    /// `etcd_server_version{server_version=…}`.
    pub server_version: String,
    /// `etcd_cluster_version{cluster_version=…}`.
    pub cluster_version: String,
}

/// One member's metrics. Fields are the pushed series, grouped as etcd's packages group
/// them; the sampled ones are set from a `Sample` at each `render`.
pub struct Metrics {
    registry: Registry,
    pub server: ServerMetrics,
    pub disk: DiskMetrics,
    pub network: NetworkMetrics,
    pub grpc: GrpcMetrics,
    sampled: SampledMetrics,
    /// `etcd_cluster_version`: one series, labelled with the cluster version as sampled.
    cluster_version: IntGaugeVec,
    sampler: OnceLock<Box<dyn Fn() -> Sample + Send + Sync>>,
    /// Renders one at a time: sampled counters advance by differences.
    rendering: Mutex<()>,
}

/// etcd's `etcdserver` package: leadership and proposals.
pub struct ServerMetrics {
    pub leader_changes_seen: IntCounter,
    pub heartbeat_send_failures: IntCounter,
    pub slow_applies: IntCounter,
    /// The highest committed log index known here (a gauge in etcd, despite its name).
    pub proposals_committed: IntGauge,
    pub proposals_pending: IntGauge,
    pub proposals_failed: IntCounter,
}

/// etcd's `wal` and `mvcc/backend` packages: how long disk syncs and commits take.
pub struct DiskMetrics {
    /// Syncs of the Raft log's write-ahead log.
    pub wal_fsync_seconds: Histogram,
    /// Commits of the state machine's batches to storage.
    pub backend_commit_seconds: Histogram,
}

/// etcd's `rafthttp` package: traffic with the other members.
pub struct NetworkMetrics {
    peer_sent_bytes: IntCounterVec,
    peer_received_bytes: IntCounterVec,
    peer_round_trip_seconds: HistogramVec,
}

/// The series of one peer, resolved once per connection to it.
#[derive(Clone)]
pub struct PeerMetrics {
    pub sent_bytes: IntCounter,
    pub received_bytes: IntCounter,
    pub round_trip_seconds: Histogram,
}

impl NetworkMetrics {
    /// The series labelled with `member` (in hexadecimal, as etcd's `To` and `From`).
    pub fn peer(&self, member: u64) -> PeerMetrics {
        let id = format!("{member:x}");
        PeerMetrics {
            sent_bytes: self.peer_sent_bytes.with_label_values(&[id.as_str()]),
            received_bytes: self.peer_received_bytes.with_label_values(&[id.as_str()]),
            round_trip_seconds: self
                .peer_round_trip_seconds
                .with_label_values(&[id.as_str()]),
        }
    }
}

/// What the member reports of its state at a render (see `Metrics::set_sampler`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub has_leader: bool,
    pub is_leader: bool,
    pub is_learner: bool,
    pub applied_index: u64,
    /// Totals since start, counted by `mvcc` as etcd counts them.
    pub ranges: u64,
    pub puts: u64,
    pub deletes: u64,
    pub txns: u64,
    pub live_keys: u64,
    pub current_revision: i64,
    pub compact_revision: i64,
    pub db_size_bytes: u64,
    pub db_size_in_use_bytes: u64,
    pub watch_streams: u64,
    pub watchers: u64,
    pub slow_watchers: u64,
    /// Events handed to watch streams since start.
    pub events: u64,
    /// The cluster version (major, minor); None while it is not decided.
    pub cluster_version: Option<(u64, u64)>,
}

struct SampledMetrics {
    has_leader: IntGauge,
    is_leader: IntGauge,
    is_learner: IntGauge,
    proposals_applied: IntGauge,
    ranges: IntCounter,
    puts: IntCounter,
    deletes: IntCounter,
    txns: IntCounter,
    keys: IntGauge,
    current_revision: IntGauge,
    compact_revision: IntGauge,
    db_total_size: IntGauge,
    db_total_size_in_use: IntGauge,
    watch_streams: IntGauge,
    watchers: IntGauge,
    slow_watchers: IntGauge,
    events: IntCounter,
}

/// etcd's buckets for disk latencies: 1 ms to 8.192 s, doubling (`wal`, `backend`).
fn disk_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.001, 2.0, 14).expect("valid buckets")
}

/// etcd's buckets for peer round trips: 0.1 ms to 3.2768 s, doubling (`rafthttp`).
fn round_trip_buckets() -> Vec<f64> {
    prometheus::exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")
}

/// Registers `collector` and returns it. Names are fixed and unique here, so a
/// failure is a fault in this file.
fn registered<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    registry
        .register(Box::new(collector.clone()))
        .expect("each metric is registered once");
    collector
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(
        registry,
        IntCounter::new(name, help).expect("valid counter"),
    )
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, IntGauge::new(name, help).expect("valid gauge"))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    registered(
        registry,
        Histogram::with_opts(opts).expect("valid histogram"),
    )
}

/// A gauge of value 1 whose one label says what this member is, as etcd's version gauges.
fn info(registry: &Registry, name: &str, help: &str, label: &str, value: &str) -> IntGaugeVec {
    let vec = registered(
        registry,
        IntGaugeVec::new(Opts::new(name, help), &[label]).expect("valid gauge"),
    );
    vec.with_label_values(&[value]).set(1);
    vec
}

impl Metrics {
    /// A registry with every series etcd shows before the first request; `extensive` adds
    /// the gRPC handling-time histograms (`--metrics extensive`).
    pub fn new(labels: &MemberLabels, extensive: bool) -> Metrics {
        let r = Registry::new();
        info(
            &r,
            "etcd_server_id",
            "Server or member ID in hexadecimal format. 1 for 'server_id' label with current ID.",
            "server_id",
            &labels.server_id,
        );
        info(
            &r,
            "etcd_server_version",
            "Which version is running. 1 for 'server_version' label with current version.",
            "server_version",
            &labels.server_version,
        );
        let cluster_version = info(
            &r,
            "etcd_cluster_version",
            "Which version is running. 1 for 'cluster_version' label with current cluster version",
            "cluster_version",
            &labels.cluster_version,
        );
        let server = ServerMetrics {
            leader_changes_seen: counter(
                &r,
                "etcd_server_leader_changes_seen_total",
                "The number of leader changes seen.",
            ),
            heartbeat_send_failures: counter(
                &r,
                "etcd_server_heartbeat_send_failures_total",
                "The total number of leader heartbeat send failures (likely overloaded from slow disk).",
            ),
            slow_applies: counter(
                &r,
                "etcd_server_slow_apply_total",
                "The total number of slow apply requests (likely overloaded from slow disk).",
            ),
            proposals_committed: gauge(
                &r,
                "etcd_server_proposals_committed_total",
                "The total number of consensus proposals committed.",
            ),
            proposals_pending: gauge(
                &r,
                "etcd_server_proposals_pending",
                "The current number of pending proposals to commit.",
            ),
            proposals_failed: counter(
                &r,
                "etcd_server_proposals_failed_total",
                "The total number of failed proposals seen.",
            ),
        };
        let disk = DiskMetrics {
            wal_fsync_seconds: histogram(
                &r,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                disk_buckets(),
            ),
            backend_commit_seconds: histogram(
                &r,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                disk_buckets(),
            ),
        };
        let network = NetworkMetrics {
            peer_sent_bytes: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "etcd_network_peer_sent_bytes_total",
                        "The total number of bytes sent to peers.",
                    ),
                    &["To"],
                )
                .expect("valid counter"),
            ),
            peer_received_bytes: registered(
                &r,
                IntCounterVec::new(
                    Opts::new(
                        "etcd_network_peer_received_bytes_total",
                        "The total number of bytes received from peers.",
                    ),
                    &["From"],
                )
                .expect("valid counter"),
            ),
            peer_round_trip_seconds: registered(
                &r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "etcd_network_peer_round_trip_time_seconds",
                        "Round-Trip-Time histogram between peers",
                    )
                    .buckets(round_trip_buckets()),
                    &["To"],
                )
                .expect("valid histogram"),
            ),
        };
        let grpc = GrpcMetrics::new(&r, extensive);
        let sampled = SampledMetrics {
            has_leader: gauge(
                &r,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
            ),
            is_leader: gauge(
                &r,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
            ),
            is_learner: gauge(
                &r,
                "etcd_server_is_learner",
                "Whether or not this member is a learner. 1 if is, 0 otherwise.",
            ),
            proposals_applied: gauge(
                &r,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
            ),
            ranges: counter(
                &r,
                "etcd_mvcc_range_total",
                "Total number of ranges seen by this member.",
            ),
            puts: counter(
                &r,
                "etcd_mvcc_put_total",
                "Total number of puts seen by this member.",
            ),
            deletes: counter(
                &r,
                "etcd_mvcc_delete_total",
                "Total number of deletes seen by this member.",
            ),
            txns: counter(
                &r,
                "etcd_mvcc_txn_total",
                "Total number of txns seen by this member.",
            ),
            keys: gauge(
                &r,
                "etcd_debugging_mvcc_keys_total",
                "Total number of keys.",
            ),
            current_revision: gauge(
                &r,
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
            ),
            compact_revision: gauge(
                &r,
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
            ),
            db_total_size: gauge(
                &r,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes.",
            ),
            db_total_size_in_use: gauge(
                &r,
                "etcd_mvcc_db_total_size_in_use_in_bytes",
                "Total size of the underlying database logically in use in bytes.",
            ),
            watch_streams: gauge(
                &r,
                "etcd_debugging_mvcc_watch_stream_total",
                "Total number of watch streams.",
            ),
            watchers: gauge(
                &r,
                "etcd_debugging_mvcc_watcher_total",
                "Total number of watchers.",
            ),
            slow_watchers: gauge(
                &r,
                "etcd_debugging_mvcc_slow_watcher_total",
                "Total number of unsynced slow watchers.",
            ),
            events: counter(
                &r,
                "etcd_debugging_mvcc_events_total",
                "Total number of events sent by this member.",
            ),
        };
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("the process collector is registered once");
        Metrics {
            registry: r,
            server,
            disk,
            network,
            grpc,
            sampled,
            cluster_version,
            sampler: OnceLock::new(),
            rendering: Mutex::new(()),
        }
    }

    /// Installs what reads the member's state at each render; the first one stays.
    pub fn set_sampler(&self, sampler: impl Fn() -> Sample + Send + Sync + 'static) {
        let _ = self.sampler.set(Box::new(sampler));
    }

    /// The text exposition of every series: `(content type, body)`, as `GET /metrics`
    /// answers. Samples the member's state first.
    pub fn render(&self) -> (&'static str, String) {
        let _one_at_a_time = self.rendering.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sample) = self.sampler.get().map(|sampler| sampler()) {
            self.set_sample(&sample);
        }
        let mut body = String::new();
        TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut body)
            .expect("writing to a String cannot fail");
        (CONTENT_TYPE, body)
    }

    fn set_sample(&self, s: &Sample) {
        let m = &self.sampled;
        m.has_leader.set(s.has_leader as i64);
        m.is_leader.set(s.is_leader as i64);
        m.is_learner.set(s.is_learner as i64);
        m.proposals_applied.set(s.applied_index as i64);
        advance(&m.ranges, s.ranges);
        advance(&m.puts, s.puts);
        advance(&m.deletes, s.deletes);
        advance(&m.txns, s.txns);
        m.keys.set(s.live_keys as i64);
        m.current_revision.set(s.current_revision);
        m.compact_revision.set(s.compact_revision);
        m.db_total_size.set(s.db_size_bytes as i64);
        m.db_total_size_in_use.set(s.db_size_in_use_bytes as i64);
        m.watch_streams.set(s.watch_streams as i64);
        m.watchers.set(s.watchers as i64);
        m.slow_watchers.set(s.slow_watchers as i64);
        advance(&m.events, s.events);
        // As etcd: one series, the previous cluster version's gone when it changes.
        if let Some((major, minor)) = s.cluster_version {
            self.cluster_version.reset();
            self.cluster_version
                .with_label_values(&[&format!("{major}.{minor}")])
                .set(1);
        }
    }
}

/// Brings a sampled counter up to `total`, which only grows.
fn advance(counter: &IntCounter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}

/// One proposal waiting to commit, counted in `etcd_server_proposals_pending` while it
/// lives.
pub struct Pending<'a>(&'a IntGauge);

impl<'a> Pending<'a> {
    pub fn new(gauge: &'a IntGauge) -> Pending<'a> {
        gauge.inc();
        Pending(gauge)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests;
