//! Watches: tells each watcher every change to its keys, in revision order, exactly once.
//!
//! Owns the watchers of every watch stream and each stream's queue of outgoing responses.
//! The state machine hands the hub each commit's changes (`notify`); the API opens streams
//! and creates, cancels and asks progress of watches through them. May call `mvcc` only.
//!
//! A watcher is either *synced*, told of each commit as it is applied, or *unsynced*, behind
//! the store: it started in the past, its stream's queue was full, or a snapshot replaced
//! the store. A catch-up task reads unsynced watchers' missed revisions from the store in
//! bounded slices, and moves each back to synced once it has reached the last notified
//! revision. All of it happens under one lock, so a watcher is never in both states and
//! never sees a revision twice or misses one. Applying never waits for a client: a full
//! queue sets the watcher aside instead (see `outbox`).

mod groups;
mod outbox;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::mvcc::{Change, Committed, HistoryError, HistoryLimit, Mvcc};
use crate::proto::mvccpb::{event::EventType, Event};
use groups::Groups;
pub use groups::{prefix_end, KeyRange};
use outbox::Budget;
pub use outbox::{Outbox, MAX_QUEUED_BYTES, MAX_TOTAL_QUEUED_BYTES};

/// Watches one stream may hold: each costs memory and a share of every commit's matching.
pub const MAX_WATCHES_PER_STREAM: usize = 10_000;
/// Unsynced watchers caught up per round, and the slice of history one round reads:
/// rounds stay short, so a far-behind watcher does not delay the others for long.
const MAX_WATCHERS_PER_CATCH_UP: usize = 512;
const CATCH_UP_LIMIT: HistoryLimit = HistoryLimit {
    max_revs: 1000,
    max_bytes: 1 << 20,
};
/// A response is cut at the first revision boundary past this size, so clients with
/// default message limits (4 MiB) can read it; one revision is never split here (only
/// `fragment` splits one, in the API).
const RESPONSE_SOFT_MAX_BYTES: usize = 1 << 20;
/// etcd's `AutoWatchID`: the client leaves the choice of watch ID to the server.
const AUTO_WATCH_ID: i64 = 0;
/// etcd's watch ID in responses that belong to no watch (failed create, stream progress).
pub const NO_WATCH_ID: i64 = -1;

pub type StreamId = u64;
type WatcherId = u64;

/// What a client asked for in a `WatchCreateRequest`, validated.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub range: KeyRange,
    /// `AUTO_WATCH_ID` lets the hub choose.
    pub watch_id: i64,
    /// 0: from the next revision on.
    pub start_rev: i64,
    pub prev_kv: bool,
    pub progress_notify: bool,
    pub fragment: bool,
    pub no_put: bool,
    pub no_delete: bool,
}

impl WatchSpec {
    /// A watch of `range` from `start_rev` (0: from the next revision), its ID chosen by the
    /// hub, without options.
    pub fn of(range: KeyRange, start_rev: i64) -> WatchSpec {
        WatchSpec {
            range,
            watch_id: AUTO_WATCH_ID,
            start_rev,
            prev_kv: false,
            progress_notify: false,
            fragment: false,
            no_put: false,
            no_delete: false,
        }
    }
}

/// A response waiting in a stream's queue; the API turns it into a `WatchResponse`.
#[derive(Debug)]
pub enum Outgoing {
    Created {
        watch_id: i64,
        rev: i64,
    },
    CreateFailed {
        rev: i64,
        reason: String,
    },
    Canceled {
        watch_id: i64,
        rev: i64,
    },
    Events {
        watch_id: i64,
        rev: i64,
        /// Shared by every watcher told of the same change: one commit's events are held
        /// once, however many queues hold them.
        events: Vec<Arc<Event>>,
        prev_kv: bool,
        fragment: bool,
    },
    /// The watch started below the compacted revision and is canceled.
    Compacted {
        watch_id: i64,
        compact_rev: i64,
    },
    /// Everything up to `rev` has been sent (to `watch_id`, or to the whole stream).
    Progress {
        watch_id: i64,
        rev: i64,
    },
}

