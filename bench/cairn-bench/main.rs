//! cairn-bench: a load generator for etcd's v3 gRPC API (Cairn or etcd itself), modelled on
//! etcd's `tools/benchmark`.
//!
//! ```text
//! cairn-bench --endpoints 127.0.0.1:2379 --conns 10 --clients 100 --total 20000 \
//!     put --key-size 8 --val-size 256 --key-space-size 100000
//! cairn-bench --clients 100 range KEY --consistency s
//! ```
//!
//! Every workload hands out request numbers `0..total` to `--clients` workers (paced by
//! `--rate`), which share `--conns` gRPC connections round-robin. Latencies of successful
//! requests go into an HDR histogram; failed or timed-out requests are counted, never fatal.
//! Unary workloads (put, range, txn-put) call through `Unary`, a lean gRPC client on the h2
//! crate; streaming ones (watch, lease keep-alive) through tonic. With `--pid`, the server's
//! RSS and its CPU time per request are reported too. With `--user NAME:PASSWORD`, it
//! authenticates once per endpoint and sends that endpoint's token with every request.
//! With `--latency-log FILE`, every timed request is also written to FILE, one line each,
//! so that latency can be read per second, or over any window (bench/defrag does).
//! SIGINT (Ctrl-C) ends a run early: no new requests, those in flight finish, and the report
//! covers what ran; a second SIGINT quits at once.

use std::collections::HashMap;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{BufMut, Bytes, BytesMut};
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

mod otlp_sink;

use cairn::proto::etcdserverpb::{
    kv_client::KvClient, lease_client::LeaseClient, maintenance_client::MaintenanceClient,
    request_op, watch_client::WatchClient, watch_request, AuthenticateRequest,
    AuthenticateResponse, LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse,
    LeaseRevokeRequest, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    StatusRequest, StatusResponse, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest,
    WatchResponse,
};

/// The load generator shares the machine with the server it measures: every cycle it saves
/// is one the server can use, whichever server it is. jemalloc, as the server (Cargo.toml).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// Limits, so that a typo cannot exhaust the machine.
const MAX_CLIENTS: usize = 10_000;
const MAX_CONNS: usize = 1_000;
const MAX_TOTAL: u64 = 100_000_000;
const MAX_KEY_SIZE: usize = 64 * 1024;
const MAX_VAL_SIZE: usize = 16 * 1024 * 1024;
const MAX_TXN_OPS: usize = 1_024;
const MAX_WATCHERS: usize = 10_000;
const MAX_EVENTS: u64 = 100_000_000; // watchers × puts
const MAX_TIMEOUT_SECS: u64 = 600;
const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;
const MAX_ERROR_SAMPLES: usize = 8;
const SETUP_CONCURRENCY: usize = 100; // concurrent lease grants / watch creations
const LEASE_TTL_SECS: i64 = 60;
const MAX_PREFIX_WATCHERS: u64 = 1_000_000;
/// Prefix watches per watch stream (Cairn holds at most 10,000 on one stream).
const PREFIX_WATCHES_PER_STREAM: u64 = 10_000;

#[derive(Parser, Debug)]
#[command(
    name = "cairn-bench",
    version,
    about = "Load generator for etcd's v3 gRPC API"
)]
struct Cli {
    /// gRPC endpoints, comma-separated (host:port or http://host:port).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// Number of gRPC connections (spread over the endpoints round-robin).
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Number of concurrent workers; they share the connections round-robin.
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Total number of requests.
    #[arg(long, global = true, default_value_t = 10_000)]
    total: u64,
    /// Cap on requests per second (0 = none).
    #[arg(long, global = true, default_value_t = 0)]
    rate: u64,
    /// Server process id: report its RSS (VmRSS) before and after the run.
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// Print the result as one JSON line.
    #[arg(long, global = true)]
    json: bool,
    /// Before the run, open this many prefix watches, on distinct prefixes that no request
    /// of the workload touches, and keep them open during it: what matching every change
    /// against many range watchers costs the server's write path.
    #[arg(long, global = true, default_value_t = 0)]
    prefix_watchers: u64,
    /// Per-request timeout in seconds; a timed-out request counts as an error.
    #[arg(long, global = true, default_value_t = 10)]
    timeout: u64,
    /// CA certificate file for https endpoints (etcd's benchmark flag name).
    #[arg(long, global = true)]
    cacert: Option<std::path::PathBuf>,
    /// Client certificate file, for servers that require one.
    #[arg(
        long = "cert",
        id = "client_cert",
        global = true,
        requires = "client_key"
    )]
    client_cert: Option<std::path::PathBuf>,
    /// Client key file. (Its own id: subcommands have a `key` argument.)
    #[arg(
        long = "key",
        id = "client_key",
        global = true,
        requires = "client_cert"
    )]
    client_key: Option<std::path::PathBuf>,
    /// Authenticate as NAME with PASSWORD (once per endpoint) and send the token with every
    /// request, for servers with auth enabled (etcd's benchmark flag; no prompt here).
    #[arg(long, global = true, value_name = "NAME:PASSWORD")]
    user: Option<String>,
    /// Write every timed request to FILE after the run, one line each, in order of
    /// completion: its completion time (µs since the Unix epoch), its latency (µs) and 1 if
    /// it succeeded, 0 if it failed. Held in memory until then (16 bytes a request).
    #[arg(long, global = true, value_name = "FILE")]
    latency_log: Option<std::path::PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Put random (or sequential) keys.
    Put {
        #[command(flatten)]
        keys: KeyArgs,
        /// Use keys 0, 1, 2, ... (modulo the key space) instead of random ones.
        #[arg(long)]
        sequential_keys: bool,
    },
    /// Range over KEY, or [KEY, END).
    Range {
        key: String,
        end: Option<String>,
        /// l = linearizable, s = serializable.
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
    },
    /// Txns of --txn-ops puts each, on sequential keys.
    TxnPut {
        #[command(flatten)]
        keys: KeyArgs,
        /// Puts per txn.
        #[arg(long, default_value_t = 1)]
        txn_ops: usize,
    },
    /// N watchers on one key; --clients workers put to it. Reports events delivered per second.
    Watch {
        #[command(flatten)]
        watch: WatchArgs,
    },
    /// Latency from put acknowledgement to event receipt, per watcher, at a fixed put rate.
    WatchLatency {
        #[command(flatten)]
        watch: WatchArgs,
        #[arg(long, default_value_t = 200)]
        put_rate: u64,
    },
    /// Grant one lease per client, then time keep-alive round trips.
    LeaseKeepalive,
    /// Not a workload: an OTLP/gRPC collector that drops what it is sent, for measuring
    /// what a server's tracing costs (bench/compare --tracing). Runs until SIGTERM.
    OtlpSink {
        #[arg(long, default_value = "127.0.0.1:4317")]
        listen: std::net::SocketAddr,
    },
}

