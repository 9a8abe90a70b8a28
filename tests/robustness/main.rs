//! Robustness under faults, checked on recorded histories.
//!
//! Each scenario starts a 3-member cluster, runs concurrent clients on every member
//! (`traffic.rs`) and watchers that resume after a broken stream (`watches.rs`), and injects
//! faults one at a time (`faults.rs`). Then it heals everything, waits until every member has
//! the final revision, and checks with `cairn_history`:
//! - the members' event logs (a watch from revision 1) are identical, no acknowledged write
//!   is missing from them, and nothing is in them that no client wrote;
//! - the KV history is linearizable (revisions included);
//! - every watch was ordered, unique, atomic, reliable across resumes, prev_kv-correct and
//!   bookmarkable;
//! - every member ends with the same keys, those the event log ends with.
//!
//! Profiles (`CAIRN_ROBUSTNESS_PROFILE`): `short` (the default, in CI: each scenario well
//! under a minute, every fault kind at least once) and `long` (soak: longer runs and the
//! kill-9 loop with 1,000 kills). `CAIRN_ROBUSTNESS_OUT=DIR` writes each run's summary,
//! history and watch histories there as JSON (`compat/robustness` uses it for the report).
//!
//! With `CAIRN_TEST_SERVER_BIN=/usr/bin/etcd` the same scenarios run against etcd 3.4,
//! without the faults that need Cairn's failpoints. A check that fails on etcd is a bug of
//! the checks. Run one test at a time (`-- --test-threads=1`).

#[path = "../common/mod.rs"]
#[allow(dead_code)]
mod common;
mod faults;
mod traffic;
mod watches;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cairn_history::{Event, Operation, Outcome};
use common::cluster::TestCluster;
use faults::{Fault, FaultRecord};
use serde::Serialize;
use traffic::{Recorder, Rng, TrafficConfig, KEY_PREFIX};

/// Deadline for a leader after healing, and for every member to catch up: bounds a hang.
const HEAL_WAIT: Duration = Duration::from_secs(60);
/// Time the linearizability search may take before it gives up (then the test fails:
/// an undecided history is not a pass).
const CHECK_BUDGET: Duration = Duration::from_secs(120);
/// Pause between two faults: the cluster recovers, traffic goes on.
const BETWEEN_FAULTS: Duration = Duration::from_millis(500);

fn long_profile() -> bool {
    std::env::var("CAIRN_ROBUSTNESS_PROFILE").is_ok_and(|p| p == "long")
}

/// Whether the server under test serves Cairn's failpoints: this crate's own build with the
/// `failpoints` feature, or any binary `CAIRN_TEST_SERVER_FAILPOINTS=1` vouches for.
fn server_has_failpoints() -> bool {
    match std::env::var("CAIRN_TEST_SERVER_BIN") {
        Ok(bin) if !bin.is_empty() => {
            std::env::var("CAIRN_TEST_SERVER_FAILPOINTS").is_ok_and(|v| v == "1")
        }
        _ => cfg!(feature = "failpoints"),
    }
}

/// How a scenario ends its fault schedule.
enum Schedule {
    /// Faults in turn, until this much time has passed.
    For(Duration),
    /// Exactly this many faults.
    Count(usize),
}

struct Scenario {
    name: &'static str,
    traffic: TrafficConfig,
    faults: Vec<Fault>,
    schedule: Schedule,
    /// Extra flags for every member.
    member_args: Vec<&'static str>,
}

#[derive(Default, Serialize, Clone, Copy)]
struct Counts {
    ok: usize,
    failed: usize,
    unknown: usize,
}

#[derive(Serialize)]
struct Summary {
    scenario: String,
    server: String,
    operations: usize,
    counts: Counts,
    /// Outcomes of the calls made while each kind of fault was active or healing.
    by_fault: BTreeMap<String, Counts>,
    faults: Vec<FaultRecord>,
    watch_responses: usize,
    final_revision: i64,
    violations: Vec<String>,
    check_seconds: f64,
}

fn count(counts: &mut Counts, op: &Operation) {
    match op.outcome {
        Outcome::Ok(_) => counts.ok += 1,
        Outcome::Failed(_) => counts.failed += 1,
        Outcome::Unknown(_) => counts.unknown += 1,
    }
}

