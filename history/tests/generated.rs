//! Generated histories: a sequential store simulated here (independently of the checker's
//! model) serves several concurrent clients; each operation gets a random window around the
//! instant it took effect. Such a history is valid by construction and must check as
//! linearizable, fast; one planted stale read must make it fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cairn_history::*;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Default)]
struct Store {
    revision: i64,
    keys: BTreeMap<String, KeyValue>,
    leases: BTreeSet<i64>,
    log: Vec<Event>,
}

impl Store {
    fn put(&mut self, key: &str, value: &str, lease_id: i64, revision: i64) {
        let previous = self.keys.get(key);
        let kv = KeyValue {
            value: value.to_string(),
            create_revision: previous.map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: previous.map_or(1, |p| p.version + 1),
            lease_id,
        };
        self.log.push(Event {
            key: key.to_string(),
            value: Some(value.to_string()),
            mod_revision: revision,
            create_revision: kv.create_revision,
            version: kv.version,
            lease_id,
            prev_kv: None,
        });
        self.keys.insert(key.to_string(), kv);
    }

    fn delete(&mut self, key: &str, revision: i64) -> bool {
        if self.keys.remove(key).is_none() {
            return false;
        }
        self.log.push(Event {
            key: key.to_string(),
            value: None,
            mod_revision: revision,
            create_revision: 0,
            version: 0,
            lease_id: 0,
            prev_kv: None,
        });
        true
    }

    /// Applies the request and returns etcd's response (`None`: etcd would fail it).
    fn apply(&mut self, request: &Request) -> Option<Response> {
        let next = self.revision + 1;
        Some(match request {
            Request::Get { key } => Response::Get {
                revision: self.revision,
                kv: self.keys.get(key).cloned(),
            },
            Request::Put {
                key,
                value,
                lease_id,
            } => {
                if *lease_id != 0 && !self.leases.contains(lease_id) {
                    return None;
                }
                self.put(key, value, *lease_id, next);
                self.revision = next;
                Response::Put { revision: next }
            }
            Request::Delete { key } => {
                let deleted = self.delete(key, next);
                if deleted {
                    self.revision = next;
                }
                Response::Delete {
                    revision: self.revision,
                    deleted: deleted as i64,
                }
            }
            Request::Txn {
                compares,
                on_success,
                on_failure,
            } => {
                let succeeded = compares.iter().all(|c| {
                    let kv = self.keys.get(&c.key);
                    match &c.target {
                        CompareTarget::Value(v) => kv.map(|kv| &kv.value) == v.as_ref(),
                        CompareTarget::ModRevision(r) => kv.map_or(0, |kv| kv.mod_revision) == *r,
                    }
                });
                let mut wrote = false;
                let mut results = Vec::new();
                for op in if succeeded { on_success } else { on_failure } {
                    results.push(match op {
                        TxnOp::Get { key } => TxnOpResult::Get {
                            kv: self.keys.get(key).cloned(),
                        },
                        TxnOp::Put {
                            key,
                            value,
                            lease_id,
                        } => {
                            self.put(key, value, *lease_id, next);
                            wrote = true;
                            TxnOpResult::Put
                        }
                        TxnOp::Delete { key } => {
                            let deleted = self.delete(key, next);
                            wrote |= deleted;
                            TxnOpResult::Delete {
                                deleted: deleted as i64,
                            }
                        }
                    });
                }
                if wrote {
                    self.revision = next;
                }
                Response::Txn {
                    revision: self.revision,
                    succeeded,
                    results,
                }
            }
            Request::LeaseGrant { lease_id } => {
                if !self.leases.insert(*lease_id) {
                    return None;
                }
                Response::LeaseGrant {
                    revision: self.revision,
                }
            }
            Request::LeaseRevoke { lease_id } => {
                if !self.leases.remove(lease_id) {
                    return None;
                }
                let attached: Vec<String> = self
                    .keys
                    .iter()
                    .filter(|(_, kv)| kv.lease_id == *lease_id)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in &attached {
                    self.delete(key, next);
                }
                if !attached.is_empty() {
                    self.revision = next;
                }
                Response::LeaseRevoke {
                    revision: self.revision,
                }
            }
        })
    }
}

struct Generated {
    history: Vec<Operation>,
    log: Vec<Event>,
    /// For each Ok put: the key's state and the store revision just before it.
    before_put: Vec<Option<(i64, Option<KeyValue>)>>,
}

