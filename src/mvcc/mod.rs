//! The multi-version key-value store, with etcd's revision model.
//!
//! Owns the `kv` column family's keys and values, the in-memory key index, the current and
//! compacted revisions (`MetaKey::CurrentRev`, `MetaKey::CompactRev`), and physical
//! compaction. Every committed write transaction gets the next main revision; its changes
//! get sub revisions 0, 1, ...; deletes leave tombstones; history stays readable until
//! compacted. Knows nothing of requests or Raft: `apply` drives it. May call `storage`,
//! `crc32c` and `config` (the compaction pace it is given).

mod hash;
mod index;
mod revision;

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockWriteGuard, Weak};

use prost::Message;
use tokio::sync::{mpsc, watch};

pub use hash::{HashKv, StoreHash};
pub use index::RangeEnd;
use index::{CompactFrom, IndexEntry, KeyIndex};
pub use revision::Revision;

use crate::config::CompactionPace;
use crate::error::EtcdError;
use crate::proto::mvccpb::KeyValue;
use crate::storage::{MetaKey, Storage, StorageError, StorageResult, View, WriteBatch};

/// etcd's compacted revision before any compaction: so `Compact(0)` succeeds once, as there.
const NEVER_COMPACTED: i64 = -1;

#[derive(Debug, Clone, Copy, Default)]
pub struct RangeOptions {
    /// At most this many keys; 0 is no limit.
    pub limit: usize,
    /// Read at this revision; 0 or less is the current revision.
    pub rev: i64,
    /// Count keys without fetching them.
    pub count_only: bool,
}

#[derive(Debug, Default)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// Keys in the range at the revision read, whatever the limit.
    pub count: usize,
    /// The store's revision when the read happened.
    pub rev: i64,
}

/// One change a write transaction made: a put (the new pair) or a delete (a pair with only
/// the key and `mod_revision`, as etcd reports a delete).
#[derive(Debug, Clone)]
pub struct Change {
    pub rev: Revision,
    pub kv: KeyValue,
    pub deleted: bool,
}

/// What a `commit` made visible: its changes in revision order, and the store's revision
/// after them.
#[derive(Debug, Default)]
pub struct Committed {
    pub changes: Vec<Change>,
    pub rev: i64,
}

/// Bounds on one read of history (`Mvcc::changes`).
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimit {
    /// Stop after this many main revisions.
    pub max_revs: i64,
    /// Stop at the first revision boundary past this many bytes of keys and values.
    pub max_bytes: usize,
}

/// A slice of history: every change of main revisions `from..=last_rev`.
#[derive(Debug, Default)]
pub struct History {
    pub changes: Vec<Change>,
    pub last_rev: i64,
}

/// Reading the store: a committed state, or a write transaction that sees its own changes.
pub trait KvRead {
    /// The revision reads see by default.
    fn rev(&self) -> i64;
    fn compact_rev(&self) -> i64;
    fn range(
        &self,
        key: &[u8],
        end: RangeEnd<'_>,
        opts: RangeOptions,
    ) -> Result<RangeResult, EtcdError>;
}

struct State {
    index: KeyIndex,
    current_rev: i64,
    /// Reads below this revision fail with `Compacted`; `NEVER_COMPACTED` before the first
    /// compaction.
    compact_rev: i64,
}

/// A compaction whose history is still in the key index and on disk: the compactor
/// (`run_compactor`) drops it from both, slice by slice.
struct CompactionJob {
    compact_rev: i64,
}

/// Operations on the store since start, counted as etcd counts them for its metrics: each
/// range, put and delete-range call, and each transaction of more than one of them.
#[derive(Debug, Default)]
struct OpCounters {
    ranges: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    txns: AtomicU64,
}

/// `OpCounters` read at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    pub ranges: u64,
    pub puts: u64,
    pub deletes: u64,
    pub txns: u64,
}

/// One transaction's operations, added to the store's counters when it ends.
#[derive(Debug, Default)]
struct TxnOps {
    ranges: Cell<u64>,
    puts: u64,
    deletes: u64,
    /// Reads that are each their own, not one transaction (`Mvcc::separate_reads`).
    separate: bool,
}

