//! Watch semantics, checked against etcd 3.4.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{current_revision, rev, TestServer};
use etcd_client::{
    Client, CompactionOptions, DeleteOptions, Event, EventType, GetOptions, PutOptions, Txn, TxnOp,
    WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};
use tokio::time::timeout;

/// Generous for a loaded 2-core machine: a missing response fails the test instead of
/// hanging it, and nothing here is a performance assertion.
const WAIT: Duration = Duration::from_secs(20);

/// Cancel reasons of refused watch creations, etcd 3.4's texts.
const DUPLICATE_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
const EMPTY_RANGE: &str = "mvcc: watcher range is empty";

async fn fresh() -> (TestServer, Client) {
    let server = TestServer::start(&[]);
    let client = server.client().await;
    (server, client)
}

async fn next(ws: &mut WatchStream) -> WatchResponse {
    match timeout(WAIT, ws.message()).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => panic!("watch stream ended"),
        Ok(Err(e)) => panic!("watch stream failed: {e}"),
        Err(_) => panic!("no watch response within {WAIT:?}"),
    }
}

/// The next response must announce a successfully created watch.
async fn next_created(ws: &mut WatchStream) -> WatchResponse {
    let r = next(ws).await;
    assert!(r.created() && !r.canceled(), "not a created watch: {r:?}");
    assert!(r.events().is_empty(), "{r:?}");
    assert_eq!((r.compact_revision(), r.cancel_reason()), (0, ""), "{r:?}");
    r
}

/// Opens a stream with one watch and consumes its created response; returns the watch id.
async fn open(c: &mut Client, key: &str, opts: Option<WatchOptions>) -> (WatchStream, i64) {
    let mut ws = timeout(WAIT, c.watch(key, opts))
        .await
        .expect("watch call timed out")
        .expect("watch call");
    let id = next_created(&mut ws).await.watch_id();
    (ws, id)
}

/// Adds a watch to an open stream and consumes its created response; returns the watch id.
async fn add(ws: &mut WatchStream, key: &str, opts: Option<WatchOptions>) -> i64 {
    ws.watch(key, opts).await.expect("send create request");
    next_created(ws).await.watch_id()
}

/// The events of the next response, which must be a plain event response of watch `id`.
/// A replay may pack many revisions into one response.
async fn next_events(ws: &mut WatchStream, id: i64) -> Vec<Event> {
    let r = next(ws).await;
    assert_eq!(r.watch_id(), id, "response for another watch: {r:?}");
    assert!(!r.created() && !r.canceled(), "control response {r:?}");
    assert!(!r.events().is_empty(), "response without events: {r:?}");
    r.events().to_vec()
}

/// Exactly `n` events of watch `id`, from plain event responses only.
async fn events(ws: &mut WatchStream, id: i64, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(next_events(ws, id).await);
    }
    if out.len() > n {
        let extra = briefs(&out[n..out.len().min(n + 5)]);
        panic!(
            "expected {n} events, got {}; the first extra ones: {extra:?}",
            out.len()
        );
    }
    out
}

/// Type, key, value and mod revision of exactly `n` events of watch `id`.
async fn got(ws: &mut WatchStream, id: i64, n: usize) -> Vec<Brief> {
    briefs(&events(ws, id, n).await)
}

/// Mod revisions of watch `id`'s events, up to and including the put of `last_key`.
async fn revisions_until(ws: &mut WatchStream, id: i64, last_key: &str) -> Vec<i64> {
    let mut revs = Vec::new();
    loop {
        for ev in next_events(ws, id).await {
            let kv = ev.kv().expect("event kv");
            revs.push(kv.mod_revision());
            if kv.key() == last_key.as_bytes() {
                return revs;
            }
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

type Brief = (EventType, String, String, i64);

/// Type, key, value and mod revision of an event.
fn brief(ev: &Event) -> Brief {
    let kv = ev.kv().expect("event kv");
    (
        ev.event_type(),
        text(kv.key()),
        text(kv.value()),
        kv.mod_revision(),
    )
}

fn briefs(evs: &[Event]) -> Vec<Brief> {
    evs.iter().map(brief).collect()
}

fn put_ev(key: &str, value: &str, revision: i64) -> Brief {
    (EventType::Put, key.into(), value.into(), revision)
}

fn del_ev(key: &str, revision: i64) -> Brief {
    (EventType::Delete, key.into(), String::new(), revision)
}

async fn put(c: &mut Client, key: &str, value: &str) -> i64 {
    rev(c.put(key, value, None).await.expect("put").header())
}

async fn del(c: &mut Client, key: &str) -> i64 {
    rev(c.delete(key, None).await.expect("delete").header())
}

/// Puts `n` keys `{prefix}{i}` with `value_len`-byte values from `tasks` concurrent writers
/// (one revision each); returns the acknowledged revisions, ascending.
async fn put_many(c: &Client, prefix: &str, n: usize, tasks: usize, value_len: usize) -> Vec<i64> {
    let mut handles = Vec::new();
    for t in 0..tasks {
        let mut c = c.clone();
        let prefix = prefix.to_string();
        handles.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in (t..n).step_by(tasks) {
                let value = vec![b'a' + (i % 26) as u8; value_len];
                let r = c.put(format!("{prefix}{i:05}"), value, None).await;
                revs.push(rev(r.expect("put").header()));
            }
            revs
        }));
    }
    let mut revs = Vec::new();
    for h in handles {
        revs.extend(h.await.expect("writer task"));
    }
    revs.sort_unstable();
    revs
}

