//! etcd's snapshot files, `member/snap/<term>-<index>.snap` (16 hex digits each): a
//! `snappb.snapshot {crc, data}` whose data is a `raftpb.Snapshot` (metadata: index, term,
//! membership; data: the v2 store as JSON), `crc` its CRC-32C. As etcd, the newest first
//! (names in reverse order), files that do not read or check skipped. `<index>.snap.db` files
//! (a database received from a leader, not yet applied) are listed only.

use std::path::{Path, PathBuf};

use prost::Message;

use super::{io_error, EtcdDataError};
use crate::proto::etcd::{raftpb, walpb};

/// A .snap file that reads and checks, without its data.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapInfo {
    pub path: PathBuf,
    pub index: u64,
    pub term: u64,
    pub conf_state: raftpb::ConfState,
}

/// What `member/snap` holds.
#[derive(Debug, Clone, Default)]
pub struct SnapListing {
    /// Valid .snap files, newest first.
    pub snaps: Vec<SnapInfo>,
    /// .snap files etcd would skip (renaming them `*.broken`), with the reason.
    pub broken: Vec<(PathBuf, String)>,
    /// `*.snap.db` files present (not read).
    pub snap_dbs: Vec<PathBuf>,
}

/// Lists and checks the .snap files of `snap_dir`; a missing directory lists nothing.
pub fn list_snap_files(snap_dir: &Path) -> Result<SnapListing, EtcdDataError> {
    let mut listing = SnapListing::default();
    let entries = match std::fs::read_dir(snap_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
        Err(e) => return Err(io_error(snap_dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(snap_dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name.ends_with(".snap") {
            names.push(name);
        } else if name.ends_with(".snap.db") {
            listing.snap_dbs.push(snap_dir.join(name));
        }
    }
    names.sort_unstable_by(|a, b| b.cmp(a));
    listing.snap_dbs.sort();
    for name in names {
        let path = snap_dir.join(&name);
        match read_snap_file(&path) {
            Ok(snap) => {
                let meta = snap.metadata.unwrap_or_default();
                listing.snaps.push(SnapInfo {
                    path,
                    index: meta.index,
                    term: meta.term,
                    conf_state: meta.conf_state.unwrap_or_default(),
                });
            }
            Err(EtcdDataError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => listing.broken.push((path, e.to_string())),
        }
    }
    Ok(listing)
}

/// Reads one .snap file and checks its CRC.
pub fn read_snap_file(path: &Path) -> Result<raftpb::Snapshot, EtcdDataError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    let corrupt = |reason: String| EtcdDataError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason,
    };
    if bytes.is_empty() {
        return Err(corrupt("empty snapshot file".into()));
    }
    let file = walpb::SnapFile::decode(bytes.as_slice())
        .map_err(|e| corrupt(format!("not a snapshot file: {e}")))?;
    if file.data.is_empty() || file.crc == 0 {
        return Err(corrupt("empty snapshot data".into()));
    }
    let computed = crate::crc32c::update(0, &file.data);
    if computed != file.crc {
        return Err(corrupt(format!(
            "CRC mismatch: file says {:#010x}, data has {computed:#010x}",
            file.crc
        )));
    }
    raftpb::Snapshot::decode(file.data.as_slice())
        .map_err(|e| corrupt(format!("undecodable raftpb.Snapshot: {e}")))
}
