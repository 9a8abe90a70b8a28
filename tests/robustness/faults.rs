//! The faults a run injects, one at a time, each healed before the next: kill -9 and
//! restart, SIGSTOP pauses past the election timeout, peer partitions both ways and one
//! way and a slow peer network (through the harness's per-member proxies), a member
//! removed and added back with its data wiped, and, where the server has failpoints, a
//! slow fsync, a full disk and a crash at a named failpoint.

use std::time::Duration;

use serde::Serialize;

use super::common::cluster::TestCluster;
use super::traffic::{Recorder, Rng};

/// How long a killed member stays down before its restart.
const KILL_DOWN_TIME: Duration = Duration::from_millis(1000);
/// Longer than the election timeout (1 s), so that the others elect a new leader.
const PAUSE_TIME: Duration = Duration::from_millis(2500);
const PARTITION_TIME: Duration = Duration::from_millis(2500);
const SLOW_DISK_TIME: Duration = Duration::from_millis(3000);
const SLOW_NETWORK_TIME: Duration = Duration::from_millis(3000);
/// Added to every peer message while the network is slow: more than a heartbeat, less
/// than an election timeout.
const SLOW_NETWORK_DELAY: Duration = Duration::from_millis(200);
/// Time for a membership change to be accepted (a cluster that just healed refuses them
/// for a while as unhealthy) and for a removed member to exit.
const MEMBERSHIP_WAIT: Duration = Duration::from_secs(30);
/// A slow disk: each log fsync of the member stalls this long.
const SLOW_FSYNC: &str = "sleep(200)";
/// Time for a member whose failpoint crashes it to reach the point under traffic.
const CRASH_WAIT: Duration = Duration::from_secs(15);