impl Outgoing {
    /// Roughly what it costs in memory, counting shared events in full: what bounds the
    /// queues (so the bound holds however little is in fact shared).
    fn size_bytes(&self) -> usize {
        match self {
            Outgoing::Events { events, .. } => {
                RESPONSE_FIXED_BYTES + events.iter().map(|e| event_size_bytes(e)).sum::<usize>()
            }
            Outgoing::CreateFailed { reason, .. } => RESPONSE_FIXED_BYTES + reason.len(),
            _ => RESPONSE_FIXED_BYTES,
        }
    }
}

/// What a queued response costs besides its events.
const RESPONSE_FIXED_BYTES: usize = 64;

fn event_size_bytes(event: &Event) -> usize {
    32 + event
        .kv
        .as_ref()
        .map_or(0, |kv| kv.key.len() + kv.value.len())
}

fn change_size_bytes(change: &Change) -> usize {
    32 + change.kv.key.len() + change.kv.value.len()
}

/// What queueing these changes costs, as `Outgoing::size_bytes` will count it (responses
/// cut at `RESPONSE_SOFT_MAX_BYTES` add a little each).
fn queued_size_bytes<'a>(changes: impl Iterator<Item = &'a Change>) -> usize {
    let events: usize = changes.map(change_size_bytes).sum();
    events + RESPONSE_FIXED_BYTES * (1 + events / RESPONSE_SOFT_MAX_BYTES)
}

struct Watcher {
    stream: StreamId,
    watch_id: i64,
    range: KeyRange,
    /// The first revision this watcher has not been sent.
    next_rev: i64,
    synced: bool,
    /// Canceled because its revisions were compacted: sends nothing more, but keeps its
    /// ID taken until the client cancels it, as etcd does.
    compacted: bool,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// Events were sent since the last periodic progress tick.
    sent_since_tick: bool,
}

impl Watcher {
    fn wants(&self, change: &Change) -> bool {
        change.rev.main >= self.next_rev
            && !(if change.deleted {
                self.no_delete
            } else {
                self.no_put
            })
            && self.range.contains(&change.kv.key)
    }
}

struct StreamState {
    outbox: Arc<Outbox>,
    watch_ids: HashMap<i64, WatcherId>,
    next_watch_id: i64,
    unsynced: usize,
    /// A stream progress request waits for this stream's unsynced watchers: a progress
    /// response must never claim a revision a watcher has not been sent.
    progress_deferred: bool,
}

struct HubState {
    /// Every change up to here has been matched against the synced watchers.
    notified_rev: i64,
    /// Changes when a snapshot starts replacing the store and when it is done: a catch-up
    /// read that spans a change may have seen a half-replaced store and is thrown away.
    epoch: u64,
    /// Where the next catch-up round starts looking, so every unsynced watcher gets its turn.
    catch_up_cursor: WatcherId,
    next_watcher: WatcherId,
    next_stream: StreamId,
    watchers: HashMap<WatcherId, Watcher>,
    synced: Groups,
    unsynced: BTreeSet<WatcherId>,
    streams: HashMap<StreamId, StreamState>,
    closed: bool,
}

pub struct WatchHub {
    state: Mutex<HubState>,
    mvcc: Arc<Mvcc>,
    budget: Arc<Budget>,
    catch_up: Arc<Notify>,
    /// Events queued to streams since start.
    events_sent: AtomicU64,
}

/// How many streams, watchers and events the hub has (etcd's watch metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WatchCounts {
    pub streams: u64,
    pub watchers: u64,
    /// Watchers behind the store (unsynced), being caught up.
    pub slow_watchers: u64,
    /// Events queued to streams since start.
    pub events_sent: u64,
}

/// The hub is closed: the member is stopping.
#[derive(Debug)]
pub struct Closed;

impl WatchHub {
    /// Starts the hub and its catch-up task at the store's current revision.
    pub fn start(mvcc: Arc<Mvcc>) -> Arc<WatchHub> {
        let hub = Arc::new(WatchHub {
            state: Mutex::new(HubState {
                notified_rev: mvcc.current_rev(),
                epoch: 0,
                catch_up_cursor: 0,
                next_watcher: 0,
                next_stream: 0,
                watchers: HashMap::new(),
                synced: Groups::default(),
                unsynced: BTreeSet::new(),
                streams: HashMap::new(),
                closed: false,
            }),
            mvcc,
            budget: Arc::default(),
            catch_up: Arc::new(Notify::new()),
            events_sent: AtomicU64::new(0),
        });
        tokio::spawn(run_catch_up(Arc::downgrade(&hub), hub.catch_up.clone()));
        hub
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        self.state.lock().expect("watch hub lock")
    }

