//! The one RocksDB instance under a member's data directory, its column families, and the
//! snapshot file format.
//!
//! Owns opening and options, the column-family layout, the fixed keys of the families
//! several modules share (`raft_state`, `meta`), and the records of a snapshot file. Other
//! modules reach a family through its typed handle (`families`), encode their own values,
//! and write through `WriteBatch`es that `Storage::write` commits (`db` and `cf` remain
//! only for the callers not yet moved to the handles). The Raft log and the state machine
//! share one write-ahead log, so syncing it after a log append also makes every earlier
//! state-machine write durable. Calls nothing else in Cairn but `failpoints`.
//!
//! A full disk (ENOSPC) does not fail a write: `Storage::write` waits until the space
//! returns and writes again (see there), so that a member stalls on a full disk rather than
//! stop. Any other failed write, and a failed fsync, is an error for the caller.
//!
//! Files compactions make obsolete are deleted at a bounded rate, and files RocksDB or a
//! snapshot writes go to disk as they are written, so that neither holds up the Raft log's
//! fsyncs (`slow_deletion`, `snapshot::WritebackFile`).

mod families;
mod slow_deletion;
mod snapshot;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options,
    WriteOptions, DB,
};

use slow_deletion::SlowDeletion;

pub use families::{AuthCf, KvCf, LeaseCf, MetaCf, MetaKey, RaftLogCf, RaftStateCf, StateKey};
/// What callers stage changes in; `Storage::write` commits one atomically.
pub use rocksdb::WriteBatch;

// The family names are the on-disk layout: never rename one.
/// Raft log entries, keyed by big-endian index.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Raft vote, committed log id, last purged log id, member identity, install marker.
pub const CF_RAFT_STATE: &str = "raft_state";
/// MVCC revisions: key = revision (see `mvcc::revision`), value = encoded `mvccpb.KeyValue`.
pub const CF_KV: &str = "kv";
/// State machine metadata: applied log id, membership, current and compacted revisions,
/// published member attributes.
pub const CF_META: &str = "meta";
/// Leases and the keys attached to them (see `lease`).
pub const CF_LEASE: &str = "lease";
/// Users, roles, whether auth is enabled, the auth revision (see `auth`).
pub const CF_AUTH: &str = "auth";

const COLUMN_FAMILIES: [&str; 6] = [
    CF_RAFT_LOG,
    CF_RAFT_STATE,
    CF_KV,
    CF_META,
    CF_LEASE,
    CF_AUTH,
];

/// Block cache shared by all column families. Small on purpose: the key index lives in
/// memory, and the page cache holds hot SST blocks as well.
const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// Memtable size per column family; bounds resident memory under write load.
const WRITE_BUFFER_BYTES: usize = 16 << 20;
/// The Raft log's memtable: entries are read back only by slow followers and purged after
/// each snapshot, so a small memtable costs little and saves resident memory.
const RAFT_LOG_WRITE_BUFFER_BYTES: usize = 4 << 20;
/// Files RocksDB writes are synced to disk every this many bytes (`bytes_per_sync`).
const BYTES_PER_SYNC: u64 = 1 << 20;
/// The most write-ahead log RocksDB keeps before it flushes the families holding its oldest
/// file. `meta` and `raft_state` take a small write with every apply and fill their
/// memtables slowly, and each unflushed write keeps every log file since; without a cap
/// RocksDB keeps 4 × all memtables (about 790 MB after 300,000 puts of 4 KiB), which a
/// restart reads again and the disk holds. Loads of small values stay below it (about
/// 230 MB after 400,000 puts of 256 bytes), so they flush no more than before.
const MAX_TOTAL_WAL_BYTES: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),
    #[error("corrupt record: {0}")]
    Corrupt(&'static str),
    #[error("i/o: {0}")]
    Io(String),
}

pub type StorageResult<T> = Result<T, StorageError>;