impl OpCounters {
    fn add(&self, ops: &TxnOps) {
        let ranges = ops.ranges.get();
        if !ops.separate && ranges + ops.puts + ops.deletes > 1 {
            self.txns.fetch_add(1, Ordering::Relaxed);
        }
        for (counter, n) in [
            (&self.ranges, ranges),
            (&self.puts, ops.puts),
            (&self.deletes, ops.deletes),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

pub struct Mvcc {
    storage: Arc<Storage>,
    state: RwLock<State>,
    ops: OpCounters,
    compactor: mpsc::UnboundedSender<CompactionJob>,
    /// Set by `stop_compactor`; the thread, to join.
    compactor_stop: Arc<AtomicBool>,
    compactor_thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    physically_compacted: watch::Receiver<PhysicalCompaction>,
}

/// How far the compactor got.
#[derive(Debug, Clone, Copy, Default)]
struct PhysicalCompaction {
    /// Highest compaction revision whose unreachable revisions are gone from disk.
    done: i64,
    /// Highest compaction revision whose deletion failed (retried at the next start).
    failed: i64,
}

/// A physical compaction's deletion failed; the next start deletes the revisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysicalCompactionFailed;

impl Mvcc {
    /// `open_paced` at etcd's default pace.
    pub fn open(storage: Arc<Storage>) -> StorageResult<Arc<Mvcc>> {
        Mvcc::open_paced(storage, CompactionPace::default())
    }

    /// Loads the store: rebuilds the key index from the `kv` column family and resumes any
    /// physical compaction a stop interrupted. Compactions run at `pace`.
    pub fn open_paced(storage: Arc<Storage>, pace: CompactionPace) -> StorageResult<Arc<Mvcc>> {
        let state = load_state(&storage)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = watch::channel(PhysicalCompaction::default());
        if let Some(job) = compact_loaded(&state) {
            tx.send(job).expect("receiver is alive");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mvcc = Arc::new(Mvcc {
            storage,
            state: RwLock::new(state),
            ops: OpCounters::default(),
            compactor: tx,
            compactor_stop: stop.clone(),
            compactor_thread: std::sync::Mutex::new(None),
            physically_compacted: done_rx,
        });
        let weak = Arc::downgrade(&mvcc);
        let thread = std::thread::Builder::new()
            .name("mvcc-compactor".into())
            .spawn(move || run_compactor(weak, pace, stop, rx, done_tx))
            .expect("spawn the compactor thread");
        *mvcc.compactor_thread.lock().expect("compactor thread lock") = Some(thread);
        Ok(mvcc)
    }

    /// Stops the compactor and waits for it, so that it no longer holds the storage: for a
    /// store about to be closed and its directory moved (the takeover). A compaction under
    /// way is left for the next start to finish.
    pub fn stop_compactor(&self) {
        self.compactor_stop.store(true, Ordering::Relaxed);
        // Wakes it if it waits for a job; the stop flag makes it return.
        let _ = self.compactor.send(CompactionJob { compact_rev: 0 });
        let thread = self
            .compactor_thread
            .lock()
            .expect("compactor thread lock")
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    pub fn current_rev(&self) -> i64 {
        self.state.read().expect("mvcc lock").current_rev
    }

    pub fn compact_rev(&self) -> i64 {
        self.state.read().expect("mvcc lock").compact_rev
    }

    /// Keys that exist at the current revision.
    pub fn live_keys(&self) -> u64 {
        self.state.read().expect("mvcc lock").index.live_keys()
    }

    /// Ranges, puts, delete-ranges and multi-operation transactions since start.
    pub fn op_counts(&self) -> OpCounts {
        let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
        OpCounts {
            ranges: read(&self.ops.ranges),
            puts: read(&self.ops.puts),
            deletes: read(&self.ops.deletes),
            txns: read(&self.ops.txns),
        }
    }

    /// A consistent, read-only view of committed state at the current revision, for one
    /// read or several (a read-only transaction). It holds no lock: each range reads the
    /// index briefly under the lock, at the view's revision, and fetches values from a
    /// storage snapshot taken with the view, so long reads never hold up writers.
    pub fn read_view(&self) -> ReadView<'_> {
        let state = self.state.read().expect("mvcc lock");
        ReadView {
            mvcc: self,
            rev: state.current_rev,
            view: self.storage.view(),
            ops: TxnOps::default(),
        }
    }

    /// A read view for reads that are each their own (a watch's prev_kv lookups): counted
    /// as ranges, never as a transaction, as etcd counts them.
    pub fn separate_reads(&self) -> ReadView<'_> {
        let mut view = self.read_view();
        view.ops.separate = true;
        view
    }

    /// Starts applying writes. Holds the store exclusively until `commit`.
    pub fn write(&self) -> WriteLock<'_> {
        WriteLock {
            mvcc: self,
            state: self.state.write().expect("mvcc lock"),
            batch: WriteBatch::default(),
            changes: Vec::new(),
            compactions: Vec::new(),
        }
    }

    /// Committed changes of main revisions `from..=until`, in order, cut at a revision
    /// boundary by `limit` (always at least one revision, so a reader makes progress).
    /// `Err(compact_rev)` when `from` was compacted away. Reads from storage only: the
    /// revisions asked for are committed and, above the compacted revision, immutable.
    pub fn changes(
        &self,
        from: i64,
        until: i64,
        limit: HistoryLimit,
    ) -> Result<History, HistoryError> {
        let compact_rev = self.compact_rev();
        if from < compact_rev {
            return Err(HistoryError::Compacted(compact_rev));
        }
        let storage = &self.storage;
        let start = Revision::new(from, 0).to_key(false);
        let mut changes: Vec<Change> = Vec::new();
        let (mut revs_read, mut bytes, mut cut) = (0, 0, false);
        for item in storage.kv().iter_from(&start) {
            let (key, value) = item.map_err(|_| HistoryError::Corrupt)?;
            let (rev, deleted) = Revision::from_key(&key).ok_or(HistoryError::Corrupt)?;
            if rev.main > until {
                break;
            }
            if changes.last().is_none_or(|c| c.rev.main != rev.main) {
                if revs_read >= limit.max_revs || bytes >= limit.max_bytes {
                    cut = true;
                    break;
                }
                revs_read += 1;
            }
            let mut kv = KeyValue::decode(&*value).map_err(|_| HistoryError::Corrupt)?;
            if deleted {
                kv.mod_revision = rev.main;
            }
            bytes += kv.key.len() + kv.value.len();
            changes.push(Change { rev, kv, deleted });
        }
        let last_rev = match changes.last() {
            Some(last) if cut => last.rev.main,
            _ => until,
        };
        let history = History { changes, last_rev };
        Ok(history)
    }

    /// The highest compaction revision whose unreachable revisions are all gone from disk.
    pub fn physically_compacted_rev(&self) -> i64 {
        self.physically_compacted.borrow().done
    }

    /// Waits until compaction at `rev` is physically done (unreachable data deleted), or
    /// its deletion failed.
    pub async fn wait_physically_compacted(
        &self,
        rev: i64,
    ) -> Result<(), PhysicalCompactionFailed> {
        let mut rx = self.physically_compacted.clone();
        // The compactor only stops with the store; an error here means shutdown.
        let done = match rx.wait_for(|p| p.done >= rev || p.failed >= rev).await {
            Ok(p) => p.done >= rev,
            Err(_) => true,
        };
        if done {
            Ok(())
        } else {
            Err(PhysicalCompactionFailed)
        }
    }

    /// Defragmentation, RocksDB's way: a full compaction of the key-value data, which
    /// rewrites its files without the space deleted revisions held. Blocks for as long.
    pub fn defragment(&self) {
        self.storage.compact_state_machine();
    }

    /// Replaces the whole state: `rewrite` replaces the storage underneath (a snapshot is
    /// installed), then the state is reloaded from it. Readers and writers wait meanwhile,
    /// so none sees a half-replaced store.
    pub fn replace(&self, rewrite: impl FnOnce() -> StorageResult<()>) -> StorageResult<()> {
        let mut state = self.state.write().expect("mvcc lock");
        rewrite()?;
        let fresh = load_state(&self.storage)?;
        let job = compact_loaded(&fresh);
        *state = fresh;
        if let Some(job) = job {
            // Fails only once the compactor stopped: the next start resumes the job.
            let _ = self.compactor.send(job);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryError {
    /// The revision asked for is below this compacted revision.
    Compacted(i64),
    Corrupt,
}

/// Values fetched by revision; a revision the index names but storage lacks is corruption.
fn decode_values(values: Vec<StorageResult<Option<Vec<u8>>>>) -> Result<Vec<KeyValue>, EtcdError> {
    values
        .into_iter()
        .map(|value| {
            let bytes = value
                .map_err(|_| EtcdError::Corrupt)?
                .ok_or(EtcdError::Corrupt)?;
            KeyValue::decode(bytes.as_slice()).map_err(|_| EtcdError::Corrupt)
        })
        .collect()
}

/// See `Mvcc::read_view`. Index entries above the view's revision are ignored, and
/// compaction only drops history a read at or above the compacted revision cannot reach; a
/// compaction past the view's revision while it lives makes its reads fail as compacted.
pub struct ReadView<'a> {
    mvcc: &'a Mvcc,
    rev: i64,
    view: View<'a>,
    ops: TxnOps,
}

impl Drop for ReadView<'_> {
    fn drop(&mut self) {
        self.mvcc.ops.add(&self.ops);
    }
}

impl KvRead for ReadView<'_> {
    fn rev(&self) -> i64 {
        self.rev
    }

    fn compact_rev(&self) -> i64 {
        self.mvcc.compact_rev()
    }

    fn range(
        &self,
        key: &[u8],
        end: RangeEnd<'_>,
        opts: RangeOptions,
    ) -> Result<RangeResult, EtcdError> {
        self.ops.ranges.set(self.ops.ranges.get() + 1);
        let (found, count) = {
            let state = self.mvcc.state.read().expect("mvcc lock");
            if state.compact_rev > self.rev {
                return Err(EtcdError::Compacted);
            }
            collect_range(&state.index, self.rev, state.compact_rev, key, end, opts)?
        };
        let kvs = decode_values(
            self.view
                .kv()
                .multi_get(found.iter().map(|r| r.to_key(false))),
        )?;
        Ok(RangeResult {
            kvs,
            count,
            rev: self.rev,
        })
    }
}

/// Most values fetched at once while reading a chunk (`ReadView::range_chunk`), which checks
/// its byte budget between fetches.
const CHUNK_FETCH_BATCH: usize = 32;

/// One chunk of a range read in pieces (`ReadView::range_chunk`).
#[derive(Debug, Default)]
pub struct RangeChunk {
    pub kvs: Vec<KeyValue>,
    /// Keys in the range remain past the last of `kvs`.
    pub more: bool,
}

impl ReadView<'_> {
    /// At most `limit` keys (at least 1) of a range at `rev` (0 or less: the view's
    /// revision), in key order, with their values, cut short once they hold `max_bytes`
    /// (always at least one key). Unlike `range`, it neither counts the keys past the chunk
    /// nor fetches more than it returns: reading a large range chunk by chunk costs each key
    /// once. Values are fetched in batches sized so that, were each as large as the largest
    /// seen so far, the batch fits what is left of `max_bytes`: the chunk overshoots it by at
    /// most one batch (`CHUNK_FETCH_BATCH` values), and by one value when sizes are even.
    pub fn range_chunk(
        &self,
        key: &[u8],
        end: RangeEnd<'_>,
        rev: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<RangeChunk, EtcdError> {
        self.ops.ranges.set(self.ops.ranges.get() + 1);
        let limit = limit.max(1);
        let found = {
            let state = self.mvcc.state.read().expect("mvcc lock");
            if state.compact_rev > self.rev {
                return Err(EtcdError::Compacted);
            }
            let rev = if rev <= 0 { self.rev } else { rev };
            if rev > self.rev {
                return Err(EtcdError::FutureRev);
            }
            if rev < state.compact_rev {
                return Err(EtcdError::Compacted);
            }
            // One past the limit, to learn whether more follow.
            let mut found = Vec::new();
            state.index.range(key, end, rev, |_, entry| {
                found.push(entry.rev);
                found.len() <= limit
            });
            found
        };
        let wanted = &found[..found.len().min(limit)];
        let mut kvs: Vec<KeyValue> = Vec::new();
        let (mut bytes, mut largest, mut batch_len) = (0, 0, 1);
        while kvs.len() < wanted.len() && (kvs.is_empty() || bytes < max_bytes) {
            let batch = &wanted[kvs.len()..wanted.len().min(kvs.len() + batch_len)];
            let values = self
                .view
                .kv()
                .multi_get(batch.iter().map(|r| r.to_key(false)));
            for kv in decode_values(values)? {
                let size = kv.encoded_len();
                (bytes, largest) = (bytes + size, largest.max(size));
                kvs.push(kv);
            }
            batch_len =
                (max_bytes.saturating_sub(bytes) / largest.max(1)).clamp(1, CHUNK_FETCH_BATCH);
        }
        Ok(RangeChunk {
            more: found.len() > kvs.len(),
            kvs,
        })
    }
}

/// Storage may still hold revisions a compaction made unreachable (a stop interrupted the
/// physical deletion, or a snapshot carried them), and the index rebuilt from it does: the
/// job that drops them.
fn compact_loaded(state: &State) -> Option<CompactionJob> {
    (state.compact_rev > 0).then_some(CompactionJob {
        compact_rev: state.compact_rev,
    })
}

/// Rebuilds the key index and revisions from the `kv` and `meta` column families.
fn load_state(storage: &Storage) -> StorageResult<State> {
    let mut index = KeyIndex::default();
    let mut last_rev = 1;
    for item in storage.kv().iter() {
        let (key, value) = item?;
        let (rev, tombstone) =
            Revision::from_key(&key).ok_or(StorageError::Corrupt("kv revision key"))?;
        let kv = KeyValue::decode(&*value).map_err(|_| StorageError::Corrupt("kv value"))?;
        let entry = IndexEntry {
            rev,
            create_rev: if tombstone { 0 } else { kv.create_revision },
            version: if tombstone { 0 } else { kv.version },
        };
        index.restore(&kv.key, entry);
        last_rev = rev.main;
    }
    let meta = |key| -> StorageResult<Option<i64>> {
        Ok(storage
            .meta()
            .get(key)?
            .and_then(|v| v.try_into().ok().map(i64::from_be_bytes)))
    };
    Ok(State {
        current_rev: meta(MetaKey::CurrentRev)?.unwrap_or(1).max(last_rev),
        compact_rev: meta(MetaKey::CompactRev)?.unwrap_or(NEVER_COMPACTED),
        index,
    })
}

/// Checks the read revision and collects the revisions of the keys in range.
/// `current_rev` is the revision the reader sees as latest.
fn collect_range(
    index: &KeyIndex,
    current_rev: i64,
    compact_rev: i64,
    key: &[u8],
    end: RangeEnd<'_>,
    opts: RangeOptions,
) -> Result<(Vec<Revision>, usize), EtcdError> {
    let rev = if opts.rev <= 0 { current_rev } else { opts.rev };
    if rev > current_rev {
        return Err(EtcdError::FutureRev);
    }
    if rev < compact_rev {
        return Err(EtcdError::Compacted);
    }
    let mut found = Vec::new();
    let mut count = 0;
    index.range(key, end, rev, |_, entry| {
        count += 1;
        if !opts.count_only && (opts.limit == 0 || found.len() < opts.limit) {
            found.push(entry.rev);
        }
        true
    });
    Ok((found, count))
}

/// One batch of a physical compaction's deletes. A `return` failpoint is a failed write.
fn delete_revisions(storage: &Storage, batch: WriteBatch) -> StorageResult<()> {
    fail::fail_point!("mvcc_compaction_before_delete", |_| Err(
        crate::storage::StorageError::Io(
            crate::failpoints::disk_failed("mvcc_compaction_before_delete").to_string()
        )
    ));
    storage.write(batch, false)
}

/// Runs compactions one after another, each in slices: under the store's write lock, drop
/// a slice of the unreachable history from the key index (`KeyIndex::compact_slice`), then,
/// without the lock, delete those revisions from disk, then rest (`CompactionPace`). So
/// neither a large index nor a large history holds up writers and readers for longer than
/// one slice. Reads are right throughout: the compacted revision moved when the compaction
/// was applied, and reads at or above it never reach the entries still waiting to be
/// dropped. Ends with the store, or when stopped (`Mvcc::stop_compactor`).
fn run_compactor(
    mvcc: Weak<Mvcc>,
    pace: CompactionPace,
    stop: Arc<AtomicBool>,
    mut jobs: mpsc::UnboundedReceiver<CompactionJob>,
    done: watch::Sender<PhysicalCompaction>,
) {
    while let Some(mut job) = jobs.blocking_recv() {
        // A later compaction covers an earlier one still queued.
        while let Ok(later) = jobs.try_recv() {
            job.compact_rev = job.compact_rev.max(later.compact_rev);
        }
        let mut from = Some(CompactFrom::Start);
        let mut complete = true;
        while let Some(start) = from.take() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Some(mvcc) = mvcc.upgrade() else { return };
            let mut dropped = Vec::new();
            from = {
                let mut state = mvcc.state.write().expect("mvcc lock");
                // Only a snapshot from further on replaces the store, so its compacted
                // revision is at least the job's; were it not, dropping less is safe.
                debug_assert!(state.compact_rev >= job.compact_rev);
                let at_rev = job.compact_rev.min(state.compact_rev);
                state
                    .index
                    .compact_slice(at_rev, start, pace.batch_limit.max(1), &mut dropped)
            };
            if dropped.is_empty() {
                continue;
            }
            let kv = mvcc.storage.kv();
            let mut batch = WriteBatch::default();
            for (rev, tombstone) in &dropped {
                kv.delete(&mut batch, &rev.to_key(*tombstone));
            }
            if let Err(e) = delete_revisions(&mvcc.storage, batch) {
                // Left on disk, the revisions are unreachable but harmless; the next start
                // finds and deletes them again. Physical waiters are told.
                tracing::error!(error = %e, "physical compaction write failed");
                complete = false;
                break;
            }
            if from.is_some() {
                drop(mvcc);
                std::thread::sleep(pace.sleep);
            }
        }
        done.send_modify(|p| {
            if complete {
                p.done = p.done.max(job.compact_rev);
            } else {
                p.failed = p.failed.max(job.compact_rev);
            }
        });
    }
}

/// The store's write lock, held while a batch of Raft entries is applied: readers wait for
/// it only to take a view or read the index. Changes land in one storage write at
/// `commit`, with whatever the caller adds to `batch_mut`.
pub struct WriteLock<'a> {
    mvcc: &'a Mvcc,
    state: RwLockWriteGuard<'a, State>,
    batch: WriteBatch,
    /// Changes of this batch, in revision order: not yet in storage, so reads inside the
    /// batch find values here; after commit they are what watchers are told.
    changes: Vec<Change>,
    compactions: Vec<CompactionJob>,
}

