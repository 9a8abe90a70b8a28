//! etcd's watch guarantees (as its robustness suite states them), each watch checked against
//! the store's event log: ordered, unique, atomic, reliable and resumable, correct `prev_kv`,
//! bookmarkable (progress notifications), and nothing after a cancel.
//!
//! The first response of a stream is never taken for a progress notification: etcd's
//! watch-created response looks the same in these types (no events, not canceled) and its
//! header revision promises nothing about events from an earlier start revision.

use std::collections::{HashMap, HashSet};

use crate::violation::{Violation, ViolationKind};
use crate::{Event, KeyValue, WatchHistory};

/// Past this many violations on one watch, the rest of it is not reported.
const MAX_VIOLATIONS_PER_WATCH: usize = 100;

fn in_range(watch: &WatchHistory, key: &str) -> bool {
    if watch.range_end.is_empty() {
        key == watch.key
    } else if watch.range_end == "\0" {
        // etcd: "\0" as range end means every key from `key` on.
        key >= watch.key.as_str()
    } else {
        key >= watch.key.as_str() && key < watch.range_end.as_str()
    }
}

fn same_event(a: &Event, b: &Event) -> bool {
    a.key == b.key
        && a.value == b.value
        && a.mod_revision == b.mod_revision
        && a.create_revision == b.create_revision
        && a.version == b.version
        && a.lease_id == b.lease_id
}

fn describe(event: &Event) -> String {
    match &event.value {
        Some(value) => format!("put {:?}={:?}@{}", event.key, value, event.mod_revision),
        None => format!("delete {:?}@{}", event.key, event.mod_revision),
    }
}

fn describe_list(events: &[&Event]) -> String {
    let mut parts: Vec<String> = events.iter().take(5).map(|e| describe(e)).collect();
    if events.len() > 5 {
        parts.push(format!("and {} more", events.len() - 5));
    }
    parts.join(", ")
}

struct WatchReport<'a> {
    out: &'a mut Vec<Violation>,
    watch: usize,
    count: usize,
}

impl WatchReport<'_> {
    fn push(
        &mut self,
        kind: ViolationKind,
        stream: usize,
        response: Option<usize>,
        detail: String,
    ) {
        self.count += 1;
        if self.count <= MAX_VIOLATIONS_PER_WATCH {
            self.out.push(Violation {
                kind,
                watch: Some(self.watch),
                stream: Some(stream),
                response,
                detail,
            });
        }
    }
}

/// Checks every watch against the event log; see the module doc. Violations name the watch
/// (its index in `watches`), stream and response, and say what was expected and seen.
pub fn check_watches(event_log: &[Event], watches: &[WatchHistory]) -> Vec<Violation> {
    // The key's state just before each log event, and where each (key, revision) is.
    let mut state: HashMap<&str, KeyValue> = HashMap::new();
    let mut before: Vec<Option<KeyValue>> = Vec::with_capacity(event_log.len());
    let mut position: HashMap<(&str, i64), usize> = HashMap::new();
    for (i, event) in event_log.iter().enumerate() {
        before.push(state.get(event.key.as_str()).cloned());
        position
            .entry((event.key.as_str(), event.mod_revision))
            .or_insert(i);
        match &event.value {
            Some(value) => {
                state.insert(
                    &event.key,
                    KeyValue {
                        value: value.clone(),
                        create_revision: event.create_revision,
                        mod_revision: event.mod_revision,
                        version: event.version,
                        lease_id: event.lease_id,
                    },
                );
            }
            None => {
                state.remove(event.key.as_str());
            }
        }
    }

    let mut violations = Vec::new();
    for (watch_index, watch) in watches.iter().enumerate() {
        let mut report = WatchReport {
            out: &mut violations,
            watch: watch_index,
            count: 0,
        };
        check_one(event_log, &before, &position, watch, &mut report);
    }
    violations
}

