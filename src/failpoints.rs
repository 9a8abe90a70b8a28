//! Named failpoints for fault-injection tests, compiled in only with the cargo feature
//! `failpoints` (tests and CI build with it; release builds carry none: every
//! `fail_point!` is then empty).
//!
//! Each point is named after where it stands (`raft_log_before_fsync`, ...); `NAMES` lists
//! them all. An action is `fail`'s syntax: `panic` without a message (the process aborts
//! there, as in a crash), `sleep(MS)` (the thread stalls, as in a slow disk), `pause`, `return` (an I/O
//! error where the point stands for storage: a failed disk), with optional `N%`
//! and `N*` prefixes and `->` chains.
//!
//! Set per process:
//! - at start-up, `FAILPOINTS="name=action;name=action"` (or gofail's `GOFAIL_FAILPOINTS`);
//! - while running, over HTTP at the address in `GOFAIL_HTTP` (gofail's protocol, which
//!   etcd's robustness suite speaks): `PUT /name` with the action as body, `DELETE /name`,
//!   `GET /name`, and `GET /` for every point, one `name=action` a line (the action empty
//!   when the point is off), as gofail lists the points a binary has. It listens on its own
//!   port, never the client or peer port.
//!
//! etcd's gofail names are accepted where Cairn has a point of the same meaning
//! (`ETCD_ALIASES`), and gofail's action syntax too (`sleep("1s")`, quoted arguments), so
//! etcd's robustness suite can drive Cairn as it drives an etcd built with gofail.
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

/// etcd's gofail failpoint names that mean what a Cairn point means: `(etcd, Cairn)`.
/// Setting, reading or clearing the etcd name acts on the Cairn point. etcd names with no
/// Cairn point of the same meaning are not here, so the robustness suite never picks them.
pub const ETCD_ALIASES: &[(&str, &str)] = &[
    // etcd saves Raft entries and hard state to its WAL (and fsyncs it) between these two.
    ("raftBeforeSave", "raft_log_before_append"),
    ("raftAfterSave", "raft_log_after_fsync"),
    // The backend's commit of applied changes.
    ("beforeCommit", "apply_before_commit"),
    ("afterCommit", "apply_after_commit"),
    // The leader, before it sends to followers.
    ("raftBeforeLeaderSend", "raft_before_send_append"),
    // A follower receiving a snapshot: before it is made durable; then durable but not yet
    // the state machine's (etcd: saved, applied to Raft's memory storage, the backend not
    // yet opened from it; Cairn: the install marker written, the records not yet loaded).
    ("raftBeforeSaveSnap", "snapshot_install_before_marker"),
    ("raftAfterSaveSnap", "snapshot_install_after_marker"),
    ("raftBeforeApplySnap", "snapshot_install_after_marker"),
    ("raftAfterApplySnap", "snapshot_install_after_marker"),
    ("applyBeforeOpenSnapshot", "snapshot_install_after_marker"),
    // Before a response is sent on a watch stream.
    ("beforeSendWatchResponse", "watch_before_send"),
    // Before one batch of a physical compaction's deletes is committed.
    ("compactBeforeCommitBatch", "mvcc_compaction_before_delete"),
];

/// Environment variable with failpoints to set at start-up.
const ENV_FAILPOINTS: &str = "FAILPOINTS";
/// gofail's name for it.
const ENV_GOFAIL_FAILPOINTS: &str = "GOFAIL_FAILPOINTS";
/// Environment variable with the address of the failpoint HTTP endpoint.
const ENV_HTTP: &str = "GOFAIL_HTTP";

/// Whether this build has failpoints.
pub const ENABLED: bool = cfg!(feature = "failpoints");

