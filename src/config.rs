//! Start-up configuration: etcd's flag names, `ETCD_*` environment variables and the
//! `--config-file` YAML, resolved into one `Config`.
//!
//! Owns parsing and validation only; `file` reads the YAML through one table of each
//! flag's file key. May call `cluster` (etcd's URL printing, the bootstrap
//! identity), `net` (the TLS settings it fills), `feature_gates` and `telemetry` (the
//! tracing settings it fills); nothing calls back.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use url::Url;

use crate::cluster::{url_string, Identity};
use crate::net::tls::{AllowedPeer, TlsSettings};
use crate::telemetry::{LogFormat, TracingSettings, SAMPLES_PER};

mod file;

/// The etcd release whose API Cairn serves; reported by `Status` and `--version`.
pub const ETCD_API_VERSION: &str = "3.7.3";
/// This member's major.minor: the cluster version once every member runs this release.
pub const ETCD_CLUSTER_VERSION: &str = "3.7";
/// The version a member served when it published none: Cairn before members published it.
pub const UNPUBLISHED_SERVER_VERSION: &str = "3.4.0";
/// Cairn's own version.
pub const CAIRN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// etcd's defaults, by name, so flags and the YAML file share them.
mod default {
    pub const NAME: &str = "default";
    pub const CLIENT_URLS: &str = "http://localhost:2379";
    pub const PEER_URLS: &str = "http://localhost:2380";
    pub const CLUSTER_TOKEN: &str = "etcd-cluster";
    pub const HEARTBEAT_INTERVAL_MS: u64 = 100;
    pub const ELECTION_TIMEOUT_MS: u64 = 1000;
    pub const SNAPSHOT_COUNT: u64 = 100_000;
    pub const SNAPSHOT_CATCHUP_ENTRIES: u64 = 5_000;
    /// etcd: 1.5 MiB.
    pub const MAX_REQUEST_BYTES: u64 = 1_572_864;
    pub const MAX_TXN_OPS: u64 = 128;
    /// etcd: 0 means its default quota of 2 GiB.
    pub const QUOTA_BACKEND_BYTES: u64 = 2 * 1024 * 1024 * 1024;
    pub const WATCH_PROGRESS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);
    pub const TRACING_ADDRESS: &str = "localhost:4317";
    pub const TRACING_SERVICE_NAME: &str = "etcd";
}

/// How fast the compactor works (`--compaction-batch-limit`, `--compaction-sleep-interval`):
/// it drops at most `batch_limit` revisions from the index and disk at once, then rests
/// `sleep` before the next batch, as etcd does. The batch bounds the memory a compaction
/// holds and how long writers wait behind its storage write; the rest leaves the disk and
/// the CPU to requests, so a large compaction takes longer instead of slowing them.
#[derive(Debug, Clone, Copy)]
pub struct CompactionPace {
    pub batch_limit: usize,
    pub sleep: Duration,
}

impl Default for CompactionPace {
    /// etcd's: 1,000 revisions, then 10 ms.
    fn default() -> Self {
        CompactionPace {
            batch_limit: 1_000,
            sleep: Duration::from_millis(10),
        }
    }
}

