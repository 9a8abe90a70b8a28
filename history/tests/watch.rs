//! Watches against the event log: correct ones (resumed, with progress notifications, with
//! prev_kv), and each guarantee broken once.

mod common;

use cairn_history::*;
use common::*;

fn log() -> Vec<Event> {
    vec![
        put_event("a", "a1", 2, 2, 1),
        put_event("b", "b1", 3, 3, 1),
        put_event("a", "a2", 2, 4, 2),
        delete_event("b", 5),
        put_event("a", "a3", 2, 6, 3),
        put_event("c", "c1", 6, 6, 1),
        put_event("b", "b2", 7, 7, 1),
    ]
}

/// The log's event at `index`, as a prev_kv watch delivers it.
fn with_prev(index: usize) -> Event {
    let log = log();
    let event = log[index].clone();
    let prev = log[..index]
        .iter()
        .rev()
        .find(|e| e.key == event.key)
        .and_then(|e| {
            e.value.as_ref().map(|value| KeyValue {
                value: value.clone(),
                create_revision: e.create_revision,
                mod_revision: e.mod_revision,
                version: e.version,
                lease_id: e.lease_id,
            })
        });
    Event {
        prev_kv: prev,
        ..event
    }
}

fn response(received_ns: u64, header_revision: i64, events: Vec<Event>) -> WatchResponse {
    WatchResponse {
        received_ns,
        header_revision,
        events,
        compact_revision: 0,
        canceled: false,
    }
}

fn progress(received_ns: u64, header_revision: i64) -> WatchResponse {
    response(received_ns, header_revision, vec![])
}

/// A watch on every key from "a", with prev_kv and progress notifications, broken after
/// revision 5 and resumed at 6.
fn range_watch() -> WatchHistory {
    let e = with_prev;
    WatchHistory {
        client: 1,
        key: "a".into(),
        range_end: "\0".into(),
        start_revision: 1,
        prev_kv: true,
        progress_notify: true,
        streams: vec![
            WatchStream {
                start_revision: 1,
                responses: vec![
                    progress(10, 1), // etcd's created response
                    response(20, 3, vec![e(0), e(1)]),
                    response(30, 5, vec![e(2), e(3)]),
                    progress(40, 5),
                ],
            },
            WatchStream {
                start_revision: 6,
                responses: vec![
                    progress(50, 6),
                    response(60, 6, vec![e(4), e(5)]),
                    response(70, 7, vec![e(6)]),
                    progress(80, 7),
                ],
            },
        ],
    }
}

fn key_watch() -> WatchHistory {
    let log = log();
    WatchHistory {
        client: 2,
        key: "b".into(),
        range_end: "".into(),
        start_revision: 1,
        prev_kv: false,
        progress_notify: false,
        streams: vec![WatchStream {
            start_revision: 1,
            responses: vec![
                response(20, 3, vec![log[1].clone()]),
                response(30, 5, vec![log[3].clone()]),
                response(70, 7, vec![log[6].clone()]),
            ],
        }],
    }
}

fn violations_of(watch: WatchHistory) -> Vec<Violation> {
    check_watches(&log(), &[key_watch(), watch])
}

fn has(violations: &[Violation], kind: ViolationKind) -> bool {
    violations
        .iter()
        .any(|v| v.kind == kind && v.watch == Some(1))
}