impl StorageError {
    /// The disk is full (ENOSPC), as RocksDB reports it: on the write that hit it, and on
    /// every write after it until RocksDB has recovered (it stops writes on such an error,
    /// looks for free space every 5 s, and resumes by itself once there is some).
    pub fn is_no_space(&self) -> bool {
        match self {
            StorageError::RocksDb(e) => {
                e.kind() == rocksdb::ErrorKind::IOError
                    && e.as_ref().contains("No space left on device")
            }
            _ => false,
        }
    }
}

/// How often a write that found the disk full is tried again.
const NO_SPACE_RETRY_EVERY: Duration = Duration::from_millis(500);
/// How often a write still waiting for space says so again.
const NO_SPACE_LOG_EVERY: Duration = Duration::from_secs(30);

pub struct Storage {
    db: DB,
    path: PathBuf,
    /// Set while a write waits for space (`write`), cleared once one passes.
    waiting_for_space: AtomicBool,
    slow_deletion: SlowDeletion,
}

impl Storage {
    pub fn open(path: &Path) -> StorageResult<Storage> {
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);

        let mut cf_opts = Options::default();
        cf_opts.set_block_based_table_factory(&table);
        cf_opts.set_write_buffer_size(WRITE_BUFFER_BYTES);
        cf_opts.set_compression_type(DBCompressionType::Lz4);

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.increase_parallelism(2);
        db_opts.set_max_background_jobs(2);
        // Many small synced writes: let RocksDB group concurrent writers into one WAL write.
        db_opts.set_enable_pipelined_write(true);
        // Write compaction output to disk as it goes, not in bursts that a later fsync of
        // the write-ahead log would wait behind.
        db_opts.set_bytes_per_sync(BYTES_PER_SYNC);
        db_opts.set_max_total_wal_size(MAX_TOTAL_WAL_BYTES);
        let slow_deletion = SlowDeletion::attach(&mut db_opts)?;
        slow_deletion.check_free_space(path.parent().unwrap_or(path));

        let cfs = COLUMN_FAMILIES.iter().map(|name| {
            let mut opts = cf_opts.clone();
            if *name == CF_RAFT_LOG {
                opts.set_write_buffer_size(RAFT_LOG_WRITE_BUFFER_BYTES);
            }
            if STATE_MACHINE_FAMILIES.contains(name) {
                // Small files, and compactions (a defragment's too) cut into jobs of a few
                // of them: each job's obsolete files are few and small (`slow_deletion`).
                opts.set_target_file_size_base(slow_deletion::TARGET_FILE_BYTES);
                opts.set_max_compaction_bytes(2 * slow_deletion::TARGET_FILE_BYTES);
            }
            ColumnFamilyDescriptor::new(*name, opts)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)?;
        #[cfg(test)]
        exit_without_static_destructors();
        Ok(Storage {
            db,
            path: path.to_path_buf(),
            waiting_for_space: AtomicBool::new(false),
            slow_deletion,
        })
    }

