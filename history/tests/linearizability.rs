//! Hand-made histories: linearizable ones, and one planted violation each.

mod common;

use std::time::Duration;

use cairn_history::*;
use common::*;

const BUDGET: Duration = Duration::from_secs(10);

fn check(history: &[Operation]) -> LinearizabilityResult {
    check_linearizable(history, BUDGET)
}

fn txn(compares: Vec<Compare>, on_success: Vec<TxnOp>, on_failure: Vec<TxnOp>) -> Request {
    Request::Txn {
        compares,
        on_success,
        on_failure,
    }
}

fn value_is(key: &str, value: Option<&str>) -> Compare {
    Compare {
        key: key.to_string(),
        target: CompareTarget::Value(value.map(str::to_string)),
    }
}

fn mod_revision_is(key: &str, revision: i64) -> Compare {
    Compare {
        key: key.to_string(),
        target: CompareTarget::ModRevision(revision),
    }
}

fn tx_put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.to_string(),
        value: value.to_string(),
        lease_id: 0,
    }
}

fn tx_get(key: &str) -> TxnOp {
    TxnOp::Get {
        key: key.to_string(),
    }
}

fn txn_ok(revision: i64, succeeded: bool, results: Vec<TxnOpResult>) -> Outcome {
    ok(Response::Txn {
        revision,
        succeeded,
        results,
    })
}

fn sequential() -> Vec<Operation> {
    vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(1, 20, 30, get("a"), got(2, Some(kv("1", 2, 2, 1)))),
        op(2, 40, 50, put("a", "2"), put_ok(3)),
        op(1, 60, 70, get("a"), got(3, Some(kv("2", 2, 3, 2)))),
        op(2, 80, 90, delete("a"), deleted(4, 1)),
        op(1, 100, 110, get("a"), got(4, None)),
        op(2, 120, 130, put("a", "3"), put_ok(5)),
        op(1, 140, 150, get("a"), got(5, Some(kv("3", 5, 5, 1)))),
    ]
}

#[test]
fn sequential_history_is_linearizable() {
    assert_linearizable(check(&sequential()));
}

#[test]
fn a_wrong_value_in_a_sequential_history_is_found() {
    let mut history = sequential();
    history[3].outcome = got(3, Some(kv("1", 2, 3, 2)));
    let report = assert_not_linearizable(check(&history));
    assert!(report.blocked.iter().any(|b| b.index == 3), "{report}");
}

#[test]
fn concurrent_puts_linearize_in_either_order() {
    // x then y.
    let x_first = vec![
        op(1, 0, 100, put("a", "x"), put_ok(2)),
        op(2, 10, 90, put("a", "y"), put_ok(3)),
        op(3, 20, 95, get("a"), got(2, Some(kv("x", 2, 2, 1)))),
        op(3, 110, 120, get("a"), got(3, Some(kv("y", 2, 3, 2)))),
    ];
    assert_linearizable(check(&x_first));
    // y then x, same windows.
    let y_first = vec![
        op(1, 0, 100, put("a", "x"), put_ok(3)),
        op(2, 10, 90, put("a", "y"), put_ok(2)),
        op(3, 20, 95, get("a"), got(2, Some(kv("y", 2, 2, 1)))),
        op(3, 110, 120, get("a"), got(3, Some(kv("x", 2, 3, 2)))),
    ];
    assert_linearizable(check(&y_first));
    // A final read that contradicts the order the revisions give.
    let mut contradiction = y_first.clone();
    contradiction[3].outcome = got(3, Some(kv("y", 2, 3, 2)));
    assert_not_linearizable(check(&contradiction));
}

#[test]
fn cas_on_value_and_on_mod_revision() {
    let history = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        // Value CAS that holds.
        op(
            1,
            20,
            30,
            txn(
                vec![value_is("a", Some("1"))],
                vec![tx_put("a", "2")],
                vec![tx_get("a")],
            ),
            txn_ok(3, true, vec![TxnOpResult::Put]),
        ),
        // Value CAS that fails and reads instead.
        op(
            2,
            40,
            50,
            txn(
                vec![value_is("a", Some("1"))],
                vec![tx_put("a", "x")],
                vec![tx_get("a")],
            ),
            txn_ok(
                3,
                false,
                vec![TxnOpResult::Get {
                    kv: Some(kv("2", 2, 3, 2)),
                }],
            ),
        ),
        // Mod-revision CAS that holds.
        op(
            1,
            60,
            70,
            txn(
                vec![mod_revision_is("a", 3)],
                vec![tx_put("a", "3"), tx_get("a")],
                vec![],
            ),
            txn_ok(
                4,
                true,
                vec![
                    TxnOpResult::Put,
                    TxnOpResult::Get {
                        kv: Some(kv("3", 2, 4, 3)),
                    },
                ],
            ),
        ),
        // Create-if-absent: mod revision 0 and value None.
        op(
            2,
            80,
            90,
            txn(
                vec![mod_revision_is("b", 0), value_is("c", None)],
                vec![tx_put("b", "1"), tx_put("c", "1")],
                vec![],
            ),
            txn_ok(5, true, vec![TxnOpResult::Put, TxnOpResult::Put]),
        ),
        op(1, 100, 110, get("c"), got(5, Some(kv("1", 5, 5, 1)))),
    ];
    assert_linearizable(check(&history));
}

