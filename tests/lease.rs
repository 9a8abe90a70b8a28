//! Lease semantics (grant, revoke, keep-alive, time-to-live, listing, expiry), checked
//! against etcd 3.4.
//!
//! Expiry is time-based by nature: those tests poll with generous deadlines and also check
//! that nothing disappears before its TTL (minus a margin). With default flags the shortest
//! TTL granted is 2 s, so expiry tests use TTL 2.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{assert_grpc_error, current_revision, rev, Code, TestServer};
use etcd_client::{
    Client, Error, EventType, GetOptions, LeaseGrantOptions, LeaseKeepAliveResponse,
    LeaseKeepAliveStream, LeaseTimeToLiveOptions, PutOptions, Txn, TxnOp, WatchOptions,
    WatchStream,
};

/// Largest TTL a lease may be granted (seconds), as in etcd 3.4.
const MAX_LEASE_TTL: i64 = 9_000_000_000;
/// Leases in the mass-expiry test. Kept modest so the suite stays quick.
const MASS_LEASES: usize = 10_000;
const POLL: Duration = Duration::from_millis(100);

async fn fresh() -> (TestServer, Client) {
    let server = TestServer::start(&[]);
    let client = server.client().await;
    (server, client)
}

async fn grant(c: &mut Client, ttl: i64) -> i64 {
    let resp = c.lease_grant(ttl, None).await.expect("lease grant");
    assert_eq!(resp.ttl(), ttl, "granted TTL");
    resp.id()
}

async fn put_leased(c: &mut Client, key: &str, lease: i64) -> i64 {
    let resp = c
        .put(key, "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .expect("put with lease");
    rev(resp.header())
}

async fn get_one(c: &mut Client, key: &str) -> Option<etcd_client::KeyValue> {
    let mut resp = c.get(key, None).await.expect("get");
    resp.take_kvs().pop()
}

async fn exists(c: &mut Client, key: &str) -> bool {
    get_one(c, key).await.is_some()
}

/// Keys attached to `lease`, sorted (the server lists them in no particular order).
async fn lease_keys(c: &mut Client, lease: i64) -> Vec<String> {
    let resp = c
        .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("lease time-to-live");
    let mut keys: Vec<String> = resp
        .keys()
        .iter()
        .map(|k| String::from_utf8_lossy(k).into_owned())
        .collect();
    keys.sort();
    keys
}

async fn lease_ids(c: &mut Client) -> BTreeSet<i64> {
    let resp = c.leases().await.expect("lease leases");
    resp.leases().iter().map(|l| l.id()).collect()
}

/// A watch on `prefix` that the server has confirmed, so no later event can be missed.
async fn watch_prefix(c: &mut Client, prefix: &str) -> WatchStream {
    let mut stream = c
        .watch(prefix, Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch");
    let created = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("no watch confirmation within 10 s")
        .expect("watch created")
        .expect("stream open");
    assert!(
        created.created(),
        "first watch response must confirm creation"
    );
    stream
}

/// The next response carrying events: (event type, key, mod_revision) of each event.
async fn next_events(stream: &mut WatchStream) -> Vec<(EventType, String, i64)> {
    loop {
        let resp = tokio::time::timeout(Duration::from_secs(45), stream.message())
            .await
            .expect("no watch response within 45 s")
            .expect("watch stream error")
            .expect("watch stream closed");
        if resp.events().is_empty() {
            continue;
        }
        return resp
            .events()
            .iter()
            .map(|e| {
                let kv = e.kv().expect("event carries a kv");
                (
                    e.event_type(),
                    String::from_utf8_lossy(kv.key()).into_owned(),
                    kv.mod_revision(),
                )
            })
            .collect();
    }
}

async fn next_keep_alive(stream: &mut LeaseKeepAliveStream) -> LeaseKeepAliveResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("no keep-alive answer within 10 s")
        .expect("keep-alive stream error")
        .expect("keep-alive stream closed")
}

/// Polls until `key` is gone; panics if it is still there at `deadline`.
/// Returns when it was first seen gone.
async fn wait_gone(c: &mut Client, key: &str, deadline: Instant) -> Instant {
    loop {
        if !exists(c, key).await {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "key {key:?} still present at the deadline"
        );
        tokio::time::sleep(POLL).await;
    }
}

// ----------------------------------------------------------------------------------
// LeaseGrant
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn grant_chooses_distinct_positive_ids_and_keeps_revision() {
    let (_s, mut c) = fresh().await;
    c.put("k", "v", None).await.unwrap();
    let before = current_revision(&mut c).await;

    let a = c.lease_grant(60, None).await.unwrap();
    let b = c.lease_grant(60, None).await.unwrap();
    // Server-chosen IDs never set the sign bit, as etcd 3.4's do.
    assert!(a.id() > 0 && b.id() > 0, "ids {} {}", a.id(), b.id());
    assert_ne!(a.id(), b.id());
    assert_eq!((a.ttl(), b.ttl()), (60, 60));
    assert_eq!(a.error(), "");
    // A grant is not a key-value change: the header shows the current revision, unchanged.
    assert_eq!(rev(a.header()), before);
    assert_eq!(rev(b.header()), before);
    assert_eq!(current_revision(&mut c).await, before);
}

#[tokio::test]
async fn grant_with_client_chosen_id() {
    let (_s, mut c) = fresh().await;
    let resp = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(42)))
        .await
        .unwrap();
    assert_eq!((resp.id(), resp.ttl()), (42, 60));
    // Negative IDs chosen by the client are accepted as-is, as etcd 3.4 does.
    let resp = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(-7)))
        .await
        .unwrap();
    assert_eq!(resp.id(), -7);
    let ttl = c.lease_time_to_live(42, None).await.unwrap();
    assert_eq!((ttl.id(), ttl.granted_ttl()), (42, 60));
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([-7, 42]));
}