    /// Bytes free for files on the filesystem that holds the database (statvfs). Obsolete
    /// files are deleted at once from when it is found short (`slow_deletion`).
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let free = free_bytes(&self.path)?;
        self.slow_deletion.adjust_to_free_space(free);
        Ok(free)
    }

    /// Bytes of obsolete database files waiting to be deleted (`slow_deletion`).
    #[cfg(test)]
    pub fn trash_bytes(&self) -> u64 {
        self.slow_deletion.trash_bytes()
    }

    /// Whether a write is waiting for the disk to have space again (see `write`).
    pub fn is_waiting_for_space(&self) -> bool {
        self.waiting_for_space.load(Ordering::Relaxed)
    }

    /// The Raft log's entries (the log store's).
    pub fn raft_log(&self) -> RaftLogCf<'_> {
        RaftLogCf::new(self.cf(CF_RAFT_LOG), Source::live(&self.db))
    }

    /// Raft's own small records, and the member's identity.
    pub fn raft_state(&self) -> RaftStateCf<'_> {
        RaftStateCf::new(self.cf(CF_RAFT_STATE), Source::live(&self.db))
    }

    /// MVCC revisions (mvcc's).
    pub fn kv(&self) -> KvCf<'_> {
        KvCf::new(self.cf(CF_KV), Source::live(&self.db))
    }

    /// State-machine metadata.
    pub fn meta(&self) -> MetaCf<'_> {
        MetaCf::new(self.cf(CF_META), Source::live(&self.db))
    }

    /// Lease records (lease's).
    pub fn lease(&self) -> LeaseCf<'_> {
        LeaseCf::new(self.cf(CF_LEASE), Source::live(&self.db))
    }

    /// Users, roles and auth settings (auth's).
    pub fn auth(&self) -> AuthCf<'_> {
        AuthCf::new(self.cf(CF_AUTH), Source::live(&self.db))
    }

    /// A consistent point-in-time view of everything written so far; later writes do not
    /// show through it.
    pub fn view(&self) -> View<'_> {
        View {
            storage: self,
            snapshot: self.db.snapshot(),
        }
    }

    /// The raw database. For callers not yet moved to the typed handles (`lease`,
    /// `node::identity`, `api::maintenance`); new code uses the handles.
    pub fn db(&self) -> &DB {
        &self.db
    }

    /// A column family handle by name; the six families exist from `open` on. Same
    /// caveat as `db`.
    pub fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is created at open"))
    }

    /// Writes a batch; `sync` makes it (and every earlier write) durable before returning.
    ///
    /// On a full disk (ENOSPC) it does not fail: it waits and writes the batch again until
    /// it passes, saying so in the log, so that the caller (the Raft log, the state machine)
    /// stalls rather than stop the member. That is sound because a write that failed that
    /// way wrote nothing RocksDB will read (its memtables are untouched, and RocksDB stops
    /// all writes, then flushes its memtables to new files before it takes writes again),
    /// and because nothing is acknowledged before its write has passed and been synced.
    /// The wait blocks the calling thread: on the async runtime, it is moved off it.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> StorageResult<()> {
        self.slow_deletion.check_free_space(&self.path);
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        // Kept for a retry: RocksDB takes the batch.
        let retry = WriteBatch::from_data(batch.data());
        match self.db.write_opt(batch, &opts) {
            Ok(()) => {
                self.space_is_back();
                Ok(())
            }
            Err(e) => {
                let e = StorageError::from(e);
                if !e.is_no_space() {
                    return Err(e);
                }
                blocking(|| self.write_when_space_returns(retry, &opts, e))
            }
        }
    }

    /// See `write`: tries `batch` again until the disk has room for it.
    fn write_when_space_returns(
        &self,
        batch: WriteBatch,
        opts: &WriteOptions,
        first: StorageError,
    ) -> StorageResult<()> {
        self.waiting_for_space.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let mut said_at = started;
        tracing::error!(
            error = %first,
            path = %self.path.display(),
            "no space left on the disk of the data directory: writes wait until space returns"
        );
        loop {
            std::thread::sleep(NO_SPACE_RETRY_EVERY);
            match self.db.write_opt(WriteBatch::from_data(batch.data()), opts) {
                Ok(()) => {
                    tracing::warn!(
                        waited = ?started.elapsed(),
                        "space returned on the disk of the data directory: writes pass again"
                    );
                    self.space_is_back();
                    return Ok(());
                }
                Err(e) => {
                    let e = StorageError::from(e);
                    if !e.is_no_space() {
                        return Err(e);
                    }
                    if said_at.elapsed() >= NO_SPACE_LOG_EVERY {
                        said_at = Instant::now();
                        tracing::error!(
                            error = %e,
                            waited = ?started.elapsed(),
                            free_bytes = self.free_bytes().unwrap_or(0),
                            "no space left on the disk of the data directory: still waiting"
                        );
                    }
                }
            }
        }
    }

    fn space_is_back(&self) {
        if self.waiting_for_space.load(Ordering::Relaxed) {
            self.waiting_for_space.store(false, Ordering::Relaxed);
        }
    }

    /// Returns once a write passes: at once, unless a write is waiting for space (`write`);
    /// then after a write of nothing has passed too. For a writer that holds others up
    /// while it writes (the state machine holds the store): it waits here first, holding
    /// nothing.
    pub fn wait_for_space(&self) -> StorageResult<()> {
        if self.is_waiting_for_space() {
            self.write(WriteBatch::default(), false)?;
        }
        Ok(())
    }

    /// Makes every write so far durable: one fsync of the shared write-ahead log.
    pub fn sync_wal(&self) -> StorageResult<()> {
        Ok(self.db.flush_wal(true)?)
    }

    /// Stops RocksDB's background flushes and compactions and waits for them. Called once at
    /// shutdown, after the final sync: the process then exits with the database still open,
    /// and no background thread races with the exit.
    pub fn stop_background_work(&self) {
        self.db.cancel_all_background_work(true);
    }

    /// The size of the state machine's data (`StoreSize`): what `Status.dbSize` reports
    /// and the space quota measures. Reads RocksDB's properties (some under its lock):
    /// callers that ask per request cache it (`server::quota`).
    pub fn store_size(&self) -> StoreSize {
        let mut size = StoreSize::default();
        for name in STATE_MACHINE_FAMILIES {
            let cf = self.cf(name);
            let property = |name: &str| {
                self.db
                    .property_int_value_cf(cf, name)
                    .ok()
                    .flatten()
                    .unwrap_or(0)
            };
            let memtables = property("rocksdb.cur-size-all-mem-tables");
            let files = property("rocksdb.total-sst-files-size");
            let live = property("rocksdb.estimate-live-data-size").min(files);
            size.total_bytes += files + memtables;
            size.in_use_bytes += live + memtables;
        }
        size
    }
}

