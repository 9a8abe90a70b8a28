//! The command line as users meet it before a server starts: `--version` and refusals.

use std::process::Command;

fn cairn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
}

#[test]
fn version_names_the_etcd_api_and_cairn() {
    let out = cairn().arg("--version").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("etcd Version: 3.4."), "{text}");
    assert!(text.contains("Cairn Version: "), "{text}");
}

#[test]
fn unknown_flag_fails_with_a_clear_message() {
    let out = cairn().arg("--no-such-flag").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--no-such-flag"), "{err}");
}

#[test]
fn client_tls_is_refused_rather_than_served_in_plaintext() {
    let out = cairn()
        .args(["--cert-file", "server.crt"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn invalid_values_fail_before_start() {
    let out = cairn()
        .args(["--initial-cluster-state", "sideways"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("initial-cluster-state"), "{err}");
}
