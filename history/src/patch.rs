//! Resolving `Unknown` operations from the store's event log before the linearizability
//! search, as etcd's robustness suite does, and `check_history`, which patches then checks.
//!
//! Assumption: the event log is the store's complete and correct list of events from
//! revision 2 (the first write) on, as a watch from revision 1 over all keys returns it after
//! the run, and every put's value is unique within the history. Under it a put's value in the
//! log proves that the put happened, at that event's revision, and a value absent from it
//! proves that the put did not. `check_event_log` checks the log against the history; run it
//! too, since a wrong log makes the patch wrong.

use std::collections::HashMap;
use std::time::Duration;

use crate::linearizability::{
    search, BlockedOperation, LinearizabilityResult, NotLinearizableReport,
};
use crate::{check_linearizable, Event, KeyValue, Operation, Outcome, Request, Response, TxnOp};

enum Branch {
    /// A put of the branch is in the log, at this revision: the branch ran.
    Applied(i64),
    /// The branch puts a value the log never shows: it did not run.
    Excluded,
    /// No put to tell.
    Undetermined,
}

fn classify(branch: &[TxnOp], revision_of: &HashMap<&str, i64>) -> Branch {
    let mut has_put = false;
    for op in branch {
        if let TxnOp::Put { value, .. } = op {
            has_put = true;
            if let Some(&revision) = revision_of.get(value.as_str()) {
                return Branch::Applied(revision);
            }
        }
    }
    if has_put {
        Branch::Excluded
    } else {
        Branch::Undetermined
    }
}

fn writes(branch: &[TxnOp]) -> bool {
    branch.iter().any(|op| !matches!(op, TxnOp::Get { .. }))
}

/// The history with its `Unknown` operations resolved where the event log allows; same
/// length and order as `history`, so indices in later reports refer to it as well:
///
/// - an `Unknown` put whose value is in the log becomes `Ok` with that event's revision; an
///   `Unknown` txn a branch of which puts a value in the log becomes `Ok` with that branch
///   and revision, and no results (`results` empty: not recorded, left unconstrained);
/// - its return time becomes the earliest return of an `Ok` operation whose response
///   revision is at or past that revision (that operation saw the write), or `u64::MAX` when
///   there is none or it returned before the call (then the search reports the contradiction);
/// - an `Unknown` put whose value is not in the log did not happen and becomes `Failed`; so
///   does an `Unknown` read-only operation (no effect) and a txn all of whose writing
///   branches put such values; a txn branch that puts such a value is emptied (had the
///   branch run, the value would be in the log), the other branch stays possible;
/// - `Unknown` deletes, lease grants and revokes stay `Unknown`: their effects carry no value.
///
/// See the module's assumption on the log.
pub fn patch_with_event_log(history: &[Operation], event_log: &[Event]) -> Vec<Operation> {
    let mut revision_of: HashMap<&str, i64> = HashMap::new();
    for event in event_log {
        if let Some(value) = &event.value {
            revision_of
                .entry(value.as_str())
                .or_insert(event.mod_revision);
        }
    }
    // Earliest return among Ok operations whose response revision is >= r: sort by revision,
    // then suffix minimum of return times.
    let mut observed: Vec<(i64, u64)> = history
        .iter()
        .filter_map(|op| match &op.outcome {
            Outcome::Ok(response) => Some((response_revision(response), op.return_ns)),
            _ => None,
        })
        .collect();
    observed.sort_unstable();
    let mut earliest_from = vec![u64::MAX; observed.len() + 1];
    for i in (0..observed.len()).rev() {
        earliest_from[i] = earliest_from[i + 1].min(observed[i].1);
    }
    let observed_by =
        |revision: i64| earliest_from[observed.partition_point(|(r, _)| *r < revision)];

    let not_applied = |op: &Operation, why: &str| Operation {
        outcome: Outcome::Failed(format!("patched from the event log: {why}")),
        ..op.clone()
    };
    let applied = |op: &Operation, response: Response, revision: i64| {
        let bound = observed_by(revision);
        Operation {
            return_ns: if bound >= op.call_ns { bound } else { u64::MAX },
            outcome: Outcome::Ok(response),
            ..op.clone()
        }
    };

    history
        .iter()
        .map(|op| {
            if !matches!(op.outcome, Outcome::Unknown(_)) {
                return op.clone();
            }
            match &op.request {
                Request::Get { .. } => not_applied(op, "a read has no effect"),
                Request::Put { value, .. } => match revision_of.get(value.as_str()) {
                    Some(&revision) => applied(op, Response::Put { revision }, revision),
                    None => not_applied(op, "its value is not in the log"),
                },
                Request::Txn {
                    compares,
                    on_success,
                    on_failure,
                } => {
                    match (
                        classify(on_success, &revision_of),
                        classify(on_failure, &revision_of),
                    ) {
                        (Branch::Applied(_), Branch::Applied(_)) => op.clone(),
                        (Branch::Applied(revision), _) => applied(
                            op,
                            Response::Txn {
                                revision,
                                succeeded: true,
                                results: Vec::new(),
                            },
                            revision,
                        ),
                        (_, Branch::Applied(revision)) => applied(
                            op,
                            Response::Txn {
                                revision,
                                succeeded: false,
                                results: Vec::new(),
                            },
                            revision,
                        ),
                        (success, failure) => {
                            let keep = |status: Branch, branch: &Vec<TxnOp>| match status {
                                Branch::Excluded => Vec::new(),
                                _ => branch.clone(),
                            };
                            let on_success = keep(success, on_success);
                            let on_failure = keep(failure, on_failure);
                            if !writes(&on_success) && !writes(&on_failure) {
                                not_applied(op, "no branch that writes can have run")
                            } else {
                                Operation {
                                    request: Request::Txn {
                                        compares: compares.clone(),
                                        on_success,
                                        on_failure,
                                    },
                                    ..op.clone()
                                }
                            }
                        }
                    }
                }
                Request::Delete { .. }
                | Request::LeaseGrant { .. }
                | Request::LeaseRevoke { .. } => op.clone(),
            }
        })
        .collect()
}