/// The fault that was active or healing when `op` was called, by the faults' start times.
fn fault_of(op: &Operation, faults: &[FaultRecord]) -> String {
    faults
        .iter()
        .rev()
        .find(|f| f.start_ns <= op.call_ns)
        .map_or("none".to_string(), |f| format!("{:?}", f.fault))
}

/// Scenarios run one at a time even when the test harness runs tests in parallel: each is
/// a cluster under faults, and two at once would measure each other.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn run(scenario: Scenario) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let with_failpoints = server_has_failpoints();
    let faults: Vec<Fault> = scenario
        .faults
        .iter()
        .copied()
        .filter(|f| with_failpoints || !f.needs_failpoints())
        .collect();
    assert!(!faults.is_empty(), "no fault of {} applies", scenario.name);
    let needs_failpoints = faults.iter().any(|f| f.needs_failpoints());
    let mut c = if needs_failpoints {
        TestCluster::start_with_failpoints(3, &scenario.member_args)
    } else {
        TestCluster::start_proxied(3, &scenario.member_args)
    };
    for i in 0..c.len() {
        c.member_id(i).await;
    }
    let seed = std::env::var("CAIRN_ROBUSTNESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!(
        "scenario {}: seed {seed} (CAIRN_ROBUSTNESS_SEED)",
        scenario.name
    );

    let recorder = Recorder::new();
    let (final_tx, final_rx) = tokio::sync::watch::channel(None);
    let mut clients = Vec::new();
    for id in 0..scenario.traffic.clients {
        clients.push(tokio::spawn(traffic::run_client(
            id as u32,
            c.endpoint(id % c.len()),
            scenario.traffic.clone(),
            seed,
            recorder.clone(),
        )));
    }
    let mut watchers = Vec::new();
    for i in 0..c.len() {
        watchers.push(tokio::spawn(watches::run_watcher(
            i as u32,
            c.endpoint(i),
            1,
            recorder.clone(),
            final_rx.clone(),
        )));
    }

    let mut rng = Rng::new(seed);
    let mut records = Vec::new();
    let mut crash_round = 0;
    let started = Instant::now();
    loop {
        let more = match scenario.schedule {
            Schedule::For(d) => started.elapsed() < d,
            Schedule::Count(n) => records.len() < n,
        };
        if !more {
            break;
        }
        let fault = faults[records.len() % faults.len()];
        let record = faults::inject(&mut c, fault, &mut rng, &mut crash_round, &recorder).await;
        eprintln!(
            "[{:>7.1}s] {:?} on {} {}",
            record.start_ns as f64 / 1e9,
            record.fault,
            record.target,
            record.detail
        );
        records.push(record);
        tokio::time::sleep(BETWEEN_FAULTS).await;
    }

    // Heal: every member runs, the cluster has a leader; then the traffic stops.
    c.heal();
    let down: Vec<usize> = (0..c.len()).filter(|&i| !c.is_running(i)).collect();
    if !down.is_empty() {
        tokio::task::block_in_place(|| c.restart_many(&down));
    }
    c.wait_for_leader(HEAL_WAIT).await;
    recorder.stop();
    for client in clients {
        client.await.expect("client task");
    }
    let operations = recorder.operations();

    let mut violations = Vec::new();
    let final_revision = {
        let mut client = c.client().await;
        let r = client
            .get(
                KEY_PREFIX,
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .expect("final read");
        r.header().unwrap().revision()
    };
    final_tx.send(Some(final_revision)).unwrap();

    // Every member: the same event log, and the same keys at the final revision.
    let mut logs: Vec<Vec<Event>> = Vec::new();
    let mut finals = Vec::new();
    for i in 0..c.len() {
        let endpoint = c.endpoint(i);
        let log = tokio::time::timeout(
            HEAL_WAIT,
            watches::read_event_log(&endpoint, final_revision),
        )
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{}: event log not complete within {HEAL_WAIT:?}",
                c.name(i)
            ))
        });
        match log {
            Ok(log) => logs.push(log),
            Err(e) => violations.push(e),
        }
        let mut client = c.member_client(i).await;
        let r = client
            .get(
                KEY_PREFIX,
                Some(
                    etcd_client::GetOptions::new()
                        .with_prefix()
                        .with_serializable()
                        .with_revision(final_revision),
                ),
            )
            .await
            .expect("final serializable read");
        let kvs: Vec<(String, String, i64)> = r
            .kvs()
            .iter()
            .map(|kv| {
                (
                    kv.key_str().unwrap().to_string(),
                    kv.value_str().unwrap().to_string(),
                    kv.mod_revision(),
                )
            })
            .collect();
        finals.push(kvs);
    }
    for i in 1..logs.len() {
        if logs[i] != logs[0] {
            violations.push(format!(
                "members' event logs differ: {} has {} events, {} has {}",
                c.name(0),
                logs[0].len(),
                c.name(i),
                logs[i].len()
            ));
        }
    }
    for i in 1..finals.len() {
        if finals[i] != finals[0] {
            violations.push(format!(
                "members' keys at revision {final_revision} differ: {} {:?} vs {} {:?}",
                c.name(0),
                finals[0],
                c.name(i),
                finals[i]
            ));
        }
    }
    let log = logs.first().cloned().unwrap_or_default();
    let mut last_state: BTreeMap<String, (String, i64)> = BTreeMap::new();
    for e in &log {
        match &e.value {
            Some(v) => {
                last_state.insert(e.key.clone(), (v.clone(), e.mod_revision));
            }
            None => {
                last_state.remove(&e.key);
            }
        }
    }
    let expected: Vec<(String, String, i64)> = last_state
        .into_iter()
        .map(|(k, (v, r))| (k, v, r))
        .collect();
    if finals.first() != Some(&expected) {
        violations.push(format!(
            "keys at revision {final_revision} {:?} are not what the event log ends with {expected:?}",
            finals.first()
        ));
    }

    let mut watch_histories = Vec::new();
    for w in watchers {
        match tokio::time::timeout(HEAL_WAIT, w).await {
            Ok(h) => watch_histories.push(h.expect("watcher task")),
            Err(_) => violations.push(format!(
                "a watcher did not see revision {final_revision} within {HEAL_WAIT:?}"
            )),
        }
    }

    let check_started = Instant::now();
    violations.extend(
        cairn_history::check_event_log(&operations, &log)
            .into_iter()
            .map(|v| format!("event log: {v}")),
    );
    match cairn_history::check_history(&operations, Some(&log), CHECK_BUDGET) {
        cairn_history::LinearizabilityResult::Linearizable => {}
        cairn_history::LinearizabilityResult::NotLinearizable(report) => {
            violations.push(format!("KV history is not linearizable: {report}"))
        }
        other => violations.push(format!("KV history: {other:?}")),
    }
    violations.extend(
        cairn_history::check_watches(&log, &watch_histories)
            .into_iter()
            .map(|v| format!("watch: {v}")),
    );
    let check_seconds = check_started.elapsed().as_secs_f64();

    let mut counts = Counts::default();
    let mut by_fault: BTreeMap<String, Counts> = BTreeMap::new();
    for op in &operations {
        count(&mut counts, op);
        count(by_fault.entry(fault_of(op, &records)).or_default(), op);
    }
    let summary = Summary {
        scenario: scenario.name.to_string(),
        server: common::server_bin().display().to_string(),
        operations: operations.len(),
        counts,
        by_fault,
        faults: records,
        watch_responses: watch_histories
            .iter()
            .flat_map(|w| &w.streams)
            .map(|s| s.responses.len())
            .sum(),
        final_revision,
        violations: violations.clone(),
        check_seconds,
    };
    eprintln!(
        "scenario {}: {} operations ({} ok, {} failed, {} unknown), {} faults, final revision {}, \
         {} watch responses, checked in {:.1}s, {} violations",
        summary.scenario,
        summary.operations,
        counts.ok,
        counts.failed,
        counts.unknown,
        summary.faults.len(),
        final_revision,
        summary.watch_responses,
        check_seconds,
        violations.len()
    );
    for (fault, n) in &summary.by_fault {
        eprintln!(
            "  {fault:<18} ok {:>6} failed {:>5} unknown {:>5}",
            n.ok, n.failed, n.unknown
        );
    }
    if let Ok(dir) = std::env::var("CAIRN_ROBUSTNESS_OUT") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).expect("create CAIRN_ROBUSTNESS_OUT");
        let write = |name: &str, value: &dyn erased::Json| {
            std::fs::write(
                dir.join(format!("{}.{name}.json", scenario.name)),
                value.json(),
            )
            .expect("write report");
        };
        write("summary", &summary);
        write("history", &operations);
        write("watches", &watch_histories);
        write("events", &log);
    }
    assert!(
        violations.is_empty(),
        "scenario {}: {} violations (seed {seed}):\n{}",
        scenario.name,
        violations.len(),
        violations.join("\n")
    );
}

