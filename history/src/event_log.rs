//! The store's event log (what a watch from revision 1 over all keys returned after the run)
//! against the history: revisions in order and without gaps, events consistent with each
//! other, no lost, phantom or duplicated write, and one operation per revision.

use std::collections::{HashMap, HashSet};

use crate::patch::response_revision;
use crate::violation::{Violation, ViolationKind};
use crate::{Event, Operation, Outcome, Request, Response, TxnOp, TxnOpResult};

/// Past this many, further violations of a check are summarized in one.
const MAX_VIOLATIONS: usize = 200;

struct Report {
    violations: Vec<Violation>,
    dropped: usize,
}

impl Report {
    fn push(&mut self, kind: ViolationKind, detail: String) {
        if self.violations.len() < MAX_VIOLATIONS {
            self.violations.push(Violation::log(kind, detail));
        } else {
            self.dropped += 1;
        }
    }
}

/// The writes one operation makes (in the branch it took, for an `Ok` txn; in both, for an
/// `Unknown` one): puts as (key, value), deletes as keys.
struct Writes<'a> {
    puts: Vec<(&'a str, &'a str)>,
    deletes: Vec<&'a str>,
}

fn writes_of<'a>(ops: impl Iterator<Item = &'a TxnOp>) -> Writes<'a> {
    let mut writes = Writes {
        puts: Vec::new(),
        deletes: Vec::new(),
    };
    for op in ops {
        match op {
            TxnOp::Put { key, value, .. } => writes.puts.push((key, value)),
            TxnOp::Delete { key } => writes.deletes.push(key),
            TxnOp::Get { .. } => {}
        }
    }
    writes
}

fn all_writes(request: &Request) -> Writes<'_> {
    match request {
        Request::Put { key, value, .. } => Writes {
            puts: vec![(key, value)],
            deletes: Vec::new(),
        },
        Request::Delete { key } => Writes {
            puts: Vec::new(),
            deletes: vec![key],
        },
        Request::Txn {
            on_success,
            on_failure,
            ..
        } => writes_of(on_success.iter().chain(on_failure)),
        _ => Writes {
            puts: Vec::new(),
            deletes: Vec::new(),
        },
    }
}

/// The writes an `Ok` operation certainly made at its response revision: its puts, and the
/// deletes its response says deleted something. `None` if it certainly wrote nothing.
fn acknowledged_writes<'a>(request: &'a Request, response: &Response) -> Option<Writes<'a>> {
    let writes = match (request, response) {
        (Request::Put { key, value, .. }, Response::Put { .. }) => Writes {
            puts: vec![(key, value)],
            deletes: Vec::new(),
        },
        (Request::Delete { key }, Response::Delete { deleted, .. }) if *deleted > 0 => Writes {
            puts: Vec::new(),
            deletes: vec![key],
        },
        (
            Request::Txn {
                on_success,
                on_failure,
                ..
            },
            Response::Txn {
                succeeded, results, ..
            },
        ) => {
            let branch = if *succeeded { on_success } else { on_failure };
            let mut writes = Writes {
                puts: Vec::new(),
                deletes: Vec::new(),
            };
            for (i, op) in branch.iter().enumerate() {
                match op {
                    TxnOp::Put { key, value, .. } => writes.puts.push((key, value)),
                    TxnOp::Delete { key } => {
                        if matches!(results.get(i), Some(TxnOpResult::Delete { deleted }) if *deleted > 0)
                        {
                            writes.deletes.push(key)
                        }
                    }
                    TxnOp::Get { .. } => {}
                }
            }
            writes
        }
        _ => return None,
    };
    if writes.puts.is_empty() && writes.deletes.is_empty() {
        None
    } else {
        Some(writes)
    }
}

fn describe_event(event: &Event) -> String {
    match &event.value {
        Some(value) => format!(
            "put {:?}={:?} at revision {}",
            event.key, value, event.mod_revision
        ),
        None => format!("delete {:?} at revision {}", event.key, event.mod_revision),
    }
}