#[derive(Args, Debug)]
struct KeyArgs {
    /// Key size in bytes: the key number as a Go varint, zero-padded.
    #[arg(long, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 1)]
    key_space_size: u64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Consistency {
    L,
    S,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq)]
enum Since {
    Ack,
    Send,
}

/// Options `watch` and `watch-latency` share.
#[derive(Args, Debug)]
struct WatchArgs {
    #[arg(long, default_value_t = 100)]
    watchers: usize,
    #[arg(long, default_value_t = 1_000)]
    puts: u64,
    #[arg(long, default_value_t = 8)]
    val_size: usize,
    /// Event latency runs from the put's acknowledgement, or from sending it (as etcd's).
    #[arg(long, value_enum, default_value = "ack")]
    since: Since,
}

impl WatchArgs {
    fn spec(self, putters: usize, rate: u64) -> WatchSpec {
        WatchSpec {
            watchers: self.watchers,
            puts: self.puts,
            putters,
            rate,
            val_size: self.val_size,
            since: self.since,
        }
    }
}

/// `watch` and `watch-latency`: `watchers` watchers on one key, `puts` puts to it by `putters`
/// workers paced at `rate`.
struct WatchSpec {
    watchers: usize,
    puts: u64,
    putters: usize,
    rate: u64,
    val_size: usize,
    since: Since,
}

/// The options every workload uses.
struct Global {
    /// tonic channels, for the streaming workloads (watch, lease keep-alive).
    chans: Vec<Chan>,
    /// h2 connections, for the unary workloads (put, range, txn-put).
    unary: Vec<Unary>,
    clients: usize,
    total: u64,
    rate: u64,
    timeout: Duration,
}

/// What a workload measured.
struct Outcome {
    stats: Stats,
    elapsed: Duration,
    /// Workload-specific counts.
    notes: Vec<(&'static str, u64)>,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    if let Cmd::OtlpSink { listen } = cli.cmd {
        return otlp_sink::run(listen).await;
    }
    check("--clients", cli.clients as u64, 1, MAX_CLIENTS as u64)?;
    check("--conns", cli.conns as u64, 1, MAX_CONNS as u64)?;
    check("--total", cli.total, 1, MAX_TOTAL)?;
    check("--timeout", cli.timeout, 1, MAX_TIMEOUT_SECS)?;
    check(
        "--prefix-watchers",
        cli.prefix_watchers,
        0,
        MAX_PREFIX_WATCHERS,
    )?;
    if cli.endpoints.is_empty() {
        bail!("--endpoints is empty");
    }
    check_cmd(&cli.cmd)?;
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            STOP.store(true, Ordering::Relaxed);
            eprintln!("cairn-bench: interrupted: finishing the requests in flight (again to quit)");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    if let Some(path) = &cli.latency_log {
        // Fail now rather than after the run.
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
        LATENCY_LOG.store(true, Ordering::Relaxed);
    }
    let timeout = Duration::from_secs(cli.timeout);
    let tls = match &cli.cacert {
        Some(ca) => Some(cairn::net::tls::client_connector(
            ca,
            cli.client_cert.as_deref().zip(cli.client_key.as_deref()),
        )?),
        None => None,
    };
    // With --user, one token per endpoint: a simple token is known only to the members that
    // applied its Authenticate, which the member answering has by the time it answers.
    let tokens = match &cli.user {
        Some(user) => authenticate(&cli.endpoints, user, timeout, tls.clone()).await?,
        None => Vec::new(),
    };
    // Each workload connects --conns times, through the client it uses.
    let unary_workload = matches!(
        cli.cmd,
        Cmd::Put { .. } | Cmd::Range { .. } | Cmd::TxnPut { .. }
    );
    let (chans, unary) = if unary_workload {
        (
            vec![],
            Unary::connect_all(&cli.endpoints, &tokens, cli.conns, timeout, tls.clone()).await?,
        )
    } else {
        (
            connect(&cli.endpoints, &tokens, cli.conns, timeout, tls.clone()).await?,
            vec![],
        )
    };
    let version = match (chans.first(), unary.first()) {
        (Some(ch), _) => server_version(ch, timeout).await,
        (None, Some(u)) => with_timeout(
            timeout,
            u.call::<_, StatusResponse>(MAINTENANCE_STATUS, &StatusRequest {}),
        )
        .await
        .ok()
        .map(|s| s.version)
        .filter(|v| !v.is_empty()),
        (None, None) => None,
    };
    // Untimed setup; the streams stay open until the process ends.
    let _prefix_watchers = if cli.prefix_watchers > 0 {
        let ch = connect(&cli.endpoints, &tokens, 1, timeout, tls.clone()).await?;
        open_prefix_watchers(ch[0].clone(), cli.prefix_watchers)
            .await
            .map_err(|e| anyhow::anyhow!("opening prefix watchers: {e}"))?
    } else {
        Vec::new()
    };
    let rss_before = cli.pid.map(rss_kb).transpose()?;
    let cpu_before = cli.pid.map(cpu_seconds).transpose()?;
    let g = Global {
        chans,
        unary,
        clients: cli.clients,
        total: cli.total,
        rate: cli.rate,
        timeout,
    };
    let summary = cli_summary(&cli);

