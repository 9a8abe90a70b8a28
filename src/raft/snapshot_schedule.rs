//! When to snapshot and how much log to keep, counted in requests as etcd counts them.
//!
//! One Raft entry carries a batch of up to 2,048 requests (`node::proposer`), so counting
//! entries, as openraft's own policy does, would let the log grow orders of magnitude past
//! what `--snapshot-count` means to an etcd user. The state machine reports each applied
//! entry and its number of requests; after `--snapshot-count` requests a snapshot is due,
//! and once one is taken, the log is purged up to where the entries after it still hold
//! `--snapshot-catchup-entries` requests, for slow followers to catch up from.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

pub struct SnapshotSchedule {
    snapshot_requests: u64,
    catchup_requests: u64,
    state: Mutex<State>,
    /// Wakes the scheduler task: a snapshot is due.
    due: Notify,
}

#[derive(Default)]
struct State {
    /// `(log index, requests applied up to and including it)` of each applied entry not yet
    /// purged, oldest first. Bounded by the log kept: the purge pops from the front.
    applied: VecDeque<(u64, u64)>,
    /// Requests applied since this member started (or installed a snapshot).
    total_requests: u64,
    /// `total_requests` covered by the newest snapshot.
    snapshot_requests_at: u64,
    /// A snapshot was asked for and not taken yet.
    requested: bool,
}

impl SnapshotSchedule {
    pub fn new(snapshot_requests: u64, catchup_requests: u64) -> SnapshotSchedule {
        SnapshotSchedule {
            snapshot_requests: snapshot_requests.max(1),
            catchup_requests,
            state: Mutex::default(),
            due: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("snapshot schedule lock")
    }

    /// The state machine applied entry `index`, which carried `requests` requests.
    pub fn applied(&self, index: u64, requests: u64) {
        let mut state = self.lock();
        state.total_requests += requests;
        let total = state.total_requests;
        state.applied.push_back((index, total));
        if !state.requested && total - state.snapshot_requests_at >= self.snapshot_requests {
            state.requested = true;
            self.due.notify_one();
        }
    }

    /// A snapshot was installed: the log it covers is gone, and counting starts again.
    pub fn installed(&self) {
        *self.lock() = State::default();
    }

    /// Resolves when a snapshot is due.
    pub async fn due(&self) {
        self.due.notified().await;
    }

    /// A snapshot now covers the log up to `index`: the index up to which the log may be
    /// purged, if any, keeping entries that hold at least `--snapshot-catchup-entries`
    /// requests after it.
    pub fn snapshot_taken(&self, index: u64) -> Option<u64> {
        let mut state = self.lock();
        state.requested = false;
        let Some(at_snapshot) = state
            .applied
            .iter()
            .rev()
            .find(|(i, _)| *i <= index)
            .map(|(_, total)| *total)
        else {
            // The snapshot covers only entries applied before this member started: count
            // from here, and leave the log to the next snapshot's purge.
            state.snapshot_requests_at = state.total_requests;
            return None;
        };
        state.snapshot_requests_at = at_snapshot;
        // The newest entry at or before the snapshot whose successors, up to the snapshot,
        // hold at least the catch-up requests.
        let purge_to = state
            .applied
            .iter()
            .rev()
            .filter(|(i, _)| *i <= index)
            .find(|(_, total)| at_snapshot - total >= self.catchup_requests)
            .map(|(i, _)| *i)?;
        while state.applied.front().is_some_and(|(i, _)| *i <= purge_to) {
            state.applied.pop_front();
        }
        Some(purge_to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_due_after_the_requests_not_the_entries() {
        let schedule = SnapshotSchedule::new(100, 10);
        // 3 entries of 40 requests: due at the third.
        schedule.applied(1, 40);
        schedule.applied(2, 40);
        assert!(!schedule.lock().requested);
        schedule.applied(3, 40);
        assert!(schedule.lock().requested);
    }

    #[test]
    fn the_log_kept_after_a_snapshot_holds_the_catchup_requests() {
        let schedule = SnapshotSchedule::new(100, 25);
        for index in 1..=10 {
            schedule.applied(index, 10);
        }
        // Entries 8, 9 and 10 hold 30 requests after entry 7: purge up to 7.
        assert_eq!(schedule.snapshot_taken(10), Some(7));
        assert_eq!(schedule.lock().applied.front(), Some(&(8, 80)));
        // The next snapshot is counted from this one.
        schedule.applied(11, 90);
        assert!(!schedule.lock().requested);
        schedule.applied(12, 10);
        assert!(schedule.lock().requested);
        // Entries 11 and 12 hold 100 requests after entry 10.
        assert_eq!(schedule.snapshot_taken(12), Some(10));
    }

    #[test]
    fn nothing_is_purged_without_enough_requests_after_it() {
        let schedule = SnapshotSchedule::new(10, 1000);
        for index in 1..=20 {
            schedule.applied(index, 5);
        }
        assert_eq!(schedule.snapshot_taken(20), None);
        assert_eq!(schedule.lock().applied.len(), 20);
    }
}