    pub fn counts(&self) -> WatchCounts {
        let state = self.lock();
        WatchCounts {
            streams: state.streams.len() as u64,
            watchers: state.watchers.len() as u64,
            slow_watchers: state.unsynced.len() as u64,
            events_sent: self.events_sent.load(Ordering::Relaxed),
        }
    }

    /// Opens a watch stream; dropping the handle cancels its watches.
    pub fn open_stream(self: &Arc<Self>) -> Result<WatchStream, Closed> {
        let mut state = self.lock();
        if state.closed {
            return Err(Closed);
        }
        let id = state.next_stream;
        state.next_stream += 1;
        let outbox = Arc::new(Outbox::new(self.budget.clone(), self.catch_up.clone()));
        state.streams.insert(
            id,
            StreamState {
                outbox: outbox.clone(),
                watch_ids: HashMap::new(),
                next_watch_id: 0,
                unsynced: 0,
                progress_deferred: false,
            },
        );
        Ok(WatchStream {
            hub: self.clone(),
            id,
            outbox,
        })
    }

    /// Tells synced watchers of a commit. Never waits for a client.
    pub fn notify(&self, committed: Committed) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let first_rev = state.notified_rev + 1;
        state.notified_rev = committed.rev;
        if state.synced.is_empty() || committed.changes.is_empty() {
            return;
        }
        // Per watcher, which changes it wants, in revision order. Events are only built for
        // a watcher whose stream has room, so memory follows the queues' bounds.
        let mut wanted: HashMap<WatcherId, Vec<usize>> = HashMap::new();
        for (i, change) in committed.changes.iter().enumerate() {
            state.synced.for_each_matching(&change.kv.key, |id| {
                if state.watchers[&id].wants(change) {
                    wanted.entry(id).or_default().push(i);
                }
            });
        }
        let mut set_aside = false;
        // Each change's event, built once for all the watchers that get it.
        let mut shared: Vec<Option<Arc<Event>>> = vec![None; committed.changes.len()];
        for (id, changes) in wanted {
            let watcher = state.watchers.get_mut(&id).expect("synced watcher exists");
            let stream = state
                .streams
                .get_mut(&watcher.stream)
                .expect("watcher's stream exists");
            let size_bytes = queued_size_bytes(changes.iter().map(|&i| &committed.changes[i]));
            if stream.outbox.has_room(size_bytes) {
                let events = changes
                    .into_iter()
                    .map(|i| {
                        shared[i]
                            .get_or_insert_with(|| Arc::new(to_event(&committed.changes[i])))
                            .clone()
                    })
                    .collect::<Vec<_>>();
                self.events_sent
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                push_events(&stream.outbox, watcher, events, committed.rev);
            } else {
                watcher.synced = false;
                watcher.next_rev = watcher.next_rev.max(first_rev);
                state.synced.remove(id, &watcher.range);
                state.unsynced.insert(id);
                stream.unsynced += 1;
                set_aside = true;
            }
        }
        if set_aside {
            self.catch_up.notify_one();
        }
    }

    /// A snapshot starts replacing the store: catch-up reads from now on are unreliable
    /// until `reset`.
    pub fn begin_reset(&self) {
        self.lock().epoch += 1;
    }

    /// The store was replaced (a snapshot was installed) at `rev`: every watcher catches
    /// up from the new store, or learns that its revisions were compacted.
    pub fn reset(&self, rev: i64) {
        let mut guard = self.lock();
        let state = &mut *guard;
        state.epoch += 1;
        let next_rev = state.notified_rev + 1;
        for (id, watcher) in state.watchers.iter_mut() {
            if watcher.synced {
                watcher.synced = false;
                watcher.next_rev = watcher.next_rev.max(next_rev);
                state.synced.remove(*id, &watcher.range);
                state.unsynced.insert(*id);
                if let Some(stream) = state.streams.get_mut(&watcher.stream) {
                    stream.unsynced += 1;
                }
            }
        }
        state.notified_rev = rev;
        drop(guard);
        self.catch_up.notify_one();
    }

    /// Ends every stream (after what is queued) and refuses new ones: the member stops.
    pub fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        for stream in state.streams.values() {
            stream.outbox.close();
        }
        drop(state);
        self.catch_up.notify_one();
    }

    /// One round of catch-up; false when there was nothing to do.
    async fn catch_up_round(&self) -> bool {
        // A round reads one slice of history for the watchers near the same revision as
        // its first watcher; the first watcher rotates, so one far-behind watcher does not
        // hold up the others.
        let (chosen, from, until, epoch) = {
            let mut guard = self.lock();
            let state = &mut *guard;
            if state.closed {
                return false;
            }
            let compact_rev = self.mvcc.compact_rev();
            let in_turn: Vec<WatcherId> = state
                .unsynced
                .range(state.catch_up_cursor..)
                .chain(state.unsynced.range(..state.catch_up_cursor))
                .copied()
                .collect();
            let mut chosen: Vec<(WatcherId, i64)> = Vec::new();
            let mut compacted = Vec::new();
            for id in in_turn {
                let watcher = &state.watchers[&id];
                let outbox = &state.streams[&watcher.stream].outbox;
                if watcher.next_rev < compact_rev {
                    compacted.push(id);
                    continue;
                }
                let in_slice = chosen.first().is_none_or(|&(_, from)| {
                    (from..from + CATCH_UP_LIMIT.max_revs).contains(&watcher.next_rev)
                });
                if in_slice && outbox.has_room(CATCH_UP_LIMIT.max_bytes) {
                    chosen.push((id, watcher.next_rev));
                    if chosen.len() == MAX_WATCHERS_PER_CATCH_UP {
                        break;
                    }
                }
            }
            for id in compacted {
                cancel_compacted(state, id, compact_rev);
            }
            let Some(&(first, from)) = chosen.first() else {
                return false;
            };
            state.catch_up_cursor = first + 1;
            (chosen, from, state.notified_rev, state.epoch)
        };
        let history = if from > until {
            // A watcher set aside at the last notified revision has nothing to read.
            Ok(Default::default())
        } else {
            let mvcc = self.mvcc.clone();
            match tokio::task::spawn_blocking(move || mvcc.changes(from, until, CATCH_UP_LIMIT))
                .await
            {
                Ok(history) => history,
                Err(_) => return false,
            }
        };
        let history = match history {
            Ok(history) => history,
            // The next round cancels the watchers that fell below the compaction.
            Err(HistoryError::Compacted(_)) => return true,
            Err(HistoryError::Corrupt) => {
                tracing::error!("watch catch-up read a damaged revision; watchers wait");
                return false;
            }
        };
        let last_rev = if from > until {
            until
        } else {
            history.last_rev
        };
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.epoch != epoch {
            // A snapshot replaced the store meanwhile: read again.
            return true;
        }
        let compact_rev = self.mvcc.compact_rev();
        let mut shared: Vec<Option<Arc<Event>>> = vec![None; history.changes.len()];
        for (id, chosen_rev) in chosen {
            let Some(watcher) = state.watchers.get(&id) else {
                continue;
            };
            if watcher.synced || watcher.compacted || watcher.next_rev != chosen_rev {
                continue;
            }
            if watcher.next_rev < compact_rev {
                cancel_compacted(state, id, compact_rev);
                continue;
            }
            let outbox = state.streams[&watcher.stream].outbox.clone();
            let wanted = || history.changes.iter().filter(|c| watcher.wants(c));
            if !outbox.has_room(queued_size_bytes(wanted())) {
                continue;
            }
            let events: Vec<Arc<Event>> = history
                .changes
                .iter()
                .enumerate()
                .filter(|(_, c)| watcher.wants(c))
                .map(|(i, c)| {
                    shared[i]
                        .get_or_insert_with(|| Arc::new(to_event(c)))
                        .clone()
                })
                .collect();
            let watcher = state.watchers.get_mut(&id).expect("checked above");
            if !events.is_empty() {
                // As etcd: the header of a catch-up response is the revision read up to.
                self.events_sent
                    .fetch_add(events.len() as u64, Ordering::Relaxed);
                push_events(&outbox, watcher, events, until);
            }
            watcher.next_rev = watcher.next_rev.max(last_rev + 1);
            if watcher.next_rev > state.notified_rev {
                watcher.synced = true;
                state.unsynced.remove(&id);
                state.synced.add(id, &watcher.range);
                let notified_rev = state.notified_rev;
                let stream = state.streams.get_mut(&watcher.stream).expect("stream");
                stream.unsynced -= 1;
                send_deferred_progress(stream, notified_rev);
            }
        }
        true
    }
}