/// Command-line flags, named as etcd names them. Each also reads `ETCD_<NAME>`, and each
/// needs its entry in `file::FILE_KEYS` (a unit test checks).
#[derive(Parser, Debug, Default)]
#[command(
    name = "cairn",
    about = "Cairn: an etcd-v3-compatible, Raft-replicated key-value store",
    disable_version_flag = true,
    // As Go's flag package: a flag given twice takes its last value.
    args_override_self = true
)]
pub struct Flags {
    /// Print the version and exit.
    #[arg(long)]
    pub version: bool,
    /// Path to a YAML configuration file; when given, other flags and variables are ignored.
    #[arg(long, env = "ETCD_CONFIG_FILE")]
    pub config_file: Option<PathBuf>,
    /// Human-readable name for this member.
    #[arg(long, env = "ETCD_NAME")]
    pub name: Option<String>,
    /// Path to the data directory (default: `<name>.etcd`).
    #[arg(long, env = "ETCD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// URLs to listen on for client traffic.
    #[arg(long, env = "ETCD_LISTEN_CLIENT_URLS")]
    pub listen_client_urls: Option<String>,
    /// Client URLs advertised to the cluster and to clients.
    #[arg(long, env = "ETCD_ADVERTISE_CLIENT_URLS")]
    pub advertise_client_urls: Option<String>,
    /// URLs to listen on for peer traffic.
    #[arg(long, env = "ETCD_LISTEN_PEER_URLS")]
    pub listen_peer_urls: Option<String>,
    /// This member's peer URLs, advertised to the rest of the cluster.
    #[arg(long, env = "ETCD_INITIAL_ADVERTISE_PEER_URLS")]
    pub initial_advertise_peer_urls: Option<String>,
    /// Initial cluster configuration: `name=peer-url,...`.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,
    /// `new` or `existing`.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_STATE")]
    pub initial_cluster_state: Option<String>,
    /// Initial cluster token; member and cluster IDs derive from it.
    #[arg(long, env = "ETCD_INITIAL_CLUSTER_TOKEN")]
    pub initial_cluster_token: Option<String>,
    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "ETCD_HEARTBEAT_INTERVAL")]
    pub heartbeat_interval: Option<u64>,
    /// Time (in milliseconds) for an election to time out.
    #[arg(long, env = "ETCD_ELECTION_TIMEOUT")]
    pub election_timeout: Option<u64>,
    /// Number of applied requests that triggers a snapshot.
    #[arg(long, env = "ETCD_SNAPSHOT_COUNT")]
    pub snapshot_count: Option<u64>,
    /// Requests whose log entries are kept after a snapshot, for slow followers to catch up
    /// from the log (etcd 3.7's name; 3.5's `--experimental-snapshot-catchup-entries` too).
    #[arg(
        long,
        alias = "experimental-snapshot-catchup-entries",
        env = "ETCD_SNAPSHOT_CATCHUP_ENTRIES"
    )]
    pub snapshot_catchup_entries: Option<u64>,
    /// Storage quota in bytes; 0 means the default (2 GiB).
    #[arg(long, env = "ETCD_QUOTA_BACKEND_BYTES")]
    pub quota_backend_bytes: Option<u64>,
    /// Maximum client request size in bytes.
    #[arg(long, env = "ETCD_MAX_REQUEST_BYTES")]
    pub max_request_bytes: Option<u64>,
    /// Maximum number of operations in one transaction.
    #[arg(long, env = "ETCD_MAX_TXN_OPS")]
    pub max_txn_ops: Option<u64>,
    /// `periodic` or `revision`.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_MODE")]
    pub auto_compaction_mode: Option<String>,
    /// Retention for auto compaction; 0 disables it.
    #[arg(long, env = "ETCD_AUTO_COMPACTION_RETENTION")]
    pub auto_compaction_retention: Option<String>,
    /// debug, info, warn, error, panic or fatal.
    #[arg(long, env = "ETCD_LOG_LEVEL")]
    pub log_level: Option<String>,
    /// `zap` (etcd's structured logger: JSON lines) or `capnslog` (etcd 3.4's default: text).
    /// Without it, Cairn writes text; see `log_format`.
    #[arg(long, env = "ETCD_LOGGER")]
    pub logger: Option<String>,
    /// etcd 3.6+'s `json` or `console` (Cairn's text lines).
    #[arg(long, env = "ETCD_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Maximum concurrent gRPC streams per client connection.
    #[arg(long, env = "ETCD_MAX_CONCURRENT_STREAMS")]
    pub max_concurrent_streams: Option<u32>,
    /// Period of watch progress notifications (a Go duration, e.g. "10m" or "500ms");
    /// etcd 3.6+ names it `--watch-progress-notify-interval`.
    #[arg(
        long,
        alias = "watch-progress-notify-interval",
        env = "ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL"
    )]
    pub experimental_watch_progress_notify_interval: Option<String>,
    /// Level of detail of the exported metrics: `basic`, or `extensive` for the gRPC
    /// handling-time histograms too.
    #[arg(long, env = "ETCD_METRICS")]
    pub metrics: Option<String>,
    /// Further URLs serving only `/metrics`, `/health`, `/livez` and `/readyz` (`https` ones
    /// with the client port's TLS).
    #[arg(long, env = "ETCD_LISTEN_METRICS_URLS")]
    pub listen_metrics_urls: Option<String>,

    // Distributed tracing: etcd 3.7's names, with 3.5's `--experimental-*` names as aliases
    // (and their `ETCD_EXPERIMENTAL_*` variables, see `RENAMED_VARIABLES`).
    /// Export spans of client requests over OTLP/gRPC.
    #[arg(long, alias = "experimental-enable-distributed-tracing", env = "ETCD_ENABLE_DISTRIBUTED_TRACING", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_distributed_tracing: Option<bool>,
    /// The OTLP/gRPC collector's address, `host:port` (default `localhost:4317`).
    #[arg(
        long,
        alias = "experimental-distributed-tracing-address",
        env = "ETCD_DISTRIBUTED_TRACING_ADDRESS"
    )]
    pub distributed_tracing_address: Option<String>,
    /// The service name of the spans (default `etcd`); the same on every member.
    #[arg(
        long,
        alias = "experimental-distributed-tracing-service-name",
        env = "ETCD_DISTRIBUTED_TRACING_SERVICE_NAME"
    )]
    pub distributed_tracing_service_name: Option<String>,
    /// The service instance ID of the spans (default none); unique per member.
    #[arg(
        long,
        alias = "experimental-distributed-tracing-instance-id",
        env = "ETCD_DISTRIBUTED_TRACING_INSTANCE_ID"
    )]
    pub distributed_tracing_instance_id: Option<String>,
    /// Traces sampled per million requests that come without a sampled parent (default 0).
    #[arg(
        long,
        alias = "experimental-distributed-tracing-sampling-rate",
        env = "ETCD_DISTRIBUTED_TRACING_SAMPLING_RATE",
        allow_negative_numbers = true
    )]
    pub distributed_tracing_sampling_rate: Option<i64>,

    // Accepted for compatibility with etcd's command lines; Cairn has nothing to configure
    // with them (it always logs to stderr) or does not serve what they enable yet. Each is
    // reported at start-up when set.
    /// etcd's log destinations; Cairn logs to stderr.
    #[arg(long, env = "ETCD_LOG_OUTPUTS", alias = "log-output")]
    pub log_outputs: Option<String>,
    /// Serve etcd's v2 API: not served by Cairn.
    #[arg(long, env = "ETCD_ENABLE_V2", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub enable_v2: Option<bool>,
    /// Refuse membership changes that would lose quorum (membership changes: not yet).
    #[arg(long, env = "ETCD_STRICT_RECONFIG_CHECK", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub strict_reconfig_check: Option<bool>,
    /// Compare data hashes with peers before serving (not yet).
    #[arg(long, env = "ETCD_EXPERIMENTAL_INITIAL_CORRUPT_CHECK", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub experimental_initial_corrupt_check: Option<bool>,
    /// Auth token type: `simple`, or `jwt,pub-key=…,priv-key=…,sign-method=…,ttl=…`.
    #[arg(long, env = "ETCD_AUTH_TOKEN")]
    pub auth_token: Option<String>,
    /// Seconds a simple token lives after its last use.
    #[arg(long, env = "ETCD_AUTH_TOKEN_TTL")]
    pub auth_token_ttl: Option<u64>,
    /// bcrypt cost of password hashes (4 to 31).
    #[arg(long, env = "ETCD_BCRYPT_COST")]
    pub bcrypt_cost: Option<u32>,
    /// etcd 3.6+'s server feature gates, `Name=bool,...` (see `feature_gates`).
    #[arg(long, env = "ETCD_FEATURE_GATES")]
    pub feature_gates: Option<String>,
    // Client TLS (`https` client URLs).
    /// Path to the client server TLS certificate file.
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub cert_file: Option<PathBuf>,
    /// Path to the client server TLS key file.
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Require clients to present a certificate signed by --trusted-ca-file.
    #[arg(long, env = "ETCD_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub client_cert_auth: Option<bool>,
    /// Path to the client server TLS trusted CA certificate file.
    #[arg(long, env = "ETCD_TRUSTED_CA_FILE")]
    pub trusted_ca_file: Option<PathBuf>,
    /// Client TLS using a generated, self-signed certificate.
    #[arg(long, env = "ETCD_AUTO_TLS", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub auto_tls: Option<bool>,
    /// Path to the client certificate revocation list file.
    #[arg(long, env = "ETCD_CLIENT_CRL_FILE")]
    pub client_crl_file: Option<PathBuf>,

    // Peer TLS (`https` peer URLs).
    /// Path to the peer server TLS certificate file.
    #[arg(long, env = "ETCD_PEER_CERT_FILE")]
    pub peer_cert_file: Option<PathBuf>,
    /// Path to the peer server TLS key file.
    #[arg(long, env = "ETCD_PEER_KEY_FILE")]
    pub peer_key_file: Option<PathBuf>,
    /// Require peers to present a certificate signed by --peer-trusted-ca-file.
    #[arg(long, env = "ETCD_PEER_CLIENT_CERT_AUTH", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub peer_client_cert_auth: Option<bool>,
    /// Path to the peer server TLS trusted CA file.
    #[arg(long, env = "ETCD_PEER_TRUSTED_CA_FILE")]
    pub peer_trusted_ca_file: Option<PathBuf>,
    /// Peer TLS using generated, self-signed certificates.
    #[arg(long, env = "ETCD_PEER_AUTO_TLS", num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub peer_auto_tls: Option<bool>,
    /// Path to the peer certificate revocation list file.
    #[arg(long, env = "ETCD_PEER_CRL_FILE")]
    pub peer_crl_file: Option<PathBuf>,
    /// Validity of auto TLS certificates, in years.
    #[arg(long, env = "ETCD_SELF_SIGNED_CERT_VALIDITY")]
    pub self_signed_cert_validity: Option<u32>,
    /// Common name a peer's certificate must have.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_CN")]
    pub peer_cert_allowed_cn: Option<String>,
    /// Host name a peer's certificate must be valid for.
    #[arg(long, env = "ETCD_PEER_CERT_ALLOWED_HOSTNAME")]
    pub peer_cert_allowed_hostname: Option<String>,
    /// TLS 1.2 cipher suites, comma-separated Go names (TLS 1.3's are not configurable).
    #[arg(long, env = "ETCD_CIPHER_SUITES")]
    pub cipher_suites: Option<String>,
    /// Revisions deleted per batch of a physical compaction, 0 for the default 1,000 (etcd
    /// 3.6+'s name; 3.4/3.5's `--experimental-compaction-batch-limit` too).
    #[arg(
        long,
        alias = "experimental-compaction-batch-limit",
        env = "ETCD_COMPACTION_BATCH_LIMIT"
    )]
    pub compaction_batch_limit: Option<u64>,
    /// Pause between those batches (a Go duration), 0 for the default 10ms (etcd 3.6+'s name;
    /// 3.5's `--experimental-compaction-sleep-interval` too).
    #[arg(
        long,
        alias = "experimental-compaction-sleep-interval",
        env = "ETCD_COMPACTION_SLEEP_INTERVAL"
    )]
    pub compaction_sleep_interval: Option<String>,
}

