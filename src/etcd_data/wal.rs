//! etcd's write-ahead log, `member/wal/<seq>-<index>.wal` (16 hex digits each; `index` the
//! first entry index the segment was cut for), read as etcd 3.4-3.7 read it.
//!
//! A segment is a run of frames: a little-endian 64-bit length word, then a `walpb.Record`
//! padded to 8 bytes. The low 56 bits of the word are the record's length; when its top
//! bit is set, the low 3 bits of the top byte are the padding. A zero word (segments are
//! preallocated with zeros) ends the segment. Each record's `crc` is the CRC-32C of the data
//! of every record before it in the chain and its own; a crc record (the first of every
//! segment) carries the chain's value so far, which it must match, and restarts the chain
//! from it.
//!
//! A record that cannot be read is an error, except in the last segment where, as etcd's
//! repair does, a record cut short (the file ends inside it) or failing its checks with a
//! 512-byte sector of zeros in it (a torn write) ends the log there.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use prost::Message;

use super::{io_error, EtcdDataError};
use crate::proto::etcd::{etcdraftpb, raftpb, walpb};

pub(super) const METADATA_TYPE: i64 = 1;
pub(super) const ENTRY_TYPE: i64 = 2;
pub(super) const STATE_TYPE: i64 = 3;
pub(super) const CRC_TYPE: i64 = 4;
pub(super) const SNAPSHOT_TYPE: i64 = 5;

const FRAME_BYTES: u64 = 8;
const SECTOR_BYTES: u64 = 512;

/// A WAL segment, by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFile {
    pub path: PathBuf,
    pub seq: u64,
    /// The index in its name: entries in it follow this index (or rewrite earlier ones).
    pub index: u64,
}

/// Where an entry's record is, to read its payload again (`EtcdRaftLog::entries`).
#[derive(Debug, Clone, Copy)]
pub(super) struct EntryPos {
    pub index: u64,
    pub term: u64,
    pub file: u32,
    pub offset: u64,
    /// The CRC chain's value before this record: its data then gives the record's crc.
    pub crc_before: u32,
}

/// Where a torn last record was cut away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    pub path: PathBuf,
    /// Offset of the torn record's frame: the log's valid bytes end here.
    pub offset: u64,
    pub reason: String,
}

/// `<seq>-<index>.wal` with 16 hex digits each, as etcd names segments.
fn parse_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (seq, index) = stem.split_once('-')?;
    if seq.len() != 16 || index.len() != 16 {
        return None;
    }
    Some((
        u64::from_str_radix(seq, 16).ok()?,
        u64::from_str_radix(index, 16).ok()?,
    ))
}

/// The WAL segments of `wal_dir` in name order (other files, such as `*.tmp`, skipped).
pub fn list_wal_files(wal_dir: &Path) -> Result<Vec<WalFile>, EtcdDataError> {
    let entries = std::fs::read_dir(wal_dir).map_err(|e| io_error(wal_dir, e))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(wal_dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if let Some((seq, index)) = parse_name(&name) {
            files.push((name, seq, index));
        }
    }
    files.sort();
    Ok(files
        .into_iter()
        .map(|(name, seq, index)| WalFile {
            path: wal_dir.join(name),
            seq,
            index,
        })
        .collect())
}

/// Where a decoded record was.
#[derive(Debug, Clone, Copy)]
pub(super) struct RecordPos {
    pub file: usize,
    pub offset: u64,
    pub crc_before: u32,
}

pub(super) enum Next {
    Record(walpb::Record, RecordPos),
    End,
    Torn(TornTail),
}

/// Reads the records of consecutive segments, checking frames and the CRC chain.
pub(super) struct Decoder<'a> {
    files: &'a [WalFile],
    next_file: usize,
    current: Option<(usize, BufReader<File>, u64)>,
    /// Offset just past the last valid record of the current segment.
    offset: u64,
    crc: u32,
}