    let (name, out) = match cli.cmd {
        Cmd::Put {
            keys,
            sequential_keys,
        } => ("put", put(&g, &keys, sequential_keys).await),
        Cmd::Range {
            key,
            end,
            consistency,
        } => ("range", range(&g, key, end, consistency).await),
        Cmd::TxnPut { keys, txn_ops } => ("txn-put", txn_put(&g, &keys, txn_ops).await),
        Cmd::Watch { watch } => {
            let spec = watch.spec(g.clients, g.rate);
            ("watch", watch_events(&g, spec).await)
        }
        Cmd::WatchLatency { watch, put_rate } => (
            "watch-latency",
            watch_events(&g, watch.spec(1, put_rate)).await,
        ),
        Cmd::LeaseKeepalive => ("lease-keepalive", lease_keepalive(&g).await),
        Cmd::OtlpSink { .. } => unreachable!("the sink returned from run() before any workload"),
    };
    let rss_after = cli.pid.and_then(|p| rss_kb(p).ok());
    let server_cpu_s = cli
        .pid
        .and_then(|p| cpu_seconds(p).ok())
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    if let Some(path) = &cli.latency_log {
        write_latency_log(path, &out.stats.log)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let r = Report {
        name,
        cli: &summary,
        version,
        out,
        rss_before,
        rss_after,
        server_cpu_s,
    };
    if cli.json {
        println!("{}", r.json());
    } else {
        print!("{}", r.text());
    }
    Ok(())
}

/// Checks the workload's arguments before anything connects.
fn check_cmd(cmd: &Cmd) -> Result<()> {
    let check_watch = |w: &WatchArgs| {
        check("--watchers", w.watchers as u64, 1, MAX_WATCHERS as u64)?;
        check("--puts", w.puts, 1, MAX_TOTAL)?;
        check("--val-size", w.val_size as u64, 0, MAX_VAL_SIZE as u64)?;
        if w.watchers as u64 * w.puts > MAX_EVENTS {
            bail!("--watchers × --puts must be at most {MAX_EVENTS}");
        }
        Ok(())
    };
    match cmd {
        Cmd::Put { keys, .. } => keys.validate(1),
        Cmd::TxnPut { keys, txn_ops } => {
            check("--txn-ops", *txn_ops as u64, 1, MAX_TXN_OPS as u64)?;
            keys.validate(*txn_ops as u64) // keys within one txn must differ
        }
        Cmd::Watch { watch } => check_watch(watch),
        Cmd::WatchLatency { watch, put_rate } => {
            check("--put-rate", *put_rate, 1, u64::MAX)?;
            check_watch(watch)
        }
        Cmd::Range { .. } | Cmd::LeaseKeepalive | Cmd::OtlpSink { .. } => Ok(()),
    }
}

fn check(name: &str, v: u64, min: u64, max: u64) -> Result<()> {
    if v < min || v > max {
        bail!("{name} must be in {min}..={max}, got {v}");
    }
    Ok(())
}

fn cli_summary(cli: &Cli) -> String {
    let clients = match cli.cmd {
        Cmd::WatchLatency { .. } => 1, // one putter
        _ => cli.clients,
    };
    let watchers = match cli.prefix_watchers {
        0 => String::new(),
        n => format!(", {n} prefix watchers open"),
    };
    format!(
        "{} clients over {} connections to {}{watchers}",
        clients,
        cli.conns,
        cli.endpoints.join(",")
    )
}

// ---------------------------------------------------------------------------------------------
// Workloads

async fn put(g: &Global, k: &KeyArgs, sequential: bool) -> Outcome {
    let (size, space) = (k.key_size, k.key_space_size);
    let val: Arc<[u8]> = random_value(k.val_size).into();
    run_requests(g, move |conn, i, rng| {
        let n = if sequential {
            i % space
        } else {
            rng.below(space)
        };
        let req = PutRequest {
            key: make_key(n, size),
            value: val.to_vec(),
            ..Default::default()
        };
        async move { conn.call::<_, PutResponse>(KV_PUT, &req).await.map(drop) }
    })
    .await
}

async fn range(g: &Global, key: String, end: Option<String>, c: Consistency) -> Outcome {
    let req = RangeRequest {
        key: key.into_bytes(),
        range_end: end.map(String::into_bytes).unwrap_or_default(),
        serializable: c == Consistency::S,
        ..Default::default()
    };
    let req = Arc::new(req);
    run_requests(g, move |conn, _, _| {
        let req = req.clone();
        async move {
            conn.call::<_, RangeResponse>(KV_RANGE, &*req)
                .await
                .map(drop)
        }
    })
    .await
}

async fn txn_put(g: &Global, k: &KeyArgs, ops: usize) -> Outcome {
    let (size, space) = (k.key_size, k.key_space_size);
    let val: Arc<[u8]> = random_value(k.val_size).into();
    run_requests(g, move |conn, i, _| {
        let success = (0..ops as u64)
            .map(|j| RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: make_key((i * ops as u64 + j) % space, size),
                    value: val.to_vec(),
                    ..Default::default()
                })),
            })
            .collect();
        let req = TxnRequest {
            success,
            ..Default::default()
        };
        async move { conn.call::<_, TxnResponse>(KV_TXN, &req).await.map(drop) }
    })
    .await
}