/// `ETCD_*` variables of flags' older names (etcd 3.5's `--experimental-*`), each with the
/// variable of the name clap reads (one per flag). When only the older is set, it is read as
/// the newer; when both are, the newer wins.
const RENAMED_VARIABLES: &[(&str, &str)] = &[
    (
        "ETCD_EXPERIMENTAL_COMPACTION_BATCH_LIMIT",
        "ETCD_COMPACTION_BATCH_LIMIT",
    ),
    (
        "ETCD_EXPERIMENTAL_COMPACTION_SLEEP_INTERVAL",
        "ETCD_COMPACTION_SLEEP_INTERVAL",
    ),
    (
        "ETCD_EXPERIMENTAL_ENABLE_DISTRIBUTED_TRACING",
        "ETCD_ENABLE_DISTRIBUTED_TRACING",
    ),
    (
        "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_ADDRESS",
        "ETCD_DISTRIBUTED_TRACING_ADDRESS",
    ),
    (
        "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_SERVICE_NAME",
        "ETCD_DISTRIBUTED_TRACING_SERVICE_NAME",
    ),
    (
        "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_INSTANCE_ID",
        "ETCD_DISTRIBUTED_TRACING_INSTANCE_ID",
    ),
    (
        "ETCD_EXPERIMENTAL_DISTRIBUTED_TRACING_SAMPLING_RATE",
        "ETCD_DISTRIBUTED_TRACING_SAMPLING_RATE",
    ),
];

impl Flags {
    /// The process's command line and `ETCD_*` variables, older names' variables included.
    pub fn from_command_line_and_env() -> Flags {
        for (older, newer) in RENAMED_VARIABLES {
            if let Some(value) = std::env::var_os(older) {
                if std::env::var_os(newer).is_none() {
                    // Before any other thread runs: nothing reads the environment meanwhile.
                    std::env::set_var(newer, value);
                }
            }
        }
        Flags::parse()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterState {
    New,
    Existing,
}

/// `--metrics`: how much the metrics endpoint reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsLevel {
    #[default]
    Basic,
    /// Basic, and a histogram of each gRPC method's handling time.
    Extensive,
}

/// `--auto-compaction-mode` with `--auto-compaction-retention`, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoCompaction {
    Disabled,
    /// Keep this much history by time.
    Periodic(Duration),
    /// Keep this many revisions.
    Revision(i64),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client_urls: Vec<Url>,
    pub advertise_client_urls: Vec<Url>,
    pub listen_peer_urls: Vec<Url>,
    pub initial_advertise_peer_urls: Vec<Url>,
    /// `(name, peer URLs)` in the order given.
    pub initial_cluster: Vec<(String, Vec<Url>)>,
    pub initial_cluster_state: ClusterState,
    pub initial_cluster_token: String,
    pub heartbeat_interval_ms: u64,
    pub election_timeout_ms: u64,
    pub snapshot_count: u64,
    pub snapshot_catchup_entries: u64,
    pub quota_backend_bytes: u64,
    pub max_request_bytes: u64,
    pub max_txn_ops: u64,
    pub auto_compaction: AutoCompaction,
    pub log_level: String,
    /// `--logger` with `--log-format` (see `log_format`).
    pub log_format: LogFormat,
    pub max_concurrent_streams: Option<u32>,
    pub watch_progress_interval: Duration,
    /// `--compaction-batch-limit` and `--compaction-sleep-interval`.
    pub compaction_pace: CompactionPace,
    pub metrics: MetricsLevel,
    /// `--listen-metrics-urls`; none by default (the client URLs serve `/metrics` too).
    pub listen_metrics_urls: Vec<Url>,
    /// `--auth-token` (default `simple`).
    pub auth_token: String,
    /// `--auth-token-ttl` (default 300 s).
    pub auth_token_ttl: Duration,
    /// `--bcrypt-cost` (default 10).
    pub bcrypt_cost: u32,
    /// TLS of the client URLs that are `https`.
    pub client_tls: TlsSettings,
    /// TLS of the peer URLs that are `https`, and of connections to other members.
    pub peer_tls: TlsSettings,
    /// `--enable-distributed-tracing` with its settings; `None` when off.
    pub distributed_tracing: Option<TracingSettings>,
    /// Flags given that Cairn accepts but does not act on, each with the reason.
    pub ignored: Vec<String>,
}