#[track_caller]
fn assert_contiguous(revs: &[i64], first: i64, last: i64) {
    let want: Vec<i64> = (first..=last).collect();
    if revs != want.as_slice() {
        let dup = revs.windows(2).find(|w| w[0] >= w[1]);
        let gap = revs.windows(2).find(|w| w[1] > w[0] + 1);
        panic!(
            "expected every revision {first}..={last} once, in order; got {} revisions \
             (first {:?}, last {:?}, first repeat/disorder {dup:?}, first gap {gap:?})",
            revs.len(),
            revs.first(),
            revs.last()
        );
    }
}

#[tokio::test]
async fn watch_key_reports_puts_and_deletes_with_full_kv() {
    let (_s, mut c) = fresh().await;
    let before = c.put("k", "old", None).await.unwrap(); // 2: before the watch, not reported
    let mut ws = c.watch("k", None).await.unwrap();
    let created = next_created(&mut ws).await;
    // A stream numbers its watches from 0, as etcd 3.4 does.
    assert_eq!(created.watch_id(), 0);
    assert_eq!(rev(created.header()), 2, "the current revision");
    let (h, bh) = (created.header().unwrap(), before.header().unwrap());
    assert_eq!(
        (h.cluster_id(), h.member_id()),
        (bh.cluster_id(), bh.member_id())
    );

    let r1 = put(&mut c, "k", "v1").await;
    put(&mut c, "k2", "x").await; // a longer key is another key
    put(&mut c, "j", "x").await;
    let r2 = put(&mut c, "k", "v2").await;
    c.delete("absent", None).await.unwrap(); // deletes nothing: no revision, no event
    let r3 = del(&mut c, "k").await;
    let r4 = put(&mut c, "k", "v3").await;

    let mut seen = Vec::new();
    for _ in 0..4 {
        let r = next(&mut ws).await;
        assert_eq!(r.watch_id(), 0);
        assert!(!r.created() && !r.canceled(), "{r:?}");
        assert_eq!(r.events().len(), 1, "one response per live revision: {r:?}");
        let ev = r.events()[0].clone();
        assert_eq!(rev(r.header()), ev.kv().unwrap().mod_revision(), "{r:?}");
        assert!(ev.prev_kv().is_none(), "prev_kv only when asked for");
        seen.push(ev);
    }
    let fields = |ev: &Event| {
        let kv = ev.kv().unwrap();
        (
            ev.event_type(),
            text(kv.key()),
            text(kv.value()),
            kv.create_revision(),
            kv.mod_revision(),
            kv.version(),
            kv.lease(),
        )
    };
    let want = vec![
        (EventType::Put, "k".into(), "v1".into(), 2, r1, 2, 0),
        (EventType::Put, "k".into(), "v2".into(), 2, r2, 3, 0),
        // A delete carries only the key and the revision of the deletion.
        (EventType::Delete, "k".into(), String::new(), 0, r3, 0, 0),
        (EventType::Put, "k".into(), "v3".into(), r4, r4, 1, 0),
    ];
    assert_eq!(seen.iter().map(fields).collect::<Vec<_>>(), want);
    assert_eq!((r1, r2, r3, r4), (3, 6, 7, 8));
}

#[tokio::test]
async fn prefix_watch_sees_only_keys_under_the_prefix() {
    let (_s, mut c) = fresh().await;
    let (mut ws, id) = open(&mut c, "p/", Some(WatchOptions::new().with_prefix())).await;
    let a = put(&mut c, "p/a", "1").await;
    put(&mut c, "p", "x").await;
    put(&mut c, "p0", "x").await; // "p0" is the prefix's range end, excluded
    put(&mut c, "q", "x").await;
    let b = put(&mut c, "p/b/c", "2").await;
    let d = del(&mut c, "p/a").await;
    let z = put(&mut c, "p/\u{ff}", "3").await;
    let seen = got(&mut ws, id, 4).await;
    assert_eq!(
        seen,
        vec![
            put_ev("p/a", "1", a),
            put_ev("p/b/c", "2", b),
            del_ev("p/a", d),
            put_ev("p/\u{ff}", "3", z),
        ]
    );
}