#[tokio::test]
async fn grant_with_existing_id_is_refused() {
    let (_s, mut c) = fresh().await;
    c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(42)))
        .await
        .unwrap();
    let r = c
        .lease_grant(30, Some(LeaseGrantOptions::new().with_id(42)))
        .await;
    assert_grpc_error(
        r,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );
    // The refused grant changed nothing.
    assert_eq!(
        c.lease_time_to_live(42, None).await.unwrap().granted_ttl(),
        60
    );

    let server_chosen = grant(&mut c, 60).await;
    let r = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(server_chosen)))
        .await;
    assert_grpc_error(
        r,
        Code::FailedPrecondition,
        "etcdserver: lease already exists",
    );
}

#[tokio::test]
async fn grant_raises_small_ttls_to_the_minimum() {
    // The minimum TTL is ceil(heartbeat * (3 * election ticks / 2)) seconds, with
    // election ticks = election timeout / heartbeat, as in etcd 3.4: with the default
    // 100 ms / 1000 ms that is 1.5 s, rounded up to 2. Zero and negative TTLs get it too.
    let (_s, mut c) = fresh().await;
    for ttl in [1, 0, -5] {
        let resp = c.lease_grant(ttl, None).await.unwrap();
        assert_eq!(resp.ttl(), 2, "granted TTL for requested {ttl}");
        let t = c.lease_time_to_live(resp.id(), None).await.unwrap();
        assert_eq!(t.granted_ttl(), 2);
    }
    assert_eq!(c.lease_grant(3, None).await.unwrap().ttl(), 3);
}

#[tokio::test]
async fn minimum_ttl_follows_election_timeout() {
    // 5 ticks: 100 ms * 7 rounds up to 1 s. 20 ticks: 100 ms * 30 = 3 s.
    let s = TestServer::start(&["--heartbeat-interval", "100", "--election-timeout", "500"]);
    let mut c = s.client().await;
    assert_eq!(c.lease_grant(1, None).await.unwrap().ttl(), 1);
    assert_eq!(c.lease_grant(0, None).await.unwrap().ttl(), 1);
    drop(c);
    drop(s);

    let s = TestServer::start(&["--heartbeat-interval", "100", "--election-timeout", "2000"]);
    let mut c = s.client().await;
    assert_eq!(c.lease_grant(1, None).await.unwrap().ttl(), 3);
    assert_eq!(c.lease_grant(4, None).await.unwrap().ttl(), 4);
}