impl Config {
    /// Resolves flags (or the config file they name) into a validated configuration.
    /// Checks run in a fixed order, so a command line with several faults names the same one
    /// first every time.
    pub fn from_flags(flags: Flags) -> Result<Config, String> {
        // etcd: a config file replaces flags and environment variables entirely.
        let f = match &flags.config_file {
            Some(path) => file::read(path)?,
            None => flags,
        };
        let watch_progress_interval = watch_progress_interval(&f)?;
        let name = f.name.clone().unwrap_or_else(|| default::NAME.to_string());
        let data_dir = f
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("{name}.etcd")));
        let urls = Urls::from_flags(&f)?;
        let initial_cluster = initial_cluster(&f, &name, &urls.initial_advertise_peer)?;
        let initial_cluster_state = initial_cluster_state(&f)?;
        let (heartbeat_interval_ms, election_timeout_ms) = raft_timing(&f)?;
        let auto_compaction = auto_compaction(&f)?;
        let mut ignored = accepted_but_ignored(&f)?;
        let distributed_tracing = distributed_tracing(&f, &mut ignored)?;
        let compaction_pace = compaction_pace(&f)?;
        let (client_tls, peer_tls) = tls_settings(&f)?;
        check_url_schemes(&urls, &initial_cluster, &client_tls, &peer_tls)?;
        let log_level = log_level(&f)?;
        let log_format = log_format(&f)?;
        let metrics = metrics_level(&f)?;
        Ok(Config {
            name,
            data_dir,
            listen_client_urls: urls.listen_client,
            listen_metrics_urls: urls.listen_metrics,
            advertise_client_urls: urls.advertise_client,
            listen_peer_urls: urls.listen_peer,
            initial_advertise_peer_urls: urls.initial_advertise_peer,
            initial_cluster,
            initial_cluster_state,
            initial_cluster_token: f
                .initial_cluster_token
                .unwrap_or_else(|| default::CLUSTER_TOKEN.to_string()),
            heartbeat_interval_ms,
            election_timeout_ms,
            snapshot_count: f.snapshot_count.unwrap_or(default::SNAPSHOT_COUNT).max(1),
            snapshot_catchup_entries: f
                .snapshot_catchup_entries
                .unwrap_or(default::SNAPSHOT_CATCHUP_ENTRIES),
            quota_backend_bytes: match f.quota_backend_bytes {
                None | Some(0) => default::QUOTA_BACKEND_BYTES,
                Some(n) => n,
            },
            max_request_bytes: f.max_request_bytes.unwrap_or(default::MAX_REQUEST_BYTES),
            max_txn_ops: f.max_txn_ops.unwrap_or(default::MAX_TXN_OPS),
            auto_compaction,
            log_level,
            log_format,
            max_concurrent_streams: f.max_concurrent_streams,
            watch_progress_interval,
            compaction_pace,
            metrics,
            auth_token: f.auth_token.clone().unwrap_or_else(|| "simple".to_string()),
            auth_token_ttl: Duration::from_secs(f.auth_token_ttl.unwrap_or(300)),
            bcrypt_cost: f.bcrypt_cost.unwrap_or(10),
            client_tls,
            peer_tls,
            distributed_tracing,
            ignored,
        })
    }
}

fn watch_progress_interval(f: &Flags) -> Result<Duration, String> {
    match &f.experimental_watch_progress_notify_interval {
        None => Ok(default::WATCH_PROGRESS_INTERVAL),
        Some(s) => parse_go_duration(s).ok_or_else(|| {
            format!("invalid value {s:?} for flag -experimental-watch-progress-notify-interval")
        }),
    }
}

/// `--enable-distributed-tracing` and its settings, checked as etcd checks them (only when
/// enabled). Settings given with tracing off are reported as ignored.
fn distributed_tracing(
    f: &Flags,
    ignored: &mut Vec<String>,
) -> Result<Option<TracingSettings>, String> {
    let given = [
        (
            "--distributed-tracing-address",
            f.distributed_tracing_address.is_some(),
        ),
        (
            "--distributed-tracing-service-name",
            f.distributed_tracing_service_name.is_some(),
        ),
        (
            "--distributed-tracing-instance-id",
            f.distributed_tracing_instance_id.is_some(),
        ),
        (
            "--distributed-tracing-sampling-rate",
            f.distributed_tracing_sampling_rate.is_some(),
        ),
    ];
    if f.enable_distributed_tracing != Some(true) {
        for (flag, _) in given.iter().filter(|(_, given)| *given) {
            ignored.push(format!(
                "{flag}: distributed tracing is off (--enable-distributed-tracing)"
            ));
        }
        return Ok(None);
    }
    let rate = f.distributed_tracing_sampling_rate.unwrap_or(0);
    let invalid =
        |reason: &str| format!("distributed tracing configurition is not valid: ({reason})");
    if rate < 0 {
        return Err(invalid("tracing sampling rate must be positive"));
    }
    if rate > i64::from(SAMPLES_PER) {
        return Err(invalid(&format!(
            "tracing sampling rate must be less than {SAMPLES_PER}"
        )));
    }
    Ok(Some(TracingSettings {
        address: f
            .distributed_tracing_address
            .clone()
            .unwrap_or_else(|| default::TRACING_ADDRESS.to_string()),
        service_name: f
            .distributed_tracing_service_name
            .clone()
            .unwrap_or_else(|| default::TRACING_SERVICE_NAME.to_string()),
        instance_id: f
            .distributed_tracing_instance_id
            .clone()
            .unwrap_or_default(),
        sampling_rate_per_million: rate as u32,
    }))
}

/// The client and peer URL flags, parsed, with etcd's defaults.
struct Urls {
    listen_client: Vec<Url>,
    /// Empty unless given.
    listen_metrics: Vec<Url>,
    advertise_client: Vec<Url>,
    listen_peer: Vec<Url>,
    initial_advertise_peer: Vec<Url>,
}

impl Urls {
    fn from_flags(f: &Flags) -> Result<Urls, String> {
        let urls = |flag: &str, value: &Option<String>, default: &str| {
            parse_urls(flag, value.as_deref().unwrap_or(default))
        };
        Ok(Urls {
            listen_client: urls(
                "listen-client-urls",
                &f.listen_client_urls,
                default::CLIENT_URLS,
            )?,
            listen_metrics: match &f.listen_metrics_urls {
                None => Vec::new(),
                Some(list) => parse_urls("listen-metrics-urls", list)?,
            },
            advertise_client: urls(
                "advertise-client-urls",
                &f.advertise_client_urls,
                default::CLIENT_URLS,
            )?,
            listen_peer: urls("listen-peer-urls", &f.listen_peer_urls, default::PEER_URLS)?,
            initial_advertise_peer: urls(
                "initial-advertise-peer-urls",
                &f.initial_advertise_peer_urls,
                default::PEER_URLS,
            )?,
        })
    }
}

/// `--initial-cluster`, which must name this member.
fn initial_cluster(
    f: &Flags,
    name: &str,
    initial_advertise_peer_urls: &[Url],
) -> Result<Vec<(String, Vec<Url>)>, String> {
    // etcd: without --initial-cluster, the cluster is this member alone.
    let initial_cluster = match f.initial_cluster.as_deref() {
        Some(spec) if !spec.is_empty() => parse_initial_cluster(spec)?,
        _ => vec![(name.to_string(), initial_advertise_peer_urls.to_vec())],
    };
    if !initial_cluster.iter().any(|(n, _)| n == name) {
        return Err(format!(
            "couldn't find local name {name:?} in the initial cluster configuration"
        ));
    }
    Ok(initial_cluster)
}

fn initial_cluster_state(f: &Flags) -> Result<ClusterState, String> {
    match f.initial_cluster_state.as_deref().unwrap_or("new") {
        "new" => Ok(ClusterState::New),
        "existing" => Ok(ClusterState::Existing),
        other => Err(format!(
            "invalid value {other:?} for flag -initial-cluster-state: valid values are \"new\", \"existing\""
        )),
    }
}

/// `(heartbeat interval, election timeout)` in milliseconds, as etcd bounds them.
fn raft_timing(f: &Flags) -> Result<(u64, u64), String> {
    let heartbeat_interval_ms = f
        .heartbeat_interval
        .unwrap_or(default::HEARTBEAT_INTERVAL_MS);
    let election_timeout_ms = f.election_timeout.unwrap_or(default::ELECTION_TIMEOUT_MS);
    if heartbeat_interval_ms == 0 || 5 * heartbeat_interval_ms > election_timeout_ms {
        return Err(format!(
            "--election-timeout[{election_timeout_ms}ms] should be at least as 5 times as --heartbeat-interval[{heartbeat_interval_ms}ms]"
        ));
    }
    Ok((heartbeat_interval_ms, election_timeout_ms))
}