#[tokio::test]
async fn range_watch_is_half_open() {
    let (_s, mut c) = fresh().await;
    let opts = WatchOptions::new().with_range("d");
    let (mut ws, id) = open(&mut c, "b", Some(opts)).await;
    put(&mut c, "a", "x").await;
    let b = put(&mut c, "b", "1").await;
    let cz = put(&mut c, "czz", "2").await;
    put(&mut c, "d", "x").await; // range_end itself is excluded
    put(&mut c, "e", "x").await;
    let b0 = put(&mut c, "b\0", "3").await;
    let seen = got(&mut ws, id, 3).await;
    assert_eq!(
        seen,
        vec![
            put_ev("b", "1", b),
            put_ev("czz", "2", cz),
            put_ev("b\0", "3", b0)
        ]
    );
}

#[tokio::test]
async fn from_key_watch_sees_the_key_and_everything_after() {
    let (_s, mut c) = fresh().await;
    // with_from_key sends range_end "\0"; the same request spelled out must behave alike.
    let (mut ws, from_key) = open(&mut c, "m", Some(WatchOptions::new().with_from_key())).await;
    let nul_end = add(&mut ws, "m", Some(WatchOptions::new().with_range("\0"))).await;
    let all = add(&mut ws, "", Some(WatchOptions::new().with_all_keys())).await;
    assert_eq!((from_key, nul_end, all), (0, 1, 2));
    let l = vec![put_ev("l", "x", put(&mut c, "l", "x").await)];
    let m = put(&mut c, "m", "1").await;
    let z = put(&mut c, "zz\u{ff}", "2").await;

    let mut by_id: BTreeMap<i64, Vec<Brief>> = BTreeMap::new();
    for _ in 0..7 {
        let r = next(&mut ws).await;
        assert!(!r.created() && !r.canceled(), "{r:?}");
        by_id
            .entry(r.watch_id())
            .or_default()
            .extend(briefs(r.events()));
    }
    let tail = vec![put_ev("m", "1", m), put_ev("zz\u{ff}", "2", z)];
    assert_eq!(by_id[&0], tail);
    assert_eq!(by_id[&1], tail);
    assert_eq!(by_id[&2], [l, tail].concat());
}

#[tokio::test]
async fn empty_key_watches_the_nul_key() {
    let (_s, mut c) = fresh().await;
    let (mut ws, id) = open(&mut c, "", None).await;
    put(&mut c, "a", "x").await;
    let r = put(&mut c, "\0", "1").await;
    assert_eq!(got(&mut ws, id, 1).await, vec![put_ev("\0", "1", r)]);
}

#[tokio::test]
async fn start_revision_in_the_past_replays_history_then_goes_live() {
    let (_s, mut c) = fresh().await;
    put(&mut c, "h/a", "1").await; // 2
    let from = put(&mut c, "h/b", "1").await; // 3
    put(&mut c, "other", "x").await; // 4
    put(&mut c, "h/a", "2").await; // 5
    del(&mut c, "h/b").await; // 6
    put(&mut c, "other", "y").await; // 7
    let opts = WatchOptions::new().with_prefix().with_start_revision(from);
    let mut ws = c.watch("h/", Some(opts)).await.unwrap();
    let created = next_created(&mut ws).await;
    assert_eq!(rev(created.header()), 7);
    // The replay comes in one response whose header is the current revision, as in etcd
    // 3.4, not that of its last event.
    let r = next(&mut ws).await;
    assert_eq!((r.watch_id(), r.created(), r.canceled()), (0, false, false));
    assert_eq!(rev(r.header()), 7);
    let history = vec![
        put_ev("h/b", "1", 3),
        put_ev("h/a", "2", 5),
        del_ev("h/b", 6),
    ];
    assert_eq!(briefs(r.events()), history);
    let live = put(&mut c, "h/c", "1").await;
    assert_eq!(got(&mut ws, 0, 1).await, vec![put_ev("h/c", "1", live)]);

    // Revision 1 is the empty store's: watching from it replays everything.
    let opts = WatchOptions::new().with_start_revision(1);
    let (mut ws, id) = open(&mut c, "h/a", Some(opts)).await;
    let all = got(&mut ws, id, 2).await;
    assert_eq!(all, vec![put_ev("h/a", "1", 2), put_ev("h/a", "2", 5)]);
}

#[tokio::test]
async fn start_revision_in_the_future_skips_earlier_events() {
    let (_s, mut c) = fresh().await;
    let now = put(&mut c, "f", "0").await; // 2
    let opts = WatchOptions::new().with_start_revision(now + 3);
    let mut ws = c.watch("f", Some(opts)).await.unwrap();
    let created = next_created(&mut ws).await;
    assert_eq!(rev(created.header()), now, "the current revision");
    put(&mut c, "f", "1").await;
    put(&mut c, "f", "2").await;
    let r3 = put(&mut c, "f", "3").await;
    let r4 = put(&mut c, "f", "4").await;
    assert_eq!(r3, now + 3);
    let seen = got(&mut ws, 0, 2).await;
    assert_eq!(seen, vec![put_ev("f", "3", r3), put_ev("f", "4", r4)]);
}