async fn lease_keepalive(g: &Global) -> Outcome {
    // Setup, untimed: one lease per client.
    let to = g.timeout;
    let leases: Vec<Result<i64, String>> = futures::stream::iter(0..g.clients)
        .map(|w| {
            let mut lc = LeaseClient::new(g.chans[w % g.chans.len()].clone());
            async move {
                let r = lc.lease_grant(LeaseGrantRequest {
                    ttl: LEASE_TTL_SECS,
                    id: 0,
                });
                with_timeout(to, async { r.await.map_err(smsg) })
                    .await
                    .and_then(|r| {
                        let r = r.into_inner();
                        if r.error.is_empty() {
                            Ok(r.id)
                        } else {
                            Err(r.error)
                        }
                    })
            }
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;

    let pacer = Arc::new(Pacer::new(g.total, g.rate));
    let start = Instant::now();
    let handles: Vec<JoinHandle<Stats>> = leases
        .into_iter()
        .enumerate()
        .map(|(w, lease)| {
            let (pacer, ch) = (pacer.clone(), g.chans[w % g.chans.len()].clone());
            tokio::spawn(async move {
                let mut st = Stats::new();
                let mut lc = LeaseClient::new(ch);
                let mut stream = None; // opened on the first request, reopened after an error
                while pacer.next().await.is_some() {
                    let id = match &lease {
                        Ok(id) => *id,
                        Err(e) => {
                            st.err(format!("lease grant: {e}"));
                            continue;
                        }
                    };
                    let t = Instant::now();
                    let r = with_timeout(to, keepalive_once(&mut lc, id, &mut stream)).await;
                    if r.is_err() {
                        stream = None;
                    }
                    st.record(t, r);
                }
                if let Ok(id) = lease {
                    drop(stream);
                    let _ =
                        tokio::time::timeout(to, lc.lease_revoke(LeaseRevokeRequest { id })).await;
                }
                st
            })
        })
        .collect();
    let stats = join_stats(handles).await;
    Outcome {
        stats,
        elapsed: start.elapsed(),
        notes: vec![],
    }
}

type KeepAlive = (
    mpsc::Sender<LeaseKeepAliveRequest>,
    Streaming<LeaseKeepAliveResponse>,
);

async fn keepalive_once(
    lc: &mut LeaseClient<Chan>,
    id: i64,
    stream: &mut Option<KeepAlive>,
) -> Result<(), String> {
    let req = LeaseKeepAliveRequest { id };
    match stream {
        Some((tx, _)) => tx
            .send(req)
            .await
            .map_err(|_| "keep-alive stream closed".to_string())?,
        None => {
            // The first request is queued before the call: a server may send its response
            // headers only with the first response.
            let (tx, rx) = mpsc::channel(1);
            tx.send(req).await.expect("receiver is alive");
            let s = lc
                .lease_keep_alive(ReceiverStream::new(rx))
                .await
                .map_err(smsg)?;
            *stream = Some((tx, s.into_inner()));
        }
    }
    let (_, rx) = stream.as_mut().expect("stream was just set");
    match rx.message().await.map_err(smsg)? {
        Some(r) if r.ttl > 0 => Ok(()),
        Some(_) => Err("lease not found (keep-alive ttl 0)".into()),
        None => Err("keep-alive stream ended".into()),
    }
}

/// Each delivered event is one request; its latency runs from the acknowledgement (or the
/// sending) of its put to its receipt, 0 if the event came before the acknowledgement.
async fn watch_events(g: &Global, spec: WatchSpec) -> Outcome {
    let WatchSpec {
        watchers,
        puts,
        putters,
        rate,
        val_size,
        since,
    } = spec;
    let key = format!("cairn-bench/watch/{}", std::process::id()).into_bytes();
    let to = g.timeout;
    let mut stats = Stats::new();

    // Setup, untimed: create the watchers; each then collects (revision, receipt time).
    let (stop_tx, stop_rx) = watch::channel(false);
    let opened: Vec<Result<Streaming<WatchResponse>, String>> = futures::stream::iter(0..watchers)
        .map(|w| {
            let (ch, key) = (g.chans[w % g.chans.len()].clone(), key.clone());
            with_timeout(to, open_watcher(ch, key))
        })
        .buffered(SETUP_CONCURRENCY)
        .collect()
        .await;
    let mut tasks = Vec::new();
    for w in opened {
        match w {
            Ok(s) => tasks.push(tokio::spawn(collect_events(
                s,
                puts as usize,
                stop_rx.clone(),
            ))),
            Err(e) => stats.err(format!("watch create: {e}")),
        }
    }
    if tasks.is_empty() {
        return Outcome {
            stats,
            elapsed: Duration::ZERO,
            notes: vec![],
        };
    }

    // Timed: the puts, then the events.
    let start = Instant::now();
    let pacer = Arc::new(Pacer::new(puts, rate));
    let val: Arc<[u8]> = random_value(val_size).into();
    let put_tasks: Vec<JoinHandle<(Stats, Vec<(i64, Instant)>)>> = (0..putters)
        .map(|w| {
            let (pacer, val, key) = (pacer.clone(), val.clone(), key.clone());
            let mut c = kv(g.chans[w % g.chans.len()].clone());
            tokio::spawn(async move {
                let (mut st, mut acks) = (Stats::new(), Vec::new());
                while pacer.next().await.is_some() {
                    let req = PutRequest {
                        key: key.clone(),
                        value: val.to_vec(),
                        ..Default::default()
                    };
                    let t = Instant::now();
                    match with_timeout(to, async { c.put(req).await.map_err(smsg) }).await {
                        Ok(r) => {
                            let rev = r.into_inner().header.map_or(0, |h| h.revision);
                            let ack = Instant::now();
                            acks.push((rev, if since == Since::Ack { ack } else { t }));
                            st.ok(t.elapsed());
                        }
                        Err(e) => st.err(format!("put: {e}")),
                    }
                }
                (st, acks)
            })
        })
        .collect();
    let mut acks = HashMap::new();
    let mut puts_ok = 0u64;
    for t in put_tasks {
        let (st, a) = t.await.expect("put task panicked");
        puts_ok += st.ok;
        stats.errors += st.errors;
        for (m, n) in st.samples {
            add_sample(&mut stats.samples, m, n);
        }
        acks.extend(a);
    }
    // Give the watchers one timeout's grace after the last put, then stop them.
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(to).await;
        let _ = stop_tx.send(true);
    });
    let (mut last, mut early) = (start, 0u64);
    for t in tasks {
        let (events, err) = t.await.expect("watcher task panicked");
        for (rev, at) in &events {
            let Some(ack) = acks.get(rev) else { continue };
            if at < ack {
                early += 1;
            }
            stats.ok(at.saturating_duration_since(*ack));
            last = last.max(*at);
        }
        let missed = puts_ok.saturating_sub(events.len() as u64);
        if missed > 0 {
            stats.errors += missed;
            let why = err.unwrap_or_else(|| "stream ended".into());
            add_sample(
                &mut stats.samples,
                format!("event not received: {why}"),
                missed,
            );
        }
    }
    stopper.abort();
    let notes = vec![
        ("watchers", watchers as u64),
        ("puts", puts),
        ("puts_ok", puts_ok),
        ("early_events", early),
    ];
    Outcome {
        stats,
        elapsed: last - start,
        notes,
    }
}

async fn open_watcher(ch: Chan, key: Vec<u8>) -> Result<Streaming<WatchResponse>, String> {
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key,
                ..Default::default()
            },
        )),
    };
    // The request stream stays open (pending) for as long as the watcher lives.
    let reqs = futures::stream::iter([create]).chain(futures::stream::pending());
    let mut s = WatchClient::new(ch)
        .max_decoding_message_size(MAX_DECODE_BYTES)
        .watch(reqs)
        .await
        .map_err(smsg)?
        .into_inner();
    match s.message().await.map_err(smsg)? {
        Some(r) if r.created && !r.canceled => Ok(s),
        Some(r) => Err(format!("watch not created: {}", r.cancel_reason)),
        None => Err("watch stream ended".into()),
    }
}

