//! The disk reserve: a client's write is refused with `no space left on the member's disk`
//! while the filesystem of the data directory has less than `DISK_RESERVE_BYTES` free.
//!
//! Refused before it is proposed, so that a full disk is a clear error for the client rather
//! than a write that fails in RocksDB. The reserve is what must still be written when client
//! writes stop: RocksDB flushing its memtables (up to 16 MiB for each of the state
//! machine's families, 4 MiB for the Raft log) before it can delete the write-ahead log
//! they came from, so that free space grows again; Raft's own records and entries (votes,
//! a new leader's blank entry, lease expiry, what followers receive); compactions. 64 MiB
//! covers the flush of the memtables as they usually are (a few fill at a time) with room
//! to spare, and is little next to the disks a member runs on; a fraction of the
//! filesystem would be too little on a small one and more than needed on a large one.
//!
//! Only what a client asks is refused: Cairn's own proposals (lease expiry, publishing the
//! member's attributes) and what another member forwarded (the member the client called
//! checked its own disk) pass. What still hits the full disk waits for space in storage
//! (`Storage::write`). The free space is read (statvfs) at most every `FREE_FRESH_FOR`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{RequestContext, Server};
use crate::error::EtcdError;

/// Free space the member keeps on the filesystem of its data directory (see above).
pub const DISK_RESERVE_BYTES: u64 = 64 << 20;
/// How long a measured free space is used: a write of up to `--max-request-bytes` (1.5 MiB
/// by default) at a time cannot use up the reserve in that time at any rate the disk takes.
const FREE_FRESH_FOR: Duration = Duration::from_millis(100);

/// The last measured free space, and whether writes are being refused (to log the change
/// once, not each refusal).
#[derive(Default)]
pub(super) struct DiskSpace {
    free: Mutex<Option<(Instant, u64)>>,
    refusing: AtomicBool,
}

impl Server {
    /// Refuses a client's write while the data directory's disk has less than the reserve
    /// free.
    pub(super) fn check_disk_space(&self, ctx: &RequestContext) -> Result<(), EtcdError> {
        if ctx.internal {
            return Ok(());
        }
        let Some(free) = self.free_bytes() else {
            // Unknown (statvfs failed): storage reports a full disk itself.
            return Ok(());
        };
        let space = &self.disk_space;
        if free >= DISK_RESERVE_BYTES {
            if space.refusing.swap(false, Ordering::Relaxed) {
                tracing::warn!(
                    free_bytes = free,
                    "space returned on the disk of the data directory: writes are taken again"
                );
            }
            return Ok(());
        }
        if !space.refusing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                free_bytes = free,
                reserve_bytes = DISK_RESERVE_BYTES,
                "the disk of the data directory is nearly full: writes are refused \
                 (`no space left on the member's disk`) until it has the reserve free again"
            );
        }
        Err(EtcdError::DiskFull)
    }

    fn free_bytes(&self) -> Option<u64> {
        let mut cached = self.disk_space.free.lock().expect("free space lock");
        match *cached {
            Some((at, free)) if at.elapsed() < FREE_FRESH_FOR => Some(free),
            _ => {
                let free = self.storage.free_bytes().ok()?;
                *cached = Some((Instant::now(), free));
                Some(free)
            }
        }
    }
}
