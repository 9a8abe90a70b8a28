//! Network partitions, made by the tests themselves: every member's peer traffic passes a
//! fault-injecting proxy (`tests/common/proxy.rs`, set up by `TestCluster::start_proxied`),
//! and `TestCluster::partition` cuts the traffic between one side and the other, both
//! ways. Client traffic goes straight to each member, so a test can still talk to both
//! sides. Checked against etcd 3.4. Run them one at a time (`-- --test-threads=1`): a
//! cluster is several processes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::cluster::{kvs, TestCluster};
use common::{grpc_error, Code};
use etcd_client::{Client, GetOptions};
use tokio::time::timeout;

/// Deadline for a side with a quorum to agree on a leader. Generous for a loaded machine:
/// it bounds a hang, it is not a performance assertion.
const LEADER_WAIT: Duration = Duration::from_secs(20);
/// Deadline for a member to catch up once a partition heals.
const CATCH_UP_WAIT: Duration = Duration::from_secs(60);
/// A request the minority cannot complete must have failed by then; a member gives up on
/// a proposal after its request timeout (7 s with the default flags, as etcd 3.4 does).
const MINORITY_ANSWER_WAIT: Duration = Duration::from_secs(20);

/// The answers to a request that cannot reach a quorum, all with code Unavailable, worded
/// as etcd 3.4 does.
const NO_QUORUM_MESSAGES: &[&str] = &[
    "etcdserver: request timed out",
    "etcdserver: request timed out, possibly due to previous leader failure",
    "etcdserver: request timed out, possibly due to connection lost",
    "etcdserver: no leader",
    "etcdserver: leader changed",
];

/// A member without a leader holds a proposal until its request timeout and then answers
/// with the expired deadline's text and code Unknown, as etcd 3.4 does.
const NO_LEADER_TIMEOUT: (Code, &str) = (Code::Unknown, "context deadline exceeded");

/// Whether a failed request was refused as one that cannot reach a quorum.
fn is_no_quorum_answer(code: Code, message: &str) -> bool {
    (code == Code::Unavailable && NO_QUORUM_MESSAGES.contains(&message))
        || (code, message) == NO_LEADER_TIMEOUT
}

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

/// Puts `{prefix}{i:03}` = `v{i}` for each `i` in `range`, one after the other; every put
/// must succeed. Adds them to `want`.
async fn put_range(
    c: &mut Client,
    prefix: &str,
    range: std::ops::Range<usize>,
    want: &mut BTreeMap<String, String>,
) {
    for i in range {
        let (key, value) = (format!("{prefix}{i:03}"), format!("v{i}"));
        c.put(key.clone(), value.clone(), None)
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
        want.insert(key, value);
    }
}