async fn run_catch_up(hub: std::sync::Weak<WatchHub>, wake: Arc<Notify>) {
    loop {
        let worked = match hub.upgrade() {
            Some(hub) => hub.catch_up_round().await,
            None => return,
        };
        if worked {
            tokio::task::yield_now().await;
        } else {
            wake.notified().await;
        }
    }
}

fn to_event(change: &Change) -> Event {
    Event {
        r#type: if change.deleted {
            EventType::Delete
        } else {
            EventType::Put
        } as i32,
        kv: Some(change.kv.clone()),
        prev_kv: None,
    }
}

/// Queues a watcher's events, cut into responses at revision boundaries.
fn push_events(outbox: &Outbox, watcher: &mut Watcher, events: Vec<Arc<Event>>, rev: i64) {
    watcher.sent_since_tick = true;
    let mut response = Vec::new();
    let mut bytes = 0;
    let mut last_main = None;
    for event in events {
        let main = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        if bytes >= RESPONSE_SOFT_MAX_BYTES && last_main != Some(main) {
            outbox.push(events_response(watcher, std::mem::take(&mut response), rev));
            bytes = 0;
        }
        bytes += event_size_bytes(&event);
        last_main = Some(main);
        response.push(event);
    }
    outbox.push(events_response(watcher, response, rev));
}

