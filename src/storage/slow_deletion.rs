//! Deleting the files compactions leave behind at a bounded rate (RocksDB's SST file
//! manager, which the `rocksdb` crate does not wrap: through its C API).
//!
//! Why: on a filesystem that discards (trims) the blocks a deletion frees when it commits
//! its journal, as ext4 mounted with `discard` does, freeing a lot at once holds up every
//! fsync behind that commit, the Raft log's among them. Measured on the 2-core machine
//! (BENCHMARKS.md): deleting a 1.5 GB file held a concurrent 256-byte fsync for 80 ms, and
//! a defragment, which rewrites the store and then deletes the old files, held puts for
//! tens of milliseconds. Obsolete files are renamed to `*.trash` and truncated away at
//! `DELETE_BYTES_PER_SEC`, each file at most `bytes_max_delete_chunk` (64 MiB) at a time,
//! which is why the state machine's files are kept small (`TARGET_FILE_BYTES`).
//!
//! Trash still takes disk space until deleted, so while the disk has less than
//! `SLOW_DELETION_MIN_FREE_BYTES` free, files are deleted at once, as without the manager.
//! A stop leaves trash behind; the next start deletes it (at the rate).

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

use librocksdb_sys as ffi;
use rocksdb::{AsRawPtr, Env, Options};

/// How fast obsolete files are deleted while the disk has room.
pub const DELETE_BYTES_PER_SEC: i64 = 64 << 20;
/// Below this much free space, obsolete files are deleted at once.
pub const SLOW_DELETION_MIN_FREE_BYTES: u64 = 1 << 30;
/// Trash beyond this share of the live files is deleted at once: so the disk holds at most
/// twice the store while a heavy write load makes files obsolete faster than the rate.
const MAX_TRASH_TO_LIVE_RATIO: f64 = 1.0;
/// Target size of the state machine's SST files: each deleted in one step of at most this.
pub const TARGET_FILE_BYTES: u64 = 16 << 20;

/// The SST file manager given to the database's options; RocksDB holds its own reference.
pub struct SlowDeletion {
    manager: NonNull<ffi::rocksdb_sst_file_manager_t>,
    /// Whether deletion is at `DELETE_BYTES_PER_SEC` (true) or immediate.
    slow: AtomicBool,
}

// SAFETY: RocksDB's SstFileManager is thread-safe (its header says every public function
// is); the handle is only an owning reference to it.
unsafe impl Send for SlowDeletion {}
unsafe impl Sync for SlowDeletion {}

impl SlowDeletion {
    /// Creates the manager, deleting slowly, and sets it in `opts` (before the database is
    /// opened with them).
    pub fn attach(opts: &mut Options) -> Result<SlowDeletion, rocksdb::Error> {
        let env = Env::new()?;
        // SAFETY: `env` and `opts` are live for these calls; the manager keeps what it
        // needs of the (process-wide default) environment, and the options take their own
        // reference to the manager.
        let manager = unsafe {
            let manager = NonNull::new(ffi::rocksdb_sst_file_manager_create(env.as_raw_ptr()))
                .expect("rocksdb_sst_file_manager_create returns a manager");
            ffi::rocksdb_sst_file_manager_set_delete_rate_bytes_per_second(
                manager.as_ptr(),
                DELETE_BYTES_PER_SEC,
            );
            ffi::rocksdb_sst_file_manager_set_max_trash_db_ratio(
                manager.as_ptr(),
                MAX_TRASH_TO_LIVE_RATIO,
            );
            ffi::rocksdb_options_set_sst_file_manager(opts.as_raw_ptr(), manager.as_ptr());
            manager
        };
        Ok(SlowDeletion {
            manager,
            slow: AtomicBool::new(true),
        })
    }

    /// Deletes slowly while the disk has `free_bytes` of room or more, at once otherwise.
    pub fn adjust_to_free_space(&self, free_bytes: u64) {
        let slow = free_bytes >= SLOW_DELETION_MIN_FREE_BYTES;
        if self.slow.swap(slow, Ordering::Relaxed) != slow {
            let rate = if slow { DELETE_BYTES_PER_SEC } else { 0 };
            // SAFETY: the manager lives as long as `self`.
            unsafe {
                ffi::rocksdb_sst_file_manager_set_delete_rate_bytes_per_second(
                    self.manager.as_ptr(),
                    rate,
                );
            }
            tracing::info!(
                free_bytes,
                delete_bytes_per_sec = rate,
                "obsolete database files are now deleted {}",
                if slow {
                    "at a bounded rate"
                } else {
                    "at once (little free space)"
                }
            );
        }
    }

    /// Bytes of obsolete files not yet deleted.
    pub fn trash_bytes(&self) -> u64 {
        // SAFETY: the manager lives as long as `self`.
        unsafe { ffi::rocksdb_sst_file_manager_get_total_trash_size(self.manager.as_ptr()) }
    }
}

impl Drop for SlowDeletion {
    fn drop(&mut self) {
        // SAFETY: created by `attach`, destroyed once; the database keeps its own reference.
        unsafe { ffi::rocksdb_sst_file_manager_destroy(self.manager.as_ptr()) }
    }
}