fn generate(
    operations: usize,
    keys: usize,
    clients: usize,
    seed: u64,
    unknown_percent: u64,
) -> Generated {
    let mut rng = Rng(seed | 1);
    let mut store = Store {
        revision: 1,
        ..Store::default()
    };
    let mut history = Vec::new();
    let mut before_put = Vec::new();
    let mut free_at = vec![0u64; clients];
    let mut next_value = 0u64;
    let mut next_lease = 100i64;
    let key_name = |i: u64| format!("key{i}");
    let mut now = 1_000u64;
    while history.len() < operations {
        now += 100;
        let client = rng.below(clients as u64) as usize;
        if free_at[client] >= now {
            continue;
        }
        let key = key_name(rng.below(keys as u64));
        let mut value = || {
            next_value += 1;
            format!("v{next_value}")
        };
        let roll = rng.below(100);
        let request = match roll {
            0..=34 => Request::Get { key },
            35..=59 => Request::Put {
                key,
                value: value(),
                lease_id: 0,
            },
            60..=64 => {
                let lease_id = store.leases.iter().next().copied().unwrap_or(0);
                Request::Put {
                    key,
                    value: value(),
                    lease_id,
                }
            }
            65..=71 => Request::Delete { key },
            72..=89 => {
                let current = store.keys.get(&key).cloned();
                let stale = rng.chance(30);
                let target = if rng.chance(50) {
                    CompareTarget::Value(if stale {
                        Some("nope".to_string())
                    } else {
                        current.as_ref().map(|kv| kv.value.clone())
                    })
                } else {
                    CompareTarget::ModRevision(if stale {
                        1
                    } else {
                        current.as_ref().map_or(0, |kv| kv.mod_revision)
                    })
                };
                let other = key_name(rng.below(keys as u64));
                Request::Txn {
                    compares: vec![Compare {
                        key: key.clone(),
                        target,
                    }],
                    on_success: vec![
                        TxnOp::Put {
                            key: key.clone(),
                            value: value(),
                            lease_id: 0,
                        },
                        TxnOp::Get { key: other.clone() },
                    ],
                    on_failure: vec![
                        TxnOp::Get { key: key.clone() },
                        TxnOp::Delete { key: other },
                    ],
                }
            }
            90..=93 => {
                next_lease += 1;
                Request::LeaseGrant {
                    lease_id: next_lease,
                }
            }
            94..=95 => match store.leases.iter().nth(rng.below(3) as usize).copied() {
                Some(lease_id) => Request::LeaseRevoke { lease_id },
                None => Request::Get { key },
            },
            _ => Request::Get { key },
        };
        let call_ns = now - rng.below((now - free_at[client]).min(400));
        let return_ns = now + 1 + rng.below(400);
        free_at[client] = return_ns;
        let revision_before = store.revision;
        let key_before = match &request {
            Request::Put { key, .. } => store.keys.get(key).cloned(),
            _ => None,
        };
        // A few operations time out (applied or not) or fail (not applied).
        let fate = rng.below(100);
        let outcome = if fate < unknown_percent {
            if rng.chance(50) {
                store.apply(&request);
            }
            Outcome::Unknown("timeout".to_string())
        } else if fate < unknown_percent + 1 {
            Outcome::Failed("unavailable".to_string())
        } else {
            match store.apply(&request) {
                Some(response) => Outcome::Ok(response),
                None => Outcome::Failed("rejected".to_string()),
            }
        };
        let is_ok_put = matches!((&request, &outcome), (Request::Put { .. }, Outcome::Ok(_)));
        before_put.push(is_ok_put.then_some((revision_before, key_before)));
        history.push(Operation {
            client: client as u32,
            call_ns,
            return_ns,
            request,
            outcome,
        });
    }
    Generated {
        history,
        log: store.log,
        before_put,
    }
}

/// Makes one late read return the state from before a put that completed before the read was
/// invoked. Returns the read's index.
fn plant_stale_read(generated: &mut Generated) -> usize {
    let history = &mut generated.history;
    for read in (history.len() * 3 / 4..history.len()).rev() {
        let (Request::Get { key }, Outcome::Ok(_)) =
            (&history[read].request, &history[read].outcome)
        else {
            continue;
        };
        let key = key.clone();
        let call = history[read].call_ns;
        let write = (0..read).rev().find(|&w| {
            matches!(&history[w].request, Request::Put { key: k, .. } if *k == key)
                && generated.before_put[w].is_some()
                && history[w].return_ns < call
        });
        if let Some(write) = write {
            let (revision, kv) = generated.before_put[write].clone().expect("an Ok put");
            history[read].outcome = Outcome::Ok(Response::Get { revision, kv });
            return read;
        }
    }
    panic!("no read to make stale");
}