/// Opens `n` prefix watches on distinct prefixes, `PREFIX_WATCHES_PER_STREAM` per stream, and
/// drains their streams in tasks of their own.
async fn open_prefix_watchers(
    ch: Chan,
    n: u64,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let mut drains = Vec::new();
    for first in (0..n).step_by(PREFIX_WATCHES_PER_STREAM as usize) {
        let last = (first + PREFIX_WATCHES_PER_STREAM).min(n);
        let creates: Vec<WatchRequest> = (first..last)
            .map(|i| {
                let key = format!("cairn-bench/prefix-watch/{i:07}/").into_bytes();
                let mut range_end = key.clone();
                *range_end.last_mut().expect("not empty") += 1;
                WatchRequest {
                    request_union: Some(watch_request::RequestUnion::CreateRequest(
                        WatchCreateRequest {
                            key,
                            range_end,
                            ..Default::default()
                        },
                    )),
                }
            })
            .collect();
        let reqs = futures::stream::iter(creates).chain(futures::stream::pending());
        let mut s = WatchClient::new(ch.clone())
            .max_decoding_message_size(MAX_DECODE_BYTES)
            .watch(reqs)
            .await
            .map_err(smsg)?
            .into_inner();
        for _ in first..last {
            match s.message().await.map_err(smsg)? {
                Some(r) if r.created && !r.canceled => {}
                Some(r) => return Err(format!("watch not created: {}", r.cancel_reason)),
                None => return Err("watch stream ended".into()),
            }
        }
        drains.push(tokio::spawn(async move {
            while let Ok(Some(_)) = s.message().await {}
        }));
    }
    Ok(drains)
}

/// Collects (mod_revision, receipt time) of events until `want` arrived or `stop` is set.
async fn collect_events(
    mut s: Streaming<WatchResponse>,
    want: usize,
    mut stop: watch::Receiver<bool>,
) -> (Vec<(i64, Instant)>, Option<String>) {
    let mut got = Vec::with_capacity(want.min(1 << 20));
    while got.len() < want {
        tokio::select! {
            m = s.message() => match m {
                Ok(Some(r)) if r.canceled => return (got, Some(format!("watch canceled: {}", r.cancel_reason))),
                Ok(Some(r)) => {
                    let now = Instant::now();
                    got.extend(r.events.iter().map(|e| (e.kv.as_ref().map_or(0, |kv| kv.mod_revision), now)));
                }
                Ok(None) => return (got, Some("watch stream ended".into())),
                Err(e) => return (got, Some(smsg(e))),
            },
            _ = stop.changed() => return (got, Some("timed out".into())),
        }
    }
    (got, None)
}

// ---------------------------------------------------------------------------------------------
// Running requests

/// Runs `total` requests on `clients` workers; `op(connection, request number, rng)` makes one.
async fn run_requests<F, Fut>(g: &Global, op: F) -> Outcome
where
    F: Fn(Unary, u64, &mut Rng) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let pacer = Arc::new(Pacer::new(g.total, g.rate));
    let start = Instant::now();
    let handles = (0..g.clients)
        .map(|w| {
            let (op, pacer, to) = (op.clone(), pacer.clone(), g.timeout);
            let conn = g.unary[w % g.unary.len()].clone();
            tokio::spawn(async move {
                let (mut st, mut rng) = (Stats::new(), Rng::new(w as u64));
                while let Some(i) = pacer.next().await {
                    let fut = op(conn.clone(), i, &mut rng);
                    let t = Instant::now();
                    st.record(t, with_timeout(to, fut).await);
                }
                st
            })
        })
        .collect();
    let stats = join_stats(handles).await;
    Outcome {
        stats,
        elapsed: start.elapsed(),
        notes: vec![],
    }
}

async fn join_stats(handles: Vec<JoinHandle<Stats>>) -> Stats {
    let mut all = Stats::new();
    for h in handles {
        all.merge(h.await.expect("worker panicked"));
    }
    all
}

/// Set by SIGINT: pacers hand out no more requests.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Hands out request numbers 0..total, no faster than `rate` per second (0 = unlimited), until
/// SIGINT.
struct Pacer {
    next: AtomicU64,
    total: u64,
    rate: u64,
    start: Instant,
}

impl Pacer {
    fn new(total: u64, rate: u64) -> Self {
        Pacer {
            next: AtomicU64::new(0),
            total,
            rate,
            start: Instant::now(),
        }
    }

    async fn next(&self) -> Option<u64> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if i >= self.total || STOP.load(Ordering::Relaxed) {
            return None;
        }
        if self.rate > 0 {
            let at = self.start + Duration::from_secs_f64(i as f64 / self.rate as f64);
            tokio::time::sleep_until(at.into()).await;
        }
        (!STOP.load(Ordering::Relaxed)).then_some(i)
    }
}

async fn with_timeout<T>(
    to: Duration,
    f: impl Future<Output = Result<T, String>>,
) -> Result<T, String> {
    tokio::time::timeout(to, f)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {to:?}")))
}

fn smsg(s: Status) -> String {
    format!("{:?}: {}", s.code(), s.message())
}

fn kv(ch: Chan) -> KvClient<Chan> {
    KvClient::new(ch).max_decoding_message_size(MAX_DECODE_BYTES)
}

/// Connection `i`'s endpoint (round-robin over `endpoints`), as given and as a URI.
fn nth_endpoint(endpoints: &[String], i: usize) -> (&str, String) {
    let ep = endpoints[i % endpoints.len()].trim();
    let uri = if ep.contains("://") {
        ep.to_string()
    } else {
        format!("http://{ep}")
    };
    (ep, uri)
}

/// A tonic channel whose requests carry the endpoint's auth token, if any.
type Chan = InterceptedService<Channel, Token>;

/// Adds `token: <token>` to a request's metadata, as etcd's clients do once authenticated.
#[derive(Clone)]
struct Token(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for Token {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(t) = &self.0 {
            r.metadata_mut().insert(TOKEN_HEADER, t.clone());
        }
        Ok(r)
    }
}