fn events_response(watcher: &Watcher, events: Vec<Arc<Event>>, rev: i64) -> Outgoing {
    Outgoing::Events {
        watch_id: watcher.watch_id,
        rev,
        events,
        prev_kv: watcher.prev_kv,
        fragment: watcher.fragment,
    }
}

/// Tells an unsynced watcher its next revision was compacted away, and retires it.
fn cancel_compacted(state: &mut HubState, id: WatcherId, compact_rev: i64) {
    let notified_rev = state.notified_rev;
    let Some(watcher) = state.watchers.get_mut(&id) else {
        return;
    };
    debug_assert!(!watcher.synced && !watcher.compacted);
    watcher.compacted = true;
    state.unsynced.remove(&id);
    if let Some(stream) = state.streams.get_mut(&watcher.stream) {
        stream.outbox.push(Outgoing::Compacted {
            watch_id: watcher.watch_id,
            compact_rev,
        });
        stream.unsynced -= 1;
        send_deferred_progress(stream, notified_rev);
    }
}

/// Forgets a watcher wherever it is, keeping its stream's counts right.
fn remove_watcher(state: &mut HubState, id: WatcherId) -> Option<Watcher> {
    let watcher = state.watchers.remove(&id)?;
    let notified_rev = state.notified_rev;
    let stream = state.streams.get_mut(&watcher.stream);
    if watcher.synced {
        state.synced.remove(id, &watcher.range);
    } else if !watcher.compacted {
        state.unsynced.remove(&id);
        if let Some(stream) = stream {
            stream.unsynced -= 1;
            send_deferred_progress(stream, notified_rev);
        }
    }
    if let Some(stream) = state.streams.get_mut(&watcher.stream) {
        stream.watch_ids.remove(&watcher.watch_id);
    }
    Some(watcher)
}

fn send_deferred_progress(stream: &mut StreamState, notified_rev: i64) {
    if stream.unsynced == 0 && stream.progress_deferred {
        stream.progress_deferred = false;
        stream.outbox.push(Outgoing::Progress {
            watch_id: NO_WATCH_ID,
            rev: notified_rev,
        });
    }
}

/// One client watch stream's door into the hub. Dropping it cancels its watches.
pub struct WatchStream {
    hub: Arc<WatchHub>,
    id: StreamId,
    outbox: Arc<Outbox>,
}

impl WatchStream {
    /// Where this stream's responses wait to be sent.
    pub fn outbox(&self) -> Arc<Outbox> {
        self.outbox.clone()
    }