/// Serialising the report's parts through one helper.
mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string_pretty(self).expect("serialise")
        }
    }
}

/// A timed schedule: `CAIRN_ROBUSTNESS_SECONDS` if set (the availability comparison runs
/// 60 s), else the profile's length.
fn short_or_long(short: Duration, long: Duration) -> Schedule {
    let seconds = std::env::var("CAIRN_ROBUSTNESS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    Schedule::For(match seconds {
        Some(s) => Duration::from_secs(s),
        None if long_profile() => long,
        None => short,
    })
}

/// The availability schedule: 6 clients on 5 keys doing get, put, CAS txn and delete with
/// 1.5 s deadlines, one kill -9, pause or partition of the leader or a follower after
/// another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_pause_partition() {
    run(Scenario {
        name: "kill_pause_partition",
        traffic: TrafficConfig {
            clients: 6,
            keys: 5,
            op_timeout: Duration::from_millis(1500),
            leases: false,
        },
        faults: vec![
            Fault::KillLeader,
            Fault::PauseFollower,
            Fault::PartitionLeader,
            Fault::KillFollower,
            Fault::PauseLeader,
            Fault::PartitionFollower,
        ],
        schedule: short_or_long(Duration::from_secs(30), Duration::from_secs(600)),
        member_args: vec![],
    })
    .await;
}