impl Storage {
    /// Rewrites the state machine's families without what compactions and overwrites left
    /// behind (memtables flushed first): the files then hold only live data.
    pub fn compact_state_machine(&self) {
        // Whether the files it makes obsolete may wait as trash (see `slow_deletion`).
        let _ = self.free_bytes();
        let mut opts = rocksdb::CompactOptions::default();
        // RocksDB's own compactions go on meanwhile: the Raft log's above all, which takes
        // writes all along.
        opts.set_exclusive_manual_compaction(false);
        for name in STATE_MACHINE_FAMILIES {
            self.db
                .compact_range_cf_opt(self.cf(name), None::<&[u8]>, None::<&[u8]>, &opts);
        }
    }
}

/// Runs `f`, which may block for long: on a worker of the multi-threaded async runtime,
/// after moving the worker's other tasks to another thread.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Bytes free for files (not counting blocks reserved for root) on the filesystem holding
/// `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: statvfs only writes into the zeroed struct we own; the path is a valid
    // NUL-terminated string that outlives the call.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The state machine's data as etcd's `dbSize` counts bbolt's file: the SST files of the
/// `kv`, `meta`, `lease` and `auth` families, plus their memtables (what is so far only in
/// the write-ahead log). Not the Raft log, as etcd's quota does not count etcd's WAL.
/// Revisions deleted by a compaction still count until RocksDB rewrites their files (a
/// defragmentation does it at once), as bbolt's free pages count until etcd defragments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSize {
    pub total_bytes: u64,
    /// Without what RocksDB estimates its files hold beyond the live data (`dbSizeInUse`).
    pub in_use_bytes: u64,
}

/// The families `StoreSize` counts: the state machine's.
const STATE_MACHINE_FAMILIES: [&str; 4] = [CF_KV, CF_META, CF_LEASE, CF_AUTH];

/// See `Storage::view`. Reads through its handles see the state when it was taken; it is
/// also what a snapshot file is exported from (`View::export_snapshot`).
pub struct View<'a> {
    storage: &'a Storage,
    snapshot: rocksdb::Snapshot<'a>,
}