#[tokio::test]
async fn grant_above_max_ttl_is_out_of_range() {
    let (_s, mut c) = fresh().await;
    let r = c.lease_grant(MAX_LEASE_TTL + 1, None).await;
    assert_grpc_error(r, Code::OutOfRange, "etcdserver: too large lease TTL");
    let r = c.lease_grant(i64::MAX, None).await;
    assert_grpc_error(r, Code::OutOfRange, "etcdserver: too large lease TTL");
    assert!(lease_ids(&mut c).await.is_empty());

    let resp = c.lease_grant(MAX_LEASE_TTL, None).await.unwrap();
    assert_eq!(resp.ttl(), MAX_LEASE_TTL);
}

// ----------------------------------------------------------------------------------
// LeaseRevoke
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn revoke_deletes_all_attached_keys_at_one_revision() {
    let (_s, mut c) = fresh().await;
    let lease = grant(&mut c, 60).await;
    for k in ["p/a", "p/b", "p/c"] {
        put_leased(&mut c, k, lease).await;
    }
    c.put("p/free", "v", None).await.unwrap();
    let before = current_revision(&mut c).await;
    let mut watch = watch_prefix(&mut c, "p/").await;

    let resp = c.lease_revoke(lease).await.unwrap();
    assert_eq!(
        rev(resp.header()),
        before + 1,
        "one revision for the whole revoke"
    );
    assert_eq!(current_revision(&mut c).await, before + 1);

    // Watchers get every delete of the revoke in one response.
    let mut events = next_events(&mut watch).await;
    events.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        events,
        vec![
            (EventType::Delete, "p/a".to_string(), before + 1),
            (EventType::Delete, "p/b".to_string(), before + 1),
            (EventType::Delete, "p/c".to_string(), before + 1),
        ]
    );
    let left = c
        .get("p/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let keys: Vec<&[u8]> = left.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![b"p/free".as_slice()]);
    assert!(!lease_ids(&mut c).await.contains(&lease));
}

#[tokio::test]
async fn revoke_without_keys_keeps_revision() {
    let (_s, mut c) = fresh().await;
    c.put("k", "v", None).await.unwrap();
    let before = current_revision(&mut c).await;
    let lease = grant(&mut c, 60).await;
    let resp = c.lease_revoke(lease).await.unwrap();
    assert_eq!(rev(resp.header()), before);
    assert_eq!(current_revision(&mut c).await, before);
}

#[tokio::test]
async fn revoke_unknown_or_revoked_lease_is_not_found() {
    let (_s, mut c) = fresh().await;
    let r = c.lease_revoke(0x1234_5678).await;
    assert_grpc_error(r, Code::NotFound, "etcdserver: requested lease not found");
    let lease = grant(&mut c, 60).await;
    c.lease_revoke(lease).await.unwrap();
    let r = c.lease_revoke(lease).await;
    assert_grpc_error(r, Code::NotFound, "etcdserver: requested lease not found");
}

// ----------------------------------------------------------------------------------
// LeaseKeepAlive
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn keep_alive_answers_granted_ttl() {
    let (_s, mut c) = fresh().await;
    let lease = grant(&mut c, 60).await;
    let (mut keeper, mut stream) = c.lease_keep_alive(lease).await.unwrap();
    for _ in 0..3 {
        keeper.keep_alive().await.unwrap();
        let resp = next_keep_alive(&mut stream).await;
        assert_eq!((resp.id(), resp.ttl()), (lease, 60));
        assert!(resp.header().is_some());
    }
}