    /// Creates a watch; the `Created` response (or the reason it failed) goes to the queue
    /// before any of its events.
    pub fn create(&self, spec: WatchSpec) {
        let mut guard = self.hub.lock();
        let state = &mut *guard;
        let notified_rev = state.notified_rev;
        let Some(stream) = state.streams.get_mut(&self.id) else {
            return;
        };
        let fail = |reason: String| Outgoing::CreateFailed {
            rev: notified_rev,
            reason,
        };
        if stream.watch_ids.len() >= MAX_WATCHES_PER_STREAM {
            stream.outbox.push(fail(format!(
                "cairn: too many watches on one stream (at most {MAX_WATCHES_PER_STREAM})"
            )));
            return;
        }
        let watch_id = if spec.watch_id == AUTO_WATCH_ID {
            while stream.watch_ids.contains_key(&stream.next_watch_id) {
                stream.next_watch_id += 1;
            }
            stream.next_watch_id += 1;
            stream.next_watch_id - 1
        } else if stream.watch_ids.contains_key(&spec.watch_id) {
            stream.outbox.push(fail(
                "mvcc: duplicate watch ID provided on the WatchStream".to_string(),
            ));
            return;
        } else {
            spec.watch_id
        };
        // As etcd: from now on unless the start is in the past, where it catches up.
        let synced = spec.start_rev == 0 || spec.start_rev > notified_rev;
        let next_rev = if synced {
            spec.start_rev.max(notified_rev + 1)
        } else {
            spec.start_rev
        };
        stream.outbox.push(Outgoing::Created {
            watch_id,
            rev: notified_rev,
        });
        let id = state.next_watcher;
        state.next_watcher += 1;
        stream.watch_ids.insert(watch_id, id);
        if synced {
            state.synced.add(id, &spec.range);
        } else {
            state.unsynced.insert(id);
            stream.unsynced += 1;
        }
        state.watchers.insert(
            id,
            Watcher {
                stream: self.id,
                watch_id,
                range: spec.range,
                next_rev,
                synced,
                compacted: false,
                no_put: spec.no_put,
                no_delete: spec.no_delete,
                prev_kv: spec.prev_kv,
                fragment: spec.fragment,
                progress_notify: spec.progress_notify,
                sent_since_tick: false,
            },
        );
        drop(guard);
        if !synced {
            self.hub.catch_up.notify_one();
        }
    }

    /// Answers a create request that failed validation.
    pub fn reject(&self, reason: &str) {
        let rev = self.hub.lock().notified_rev;
        self.outbox.push(Outgoing::CreateFailed {
            rev,
            reason: reason.to_string(),
        });
    }

    /// Cancels a watch of this stream; an unknown ID is ignored, as etcd does.
    pub fn cancel(&self, watch_id: i64) {
        let mut guard = self.hub.lock();
        let state = &mut *guard;
        let Some(&id) = state
            .streams
            .get(&self.id)
            .and_then(|s| s.watch_ids.get(&watch_id))
        else {
            return;
        };
        remove_watcher(state, id);
        self.outbox.push(Outgoing::Canceled {
            watch_id,
            rev: state.notified_rev,
        });
    }

    /// Answers a progress request once every watch of the stream has been sent all it
    /// is owed up to the revision answered.
    pub fn request_progress(&self) {
        let mut guard = self.hub.lock();
        let state = &mut *guard;
        let notified_rev = state.notified_rev;
        if let Some(stream) = state.streams.get_mut(&self.id) {
            stream.progress_deferred = true;
            send_deferred_progress(stream, notified_rev);
        }
    }

    /// The periodic progress notification: to each synced watch that asked for them and
    /// was sent no events since the last tick.
    pub fn progress_tick(&self) {
        let mut guard = self.hub.lock();
        let state = &mut *guard;
        let notified_rev = state.notified_rev;
        let Some(stream) = state.streams.get(&self.id) else {
            return;
        };
        for id in stream.watch_ids.values() {
            let watcher = state.watchers.get_mut(id).expect("stream's watcher exists");
            if watcher.progress_notify && watcher.synced && !watcher.sent_since_tick {
                self.outbox.push(Outgoing::Progress {
                    watch_id: watcher.watch_id,
                    rev: notified_rev,
                });
            }
            watcher.sent_since_tick = false;
        }
    }
}

