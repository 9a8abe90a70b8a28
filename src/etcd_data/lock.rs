//! Whether an etcd process still holds the directory: etcd locks its WAL files while it
//! runs, and Cairn must not read (let alone take over) a log that is still being written.
//!
//! etcd (3.4 to 3.7, `pkg/fileutil`) takes a write lock over each WAL file it has open, and
//! over the next segment it preallocates (`*.tmp`): on Linux an open-file-description lock
//! (`F_OFD_SETLK`, whole file) when the kernel has them, else `flock(LOCK_EX)`. This asks the
//! kernel the same question without taking anything: `F_OFD_GETLK` reports a conflicting
//! lock (OFD or POSIX) held by anyone else; only when the kernel lacks OFD locks, as etcd
//! then falls back to `flock`, is a non-blocking `flock` tried and at once released.

use std::fs::File;
use std::os::unix::io::AsRawFd;

use super::{io_error, EtcdDataError, EtcdDirs};

/// Fails with [`EtcdDataError::Running`] naming the first WAL file a running etcd holds.
/// A directory without a WAL directory is not held (and is no etcd member either).
pub fn check_not_running(dirs: &EtcdDirs) -> Result<(), EtcdDataError> {
    let entries = match std::fs::read_dir(&dirs.wal) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(&dirs.wal, e)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.ends_with(".wal") || n.ends_with(".tmp"))
        .collect();
    names.sort();
    for name in names {
        let path = dirs.wal.join(&name);
        let file = match File::open(&path) {
            Ok(f) => f,
            // A .tmp segment renamed or removed meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_error(&path, e)),
        };
        if is_locked(&file).map_err(|e| io_error(&path, e))? {
            return Err(EtcdDataError::Running { path });
        }
    }
    Ok(())
}

fn is_locked(file: &File) -> std::io::Result<bool> {
    let fd = file.as_raw_fd();
    // SAFETY: an all-zero flock is a valid value; the kernel fills it in.
    let mut probe: libc::flock = unsafe { std::mem::zeroed() };
    probe.l_type = libc::F_WRLCK as libc::c_short;
    probe.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: fd is open for the call's duration and `probe` is a valid flock.
    if unsafe { libc::fcntl(fd, libc::F_OFD_GETLK, &mut probe) } == 0 {
        return Ok(probe.l_type != libc::F_UNLCK as libc::c_short);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EINVAL) {
        return Err(err);
    }
    // No OFD locks on this kernel: etcd then uses flock.
    // SAFETY: as above.
    if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        // SAFETY: as above; releases the lock just taken.
        unsafe { libc::flock(fd, libc::LOCK_UN) };
        return Ok(false);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(true)
    } else {
        Err(err)
    }
}