#[tokio::test]
async fn keep_alive_for_unknown_lease_answers_ttl_zero() {
    let (_s, mut c) = fresh().await;
    let lease = grant(&mut c, 60).await;
    let (mut keeper, mut stream) = c.lease_keep_alive(lease).await.unwrap();
    c.lease_revoke(lease).await.unwrap();
    // Not an error and not -1: the stream stays open and answers TTL 0, as etcd 3.4 does.
    keeper.keep_alive().await.unwrap();
    let resp = next_keep_alive(&mut stream).await;
    assert_eq!((resp.id(), resp.ttl()), (lease, 0));
    keeper.keep_alive().await.unwrap();
    let resp = next_keep_alive(&mut stream).await;
    assert_eq!((resp.id(), resp.ttl()), (lease, 0));

    // The client library turns a first answer with TTL <= 0 into its own error.
    match c.lease_keep_alive(0x1234_5678).await {
        Err(Error::LeaseKeepAliveError(_)) => {}
        other => panic!("expected a keep-alive error, got {other:?}"),
    }
}

#[tokio::test]
async fn keep_alive_stream_keeps_key_alive_for_three_ttls() {
    let (_s, mut c) = fresh().await;
    let ttl = 2;
    let lease = grant(&mut c, ttl).await;
    put_leased(&mut c, "kept", lease).await;
    // The client library consumes the answer to the opening keep-alive itself.
    let (mut keeper, mut stream) = c.lease_keep_alive(lease).await.unwrap();

    let period = Duration::from_secs(ttl as u64);
    let end = Instant::now() + 3 * period;
    let mut tick = tokio::time::interval(period / 3);
    let mut last_renewal = Instant::now();
    while Instant::now() < end {
        tick.tick().await;
        last_renewal = Instant::now();
        keeper.keep_alive().await.unwrap();
        let resp = next_keep_alive(&mut stream).await;
        assert_eq!(resp.ttl(), ttl);
        assert!(
            exists(&mut c, "kept").await,
            "key expired despite keep-alives"
        );
    }
    let t = c.lease_time_to_live(lease, None).await.unwrap();
    assert!(t.ttl() > 0 && t.ttl() <= ttl, "remaining {}", t.ttl());

    // Once the keep-alives stop, the lease runs out a full TTL after the last renewal.
    let gone_at = wait_gone(
        &mut c,
        "kept",
        last_renewal + period + Duration::from_secs(5),
    )
    .await;
    assert!(
        gone_at >= last_renewal + period - Duration::from_millis(500),
        "expired {:?} after the last renewal, TTL is {ttl} s",
        gone_at - last_renewal
    );
}

// ----------------------------------------------------------------------------------
// LeaseTimeToLive and LeaseLeases
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn time_to_live_reports_granted_and_remaining_ttl() {
    let (_s, mut c) = fresh().await;
    let lease = grant(&mut c, 60).await;
    let resp = c.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!((resp.id(), resp.granted_ttl()), (lease, 60));
    // Remaining seconds are truncated, so a fresh 60 s lease shows 59 (or 60).
    assert!(
        resp.ttl() > 50 && resp.ttl() <= 60,
        "remaining {}",
        resp.ttl()
    );
    assert!(resp.keys().is_empty());
    assert_eq!(rev(resp.header()), current_revision(&mut c).await);
}

#[tokio::test]
async fn time_to_live_lists_keys_only_when_asked() {
    let (_s, mut c) = fresh().await;
    let lease = grant(&mut c, 60).await;
    put_leased(&mut c, "b", lease).await;
    put_leased(&mut c, "a", lease).await;
    let plain = c.lease_time_to_live(lease, None).await.unwrap();
    assert!(
        plain.keys().is_empty(),
        "keys without with_keys: {:?}",
        plain.keys()
    );
    assert_eq!(lease_keys(&mut c, lease).await, vec!["a", "b"]);
    // Deleting a key detaches it from its lease.
    c.delete("a", None).await.unwrap();
    assert_eq!(lease_keys(&mut c, lease).await, vec!["b"]);
}

