//! The event log against the history: a correct log, and one planted violation each.

mod common;

use cairn_history::*;
use common::*;

fn history() -> Vec<Operation> {
    vec![
        op(1, 0, 10, put("a", "a1"), put_ok(2)),
        op(2, 0, 10, put("b", "b1"), put_ok(3)),
        op(1, 20, 30, put("a", "a2"), put_ok(4)),
        op(2, 20, 30, delete("b"), deleted(5, 1)),
        op(3, 20, 30, put("c", "c1"), unknown()),
        op(3, 40, 50, put("c", "c2"), failed()),
        op(
            1,
            40,
            50,
            Request::Txn {
                compares: vec![],
                on_success: vec![
                    TxnOp::Put {
                        key: "a".into(),
                        value: "a3".into(),
                        lease_id: 0,
                    },
                    TxnOp::Put {
                        key: "d".into(),
                        value: "d1".into(),
                        lease_id: 0,
                    },
                ],
                on_failure: vec![],
            },
            ok(Response::Txn {
                revision: 7,
                succeeded: true,
                results: vec![TxnOpResult::Put, TxnOpResult::Put],
            }),
        ),
    ]
}

fn log() -> Vec<Event> {
    vec![
        put_event("a", "a1", 2, 2, 1),
        put_event("b", "b1", 3, 3, 1),
        put_event("a", "a2", 2, 4, 2),
        delete_event("b", 5),
        put_event("c", "c1", 6, 6, 1),
        put_event("a", "a3", 2, 7, 3),
        put_event("d", "d1", 7, 7, 1),
    ]
}

fn kinds(violations: &[Violation]) -> Vec<ViolationKind> {
    violations.iter().map(|v| v.kind).collect()
}

#[test]
fn correct_log_has_no_violation() {
    let violations = check_event_log(&history(), &log());
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn revision_going_back_is_found() {
    let mut log = log();
    log.swap(1, 2);
    assert!(kinds(&check_event_log(&history(), &log)).contains(&ViolationKind::LogRevisionOrder));
}

#[test]
fn revision_gap_is_found() {
    let mut log = log();
    log.remove(4); // revision 6 (the Unknown put) gone: also no phantom, just a gap.
    let violations = check_event_log(&history(), &log);
    assert_eq!(
        kinds(&violations),
        vec![ViolationKind::LogRevisionGap],
        "{violations:?}"
    );
}

#[test]
fn lost_write_is_found() {
    let mut history = history();
    // An acknowledged put the log does not have.
    history.push(op(2, 60, 70, put("e", "e1"), put_ok(8)));
    let violations = check_event_log(&history, &log());
    assert_eq!(
        kinds(&violations),
        vec![ViolationKind::LostWrite],
        "{violations:?}"
    );
    // An acknowledged delete the log does not have.
    let mut log = log();
    log.remove(3);
    log.insert(3, put_event("z", "a1-again", 5, 5, 1));
    assert!(kinds(&check_event_log(&super_history(), &log)).contains(&ViolationKind::LostWrite));
}

fn super_history() -> Vec<Operation> {
    let mut history = history();
    history.push(op(4, 0, 100, put("z", "a1-again"), unknown()));
    history
}

#[test]
fn phantom_write_is_found() {
    let mut log = log();
    log.push(put_event("e", "nobody-wrote-this", 8, 8, 1));
    let violations = check_event_log(&history(), &log);
    assert_eq!(
        kinds(&violations),
        vec![ViolationKind::PhantomWrite],
        "{violations:?}"
    );
}

#[test]
fn failed_write_in_the_log_is_found() {
    let mut log = log();
    log.push(put_event("c", "c2", 6, 8, 2));
    let violations = check_event_log(&history(), &log);
    assert_eq!(
        kinds(&violations),
        vec![ViolationKind::PhantomWrite],
        "{violations:?}"
    );
    assert!(violations[0].detail.contains("failed"), "{violations:?}");
}

#[test]
fn duplicated_write_is_found() {
    let mut log = log();
    log.push(put_event("a", "a1", 2, 8, 4));
    let violations = check_event_log(&history(), &log);
    assert!(
        kinds(&violations).contains(&ViolationKind::DuplicatedWrite),
        "{violations:?}"
    );
}

#[test]
fn two_operations_in_one_revision_are_found() {
    let mut history = history();
    history.push(op(4, 60, 70, put("e", "e1"), unknown()));
    history.push(op(5, 60, 70, put("f", "f1"), unknown()));
    let mut log = log();
    log.push(put_event("e", "e1", 8, 8, 1));
    log.push(put_event("f", "f1", 8, 8, 1));
    let violations = check_event_log(&history, &log);
    assert_eq!(
        kinds(&violations),
        vec![ViolationKind::NonAtomicRevision],
        "{violations:?}"
    );
}

#[test]
fn inconsistent_version_is_found() {
    let mut log = log();
    log[2] = put_event("a", "a2", 2, 4, 5);
    let violations = check_event_log(&history(), &log);
    assert!(!violations.is_empty(), "{violations:?}");
    assert!(
        kinds(&violations)
            .iter()
            .all(|k| *k == ViolationKind::LogInconsistent),
        "{violations:?}"
    );
}
