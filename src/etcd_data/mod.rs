//! Reading a stopped etcd member's Raft state, to take its data directory over in place.
//!
//! An etcd 3.4-3.7 member keeps its Raft log in `member/wal/*.wal` and its Raft snapshots
//! in `member/snap/*.snap` (the key-value state itself is `member/snap/db`, read elsewhere).
//! This module only reads: [`check_not_running`] refuses a directory an etcd process still
//! holds, [`read_raft_log`] finds the snapshot etcd would restart from and the log after it
//! (member and cluster IDs, the last HardState, the surviving entries), and [`map_entry`]
//! says what each entry is to Cairn.
//!
//! Memory: the log is read twice, record by record; what stays is 32 bytes per entry after
//! the snapshot (etcd cuts a snapshot every `--snapshot-count` entries, so about that many),
//! one record at a time (an entry's payload, at most etcd's request limit), and
//! [`EtcdRaftLog::entries`] reads each entry's payload again as it is asked for.
//!
//! May call `proto` and `crc32c`.

mod entries;
mod lock;
mod snap;
mod wal;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use entries::{map_entry, ConfChangeKind, EtcdEntry, EtcdMember, MapOptions};
pub use lock::check_not_running;
pub use snap::{list_snap_files, read_snap_file, SnapInfo, SnapListing};
pub use wal::{list_wal_files, TornTail, WalFile};

use crate::proto::etcd::raftpb;

/// Why an etcd directory cannot be read (or an entry not taken over).
#[derive(Debug, thiserror::Error)]
pub enum EtcdDataError {
    #[error("{}: locked by a running etcd; stop etcd first", path.display())]
    Running { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} at offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("etcd log entry {index} (term {term}): {reason}")]
    Unmappable {
        index: u64,
        term: u64,
        reason: String,
    },
}

pub(crate) fn io_error(path: &Path, source: std::io::Error) -> EtcdDataError {
    EtcdDataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where an etcd member keeps its Raft state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdDirs {
    /// `member/wal`, or etcd's `--wal-dir`.
    pub wal: PathBuf,
    /// `member/snap`.
    pub snap: PathBuf,
}

impl EtcdDirs {
    /// The directories under etcd's `--data-dir`.
    pub fn of_data_dir(data_dir: &Path) -> Self {
        EtcdDirs {
            wal: data_dir.join("member").join("wal"),
            snap: data_dir.join("member").join("snap"),
        }
    }

    /// With etcd's `--wal-dir`.
    pub fn with_wal_dir(self, wal_dir: &Path) -> Self {
        EtcdDirs {
            wal: wal_dir.to_path_buf(),
            ..self
        }
    }
}

/// The Raft snapshot the log starts after.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SnapshotPoint {
    pub index: u64,
    pub term: u64,
    /// Voters and learners at the snapshot: from the .snap file, or (etcd 3.5+) the WAL's
    /// snapshot record; None when neither says (no snapshot yet).
    pub conf_state: Option<raftpb::ConfState>,
    /// The .snap file, when one matches.
    pub file: Option<PathBuf>,
}

/// An etcd member's Raft log from its snapshot on, as etcd would restart from it.
#[derive(Debug)]
pub struct EtcdRaftLog {
    pub member_id: u64,
    pub cluster_id: u64,
    /// The last HardState in the log: term, vote, commit.
    pub hard_state: raftpb::HardState,
    pub snapshot: SnapshotPoint,
    pub snap_files: SnapListing,
    /// The segments the log was read from (the first holds the snapshot).
    pub wal_files: Vec<WalFile>,
    /// Set when the last segment ended in a torn record, cut away as etcd's repair does.
    pub torn_tail: Option<TornTail>,
    entries: Vec<wal::EntryPos>,
}

impl EtcdRaftLog {
    /// How many entries follow the snapshot.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The (index, term) of each entry after the snapshot, in order.
    pub fn entry_ids(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.entries.iter().map(|e| (e.index, e.term))
    }

    /// The last entry's index (the snapshot's when no entry follows it).
    pub fn last_index(&self) -> u64 {
        self.entries.last().map_or(self.snapshot.index, |e| e.index)
    }

    /// The entries after the snapshot, in order, each read from its segment as asked for.
    pub fn entries(&self) -> Entries<'_> {
        Entries {
            log: self,
            next: 0,
            open: None,
        }
    }

    /// The snapshot's .snap file, read again (its data is etcd's v2 store as JSON).
    pub fn snapshot_data(&self) -> Result<Option<raftpb::Snapshot>, EtcdDataError> {
        self.snapshot
            .file
            .as_deref()
            .map(read_snap_file)
            .transpose()
    }
}

/// The entries of an [`EtcdRaftLog`], one payload in memory at a time.
pub struct Entries<'a> {
    log: &'a EtcdRaftLog,
    next: usize,
    open: Option<(u32, File)>,
}

impl Iterator for Entries<'_> {
    type Item = Result<raftpb::Entry, EtcdDataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let pos = self.log.entries.get(self.next)?;
        self.next += 1;
        let path = &self.log.wal_files[pos.file as usize].path;
        if self.open.as_ref().is_none_or(|(n, _)| *n != pos.file) {
            match File::open(path) {
                Ok(f) => self.open = Some((pos.file, f)),
                Err(e) => return Some(Err(io_error(path, e))),
            }
        }
        let (_, file) = self.open.as_mut().unwrap();
        Some(wal::reread(file, path, pos))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.log.entries.len() - self.next;
        (n, Some(n))
    }
}

/// Reads the Raft state of a stopped etcd member (check [`check_not_running`] first).
///
/// The start snapshot is chosen as etcd 3.5+ does, which agrees with 3.4 on any log 3.4
/// wrote: the newest valid .snap file that the WAL has a snapshot record for, at or below
/// the last commit index; without one, the newest such WAL record (as etcd 3.7, which no
/// longer needs the file). The log is then read from the segment holding that snapshot, as
/// etcd's `ReadAll`: an entry replaces any at its index and after it.
pub fn read_raft_log(dirs: &EtcdDirs) -> Result<EtcdRaftLog, EtcdDataError> {
    let files = list_wal_files(&dirs.wal)?;
    if files.is_empty() {
        return Err(EtcdDataError::Invalid(format!(
            "{}: no WAL segments",
            dirs.wal.display()
        )));
    }
    let snap_files = list_snap_files(&dirs.snap)?;
    let survey = wal::survey(&files)?;
    let commit = survey.hard_state.commit;
    let wal_snaps: Vec<_> = survey
        .snapshots
        .into_iter()
        .filter(|s| s.index <= commit)
        .collect();
    let in_wal =
        |index: u64, term: u64| wal_snaps.iter().any(|w| w.index == index && w.term == term);
    let snapshot = match snap_files.snaps.iter().find(|s| in_wal(s.index, s.term)) {
        Some(s) => SnapshotPoint {
            index: s.index,
            term: s.term,
            conf_state: Some(s.conf_state.clone()),
            file: Some(s.path.clone()),
        },
        None => match wal_snaps.last() {
            Some(w) => SnapshotPoint {
                index: w.index,
                term: w.term,
                conf_state: w.conf_state.clone(),
                file: None,
            },
            None => SnapshotPoint::default(),
        },
    };
    let replay = wal::replay(&files, snapshot.index, snapshot.term)?;
    Ok(EtcdRaftLog {
        member_id: replay.metadata.node_id,
        cluster_id: replay.metadata.cluster_id,
        hard_state: replay.hard_state,
        snapshot,
        snap_files,
        wal_files: files[replay.first_file..].to_vec(),
        torn_tail: replay.torn,
        entries: replay.entries,
    })
}
