//! The `cairn` server binary: parse etcd's flags, start a member, serve clients until
//! SIGINT or SIGTERM, then stop cleanly.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use tokio::signal::unix::{signal, SignalKind};
use url::Url;

use cairn::config::{Config, Flags, CAIRN_VERSION, ETCD_API_VERSION};
use cairn::{api, net, server::Server};

/// How long in-flight requests may take to finish after a stop signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

fn main() -> ExitCode {
    // `cairn snapshot restore|status`: etcdutl's commands, not a server.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "snapshot") {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .try_init();
        return cairn::snapshot_cli::run(args[1..].to_vec());
    }
    let flags = Flags::from_command_line_and_env();
    if flags.version {
        println!("etcd Version: {ETCD_API_VERSION}");
        println!("Cairn Version: {CAIRN_VERSION}");
        println!("Git SHA: not provided");
        println!("Go Version: not applicable (Rust)");
        println!("Go OS/Arch: {}/{}", std::env::consts::OS, go_arch());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_flags(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cairn: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    // Inside the runtime: the span exporter runs on it.
    let telemetry = match runtime.block_on(async {
        cairn::telemetry::init(
            &config.log_level,
            config.log_format,
            config.distributed_tracing.as_ref(),
        )
    }) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("cairn: {e}");
            return ExitCode::from(1);
        }
    };
    let failpoints_http = match cairn::failpoints::setup_from_env() {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("cairn: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(addr) = failpoints_http {
        serve_failpoints_on_own_thread(addr);
    }
    let code = match runtime.block_on(run(config)) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e:#}");
            1
        }
    };
    // The spans of the last requests, then exit.
    runtime.block_on(telemetry.shutdown());
    // After a clean stop everything is durable by now (the node synced its log and stopped
    // RocksDB's background work); after a fatal Raft error, what was acknowledged is. Exit
    // without running C++ static destructors: RocksDB's would tear down its
    // thread pool under a database that background threads still reference, and abort.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process at once; nothing runs after it.
    unsafe { libc::_exit(code) }
}

/// Serves the failpoint endpoint from a thread and runtime of its own: a `sleep` failpoint
/// stalls the server's runtime threads it is hit on (all of them, when it is hit on every
/// watch response), and the test that set it must still be able to turn it off.
fn serve_failpoints_on_own_thread(addr: SocketAddr) {
    std::thread::Builder::new()
        .name("failpoints-http".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("failpoint endpoint runtime");
            if let Err(e) = runtime.block_on(cairn::failpoints::serve_http(addr)) {
                tracing::error!(error = %e, "failpoint HTTP endpoint");
            }
        })
        .expect("failpoint endpoint thread");
}