/// Under the log assumption the log gives every key's state at every revision, so an `Ok`
/// read can be checked on its own: found at once, where the search could take long to rule
/// out every placement of the `Unknown` operations around it.
fn reads_against_log(history: &[Operation], log: &[Event]) -> Option<NotLinearizableReport> {
    // Per key: (revision, state after) in log order.
    let mut versions: HashMap<&str, Vec<(i64, Option<KeyValue>)>> = HashMap::new();
    for event in log {
        let state = event.value.as_ref().map(|value| KeyValue {
            value: value.clone(),
            create_revision: event.create_revision,
            mod_revision: event.mod_revision,
            version: event.version,
            lease_id: event.lease_id,
        });
        versions
            .entry(event.key.as_str())
            .or_default()
            .push((event.mod_revision, state));
    }
    for (index, op) in history.iter().enumerate() {
        let (Request::Get { key }, Outcome::Ok(Response::Get { revision, kv })) =
            (&op.request, &op.outcome)
        else {
            continue;
        };
        let history_of_key = versions.get(key.as_str()).map(Vec::as_slice).unwrap_or(&[]);
        let at = history_of_key.partition_point(|(r, _)| r <= revision);
        let logged = if at == 0 {
            None
        } else {
            history_of_key[at - 1].1.clone()
        };
        if logged != *kv {
            return Some(NotLinearizableReport {
                summary: format!(
                    "#{index} read {key:?} at revision {revision}, which the event log contradicts"
                ),
                longest_prefix: Vec::new(),
                revision_after_prefix: 0,
                state_after_prefix: Vec::new(),
                blocked: vec![BlockedOperation {
                    index,
                    operation: op.clone(),
                    reason: format!("the log has {key:?} at revision {revision} as {logged:?}"),
                }],
            });
        }
    }
    None
}

pub(crate) fn response_revision(response: &Response) -> i64 {
    match response {
        Response::Get { revision, .. }
        | Response::Put { revision }
        | Response::Delete { revision, .. }
        | Response::Txn { revision, .. }
        | Response::LeaseGrant { revision }
        | Response::LeaseRevoke { revision } => *revision,
    }
}

/// Patches the history with the event log when one is given (see `patch_with_event_log` and
/// its assumption), then checks linearizability within `budget`. With a log the search also
/// requires every new revision to hold exactly the log's events of that revision, which
/// pins `Unknown` deletes and revokes to the revisions where the log shows their effect, and
/// every `Ok` read is first checked against the key's state the log gives at its revision. So
/// a write missing from the log, or a log event no operation explains, makes the history
/// not linearizable here too (`check_event_log` says which). Indices in a report refer to
/// `history` (the patch keeps them).
pub fn check_history(
    history: &[Operation],
    event_log: Option<&[Event]>,
    budget: Duration,
) -> LinearizabilityResult {
    match event_log {
        Some(log) => {
            if let Some(report) = reads_against_log(history, log) {
                return LinearizabilityResult::NotLinearizable(report);
            }
            search(&patch_with_event_log(history, log), Some(log), budget)
        }
        None => check_linearizable(history, budget),
    }
}
