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
    // etcd's own first line, which harnesses parse: the release whose API Cairn serves.
    assert!(text.starts_with("etcd Version: 3.7.3\n"), "{text}");
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

/// A token setting Cairn cannot honour stops it before it serves, saying why, rather than
/// serving with other tokens than the user asked for.
#[test]
fn an_unusable_auth_token_setting_fails_before_start() {
    let dir = tempfile::tempdir().unwrap();
    for (option, why) in [
        ("bogus", "unknown token type"),
        ("jwt,sign-method=RS256", "no pub-key or priv-key"),
        ("jwt,sign-method=ES512,priv-key=/nonexistent", "ES512"),
        (
            "jwt,sign-method=HS256,priv-key=/nonexistent/key",
            "cannot read priv-key",
        ),
    ] {
        let out = cairn()
            .args(["--data-dir", &dir.path().join("data").to_string_lossy()])
            // Any free ports: the refusal comes after the ports are bound.
            .args(["--listen-client-urls", "http://127.0.0.1:0"])
            .args(["--listen-peer-urls", "http://127.0.0.1:0"])
            .arg(format!("--auth-token={option}"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{option}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(err.contains(why), "{option}: {err}");
    }
}