fn auto_compaction(f: &Flags) -> Result<AutoCompaction, String> {
    let retention = f.auto_compaction_retention.as_deref().unwrap_or("0");
    match f.auto_compaction_mode.as_deref().unwrap_or("periodic") {
        "periodic" => match parse_retention_period(retention)? {
            d if d.is_zero() => Ok(AutoCompaction::Disabled),
            // The compactor samples the revision every tenth of the retention, which must
            // not be zero (etcd 3.4 divides by zero and crashes on such a retention).
            d if d < MIN_PERIODIC_RETENTION => Err(format!(
                "invalid auto-compaction-retention {retention:?}: a periodic retention \
                 is at least {MIN_PERIODIC_RETENTION:?}"
            )),
            d => Ok(AutoCompaction::Periodic(d)),
        },
        "revision" => match retention.parse::<i64>() {
            Ok(0) => Ok(AutoCompaction::Disabled),
            Ok(n) if n > 0 => Ok(AutoCompaction::Revision(n)),
            _ => Err(format!(
                "invalid auto-compaction-retention {retention:?} for revision mode"
            )),
        },
        other => Err(format!(
            "unknown auto-compaction-mode {other:?}: valid values are \"periodic\", \"revision\""
        )),
    }
}

/// The notes reported at start-up for flags Cairn accepts but does not act on.
fn accepted_but_ignored(f: &Flags) -> Result<Vec<String>, String> {
    let mut ignored = Vec::new();
    if let Some(v) = &f.log_outputs {
        ignored.push(format!("--log-outputs={v}: Cairn logs to stderr"));
    }
    if f.enable_v2 == Some(true) {
        ignored.push("--enable-v2: Cairn does not serve etcd's v2 API".to_string());
    }
    if f.strict_reconfig_check.is_some() {
        ignored.push(
            "--strict-reconfig-check: a member added as a voter joins the quorum only once it has caught up, so no change can lose quorum"
                .to_string(),
        );
    }
    if f.experimental_initial_corrupt_check == Some(true) {
        ignored.push(
            "--experimental-initial-corrupt-check: the start-up hash comparison with peers is not built yet"
                .to_string(),
        );
    }
    if let Some(v) = &f.feature_gates {
        ignored.extend(crate::feature_gates::check(v)?);
    }
    Ok(ignored)
}

/// `--compaction-batch-limit` and `--compaction-sleep-interval`, 0 meaning the default
/// of each, as etcd reads them.
fn compaction_pace(f: &Flags) -> Result<CompactionPace, String> {
    let etcds = CompactionPace::default();
    let batch_limit = match f.compaction_batch_limit {
        None | Some(0) => etcds.batch_limit,
        Some(n) => usize::try_from(n)
            .map_err(|_| format!("invalid value \"{n}\" for flag -compaction-batch-limit"))?,
    };
    let sleep = match &f.compaction_sleep_interval {
        None => etcds.sleep,
        Some(s) => match parse_go_duration(s) {
            Some(d) if d.is_zero() => etcds.sleep,
            Some(d) => d,
            None => {
                return Err(format!(
                    "invalid value {s:?} for flag -compaction-sleep-interval"
                ))
            }
        },
    };
    Ok(CompactionPace { batch_limit, sleep })
}

/// `(client TLS, peer TLS)` from the TLS flags.
fn tls_settings(f: &Flags) -> Result<(TlsSettings, TlsSettings), String> {
    let allowed_peer = match (&f.peer_cert_allowed_cn, &f.peer_cert_allowed_hostname) {
        (Some(cn), Some(hostname)) => {
            return Err(format!(
                "AllowedCN and AllowedHostname are mutually exclusive (cn={cn:?}, hostname={hostname:?})"
            ))
        }
        (Some(cn), None) => Some(AllowedPeer::CommonName(cn.clone())),
        (None, Some(hostname)) => Some(AllowedPeer::Hostname(hostname.clone())),
        (None, None) => None,
    };
    let validity_years = f.self_signed_cert_validity.unwrap_or(1);
    let cipher_suites = match &f.cipher_suites {
        Some(names) => crate::net::tls::go_cipher_suites(names)?,
        None => Vec::new(),
    };
    let client_tls = TlsSettings {
        cert_file: f.cert_file.clone(),
        key_file: f.key_file.clone(),
        trusted_ca_file: f.trusted_ca_file.clone(),
        client_cert_auth: f.client_cert_auth == Some(true),
        auto_tls: f.auto_tls == Some(true),
        crl_file: f.client_crl_file.clone(),
        self_signed_cert_validity_years: validity_years,
        allowed: None,
        serves_http1: true,
        cipher_suites: cipher_suites.clone(),
    };
    let peer_tls = TlsSettings {
        cert_file: f.peer_cert_file.clone(),
        key_file: f.peer_key_file.clone(),
        trusted_ca_file: f.peer_trusted_ca_file.clone(),
        client_cert_auth: f.peer_client_cert_auth == Some(true),
        auto_tls: f.peer_auto_tls == Some(true),
        crl_file: f.peer_crl_file.clone(),
        self_signed_cert_validity_years: validity_years,
        allowed: allowed_peer,
        serves_http1: false,
        cipher_suites,
    };
    Ok((client_tls, peer_tls))
}

/// Each `https` URL has TLS to serve it with; `unixs` is not served yet.
fn check_url_schemes(
    urls: &Urls,
    initial_cluster: &[(String, Vec<Url>)],
    client_tls: &TlsSettings,
    peer_tls: &TlsSettings,
) -> Result<(), String> {
    for url in &urls.listen_client {
        if url.scheme() == "https" && !client_tls.is_configured() {
            return Err(format!(
                "TLS key/cert (--cert-file, --key-file) must be provided for client url {} with HTTPS scheme",
                url_string(url)
            ));
        }
    }
    for url in &urls.listen_metrics {
        if url.scheme() == "https" && !client_tls.is_configured() {
            return Err(
                "client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url"
                    .to_string(),
            );
        }
    }
    for url in urls
        .listen_peer
        .iter()
        .chain(&urls.initial_advertise_peer)
        .chain(initial_cluster.iter().flat_map(|(_, urls)| urls))
    {
        if url.scheme() == "unixs" {
            return Err(format!(
                "{}: TLS over unix sockets (unixs) is not supported yet",
                url_string(url)
            ));
        }
    }
    if urls.listen_peer.iter().any(|u| u.scheme() == "https") && !peer_tls.is_configured() {
        return Err(
            "TLS key/cert (--peer-cert-file, --peer-key-file) or --peer-auto-tls must be provided for peer urls with HTTPS scheme"
                .to_string(),
        );
    }
    Ok(())
}

fn log_level(f: &Flags) -> Result<String, String> {
    let log_level = f.log_level.clone().unwrap_or_else(|| "info".to_string());
    if !["debug", "info", "warn", "error", "panic", "fatal"].contains(&log_level.as_str()) {
        return Err(format!("unknown log level {log_level:?}"));
    }
    Ok(log_level)
}

