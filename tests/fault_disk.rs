//! Faults of a member's disk, injected with failpoints (`src/failpoints.rs`): a log fsync
//! that stalls (a slow or hung disk) and one that fails (a broken disk, EIO). A full disk
//! (ENOSPC) is tested on a real one, in `tests/fault_disk_full.rs`. Needs a Cairn built
//! with `--features failpoints`; etcd 3.4's packaged build has no failpoints, so these run
//! against Cairn only. Run them one at a time (`-- --test-threads=1`): a cluster is several
//! processes.

#![cfg(feature = "failpoints")]

mod common;

use std::time::{Duration, Instant};

use common::cluster::TestCluster;
use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};

/// Deadline for a majority to agree on a leader. It bounds a hang; it is not a performance
/// assertion.
const LEADER_WAIT: Duration = Duration::from_secs(20);
/// The lease of the lock: short, so that the new leader revokes it soon.
const LOCK_LEASE_TTL_SECS: i64 = 5;
/// Deadline for the new leader to revoke the lock's lease and another client to take it:
/// the TTL, the new leader's extension of every lease (an election timeout), and slack.
const TAKEOVER_WAIT: Duration = Duration::from_secs(30);
/// How long A goes on keeping its lease alive after B took the lock: longer than the old
/// leader's request timeout (7 s), so that an answer it would give is seen.
const KEEP_ALIVE_ANSWER_WAIT: Duration = Duration::from_secs(12);

/// Takes lock `key` for `lease` when nobody holds it (a create-only txn, as etcd's lock
/// recipes do): whether it was taken.
async fn try_lock(c: &mut etcd_client::Client, key: &str, holder: &str, lease: i64) -> bool {
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            holder,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    match c.txn(txn).await {
        Ok(response) => response.succeeded(),
        Err(_) => false,
    }
}

/// How often client A sends a keep-alive to the old leader.
const KEEP_ALIVE_EVERY: Duration = Duration::from_millis(500);

/// A leader whose log fsync stalls stops leading (its Raft core waits on the disk), and the
/// other two members elect a new leader, which revokes the lock's lease once it expires;
/// another client then takes the lock. Meanwhile client A keeps its lease alive through
/// the old leader, as a lock holder does. The old leader must not go on renewing the lease
/// from its own state, or two clients would hold the lock: its keep-alives confirm the
/// leadership with a quorum first, which a stalled leader cannot (etcd #15247).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_leader_does_not_renew_a_lease_the_new_leader_revoked() {
    let mut c = TestCluster::start_with_failpoints(3, &[]);
    let old = c.wait_for_leader(LEADER_WAIT).await;
    let majority = c.followers(old);

    // Client A holds the lock through the leader.
    let mut a = c.member_client(old).await;
    let lease = a
        .lease_grant(LOCK_LEASE_TTL_SECS, None)
        .await
        .expect("grant")
        .id();
    assert!(
        try_lock(&mut a, "lock", "a", lease).await,
        "A takes the lock"
    );
    // The first keep-alive is sent and answered inside `lease_keep_alive`.
    let (mut keeper, mut answers) = a.lease_keep_alive(lease).await.expect("keep-alive");

    // A keeps the lease alive through the old leader from now on, noting each answer that
    // renews it (TTL above 0) and when it came.
    let renewed_at = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Instant>::new()));
    let keeping = {
        let renewed_at = renewed_at.clone();
        tokio::spawn(async move {
            loop {
                if keeper.keep_alive().await.is_err() {
                    return;
                }
                match answers.message().await {
                    Ok(Some(answer)) if answer.ttl() > 0 => {
                        renewed_at.lock().unwrap().push(Instant::now())
                    }
                    Ok(Some(_)) => {}
                    // An error or the stream's end: A learns it may have lost the lock.
                    Ok(None) | Err(_) => return,
                }
                tokio::time::sleep(KEEP_ALIVE_EVERY).await;
            }
        })
    };

    // The leader's disk stalls on the next log fsync; a write makes it reach one.
    c.set_failpoint(old, "raft_log_before_fsync", "sleep(120000)");
    let mut stuck = c.member_client(old).await;
    let stuck_write = tokio::spawn(async move { stuck.put("trigger", "x", None).await });
    let stalled_at = Instant::now();

    let new = c.wait_for_leader_among(&majority, LEADER_WAIT).await;
    eprintln!(
        "{} leads {:?} after the stall",
        c.name(new),
        stalled_at.elapsed()
    );

    // Client B takes the lock once the new leader has revoked A's lease.
    let mut b = c.client_of(&majority).await;
    let b_lease = b
        .lease_grant(60, None)
        .await
        .expect("grant on the majority")
        .id();
    let deadline = Instant::now() + TAKEOVER_WAIT;
    while !try_lock(&mut b, "lock", "b", b_lease).await {
        assert!(
            Instant::now() < deadline,
            "B did not get the lock within {TAKEOVER_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b_locked_at = Instant::now();
    eprintln!(
        "B holds the lock {:?} after the stall",
        stalled_at.elapsed()
    );

    // A goes on sending keep-alives a while longer: none may renew the lease now.
    tokio::time::sleep(KEEP_ALIVE_ANSWER_WAIT).await;
    keeping.abort();
    stuck_write.abort();
    let renewals = renewed_at.lock().unwrap().clone();
    let after_b = renewals.iter().filter(|t| **t > b_locked_at).count();
    eprintln!(
        "the old leader renewed the lease {} times, {after_b} of them while B held the lock",
        renewals.len()
    );
    assert_eq!(
        after_b, 0,
        "the stalled old leader renewed lease {lease:x} while B held the lock: two holders"
    );
}

/// Deadline for a member whose disk failed to exit.
const EXIT_WAIT: Duration = Duration::from_secs(20);

/// A follower whose disk fails (every log fsync answers an I/O error) while the cluster
/// takes writes: its Raft core stops on the error, and the member exits with an error (as
/// etcd exits on a failed WAL fsync) instead of staying up with frozen data and a SERVING
/// health, so that its clients fail over. The two others go on taking writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_whose_disk_fails_exits_and_the_others_go_on() {
    let mut c = TestCluster::start_with_failpoints(3, &[]);
    let leader = c.wait_for_leader(LEADER_WAIT).await;
    let follower = c.followers(leader)[0];

    c.set_failpoint(follower, "raft_log_before_fsync", "return");
    let mut lc = c.member_client(leader).await;
    for i in 0..20 {
        lc.put(format!("full/{i}"), "v", None)
            .await
            .unwrap_or_else(|e| panic!("put {i} with one follower's disk failing: {e}"));
    }
    let status = c.wait_exit(follower, EXIT_WAIT).unwrap_or_else(|| {
        panic!(
            "{} still runs {EXIT_WAIT:?} after its disk failed",
            c.name(follower)
        )
    });
    assert!(!status.success(), "exit status {status}");
    assert!(
        c.logs(follower).contains("raft stopped on a fatal error"),
        "the member says why it exits"
    );
    for i in 20..40 {
        lc.put(format!("full/{i}"), "v", None)
            .await
            .unwrap_or_else(|e| panic!("put {i} after the member exited: {e}"));
    }
}