/// Checks the store's event log against the history; see the module doc. An empty result
/// means no violation was found.
pub fn check_event_log(history: &[Operation], event_log: &[Event]) -> Vec<Violation> {
    let mut report = Report {
        violations: Vec::new(),
        dropped: 0,
    };

    // Order, gaps, and consistency of each event with the log before it.
    let mut previous = 1i64;
    let mut keys: HashMap<&str, (i64, i64)> = HashMap::new(); // key -> (create, version)
    for event in event_log {
        let revision = event.mod_revision;
        if revision < previous || revision < 2 {
            report.push(
                ViolationKind::LogRevisionOrder,
                format!("{} comes after revision {previous}", describe_event(event)),
            );
        } else if revision > previous.saturating_add(1) {
            report.push(
                ViolationKind::LogRevisionGap,
                format!(
                    "no event at revisions {}..={} (next event: {})",
                    previous.saturating_add(1),
                    revision.saturating_sub(1),
                    describe_event(event)
                ),
            );
        }
        previous = previous.max(revision);
        match &event.value {
            Some(_) => {
                let (create, version) = match keys.get(event.key.as_str()) {
                    Some(&(create, version)) => (create, version.saturating_add(1)),
                    None => (revision, 1),
                };
                if event.create_revision != create || event.version != version {
                    report.push(
                        ViolationKind::LogInconsistent,
                        format!(
                            "{}: expected create revision {create} and version {version} from the log before it, saw {} and {}",
                            describe_event(event),
                            event.create_revision,
                            event.version
                        ),
                    );
                }
                keys.insert(&event.key, (event.create_revision, event.version));
            }
            None => {
                if keys.remove(event.key.as_str()).is_none() {
                    report.push(
                        ViolationKind::LogInconsistent,
                        format!(
                            "{}: the key does not exist at that point of the log",
                            describe_event(event)
                        ),
                    );
                }
            }
        }
    }

    // Who wrote each value, and where each value and delete is in the log.
    let mut writer: HashMap<&str, (usize, &str)> = HashMap::new();
    for (index, op) in history.iter().enumerate() {
        for (key, value) in all_writes(&op.request).puts {
            writer.entry(value).or_insert((index, key));
        }
    }
    let mut put_events: HashMap<&str, Vec<&Event>> = HashMap::new();
    let mut delete_events: HashSet<(&str, i64)> = HashSet::new();
    for event in event_log {
        match &event.value {
            Some(value) => put_events.entry(value.as_str()).or_default().push(event),
            None => {
                delete_events.insert((event.key.as_str(), event.mod_revision));
            }
        }
    }

    // Duplicated and phantom writes.
    for event in event_log {
        let Some(value) = &event.value else { continue };
        let occurrences = put_events.get(value.as_str()).map_or(0, Vec::len);
        if occurrences > 1 && put_events[value.as_str()][0].mod_revision == event.mod_revision {
            let revisions: Vec<i64> = put_events[value.as_str()]
                .iter()
                .map(|e| e.mod_revision)
                .collect();
            report.push(
                ViolationKind::DuplicatedWrite,
                format!("value {value:?} appears in {occurrences} put events, at revisions {revisions:?}"),
            );
        }
        match writer.get(value.as_str()) {
            None => report.push(
                ViolationKind::PhantomWrite,
                format!(
                    "{}: no operation of the history wrote this value",
                    describe_event(event)
                ),
            ),
            Some(&(index, key)) => {
                if let Outcome::Failed(reason) = &history[index].outcome {
                    report.push(
                        ViolationKind::PhantomWrite,
                        format!(
                            "{}: written by operation #{index}, which failed ({reason})",
                            describe_event(event)
                        ),
                    );
                } else if key != event.key {
                    report.push(
                        ViolationKind::PhantomWrite,
                        format!(
                            "{}: operation #{index} put this value to key {key:?}",
                            describe_event(event)
                        ),
                    );
                }
            }
        }
    }

    // Lost writes: every acknowledged write at its response revision.
    for (index, op) in history.iter().enumerate() {
        let Outcome::Ok(response) = &op.outcome else {
            continue;
        };
        let Some(writes) = acknowledged_writes(&op.request, response) else {
            continue;
        };
        let revision = response_revision(response);
        for (key, value) in writes.puts {
            let events = put_events.get(value).map(Vec::as_slice).unwrap_or(&[]);
            if !events
                .iter()
                .any(|e| e.mod_revision == revision && e.key == key)
            {
                let seen: Vec<String> = events.iter().map(|e| describe_event(e)).collect();
                report.push(
                    ViolationKind::LostWrite,
                    format!(
                        "operation #{index} put {key:?}={value:?} acknowledged at revision {revision}; the log has {}",
                        if seen.is_empty() { "no such put".to_string() } else { seen.join(", ") }
                    ),
                );
            }
        }
        for key in writes.deletes {
            if !delete_events.contains(&(key, revision)) {
                report.push(
                    ViolationKind::LostWrite,
                    format!("operation #{index} deleted {key:?} acknowledged at revision {revision}; the log has no such delete"),
                );
            }
        }
    }

    // Atomicity: the events of one revision come from one operation.
    let mut claimed: HashMap<i64, usize> = HashMap::new();
    for (index, op) in history.iter().enumerate() {
        if let Outcome::Ok(response) = &op.outcome {
            if acknowledged_writes(&op.request, response).is_some() {
                claimed.entry(response_revision(response)).or_insert(index);
            }
        }
    }
    let mut start = 0;
    while start < event_log.len() {
        let revision = event_log[start].mod_revision;
        let mut end = start;
        while end < event_log.len() && event_log[end].mod_revision == revision {
            end += 1;
        }
        let group = &event_log[start..end];
        start = end;
        let mut writers: Vec<usize> = group
            .iter()
            .filter_map(|e| {
                e.value
                    .as_deref()
                    .and_then(|v| writer.get(v))
                    .map(|&(i, _)| i)
            })
            .collect();
        writers.sort_unstable();
        writers.dedup();
        if writers.len() > 1 {
            report.push(
                ViolationKind::NonAtomicRevision,
                format!("revision {revision} holds writes of operations {writers:?}"),
            );
            continue;
        }
        if let Some(&owner) = claimed.get(&revision) {
            let owner_writes = all_writes(&history[owner].request);
            for event in group {
                let explained = match &event.value {
                    Some(value) => owner_writes
                        .puts
                        .iter()
                        .any(|(k, v)| *v == value && *k == event.key),
                    None => owner_writes.deletes.contains(&event.key.as_str()),
                };
                if !explained {
                    report.push(
                        ViolationKind::NonAtomicRevision,
                        format!(
                            "revision {revision} is operation #{owner}'s write ({:?}), but it also holds {}",
                            history[owner].request,
                            describe_event(event)
                        ),
                    );
                }
            }
        }
    }

    if let (true, Some(last)) = (report.dropped > 0, report.violations.last_mut()) {
        last.detail.push_str(&format!(
            " ({} more violation(s) not listed)",
            report.dropped
        ));
    }
    report.violations
}