/// The metadata key etcd reads a client's token from.
const TOKEN_HEADER: &str = "token";

/// Connection `i`'s token: that of its endpoint (`tokens` is empty without --user).
fn nth_token(tokens: &[String], i: usize) -> Option<&str> {
    (!tokens.is_empty()).then(|| tokens[i % tokens.len()].as_str())
}

/// Authenticates as `user` ("NAME:PASSWORD") at every endpoint, each over a connection of its
/// own; returns the tokens, in endpoint order. A refusal is fatal, with the server's words.
async fn authenticate(
    endpoints: &[String],
    user: &str,
    to: Duration,
    tls: Option<cairn::net::tls::TlsConnector>,
) -> Result<Vec<String>> {
    let Some((name, password)) = user.split_once(':') else {
        bail!("--user wants NAME:PASSWORD");
    };
    let req = AuthenticateRequest {
        name: name.to_string(),
        password: password.to_string(),
    };
    let mut tokens = Vec::with_capacity(endpoints.len());
    for i in 0..endpoints.len() {
        let (ep, _) = nth_endpoint(endpoints, i);
        let conns = Unary::connect_all(&endpoints[i..=i], &[], 1, to, tls.clone()).await?;
        let r = with_timeout(
            to,
            conns[0].call::<_, AuthenticateResponse>(AUTH_AUTHENTICATE, &req),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("authenticating as {name} at {ep}"))?;
        if r.token.is_empty() || AsciiMetadataValue::try_from(r.token.as_str()).is_err() {
            bail!("authenticating as {name} at {ep}: the server sent no usable token");
        }
        tokens.push(r.token);
    }
    Ok(tokens)
}

async fn connect(
    endpoints: &[String],
    tokens: &[String],
    conns: usize,
    to: Duration,
    tls: Option<cairn::net::tls::TlsConnector>,
) -> Result<Vec<Chan>> {
    let mut chans = Vec::with_capacity(conns);
    for i in 0..conns {
        let (ep, uri) = nth_endpoint(endpoints, i);
        // As cairn::net::tls::channel, but connected now, so an unreachable server fails here
        // rather than in every request.
        let endpoint = |uri: String| {
            Endpoint::from_shared(uri)
                .with_context(|| format!("bad endpoint {ep:?}"))
                .map(|e| e.connect_timeout(to).tcp_nodelay(true))
        };
        let ch = match (uri.strip_prefix("https://"), &tls) {
            (Some(authority), Some(tls)) => {
                endpoint(format!("http://{authority}"))?
                    .connect_with_connector(tls.clone())
                    .await
            }
            (Some(_), None) => bail!("{uri}: an https endpoint needs --cacert"),
            // Requests that finish together leave in one write, as the server's replies.
            (None, _) => {
                endpoint(uri.clone())?
                    .connect_with_connector(tower::service_fn(|uri: http::Uri| async move {
                        let authority = uri.authority().map(|a| a.to_string()).unwrap_or_default();
                        tcp(&authority).await.map(hyper_util::rt::TokioIo::new)
                    }))
                    .await
            }
        }
        .with_context(|| format!("connecting to {uri}"))?;
        let token = nth_token(tokens, i).map(|t| t.try_into().expect("checked when received"));
        chans.push(InterceptedService::new(ch, Token(token)));
    }
    Ok(chans)
}

/// Unary gRPC calls over one HTTP/2 connection, through the h2 crate directly.
///
/// The load generator shares the machine with the server it measures, so every cycle it
/// spends is taken from the server under test, whichever that is, and narrows the gap
/// between servers. tonic's client spent more CPU per call than Cairn spends serving a put
/// (a hop through its buffer task, a task spawned per request body, a codec per call);
/// this sends the same HTTP/2 requests, framed as gRPC, for about half of that. The
/// streaming workloads (watch, lease keep-alive) keep tonic's client.
#[derive(Clone)]
struct Unary {
    send: h2::client::SendRequest<Bytes>,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The endpoint's auth token (--user), sent with every request.
    token: Option<http::HeaderValue>,
}

const KV_PUT: &str = "/etcdserverpb.KV/Put";
const KV_RANGE: &str = "/etcdserverpb.KV/Range";
const KV_TXN: &str = "/etcdserverpb.KV/Txn";
const MAINTENANCE_STATUS: &str = "/etcdserverpb.Maintenance/Status";
const AUTH_AUTHENTICATE: &str = "/etcdserverpb.Auth/Authenticate";
/// gRPC's message prefix: a compression flag and a big-endian length.
const GRPC_PREFIX_BYTES: usize = 5;

impl Unary {
    /// `conns` connections, spread over `endpoints` round-robin.
    async fn connect_all(
        endpoints: &[String],
        tokens: &[String],
        conns: usize,
        to: Duration,
        tls: Option<cairn::net::tls::TlsConnector>,
    ) -> Result<Vec<Unary>> {
        let mut all = Vec::with_capacity(conns);
        for i in 0..conns {
            let (ep, uri) = nth_endpoint(endpoints, i);
            let uri: http::Uri = uri
                .parse()
                .with_context(|| format!("bad endpoint {ep:?}"))?;
            let mut conn = tokio::time::timeout(to, Unary::connect(&uri, tls.clone()))
                .await
                .map_err(|_| anyhow::anyhow!("no connection within {to:?}"))
                .flatten()
                .with_context(|| format!("connecting to {uri}"))?;
            conn.token = nth_token(tokens, i)
                .map(|t| http::HeaderValue::from_str(t).expect("checked when received"));
            all.push(conn);
        }
        Ok(all)
    }

    async fn connect(uri: &http::Uri, tls: Option<cairn::net::tls::TlsConnector>) -> Result<Unary> {
        let authority = uri.authority().context("no host:port")?.clone();
        let (send, scheme) = match (uri.scheme_str(), tls) {
            (Some("https"), Some(mut tls)) => {
                use tower::Service;
                let io = tls.call(uri.clone()).await?.into_inner();
                (handshake(io).await?, http::uri::Scheme::HTTPS)
            }
            (Some("https"), None) => bail!("an https endpoint needs --cacert"),
            _ => (
                handshake(tcp(authority.as_str()).await?).await?,
                http::uri::Scheme::HTTP,
            ),
        };
        Ok(Unary {
            send,
            scheme,
            authority,
            token: None,
        })
    }