/// A one-way partition, a slow peer network, and a follower removed and added back with
/// its data wiped, with leases in the traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_way_partition_slow_network_member_replace() {
    let rounds = if long_profile() { 10 } else { 1 };
    let faults = vec![
        Fault::OneWayLeaderToFollower,
        Fault::SlowNetwork,
        Fault::ReplaceFollower,
    ];
    run(Scenario {
        name: "one_way_partition_slow_network_member_replace",
        traffic: TrafficConfig {
            clients: 6,
            keys: 8,
            op_timeout: Duration::from_secs(3),
            leases: true,
        },
        schedule: Schedule::Count(faults.len() * rounds),
        faults,
        member_args: vec!["--snapshot-count", "500"],
    })
    .await;
}

/// Disk faults and crashes at each failpoint, with leases in the traffic and frequent
/// snapshots (so that snapshot builds crash too).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disk_faults_and_crashes_at_failpoints() {
    if !server_has_failpoints() {
        eprintln!("skipped: the server has no failpoints");
        return;
    }
    let crash_points = faults::CRASH_POINTS.len();
    let mut faults = vec![Fault::SlowFsyncLeader, Fault::DiskFullFollower];
    faults.extend(std::iter::repeat_n(Fault::CrashAtFailpoint, crash_points));
    let rounds = if long_profile() { 5 } else { 1 };
    run(Scenario {
        name: "disk_faults_and_crashes_at_failpoints",
        traffic: TrafficConfig {
            clients: 6,
            keys: 8,
            op_timeout: Duration::from_secs(3),
            leases: true,
        },
        schedule: Schedule::Count(faults.len() * rounds),
        faults,
        member_args: vec!["--snapshot-count", "200"],
    })
    .await;
}

/// Kill -9 of a random member, again and again, under write load: 1,000 kills in the long
/// profile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_loop() {
    let kills = if long_profile() { 1000 } else { 6 };
    run(Scenario {
        name: "kill_loop",
        traffic: TrafficConfig {
            clients: 6,
            keys: 10,
            op_timeout: Duration::from_secs(3),
            leases: true,
        },
        faults: vec![Fault::KillLeader, Fault::KillFollower, Fault::KillFollower],
        schedule: Schedule::Count(kills),
        member_args: vec!["--snapshot-count", "1000"],
    })
    .await;
}
