//! Crashes at chosen steps, injected with failpoints (`src/failpoints.rs`): a `panic`
//! failpoint aborts the process there, without cleanup, as a power cut or `kill -9` at that
//! instant would. Needs a Cairn built with `--features failpoints`; etcd 3.4's packaged
//! build has no failpoints, so these run against Cairn only. Run them one at a time
//! (`-- --test-threads=1`): a cluster is several processes.

#![cfg(feature = "failpoints")]

mod common;

use std::time::Duration;

use common::cluster::TestCluster;
use common::rev;
use etcd_client::WatchOptions;
use tokio::time::timeout;

/// Deadline for a cluster to agree on a leader. It bounds a hang; it is not a performance
/// assertion.
const LEADER_WAIT: Duration = Duration::from_secs(20);
/// Deadline for a member started with a crashing failpoint to reach it and die.
const CRASH_WAIT: Duration = Duration::from_secs(60);
/// Deadline for a restarted member to catch up.
const CATCH_UP_WAIT: Duration = Duration::from_secs(60);
/// Puts made while the follower is down: each its own Raft entry, far more than
/// `--snapshot-count`, so the leader's log no longer has what the follower lacks and it
/// must install a snapshot.
const PUTS_WHILE_DOWN: usize = 100;
const SNAPSHOT_COUNT: &str = "20";
/// Requests kept in the log after a snapshot: few, so the follower's position is purged.
const CATCHUP: &str = "10";

/// The steps of a follower's snapshot install, in order.
const INSTALL_STEPS: [&str; 4] = [
    "snapshot_install_before_marker",
    "snapshot_install_after_marker",
    "snapshot_install_after_load",
    "snapshot_install_after_finish",
];

/// A follower that lags behind the leader's log gets a snapshot, and crashes at each step
/// of installing it in turn. Restarted, it must come up and catch up every time: the log
/// that the snapshot replaces is purged only once a restart would redo the install, so a
/// crash never leaves a state behind a purged log. After a restart that redid an install,
/// its watches still report each change at its own revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_at_each_step_of_a_snapshot_install_leaves_a_member_that_restarts() {
    let mut c = TestCluster::start_with_failpoints(
        3,
        &[
            "--snapshot-count",
            SNAPSHOT_COUNT,
            "--snapshot-catchup-entries",
            CATCHUP,
        ],
    );
    let leader = c.wait_for_leader(LEADER_WAIT).await;
    let follower = c.followers(leader)[0];
    let mut lc = c.member_client(leader).await;
    let mut written: i64 = 0;
    for step in INSTALL_STEPS {
        c.stop(follower);
        for _ in 0..PUTS_WHILE_DOWN {
            lc.put(format!("k/{written:05}"), "v", None)
                .await
                .expect("put while the follower is down");
            written += 1;
        }

        c.set_startup_failpoints(follower, &format!("{step}=panic"));
        c.spawn_member(follower);
        let status = c.wait_exit(follower, CRASH_WAIT).unwrap_or_else(|| {
            panic!(
                "{} did not reach {step} within {CRASH_WAIT:?}",
                c.name(follower)
            )
        });
        assert!(!status.success(), "crash at {step}: {status}");
        assert!(
            c.logs(follower)
                .contains(&format!("failpoint {step} panic")),
            "crashed at {step}"
        );

        // Restarted without failpoints, it comes up (start_member waits for its ready
        // line) and catches up.
        c.start_member(follower);
        c.wait_key_count(follower, "k/", written, CATCH_UP_WAIT)
            .await;

        // Its watches see the next change at the revision the put got.
        let mut fc = c.member_client(follower).await;
        let mut stream = fc
            .watch("w", Some(WatchOptions::new()))
            .await
            .expect("watch on the restarted follower");
        let created = stream.message().await.expect("created");
        assert!(created.is_some_and(|r| r.created()));
        let put = lc.put("w", step, None).await.expect("put");
        let event = timeout(CATCH_UP_WAIT, stream.message())
            .await
            .expect("an event")
            .expect("watch answer")
            .expect("watch open");
        let kv = event.events()[0].kv().expect("kv");
        assert_eq!(
            (kv.mod_revision(), kv.value_str().unwrap()),
            (rev(put.header()), step),
            "after a crash at {step}"
        );
    }
}