/// The log lines' format. etcd 3.4 takes `--logger=capnslog` (its default: text) or `zap`
/// (JSON); 3.5 made zap the default, and 3.6 added `--log-format` (`json`, the default, or
/// `console`). Cairn writes JSON when asked, by `--log-format=json` or by `--logger=zap`
/// without a format, and its readable text otherwise: it serves etcd 3.4's API, whose default
/// logger wrote text, and a person reading a terminal is its first reader. etcd's
/// test suites look for lines by their message, which is the same in both.
fn log_format(f: &Flags) -> Result<LogFormat, String> {
    let logger = f.logger.as_deref();
    if let Some(other) = logger.filter(|l| !["zap", "capnslog"].contains(l)) {
        return Err(format!("unknown logger option {other:?}"));
    }
    match (f.log_format.as_deref(), logger) {
        (Some("json"), Some("capnslog")) => {
            Err("--log-format=json needs --logger=zap: capnslog writes text".to_string())
        }
        (Some("json"), _) => Ok(LogFormat::Json),
        (Some("console"), _) => Ok(LogFormat::Text),
        (Some(other), _) => Err(format!(
            "unknown log format: {other}, supported values json, console"
        )),
        (None, Some("zap")) => Ok(LogFormat::Json),
        (None, _) => Ok(LogFormat::Text),
    }
}

/// etcd 3.4 and 3.7 take any other word for `basic`; Cairn refuses it, as a misspelt
/// `extensive` would otherwise go unnoticed.
fn metrics_level(f: &Flags) -> Result<MetricsLevel, String> {
    match f.metrics.as_deref().unwrap_or("basic") {
        "basic" => Ok(MetricsLevel::Basic),
        "extensive" => Ok(MetricsLevel::Extensive),
        other => Err(format!(
            "invalid value {other:?} for flag -metrics: valid values are \"basic\", \"extensive\""
        )),
    }
}

// Here rather than in `cluster`, so that `cluster` needs nothing from `config`.
impl Identity {
    pub fn from_config(config: &Config) -> Identity {
        Identity::bootstrap(
            &config.name,
            &config.initial_cluster,
            &config.initial_cluster_token,
            &config.advertise_client_urls,
        )
    }
}

/// The shortest periodic retention: the compactor samples every tenth of it.
const MIN_PERIODIC_RETENTION: Duration = Duration::from_nanos(10);

/// etcd's periodic retention: a bare integer is hours, otherwise a Go duration ("30m").
fn parse_retention_period(s: &str) -> Result<Duration, String> {
    if let Ok(hours) = s.parse::<u64>() {
        return Ok(Duration::from_secs(hours * 3600));
    }
    parse_go_duration(s).ok_or_else(|| format!("invalid auto-compaction-retention {s:?}"))
}

/// A Go duration such as "1h30m", "2.5s" or "100ms" (non-negative), as etcd's flags and
/// options (`--auth-token`'s `ttl=`) take them.
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    const UNITS: [(&str, f64); 7] = [
        ("ns", 1e-9),
        ("us", 1e-6),
        ("µs", 1e-6),
        ("ms", 1e-3),
        ("s", 1.0),
        ("m", 60.0),
        ("h", 3600.0),
    ];
    let mut rest = s;
    let mut seconds = 0.0;
    if rest == "0" {
        // Go's one unitless duration.
        return Some(Duration::ZERO);
    }
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        // Longest unit first, so "ms" is not read as "m".
        let (unit, scale) = UNITS
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())?;
        seconds += number * scale;
        rest = &rest[unit.len()..];
    }
    // Out of range (Go refuses what overflows its int64 nanoseconds too): None, not a panic.
    Duration::try_from_secs_f64(seconds).ok()
}

/// Parses a comma-separated URL list as etcd does: http(s) scheme (for peer URLs also
/// unix(s)), host and port required.
pub fn parse_urls(flag: &str, list: &str) -> Result<Vec<Url>, String> {
    let schemes: &[&str] = if flag.contains("peer") || flag == "initial-cluster" {
        &["http", "https", "unix", "unixs"]
    } else {
        &["http", "https"]
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            let url = Url::parse(s).map_err(|e| format!("--{flag}: invalid URL {s:?}: {e}"))?;
            if !schemes.contains(&url.scheme()) {
                return Err(format!(
                    "--{flag}: URL scheme must be one of {}: {s}",
                    schemes.join(", ")
                ));
            }
            if url.host_str().is_none() || url.port().is_none() {
                return Err(format!(
                    "--{flag}: URL address does not have the form \"host:port\": {s}"
                ));
            }
            Ok(url)
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|urls| {
            if urls.is_empty() {
                Err(format!("--{flag}: no URLs given"))
            } else {
                Ok(urls)
            }
        })
}