impl Drop for WatchStream {
    fn drop(&mut self) {
        let mut guard = self.hub.lock();
        let state = &mut *guard;
        if let Some(stream) = state.streams.get(&self.id) {
            let ids: Vec<WatcherId> = stream.watch_ids.values().copied().collect();
            for id in ids {
                remove_watcher(state, id);
            }
        }
        state.streams.remove(&self.id);
        self.outbox.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    fn open() -> (tempfile::TempDir, Arc<Mvcc>) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(&dir.path().join("db")).unwrap());
        (dir, Mvcc::open(storage).unwrap())
    }

    /// One revision putting `key`; the hub hears of it as the state machine tells it.
    fn put(mvcc: &Mvcc, hub: &WatchHub, key: &str, value: Vec<u8>) -> i64 {
        let mut guard = mvcc.write();
        let rev = guard.txn().put(key.as_bytes(), value, 0);
        hub.notify(guard.commit().unwrap());
        rev
    }

    fn spec(key: &str, start_rev: i64) -> WatchSpec {
        WatchSpec::of(KeyRange::Single(key.as_bytes().to_vec()), start_rev)
    }

    /// Event revisions of every queued response, until `last` has been seen.
    async fn revisions_until(outbox: &Outbox, last: i64) -> Vec<i64> {
        let mut revs = Vec::new();
        while revs.last() != Some(&last) {
            let item = tokio::time::timeout(std::time::Duration::from_secs(10), outbox.pop())
                .await
                .expect("a response within 10 s")
                .expect("stream open");
            if let Outgoing::Events { events, .. } = item {
                revs.extend(events.iter().map(|e| e.kv.as_ref().unwrap().mod_revision));
            }
        }
        revs
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watcher_set_aside_by_a_full_queue_misses_nothing_and_sees_nothing_twice() {
        let (_dir, mvcc) = open();
        let hub = WatchHub::start(mvcc.clone());
        let stream = hub.open_stream().unwrap();
        stream.create(spec("k", 0));
        let outbox = stream.outbox();
        // Nobody reads while far more than the queue's bound is written.
        let value = vec![b'v'; 64 << 10];
        let writes = 3 * MAX_QUEUED_BYTES / value.len();
        let first = mvcc.current_rev() + 1;
        let mut last = 0;
        for _ in 0..writes {
            last = put(&mvcc, &hub, "k", value.clone());
        }
        assert!(hub.lock().unsynced.len() == 1, "the watcher was set aside");
        let revs = revisions_until(&outbox, last).await;
        assert_eq!(revs, (first..=last).collect::<Vec<_>>());
        assert!(hub.lock().unsynced.is_empty(), "caught up, synced again");
        // Live again: the next write arrives by notification.
        let next = put(&mvcc, &hub, "k", b"x".to_vec());
        assert_eq!(revisions_until(&outbox, next).await, vec![next]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_watch_from_the_past_replays_then_follows_without_a_gap() {
        let (_dir, mvcc) = open();
        let hub = WatchHub::start(mvcc.clone());
        let first = put(&mvcc, &hub, "k", b"0".to_vec());
        for i in 1..2500 {
            put(&mvcc, &hub, "k", i.to_string().into_bytes());
        }
        let stream = hub.open_stream().unwrap();
        stream.create(spec("k", first));
        // Writes race with the replay.
        let mut last = 0;
        for i in 0..500 {
            last = put(&mvcc, &hub, "k", i.to_string().into_bytes());
        }
        let revs = revisions_until(&stream.outbox(), last).await;
        assert_eq!(revs, (first..=last).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_compacted_start_cancels_and_keeps_the_id_until_canceled() {
        let (_dir, mvcc) = open();
        let hub = WatchHub::start(mvcc.clone());
        for i in 0..5 {
            put(&mvcc, &hub, "k", vec![i]);
        }
        {
            let mut guard = mvcc.write();
            guard.compact(4).unwrap();
            hub.notify(guard.commit().unwrap());
        }
        let stream = hub.open_stream().unwrap();
        stream.create(WatchSpec {
            watch_id: 7,
            ..spec("k", 2)
        });
        let outbox = stream.outbox();
        assert!(matches!(
            outbox.pop().await,
            Some(Outgoing::Created { watch_id: 7, .. })
        ));
        assert!(matches!(
            outbox.pop().await,
            Some(Outgoing::Compacted {
                watch_id: 7,
                compact_rev: 4
            })
        ));
        stream.create(WatchSpec {
            watch_id: 7,
            ..spec("k", 0)
        });
        assert!(matches!(
            outbox.pop().await,
            Some(Outgoing::CreateFailed { .. })
        ));
        stream.cancel(7);
        assert!(matches!(
            outbox.pop().await,
            Some(Outgoing::Canceled { watch_id: 7, .. })
        ));
    }
}
