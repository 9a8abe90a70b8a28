//! The Raft log and vote in RocksDB, with group commit.
//!
//! `append` writes entries to RocksDB unsynced (so they are readable at once, as openraft
//! requires) and hands the flush callback to one flusher thread. The flusher takes every
//! callback queued while the previous fsync ran, syncs the write-ahead log once, and then
//! reports all of them durable: N outstanding appends cost one fsync, and no fsync runs on
//! an async worker. (openraft 0.9 waits for each flush before appending again, so N is 1
//! there; batching happens in `node::proposer`.) Raft acknowledges a write only after its
//! entry's callback fires, so no acknowledged write is lost. On a full disk, `append`
//! waits in `Storage::write` until the entries are written (the member stalls, it does not
//! stop); the fsync after it is not retried (see `sync_wal`).
//!
//! The newest entries are also kept decoded (`Recent`): the state machine, and replication
//! to followers, read each entry back right after it is appended, and would otherwise read
//! and decode it again from RocksDB.
//!
//! Owns the encoding (bincode) of the entries in storage's `raft_log` family and of the
//! vote, committed and last purged log ids in its `raft_state` family. May call `storage`,
//! and `metrics` (fsync times, the committed index).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{Entry, RaftLogReader, StorageError, StorageIOError, Vote};

use prometheus::Histogram;

use super::{trace_of, LogId, TypeConfig};
use crate::metrics::Metrics;
use crate::storage::{StateKey, Storage, StorageResult, WriteBatch};
use crate::telemetry::BatchTrace;

type Flushed = LogFlushed<TypeConfig>;

/// An append waiting for the fsync: its callback, and the spans of its traced entries
/// (empty, never allocated, when none is traced).
struct Waiting {
    callback: Flushed,
    traced: Vec<Arc<BatchTrace>>,
}

#[derive(Clone)]
pub struct LogStore {
    metrics: Arc<Metrics>,
    storage: Arc<Storage>,
    /// Flush callbacks waiting for the next fsync. Unbounded, but the number of entries in
    /// flight is bounded upstream by the proposer's in-flight batch limit.
    flusher: mpsc::Sender<Waiting>,
    /// Shared by the store and its readers.
    recent: Arc<Mutex<Recent>>,
    /// The log index up to which the state machine no longer needs the log
    /// (`StateMachine::recoverable_index`): purges wait for it.
    recoverable: tokio::sync::watch::Receiver<u64>,
    /// The highest index purged from disk by this process; purges run in order under it.
    purged_index: Arc<Mutex<Option<u64>>>,
}

/// Bounds of `Recent`: enough for the entries being applied and replicated (the proposer
/// keeps two batches in flight), little enough not to show in the server's memory.
const RECENT_MAX_ENTRIES: usize = 8;
const RECENT_MAX_BYTES: usize = 2 << 20;

/// The newest entries of the log, decoded: always a suffix of the log (empty at start).
#[derive(Default)]
struct Recent {
    /// (entry, its encoded size), consecutive indexes, the last one the log's last.
    entries: VecDeque<(Entry<TypeConfig>, usize)>,
    bytes: usize,
}