/// Polls serializable reads of `prefix` on member `i` until it holds exactly `want`.
async fn wait_holds(
    c: &TestCluster,
    i: usize,
    prefix: &str,
    want: &BTreeMap<String, String>,
    within: Duration,
) {
    let mut mc = c.member_client(i).await;
    let deadline = Instant::now() + within;
    loop {
        let got = kvs(&mut mc, prefix, true).await;
        if &got == want {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "{} does not hold the {} keys under {prefix:?} within {within:?}; it holds {} \
                 keys, missing {:?}",
                c.name(i),
                want.len(),
                got.len(),
                want.keys()
                    .filter(|k| !got.contains_key(*k))
                    .take(5)
                    .collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A put that may meet an election (a healed member rejoining can cause one, as etcd 3.4
/// does): retried while it fails with a no-quorum answer, until `within`. Repeating a put of
/// the same value is harmless here.
async fn put_retrying(c: &mut Client, key: &str, value: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let result = c.put(key, value, None).await;
        if result.is_ok() {
            return;
        }
        let (code, message) = grpc_error(result);
        if !is_no_quorum_answer(code, &message) || Instant::now() >= deadline {
            panic!("put {key}: {code:?} {message:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Leader ID member `i` reports in its status, 0 for none.
async fn leader_seen_by(c: &TestCluster, i: usize) -> u64 {
    let mut mc = c.member_client(i).await;
    let status = mc
        .status()
        .await
        .unwrap_or_else(|e| panic!("status of {}: {e}", c.name(i)));
    status.leader()
}

// ---------------------------------------------------------------------------------
// An isolated leader
// ---------------------------------------------------------------------------------

/// The leader is cut off from the two other members. The majority elects a new leader and
/// takes writes; the old leader can complete neither a write nor a linearizable read.
/// Once healed, there is one leader (on the majority side), the old leader holds the
/// majority's writes, and the write it could not complete is nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_leader_cannot_write_and_the_majority_goes_on() {
    let mut c = TestCluster::start_proxied(3, &[]);
    let old = c.wait_for_leader(LEADER_WAIT).await;
    let old_id = c.member_id(old).await;
    let majority = c.followers(old);

    let mut want = BTreeMap::new();
    put_range(&mut c.client().await, "p/before/", 0..10, &mut want).await;
    for i in 0..3 {
        wait_holds(&c, i, "p/", &want, CATCH_UP_WAIT).await;
    }

    c.partition(&[old]);
    let cut_at = Instant::now();

    // The majority elects one of its own.
    let new = c.wait_for_leader_among(&majority, LEADER_WAIT).await;
    eprintln!(
        "majority elected {} {:?} after the cut",
        c.name(new),
        cut_at.elapsed()
    );
    assert_ne!(new, old, "the majority must elect one of its own");
    let mut mc = c.client_of(&majority).await;
    put_range(&mut mc, "p/during/", 0..10, &mut want).await;
    for &i in &majority {
        assert_eq!(
            kvs(&mut c.member_client(i).await, "p/", false).await,
            want,
            "on {}",
            c.name(i)
        );
    }

    // The old leader is cut off: it holds none of the majority's writes...
    let mut oc = c.member_client(old).await;
    let seen = kvs(&mut oc, "p/", true).await;
    assert!(
        seen.keys().all(|k| k.starts_with("p/before/")),
        "{} is partitioned yet holds {seen:?}",
        c.name(old)
    );
    // ...and cannot complete a write: it fails (within a bound) instead of succeeding.
    let started = Instant::now();
    let result = timeout(MINORITY_ANSWER_WAIT, oc.put("p/minority", "lost", None))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "a write on the isolated {} must fail within {MINORITY_ANSWER_WAIT:?}",
                c.name(old)
            )
        });
    let (code, message) = grpc_error(result);
    eprintln!(
        "write on the isolated old leader failed after {:?}: {code:?} {message:?}",
        started.elapsed()
    );
    assert!(
        is_no_quorum_answer(code, &message),
        "unexpected answer to a write without quorum: {code:?} {message:?}"
    );

    // A linearizable read needs the quorum too: it fails or times out.
    let started = Instant::now();
    match timeout(MINORITY_ANSWER_WAIT, oc.get("p/", Some(GetOptions::new().with_prefix()))).await {
        Err(_) => eprintln!(
            "linearizable read on the isolated old leader: no answer within {MINORITY_ANSWER_WAIT:?}"
        ),
        Ok(Ok(resp)) => panic!(
            "a linearizable read on the isolated {} succeeded: {:?}",
            c.name(old),
            resp.kvs()
        ),
        Ok(result) => {
            let (code, message) = grpc_error(result);
            eprintln!(
                "linearizable read on the isolated old leader failed after {:?}: {code:?} \
                 {message:?}",
                started.elapsed()
            );
            assert!(
                is_no_quorum_answer(code, &message),
                "unexpected answer to a linearizable read without quorum: {code:?} {message:?}"
            );
        }
    }

    // Cut off from a quorum, it no longer names a leader (etcd's leader steps down after an
    // election timeout), so clients that require a leader go elsewhere.
    let deadline = Instant::now() + LEADER_WAIT;
    loop {
        let seen = leader_seen_by(&c, old).await;
        if seen == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "isolated old leader {} (id {old_id:x}) still names leader {seen:x}",
            c.name(old)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A client that requires a leader is refused there, with etcd's answer.
    let endpoint = c.endpoint(old);
    let options = etcd_client::ConnectOptions::new()
        .with_require_leader(true)
        .with_timeout(Duration::from_secs(5));
    let mut rc = Client::connect([endpoint], Some(options)).await.unwrap();
    let refused = grpc_error(rc.get("p/", None).await);
    assert_eq!(
        refused,
        (Code::Unavailable, "etcdserver: no leader".to_string()),
        "a request that requires a leader, on the isolated old leader"
    );

    c.heal();
    // The old leader catches up with the majority's writes...
    wait_holds(&c, old, "p/", &want, CATCH_UP_WAIT).await;
    // ...and there is one leader, which all members name, on the majority side: the old
    // leader, whose log lacks the majority's writes, cannot have won an election.
    let leader = c.wait_for_leader(LEADER_WAIT).await;
    assert_ne!(
        leader,
        old,
        "{} was cut off while the majority wrote; it cannot lead the healed cluster",
        c.name(old)
    );
    assert_ne!(c.member_id(leader).await, old_id);

    // The old leader takes writes again, and every member serves the same data, without
    // the write that failed.
    put_retrying(&mut oc, "p/after", "healed", LEADER_WAIT).await;
    want.insert("p/after".to_string(), "healed".to_string());
    for i in 0..3 {
        wait_holds(&c, i, "p/", &want, CATCH_UP_WAIT).await;
        let mut ic = c.member_client(i).await;
        assert_eq!(
            kvs(&mut ic, "p/", false).await,
            want,
            "linearizable read on {}",
            c.name(i)
        );
        let r = ic.get("p/minority", None).await.unwrap();
        assert!(
            r.kvs().is_empty(),
            "the failed write is visible on {}: {:?}",
            c.name(i),
            r.kvs()
        );
    }
}

// ---------------------------------------------------------------------------------
// An isolated follower
// ---------------------------------------------------------------------------------

/// One follower is cut off. The leader and the other follower keep taking writes without
/// a single failure, under the same leader, well past the point where the isolated
/// follower has noticed it has no leader. Once healed, the follower catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_follower_does_not_interrupt_the_majority() {
    let mut c = TestCluster::start_proxied(3, &[]);
    let leader = c.wait_for_leader(LEADER_WAIT).await;
    let leader_id = c.member_id(leader).await;
    let lonely = c.followers(leader)[0];
    let majority: Vec<usize> = (0..3).filter(|&i| i != lonely).collect();

    let mut mc = c.client_of(&majority).await;
    let mut want = BTreeMap::new();
    put_range(&mut mc, "f/", 0..20, &mut want).await;
    wait_holds(&c, lonely, "f/", &want, CATCH_UP_WAIT).await;

    c.partition(&[lonely]);
    let cut_at = Instant::now();

    // Writes go on, one after the other, each of which must succeed, until the isolated
    // follower reports that it has no leader (it has timed out and campaigns, unheard)...
    let mut n = 20;
    let deadline = cut_at + LEADER_WAIT;
    loop {
        put_range(&mut mc, "f/", n..n + 5, &mut want).await;
        n += 5;
        if leader_seen_by(&c, lonely).await == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "isolated {} still names a leader {LEADER_WAIT:?} after the cut",
            c.name(lonely)
        );
    }
    eprintln!(
        "isolated follower reports no leader {:?} after the cut; {} writes since the cut",
        cut_at.elapsed(),
        n - 20
    );
    // ...and for as many again after that.
    let more = n;
    put_range(&mut mc, "f/", n..n + more, &mut want).await;
    n += more;
    for &i in &majority {
        assert_eq!(
            leader_seen_by(&c, i).await,
            leader_id,
            "{} names another leader while only a follower is cut off",
            c.name(i)
        );
        assert_eq!(
            kvs(&mut c.member_client(i).await, "f/", false).await,
            want,
            "on {}",
            c.name(i)
        );
    }
    // The follower really was cut off: it holds none of these writes.
    let mut lc = c.member_client(lonely).await;
    assert_eq!(
        kvs(&mut lc, "f/", true).await.len(),
        20,
        "{} is partitioned",
        c.name(lonely)
    );

    c.heal();
    wait_holds(&c, lonely, "f/", &want, CATCH_UP_WAIT).await;
    c.wait_for_leader(LEADER_WAIT).await;
    // It serves writes and linearizable reads again.
    put_retrying(&mut lc, &format!("f/{n:03}"), &format!("v{n}"), LEADER_WAIT).await;
    want.insert(format!("f/{n:03}"), format!("v{n}"));
    for i in 0..3 {
        wait_holds(&c, i, "f/", &want, CATCH_UP_WAIT).await;
        assert_eq!(
            kvs(&mut c.member_client(i).await, "f/", false).await,
            want,
            "on {}",
            c.name(i)
        );
    }
}

// ---------------------------------------------------------------------------------
// Streams that require a leader
// ---------------------------------------------------------------------------------

/// Deadline for a stream that requires a leader to end once its member lost the leader:
/// etcd ends it after 3 election timeouts without one (3.7-3.8 s with the default 1 s).
const NO_LEADER_STREAM_END_WAIT: Duration = Duration::from_secs(15);

/// A watch opened with `WithRequireLeader` on a member that is then cut off from the others
/// ends with `etcdserver: no leader`, as etcd's do, so that its client (kube-apiserver)
/// moves to a member with a leader. A watch on the same member that did not ask for a
/// leader stays open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_requiring_a_leader_ends_when_its_member_is_isolated() {
    let mut c = TestCluster::start_proxied(3, &[]);
    let leader = c.wait_for_leader(LEADER_WAIT).await;
    let follower = c.followers(leader)[0];

    let mut requiring = c.member_client_requiring_leader(follower).await;
    let mut requiring_stream = requiring.watch("w/", None).await.expect("watch");
    let created = requiring_stream.message().await.expect("created");
    assert!(created.is_some_and(|r| r.created()));
    let mut plain = c.member_client(follower).await;
    let mut plain_stream = plain.watch("w/", None).await.expect("watch");
    let created = plain_stream.message().await.expect("created");
    assert!(created.is_some_and(|r| r.created()));

    c.partition(&[follower]);
    let cut_at = Instant::now();
    let ended = timeout(NO_LEADER_STREAM_END_WAIT, requiring_stream.message())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "a watch requiring a leader on the isolated {} is still open after \
                 {NO_LEADER_STREAM_END_WAIT:?}",
                c.name(follower)
            )
        });
    eprintln!(
        "watch requiring a leader ended {:?} after the cut",
        cut_at.elapsed()
    );
    assert_eq!(
        grpc_error(ended),
        (Code::Unavailable, "etcdserver: no leader".to_string())
    );
    // The other watch is still open: nothing ended it.
    let still_open = timeout(Duration::from_millis(500), plain_stream.message()).await;
    assert!(
        still_open.is_err(),
        "a watch that did not require a leader must stay open, got {still_open:?}"
    );
}
