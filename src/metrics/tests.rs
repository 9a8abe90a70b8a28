use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use http_body_util::BodyExt;
use tonic::body::Body;
use tonic::codegen::http::{HeaderMap, HeaderValue, Response};

use super::*;

fn labels() -> MemberLabels {
    MemberLabels {
        server_id: "8e9e05c52164694d".into(),
        server_version: "3.4.0".into(),
        cluster_version: "3.4".into(),
    }
}

/// One sample line: name, labels in their order, value.
#[derive(Debug)]
struct Line {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

fn is_name(s: &str, first: fn(char) -> bool) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(first)
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Reads `{a="x",b="y"}` (after the name); returns the labels and the rest of the line.
fn parse_labels(text: &str) -> Result<(Vec<(String, String)>, &str), String> {
    let Some(mut rest) = text.strip_prefix('{') else {
        return Ok((Vec::new(), text));
    };
    let mut labels = Vec::new();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let name = &rest[..eq];
        if !is_name(name, |c| c.is_ascii_alphabetic() || c == '_') || name.starts_with("__") {
            return Err(format!("bad label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("dangling escape")?.1 {
                    'n' => value.push('\n'),
                    c @ ('\\' | '"') => value.push(c),
                    c => return Err(format!("bad escape \\{c}")),
                },
                (_, '\n') => return Err("newline in label value".into()),
                (_, c) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        rest = &rest[end + 1..];
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by ','".into());
        }
    }
}

/// Checks `text` against the rules of the text format 0.0.4 as Prometheus reads it, and
/// returns its samples and each family's type: HELP then TYPE once per family, before its
/// samples; a family's samples together; names and labels well formed, label names sorted
/// as Go's client writes them; values that parse; no series twice; histogram buckets
/// ascending in `le` and cumulative, ending at `+Inf` equal to `_count`.
fn parse_exposition(text: &str) -> Result<(Vec<Line>, BTreeMap<String, String>), String> {
    let mut types = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut lines = Vec::new();
    let mut series = BTreeSet::new();
    let mut current_family: Option<String> = None;
    let mut finished_families = BTreeSet::new();
    if !text.ends_with('\n') {
        return Err("no final newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let fault = |what: String| format!("line {}: {what}: {line:?}", n + 1);
        if let Some(help) = line.strip_prefix("# HELP ") {
            let name = help.split(' ').next().unwrap();
            if !helped.insert(name.to_string()) {
                return Err(fault("HELP twice".into()));
            }
            continue;
        }
        if let Some(ty) = line.strip_prefix("# TYPE ") {
            let (name, ty) = ty.split_once(' ').ok_or_else(|| fault("bad TYPE".into()))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&ty) {
                return Err(fault(format!("unknown type {ty}")));
            }
            if !helped.contains(name) {
                return Err(fault("TYPE without HELP before it".into()));
            }
            if types.insert(name.to_string(), ty.to_string()).is_some() {
                return Err(fault("TYPE twice".into()));
            }
            if let Some(previous) = current_family.replace(name.to_string()) {
                finished_families.insert(previous);
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(fault("unexpected line".into()));
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| fault("no value".into()))?;
        let name = &line[..name_end];
        if !is_name(name, |c| c.is_ascii_alphabetic() || c == '_' || c == ':') {
            return Err(fault("bad metric name".into()));
        }
        let (labels, rest) = parse_labels(&line[name_end..]).map_err(fault)?;
        let names: Vec<&String> = labels.iter().map(|(k, _)| k).collect();
        if !names.windows(2).all(|w| w[0] < w[1]) {
            return Err(fault("label names not sorted, or repeated".into()));
        }
        let value_text = rest
            .strip_prefix(' ')
            .ok_or_else(|| fault("no space before value".into()))?;
        let value = match value_text {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().map_err(|_| fault("bad value".into()))?,
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                (types.get(base).map(String::as_str) == Some("histogram")).then_some(base)
            })
            .unwrap_or(name);
        if !types.contains_key(family) {
            return Err(fault("sample without TYPE before it".into()));
        }
        if current_family.as_deref() != Some(family) || finished_families.contains(family) {
            return Err(fault("sample away from its family".into()));
        }
        if !series.insert(format!("{name}{labels:?}")) {
            return Err(fault("series twice".into()));
        }
        lines.push(Line {
            name: name.to_string(),
            labels,
            value,
        });
    }
    check_histograms(&lines, &types)?;
    Ok((lines, types))
}

fn check_histograms(lines: &[Line], types: &BTreeMap<String, String>) -> Result<(), String> {
    for (family, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        // Buckets of one series: its labels but `le`, in order of appearance.
        let mut buckets: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut counts = BTreeMap::new();
        for line in lines {
            let key = |labels: &[(String, String)]| {
                format!(
                    "{:?}",
                    labels.iter().filter(|(k, _)| k != "le").collect::<Vec<_>>()
                )
            };
            if line.name == format!("{family}_bucket") {
                let le = line
                    .labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .ok_or(format!("{family}: bucket without le"))?;
                let le: f64 = if le.1 == "+Inf" {
                    f64::INFINITY
                } else {
                    le.1.parse().map_err(|_| format!("{family}: bad le"))?
                };
                buckets
                    .entry(key(&line.labels))
                    .or_default()
                    .push((le, line.value));
            } else if line.name == format!("{family}_count") {
                counts.insert(key(&line.labels), line.value);
            }
        }
        for (series, b) in &buckets {
            let ascending = b.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
            let last = b.last().unwrap();
            if !ascending || last.0 != f64::INFINITY || Some(&last.1) != counts.get(series) {
                return Err(format!("{family}{series}: buckets {b:?}"));
            }
        }
    }
    Ok(())
}

fn value(lines: &[Line], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    lines
        .iter()
        .find(|l| {
            l.name == name
                && l.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .map(|l| l.value)
}

#[test]
fn the_exposition_follows_the_text_format_and_shows_etcds_series_before_any_request() {
    let metrics = Metrics::new(&labels(), false);
    let (content_type, text) = metrics.render();
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let (lines, types) = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    for (name, ty) in [
        ("etcd_server_has_leader", "gauge"),
        ("etcd_server_is_leader", "gauge"),
        ("etcd_server_is_learner", "gauge"),
        ("etcd_server_leader_changes_seen_total", "counter"),
        ("etcd_server_proposals_committed_total", "gauge"),
        ("etcd_server_proposals_applied_total", "gauge"),
        ("etcd_server_proposals_pending", "gauge"),
        ("etcd_server_proposals_failed_total", "counter"),
        ("etcd_server_slow_apply_total", "counter"),
        ("etcd_server_heartbeat_send_failures_total", "counter"),
        ("etcd_server_id", "gauge"),
        ("etcd_server_version", "gauge"),
        ("etcd_cluster_version", "gauge"),
        ("etcd_mvcc_db_total_size_in_bytes", "gauge"),
        ("etcd_mvcc_db_total_size_in_use_in_bytes", "gauge"),
        ("etcd_mvcc_put_total", "counter"),
        ("etcd_mvcc_delete_total", "counter"),
        ("etcd_mvcc_range_total", "counter"),
        ("etcd_mvcc_txn_total", "counter"),
        ("etcd_debugging_mvcc_keys_total", "gauge"),
        ("etcd_debugging_mvcc_watcher_total", "gauge"),
        ("etcd_debugging_mvcc_watch_stream_total", "gauge"),
        ("etcd_debugging_mvcc_slow_watcher_total", "gauge"),
        ("etcd_debugging_mvcc_events_total", "counter"),
        ("etcd_debugging_mvcc_current_revision", "gauge"),
        ("etcd_debugging_mvcc_compact_revision", "gauge"),
        ("etcd_disk_wal_fsync_duration_seconds", "histogram"),
        ("etcd_disk_backend_commit_duration_seconds", "histogram"),
        ("etcd_network_client_grpc_sent_bytes_total", "counter"),
        ("etcd_network_client_grpc_received_bytes_total", "counter"),
        ("grpc_server_started_total", "counter"),
        ("grpc_server_handled_total", "counter"),
        ("grpc_server_msg_received_total", "counter"),
        ("grpc_server_msg_sent_total", "counter"),
        ("process_cpu_seconds_total", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("process_open_fds", "gauge"),
        ("process_max_fds", "gauge"),
        ("process_start_time_seconds", "gauge"),
    ] {
        assert_eq!(types.get(name).map(String::as_str), Some(ty), "{name}");
    }
    // Only with --metrics extensive.
    assert!(!types.contains_key("grpc_server_handling_seconds"));
    assert!(text.contains(
        "# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.\n\
         # TYPE etcd_disk_wal_fsync_duration_seconds histogram\n\
         etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 0\n"
    ));
    assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"8.192\"} 0\n"));
    assert!(!text.contains("etcd_network_peer_round_trip_time_seconds"));
    for line in [
        "etcd_server_id{server_id=\"8e9e05c52164694d\"} 1",
        "etcd_server_version{server_version=\"3.4.0\"} 1",
        "etcd_cluster_version{cluster_version=\"3.4\"} 1",
        "grpc_server_started_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 0",
        "grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 0",
        "grpc_server_msg_sent_total{grpc_method=\"Snapshot\",grpc_service=\"etcdserverpb.Maintenance\",grpc_type=\"server_stream\"} 0",
        "grpc_server_started_total{grpc_method=\"Check\",grpc_service=\"grpc.health.v1.Health\",grpc_type=\"unary\"} 0",
    ] {
        assert!(text.contains(&format!("{line}\n")), "{line}");
    }
    // Every code of every pre-registered method, as go-grpc-prometheus shows them.
    let started = lines
        .iter()
        .filter(|l| l.name == "grpc_server_started_total")
        .count();
    let handled = lines
        .iter()
        .filter(|l| l.name == "grpc_server_handled_total")
        .count();
    assert!(started >= 41, "etcd 3.4 shows 41 methods, here {started}");
    assert_eq!(handled, started * 17);
    assert!(
        !text.contains("v3lockpb"),
        "Lock appears once called, as in etcd"
    );
    assert_eq!(
        value(&lines, "process_start_time_seconds", &[]).map(|v| v > 0.0),
        Some(true)
    );
}

#[test]
fn sampled_series_follow_the_member_and_counters_only_grow() {
    let metrics = Metrics::new(&labels(), false);
    let mut sample = Sample {
        has_leader: true,
        is_leader: true,
        applied_index: 7,
        puts: 2,
        deletes: 3,
        ranges: 5,
        txns: 1,
        live_keys: 1,
        current_revision: 9,
        compact_revision: -1,
        db_size_bytes: 4096,
        db_size_in_use_bytes: 4096,
        watch_streams: 1,
        watchers: 2,
        events: 6,
        ..Sample::default()
    };
    let shared = std::sync::Arc::new(std::sync::Mutex::new(sample));
    let reader = shared.clone();
    metrics.set_sampler(move || *reader.lock().unwrap());
    let (_, text) = metrics.render();
    for line in [
        "etcd_server_has_leader 1",
        "etcd_server_is_leader 1",
        "etcd_server_is_learner 0",
        "etcd_server_proposals_applied_total 7",
        "etcd_mvcc_put_total 2",
        "etcd_mvcc_delete_total 3",
        "etcd_mvcc_range_total 5",
        "etcd_mvcc_txn_total 1",
        "etcd_debugging_mvcc_keys_total 1",
        "etcd_debugging_mvcc_current_revision 9",
        "etcd_debugging_mvcc_compact_revision -1",
        "etcd_mvcc_db_total_size_in_bytes 4096",
        "etcd_debugging_mvcc_watch_stream_total 1",
        "etcd_debugging_mvcc_watcher_total 2",
        "etcd_debugging_mvcc_events_total 6",
    ] {
        assert!(text.contains(&format!("\n{line}\n")), "{line}");
    }
    sample.puts = 5;
    sample.live_keys = 0;
    sample.has_leader = false;
    *shared.lock().unwrap() = sample;
    let (_, text) = metrics.render();
    assert!(text.contains("\netcd_mvcc_put_total 5\n"));
    assert!(text.contains("\netcd_debugging_mvcc_keys_total 0\n"));
    assert!(text.contains("\netcd_server_has_leader 0\n"));

    // The cluster version series follows the sampled version (a downgrade, an upgrade).
    sample.cluster_version = Some((3, 3));
    *shared.lock().unwrap() = sample;
    let (_, text) = metrics.render();
    assert!(text.contains("\netcd_cluster_version{cluster_version=\"3.3\"} 1\n"));
    assert!(
        !text.contains("cluster_version=\"3.4\""),
        "the old series is gone"
    );
}

#[test]
fn pushed_series_move_with_what_they_count() {
    let metrics = Metrics::new(&labels(), false);
    metrics.server.leader_changes_seen.inc();
    {
        let _pending = Pending::new(&metrics.server.proposals_pending);
        let (_, text) = metrics.render();
        assert!(text.contains("\netcd_server_proposals_pending 1\n"));
    }
    metrics.disk.wal_fsync_seconds.observe(0.003);
    let peer = metrics.network.peer(0x8e9e05c52164694d);
    peer.sent_bytes.inc_by(100);
    peer.received_bytes.inc_by(40);
    peer.round_trip_seconds.observe(0.0002);
    let (_, text) = metrics.render();
    parse_exposition(&text).unwrap_or_else(|e| panic!("{e}"));
    for line in [
        "etcd_server_leader_changes_seen_total 1",
        "etcd_server_proposals_pending 0",
        "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 0",
        "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.004\"} 1",
        "etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 1",
        "etcd_disk_wal_fsync_duration_seconds_count 1",
        "etcd_network_peer_sent_bytes_total{To=\"8e9e05c52164694d\"} 100",
        "etcd_network_peer_received_bytes_total{From=\"8e9e05c52164694d\"} 40",
        "etcd_network_peer_round_trip_time_seconds_bucket{To=\"8e9e05c52164694d\",le=\"0.0002\"} 1",
    ] {
        assert!(text.contains(&format!("\n{line}\n")), "{line}");
    }
}

/// A gRPC message frame: flag, length, payload.
fn grpc_message(payload: &[u8]) -> Bytes {
    let mut framed = vec![0];
    framed.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    framed.extend_from_slice(payload);
    Bytes::from(framed)
}

fn trailers(code: &'static str) -> HeaderMap {
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static(code));
    trailers
}

/// A response body of `messages` then trailers with `code`.
fn response(messages: &[&[u8]], code: &'static str) -> Response<Body> {
    let mut frames: Vec<Result<http_body::Frame<Bytes>, tonic::Status>> = messages
        .iter()
        .map(|m| Ok(http_body::Frame::data(grpc_message(m))))
        .collect();
    frames.push(Ok(http_body::Frame::trailers(trailers(code))));
    let stream = futures::stream::iter(frames);
    Response::new(Body::new(http_body_util::StreamBody::new(stream)))
}

async fn read_all<B: http_body::Body + Unpin>(mut body: B) {
    while let Some(frame) = body.frame().await {
        assert!(frame.is_ok());
    }
}

fn grpc_line(text: &str, name: &str, method: &str, extra: &str) -> String {
    let prefix = format!("{name}{{{extra}grpc_method=\"{method}\",");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix}"))
        .to_string()
}