async fn run(config: Config) -> anyhow::Result<()> {
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;

    let mut addrs = Vec::new();
    for url in &config.listen_client_urls {
        addrs.push(resolve(url).await?);
    }
    let client_secure: Vec<bool> = config
        .listen_client_urls
        .iter()
        .map(|u| u.scheme() == "https")
        .collect();
    let listeners = net::bind(&addrs)
        .await
        .with_context(|| format!("cannot listen on client URLs {addrs:?}"))?;
    let mut metrics_addrs = Vec::new();
    for url in &config.listen_metrics_urls {
        metrics_addrs.push(resolve(url).await?);
    }
    let metrics_listeners = net::bind(&metrics_addrs)
        .await
        .with_context(|| format!("cannot listen on metrics URLs {metrics_addrs:?}"))?;
    let mut peer_addrs = Vec::new();
    let mut peer_secure = Vec::new();
    let mut peer_unix_listeners = Vec::new();
    for url in &config.listen_peer_urls {
        if url.scheme().starts_with("unix") {
            // As etcd: `unix://NAME:PORT` is a socket file named `NAME:PORT`.
            let path = cairn::cluster::url_string(url)
                .trim_start_matches("unixs://")
                .trim_start_matches("unix://")
                .to_string();
            let _ = std::fs::remove_file(&path);
            let listener = tokio::net::UnixListener::bind(&path)
                .with_context(|| format!("cannot listen on peer URL {url}"))?;
            peer_unix_listeners.push(listener);
        } else {
            peer_addrs.push(resolve(url).await?);
            peer_secure.push(url.scheme() == "https");
        }
    }
    let peer_listeners = net::bind(&peer_addrs)
        .await
        .with_context(|| format!("cannot listen on peer URLs {peer_addrs:?}"))?;
    for note in &config.ignored {
        tracing::warn!("accepted but ignored: {note}");
    }
    let client_tls = net::tls::load_for_port(
        &config.client_tls,
        &config.data_dir,
        "client",
        &config.listen_client_urls,
    )?;
    let peer_tls = net::tls::load_for_port(
        &config.peer_tls,
        &config.data_dir,
        "peer",
        &config.listen_peer_urls,
    )?;
    let node = Server::start(&config, peer_tls.clone()).await?;
    tracing::info!(
        name = %config.name,
        member_id = %format!("{:x}", node.identity().member_id),
        cluster_id = %format!("{:x}", node.identity().cluster_id),
        data_dir = %config.data_dir.display(),
        "starting member"
    );

    let (stop_peers, peers_stopped) = tokio::sync::oneshot::channel::<()>();
    let peer_incoming = net::incoming(
        peer_listeners.into_iter().zip(peer_secure).collect(),
        peer_tls.as_ref(),
    )?;
    let peer_server = cairn::peer::serve(node.clone(), peer_incoming, peer_unix_listeners, async {
        let _ = peers_stopped.await;
    });
    let (stop_serving, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = listeners
        .into_iter()
        .zip(client_secure.iter().copied())
        .collect();
    // As etcd: the client port takes connections from the start but serves them only once
    // the member is ready (below), so that no client meets a member that cannot answer yet
    // (a resumed watch would be canceled for want of a leader, not told it was compacted).
    let (clients_served, mut member_ready) = tokio::sync::watch::channel(false);
    let client_incoming = net::incoming(listeners, client_tls.as_ref())?;
    let client_incoming = futures::stream::once(async move {
        // Never ready (a stop before it): the server's shutdown ends the wait.
        let _ = member_ready.wait_for(|ready| *ready).await;
        client_incoming
    })
    .flatten()
    .boxed();
    let (health, server) = api::serve(node.clone(), client_incoming, async {
        let _ = stopped.await;
    })
    .await?;
    let (stop_metrics, metrics_stopped) = tokio::sync::oneshot::channel::<()>();
    let metrics_listeners = metrics_listeners
        .into_iter()
        .zip(
            config
                .listen_metrics_urls
                .iter()
                .map(|u| u.scheme() == "https"),
        )
        .collect();
    let metrics_server = api::serve_metrics_urls(
        node.clone(),
        net::incoming(metrics_listeners, client_tls.as_ref())?,
        async {
            let _ = metrics_stopped.await;
        },
    );
    for url in &config.listen_metrics_urls {
        tracing::info!(address = %cairn::cluster::url_string(url), "serving metrics");
    }

    // Ready once a leader is known, the log applied, and this member's client URLs
    // published to the cluster (retried through elections).
    let ready = async {
        node.wait_ready().await?;
        loop {
            match node.publish().await {
                Ok(()) => return anyhow::Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "publishing this member's attributes; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    };
    let signalled = tokio::select! {
        ready = ready => { ready?; false }
        _ = terminate.recv() => true,
        _ = interrupt.recv() => true,
        reason = node.raft_stopped() => return Err(raft_stopped(reason)),
    };
    let mut auto_compaction = None;
    if !signalled {
        auto_compaction = cairn::auto_compaction::spawn(node.clone(), config.auto_compaction);
        health.set(true).await;
        clients_served.send_replace(true);
        // etcd prints these two when a member has joined its cluster and agreed on the
        // cluster version; etcd's own end-to-end suite waits for them.
        tracing::info!(
            "enabled capabilities for version {}",
            cairn::config::ETCD_CLUSTER_VERSION
        );
        tracing::info!(
            "published {{Name:{} ClientURLs:{:?}}} to cluster {:x}",
            config.name,
            node.identity().client_urls,
            node.identity().cluster_id
        );
        tracing::info!("ready to serve client requests");
        for (addr, secure) in addrs.iter().zip(&client_secure) {
            if *secure {
                tracing::info!("serving client requests on {addr}");
            } else {
                tracing::info!(
                    "serving insecure client requests on {addr}, this is strongly discouraged!"
                );
            }
        }
        tokio::select! {
            _ = terminate.recv() => tracing::info!("received terminated signal, shutting down"),
            _ = interrupt.recv() => tracing::info!("received interrupt signal, shutting down"),
            _ = node.removed() => tracing::info!("removed from the cluster, shutting down"),
            reason = node.raft_stopped() => {
                health.set(false).await;
                return Err(raft_stopped(reason));
            }
        }
    }

    // Hand leadership over first (clients find the new leader at once), then stop taking
    // requests, let in-flight ones finish (long-lived streams get a bounded grace
    // period), then stop Raft and sync storage.
    health.set(false).await;
    node.hand_off_leadership().await;
    if let Some(task) = auto_compaction {
        task.abort();
    }
    let _ = stop_serving.send(());
    let _ = stop_metrics.send(());
    // Watch streams never end on their own: end them, so clients reconnect elsewhere.
    node.close_watches();
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        tracing::warn!("client connections still open after {SHUTDOWN_GRACE:?}; closing them");
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, metrics_server).await;
    node.shutdown().await;
    let _ = stop_peers.send(());
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, peer_server).await;
    tracing::info!("stopped");
    Ok(())
}

/// Raft stopped on a fatal error: the member exits at once with an error (as etcd does),
/// which ends its client connections, so that clients fail over to a healthy member. What
/// it had acknowledged is durable; the log sync is not retried on a failed disk.
fn raft_stopped(reason: String) -> anyhow::Error {
    anyhow::anyhow!("raft stopped on a fatal error, exiting: {reason}")
}

/// The socket address a listen URL names; `localhost` is the IPv4 loopback, as for etcd.
async fn resolve(url: &Url) -> anyhow::Result<SocketAddr> {
    let port = url.port().context("listen URL without port")?;
    let host = url.host_str().context("listen URL without host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost" {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .with_context(|| format!("cannot resolve {host}"))
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// jemalloc rather than glibc's malloc: see Cargo.toml.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