fn check_one(
    log: &[Event],
    before: &[Option<KeyValue>],
    position: &HashMap<(&str, i64), usize>,
    watch: &WatchHistory,
    report: &mut WatchReport<'_>,
) {
    // The log's events in range, and each one's place among them.
    let expected: Vec<usize> = (0..log.len())
        .filter(|&i| in_range(watch, &log[i].key))
        .collect();
    let place: HashMap<usize, usize> = expected.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    let first_at_or_after =
        |revision: i64| expected.partition_point(|&i| log[i].mod_revision < revision);

    // `cursor`: the next expected event not yet delivered.
    let mut cursor = 0usize;
    let mut last_revision = i64::MIN;
    let mut delivered: HashSet<(&str, i64)> = HashSet::new();

    for (stream_index, stream) in watch.streams.iter().enumerate() {
        let start = stream.start_revision;
        let mut floating_start = start <= 0;
        if !floating_start {
            let from = first_at_or_after(start);
            if stream_index > 0 {
                if last_revision != i64::MIN && start <= last_revision {
                    report.push(
                        ViolationKind::WatchResume,
                        stream_index,
                        None,
                        format!("resumed at revision {start}, but revision {last_revision} was already delivered (expected {})", last_revision.saturating_add(1)),
                    );
                }
                if from > cursor {
                    let missed: Vec<&Event> =
                        expected[cursor..from].iter().map(|&i| &log[i]).collect();
                    report.push(
                        ViolationKind::WatchResume,
                        stream_index,
                        None,
                        format!("resumed at revision {start}; these events after the last delivered one were never delivered: {}", describe_list(&missed)),
                    );
                }
            } else if start != watch.start_revision {
                report.push(
                    ViolationKind::WatchResume,
                    stream_index,
                    None,
                    format!(
                        "the first stream starts at revision {start}, the watch at {}",
                        watch.start_revision
                    ),
                );
            }
            cursor = from;
        }
        let mut canceled_at: Option<usize> = None;
        let mut bookmark = i64::MIN;

        for (response_index, response) in stream.responses.iter().enumerate() {
            let at = Some(response_index);
            if let Some(canceled) = canceled_at {
                if !response.events.is_empty() {
                    report.push(
                        ViolationKind::WatchAfterCancel,
                        stream_index,
                        at,
                        format!(
                            "{} event(s) after the stream was canceled in response {canceled}",
                            response.events.len()
                        ),
                    );
                }
            }
            if response.canceled {
                canceled_at.get_or_insert(response_index);
            }
            let is_progress =
                response.events.is_empty() && !response.canceled && response_index > 0;
            if is_progress {
                let notified = response.header_revision;
                if !floating_start {
                    if let Some(&missing) = expected
                        .get(cursor)
                        .filter(|&&i| log[i].mod_revision <= notified)
                    {
                        report.push(
                            ViolationKind::WatchProgress,
                            stream_index,
                            at,
                            format!(
                                "progress notification at revision {notified}, but {} was not delivered before it",
                                describe(&log[missing])
                            ),
                        );
                    }
                }
                bookmark = bookmark.max(notified);
            }

            for event in &response.events {
                let revision = event.mod_revision;
                if revision < last_revision {
                    report.push(
                        ViolationKind::WatchOrder,
                        stream_index,
                        at,
                        format!(
                            "{} after an event at revision {last_revision}",
                            describe(event)
                        ),
                    );
                }
                if !delivered.insert((event.key.as_str(), revision)) {
                    report.push(
                        ViolationKind::WatchDuplicate,
                        stream_index,
                        at,
                        format!("{} delivered again", describe(event)),
                    );
                    continue;
                }
                last_revision = last_revision.max(revision);
                if revision <= bookmark {
                    report.push(
                        ViolationKind::WatchProgress,
                        stream_index,
                        at,
                        format!(
                            "{} after a progress notification at revision {bookmark}",
                            describe(event)
                        ),
                    );
                }
                if start > 0 && revision < start {
                    report.push(
                        ViolationKind::WatchUnexpectedEvent,
                        stream_index,
                        at,
                        format!(
                            "{} is before the stream's start revision {start}",
                            describe(event)
                        ),
                    );
                }
                let Some(&log_index) = position.get(&(event.key.as_str(), revision)) else {
                    report.push(
                        ViolationKind::WatchUnexpectedEvent,
                        stream_index,
                        at,
                        format!("{} is not in the store's event log", describe(event)),
                    );
                    continue;
                };
                if !in_range(watch, &event.key) {
                    report.push(
                        ViolationKind::WatchUnexpectedEvent,
                        stream_index,
                        at,
                        format!("{} is outside the watched range", describe(event)),
                    );
                    continue;
                }
                let logged = &log[log_index];
                if !same_event(event, logged) {
                    report.push(
                        ViolationKind::WatchUnexpectedEvent,
                        stream_index,
                        at,
                        format!("expected {logged:?} as in the log, saw {event:?}"),
                    );
                }
                if watch.prev_kv {
                    if event.prev_kv != before[log_index] {
                        report.push(
                            ViolationKind::WatchPrevKv,
                            stream_index,
                            at,
                            format!(
                                "{}: expected prev_kv {:?}, saw {:?}",
                                describe(event),
                                before[log_index],
                                event.prev_kv
                            ),
                        );
                    }
                } else if event.prev_kv.is_some() {
                    report.push(
                        ViolationKind::WatchPrevKv,
                        stream_index,
                        at,
                        format!(
                            "{}: prev_kv {:?} though the watch did not ask for it",
                            describe(event),
                            event.prev_kv
                        ),
                    );
                }
                let Some(&p) = place.get(&log_index) else {
                    continue;
                };
                if floating_start {
                    // Started "from now": the first event fixes where the stream began.
                    cursor = p;
                    floating_start = false;
                }
                if p > cursor {
                    let missed: Vec<&Event> =
                        expected[cursor..p].iter().map(|&i| &log[i]).collect();
                    report.push(
                        ViolationKind::WatchGap,
                        stream_index,
                        at,
                        format!(
                            "{} arrived, but these earlier events in range never did: {}",
                            describe(event),
                            describe_list(&missed)
                        ),
                    );
                }
                // An event behind the cursor (a late one) was reported as order or atomicity.
                cursor = cursor.max(p + 1);
            }

            if let Some(last) = response.events.last() {
                if let Some(&missing) = expected
                    .get(cursor)
                    .filter(|&&i| log[i].mod_revision == last.mod_revision)
                {
                    report.push(
                        ViolationKind::WatchAtomicity,
                        stream_index,
                        at,
                        format!(
                            "the response ends with revision {}, but {} of that revision is not in it",
                            last.mod_revision,
                            describe(&log[missing])
                        ),
                    );
                }
            }
        }
    }
}