#[tokio::test]
async fn prev_kv_is_attached_to_updates_and_deletes_but_not_creations() {
    let (_s, mut c) = fresh().await;
    let (mut ws, id) = open(&mut c, "k", Some(WatchOptions::new().with_prev_key())).await;
    let r1 = put(&mut c, "k", "v1").await;
    let r2 = put(&mut c, "k", "v2").await;
    let r3 = del(&mut c, "k").await;
    let r4 = put(&mut c, "k", "v3").await;
    let evs = events(&mut ws, id, 4).await;
    let prev: Vec<Option<(String, i64, i64, i64)>> = evs
        .iter()
        .map(|ev| {
            ev.prev_kv().map(|p| {
                (
                    text(p.value()),
                    p.create_revision(),
                    p.mod_revision(),
                    p.version(),
                )
            })
        })
        .collect();
    assert_eq!(
        prev,
        vec![
            None,
            Some(("v1".into(), r1, r1, 1)),
            Some(("v2".into(), r1, r2, 2)),
            None
        ]
    );
    assert_eq!(evs[1].prev_kv().unwrap().key(), b"k");
    assert_eq!(
        briefs(&evs),
        vec![
            put_ev("k", "v1", r1),
            put_ev("k", "v2", r2),
            del_ev("k", r3),
            put_ev("k", "v3", r4)
        ]
    );
}

#[tokio::test]
async fn filters_drop_puts_or_deletes() {
    let (_s, mut c) = fresh().await;
    let no_put = WatchOptions::new().with_filters([WatchFilterType::NoPut]);
    let (mut ws_np, np) = open(&mut c, "k", Some(no_put)).await;
    let no_del = WatchOptions::new().with_filters([WatchFilterType::NoDelete]);
    let (mut ws_nd, nd) = open(&mut c, "k", Some(no_del)).await;
    let r1 = put(&mut c, "k", "1").await;
    let r2 = del(&mut c, "k").await;
    let r3 = put(&mut c, "k", "2").await;
    let r4 = del(&mut c, "k").await;
    // Events of one watch are ordered, so the first one received proves what was skipped.
    assert_eq!(
        got(&mut ws_np, np, 2).await,
        vec![del_ev("k", r2), del_ev("k", r4)]
    );
    assert_eq!(
        got(&mut ws_nd, nd, 2).await,
        vec![put_ev("k", "1", r1), put_ev("k", "2", r3)]
    );
}