impl View<'_> {
    pub fn kv(&self) -> KvCf<'_> {
        KvCf::new(self.storage.cf(CF_KV), self.source())
    }

    pub fn meta(&self) -> MetaCf<'_> {
        MetaCf::new(self.storage.cf(CF_META), self.source())
    }

    pub fn lease(&self) -> LeaseCf<'_> {
        LeaseCf::new(self.storage.cf(CF_LEASE), self.source())
    }

    pub fn auth(&self) -> AuthCf<'_> {
        AuthCf::new(self.storage.cf(CF_AUTH), self.source())
    }

    /// The records of the state machine's families besides `kv`, for a hash of that state:
    /// `lease`, `auth` and `meta`, each its name then each key and value in key order, as
    /// byte strings to `out`. Raft's own records in `meta` (the applied log id, Raft's
    /// membership, whose first entry each member writes itself) are left out, as etcd's
    /// hash leaves out its consistent index and term.
    pub fn replicated_records(&self, mut out: impl FnMut(&[u8])) -> StorageResult<()> {
        for name in [CF_LEASE, CF_AUTH, CF_META] {
            out(name.as_bytes());
            let records = self
                .source()
                .iter(self.storage.cf(name), rocksdb::IteratorMode::Start);
            for item in records {
                let (key, value) = item?;
                if name == CF_META && MetaKey::is_raft_record(&key) {
                    continue;
                }
                out(&key);
                out(&value);
            }
        }
        Ok(())
    }

    fn source(&self) -> Source<'_> {
        Source {
            db: &self.storage.db,
            at: Some(&self.snapshot),
        }
    }
}

/// Where a handle reads: the live database, or a view of it.
#[derive(Clone, Copy)]
struct Source<'a> {
    db: &'a DB,
    at: Option<&'a rocksdb::Snapshot<'a>>,
}

/// A key and its value, as a handle's scan yields them.
pub type Record = (Box<[u8]>, Box<[u8]>);

impl<'a> Source<'a> {
    fn live(db: &'a DB) -> Self {
        Source { db, at: None }
    }

    fn get(self, cf: &ColumnFamily, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        Ok(match self.at {
            None => self.db.get_cf(cf, key)?,
            Some(snapshot) => snapshot.get_cf(cf, key)?,
        })
    }

    fn iter(
        self,
        cf: &ColumnFamily,
        mode: rocksdb::IteratorMode<'_>,
    ) -> impl Iterator<Item = StorageResult<Record>> + 'a {
        let iter = match self.at {
            None => self.db.iterator_cf(cf, mode),
            Some(snapshot) => snapshot.iterator_cf(cf, mode),
        };
        iter.map(|item| item.map_err(StorageError::from))
    }

    fn multi_get<K: AsRef<[u8]>>(
        self,
        cf: &ColumnFamily,
        keys: impl IntoIterator<Item = K>,
    ) -> Vec<StorageResult<Option<Vec<u8>>>> {
        let keys = keys.into_iter().map(|key| (cf, key));
        let values = match self.at {
            None => self.db.multi_get_cf(keys),
            Some(snapshot) => snapshot.multi_get_cf(keys),
        };
        values
            .into_iter()
            .map(|value| value.map_err(StorageError::from))
            .collect()
    }
}

#[cfg(test)]
mod tests;

/// Unit tests only. RocksDB's C++ static destructors run when the test process exits, while
/// background threads of databases the tests left open (an MVCC compactor thread holds its
/// store until its last job is done) may still run: the process then aborts (`pthread
/// lock: Invalid argument`) after every test passed, in about one run in ten. The server
/// exits with `_exit` for the same reason (`main.rs`); the unit tests do too, with 101, as
/// the test harness would, if any test panicked, 0 otherwise. No unit test expects a
/// panic.
#[cfg(test)]
fn exit_without_static_destructors() {
    use std::sync::atomic::AtomicBool;
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    static PANICKED: AtomicBool = AtomicBool::new(false);
    extern "C" fn exit_now() {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        let code = if PANICKED.load(Ordering::SeqCst) {
            101
        } else {
            0
        };
        // SAFETY: ends the process at once; nothing runs after it.
        unsafe { libc::_exit(code) }
    }
    INSTALLED.call_once(|| {
        let default_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.store(true, Ordering::SeqCst);
            default_hook(info);
        }));
        // SAFETY: registers a plain function, called once at exit.
        unsafe { libc::atexit(exit_now) };
    });
}