impl<'a> WriteLock<'a> {
    /// Starts one write transaction: all its changes share the next revision.
    pub fn txn(&mut self) -> WriteTxn<'_, 'a> {
        let begin_rev = self.state.current_rev;
        WriteTxn {
            guard: self,
            begin_rev,
            changes: 0,
            ops: TxnOps::default(),
        }
    }

    /// Compacts history before `rev`. Logical at once: reads below `rev` fail from now on;
    /// the compactor drops the unreachable history from the index and disk after commit.
    pub fn compact(&mut self, rev: i64) -> Result<(), EtcdError> {
        if rev > self.state.current_rev {
            return Err(EtcdError::FutureRev);
        }
        if rev <= self.state.compact_rev {
            return Err(EtcdError::Compacted);
        }
        self.state.compact_rev = rev;
        self.compactions.push(CompactionJob { compact_rev: rev });
        Ok(())
    }

    pub fn current_rev(&self) -> i64 {
        self.state.current_rev
    }

    /// Bytes of changes waiting for `commit`.
    pub fn pending_bytes(&self) -> usize {
        self.batch.size_in_bytes()
    }

    /// The storage batch, for metadata that must commit atomically with these changes.
    pub fn batch_mut(&mut self) -> &mut WriteBatch {
        &mut self.batch
    }