#[test]
fn cas_that_succeeded_though_its_compare_could_not_hold_is_found() {
    let history = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(
            1,
            20,
            30,
            txn(
                vec![value_is("a", Some("0"))],
                vec![tx_put("a", "2")],
                vec![],
            ),
            txn_ok(3, true, vec![TxnOpResult::Put]),
        ),
    ];
    let report = assert_not_linearizable(check(&history));
    assert!(
        report
            .blocked
            .iter()
            .any(|b| b.index == 1 && b.reason.contains("compares")),
        "{report}"
    );
}

#[test]
fn put_with_lease_then_revoke_deletes_the_keys_in_one_revision() {
    let history = vec![
        op(
            1,
            0,
            10,
            Request::LeaseGrant { lease_id: 7 },
            ok(Response::LeaseGrant { revision: 1 }),
        ),
        op(1, 20, 30, put_lease("a", "1", 7), put_ok(2)),
        op(2, 25, 35, put_lease("b", "1", 7), put_ok(3)),
        op(1, 40, 50, get("a"), got(3, Some(kv_lease("1", 2, 2, 1, 7)))),
        op(
            1,
            60,
            70,
            Request::LeaseRevoke { lease_id: 7 },
            ok(Response::LeaseRevoke { revision: 4 }),
        ),
        op(1, 80, 90, get("a"), got(4, None)),
        op(2, 80, 90, get("b"), got(4, None)),
        // A revoke of a lease without keys: no new revision.
        op(
            1,
            100,
            110,
            Request::LeaseGrant { lease_id: 8 },
            ok(Response::LeaseGrant { revision: 4 }),
        ),
        op(
            1,
            120,
            130,
            Request::LeaseRevoke { lease_id: 8 },
            ok(Response::LeaseRevoke { revision: 4 }),
        ),
    ];
    assert_linearizable(check(&history));

    // A key still there after the revoke returned.
    let mut survived = history.clone();
    survived[6].outcome = got(4, Some(kv_lease("1", 3, 3, 1, 7)));
    assert_not_linearizable(check(&survived));

    // A put with a lease never granted cannot have succeeded.
    let ungranted = vec![op(1, 0, 10, put_lease("a", "1", 9), put_ok(2))];
    assert_not_linearizable(check(&ungranted));
}

#[test]
fn delete_of_an_absent_key_does_not_bump_the_revision() {
    let history = vec![
        op(1, 0, 10, delete("z"), deleted(1, 0)),
        op(1, 20, 30, put("a", "1"), put_ok(2)),
        op(2, 40, 50, get("a"), got(2, Some(kv("1", 2, 2, 1)))),
    ];
    assert_linearizable(check(&history));
    let mut bumped = history.clone();
    bumped[0].outcome = deleted(2, 0);
    assert_not_linearizable(check(&bumped));
}

#[test]
fn stale_read_is_found() {
    let history = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(1, 20, 30, put("a", "2"), put_ok(3)),
        op(2, 40, 50, get("a"), got(2, Some(kv("1", 2, 2, 1)))),
    ];
    let report = assert_not_linearizable(check(&history));
    assert!(report.blocked.iter().any(|b| b.index == 2), "{report}");
    // The same read overlapping the second put is fine.
    let mut overlapping = history.clone();
    overlapping[2].call_ns = 25;
    assert_linearizable(check(&overlapping));
}

#[test]
fn lost_write_is_found() {
    // The second put is acknowledged at revision 3, yet a later read at 3 shows the first value.
    let history = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(1, 20, 30, put("a", "2"), put_ok(3)),
        op(2, 40, 50, get("a"), got(3, Some(kv("1", 2, 2, 1)))),
    ];
    assert_not_linearizable(check(&history));
}

#[test]
fn a_put_applied_twice_is_found() {
    let history = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(2, 20, 30, get("a"), got(3, Some(kv("1", 2, 3, 2)))),
    ];
    assert_not_linearizable(check(&history));
}

#[test]
fn wrong_write_revision_is_found() {
    let history = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(1, 20, 30, put("b", "1"), put_ok(4)),
    ];
    assert_not_linearizable(check(&history));
}