/// Cairn's failpoints that a crash is injected at: every step of storing and applying an
/// entry, of sending it, and of building a snapshot.
pub const CRASH_POINTS: &[&str] = &[
    "raft_log_before_append",
    "raft_log_before_fsync",
    "raft_log_after_fsync",
    "apply_before_commit",
    "apply_after_commit",
    "raft_before_send_append",
    "snapshot_build_before_write",
    "snapshot_build_before_rename",
    "watch_before_send",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Fault {
    KillLeader,
    KillFollower,
    PauseLeader,
    PauseFollower,
    PartitionLeader,
    PartitionFollower,
    /// Nothing the leader sends reaches one follower; the follower still reaches it.
    OneWayLeaderToFollower,
    /// Every peer message is delayed.
    SlowNetwork,
    /// A follower is removed, its data wiped, and it is added back as a new member.
    ReplaceFollower,
    /// Needs failpoints (Cairn only).
    SlowFsyncLeader,
    /// Needs failpoints: every log fsync of a follower fails (ENOSPC), and it exits.
    DiskFullFollower,
    /// Needs failpoints: a member crashes at the point; `CRASH_POINTS` in turn.
    CrashAtFailpoint,
}

impl Fault {
    pub fn needs_failpoints(self) -> bool {
        matches!(
            self,
            Fault::SlowFsyncLeader | Fault::DiskFullFollower | Fault::CrashAtFailpoint
        )
    }
}

/// One injected fault, for the report.
#[derive(Clone, Debug, Serialize)]
pub struct FaultRecord {
    pub fault: Fault,
    pub target: String,
    pub detail: String,
    pub start_ns: u64,
    /// When it was healed (the member restarted, thawed, reconnected).
    pub end_ns: u64,
}

/// The member the running members agree leads, if they agree within a few seconds.
pub async fn current_leader(c: &mut TestCluster) -> Option<usize> {
    for _ in 0..50 {
        let mut votes: Vec<u64> = Vec::new();
        for i in c.running() {
            let probe = async {
                let mut client = c.member_client(i).await;
                client.status().await.ok().map(|s| s.leader())
            };
            if let Ok(Some(leader)) = tokio::time::timeout(Duration::from_secs(1), probe).await {
                if leader != 0 {
                    votes.push(leader);
                }
            }
        }
        votes.sort_unstable();
        let majority = votes
            .chunk_by(|a, b| a == b)
            .max_by_key(|run| run.len())
            .filter(|run| run.len() * 2 > c.len());
        if let Some(i) = majority.and_then(|run| c.index_of_id(run[0])) {
            if c.is_running(i) {
                return Some(i);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Injects `fault` and heals it; blocking steps (restarts) run off the async workers.
pub async fn inject(
    c: &mut TestCluster,
    fault: Fault,
    rng: &mut Rng,
    crash_round: &mut usize,
    recorder: &Recorder,
) -> FaultRecord {
    let leader = current_leader(c).await;
    let running = c.running();
    let pick = |rng: &mut Rng, among: &[usize]| among[rng.below(among.len())];
    let follower = {
        let followers: Vec<usize> = running
            .iter()
            .copied()
            .filter(|&i| Some(i) != leader)
            .collect();
        pick(rng, &followers)
    };
    // Without an agreed leader, any member stands in for it.
    let leader = leader.unwrap_or_else(|| pick(rng, &running));
    let target = match fault {
        Fault::KillLeader
        | Fault::PauseLeader
        | Fault::PartitionLeader
        | Fault::SlowFsyncLeader => leader,
        Fault::KillFollower
        | Fault::PauseFollower
        | Fault::PartitionFollower
        | Fault::OneWayLeaderToFollower
        | Fault::ReplaceFollower
        | Fault::DiskFullFollower => follower,
        Fault::SlowNetwork => leader,
        Fault::CrashAtFailpoint => {
            if CRASH_POINTS[*crash_round % CRASH_POINTS.len()] == "raft_before_send_append" {
                leader
            } else {
                pick(rng, &running)
            }
        }
    };
    let start_ns = recorder.now_ns();
    let mut detail = String::new();
    match fault {
        Fault::KillLeader | Fault::KillFollower => {
            c.kill9(target);
            tokio::time::sleep(KILL_DOWN_TIME).await;
            tokio::task::block_in_place(|| c.restart(target));
        }
        Fault::PauseLeader | Fault::PauseFollower => {
            c.pause(target);
            tokio::time::sleep(PAUSE_TIME).await;
            c.resume(target);
        }
        Fault::PartitionLeader | Fault::PartitionFollower => {
            c.partition(&[target]);
            tokio::time::sleep(PARTITION_TIME).await;
            c.heal();
        }
        Fault::OneWayLeaderToFollower => {
            c.partition_one_way(leader, target);
            detail = format!("from {}", c.name(leader));
            tokio::time::sleep(PARTITION_TIME).await;
            c.heal();
        }
        Fault::SlowNetwork => {
            c.delay_peer_network(SLOW_NETWORK_DELAY);
            detail = format!("{SLOW_NETWORK_DELAY:?} on every peer link");
            tokio::time::sleep(SLOW_NETWORK_TIME).await;
            c.heal();
        }
        Fault::ReplaceFollower => detail = replace(c, target).await,
        Fault::SlowFsyncLeader => {
            c.set_failpoint(target, "raft_log_before_fsync", SLOW_FSYNC);
            tokio::time::sleep(SLOW_DISK_TIME).await;
            c.clear_failpoint(target, "raft_log_before_fsync");
        }
        Fault::DiskFullFollower => {
            detail = crash_and_restart(c, target, "raft_log_before_fsync", "return");
        }
        Fault::CrashAtFailpoint => {
            let point = CRASH_POINTS[*crash_round % CRASH_POINTS.len()];
            *crash_round += 1;
            detail = format!("{point}: {}", crash_and_restart(c, target, point, "panic"));
        }
    }
    FaultRecord {
        fault,
        target: c.name(target).to_string(),
        detail,
        start_ns,
        end_ns: recorder.now_ns(),
    }
}

/// Sets `point` to `action` on `target`, waits for the member to exit there, restarts it.
fn crash_and_restart(c: &mut TestCluster, target: usize, point: &str, action: &str) -> String {
    c.set_failpoint(target, point, action);
    tokio::task::block_in_place(|| match c.wait_exit(target, CRASH_WAIT) {
        Some(status) => {
            c.restart(target);
            format!("exited ({status}), restarted")
        }
        None => {
            c.clear_failpoint(target, point);
            format!("not reached within {CRASH_WAIT:?}")
        }
    })
}

/// Removes member `target`, waits for it to exit, wipes its data and adds it back under a
/// new ID with the same peer URL, then starts it. What happened, for the report.
async fn replace(c: &mut TestCluster, target: usize) -> String {
    let old_id = c.member_id(target).await;
    let others: Vec<usize> = c.running().into_iter().filter(|&i| i != target).collect();
    let mut client = c.client_of(&others).await;
    let deadline = tokio::time::Instant::now() + MEMBERSHIP_WAIT;
    let mut last_error = String::new();
    let removed = loop {
        match client.member_remove(old_id).await {
            Ok(_) => break true,
            // Already gone: an earlier try was applied although its answer was lost.
            Err(e) if e.to_string().contains("member not found") => break true,
            Err(e) => last_error = e.to_string(),
        }
        if tokio::time::Instant::now() >= deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if !removed {
        return format!("member remove refused: {last_error}");
    }
    tokio::task::block_in_place(|| {
        if c.wait_exit(target, MEMBERSHIP_WAIT).is_none() {
            c.kill9(target);
        }
    });
    c.wipe_for_rejoin(target);
    let url = c.peer_url(target);
    let deadline = tokio::time::Instant::now() + MEMBERSHIP_WAIT;
    let new_id = loop {
        match client.member_add([url.clone()], None).await {
            Ok(r) => break r.member().map(|m| m.id()),
            Err(e) => last_error = e.to_string(),
        }
        if tokio::time::Instant::now() >= deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let Some(new_id) = new_id else {
        panic!("member add of {url} refused for {MEMBERSHIP_WAIT:?}: {last_error}");
    };
    tokio::task::block_in_place(|| c.start_member(target));
    let started_as = c.member_id(target).await;
    assert_eq!(
        started_as, new_id,
        "the member rejoined under the ID the add gave"
    );
    format!("removed {old_id:x}, added back as {new_id:x}")
}