impl<'a> Decoder<'a> {
    pub fn new(files: &'a [WalFile]) -> Self {
        Decoder {
            files,
            next_file: 0,
            current: None,
            offset: 0,
            crc: 0,
        }
    }

    pub fn next(&mut self) -> Result<Next, EtcdDataError> {
        loop {
            if self.current.is_none() {
                if self.next_file == self.files.len() {
                    return Ok(Next::End);
                }
                let path = &self.files[self.next_file].path;
                let file = File::open(path).map_err(|e| io_error(path, e))?;
                let len = file.metadata().map_err(|e| io_error(path, e))?.len();
                self.current = Some((self.next_file, BufReader::with_capacity(1 << 16, file), len));
                self.next_file += 1;
                self.offset = 0;
            }
            let (file_no, reader, len) = self.current.as_mut().unwrap();
            let (file_no, len) = (*file_no, *len);
            let last = file_no + 1 == self.files.len();
            let path = &self.files[file_no].path;
            let offset = self.offset;
            let problem = |reason: String, torn: bool| -> Result<Next, EtcdDataError> {
                if torn && last {
                    Ok(Next::Torn(TornTail {
                        path: path.clone(),
                        offset,
                        reason,
                    }))
                } else {
                    Err(EtcdDataError::Corrupt {
                        path: path.clone(),
                        offset,
                        reason,
                    })
                }
            };

            let remaining = len.saturating_sub(offset);
            if remaining == 0 {
                self.current = None;
                continue;
            }
            if remaining < FRAME_BYTES {
                return problem("a length word cut short".into(), true);
            }
            let mut word = [0u8; 8];
            reader
                .read_exact(&mut word)
                .map_err(|e| io_error(path, e))?;
            let word = u64::from_le_bytes(word);
            if word == 0 {
                // Preallocated space: the segment ends here.
                self.current = None;
                continue;
            }
            let rec_bytes = word & !(0xffu64 << 56);
            let pad_bytes = if (word as i64) < 0 {
                (word >> 56) & 0x7
            } else {
                0
            };
            if rec_bytes + pad_bytes > remaining - FRAME_BYTES {
                return problem(
                    format!(
                        "a record of {rec_bytes} bytes where {} remain",
                        remaining - FRAME_BYTES
                    ),
                    true,
                );
            }
            let mut data = vec![0u8; (rec_bytes + pad_bytes) as usize];
            reader
                .read_exact(&mut data)
                .map_err(|e| io_error(path, e))?;
            let torn = last && has_zero_sector(offset + FRAME_BYTES, &data);
            let record = match walpb::Record::decode(&data[..rec_bytes as usize]) {
                Ok(r) => r,
                Err(e) => return problem(format!("undecodable record: {e}"), torn),
            };
            let crc_before = self.crc;
            if record.r#type == CRC_TYPE {
                // The chain so far must match, unless this decoder has just started.
                if self.crc != 0 && record.crc != self.crc {
                    return problem(
                        format!(
                            "CRC chain broken: crc record says {:#010x}, chain is {:#010x}",
                            record.crc, self.crc
                        ),
                        false,
                    );
                }
                self.crc = record.crc;
            } else {
                let computed = crate::crc32c::update(self.crc, &record.data);
                if computed != record.crc {
                    return problem(
                        format!(
                            "CRC mismatch: record says {:#010x}, computed {computed:#010x}",
                            record.crc
                        ),
                        torn,
                    );
                }
                self.crc = computed;
            }
            self.offset = offset + FRAME_BYTES + rec_bytes + pad_bytes;
            return Ok(Next::Record(
                record,
                RecordPos {
                    file: file_no,
                    offset,
                    crc_before,
                },
            ));
        }
    }
}