    /// This batch's changes so far, in revision order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// The changes so far and the storage batch, for state derived from the changes.
    pub fn changes_and_batch(&mut self) -> (&[Change], &mut WriteBatch) {
        (&self.changes, &mut self.batch)
    }

    /// Writes the batch (not synced: the Raft log is the durable record), releases the
    /// store to readers and returns what changed.
    pub fn commit(mut self) -> StorageResult<Committed> {
        let storage = &self.mvcc.storage;
        let meta = storage.meta();
        let (current_rev, compact_rev) = (self.state.current_rev, self.state.compact_rev);
        meta.put(
            &mut self.batch,
            MetaKey::CurrentRev,
            &current_rev.to_be_bytes(),
        );
        meta.put(
            &mut self.batch,
            MetaKey::CompactRev,
            &compact_rev.to_be_bytes(),
        );
        let batch = std::mem::take(&mut self.batch);
        storage.write(batch, false)?;
        for job in self.compactions.drain(..) {
            // Fails only once the compactor stopped: the next start resumes the job.
            let _ = self.mvcc.compactor.send(job);
        }
        Ok(Committed {
            changes: std::mem::take(&mut self.changes),
            rev: self.state.current_rev,
        })
    }

    fn value_at(&self, rev: Revision) -> Result<KeyValue, EtcdError> {
        if let Ok(i) = self.changes.binary_search_by_key(&rev, |c| c.rev) {
            return Ok(self.changes[i].kv.clone());
        }
        let bytes = self
            .mvcc
            .storage
            .kv()
            .get(&rev.to_key(false))
            .map_err(|_| EtcdError::Corrupt)?
            .ok_or(EtcdError::Corrupt)?;
        KeyValue::decode(&*bytes).map_err(|_| EtcdError::Corrupt)
    }
}