#[tokio::test]
async fn time_to_live_of_unknown_lease_is_minus_one() {
    let (_s, mut c) = fresh().await;
    // Not an error: TTL -1, granted TTL 0, no keys, as etcd 3.4 answers.
    let resp = c
        .lease_time_to_live(0x1234_5678, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(
        (resp.id(), resp.ttl(), resp.granted_ttl()),
        (0x1234_5678, -1, 0)
    );
    assert!(resp.keys().is_empty());
    assert!(resp.header().is_some());

    let lease = grant(&mut c, 60).await;
    put_leased(&mut c, "k", lease).await;
    c.lease_revoke(lease).await.unwrap();
    let resp = c
        .lease_time_to_live(lease, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!((resp.id(), resp.ttl(), resp.granted_ttl()), (lease, -1, 0));
    assert!(resp.keys().is_empty());
}

#[tokio::test]
async fn leases_lists_granted_and_drops_revoked() {
    let (_s, mut c) = fresh().await;
    assert!(lease_ids(&mut c).await.is_empty());
    let a = grant(&mut c, 60).await;
    let b = grant(&mut c, 60).await;
    let d = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(7)))
        .await
        .unwrap()
        .id();
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([a, b, d]));
    c.lease_revoke(b).await.unwrap();
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([a, d]));
}

// ----------------------------------------------------------------------------------
// Put and Txn with leases
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn put_with_unknown_lease_is_not_found() {
    let (_s, mut c) = fresh().await;
    let before = current_revision(&mut c).await;
    let r = c
        .put("k", "v", Some(PutOptions::new().with_lease(0x1234_5678)))
        .await;
    assert_grpc_error(r, Code::NotFound, "etcdserver: requested lease not found");
    // A revoked lease is as unknown as one never granted.
    let lease = grant(&mut c, 60).await;
    c.lease_revoke(lease).await.unwrap();
    let r = c
        .put("k", "v", Some(PutOptions::new().with_lease(lease)))
        .await;
    assert_grpc_error(r, Code::NotFound, "etcdserver: requested lease not found");
    assert!(!exists(&mut c, "k").await);
    assert_eq!(current_revision(&mut c).await, before);
}

#[tokio::test]
async fn put_attaches_and_plain_put_detaches() {
    let (_s, mut c) = fresh().await;
    let lease = grant(&mut c, 60).await;
    put_leased(&mut c, "k", lease).await;
    assert_eq!(get_one(&mut c, "k").await.unwrap().lease(), lease);
    assert_eq!(lease_keys(&mut c, lease).await, vec!["k"]);

    c.put("k", "v2", None).await.unwrap();
    assert_eq!(get_one(&mut c, "k").await.unwrap().lease(), 0);
    assert!(lease_keys(&mut c, lease).await.is_empty());
    // Detached, so revoking the lease leaves it alone.
    c.lease_revoke(lease).await.unwrap();
    assert_eq!(get_one(&mut c, "k").await.unwrap().value(), b"v2");
}

#[tokio::test]
async fn put_with_another_lease_moves_the_key() {
    let (_s, mut c) = fresh().await;
    let first = grant(&mut c, 60).await;
    let second = grant(&mut c, 60).await;
    put_leased(&mut c, "k", first).await;
    put_leased(&mut c, "k", second).await;
    assert!(lease_keys(&mut c, first).await.is_empty());
    assert_eq!(lease_keys(&mut c, second).await, vec!["k"]);
    c.lease_revoke(first).await.unwrap();
    assert_eq!(get_one(&mut c, "k").await.unwrap().lease(), second);
}

