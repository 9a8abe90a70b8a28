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
//! Trash still takes disk space until deleted. A file becomes trash only while the trash is
//! no larger than the other files RocksDB counts then (live ones, and those a compaction has
//! just made obsolete and not yet handed over); the rest are deleted at once. So the trash is
//! at most about half of what a compaction left on disk, plus one file: after a defragment,
//! about half of the old and new copies together (etcd's defragment needs room for a whole
//! copy of the database). While the disk has less than `SLOW_DELETION_MIN_FREE_BYTES` free,
//! files are deleted at once, as without the manager. The free space is looked at on open, before a defragment and at most every
//! `FREE_SPACE_CHECK_EVERY` as the database is written. A stop leaves trash behind; the
//! next start deletes it (at the rate).

use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use librocksdb_sys as ffi;
use rocksdb::{AsRawPtr, Env, Options};

/// How fast obsolete files are deleted while the disk has room.
pub const DELETE_BYTES_PER_SEC: i64 = 64 << 20;
/// Below this much free space, obsolete files are deleted at once...
pub const SLOW_DELETION_MIN_FREE_BYTES: u64 = 1 << 30;
/// ...until this much more is free again (not to switch back and forth around one value).
const RESUME_MARGIN_BYTES: u64 = 512 << 20;
/// How often writes look at the free space.
const FREE_SPACE_CHECK_EVERY: Duration = Duration::from_millis(100);
/// A file is deleted at once when the trash is over this share of all tracked files, trash
/// included (RocksDB's measure): 0.5 keeps the trash to at most the other files' size.
const MAX_TRASH_SHARE: f64 = 0.5;
/// Target size of the state machine's SST files: each deleted in one step of at most this.
pub const TARGET_FILE_BYTES: u64 = 16 << 20;

/// The SST file manager given to the database's options; RocksDB holds its own reference.
pub struct SlowDeletion {
    manager: NonNull<ffi::rocksdb_sst_file_manager_t>,
    state: Mutex<State>,
    /// Since `opened`, when the free space was last looked at (ms; `u64::MAX`: never).
    /// Atomic, as every storage write reads it.
    checked_ms: AtomicU64,
    opened: Instant,
}

struct State {
    /// Deleting at `DELETE_BYTES_PER_SEC` (true) or at once.
    slow: bool,
    /// `SLOW_DELETION_MIN_FREE_BYTES` (a test sets more, to act out a disk short of space).
    min_free_bytes: u64,
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
            ffi::rocksdb_sst_file_manager_set_max_trash_db_ratio(manager.as_ptr(), MAX_TRASH_SHARE);
            ffi::rocksdb_options_set_sst_file_manager(opts.as_raw_ptr(), manager.as_ptr());
            manager
        };
        Ok(SlowDeletion {
            manager,
            state: Mutex::new(State {
                slow: true,
                min_free_bytes: SLOW_DELETION_MIN_FREE_BYTES,
            }),
            checked_ms: AtomicU64::new(u64::MAX),
            opened: Instant::now(),
        })
    }

    /// `adjust_to_free_space` with the free space of the filesystem of `path`, unless that
    /// was looked at less than `FREE_SPACE_CHECK_EVERY` ago.
    pub fn check_free_space(&self, path: &Path) {
        let now_ms = self.opened.elapsed().as_millis() as u64;
        let last_ms = self.checked_ms.load(Ordering::Relaxed);
        let due = last_ms == u64::MAX
            || now_ms.saturating_sub(last_ms) >= FREE_SPACE_CHECK_EVERY.as_millis() as u64;
        // One writer of many wins the check.
        if due
            && self
                .checked_ms
                .compare_exchange(last_ms, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            if let Ok(free) = super::free_bytes(path) {
                self.adjust_to_free_space(free);
            }
        }
    }

    /// Deletes at once while the disk has less than `SLOW_DELETION_MIN_FREE_BYTES` free,
    /// slowly again once it has `RESUME_MARGIN_BYTES` more.
    pub fn adjust_to_free_space(&self, free_bytes: u64) {
        let mut state = self.state.lock().expect("slow deletion lock");
        let resume_free_bytes = state.min_free_bytes.saturating_add(RESUME_MARGIN_BYTES);
        let slow = if state.slow {
            free_bytes >= state.min_free_bytes
        } else {
            free_bytes >= resume_free_bytes
        };
        if state.slow != slow {
            state.slow = slow;
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

    /// Acts out a disk with less free space than `min_free_bytes`, whatever it has.
    #[cfg(test)]
    pub fn require_free_bytes(&self, min_free_bytes: u64, free_bytes: u64) {
        self.state
            .lock()
            .expect("slow deletion lock")
            .min_free_bytes = min_free_bytes;
        self.adjust_to_free_space(free_bytes);
    }

    /// Bytes of obsolete files not yet deleted.
    #[cfg(test)]
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
