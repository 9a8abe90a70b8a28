//! Recorded data can be anything: the checks report, never panic.

mod common;

use std::time::Duration;

use cairn_history::*;
use common::*;

#[test]
fn extreme_values_do_not_panic() {
    let history = vec![
        op(1, u64::MAX, 0, put("a", ""), put_ok(i64::MAX)),
        op(1, 0, u64::MAX, put("a", "x"), put_ok(i64::MIN)),
        op(
            2,
            5,
            5,
            get("a"),
            got(i64::MIN, Some(kv("x", i64::MAX, i64::MIN, i64::MAX))),
        ),
        op(2, 6, 7, get("a"), ok(Response::Put { revision: 3 })),
        op(
            3,
            0,
            1,
            Request::LeaseRevoke { lease_id: i64::MIN },
            ok(Response::LeaseRevoke { revision: i64::MAX }),
        ),
        op(3, 2, 3, delete(""), deleted(i64::MAX, i64::MIN)),
        op(
            4,
            0,
            9,
            Request::Txn {
                compares: vec![],
                on_success: vec![],
                on_failure: vec![],
            },
            ok(Response::Txn {
                revision: 1,
                succeeded: true,
                results: vec![TxnOpResult::Put; 3],
            }),
        ),
    ];
    let log = vec![
        put_event("a", "x", i64::MAX, i64::MAX, i64::MAX),
        put_event("a", "x", i64::MIN, i64::MIN, i64::MIN),
        delete_event("", i64::MAX),
    ];
    let budget = Duration::from_secs(2);
    assert!(!check_linearizable(&history, budget).is_linearizable());
    let ok_ones: Vec<Operation> = history
        .iter()
        .filter(|o| o.call_ns <= o.return_ns)
        .cloned()
        .collect();
    assert!(!check_linearizable(&ok_ones, budget).is_linearizable());
    assert!(!check_history(&ok_ones, Some(&log), budget).is_linearizable());
    let _ = patch_with_event_log(&history, &log);
    assert!(!check_event_log(&history, &log).is_empty());
    let watch = WatchHistory {
        client: 1,
        key: "".into(),
        range_end: "\0".into(),
        start_revision: i64::MIN,
        prev_kv: true,
        progress_notify: true,
        streams: vec![
            WatchStream {
                start_revision: i64::MAX,
                responses: vec![WatchResponse {
                    received_ns: 0,
                    header_revision: i64::MIN,
                    events: log.clone(),
                    compact_revision: i64::MAX,
                    canceled: true,
                }],
            },
            WatchStream {
                start_revision: i64::MIN,
                responses: vec![],
            },
        ],
    };
    assert!(!check_watches(&log, &[watch]).is_empty());
}

#[test]
fn a_tiny_budget_gives_undecided_not_a_verdict() {
    // Many concurrent unknown deletes and no reads to pin them: a wide search.
    let mut history = Vec::new();
    for i in 0..2_000u64 {
        let key = format!("k{}", i % 5);
        history.push(op(
            i as u32 % 8,
            i * 10,
            i * 10 + 5_000,
            put(&key, &format!("v{i}")),
            unknown(),
        ));
        history.push(op(8, i * 10, i * 10 + 1, delete(&key), unknown()));
    }
    history.push(op(
        9,
        100_000,
        100_001,
        get("k0"),
        got(3, Some(kv("never-written", 2, 3, 2))),
    ));
    match check_linearizable(&history, Duration::ZERO) {
        LinearizabilityResult::Undecided { .. } => {}
        other => panic!("{other:?}"),
    }
}
