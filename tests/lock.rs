//! `v3lockpb.Lock`: contention and the order of turns, a lock lost when its lease expires,
//! an unknown lease, and a waiter whose client goes away. Passes against etcd 3.4 and 3.7
//! (`CAIRN_TEST_SERVER_BIN`).
//!
//! "Still waiting" is checked after an event that a wrongly granted lock would have come
//! before: the waiter's own key written, and a later write acknowledged.

mod common;

use std::time::Duration;

use common::{
    assert_grpc_error, is_etcd_34, rev, wait_for_delete, wait_for_keys, Code, TestServer,
};
use etcd_client::{Client, LockOptions, LockResponse};
use tokio::task::JoinHandle;

/// Long enough that no test lease expires unless the test means it to.
const LONG_TTL: i64 = 60;
/// The shortest TTL etcd grants with default flags; expiry tests use it.
const SHORT_TTL: i64 = 2;
/// How long a lock that should be granted may take.
const GRANT_WITHIN: Duration = Duration::from_secs(10);

async fn fresh() -> (TestServer, Client) {
    let server = TestServer::start(&[]);
    let client = server.client().await;
    (server, client)
}

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    c.lease_grant(ttl, None).await.expect("lease grant").id()
}

/// Lock `name` with `lease` in a task of its own, on a connection of its own.
fn lock_in_background(server: &TestServer, name: &str, lease: i64) -> JoinHandle<LockResponse> {
    let endpoint = server.endpoint();
    let name = name.to_string();
    tokio::spawn(async move {
        let mut c = Client::connect([endpoint], None).await.expect("connect");
        c.lock(name, Some(LockOptions::new().with_lease(lease)))
            .await
            .expect("lock")
    })
}

/// A write acknowledged now: anything the server was going to answer before it, it has.
async fn round_trip(c: &mut Client) {
    c.put("lock-test/round-trip", "x", None).await.expect("put");
}

async fn granted(waiter: JoinHandle<LockResponse>) -> LockResponse {
    tokio::time::timeout(GRANT_WITHIN, waiter)
        .await
        .expect("the lock is granted in time")
        .expect("lock task")
}

#[tokio::test]
async fn contending_clients_block_and_take_turns_in_the_order_they_came() {
    let (server, mut c) = fresh().await;
    let leases = [
        grant(&mut c, LONG_TTL).await,
        grant(&mut c, LONG_TTL).await,
        grant(&mut c, LONG_TTL).await,
    ];

    let first = c
        .lock("turns", Some(LockOptions::new().with_lease(leases[0])))
        .await
        .expect("uncontended lock");
    assert_eq!(first.key(), format!("turns/{:x}", leases[0]).as_bytes());

    let second = lock_in_background(&server, "turns", leases[1]);
    wait_for_keys(&mut c, "turns/", 2).await;
    let third = lock_in_background(&server, "turns", leases[2]);
    let queued = wait_for_keys(&mut c, "turns/", 3).await;
    let order: Vec<&[u8]> = queued.iter().map(|kv| kv.key()).collect();
    assert_eq!(
        order,
        leases
            .iter()
            .map(|l| format!("turns/{l:x}").into_bytes())
            .collect::<Vec<_>>(),
        "waiters queue in the order they came"
    );
    round_trip(&mut c).await;
    assert!(!second.is_finished(), "the second waits for the first");
    assert!(!third.is_finished(), "the third waits too");

    let unlocked = c.unlock(first.key()).await.expect("unlock");
    let second = granted(second).await;
    assert_eq!(second.key(), format!("turns/{:x}", leases[1]).as_bytes());
    assert!(
        rev(second.header()) >= rev(unlocked.header()),
        "granted after the unlock"
    );
    round_trip(&mut c).await;
    assert!(!third.is_finished(), "the third waits for the second");

    c.unlock(second.key()).await.expect("unlock");
    let third = granted(third).await;
    assert_eq!(third.key(), format!("turns/{:x}", leases[2]).as_bytes());
}

#[tokio::test]
async fn locking_again_with_the_same_lease_returns_the_held_key() {
    let (_server, mut c) = fresh().await;
    let lease = grant(&mut c, LONG_TTL).await;
    let first = c
        .lock("again", Some(LockOptions::new().with_lease(lease)))
        .await
        .expect("lock");
    let again = c
        .lock("again", Some(LockOptions::new().with_lease(lease)))
        .await
        .expect("lock again");
    assert_eq!(first.key(), again.key());
    let held = c.get("again/", Some(etcd_client::GetOptions::new().with_prefix()));
    assert_eq!(
        held.await.expect("get").kvs().len(),
        1,
        "one key for one lease"
    );
}