#[test]
fn read_revision_that_does_not_match_what_it_saw_is_found() {
    let history = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(1, 20, 30, put("b", "1"), put_ok(3)),
        op(2, 40, 50, get("a"), got(5, Some(kv("1", 2, 2, 1)))),
    ];
    assert_not_linearizable(check(&history));
}

#[test]
fn failed_operation_whose_effect_is_visible_is_found() {
    let history = vec![
        op(1, 0, 10, put("a", "1"), failed()),
        op(2, 20, 30, get("a"), got(2, Some(kv("1", 2, 2, 1)))),
    ];
    assert_not_linearizable(check(&history));
    let invisible = vec![
        op(1, 0, 10, put("a", "1"), failed()),
        op(2, 20, 30, get("a"), got(1, None)),
    ];
    assert_linearizable(check(&invisible));
}

#[test]
fn unknown_put_that_happened() {
    let history = vec![
        op(1, 0, 10, put("a", "1"), unknown()),
        op(2, 50, 60, get("a"), got(2, Some(kv("1", 2, 2, 1)))),
    ];
    assert_linearizable(check(&history));
    let log = vec![put_event("a", "1", 2, 2, 1)];
    assert_linearizable(check_history(&history, Some(&log), BUDGET));
}

#[test]
fn unknown_put_that_did_not_happen() {
    let history = vec![
        op(1, 0, 10, put("a", "1"), unknown()),
        op(2, 50, 60, get("a"), got(1, None)),
    ];
    assert_linearizable(check(&history));
    assert_linearizable(check_history(&history, Some(&[]), BUDGET));
}

#[test]
fn unknown_put_seen_before_it_was_invoked_is_found() {
    let history = vec![
        op(2, 0, 10, get("a"), got(2, Some(kv("1", 2, 2, 1)))),
        op(1, 20, 30, put("a", "1"), unknown()),
    ];
    assert_not_linearizable(check(&history));
    let log = vec![put_event("a", "1", 2, 2, 1)];
    assert_not_linearizable(check_history(&history, Some(&log), BUDGET));
}

#[test]
fn unknown_delete_may_or_may_not_have_happened() {
    let happened = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(1, 20, 30, delete("a"), unknown()),
        op(2, 40, 50, get("a"), got(3, None)),
    ];
    assert_linearizable(check(&happened));
    let not_happened = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(1, 20, 30, delete("a"), unknown()),
        op(2, 40, 50, get("a"), got(2, Some(kv("1", 2, 2, 1)))),
    ];
    assert_linearizable(check(&not_happened));
    // Not before it was invoked.
    let too_early = vec![
        op(1, 0, 10, put("a", "1"), put_ok(2)),
        op(2, 15, 18, get("a"), got(3, None)),
        op(1, 20, 30, delete("a"), unknown()),
    ];
    assert_not_linearizable(check(&too_early));
}

#[test]
fn patch_resolves_unknown_writes_from_the_log() {
    let history = vec![
        op(1, 0, 10, put("a", "1"), unknown()),
        op(2, 0, 10, put("b", "b1"), unknown()),
        op(3, 0, 10, get("a"), unknown()),
        op(
            4,
            0,
            10,
            txn(
                vec![value_is("a", None)],
                vec![tx_put("c", "c1")],
                vec![TxnOp::Delete { key: "a".into() }],
            ),
            unknown(),
        ),
        op(5, 0, 10, delete("a"), unknown()),
        op(1, 20, 30, get("a"), got(2, Some(kv("1", 2, 2, 1)))),
        op(1, 40, 50, get("a"), got(3, None)),
    ];
    let log = vec![put_event("a", "1", 2, 2, 1), delete_event("a", 3)];
    let patched = patch_with_event_log(&history, &log);
    assert_eq!(patched.len(), history.len());
    assert_eq!(patched[0].outcome, put_ok(2));
    assert_eq!(
        patched[0].return_ns, 30,
        "bounded by the first read that saw revision 2"
    );
    assert!(matches!(patched[1].outcome, Outcome::Failed(_)));
    assert!(matches!(patched[2].outcome, Outcome::Failed(_)));
    // The txn's put is not in the log: only its failure branch (the delete) may have run.
    match &patched[3].request {
        Request::Txn {
            on_success,
            on_failure,
            ..
        } => {
            assert!(on_success.is_empty());
            assert_eq!(on_failure.len(), 1);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(patched[3].outcome, Outcome::Unknown(_)));
    assert_eq!(patched[4], history[4]);
    assert_linearizable(check_history(&history, Some(&log), BUDGET));
}

#[test]
fn malformed_history_is_reported() {
    let history = vec![op(1, 50, 10, put("a", "1"), put_ok(2))];
    assert!(matches!(
        check(&history),
        LinearizabilityResult::Malformed { .. }
    ));
}

#[test]
fn empty_history_is_linearizable() {
    assert_linearizable(check(&[]));
}
