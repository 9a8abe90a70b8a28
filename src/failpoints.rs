//! Named failpoints for fault-injection tests, compiled in only with the cargo feature
//! `failpoints` (tests and CI build with it; release builds carry none: every
//! `fail_point!` is then empty).
//!
//! Each point is named after where it stands (`raft_log_before_fsync`, ...); `NAMES` lists
//! them all. An action is `fail`'s syntax: `panic` without a message (the process aborts
//! there, as in a crash), `sleep(MS)` (the thread stalls, as in a slow disk), `pause`, `return` (an I/O
//! error where the point stands for storage: a failed or full disk), with optional `N%`
//! and `N*` prefixes and `->` chains.
//!
//! Set per process:
//! - at start-up, `FAILPOINTS="name=action;name=action"`;
//! - while running, over HTTP at the address in `GOFAIL_HTTP` (gofail's protocol, which
//!   etcd's robustness suite speaks): `PUT /name` with the action as body, `DELETE /name`,
//!   `GET /name`, and `GET /` for every point set. It listens on its own port, never the
//!   client or peer port.
//!
//! May call nothing else in the crate.

use std::net::SocketAddr;

/// Every failpoint in Cairn. A name not listed here is refused, so a typo in a test fails
/// loudly instead of injecting nothing.
pub const NAMES: &[&str] = &[
    // The Raft log (`raft::log_store`): before entries are written, before and after the
    // fsync that makes them durable. `return` is a failed write.
    "raft_log_before_append",
    "raft_log_before_fsync",
    "raft_log_after_fsync",
    // The state machine (`raft::state_machine`): around the write of an applied batch.
    "apply_before_commit",
    "apply_after_commit",
    // Snapshots: each step of a build and of an install.
    "snapshot_build_before_write",
    "snapshot_build_before_rename",
    "snapshot_install_before_marker",
    "snapshot_install_after_marker",
    "snapshot_install_after_load",
    "snapshot_install_after_finish",
    // Replication: before an append is sent to a follower.
    "raft_before_send_append",
    // Watch: before a response is sent on a watch stream.
    "watch_before_send",
    // MVCC: a Range or read-only txn between taking its view of the store and reading it.
    "kv_read_after_view",
    // MVCC: a batch of a physical compaction's deletes (`return`: the write fails).
    "mvcc_compaction_before_delete",
];

/// Environment variable with failpoints to set at start-up.
const ENV_FAILPOINTS: &str = "FAILPOINTS";
/// Environment variable with the address of the failpoint HTTP endpoint.
const ENV_HTTP: &str = "GOFAIL_HTTP";

/// Whether this build has failpoints.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Sets the failpoints of `FAILPOINTS` and says where to serve the HTTP endpoint. A build
/// without failpoints refuses both variables rather than silently injecting nothing.
pub fn setup_from_env() -> Result<Option<SocketAddr>, String> {
    let points = std::env::var(ENV_FAILPOINTS).ok().filter(|s| !s.is_empty());
    let http = std::env::var(ENV_HTTP).ok().filter(|s| !s.is_empty());
    if !ENABLED && (points.is_some() || http.is_some()) {
        return Err(format!(
            "{ENV_FAILPOINTS} or {ENV_HTTP} is set, but this build has no failpoints \
             (build with `--features failpoints`)"
        ));
    }
    if ENABLED {
        abort_on_failpoint_panic();
    }
    for assignment in points.iter().flat_map(|s| s.split(';')) {
        let (name, action) = assignment
            .split_once('=')
            .ok_or_else(|| format!("{ENV_FAILPOINTS}: expected name=action, got {assignment:?}"))?;
        set(name.trim(), action.trim())?;
    }
    http.map(|addr| {
        addr.parse()
            .map_err(|e| format!("{ENV_HTTP}: bad address {addr:?}: {e}"))
    })
    .transpose()
}

/// A failpoint's `panic` ends the process at once, without unwinding or cleanup, as a
/// crash at that step would (a panic in a task would otherwise end only that task).
fn abort_on_failpoint_panic() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failpoint ") {
            std::process::abort();
        }
    }));
}

/// Sets failpoint `name` to `action`.
pub fn set(name: &str, action: &str) -> Result<(), String> {
    if !NAMES.contains(&name) {
        return Err(format!("unknown failpoint {name:?}"));
    }
    fail::cfg(name, action)?;
    tracing::warn!(failpoint = name, action, "failpoint set");
    Ok(())
}

/// An I/O error for `return` at a storage failpoint: what a full disk reports.
pub fn disk_full(name: &str) -> std::io::Error {
    std::io::Error::other(format!("failpoint {name}: no space left on device"))
}

/// Serves gofail's HTTP protocol on `addr` until the process ends.
pub async fn serve_http(addr: SocketAddr) -> std::io::Result<()> {
    use http_body_util::{BodyExt, Full};
    use hyper::{body::Bytes, Method, Request, Response, StatusCode};

    async fn handle(
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, hyper::Error> {
        let name = request.uri().path().trim_start_matches('/').to_string();
        let method = request.method().clone();
        let body = request.into_body().collect().await?.to_bytes();
        let (status, text) = match (method, name.as_str()) {
            (Method::GET, "") => {
                let lines: String = fail::list()
                    .into_iter()
                    .map(|(name, action)| format!("{name}={action}\n"))
                    .collect();
                (StatusCode::OK, lines)
            }
            (Method::GET, name) => match fail::list().into_iter().find(|(n, _)| n == name) {
                Some((_, action)) => (StatusCode::OK, action),
                None => (StatusCode::NOT_FOUND, "failpoint not set\n".into()),
            },
            (Method::PUT, name) => match set(name, String::from_utf8_lossy(&body).trim()) {
                Ok(()) => (StatusCode::NO_CONTENT, String::new()),
                Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
            },
            (Method::DELETE, name) => {
                fail::remove(name);
                tracing::warn!(failpoint = name, "failpoint removed");
                (StatusCode::NO_CONTENT, String::new())
            }
            _ => (StatusCode::METHOD_NOT_ALLOWED, String::new()),
        };
        let mut response = Response::new(Full::new(Bytes::from(text)));
        *response.status_mut() = status;
        Ok(response)
    }

    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving failpoints over HTTP");
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = hyper::service::service_fn(handle);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_names_are_refused() {
        assert!(super::set("no_such_point", "panic").is_err());
    }

    #[test]
    fn names_are_unique() {
        let mut names = super::NAMES.to_vec();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), super::NAMES.len());
    }
}