#[tokio::test]
async fn put_ignore_lease_keeps_the_lease() {
    let (_s, mut c) = fresh().await;
    let lease = grant(&mut c, 60).await;
    put_leased(&mut c, "k", lease).await;
    c.put("k", "v2", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap();
    let kv = get_one(&mut c, "k").await.unwrap();
    assert_eq!((kv.value(), kv.lease()), (b"v2".as_slice(), lease));
    assert_eq!(lease_keys(&mut c, lease).await, vec!["k"]);
    c.lease_revoke(lease).await.unwrap();
    assert!(!exists(&mut c, "k").await);
}

#[tokio::test]
async fn txn_put_with_unknown_lease_is_not_found() {
    let (_s, mut c) = fresh().await;
    let before = current_revision(&mut c).await;
    let txn = Txn::new().and_then([
        TxnOp::put("a", "v", None),
        TxnOp::put("b", "v", Some(PutOptions::new().with_lease(0x1234_5678))),
    ]);
    let r = c.txn(txn).await;
    assert_grpc_error(r, Code::NotFound, "etcdserver: requested lease not found");
    // The whole txn is refused, including its valid put.
    assert!(!exists(&mut c, "a").await);
    assert_eq!(current_revision(&mut c).await, before);

    let lease = grant(&mut c, 60).await;
    let txn = Txn::new().and_then([TxnOp::put(
        "b",
        "v",
        Some(PutOptions::new().with_lease(lease)),
    )]);
    c.txn(txn).await.unwrap();
    assert_eq!(get_one(&mut c, "b").await.unwrap().lease(), lease);
}

// ----------------------------------------------------------------------------------
// Expiry
// ----------------------------------------------------------------------------------

#[tokio::test]
async fn unrenewed_lease_expires_and_watchers_see_the_deletes() {
    let (_s, mut c) = fresh().await;
    let ttl = 2;
    let mut watch = watch_prefix(&mut c, "e/").await;
    let granted_at = Instant::now();
    let lease = grant(&mut c, ttl).await;
    put_leased(&mut c, "e/a", lease).await;
    let put_rev = put_leased(&mut c, "e/b", lease).await;
    let mut puts = 0;
    while puts < 2 {
        puts += next_events(&mut watch).await.len();
    }

    let ttl_d = Duration::from_secs(ttl as u64);
    let gone_at = wait_gone(&mut c, "e/a", granted_at + ttl_d + Duration::from_secs(5)).await;
    // Never before the TTL has run out (minus a margin for clock and request skew).
    assert!(
        gone_at >= granted_at + ttl_d - Duration::from_millis(500),
        "expired after {:?}, TTL is {ttl} s",
        gone_at - granted_at
    );
    assert!(!exists(&mut c, "e/b").await);

    // Expiry is a revoke: both keys deleted in one new revision, seen in one response.
    let mut events = next_events(&mut watch).await;
    events.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        events,
        vec![
            (EventType::Delete, "e/a".to_string(), put_rev + 1),
            (EventType::Delete, "e/b".to_string(), put_rev + 1),
        ]
    );
    assert_eq!(current_revision(&mut c).await, put_rev + 1);
    assert_eq!(c.lease_time_to_live(lease, None).await.unwrap().ttl(), -1);
    assert!(!lease_ids(&mut c).await.contains(&lease));
    let r = c.lease_revoke(lease).await;
    assert_grpc_error(r, Code::NotFound, "etcdserver: requested lease not found");
}

#[tokio::test]
async fn lease_survives_restart_and_expires_later() {
    let (mut s, mut c) = fresh().await;
    let ttl = 6;
    let granted_at = Instant::now();
    let lease = grant(&mut c, ttl).await;
    put_leased(&mut c, "r", lease).await;
    let revoked = grant(&mut c, 600).await;
    c.lease_revoke(revoked).await.unwrap();
    // Let part of the TTL run out before the restart.
    tokio::time::sleep(Duration::from_secs(2)).await;

    s.restart();
    let restarted_at = Instant::now();
    let mut c = s.client().await;
    assert!(exists(&mut c, "r").await, "key gone right after restart");
    assert_eq!(lease_keys(&mut c, lease).await, vec!["r"]);
    assert_eq!(lease_ids(&mut c).await, BTreeSet::from([lease]));
    let t = c.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(t.granted_ttl(), ttl);
    // etcd 3.4 restarts the countdown at the full TTL; remaining time kept from before
    // the restart would show less. Both are within (0, TTL].
    assert!(
        t.ttl() > 0 && t.ttl() <= ttl,
        "remaining after restart {}",
        t.ttl()
    );
    assert_eq!(c.lease_time_to_live(revoked, None).await.unwrap().ttl(), -1);

    let ttl_d = Duration::from_secs(ttl as u64);
    let gone_at = wait_gone(&mut c, "r", restarted_at + ttl_d + Duration::from_secs(8)).await;
    assert!(
        gone_at >= granted_at + ttl_d - Duration::from_millis(500),
        "expired {:?} after grant, TTL is {ttl} s",
        gone_at - granted_at
    );
    assert_eq!(c.lease_time_to_live(lease, None).await.unwrap().ttl(), -1);
}