/// Sets the failpoints of `FAILPOINTS` and says where to serve the HTTP endpoint. A build
/// without failpoints refuses both variables rather than silently injecting nothing.
pub fn setup_from_env() -> Result<Option<SocketAddr>, String> {
    let points: Vec<String> = [ENV_FAILPOINTS, ENV_GOFAIL_FAILPOINTS]
        .iter()
        .filter_map(|var| std::env::var(var).ok().filter(|s| !s.is_empty()))
        .collect();
    let http = std::env::var(ENV_HTTP).ok().filter(|s| !s.is_empty());
    if !ENABLED && (!points.is_empty() || http.is_some()) {
        return Err(format!(
            "{ENV_FAILPOINTS}, {ENV_GOFAIL_FAILPOINTS} or {ENV_HTTP} is set, but this build \
             has no failpoints (build with `--features failpoints`)"
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

/// The Cairn point `name` stands for: itself, or the point an etcd name is an alias of.
fn resolve(name: &str) -> Result<&'static str, String> {
    if let Some(own) = NAMES.iter().find(|n| **n == name) {
        return Ok(own);
    }
    ETCD_ALIASES
        .iter()
        .find(|(etcd, _)| *etcd == name)
        .map(|(_, cairn)| *cairn)
        .ok_or_else(|| format!("unknown failpoint {name:?}"))
}

/// Sets failpoint `name` (Cairn's or an etcd alias) to `action` (`fail`'s or gofail's syntax).
pub fn set(name: &str, action: &str) -> Result<(), String> {
    let point = resolve(name)?;
    let action = from_gofail(action)?;
    fail::cfg(point, &action)?;
    tracing::warn!(
        failpoint = point,
        requested_as = name,
        action,
        "failpoint set"
    );
    Ok(())
}

/// Turns failpoint `name` (Cairn's or an etcd alias) off.
pub fn clear(name: &str) -> Result<(), String> {
    let point = resolve(name)?;
    fail::remove(point);
    tracing::warn!(failpoint = point, requested_as = name, "failpoint removed");
    Ok(())
}

/// Every point, Cairn's names then the etcd aliases, with its action ("" when off).
fn list_all() -> Vec<(String, String)> {
    let set = fail::list();
    let action = |point: &str| {
        set.iter()
            .find(|(n, _)| n == point)
            .map(|(_, a)| a.clone())
            .unwrap_or_default()
    };
    NAMES
        .iter()
        .map(|n| (n.to_string(), action(n)))
        .chain(
            ETCD_ALIASES
                .iter()
                .map(|(etcd, cairn)| (etcd.to_string(), action(cairn))),
        )
        .collect()
}

/// Translates gofail's action syntax into `fail`'s: gofail quotes string arguments
/// (`panic("msg")`) and takes a sleep as a Go duration (`sleep("1s")`) or milliseconds;
/// `fail` takes them unquoted, and a sleep in milliseconds. Terms chained with `->` and
/// their `N%` / `N*` prefixes are the same in both.
fn from_gofail(action: &str) -> Result<String, String> {
    let terms = action.split("->").map(|term| {
        let term = term.trim();
        let (Some(open), true) = (term.find('('), term.ends_with(')')) else {
            return Ok(term.to_string());
        };
        let (head, arg) = (&term[..open], term[open + 1..term.len() - 1].trim());
        let Some(unquoted) = arg.strip_prefix('"').and_then(|a| a.strip_suffix('"')) else {
            return Ok(term.to_string());
        };
        if head.ends_with("sleep") {
            let ms = go_duration_ms(unquoted)
                .ok_or_else(|| format!("bad sleep duration {unquoted:?} in {term:?}"))?;
            return Ok(format!("{head}({ms})"));
        }
        Ok(format!("{head}({unquoted})"))
    });
    terms
        .collect::<Result<Vec<_>, String>>()
        .map(|t| t.join("->"))
}

/// A Go duration (`1s`, `1.5s`, `100ms`, `1m30s`) in whole milliseconds; a bare number is
/// milliseconds, as gofail takes it.
fn go_duration_ms(s: &str) -> Option<u64> {
    if let Ok(ms) = s.parse::<u64>() {
        return Some(ms);
    }
    let mut rest = s;
    let mut total_ns = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&i| i > 0)?;
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ns_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total_ns += value * ns_per_unit;
        rest = &rest[unit_len..];
    }
    Some((total_ns / 1e6).round() as u64)
}

/// An I/O error for `return` at a storage failpoint: what a failing disk reports (EIO). A
/// full disk (ENOSPC) is handled otherwise (`storage`), and tested on a real one
/// (`tests/fault_disk_full.rs`).
pub fn disk_failed(name: &str) -> std::io::Error {
    std::io::Error::other(format!("failpoint {name}: input/output error"))
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
                let lines: String = list_all()
                    .into_iter()
                    .map(|(name, action)| format!("{name}={action}\n"))
                    .collect();
                (StatusCode::OK, lines)
            }
            (Method::GET, name) => match list_all().into_iter().find(|(n, _)| n == name) {
                Some((_, action)) if !action.is_empty() => (StatusCode::OK, action),
                Some(_) => (StatusCode::NOT_FOUND, "failpoint not set\n".into()),
                None => (StatusCode::NOT_FOUND, "unknown failpoint\n".into()),
            },
            (Method::PUT, name) => match set(name, String::from_utf8_lossy(&body).trim()) {
                Ok(()) => (StatusCode::NO_CONTENT, String::new()),
                Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
            },
            (Method::DELETE, name) => match clear(name) {
                Ok(()) => (StatusCode::NO_CONTENT, String::new()),
                Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
            },
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
        names.extend(super::ETCD_ALIASES.iter().map(|(etcd, _)| *etcd));
        let all = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all);
    }

    #[test]
    fn etcd_aliases_name_cairn_points() {
        for (etcd, cairn) in super::ETCD_ALIASES {
            assert!(super::NAMES.contains(cairn), "{etcd} -> {cairn}");
            assert_eq!(super::resolve(etcd), Ok(*cairn));
        }
        assert!(super::resolve("raftBeforeFollowerSend").is_err());
    }

    #[test]
    fn gofail_actions_translate() {
        let t = |a: &str| super::from_gofail(a);
        assert_eq!(t("panic").as_deref(), Ok("panic"));
        assert_eq!(t(r#"sleep("1s")"#).as_deref(), Ok("sleep(1000)"));
        assert_eq!(t(r#"sleep("1.5s")"#).as_deref(), Ok("sleep(1500)"));
        assert_eq!(t(r#"sleep("1m30s")"#).as_deref(), Ok("sleep(90000)"));
        assert_eq!(t(r#"sleep("250ms")"#).as_deref(), Ok("sleep(250)"));
        assert_eq!(t("sleep(100)").as_deref(), Ok("sleep(100)"));
        assert_eq!(
            t(r#"50%sleep("2s")->1*panic("boom")"#).as_deref(),
            Ok("50%sleep(2000)->1*panic(boom)")
        );
        assert!(t(r#"sleep("soon")"#).is_err());
    }

    /// An etcd name sets, lists and clears the Cairn point it stands for.
    #[cfg(feature = "failpoints")]
    #[test]
    fn etcd_names_act_on_cairn_points() {
        super::set("beforeSendWatchResponse", r#"sleep("1s")"#).unwrap();
        let all = super::list_all();
        let action = |name: &str| all.iter().find(|(n, _)| n == name).unwrap().1.clone();
        assert_eq!(action("watch_before_send"), "sleep(1000)");
        assert_eq!(action("beforeSendWatchResponse"), "sleep(1000)");
        assert_eq!(action("raftBeforeSave"), "");
        assert_eq!(all.len(), super::NAMES.len() + super::ETCD_ALIASES.len());
        super::clear("beforeSendWatchResponse").unwrap();
        assert_eq!(
            super::list_all()
                .iter()
                .find(|(n, _)| n == "watch_before_send")
                .unwrap()
                .1,
            ""
        );
        assert!(super::clear("noSuchPoint").is_err());
    }
}