#[tokio::test]
async fn a_lock_whose_lease_expires_is_lost_and_the_next_waiter_gets_it() {
    let (server, mut c) = fresh().await;
    let short = grant(&mut c, SHORT_TTL).await;
    let long = grant(&mut c, LONG_TTL).await;
    let holder = c
        .lock("expiry", Some(LockOptions::new().with_lease(short)))
        .await
        .expect("lock");
    let waiter = lock_in_background(&server, "expiry", long);
    wait_for_keys(&mut c, "expiry/", 2).await;

    // Nobody keeps the short lease alive: its key goes, and with it the lock.
    let granted = granted(waiter).await;
    assert_eq!(granted.key(), format!("expiry/{long:x}").as_bytes());
    let gone = c.get(holder.key(), None).await.expect("get");
    assert!(gone.kvs().is_empty(), "the expired holder's key is deleted");
}

#[tokio::test]
async fn a_waiter_whose_lease_expires_while_waiting_is_told_its_session_expired() {
    let (_server, mut c) = fresh().await;
    let holder_lease = grant(&mut c, LONG_TTL).await;
    let holder = c
        .lock("session", Some(LockOptions::new().with_lease(holder_lease)))
        .await
        .expect("lock");
    let short = grant(&mut c, SHORT_TTL).await;
    let mut waiter_client = c.clone();
    let waiter = tokio::spawn(async move {
        waiter_client
            .lock("session", Some(LockOptions::new().with_lease(short)))
            .await
    });
    let queued = wait_for_keys(&mut c, "session/", 2).await;
    let expiry = Duration::from_secs(SHORT_TTL as u64) + GRANT_WITHIN;
    wait_for_delete(&mut c, queued[1].key(), queued[1].mod_revision(), expiry).await;
    c.unlock(holder.key()).await.expect("unlock");
    let outcome = tokio::time::timeout(GRANT_WITHIN, waiter)
        .await
        .expect("the waiter is answered")
        .expect("lock task");
    if is_etcd_34(&mut c).await {
        // etcd 3.4 answers the lock granted, though the waiter's key is gone.
        assert!(outcome.is_ok(), "{outcome:?}");
    } else {
        assert_grpc_error(outcome, Code::Unknown, "mutex: session is expired");
    }
}

#[tokio::test]
async fn a_lock_with_an_unknown_lease_fails_and_writes_nothing() {
    let (_server, mut c) = fresh().await;
    let unknown = 0x1234_5678;
    let outcome = c
        .lock("unknown", Some(LockOptions::new().with_lease(unknown)))
        .await;
    // etcd's lock service passes on its inner txn's error as a plain error: code Unknown.
    assert_grpc_error(
        outcome,
        Code::Unknown,
        "etcdserver: requested lease not found",
    );
    let written = c
        .get(
            "unknown/",
            Some(etcd_client::GetOptions::new().with_prefix()),
        )
        .await
        .expect("get");
    assert!(written.kvs().is_empty());
}

#[tokio::test]
async fn a_waiter_whose_client_goes_away_leaves_no_key_behind() {
    let (server, mut c) = fresh().await;
    let leases = [
        grant(&mut c, LONG_TTL).await,
        grant(&mut c, LONG_TTL).await,
        grant(&mut c, LONG_TTL).await,
    ];
    let holder = c
        .lock("cancel", Some(LockOptions::new().with_lease(leases[0])))
        .await
        .expect("lock");
    let waiter = lock_in_background(&server, "cancel", leases[1]);
    let queued = wait_for_keys(&mut c, "cancel/", 2).await;
    let waiter_key = queued[1].key().to_vec();
    // Dropping the task drops its connection: the call is canceled. The waiter's lease has
    // a minute to run, so only the server's cleanup deletes the key in time.
    waiter.abort();
    wait_for_delete(&mut c, &waiter_key, queued[1].mod_revision(), GRANT_WITHIN).await;

    c.unlock(holder.key()).await.expect("unlock");
    let next = tokio::time::timeout(
        GRANT_WITHIN,
        c.lock("cancel", Some(LockOptions::new().with_lease(leases[2]))),
    )
    .await
    .expect("nobody holds the lock any more")
    .expect("lock");
    assert_eq!(next.key(), format!("cancel/{:x}", leases[2]).as_bytes());
}

#[tokio::test]
async fn unlock_deletes_the_key_and_a_lock_without_a_lease_gets_one() {
    let (_server, mut c) = fresh().await;
    let held = c.lock("nolease", None).await.expect("lock");
    let name = std::str::from_utf8(held.key()).expect("utf-8 key");
    let lease_hex = name.strip_prefix("nolease/").expect("key under the name");
    let lease = i64::from_str_radix(lease_hex, 16).expect("hex lease");
    let ttl = c.lease_time_to_live(lease, None).await.expect("ttl");
    assert!(
        ttl.granted_ttl() == LONG_TTL,
        "the server's session lease: {}",
        ttl.granted_ttl()
    );
    let unlocked = c.unlock(held.key()).await.expect("unlock");
    assert!(rev(unlocked.header()) > rev(held.header()));
    let gone = c.get(held.key(), None).await.expect("get");
    assert!(gone.kvs().is_empty());
}

#[tokio::test]
async fn unlock_without_a_key_is_refused() {
    let (_server, mut c) = fresh().await;
    // As etcd's lock service passes on its delete's error: code Unknown.
    assert_grpc_error(
        c.unlock("").await,
        Code::Unknown,
        "etcdserver: key is not provided",
    );
}