/// etcd's torn-write test: the record's bytes, split at 512-byte sector boundaries of the
/// file, have a sector's share that is all zeros.
fn has_zero_sector(mut file_offset: u64, data: &[u8]) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        let chunk = ((SECTOR_BYTES - file_offset % SECTOR_BYTES) as usize).min(rest.len());
        if rest[..chunk].iter().all(|&b| b == 0) {
            return true;
        }
        file_offset += chunk as u64;
        rest = &rest[chunk..];
    }
    false
}

fn decode<M: Message + Default>(
    files: &[WalFile],
    pos: RecordPos,
    data: &[u8],
    what: &str,
) -> Result<M, EtcdDataError> {
    M::decode(data).map_err(|e| EtcdDataError::Corrupt {
        path: files[pos.file].path.clone(),
        offset: pos.offset,
        reason: format!("undecodable {what}: {e}"),
    })
}

/// What a pass over all segments finds, before the start snapshot is chosen.
pub(super) struct Survey {
    /// Snapshot records, in log order.
    pub snapshots: Vec<walpb::Snapshot>,
    pub hard_state: raftpb::HardState,
}

/// First pass (etcd 3.5+'s `ValidSnapshotEntries`): every segment, for its snapshot records
/// and the last HardState.
pub(super) fn survey(files: &[WalFile]) -> Result<Survey, EtcdDataError> {
    let mut survey = Survey {
        snapshots: Vec::new(),
        hard_state: raftpb::HardState::default(),
    };
    let mut decoder = Decoder::new(files);
    loop {
        match decoder.next()? {
            Next::End | Next::Torn(_) => return Ok(survey),
            Next::Record(rec, pos) => match rec.r#type {
                SNAPSHOT_TYPE => {
                    survey
                        .snapshots
                        .push(decode(files, pos, &rec.data, "walpb.Snapshot")?)
                }
                STATE_TYPE => survey.hard_state = decode(files, pos, &rec.data, "HardState")?,
                _ => {}
            },
        }
    }
}

/// The second pass: from the segment holding `start`, as etcd's `ReadAll`.
pub(super) struct Replay {
    pub metadata: etcdraftpb::Metadata,
    pub hard_state: raftpb::HardState,
    pub entries: Vec<EntryPos>,
    pub torn: Option<TornTail>,
    /// The segments read (the first holds the start snapshot).
    pub first_file: usize,
}