    /// Calls `path` with `request`; a failure reads as tonic's `Code: message`.
    async fn call<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        path: &'static str,
        request: &Req,
    ) -> Result<Resp, String> {
        let failed = |e: h2::Error| format!("{e}");
        let mut send = self.send.clone().ready().await.map_err(failed)?;
        let uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| e.to_string())?;
        let mut head = http::Request::post(uri)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(())
            .map_err(|e| e.to_string())?;
        if let Some(t) = &self.token {
            head.headers_mut().insert(TOKEN_HEADER, t.clone());
        }
        let (response, mut body) = send.send_request(head, false).map_err(failed)?;
        let len = request.encoded_len();
        let mut frame = BytesMut::with_capacity(GRPC_PREFIX_BYTES + len);
        frame.put_u8(0);
        frame.put_u32(u32::try_from(len).map_err(|_| "request too large".to_string())?);
        request
            .encode(&mut frame)
            .map_err(|e| format!("encoding: {e}"))?;
        body.send_data(frame.freeze(), true).map_err(failed)?;

        let (head, mut body) = response.await.map_err(failed)?.into_parts();
        if head.status != http::StatusCode::OK {
            return Err(format!("HTTP status {}", head.status));
        }
        // A call refused at once carries its status in the headers, with no body.
        if grpc_status(&head.headers)? {
            return Err("Unknown: a reply without a message".into());
        }
        let mut message = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(failed)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            message.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.map_err(failed)?.unwrap_or_default();
        if !grpc_status(&trailers)? {
            return Err("Unknown: no grpc-status in the trailers".into());
        }
        match message.get(..GRPC_PREFIX_BYTES) {
            Some([0, l @ ..])
                if message.len()
                    == GRPC_PREFIX_BYTES + u32::from_be_bytes(l.try_into().unwrap()) as usize =>
            {
                Resp::decode(&message[GRPC_PREFIX_BYTES..]).map_err(|e| format!("decoding: {e}"))
            }
            _ => Err("Unknown: a malformed reply message".into()),
        }
    }
}

/// A plaintext connection to `authority`. Requests that are ready together leave in one
/// write, as the server's replies do.
async fn tcp(
    authority: &str,
) -> std::io::Result<cairn::net::CoalescedWrites<tokio::net::TcpStream>> {
    let stream = tokio::net::TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    Ok(cairn::net::CoalescedWrites::new(stream))
}

/// Starts an HTTP/2 connection over `io`, driven by a task of its own.
async fn handshake<T>(io: T) -> Result<h2::client::SendRequest<Bytes>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (send, connection) = h2::client::handshake(io).await?;
    tokio::spawn(async move {
        // Ends when the connection does; calls in flight see the error.
        let _ = connection.await;
    });
    Ok(send)
}

/// Whether `headers` carry a `grpc-status`; a status other than OK is the error.
fn grpc_status(headers: &http::HeaderMap) -> Result<bool, String> {
    let Some(code) = headers.get("grpc-status") else {
        return Ok(false);
    };
    let code: i32 = code
        .to_str()
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("Unknown: bad grpc-status {code:?}"))?;
    if code == 0 {
        return Ok(true);
    }
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(|m| {
            percent_encoding::percent_decode_str(m)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    Err(format!("{:?}: {message}", tonic::Code::from(code)))
}

async fn server_version(ch: &Chan, to: Duration) -> Option<String> {
    let mut mc = MaintenanceClient::new(ch.clone());
    let r = tokio::time::timeout(to, mc.status(StatusRequest {})).await;
    Some(r.ok()?.ok()?.into_inner().version).filter(|v| !v.is_empty())
}

/// User plus system CPU time of process `pid` so far, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
    let (Some(user), Some(system)) = (ticks(14), ticks(15)) else {
        bail!("no CPU times in /proc/{pid}/stat");
    };
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok((user + system) as f64 / per_second)
}

fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

// ---------------------------------------------------------------------------------------------
// Keys and values, as etcd's benchmark makes them

impl KeyArgs {
    /// Checks sizes, and that the key space holds `distinct` keys and fits in --key-size.
    fn validate(&self, distinct: u64) -> Result<()> {
        check("--key-size", self.key_size as u64, 1, MAX_KEY_SIZE as u64)?;
        check("--val-size", self.val_size as u64, 0, MAX_VAL_SIZE as u64)?;
        if self.key_space_size < distinct {
            bail!("--key-space-size must be at least --txn-ops ({distinct}): keys in a txn differ");
        }
        check("--key-space-size", self.key_space_size, 1, i64::MAX as u64)?;
        let need = varint(self.key_space_size - 1).len();
        if need > self.key_size {
            bail!(
                "--key-size {} is too small for --key-space-size (needs {need})",
                self.key_size
            );
        }
        Ok(())
    }
}

/// Go's `binary.PutVarint` (zig-zag, then LEB128), as etcd's benchmark writes key numbers.
fn varint(n: u64) -> Vec<u8> {
    let mut ux = n << 1; // n < 2^63, so zig-zag of a non-negative number
    let mut out = Vec::with_capacity(10);
    while ux >= 0x80 {
        out.push(ux as u8 | 0x80);
        ux >>= 7;
    }
    out.push(ux as u8);
    out
}

fn make_key(n: u64, size: usize) -> Vec<u8> {
    let mut k = varint(n);
    k.resize(size, 0);
    k
}

fn random_value(size: usize) -> Vec<u8> {
    let mut rng = Rng::new(u64::MAX);
    (0..size).map(|_| b'a' + rng.below(26) as u8).collect()
}

/// xorshift64*: fast, and good enough to pick keys.
struct Rng(u64);

