//! A small filesystem of a test's own, to fill up: a size-limited tmpfs mounted on a
//! directory, unmounted when dropped. Mounting needs root (CI runs as root); where it is
//! impossible, `Tmpfs::mount` prints why and returns None, and the test skips.
//!
//! tmpfs rather than a loop device with ext4: a write past its size fails with ENOSPC at
//! once, as a full ext4 fails a write (ext4 reserves blocks when data is written, not when
//! it is synced), and it needs neither mkfs nor a backing file on the shared disk. What it
//! does not show: an fsync never fails on it (its data never leaves memory).

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Tmpfs {
    path: PathBuf,
    size_bytes: std::sync::atomic::AtomicU64,
}

/// Where a filler file goes: next to the data directory, on the same filesystem.
const FILLER: &str = "filler";

impl Tmpfs {
    /// Mounts a tmpfs of `size_bytes` on `path` (created if missing, empty); None, with a
    /// note on stderr, when that is impossible here.
    pub fn mount(path: &Path, size_bytes: u64) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(path).expect("create the mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_bytes}")])
            .arg("tmpfs")
            .arg(path)
            .output();
        match output {
            Ok(o) if o.status.success() => Some(Tmpfs {
                path: path.to_path_buf(),
                size_bytes: size_bytes.into(),
            }),
            Ok(o) => {
                eprintln!(
                    "skipped: cannot mount a tmpfs on {}: {}",
                    path.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("skipped: cannot run mount: {e}");
                None
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes free for files (statvfs).
    pub fn free_bytes(&self) -> u64 {
        free_bytes(&self.path)
    }

    /// Fills the filesystem with a filler file until `leave_bytes` are free (or fewer: 0
    /// fills it completely). Grows an existing filler.
    pub fn fill_leaving(&self, leave_bytes: u64) {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path.join(FILLER))
            .expect("open the filler file");
        let chunk = vec![0xa5u8; 1 << 20];
        loop {
            let free = self.free_bytes();
            if free <= leave_bytes {
                break;
            }
            let n = ((free - leave_bytes) as usize).min(chunk.len());
            match file.write(&chunk[..n]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("write the filler file: {e}"),
            }
        }
        file.sync_all().expect("sync the filler file");
    }

    /// Removes the filler file: the space returns.
    pub fn free_filler(&self) {
        std::fs::remove_file(self.path.join(FILLER)).expect("remove the filler file");
    }

    /// Makes the filesystem `bytes` larger, in place (as when an operator adds space).
    pub fn grow_by(&self, bytes: u64) {
        use std::sync::atomic::Ordering;
        let size = self.size_bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(status.success(), "remount the tmpfs with size={size}");
    }
}

/// Unmounts; a lazy unmount if something still holds a file there (a member that did not
/// exit yet), so that nothing stays mounted after the test.
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let unmounted = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// Bytes free for files on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path without NUL");
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut st) };
    assert_eq!(rc, 0, "statvfs {}", path.display());
    st.f_bavail as u64 * st.f_frsize as u64
}