/// Parses `name=url,name=url2,other=url3`; a name may appear more than once.
pub fn parse_initial_cluster(spec: &str) -> Result<Vec<(String, Vec<Url>)>, String> {
    let mut members: Vec<(String, Vec<Url>)> = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, url) = part
            .split_once('=')
            .ok_or_else(|| format!("--initial-cluster: expected name=url, got {part:?}"))?;
        let url = parse_urls("initial-cluster", url)?.remove(0);
        match members.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url),
            None => members.push((name.to_string(), vec![url])),
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let mut argv = vec!["cairn"];
        argv.extend_from_slice(args);
        Config::from_flags(Flags::try_parse_from(argv).map_err(|e| e.to_string())?)
    }

    #[test]
    fn defaults_follow_etcd() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.etcd"));
        assert_eq!(c.listen_client_urls[0].as_str(), "http://localhost:2379/");
        assert_eq!(c.initial_cluster[0].0, "default");
        assert_eq!(c.max_request_bytes, 1_572_864);
        assert_eq!(c.max_txn_ops, 128);
    }

    #[test]
    fn name_sets_data_dir_and_single_member_cluster() {
        let c = parse(&["--name", "infra0"]).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("infra0.etcd"));
        assert_eq!(c.initial_cluster.len(), 1);
        assert_eq!(c.initial_cluster[0].0, "infra0");
    }

    #[test]
    fn initial_cluster_must_name_this_member() {
        let err = parse(&[
            "--name",
            "a",
            "--initial-cluster",
            "b=http://127.0.0.1:2380",
        ])
        .unwrap_err();
        assert!(err.contains("couldn't find local name"), "{err}");
    }

    #[test]
    fn go_style_bool_flags() {
        let c = parse(&["--enable-v2", "--strict-reconfig-check=false"]).unwrap();
        assert_eq!(c.ignored.len(), 2, "{:?}", c.ignored);
        let c = parse(&["--enable-v2=false"]).unwrap();
        assert!(c.ignored.is_empty());
        assert!(parse(&["--enable-v2=maybe"]).is_err());
    }

    #[test]
    fn tls_flags_follow_etcd() {
        let c = parse(&[
            "--cert-file",
            "a.crt",
            "--key-file",
            "a.key",
            "--client-cert-auth",
        ])
        .unwrap();
        assert_eq!(c.client_tls.cert_file, Some(PathBuf::from("a.crt")));
        assert!(c.client_tls.client_cert_auth);
        let c = parse(&["--peer-auto-tls", "--peer-trusted-ca-file", "ca.crt"]).unwrap();
        assert!(c.peer_tls.auto_tls);
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
        // An https URL needs something to serve TLS with (etcd's message).
        let err = parse(&["--listen-client-urls", "https://127.0.0.1:2379"]).unwrap_err();
        assert!(
            err.contains("TLS key/cert (--cert-file, --key-file) must be provided"),
            "{err}"
        );
        assert!(parse(&[
            "--listen-client-urls",
            "https://127.0.0.1:2379",
            "--auto-tls"
        ])
        .is_ok());
        // Restrictions not built yet are refused, not ignored: ignoring them would weaken
        // what the user asked for.
        assert!(parse(&["--cipher-suites", "TLS_AES_128_GCM_SHA256"]).is_err());
        assert!(parse(&[
            "--cipher-suites",
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,BOGUS"
        ])
        .is_err());
        let ok = parse(&["--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]).unwrap();
        assert_eq!(
            ok.client_tls.cipher_suites,
            ["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
        );
        let c = parse(&["--peer-cert-allowed-cn", "peer"]).unwrap();
        assert_eq!(
            c.peer_tls.allowed,
            Some(AllowedPeer::CommonName("peer".into()))
        );
        let err = parse(&[
            "--peer-cert-allowed-cn",
            "a",
            "--peer-cert-allowed-hostname",
            "b",
        ])
        .unwrap_err();
        assert!(err.contains("mutually exclusive"), "{err}");
        assert!(parse(&["--listen-peer-urls", "unixs://a:1"]).is_err());
    }

    #[test]
    fn config_file_transport_security() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "listen-client-urls: https://127.0.0.1:2379\nclient-transport-security:\n  cert-file: s.crt\n  key-file: s.key\n  trusted-ca-file: ca.crt\npeer-transport-security:\n  auto-tls: true\n",
        )
        .unwrap();
        let c = parse(&["--config-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.client_tls.trusted_ca_file, Some(PathBuf::from("ca.crt")));
        assert!(c.peer_tls.auto_tls);
    }

    #[test]
    fn repeated_flag_takes_last_value() {
        let c = parse(&[
            "--client-cert-auth",
            "--client-cert-auth",
            "--name",
            "a",
            "--name",
            "b",
        ])
        .unwrap();
        assert!(c.client_tls.client_cert_auth);
        assert_eq!(c.name, "b");
    }

    #[test]
    fn feature_gates_from_the_flag_and_the_config_file() {
        // What etcd 3.7's e2e suite passes to every member.
        let c = parse(&["--feature-gates=InitialCorruptCheck=true"]).unwrap();
        assert_eq!(c.ignored.len(), 1, "{:?}", c.ignored);
        assert!(c.ignored[0].starts_with("--feature-gates InitialCorruptCheck=true: "));
        assert!(parse(&["--feature-gates", "LeaseCheckpoint=true"]).is_err());
        assert!(parse(&["--feature-gates", "NoSuchGate=true"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("etcd.yml");
        std::fs::write(&path, "feature-gates: LeaseCheckpoint=true\n").unwrap();
        let err = parse(&["--config-file", path.to_str().unwrap()]).unwrap_err();
        assert!(
            err.contains("LeaseCheckpoint=true is not supported"),
            "{err}"
        );
    }

    #[test]
    fn distributed_tracing_under_both_of_etcds_names() {
        let tracing = |args: &[&str]| parse(args).map(|c| c.distributed_tracing);
        assert_eq!(tracing(&[]), Ok(None));
        let defaults = Some(TracingSettings {
            address: "localhost:4317".into(),
            service_name: "etcd".into(),
            instance_id: String::new(),
            sampling_rate_per_million: 0,
        });
        assert_eq!(
            tracing(&["--enable-distributed-tracing"]),
            Ok(defaults.clone())
        );
        assert_eq!(
            tracing(&["--experimental-enable-distributed-tracing=true"]),
            Ok(defaults)
        );
        let c = parse(&[
            "--experimental-enable-distributed-tracing",
            "--experimental-distributed-tracing-address=collector:4317",
            "--distributed-tracing-service-name=kv",
            "--experimental-distributed-tracing-instance-id=m1",
            "--experimental-distributed-tracing-sampling-rate=1000000",
        ])
        .unwrap();
        assert_eq!(
            c.distributed_tracing,
            Some(TracingSettings {
                address: "collector:4317".into(),
                service_name: "kv".into(),
                instance_id: "m1".into(),
                sampling_rate_per_million: 1_000_000,
            })
        );
        assert!(c.ignored.is_empty(), "{:?}", c.ignored);
    }

    #[test]
    fn distributed_tracing_settings_are_checked_as_etcd_checks_them() {
        let err = parse(&[
            "--enable-distributed-tracing",
            "--distributed-tracing-sampling-rate=-1",
        ])
        .unwrap_err();
        assert_eq!(
            err,
            "distributed tracing configurition is not valid: (tracing sampling rate must be positive)"
        );
        let err = parse(&[
            "--enable-distributed-tracing",
            "--distributed-tracing-sampling-rate",
            "1000001",
        ])
        .unwrap_err();
        assert_eq!(
            err,
            "distributed tracing configurition is not valid: (tracing sampling rate must be less than 1000000)"
        );
        assert!(parse(&["--enable-distributed-tracing=maybe"]).is_err());
        assert!(parse(&["--distributed-tracing-sampling-rate", "many"]).is_err());
        // Off: etcd checks nothing; Cairn reports what it does not act on.
        let c = parse(&["--distributed-tracing-sampling-rate=-1"]).unwrap();
        assert_eq!(c.distributed_tracing, None);
        assert_eq!(
            c.ignored,
            ["--distributed-tracing-sampling-rate: distributed tracing is off (--enable-distributed-tracing)"]
        );
    }

    #[test]
    fn logger_and_log_format_as_etcd_takes_them() {
        let format = |args: &[&str]| parse(args).map(|c| c.log_format);
        assert_eq!(format(&[]), Ok(LogFormat::Text));
        assert_eq!(format(&["--logger=capnslog"]), Ok(LogFormat::Text));
        // etcd 3.4 and 3.5: zap writes JSON.
        assert_eq!(format(&["--logger", "zap"]), Ok(LogFormat::Json));
        // etcd 3.6+.
        assert_eq!(format(&["--log-format=json"]), Ok(LogFormat::Json));
        assert_eq!(
            format(&["--logger=zap", "--log-format=console"]),
            Ok(LogFormat::Text)
        );
        assert_eq!(
            format(&["--logger=glog"]),
            Err("unknown logger option \"glog\"".to_string())
        );
        assert_eq!(
            format(&["--log-format=xml"]),
            Err("unknown log format: xml, supported values json, console".to_string())
        );
        assert!(format(&["--logger=capnslog", "--log-format=json"]).is_err());
        assert!(parse(&["--logger=zap"]).unwrap().ignored.is_empty());
    }

    #[test]
    fn unknown_flag_is_refused() {
        assert!(parse(&["--no-such-flag", "1"]).is_err());
    }

    #[test]
    fn election_timeout_must_cover_five_heartbeats() {
        assert!(parse(&["--heartbeat-interval", "100", "--election-timeout", "300"]).is_err());
    }

    #[test]
    fn config_file_replaces_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "name: yamlnode\nmax-txn-ops: 7\nauto-compaction-retention: 1\n",
        )
        .unwrap();
        let c = parse(&["--config-file", path.to_str().unwrap(), "--name", "ignored"]).unwrap();
        assert_eq!(c.name, "yamlnode");
        assert_eq!(c.max_txn_ops, 7);
        assert_eq!(
            c.auto_compaction,
            AutoCompaction::Periodic(Duration::from_secs(3600))
        );
    }

    #[test]
    fn metrics_level_from_the_flag_and_the_file() {
        assert_eq!(parse(&[]).unwrap().metrics, MetricsLevel::Basic);
        let level = |args: &[&str]| parse(args).map(|c| c.metrics);
        assert_eq!(level(&["--metrics", "basic"]), Ok(MetricsLevel::Basic));
        assert_eq!(level(&["--metrics=extensive"]), Ok(MetricsLevel::Extensive));
        assert_eq!(
            level(&["--metrics", "Extensive"]),
            Err(
                "invalid value \"Extensive\" for flag -metrics: valid values are \"basic\", \"extensive\""
                    .to_string()
            )
        );
        let flags = Flags {
            metrics: Some("extensive".into()),
            ..Flags::default()
        };
        assert_eq!(
            Config::from_flags(flags).unwrap().metrics,
            MetricsLevel::Extensive
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "metrics: extensive\n").unwrap();
        let c = parse(&["--config-file", path.to_str().unwrap()]).unwrap();
        assert_eq!(c.metrics, MetricsLevel::Extensive);
        std::fs::write(&path, "metrics: all\n").unwrap();
        let err = parse(&["--config-file", path.to_str().unwrap()]).unwrap_err();
        assert!(err.contains("-metrics"), "{err}");
    }

    #[test]
    fn listen_metrics_urls_from_the_flag_and_the_file() {
        let metrics_urls = |args: &[&str]| {
            parse(args).map(|c| {
                c.listen_metrics_urls
                    .iter()
                    .map(|u| u.to_string())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(metrics_urls(&[]), Ok(vec![]));
        assert_eq!(
            metrics_urls(&[
                "--listen-metrics-urls",
                "http://127.0.0.1:2381,http://10.0.0.1:2381"
            ]),
            Ok(vec![
                "http://127.0.0.1:2381/".to_string(),
                "http://10.0.0.1:2381/".to_string()
            ])
        );
        // etcd 3.7's refusal: https needs the client port's certificate.
        assert_eq!(
            metrics_urls(&["--listen-metrics-urls", "https://127.0.0.1:2381"]),
            Err(
                "client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url"
                    .to_string()
            )
        );
        assert!(metrics_urls(&[
            "--listen-metrics-urls",
            "https://127.0.0.1:2381",
            "--auto-tls"
        ])
        .is_ok());
        let err = metrics_urls(&["--listen-metrics-urls", "ftp://127.0.0.1:2381"]).unwrap_err();
        assert!(err.contains("--listen-metrics-urls"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "listen-metrics-urls: http://127.0.0.1:2381\n").unwrap();
        assert_eq!(
            metrics_urls(&["--config-file", path.to_str().unwrap()]),
            Ok(vec!["http://127.0.0.1:2381/".to_string()])
        );
    }

    #[test]
    fn snapshot_catchup_entries_under_both_of_etcds_names() {
        let catchup = |args: &[&str]| parse(args).map(|c| c.snapshot_catchup_entries);
        assert_eq!(catchup(&[]), Ok(5000));
        assert_eq!(catchup(&["--snapshot-catchup-entries", "7"]), Ok(7));
        assert_eq!(
            catchup(&["--experimental-snapshot-catchup-entries", "8"]),
            Ok(8)
        );
    }

    #[test]
    fn compaction_pace_under_both_of_etcds_names_with_zero_the_default() {
        let pace = |args: &[&str]| {
            parse(args).map(|c| (c.compaction_pace.batch_limit, c.compaction_pace.sleep))
        };
        let ms = Duration::from_millis;
        assert_eq!(pace(&[]), Ok((1_000, ms(10))));
        assert_eq!(
            pace(&["--compaction-batch-limit", "100"]),
            Ok((100, ms(10)))
        );
        assert_eq!(
            pace(&["--experimental-compaction-batch-limit", "0"]),
            Ok((1_000, ms(10)))
        );
        assert_eq!(
            pace(&["--experimental-compaction-sleep-interval", "1s"]),
            Ok((1_000, ms(1_000)))
        );
        assert_eq!(
            pace(&["--compaction-sleep-interval", "0"]),
            Ok((1_000, ms(10)))
        );
        assert_eq!(
            pace(&["--compaction-sleep-interval", "soon"]),
            Err("invalid value \"soon\" for flag -compaction-sleep-interval".to_string())
        );
        assert!(pace(&["--compaction-batch-limit", "-1"]).is_err());
        assert!(pace(&["--compaction-sleep-interval", "9999999999999999999999h"]).is_err());
    }

    #[test]
    fn watch_progress_notify_interval_under_both_of_etcds_names() {
        let interval = |args: &[&str]| parse(args).map(|c| c.watch_progress_interval);
        assert_eq!(interval(&[]), Ok(Duration::from_secs(600)));
        assert_eq!(
            interval(&["--experimental-watch-progress-notify-interval", "100ms"]),
            Ok(Duration::from_millis(100))
        );
        assert_eq!(
            interval(&["--watch-progress-notify-interval", "2s"]),
            Ok(Duration::from_secs(2))
        );
    }

    #[test]
    fn auto_compaction_retention_as_etcd_reads_it() {
        let periodic =
            |r: &str| parse(&["--auto-compaction-retention", r]).map(|c| c.auto_compaction);
        assert_eq!(periodic("0"), Ok(AutoCompaction::Disabled));
        assert_eq!(
            periodic("2"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(7200)))
        );
        assert_eq!(
            periodic("1h30m"),
            Ok(AutoCompaction::Periodic(Duration::from_secs(5400)))
        );
        assert_eq!(
            periodic("250ms"),
            Ok(AutoCompaction::Periodic(Duration::from_millis(250)))
        );
        assert!(periodic("soon").is_err());
        // Shorter than ten samples of a nanosecond: refused, not a compactor that panics.
        assert!(periodic("9ns").is_err());
        assert_eq!(
            periodic("10ns"),
            Ok(AutoCompaction::Periodic(Duration::from_nanos(10)))
        );
        let revision = parse(&[
            "--auto-compaction-mode",
            "revision",
            "--auto-compaction-retention",
            "1000",
        ])
        .unwrap();
        assert_eq!(revision.auto_compaction, AutoCompaction::Revision(1000));
        assert!(parse(&["--auto-compaction-mode", "hourly"]).is_err());
    }
}
