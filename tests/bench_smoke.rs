//! A smoke run of the load generator against a real server: a few hundred requests of each
//! workload Cairn serves, all answered. Measures nothing; benchmarks live in bench/.

mod common;

use std::process::Command;

use common::TestServer;

fn bench(server: &TestServer, workload: &[&str]) -> String {
    let endpoint = server.endpoint();
    let endpoint = endpoint.trim_start_matches("http://");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn-bench"))
        .args([
            "--endpoints",
            endpoint,
            "--clients",
            "10",
            "--total",
            "300",
            "--json",
        ])
        .args(workload)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn load_generator_runs_put_range_and_txn_without_errors() {
    let server = TestServer::start(&[]);
    let report = bench(
        &server,
        &["put", "--val-size", "64", "--key-space-size", "100"],
    );
    assert!(report.contains("\"errors\":0"), "{report}");
    assert!(report.contains("\"ok\":300"), "{report}");
    // The puts landed, inside the key space asked for.
    let mut c = server.client().await;
    let keys = c
        .get(
            "",
            Some(
                etcd_client::GetOptions::new()
                    .with_all_keys()
                    .with_count_only(),
            ),
        )
        .await
        .unwrap();
    assert!((1..=100).contains(&keys.count()), "{} keys", keys.count());

    for workload in [
        &["range", "foo"][..],
        &["range", "foo", "--consistency", "s"],
        &["txn-put", "--txn-ops", "2", "--key-space-size", "100"],
    ] {
        let report = bench(&server, workload);
        assert!(report.contains("\"errors\":0"), "{workload:?}: {report}");
        assert!(report.contains("\"ok\":300"), "{workload:?}: {report}");
    }
}