impl Rng {
    fn new(stream: u64) -> Self {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let seed = (t.as_nanos() as u64) ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

// ---------------------------------------------------------------------------------------------
// Statistics and the report

/// Whether `Stats` keep every request for --latency-log.
static LATENCY_LOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One request of the latency log.
#[derive(Clone, Copy)]
struct Logged {
    /// Completion time, µs since the Unix epoch.
    done_us: u64,
    latency_us: u32,
    ok: bool,
}

/// Microseconds since the Unix epoch, now.
fn unix_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

fn write_latency_log(path: &std::path::Path, log: &[Logged]) -> std::io::Result<()> {
    use std::io::Write;
    let mut sorted = log.to_vec();
    sorted.sort_by_key(|l| l.done_us);
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    for l in &sorted {
        writeln!(w, "{} {} {}", l.done_us, l.latency_us, u8::from(l.ok))?;
    }
    w.flush()
}

/// Latencies of successful requests (µs, HDR) and the errors of failed ones.
struct Stats {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    /// The first distinct error messages, with their counts.
    samples: Vec<(String, u64)>,
    /// Every timed request, with --latency-log.
    log: Vec<Logged>,
}

impl Stats {
    fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        Stats {
            hist,
            ok: 0,
            errors: 0,
            samples: Vec::new(),
            log: Vec::new(),
        }
    }

    fn ok(&mut self, d: Duration) {
        self.hist
            .saturating_record(d.as_micros().min(u64::MAX as u128) as u64);
        self.ok += 1;
        self.log(d, true);
    }

    fn log(&mut self, d: Duration, ok: bool) {
        if LATENCY_LOG.load(Ordering::Relaxed) {
            self.log.push(Logged {
                done_us: unix_us(),
                latency_us: d.as_micros().min(u32::MAX as u128) as u32,
                ok,
            });
        }
    }

    fn err(&mut self, msg: String) {
        self.errors += 1;
        add_sample(&mut self.samples, msg, 1);
    }

    fn record(&mut self, start: Instant, r: Result<(), String>) {
        match r {
            Ok(()) => self.ok(start.elapsed()),
            Err(e) => {
                self.log(start.elapsed(), false);
                self.err(e)
            }
        }
    }

    fn merge(&mut self, o: Stats) {
        self.hist.add(&o.hist).expect("same bounds");
        self.ok += o.ok;
        self.errors += o.errors;
        for (m, n) in o.samples {
            add_sample(&mut self.samples, m, n);
        }
        self.log.extend(o.log);
    }

    /// Quantile (or None for the max) in ms, None without samples.
    fn ms(&self, q: Option<f64>) -> Option<f64> {
        (self.ok > 0)
            .then(|| q.map_or(self.hist.max(), |q| self.hist.value_at_quantile(q)) as f64 / 1e3)
    }
}

fn add_sample(samples: &mut Vec<(String, u64)>, msg: String, n: u64) {
    if let Some(s) = samples.iter_mut().find(|s| s.0 == msg) {
        s.1 += n;
    } else if samples.len() < MAX_ERROR_SAMPLES {
        samples.push((msg, n));
    }
}

struct Report<'a> {
    name: &'a str,
    cli: &'a str,
    version: Option<String>,
    out: Outcome,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    /// CPU time (user + system) the server spent during the workload.
    server_cpu_s: Option<f64>,
}

const QUANTILES: [(&str, f64); 4] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999)];

impl Report<'_> {
    fn rps(&self) -> f64 {
        let s = self.out.elapsed.as_secs_f64();
        if s > 0.0 {
            self.out.stats.ok as f64 / s
        } else {
            0.0
        }
    }

    /// The server's CPU time per successful request: its cost, whatever the load generator's.
    fn server_cpu_us_per_request(&self) -> Option<f64> {
        let ok = self.out.stats.ok;
        self.server_cpu_s
            .filter(|_| ok > 0)
            .map(|s| s * 1e6 / ok as f64)
    }

    fn mean_ms(&self) -> Option<f64> {
        (self.out.stats.ok > 0).then(|| self.out.stats.hist.mean() / 1e3)
    }

    fn text(&self) -> String {
        let st = &self.out.stats;
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3}"));
        let mut s = format!(
            "{}: {} requests, {}{}\n",
            self.name,
            st.ok + st.errors,
            self.cli,
            self.version
                .as_ref()
                .map_or(String::new(), |v| format!(" (server {v})"))
        );
        s += &format!("  total        {:.3} s\n", self.out.elapsed.as_secs_f64());
        s += &format!(
            "  requests/s   {:.1}  (successful requests / total)\n",
            self.rps()
        );
        s += &format!("  latency ms   mean {}", ms(self.mean_ms()));
        for (n, q) in QUANTILES {
            s += &format!("  {n} {}", ms(st.ms(Some(q))));
        }
        s += &format!("  max {}\n", ms(st.ms(None)));
        s += &format!("  ok           {}\n  errors       {}\n", st.ok, st.errors);
        for (m, n) in &st.samples {
            s += &format!("    {n} × {m}\n");
        }
        for (k, v) in &self.out.notes {
            s += &format!("  {k:<12} {v}\n");
        }
        if let Some(b) = self.rss_before {
            let a = self.rss_after.map_or("-".into(), |a| a.to_string());
            s += &format!("  server rss   {b} kB before, {a} kB after\n");
        }
        if let (Some(cpu), Some(per)) = (self.server_cpu_s, self.server_cpu_us_per_request()) {
            s += &format!("  server cpu   {cpu:.2} s, {per:.1} µs per request\n");
        }
        s
    }

    fn json(&self) -> serde_json::Value {
        let st = &self.out.stats;
        let mut j = serde_json::json!({
            "workload": self.name,
            "setup": self.cli,
            "server_version": self.version,
            "requests": st.ok + st.errors,
            "ok": st.ok,
            "errors": st.errors,
            "error_samples": st.samples.iter().map(|(m, n)| serde_json::json!({"count": n, "message": m})).collect::<Vec<_>>(),
            "total_s": self.out.elapsed.as_secs_f64(),
            "rps": self.rps(),
            "mean_ms": self.mean_ms(),
            "p50_ms": st.ms(Some(0.5)),
            "p90_ms": st.ms(Some(0.9)),
            "p99_ms": st.ms(Some(0.99)),
            "p999_ms": st.ms(Some(0.999)),
            "max_ms": st.ms(None),
            "rss_kb_before": self.rss_before,
            "rss_kb_after": self.rss_after,
            "server_cpu_s": self.server_cpu_s,
            "server_cpu_us_per_req": self.server_cpu_us_per_request(),
        });
        for (k, v) in &self.out.notes {
            j[*k] = (*v).into();
        }
        j
    }
}