/// Makes one late read miss the put it saw: it reports the key as it was before that put,
/// at the same revision (a lost write). Returns the read's index.
fn plant_lost_write(generated: &mut Generated) -> usize {
    let history = &mut generated.history;
    for read in (history.len() * 3 / 4..history.len()).rev() {
        let Outcome::Ok(Response::Get {
            revision,
            kv: Some(seen),
        }) = &history[read].outcome
        else {
            continue;
        };
        let (revision, seen_mod) = (*revision, seen.mod_revision);
        let write = (0..read).find(|&w| {
            matches!(history[w].outcome, Outcome::Ok(Response::Put { revision: r }) if r == seen_mod)
                && matches!(&generated.before_put[w], Some((_, Some(_))))
        });
        if let Some(write) = write {
            let (_, prior) = generated.before_put[write].clone().expect("an Ok put");
            history[read].outcome = Outcome::Ok(Response::Get {
                revision,
                kv: prior,
            });
            return read;
        }
    }
    panic!("no read to plant a lost write in");
}

fn check_generated(operations: usize, seed: u64) {
    let mut generated = generate(operations, 8, 8, seed, 3);
    let unknown = generated
        .history
        .iter()
        .filter(|op| matches!(op.outcome, Outcome::Unknown(_)))
        .count();
    assert!(
        unknown > operations / 100,
        "the history has Unknown operations ({unknown})"
    );

    let violations = check_event_log(&generated.history, &generated.log);
    assert!(violations.is_empty(), "{violations:?}");

    let started = Instant::now();
    let result = check_history(
        &generated.history,
        Some(&generated.log),
        Duration::from_secs(60),
    );
    let elapsed = started.elapsed();
    eprintln!("{operations} operations ({unknown} Unknown), patched from the log: {result:?} in {elapsed:?}");
    common::assert_linearizable(result);
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");

    let mut lost = Generated {
        history: generated.history.clone(),
        log: generated.log.clone(),
        before_put: generated.before_put.clone(),
    };
    let read = plant_lost_write(&mut lost);
    let result = check_history(&lost.history, Some(&lost.log), Duration::from_secs(60));
    let report = common::assert_not_linearizable(result);
    assert!(report.blocked.iter().any(|b| b.index == read), "{report}");

    let read = plant_stale_read(&mut generated);
    let started = Instant::now();
    let result = check_history(
        &generated.history,
        Some(&generated.log),
        Duration::from_secs(60),
    );
    eprintln!(
        "with a stale read at #{read}: decided in {:?}",
        started.elapsed()
    );
    let report = common::assert_not_linearizable(result);
    assert!(report.blocked.iter().any(|b| b.index == read), "{report}");
    eprintln!("{report}");
}

#[test]
fn generated_history_of_5000_operations() {
    check_generated(5_000, 0x5eed);
}

#[test]
fn generated_history_of_20000_operations() {
    check_generated(20_000, 0xc0ffee);
}

#[test]
fn generated_history_without_the_event_log() {
    // Unknown puts stay unresolved: the search must place them itself.
    let generated = generate(3_000, 8, 8, 0xabcdef, 3);
    let started = Instant::now();
    let result = check_linearizable(&generated.history, Duration::from_secs(60));
    eprintln!(
        "3000 operations, no patch: {result:?} in {:?}",
        started.elapsed()
    );
    common::assert_linearizable(result);
}

#[test]
fn search_finds_a_lost_write_in_a_generated_history() {
    // No Unknown operations, no event log: the search alone must find it.
    let mut generated = generate(2_000, 8, 8, 0x1234, 0);
    common::assert_linearizable(check_linearizable(
        &generated.history,
        Duration::from_secs(60),
    ));
    let read = plant_lost_write(&mut generated);
    let started = Instant::now();
    let report = common::assert_not_linearizable(check_linearizable(
        &generated.history,
        Duration::from_secs(60),
    ));
    eprintln!(
        "lost write at #{read} found by the search in {:?}:\n{report}",
        started.elapsed()
    );
    assert!(report.longest_prefix.len() > 1_000, "{report}");
}