#[tokio::test]
async fn many_leases_expire_together_while_writes_continue() {
    let (_s, mut c) = fresh().await;
    // Long enough to grant them all before the first expires.
    let ttl: i64 = 30;
    let ttl_d = Duration::from_secs(ttl as u64);
    let first_grant = Instant::now();

    let mut setup = tokio::task::JoinSet::new();
    let workers = 64;
    for w in 0..workers {
        let mut c = c.clone();
        setup.spawn(async move {
            for i in (w..MASS_LEASES).step_by(workers) {
                let lease = grant(&mut c, ttl).await;
                put_leased(&mut c, &format!("mass/{i:05}"), lease).await;
            }
        });
    }
    while let Some(r) = setup.join_next().await {
        r.expect("setup worker");
    }
    let count = |c: &mut Client| {
        let mut c = c.clone();
        async move {
            c.get(
                "mass/",
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .unwrap()
            .count()
        }
    };
    let ready = Instant::now();
    assert!(
        ready + Duration::from_secs(1) < first_grant + ttl_d,
        "setup took {:?}, too long to observe the expiry",
        ready - first_grant
    );
    assert_eq!(count(&mut c).await, MASS_LEASES as i64);
    assert_eq!(lease_ids(&mut c).await.len(), MASS_LEASES);
    let setup_rev = current_revision(&mut c).await;
    let mut watch = watch_prefix(&mut c, "mass/").await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut c = c.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut n, mut max) = (0u64, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                c.put("writer", n.to_string(), None)
                    .await
                    .expect("writer put");
                max = max.max(t.elapsed());
                n += 1;
            }
            (n, max)
        })
    };

    // Rate limits on revocation are fine (etcd revokes 1,000 a second); all must be done
    // within 30 s of the TTL.
    let deadline = first_grant + ttl_d + Duration::from_secs(30);
    let mut deletes = Vec::new();
    while deletes.len() < MASS_LEASES {
        assert!(
            Instant::now() < deadline,
            "{} of {MASS_LEASES} keys expired",
            deletes.len()
        );
        for (kind, key, mod_rev) in next_events(&mut watch).await {
            assert_eq!(kind, EventType::Delete, "unexpected event on {key}");
            deletes.push((key, mod_rev));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (puts, max_latency) = writer.await.expect("writer task");
    eprintln!(
        "{MASS_LEASES} leases granted in {:?}, all expired {:?} after the first grant; \
         writer: {puts} puts, max latency {max_latency:?}",
        ready - first_grant,
        Instant::now() - first_grant
    );

    assert_eq!(count(&mut c).await, 0);
    assert!(lease_ids(&mut c).await.is_empty());
    let keys: BTreeSet<&String> = deletes.iter().map(|(k, _)| k).collect();
    assert_eq!(keys.len(), MASS_LEASES, "each key deleted exactly once");
    // Each lease is revoked in its own revision, as etcd 3.4 does.
    let revs: BTreeSet<i64> = deletes.iter().map(|(_, r)| *r).collect();
    assert_eq!(revs.len(), MASS_LEASES);
    assert!(revs.iter().all(|r| *r > setup_rev));
    assert!(puts > 0, "the writer never got a put through");
    assert!(
        max_latency < Duration::from_secs(5),
        "a put took {max_latency:?}"
    );
}