/// One write transaction. Dropping it ends it: the store's revision advances if it changed
/// anything.
pub struct WriteTxn<'g, 'a> {
    guard: &'g mut WriteLock<'a>,
    begin_rev: i64,
    changes: i64,
    ops: TxnOps,
}

impl WriteTxn<'_, '_> {
    fn next_rev(&mut self) -> Revision {
        let rev = Revision::new(self.begin_rev + 1, self.changes);
        self.changes += 1;
        rev
    }

    /// Puts `key`; returns the revision of the change.
    pub fn put(&mut self, key: &[u8], value: Vec<u8>, lease: i64) -> i64 {
        self.ops.puts += 1;
        let rev = self.next_rev();
        let entry = self.guard.state.index.put(key, rev);
        let kv = KeyValue {
            key: key.to_vec(),
            create_revision: entry.create_rev,
            mod_revision: rev.main,
            version: entry.version,
            value,
            lease,
        };
        self.guard.mvcc.storage.kv().put(
            &mut self.guard.batch,
            &rev.to_key(false),
            &kv.encode_to_vec(),
        );
        self.guard.changes.push(Change {
            rev,
            kv,
            deleted: false,
        });
        rev.main
    }

    /// Deletes every live key in range; returns how many, and the revision after the change.
    pub fn delete_range(&mut self, key: &[u8], end: RangeEnd<'_>) -> (i64, i64) {
        self.ops.deletes += 1;
        let rev_now = self.rev();
        let mut keys = Vec::new();
        self.guard.state.index.range(key, end, rev_now, |k, _| {
            keys.push(k.to_vec());
            true
        });
        for k in &keys {
            let rev = self.next_rev();
            self.guard.state.index.tombstone(k, rev);
            // The key alone, as etcd stores a tombstone.
            let mut tombstone = KeyValue {
                key: k.clone(),
                ..KeyValue::default()
            };
            self.guard.mvcc.storage.kv().put(
                &mut self.guard.batch,
                &rev.to_key(true),
                &tombstone.encode_to_vec(),
            );
            tombstone.mod_revision = rev.main;
            self.guard.changes.push(Change {
                rev,
                kv: tombstone,
                deleted: true,
            });
        }
        (keys.len() as i64, self.rev())
    }
}

impl KvRead for WriteTxn<'_, '_> {
    fn rev(&self) -> i64 {
        if self.changes > 0 {
            self.begin_rev + 1
        } else {
            self.begin_rev
        }
    }

    fn compact_rev(&self) -> i64 {
        self.guard.state.compact_rev
    }

    fn range(
        &self,
        key: &[u8],
        end: RangeEnd<'_>,
        opts: RangeOptions,
    ) -> Result<RangeResult, EtcdError> {
        self.ops.ranges.set(self.ops.ranges.get() + 1);
        // Reads inside the transaction see its own changes: the index already holds them at
        // `begin_rev + 1`, so read as if that revision were committed.
        let state = &self.guard.state;
        let (found, count) =
            collect_range(&state.index, self.rev(), state.compact_rev, key, end, opts)?;
        let kvs = found
            .into_iter()
            .map(|r| self.guard.value_at(r))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RangeResult {
            kvs,
            count,
            rev: self.rev(),
        })
    }
}

impl Drop for WriteTxn<'_, '_> {
    fn drop(&mut self) {
        if self.changes > 0 {
            self.guard.state.current_rev = self.begin_rev + 1;
        }
        self.guard.mvcc.ops.add(&self.ops);
    }
}

#[cfg(test)]
mod tests;
