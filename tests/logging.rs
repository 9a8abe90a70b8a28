//! Log formats: `--log-format json` (or etcd 3.4's `--logger zap`) writes etcd's zap JSON,
//! one object per line; the lines etcd's test suites wait for are there in both formats.

mod common;

use common::TestServer;

/// The lines etcd 3.4's and 3.7's end-to-end suites wait for before using a member.
const AWAITED: [&str; 3] = [
    "enabled capabilities for version",
    "published",
    "ready to serve client requests",
];

/// The server's stderr lines (the harness tags them `[err]`).
fn stderr_lines(logs: &str) -> Vec<&str> {
    logs.lines()
        .filter_map(|line| line.strip_prefix("[err] "))
        .collect()
}

fn json_lines_with_zaps_keys(extra_args: &[&str]) {
    let mut server = TestServer::start(extra_args);
    server.stop();
    let logs = server.logs();
    let lines = stderr_lines(&logs);
    assert!(!lines.is_empty(), "{logs}");
    let mut messages = Vec::new();
    for line in lines {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}\n{logs}"));
        for key in ["level", "ts", "caller", "msg"] {
            assert!(object[key].is_string(), "no {key:?} in {line}");
        }
        messages.push(object["msg"].as_str().unwrap().to_string());
    }
    for awaited in AWAITED {
        assert!(
            messages.iter().any(|m| m.starts_with(awaited)),
            "no message starting {awaited:?}: {messages:#?}"
        );
    }
}

#[test]
fn log_format_json_writes_zaps_lines() {
    json_lines_with_zaps_keys(&["--log-format", "json"]);
}

#[test]
fn logger_zap_writes_zaps_lines_as_etcd_3_4_does() {
    json_lines_with_zaps_keys(&["--logger=zap"]);
}

#[test]
fn text_is_the_default_and_has_the_awaited_lines() {
    let mut server = TestServer::start(&[]);
    server.stop();
    let logs = server.logs();
    let lines = stderr_lines(&logs);
    assert!(
        lines
            .iter()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()),
        "{logs}"
    );
    for awaited in AWAITED {
        assert!(
            lines.iter().any(|l| l.contains(awaited)),
            "{awaited:?}: {logs}"
        );
    }
}