impl Recent {
    fn push(&mut self, entry: Entry<TypeConfig>, size_bytes: usize) {
        let follows = self
            .entries
            .back()
            .is_none_or(|(last, _)| last.log_id.index + 1 == entry.log_id.index);
        if !follows {
            // Not expected (appends follow the last entry, truncation trims the tail), but
            // a gap would break the suffix invariant: start again from this entry.
            self.clear();
        }
        self.entries.push_back((entry, size_bytes));
        self.bytes += size_bytes;
        while self.entries.len() > RECENT_MAX_ENTRIES
            || (self.bytes > RECENT_MAX_BYTES && self.entries.len() > 1)
        {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some((_, size)) = self.entries.pop_front() {
            self.bytes -= size;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Entries from `start` to the end of the log, if all of them are here.
    fn from(&self, start: u64) -> Option<impl Iterator<Item = &Entry<TypeConfig>>> {
        let (first, _) = self.entries.front()?;
        let skip = usize::try_from(start.checked_sub(first.log_id.index)?).ok()?;
        Some(self.entries.iter().skip(skip).map(|(e, _)| e))
    }

    /// Drops entries from `index` on (a truncated tail).
    fn truncate(&mut self, index: u64) {
        while self
            .entries
            .back()
            .is_some_and(|(e, _)| e.log_id.index >= index)
        {
            if let Some((_, size)) = self.entries.pop_back() {
                self.bytes -= size;
            }
        }
    }

    /// Drops entries up to `index` (purged).
    fn purge(&mut self, index: u64) {
        while self
            .entries
            .front()
            .is_some_and(|(e, _)| e.log_id.index <= index)
        {
            self.pop_front();
        }
    }
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::read_logs(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_logs(&e).into()
}

impl LogStore {
    pub fn open(
        storage: Arc<Storage>,
        recoverable: tokio::sync::watch::Receiver<u64>,
        metrics: Arc<Metrics>,
    ) -> StorageResult<LogStore> {
        let (tx, rx) = mpsc::channel::<Waiting>();
        let flusher_storage = storage.clone();
        let fsync_seconds = metrics.disk.wal_fsync_seconds.clone();
        std::thread::Builder::new()
            .name("raft-log-flusher".into())
            .spawn(move || run_flusher(flusher_storage, rx, fsync_seconds))
            .expect("spawn the log flusher thread");
        Ok(LogStore {
            metrics,
            storage,
            flusher: tx,
            recent: Arc::default(),
            recoverable,
            purged_index: Arc::default(),
        })
    }

    fn get_state<T: serde::de::DeserializeOwned>(
        &self,
        key: StateKey,
    ) -> Result<Option<T>, StorageError<u64>> {
        match self.storage.raft_state().get(key).map_err(read_err)? {
            Some(bytes) => Ok(Some(bincode::deserialize(&bytes).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn put_state<T: serde::Serialize>(
        &self,
        key: StateKey,
        value: &T,
        sync: bool,
    ) -> Result<(), StorageError<u64>> {
        let mut batch = WriteBatch::default();
        let bytes = bincode::serialize(value).map_err(write_err)?;
        self.storage.raft_state().put(&mut batch, key, &bytes);
        self.write(batch, sync)
    }

    /// Deletes the entries up to `log_id` from disk, unless a later purge already did.
    fn purge_now(&self, log_id: LogId) -> Result<(), StorageError<u64>> {
        let mut purged = self.purged_index.lock().expect("purged index lock");
        if purged.is_some_and(|index| index >= log_id.index) {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        let bytes = bincode::serialize(&log_id).map_err(write_err)?;
        self.storage
            .raft_state()
            .put(&mut batch, StateKey::LastPurged, &bytes);
        self.storage
            .raft_log()
            .delete_through(&mut batch, log_id.index);
        // Synced: the purge must not outlive, on disk, the state it relies on being durable.
        self.write(batch, true)?;
        *purged = Some(log_id.index);
        Ok(())
    }

    /// A synced write blocks on fsync: let the runtime move other tasks off this thread.
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<(), StorageError<u64>> {
        if sync {
            let fsync_seconds = &self.metrics.disk.wal_fsync_seconds;
            fsync_seconds
                .observe_closure_duration(|| {
                    tokio::task::block_in_place(|| self.storage.write(batch, true))
                })
                .map_err(write_err)
        } else {
            self.storage.write(batch, false).map_err(write_err)
        }
    }
}

/// Syncs the write-ahead log once for every callback that queued up meanwhile.
fn run_flusher(storage: Arc<Storage>, rx: mpsc::Receiver<Waiting>, fsync_seconds: Histogram) {
    while let Ok(first) = rx.recv() {
        let mut waiting = vec![first];
        waiting.extend(rx.try_iter());
        // The wall clock is read only for traced entries.
        let traced = waiting.iter().any(|w| !w.traced.is_empty());
        let started_at = traced.then(SystemTime::now);
        let result = fsync_seconds.observe_closure_duration(|| sync_wal(&storage));
        let ended_at = started_at.map(|_| SystemTime::now());
        let appends = waiting.len();
        let mut traced = Vec::new();
        // The appends go on first; the fsync spans are built after, off their way.
        for Waiting {
            callback,
            traced: traces,
        } in waiting
        {
            let outcome = result.clone().map_err(std::io::Error::other);
            callback.log_io_completed(outcome);
            traced.extend(traces);
        }
        if let (Some(started_at), Some(ended_at)) = (started_at, ended_at) {
            for trace in traced {
                trace.fsynced(started_at, ended_at, appends);
            }
        }
    }
}

/// The flusher's fsync, with its failpoints: `return` is a failed disk. A failed fsync is
/// never tried again, whatever its error (even ENOSPC): the kernel may have dropped the
/// pages it could not write, and a second fsync would then report them durable. Raft stops
/// on it, and the member exits (as etcd does).
fn sync_wal(storage: &Storage) -> Result<(), String> {
    fail::fail_point!("raft_log_before_fsync", |_| Err(
        crate::failpoints::disk_failed("raft_log_before_fsync").to_string()
    ));
    storage.sync_wal().map_err(|e| e.to_string())?;
    fail::fail_point!("raft_log_after_fsync", |_| Err(
        crate::failpoints::disk_failed("raft_log_after_fsync").to_string()
    ));
    Ok(())
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i + 1,
            Bound::Unbounded => 0,
        };
        let cached: Option<Vec<_>> = {
            let recent = self.recent.lock().expect("recent entries lock");
            recent.from(start).map(|entries| {
                entries
                    .take_while(|e| range.contains(&e.log_id.index))
                    .cloned()
                    .collect()
            })
        };
        if let Some(entries) = cached {
            return Ok(entries);
        }
        let mut entries = Vec::new();
        for item in self.storage.raft_log().entries_from(start) {
            let (index, value) = item.map_err(read_err)?;
            if !range.contains(&index) {
                break;
            }
            entries.push(bincode::deserialize(&value).map_err(read_err)?);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let last_purged: Option<LogId> = self.get_state(StateKey::LastPurged)?;
        let last = match self.storage.raft_log().last().map_err(read_err)? {
            Some(value) => {
                let entry: Entry<TypeConfig> = bincode::deserialize(&value).map_err(read_err)?;
                Some(entry.log_id)
            }
            None => last_purged,
        };
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        // A vote must be durable before it is answered.
        self.put_state(StateKey::Vote, vote, true)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        self.get_state(StateKey::Vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError<u64>> {
        let index = committed.map_or(0, |c| c.index);
        self.metrics.server.proposals_committed.set(index as i64);
        // Lets a restart re-apply committed entries at once; losing it only delays that.
        self.put_state(StateKey::Committed, &committed, false)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<u64>> {
        Ok(self
            .get_state::<Option<LogId>>(StateKey::Committed)?
            .flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: Flushed) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        fail::fail_point!("raft_log_before_append", |_| Err(write_err(
            crate::failpoints::disk_failed("raft_log_before_append")
        )));
        let log = self.storage.raft_log();
        let mut batch = WriteBatch::default();
        let mut appended = Vec::new();
        let mut traced = Vec::new();
        for entry in entries {
            traced.extend(trace_of(&entry).cloned());
            let bytes = bincode::serialize(&entry).map_err(write_err)?;
            log.put(&mut batch, entry.log_id.index, &bytes);
            appended.push((entry, bytes.len()));
        }
        self.storage.write(batch, false).map_err(write_err)?;
        // After the write: a reader that finds an entry here finds it in RocksDB too.
        let mut recent = self.recent.lock().expect("recent entries lock");
        for (entry, size_bytes) in appended {
            recent.push(entry, size_bytes);
        }
        drop(recent);
        self.flusher
            .send(Waiting { callback, traced })
            .map_err(|_| write_err(std::io::Error::other("log flusher stopped")))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        let mut batch = WriteBatch::default();
        self.storage
            .raft_log()
            .delete_from(&mut batch, log_id.index);
        self.recent
            .lock()
            .expect("recent entries lock")
            .truncate(log_id.index);
        self.write(batch, true)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<u64>> {
        self.recent
            .lock()
            .expect("recent entries lock")
            .purge(log_id.index);
        if *self.recoverable.borrow() >= log_id.index {
            return self.purge_now(log_id);
        }
        // After a snapshot install openraft purges at once, while the state machine is still
        // installing: the entries go from disk only once the state no longer needs them
        // (the install's redo marker is durable). Deferred rather than awaited, so Raft's
        // core goes on meanwhile; openraft reads no purged entry again, and a crash before
        // the deferred purge only leaves entries behind.
        let store = self.clone();
        tokio::spawn(async move {
            let mut recoverable = store.recoverable.clone();
            if recoverable
                .wait_for(|index| *index >= log_id.index)
                .await
                .is_ok()
            {
                if let Err(e) = store.purge_now(log_id) {
                    tracing::error!(error = %e, "purging the log after a snapshot install");
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(recent: &Recent, start: u64) -> Option<Vec<u64>> {
        recent
            .from(start)
            .map(|entries| entries.map(|e| e.log_id.index).collect())
    }

    #[test]
    fn recent_entries_stay_a_bounded_suffix_of_the_log() {
        let mut recent = Recent::default();
        assert_eq!(indexes(&recent, 1), None);
        for i in 1..=10 {
            recent.push(entry(i), 100);
        }
        // Only the newest RECENT_MAX_ENTRIES are kept; older starts go to RocksDB.
        assert_eq!(indexes(&recent, 3), Some((3..=10).collect()));
        assert_eq!(indexes(&recent, 2), None);
        assert_eq!(recent.bytes, RECENT_MAX_ENTRIES * 100);

        recent.truncate(9);
        assert_eq!(indexes(&recent, 7), Some(vec![7, 8]));
        recent.push(entry(9), 100);
        recent.purge(5);
        assert_eq!(indexes(&recent, 6), Some(vec![6, 7, 8, 9]));
        assert_eq!(indexes(&recent, 5), None);
        assert_eq!(indexes(&recent, 12), Some(vec![]));

        // A gap starts over rather than leave a hole.
        recent.push(entry(20), 100);
        assert_eq!(indexes(&recent, 20), Some(vec![20]));
        assert_eq!(indexes(&recent, 9), None);
        assert_eq!(recent.bytes, 100);
    }

    #[test]
    fn recent_entries_are_bounded_in_bytes() {
        let mut recent = Recent::default();
        for i in 1..=3 {
            recent.push(entry(i), RECENT_MAX_BYTES / 2);
        }
        assert_eq!(indexes(&recent, 2), Some(vec![2, 3]));
        // One entry over the budget is still kept: it is the one about to be applied.
        recent.push(entry(4), RECENT_MAX_BYTES * 2);
        assert_eq!(indexes(&recent, 4), Some(vec![4]));
    }
}