#[tokio::test]
async fn a_unary_call_and_a_canceled_stream_are_counted_as_go_grpc_prometheus_counts() {
    let metrics = Metrics::new(&labels(), true);
    // A Put: one message each way, OK in the trailers.
    let put = metrics.grpc.method("/etcdserverpb.KV/Put");
    assert!(put.is_some());
    let request = MeteredRequestBody::new(
        http_body_util::Full::new(grpc_message(b"put request")),
        put.clone(),
    );
    read_all(request).await;
    let answered = MeteredBody::start(put)(response(&[b"put response!"], "0"));
    read_all(answered.into_body()).await;
    // A Range refused in the headers alone (trailers-only), as tonic sends errors.
    let range = metrics.grpc.method("/etcdserverpb.KV/Range");
    let mut refused = Response::new(Body::empty());
    *refused.headers_mut() = trailers("3");
    drop(MeteredBody::start(range)(refused));
    // A watch stream: two events sent, then the client goes away.
    let watch = metrics.grpc.method("/etcdserverpb.Watch/Watch");
    let streaming = MeteredBody::start(watch)(response(&[b"created", b"event"], "0"));
    let mut body = streaming.into_body();
    body.frame().await.unwrap().unwrap();
    body.frame().await.unwrap().unwrap();
    drop(body);

    let (_, text) = metrics.render();
    parse_exposition(&text).unwrap_or_else(|e| panic!("{e}"));
    let kv = "grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} ";
    assert_eq!(
        grpc_line(&text, "grpc_server_started_total", "Put", ""),
        format!("grpc_server_started_total{{grpc_method=\"Put\",{kv}1")
    );
    assert!(grpc_line(&text, "grpc_server_msg_received_total", "Put", "").ends_with("} 1"));
    assert!(grpc_line(&text, "grpc_server_msg_sent_total", "Put", "").ends_with("} 1"));
    assert!(grpc_line(
        &text,
        "grpc_server_handled_total",
        "Put",
        "grpc_code=\"OK\","
    )
    .ends_with("} 1"));
    assert!(grpc_line(
        &text,
        "grpc_server_handled_total",
        "Range",
        "grpc_code=\"InvalidArgument\","
    )
    .ends_with("} 1"));
    assert!(grpc_line(&text, "grpc_server_msg_sent_total", "Range", "").ends_with("} 0"));
    assert!(grpc_line(&text, "grpc_server_msg_sent_total", "Watch", "").ends_with("} 2"));
    assert!(grpc_line(
        &text,
        "grpc_server_handled_total",
        "Watch",
        "grpc_code=\"Canceled\","
    )
    .ends_with("} 1"));
    assert!(grpc_line(
        &text,
        "grpc_server_handled_total",
        "Watch",
        "grpc_code=\"OK\","
    )
    .ends_with("} 0"));
    // Message bytes, without gRPC's 5-byte frame headers.
    assert!(text.contains("\netcd_network_client_grpc_received_bytes_total 11\n"));
    assert!(text.contains("\netcd_network_client_grpc_sent_bytes_total 25\n"));
    // Extensive: one handling time per handled call.
    assert!(text.contains(
        "\ngrpc_server_handling_seconds_count{grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1\n"
    ));
}