#[test]
fn correct_watches_have_no_violation() {
    let violations = check_watches(&log(), &[key_watch(), range_watch()]);
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn events_going_back_are_found() {
    let mut watch = range_watch();
    watch.streams[0].responses.swap(1, 2);
    let violations = violations_of(watch);
    assert!(
        has(&violations, ViolationKind::WatchOrder),
        "{violations:?}"
    );
}

#[test]
fn duplicate_event_is_found() {
    let mut watch = range_watch();
    watch.streams[0].responses[2].events.push(with_prev(3));
    let violations = violations_of(watch);
    assert!(
        has(&violations, ViolationKind::WatchDuplicate),
        "{violations:?}"
    );
}

#[test]
fn revision_split_over_responses_is_found() {
    let mut watch = range_watch();
    let responses = &mut watch.streams[1].responses;
    let second = responses[1].events.pop().expect("two events");
    responses.insert(2, response(65, 6, vec![second]));
    let violations = violations_of(watch);
    assert!(
        has(&violations, ViolationKind::WatchAtomicity),
        "{violations:?}"
    );
    let atomicity = violations
        .iter()
        .find(|v| v.kind == ViolationKind::WatchAtomicity)
        .expect("found");
    assert_eq!((atomicity.stream, atomicity.response), (Some(1), Some(1)));
}

#[test]
fn skipped_event_is_found() {
    let mut watch = range_watch();
    watch.streams[0].responses[1].events.remove(1);
    let violations = violations_of(watch);
    assert!(has(&violations, ViolationKind::WatchGap), "{violations:?}");
    let gap = violations
        .iter()
        .find(|v| v.kind == ViolationKind::WatchGap)
        .expect("found");
    assert!(gap.detail.contains("\"b\""), "{gap}");
}

#[test]
fn resume_that_skips_events_is_found() {
    let mut watch = range_watch();
    watch.streams[1].start_revision = 7;
    watch.streams[1].responses.remove(1);
    let violations = violations_of(watch);
    assert!(
        has(&violations, ViolationKind::WatchResume),
        "{violations:?}"
    );
}

#[test]
fn resume_that_repeats_is_found() {
    let mut watch = range_watch();
    watch.streams[1].start_revision = 5;
    watch.streams[1].responses[1].events.insert(0, with_prev(3));
    let violations = violations_of(watch);
    assert!(
        has(&violations, ViolationKind::WatchResume),
        "{violations:?}"
    );
    assert!(
        has(&violations, ViolationKind::WatchDuplicate),
        "{violations:?}"
    );
}

#[test]
fn wrong_prev_kv_is_found() {
    let mut watch = range_watch();
    watch.streams[0].responses[2].events[0].prev_kv = None;
    let violations = violations_of(watch);
    assert!(
        has(&violations, ViolationKind::WatchPrevKv),
        "{violations:?}"
    );
    // A prev_kv for a key created by the event (there was none).
    let mut watch = range_watch();
    watch.streams[1].responses[1].events[1].prev_kv = Some(kv("c0", 1, 1, 1));
    assert!(has(&violations_of(watch), ViolationKind::WatchPrevKv));
}

#[test]
fn early_progress_notification_is_found() {
    let mut watch = range_watch();
    // A notification at revision 5 before the events of revisions 4 and 5.
    watch.streams[0].responses.insert(2, progress(25, 5));
    let violations = violations_of(watch);
    assert!(
        has(&violations, ViolationKind::WatchProgress),
        "{violations:?}"
    );
    assert_eq!(
        violations
            .iter()
            .filter(|v| v.kind == ViolationKind::WatchProgress)
            .count(),
        3,
        "{violations:?}"
    );
}

#[test]
fn event_after_cancel_is_found() {
    let mut watch = range_watch();
    let canceled = WatchResponse {
        received_ns: 65,
        header_revision: 6,
        events: vec![],
        compact_revision: 3,
        canceled: true,
    };
    watch.streams[1].responses.insert(2, canceled);
    let violations = violations_of(watch);
    assert!(
        has(&violations, ViolationKind::WatchAfterCancel),
        "{violations:?}"
    );
}

#[test]
fn event_not_in_the_log_is_found() {
    let mut watch = range_watch();
    watch.streams[1].responses[2].events[0].value = Some("b-other".into());
    let violations = violations_of(watch);
    assert!(
        has(&violations, ViolationKind::WatchUnexpectedEvent),
        "{violations:?}"
    );
    // An event outside the watched key.
    let mut watch = key_watch();
    watch.streams[0].responses[0].events.push(log()[0].clone());
    let violations = check_watches(&log(), &[watch]);
    assert!(
        violations
            .iter()
            .any(|v| v.kind == ViolationKind::WatchUnexpectedEvent),
        "{violations:?}"
    );
}