#[tokio::test]
async fn txn_events_arrive_in_one_response_in_operation_order() {
    let (_s, mut c) = fresh().await;
    put(&mut c, "t/c", "old").await;
    let (mut ws, id) = open(&mut c, "t/", Some(WatchOptions::new().with_prefix())).await;
    let txn = Txn::new().and_then(vec![
        TxnOp::put("t/z", "1", None),
        TxnOp::put("t/a", "2", None),
        TxnOp::delete("t/c", None),
        TxnOp::put("t/m", "3", None),
    ]);
    let r = rev(c.txn(txn).await.unwrap().header());
    let resp = next(&mut ws).await;
    assert_eq!(resp.watch_id(), id);
    assert_eq!(rev(resp.header()), r);
    assert_eq!(
        briefs(resp.events()),
        vec![
            put_ev("t/z", "1", r),
            put_ev("t/a", "2", r),
            del_ev("t/c", r),
            put_ev("t/m", "3", r)
        ]
    );

    // A range delete is one revision too: one response, keys in order.
    put(&mut c, "t/b", "x").await;
    let d = rev(c
        .delete("t/", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap()
        .header());
    events(&mut ws, id, 1).await;
    let resp = next(&mut ws).await;
    let keys = ["t/a", "t/b", "t/m", "t/z"];
    assert_eq!(briefs(resp.events()), keys.map(|k| del_ev(k, d)).to_vec());
}

#[tokio::test]
async fn one_stream_carries_many_watches() {
    let (_s, mut c) = fresh().await;
    let (mut ws, a) = open(&mut c, "a", None).await;
    let a_prefix = add(&mut ws, "a", Some(WatchOptions::new().with_prefix())).await;
    let b = add(&mut ws, "b", None).await;
    assert_eq!((a, a_prefix, b), (0, 1, 2));
    // One put seen by two watches: one response for each.
    let ra = put(&mut c, "a", "1").await;
    let mut resps = vec![next(&mut ws).await, next(&mut ws).await];
    resps.sort_by_key(|r| r.watch_id());
    for (r, want_id) in resps.iter().zip([a, a_prefix]) {
        assert_eq!(r.watch_id(), want_id);
        assert_eq!(briefs(r.events()), vec![put_ev("a", "1", ra)]);
    }
    let rb = put(&mut c, "b", "2").await;
    assert_eq!(got(&mut ws, b, 1).await, vec![put_ev("b", "2", rb)]);
}

#[tokio::test]
async fn client_chosen_watch_ids_and_duplicates() {
    let (_s, mut c) = fresh().await;
    let (mut ws, five) = open(&mut c, "a", Some(WatchOptions::new().with_watch_id(5))).await;
    assert_eq!(five, 5);
    put(&mut c, "x", "x").await; // 2

    ws.watch("b", Some(WatchOptions::new().with_watch_id(5)))
        .await
        .unwrap();
    let dup = next(&mut ws).await;
    assert!(dup.created() && dup.canceled(), "{dup:?}");
    assert_eq!(dup.watch_id(), -1);
    assert_eq!(dup.cancel_reason(), DUPLICATE_ID);
    assert_eq!(rev(dup.header()), 2);
    assert!(dup.events().is_empty());

    // Automatic ids count from 0 and step over ids the client took.
    assert_eq!(add(&mut ws, "c", None).await, 0);
    assert_eq!(
        add(&mut ws, "d", Some(WatchOptions::new().with_watch_id(1))).await,
        1
    );
    assert_eq!(add(&mut ws, "e", None).await, 2);

    let ra = put(&mut c, "a", "1").await;
    assert_eq!(got(&mut ws, 5, 1).await, vec![put_ev("a", "1", ra)]);
    put(&mut c, "b", "1").await; // the refused watch does not exist
    let re = put(&mut c, "e", "1").await;
    assert_eq!(got(&mut ws, 2, 1).await, vec![put_ev("e", "1", re)]);

    // Ids belong to a stream: another stream may use the same one.
    let (_ws2, again) = open(&mut c, "a", Some(WatchOptions::new().with_watch_id(5))).await;
    assert_eq!(again, 5);
}

#[tokio::test]
async fn cancel_stops_one_watch_and_leaves_the_others() {
    let (_s, mut c) = fresh().await;
    let (mut ws, a) = open(&mut c, "a", None).await;
    let b = add(&mut ws, "b", None).await;
    let now = put(&mut c, "x", "x").await;
    ws.cancel(a).await.unwrap();
    let r = next(&mut ws).await;
    assert_eq!(r.watch_id(), a);
    assert!(r.canceled() && !r.created(), "{r:?}");
    assert_eq!((r.cancel_reason(), r.compact_revision()), ("", 0));
    assert!(r.events().is_empty());
    assert_eq!(rev(r.header()), now);

    // "a" first: an event for the canceled watch would arrive before the one for "b".
    put(&mut c, "a", "1").await;
    let rb = put(&mut c, "b", "1").await;
    assert_eq!(got(&mut ws, b, 1).await, vec![put_ev("b", "1", rb)]);

    // Canceling an unknown or already canceled id is answered with nothing: control
    // responses keep their order, so the progress response comes next.
    ws.cancel(42).await.unwrap();
    ws.cancel(a).await.unwrap();
    ws.request_progress().await.unwrap();
    let r = next(&mut ws).await;
    assert_eq!(r.watch_id(), -1, "not the progress response: {r:?}");
    assert!(!r.canceled() && !r.created());
    // Automatic ids are not reused after a cancel.
    assert_eq!(add(&mut ws, "a", None).await, 2);
}

#[tokio::test]
async fn watching_from_a_compacted_revision_is_canceled() {
    let (_s, mut c) = fresh().await;
    for v in ["1", "2", "3", "4", "5"] {
        put(&mut c, "k", v).await; // 2..=6
    }
    c.compact(4, None).await.unwrap();
    let mut ws = c
        .watch("k", Some(WatchOptions::new().with_start_revision(3)))
        .await
        .unwrap();
    // The watch is created first, then canceled with the compaction revision.
    let created = next_created(&mut ws).await;
    assert_eq!((created.watch_id(), rev(created.header())), (0, 6));
    let r = next(&mut ws).await;
    assert_eq!(r.watch_id(), 0);
    assert!(r.canceled() && !r.created(), "{r:?}");
    assert_eq!(r.compact_revision(), 4);
    assert_eq!(r.cancel_reason(), "");
    assert!(r.events().is_empty());
    assert_eq!(rev(r.header()), 0, "revision 0, as in etcd 3.4");

    // The compaction revision itself is still watchable, on the same stream.
    let id = add(
        &mut ws,
        "k",
        Some(WatchOptions::new().with_start_revision(4)),
    )
    .await;
    assert_eq!(id, 1);
    let seen = got(&mut ws, id, 3).await;
    assert_eq!(
        seen,
        vec![
            put_ev("k", "3", 4),
            put_ev("k", "4", 5),
            put_ev("k", "5", 6)
        ]
    );
}

#[tokio::test]
async fn compacted_watch_keeps_its_id_until_canceled() {
    let (_s, mut c) = fresh().await;
    put(&mut c, "k", "1").await; // 2
    put(&mut c, "k", "2").await; // 3
    c.compact(3, None).await.unwrap();
    let opts = WatchOptions::new().with_start_revision(2).with_watch_id(9);
    let (mut ws, id) = open(&mut c, "k", Some(opts)).await;
    assert_eq!(id, 9);
    let r = next(&mut ws).await;
    assert!(r.canceled() && r.watch_id() == 9, "{r:?}");
    assert_eq!(r.compact_revision(), 3);

    // As in etcd 3.4, the stream still holds the id: reusing it is refused...
    ws.watch("k", Some(WatchOptions::new().with_watch_id(9)))
        .await
        .unwrap();
    let r = next(&mut ws).await;
    assert!(r.created() && r.canceled() && r.watch_id() == -1, "{r:?}");
    assert_eq!(r.cancel_reason(), DUPLICATE_ID);
    // ...and an explicit cancel is answered.
    ws.cancel(9).await.unwrap();
    let r = next(&mut ws).await;
    assert!(r.canceled() && !r.created() && r.watch_id() == 9, "{r:?}");
    assert_eq!((r.compact_revision(), rev(r.header())), (0, 3));
    assert_eq!(
        add(&mut ws, "k", Some(WatchOptions::new().with_watch_id(9))).await,
        9
    );
}

#[tokio::test]
async fn negative_start_revision_is_refused_as_compacted() {
    // etcd 3.6+ refuses the create request itself, as it refuses one it does not permit:
    // created and canceled at once, watch ID -1, the compacted error as the reason, whether
    // or not anything was compacted. (etcd 3.4 created the watch and then canceled it with
    // compact_revision -1; Cairn follows etcd 3.7.)
    let (_s, mut c) = fresh().await;
    put(&mut c, "k", "1").await; // 2
    let opts = || Some(WatchOptions::new().with_start_revision(-5));
    let mut ws = timeout(WAIT, c.watch("k", opts()))
        .await
        .expect("watch call timed out")
        .expect("watch call");
    let refused = |r: &WatchResponse, rev: i64| {
        assert!(r.created() && r.canceled() && r.watch_id() == -1, "{r:?}");
        assert_eq!(
            (r.compact_revision(), r.cancel_reason()),
            (0, "etcdserver: mvcc: required revision has been compacted"),
            "{r:?}"
        );
        assert_eq!(r.header().map(|h| h.revision()), Some(rev), "{r:?}");
        assert!(r.events().is_empty());
    };
    refused(&next(&mut ws).await, 2);

    put(&mut c, "k", "2").await; // 3
    c.compact(3, None).await.unwrap();
    ws.watch("k", opts()).await.expect("send create request");
    refused(&next(&mut ws).await, 3);
    // The stream still serves other watches.
    let id = add(&mut ws, "k", None).await;
    put(&mut c, "k", "3").await; // 4
    assert_eq!(next_events(&mut ws, id).await.len(), 1);
}

#[tokio::test]
async fn watch_from_a_compacted_delete_sees_the_delete() {
    // etcd issue 18089 (fixed in 3.4.34, 3.5.16 and 3.6): a compaction at the revision of a
    // delete keeps that tombstone, so a watch resuming from the compacted revision still
    // sees the delete. etcd 3.4.23 drops it; Cairn follows etcd 3.7.
    let (_s, mut c) = fresh().await;
    for v in ["v2", "v3", "v4"] {
        put(&mut c, "k", v).await;
    }
    let deleted_at = del(&mut c, "k").await; // 5
    put(&mut c, "k", "v6").await; // 6
    c.compact(deleted_at, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let (mut ws, id) = open(
        &mut c,
        "k",
        Some(WatchOptions::new().with_start_revision(deleted_at)),
    )
    .await;
    assert_eq!(
        got(&mut ws, id, 2).await,
        vec![
            (
                EventType::Delete,
                "k".to_string(),
                String::new(),
                deleted_at
            ),
            (
                EventType::Put,
                "k".to_string(),
                "v6".to_string(),
                deleted_at + 1
            ),
        ]
    );
    // The kept tombstone is history, not a key: nothing reads it as one.
    let r = c
        .get("k", Some(GetOptions::new().with_revision(deleted_at)))
        .await
        .unwrap();
    assert!(r.kvs().is_empty());
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"v6");
    // A later compaction forgets it, as any other history.
    c.compact(deleted_at + 1, None).await.unwrap();
    let r = c
        .get("k", Some(GetOptions::new().with_count_only()))
        .await
        .unwrap();
    assert_eq!(r.count(), 1);
}

#[tokio::test]
async fn compaction_does_not_disturb_a_live_watch() {
    let (_s, mut c) = fresh().await;
    let (mut ws, id) = open(&mut c, "k", None).await;
    let mut want = Vec::new();
    for v in ["1", "2", "3"] {
        want.push(put_ev("k", v, put(&mut c, "k", v).await));
    }
    let now = current_revision(&mut c).await;
    c.compact(now, None).await.unwrap();
    for v in ["4", "5"] {
        want.push(put_ev("k", v, put(&mut c, "k", v).await));
    }
    assert_eq!(got(&mut ws, id, 5).await, want);
}

#[tokio::test]
async fn progress_notify_watch_is_created_and_delivers_events() {
    let (_s, mut c) = fresh().await;
    // etcd 3.4 notifies every 10 minutes: only creation and delivery are testable here.
    let (mut ws, id) = open(
        &mut c,
        "k",
        Some(WatchOptions::new().with_progress_notify()),
    )
    .await;
    let r = put(&mut c, "k", "1").await;
    assert_eq!(got(&mut ws, id, 1).await, vec![put_ev("k", "1", r)]);
}

#[tokio::test]
async fn request_progress_reports_the_current_revision_once_per_stream() {
    let (_s, mut c) = fresh().await;
    let (mut ws, a) = open(&mut c, "a", None).await;
    let b = add(&mut ws, "b", None).await;
    let ra = put(&mut c, "a", "1").await;
    put(&mut c, "unwatched", "x").await;
    let now = put(&mut c, "unwatched", "y").await;
    // Events and control responses may overtake each other: wait for the event first.
    assert_eq!(got(&mut ws, a, 1).await, vec![put_ev("a", "1", ra)]);

    ws.request_progress().await.unwrap();
    ws.cancel(b).await.unwrap();
    let r = next(&mut ws).await;
    assert_eq!(
        r.watch_id(),
        -1,
        "a progress response belongs to no watch: {r:?}"
    );
    assert!(!r.created() && !r.canceled(), "{r:?}");
    assert!(r.events().is_empty());
    assert_eq!((r.compact_revision(), r.cancel_reason()), (0, ""));
    assert_eq!(
        rev(r.header()),
        now,
        "includes writes no watch of the stream covers"
    );
    // One progress response for the stream, not one per watch.
    let r = next(&mut ws).await;
    assert!(
        r.canceled() && r.watch_id() == b,
        "expected b's cancel, got {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumed_watch_sees_every_revision_exactly_once() {
    let (server, mut c) = fresh().await;
    let (mut ws, id) = open(&mut c, "r/", Some(WatchOptions::new().with_prefix())).await;
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0usize);
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
    let mut wc = server.client().await;
    // The gate guarantees writes both between the drop and the resume and during the resume.
    let writer = tokio::spawn(async move {
        let mut acked = Vec::new();
        let mut dropped = Some(dropped_rx);
        for i in 0..600 {
            if i == 300 {
                timeout(WAIT, dropped.take().unwrap())
                    .await
                    .unwrap()
                    .unwrap();
            }
            acked.push(put(&mut wc, &format!("r/{i:04}"), "v").await);
            count_tx.send_replace(acked.len());
        }
        acked.push(put(&mut wc, "r/zz-last", "v").await);
        acked
    });

    let mut seen = Vec::new();
    while seen.len() < 150 {
        let evs = next_events(&mut ws, id).await;
        seen.extend(evs.iter().map(|e| e.kv().unwrap().mod_revision()));
    }
    drop(ws);
    dropped_tx.send(()).unwrap();
    let last = *seen.last().unwrap();
    timeout(WAIT, count_rx.wait_for(|n| *n >= 400))
        .await
        .unwrap()
        .unwrap();

    let opts = WatchOptions::new()
        .with_prefix()
        .with_start_revision(last + 1);
    let (mut ws, id) = open(&mut c, "r/", Some(opts)).await;
    seen.extend(revisions_until(&mut ws, id, "r/zz-last").await);
    let acked = writer.await.unwrap();
    assert_eq!(acked.len(), 601);
    assert_contiguous(&acked, 2, 602);
    assert_contiguous(&seen, 2, 602);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_of_10000_revisions_races_live_writes_without_loss() {
    let (server, mut c) = fresh().await;
    let history = put_many(&c, "h/", 10_000, 32, 16).await;
    assert_contiguous(&history, 2, 10_001);

    let opts = WatchOptions::new().with_prefix().with_start_revision(2);
    let (mut ws, id) = open(&mut c, "h/", Some(opts)).await;
    let wc = server.client().await;
    let writer = tokio::spawn(async move { put_many(&wc, "h/live/", 2_000, 4, 16).await });
    let reader = tokio::spawn(async move { revisions_until(&mut ws, id, "h/zz-last").await });
    let live = writer.await.unwrap();
    let last = put(&mut c, "h/zz-last", "v").await;
    let seen = timeout(Duration::from_secs(120), reader)
        .await
        .expect("reader")
        .unwrap();
    assert_eq!(live.len(), 2_000);
    assert_eq!(last, 12_002);
    assert_contiguous(&seen, 2, last);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_does_not_hold_back_a_fast_one_and_loses_nothing() {
    let server = TestServer::start(&[]);
    // Separate connections, so that the client's own flow control does not couple them.
    let mut slow_c = server.client().await;
    let mut fast_c = server.client().await;
    let writer_c = server.client().await;
    let opts = || Some(WatchOptions::new().with_prefix());
    let (mut slow, slow_id) = open(&mut slow_c, "s/", opts()).await;
    let (mut fast, fast_id) = open(&mut fast_c, "s/", opts()).await;
    let start = current_revision(&mut fast_c).await;

    const N: usize = 2_500;
    let reader = tokio::spawn(async move {
        let mut revs = Vec::new();
        while revs.len() < N {
            let evs = next_events(&mut fast, fast_id).await;
            revs.extend(evs.iter().map(|e| e.kv().unwrap().mod_revision()));
        }
        revs
    });
    let written = put_many(&writer_c, "s/", N, 8, 1024).await;
    assert_contiguous(&written, start + 1, start + N as i64);
    let fast_revs = timeout(Duration::from_secs(120), reader)
        .await
        .expect("fast")
        .unwrap();
    assert_contiguous(&fast_revs, start + 1, start + N as i64);

    // Only now is the slow stream read: it must still hold every event, once, in order.
    let mut slow_revs = Vec::new();
    while slow_revs.len() < N {
        let r = next(&mut slow).await;
        assert_eq!(r.watch_id(), slow_id);
        assert!(
            !r.canceled() && !r.created(),
            "slow watcher was canceled: {r:?}"
        );
        for ev in r.events() {
            let kv = ev.kv().unwrap();
            assert_eq!(kv.value().len(), 1024);
            slow_revs.push(kv.mod_revision());
        }
    }
    assert_contiguous(&slow_revs, start + 1, start + N as i64);
}

#[tokio::test]
async fn large_value_is_delivered_intact() {
    let (_s, mut c) = fresh().await;
    let (mut ws, id) = open(&mut c, "big", None).await;
    let value: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let r = rev(c.put("big", value.clone(), None).await.unwrap().header());
    let ev = events(&mut ws, id, 1).await.remove(0);
    let kv = ev.kv().unwrap();
    assert_eq!(kv.mod_revision(), r);
    assert_eq!(kv.value().len(), value.len());
    assert!(kv.value() == value.as_slice(), "value corrupted in transit");
}

#[tokio::test]
async fn put_event_carries_the_lease() {
    let (_s, mut c) = fresh().await;
    let lease = c.lease_grant(600, None).await.unwrap().id();
    let (mut ws, id) = open(&mut c, "k", None).await;
    c.put("k", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let ev = events(&mut ws, id, 1).await.remove(0);
    assert_eq!(ev.kv().unwrap().lease(), lease);
}

#[tokio::test]
async fn half_closed_stream_keeps_delivering_events() {
    let (_s, mut c) = fresh().await;
    let (ws, id) = open(&mut c, "k", None).await;
    // Closing the request side ends no watch, as in etcd 3.4: only dropping the
    // response side (cancelling the call) does.
    let (sender, mut responses) = ws.split();
    drop(sender);
    let r = put(&mut c, "k", "1").await;
    let resp = match timeout(WAIT, responses.message()).await {
        Ok(Ok(Some(resp))) => resp,
        other => panic!("expected the put event after the half-close, got {other:?}"),
    };
    assert_eq!(resp.watch_id(), id);
    assert_eq!(briefs(resp.events()), vec![put_ev("k", "1", r)]);
}

#[tokio::test]
async fn empty_range_is_refused_and_the_stream_stays_usable() {
    let (_s, mut c) = fresh().await;
    // A range_end before the key, or equal to it: both ranges are empty.
    put(&mut c, "x", "x").await; // 2
    let mut ws = c
        .watch("b", Some(WatchOptions::new().with_range("a")))
        .await
        .unwrap();
    ws.watch("b", Some(WatchOptions::new().with_range("b")))
        .await
        .unwrap();
    for _ in 0..2 {
        let r = next(&mut ws).await;
        assert!(r.created() && r.canceled(), "{r:?}");
        assert_eq!(r.watch_id(), -1);
        assert_eq!(r.cancel_reason(), EMPTY_RANGE);
        assert_eq!(rev(r.header()), 2);
        assert!(r.events().is_empty());
    }
    // Refused watches use up no id.
    let id = add(&mut ws, "b", None).await;
    assert_eq!(id, 0);
    let rb = put(&mut c, "b", "1").await;
    assert_eq!(got(&mut ws, id, 1).await, vec![put_ev("b", "1", rb)]);
}