pub(super) fn replay(
    files: &[WalFile],
    start_index: u64,
    start_term: u64,
) -> Result<Replay, EtcdDataError> {
    let wal_dir = files
        .first()
        .and_then(|f| f.path.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let first_file = files
        .iter()
        .rposition(|f| f.index <= start_index)
        .ok_or_else(|| {
            EtcdDataError::Invalid(format!(
                "{}: no WAL segment reaches back to the snapshot at index {start_index}",
                wal_dir.display()
            ))
        })?;
    let read = &files[first_file..];
    for pair in read.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(EtcdDataError::Invalid(format!(
                "{}: WAL segments out of sequence: {} then {}",
                wal_dir.display(),
                pair[0].path.display(),
                pair[1].path.display()
            )));
        }
    }

    let mut metadata_bytes: Option<Vec<u8>> = None;
    let mut hard_state = raftpb::HardState::default();
    let mut entries: Vec<EntryPos> = Vec::new();
    let mut matched = false;
    let mut decoder = Decoder::new(read);
    let torn = loop {
        let (rec, pos) = match decoder.next()? {
            Next::End => break None,
            Next::Torn(t) => break Some(t),
            Next::Record(rec, pos) => (rec, pos),
        };
        match rec.r#type {
            ENTRY_TYPE => {
                let e: raftpb::Entry = decode(read, pos, &rec.data, "raftpb.Entry")?;
                if e.index > start_index {
                    // A later entry at an index replaces it and everything after it.
                    let keep = e.index - start_index - 1;
                    if keep > entries.len() as u64 {
                        return Err(EtcdDataError::Corrupt {
                            path: read[pos.file].path.clone(),
                            offset: pos.offset,
                            reason: format!(
                                "entry {} leaves a gap after entry {}",
                                e.index,
                                start_index + entries.len() as u64
                            ),
                        });
                    }
                    entries.truncate(keep as usize);
                    entries.push(EntryPos {
                        index: e.index,
                        term: e.term,
                        file: pos.file as u32,
                        offset: pos.offset,
                        crc_before: pos.crc_before,
                    });
                }
            }
            STATE_TYPE => hard_state = decode(read, pos, &rec.data, "HardState")?,
            METADATA_TYPE => match &metadata_bytes {
                Some(m) if *m != rec.data => {
                    return Err(EtcdDataError::Corrupt {
                        path: read[pos.file].path.clone(),
                        offset: pos.offset,
                        reason: "metadata differs from the earlier segments'".into(),
                    })
                }
                Some(_) => {}
                None => metadata_bytes = Some(rec.data),
            },
            CRC_TYPE => {}
            SNAPSHOT_TYPE => {
                let s: walpb::Snapshot = decode(read, pos, &rec.data, "walpb.Snapshot")?;
                if s.index == start_index {
                    if s.term != start_term {
                        return Err(EtcdDataError::Corrupt {
                            path: read[pos.file].path.clone(),
                            offset: pos.offset,
                            reason: format!(
                                "snapshot record at index {start_index} has term {}, the snapshot term {start_term}",
                                s.term
                            ),
                        });
                    }
                    matched = true;
                }
            }
            other => {
                return Err(EtcdDataError::Corrupt {
                    path: read[pos.file].path.clone(),
                    offset: pos.offset,
                    reason: format!("unknown record type {other}"),
                })
            }
        }
    };
    if !matched {
        return Err(EtcdDataError::Invalid(format!(
            "{}: no snapshot record for index {start_index} term {start_term} in the WAL",
            wal_dir.display()
        )));
    }
    let metadata_bytes = metadata_bytes.ok_or_else(|| {
        EtcdDataError::Invalid(format!("{}: no metadata record", wal_dir.display()))
    })?;
    let metadata = etcdraftpb::Metadata::decode(metadata_bytes.as_slice()).map_err(|e| {
        EtcdDataError::Invalid(format!(
            "{}: undecodable metadata record: {e}",
            wal_dir.display()
        ))
    })?;
    Ok(Replay {
        metadata,
        hard_state,
        entries,
        torn,
        first_file,
    })
}

/// Reads one entry record again, checking it against the first pass.
pub(super) fn reread(
    file: &mut File,
    path: &Path,
    pos: &EntryPos,
) -> Result<raftpb::Entry, EtcdDataError> {
    let corrupt = |reason: String| EtcdDataError::Corrupt {
        path: path.to_path_buf(),
        offset: pos.offset,
        reason,
    };
    file.seek(SeekFrom::Start(pos.offset))
        .map_err(|e| io_error(path, e))?;
    let mut word = [0u8; 8];
    file.read_exact(&mut word).map_err(|e| io_error(path, e))?;
    let rec_bytes = u64::from_le_bytes(word) & !(0xffu64 << 56);
    if rec_bytes > 1 << 32 {
        return Err(corrupt("changed since it was read".into()));
    }
    let mut data = vec![0u8; rec_bytes as usize];
    file.read_exact(&mut data).map_err(|e| io_error(path, e))?;
    let rec = walpb::Record::decode(data.as_slice())
        .map_err(|_| corrupt("changed since it was read".into()))?;
    if rec.r#type != ENTRY_TYPE || crate::crc32c::update(pos.crc_before, &rec.data) != rec.crc {
        return Err(corrupt("changed since it was read".into()));
    }
    let entry = raftpb::Entry::decode(rec.data.as_slice())
        .map_err(|e| corrupt(format!("undecodable raftpb.Entry: {e}")))?;
    if entry.index != pos.index || entry.term != pos.term {
        return Err(corrupt("changed since it was read".into()));
    }
    Ok(entry)
}
