//! The one RocksDB instance under a member's data directory, and its column families.
//!
//! Owns opening, options and the narrow set of operations other modules need. The Raft log
//! and the state machine share one write-ahead log, so syncing it after a log append also
//! makes every earlier state-machine write durable. Calls nothing else in Cairn.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options,
    WriteBatch, WriteOptions, DB,
};

/// Raft log entries, keyed by big-endian index.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Raft vote, committed log id and last purged log id.
pub const CF_RAFT_STATE: &str = "raft_state";
/// MVCC revisions: key = revision (see `mvcc::revision`), value = encoded `mvccpb.KeyValue`.
pub const CF_KV: &str = "kv";
/// State machine metadata: applied log id, membership, current and compacted revisions.
pub const CF_META: &str = "meta";

/// Leases and the keys attached to them (see `lease`).
pub const CF_LEASE: &str = "lease";

const COLUMN_FAMILIES: [&str; 5] = [CF_RAFT_LOG, CF_RAFT_STATE, CF_KV, CF_META, CF_LEASE];

/// Block cache shared by all column families. Small on purpose: the key index lives in
/// memory, and the page cache holds hot SST blocks as well.
const BLOCK_CACHE_BYTES: usize = 32 << 20;
/// Memtable size per column family; bounds resident memory under write load.
const WRITE_BUFFER_BYTES: usize = 16 << 20;
/// The Raft log's memtable: entries are read back only by slow followers and purged after
/// each snapshot, so a small memtable costs little and saves resident memory.
const RAFT_LOG_WRITE_BUFFER_BYTES: usize = 4 << 20;

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

pub struct Storage {
    db: DB,
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

        let cfs = COLUMN_FAMILIES.iter().map(|name| {
            let mut opts = cf_opts.clone();
            if *name == CF_RAFT_LOG {
                opts.set_write_buffer_size(RAFT_LOG_WRITE_BUFFER_BYTES);
            }
            ColumnFamilyDescriptor::new(*name, opts)
        });
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)?;
        Ok(Storage { db })
    }

    pub fn db(&self) -> &DB {
        &self.db
    }

    /// A column family handle; the four families exist from `open` on.
    pub fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .unwrap_or_else(|| panic!("column family {name} is created at open"))
    }

    /// Writes a batch; `sync` makes it (and every earlier write) durable before returning.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> StorageResult<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        Ok(self.db.write_opt(batch, &opts)?)
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

    /// Bytes on disk (SST files) plus bytes in memtables: what `Status.dbSize` reports.
    pub fn size_bytes(&self) -> u64 {
        let mut total = 0;
        for name in COLUMN_FAMILIES {
            let cf = self.cf(name);
            for prop in [
                "rocksdb.total-sst-files-size",
                "rocksdb.size-all-mem-tables",
            ] {
                total += self
                    .db
                    .property_int_value_cf(cf, prop)
                    .ok()
                    .flatten()
                    .unwrap_or(0);
            }
        }
        total
    }
}
