//! Durability across restarts (graceful and kill -9), checked against etcd 3.4.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{assert_grpc_error, current_revision, rev, Code, TestServer};
use etcd_client::{Client, GetOptions};

/// key -> (value, create_revision, mod_revision, version) for every key under `prefix`.
async fn snapshot(c: &mut Client, prefix: &str) -> BTreeMap<String, (String, i64, i64, i64)> {
    let resp = c
        .get(prefix, Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                (
                    String::from_utf8_lossy(kv.value()).into_owned(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                ),
            )
        })
        .collect()
}

async fn write_keys(c: &mut Client, n: usize) -> i64 {
    let mut last = 0;
    for i in 0..n {
        let resp = c
            .put(format!("key/{i:04}"), format!("value-{i}"), None)
            .await
            .unwrap();
        last = rev(resp.header());
    }
    last
}

#[tokio::test]
async fn graceful_restart_keeps_all_keys_and_revisions() {
    let mut server = TestServer::start(&[]);
    let mut c = server.client().await;
    let last = write_keys(&mut c, 100).await;
    assert_eq!(last, 101);
    // Overwrite some so that versions differ from 1.
    for i in 0..10 {
        c.put(format!("key/{i:04}"), format!("again-{i}"), None)
            .await
            .unwrap();
    }
    let before = snapshot(&mut c, "key/").await;
    assert_eq!(before.len(), 100);
    drop(c);

    server.stop();
    server.restart();

    let mut c = server.client().await;
    let after = snapshot(&mut c, "key/").await;
    assert_eq!(after, before);
    assert_eq!(current_revision(&mut c).await, 111);
    assert_eq!(after["key/0003"], ("again-3".to_string(), 5, 105, 2));
    assert_eq!(after["key/0050"], ("value-50".to_string(), 52, 52, 1));
}

#[tokio::test]
async fn revision_continues_after_graceful_restart() {
    let mut server = TestServer::start(&[]);
    let mut c = server.client().await;
    let last = write_keys(&mut c, 20).await;
    drop(c);
    server.stop();
    server.restart();
    let mut c = server.client().await;
    assert_eq!(current_revision(&mut c).await, last);
    let resp = c.put("next", "n", None).await.unwrap();
    assert_eq!(rev(resp.header()), last + 1);
}

#[tokio::test]
async fn restart_preserves_deletes_and_compaction() {
    let mut server = TestServer::start(&[]);
    let mut c = server.client().await;
    write_keys(&mut c, 10).await; // 2..=11
    c.delete("key/0003", None).await.unwrap(); // 12
    c.compact(8, None).await.unwrap();
    drop(c);
    server.stop();
    server.restart();
    let mut c = server.client().await;
    let snap = snapshot(&mut c, "key/").await;
    assert_eq!(snap.len(), 9);
    assert!(!snap.contains_key("key/0003"));
    let r = c
        .get(
            "key/",
            Some(GetOptions::new().with_prefix().with_revision(7)),
        )
        .await;
    assert_grpc_error(
        r,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    let resp = c
        .get("key/0003", Some(GetOptions::new().with_revision(11)))
        .await
        .unwrap();
    assert_eq!(resp.kvs()[0].value(), b"value-3");
    assert_eq!(current_revision(&mut c).await, 12);
}

#[tokio::test]
async fn repeated_restarts_keep_data() {
    let mut server = TestServer::start(&[]);
    let mut c = server.client().await;
    write_keys(&mut c, 5).await;
    let before = snapshot(&mut c, "key/").await;
    drop(c);
    for round in 0..2 {
        server.stop();
        server.restart();
        let mut c = server.client().await;
        assert_eq!(snapshot(&mut c, "key/").await, before, "round {round}");
    }
}

const WRITERS: usize = 8;
const ACKS_BEFORE_KILL: usize = 2000;
/// Upper bound on puts per writer, so the load stops by itself whatever happens.
const MAX_PUTS_PER_WRITER: usize = 20_000;

struct Load {
    /// key -> (value, revision of the acknowledged put)
    acked: Mutex<BTreeMap<String, (String, i64)>>,
    count: AtomicUsize,
    reached: tokio::sync::Notify,
}

async fn writer(mut c: Client, id: usize, load: Arc<Load>) {
    for n in 0..MAX_PUTS_PER_WRITER {
        let key = format!("load/w{id}/{n:06}");
        let value = format!("value-{id}-{n}");
        match c.put(key.clone(), value.clone(), None).await {
            Ok(resp) => {
                load.acked
                    .lock()
                    .unwrap()
                    .insert(key, (value, rev(resp.header())));
                if load.count.fetch_add(1, Ordering::SeqCst) + 1 == ACKS_BEFORE_KILL {
                    load.reached.notify_one();
                }
            }
            // The server is gone: stop writing.
            Err(_) => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_load_keeps_every_acknowledged_write() {
    let mut server = TestServer::start(&[]);
    let base = server.client().await;
    let load = Arc::new(Load {
        acked: Mutex::new(BTreeMap::new()),
        count: AtomicUsize::new(0),
        reached: tokio::sync::Notify::new(),
    });
    let tasks: Vec<_> = (0..WRITERS)
        .map(|id| tokio::spawn(writer(base.clone(), id, load.clone())))
        .collect();

    tokio::time::timeout(Duration::from_secs(120), load.reached.notified())
        .await
        .expect("writers did not reach the acknowledgement count in time");
    server.kill9();

    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("writer did not stop after the server was killed")
            .unwrap();
    }
    drop(base);
    let acked = std::mem::take(&mut *load.acked.lock().unwrap());
    assert!(acked.len() >= ACKS_BEFORE_KILL, "acked {}", acked.len());
    let max_acked_rev = acked.values().map(|(_, r)| *r).max().unwrap();

    server.restart();
    let mut c = server.client().await;
    let snap = snapshot(&mut c, "load/").await;
    let mut missing = Vec::new();
    for (key, (value, revision)) in &acked {
        match snap.get(key) {
            Some((v, create, m, ver)) => {
                assert_eq!(v, value, "value of {key}");
                assert_eq!(
                    (*create, *m, *ver),
                    (*revision, *revision, 1),
                    "revisions of {key}"
                );
            }
            None => missing.push(key.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );

    // Every put (acknowledged or not) that survived got its own revision, and the
    // revision continues from the last one.
    let current = current_revision(&mut c).await;
    assert!(
        current >= max_acked_rev,
        "current {current} < acked {max_acked_rev}"
    );
    assert_eq!(current, 1 + snap.len() as i64);
    let resp = c.put("after-crash", "x", None).await.unwrap();
    assert_eq!(rev(resp.header()), current + 1);
}

#[tokio::test]
async fn revision_continues_after_kill9() {
    let mut server = TestServer::start(&[]);
    let mut c = server.client().await;
    let last = write_keys(&mut c, 30).await;
    drop(c);
    server.kill9();
    server.restart();
    let mut c = server.client().await;
    assert_eq!(current_revision(&mut c).await, last);
    assert_eq!(snapshot(&mut c, "key/").await.len(), 30);
    let resp = c.put("next", "n", None).await.unwrap();
    assert_eq!(rev(resp.header()), last + 1);
}
