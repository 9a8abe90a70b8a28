//! The snapshot file, and installing one.
//!
//! A snapshot file is a stream of records of the `kv`, `meta`, `lease` and `auth` families,
//! in that order and in key order within each: a tag byte (the family's place in
//! `SNAPSHOT_CFS`), the key's length (u32, big-endian), the key, the value's length (u32,
//! big-endian), the value. Nothing else: no header, no count. Members of different versions
//! send each other these files, so the format only grows: a family added later gets the
//! next tag (`auth`, tag 3, came with Auth; a member older than that refuses a snapshot
//! holding auth records, and only such a snapshot).
//!
//! Neither export nor import holds the state in memory: both stream record by record. An
//! import replaces the four families; it is made crash-safe by a marker in `raft_state`
//! (which a snapshot does not carry): set, synced, before anything is replaced
//! (`begin_import`), removed in the import's last synced write. A marker found at start-up
//! (`interrupted_import`) means a crash came in between: the import is redone.

use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};

use super::{
    Storage, StorageError, StorageResult, View, WriteBatch, CF_AUTH, CF_KV, CF_LEASE, CF_META,
};

/// The families a snapshot carries, by their tag in the stream.
const SNAPSHOT_CFS: [&str; 4] = [CF_KV, CF_META, CF_LEASE, CF_AUTH];
/// In `raft_state`: the path of the snapshot being imported.
const KEY_INSTALLING: &[u8] = b"installing_snapshot";
/// Records written per storage batch while importing.
const IMPORT_RECORDS_PER_BATCH: usize = 10_000;

fn io(e: std::io::Error) -> StorageError {
    StorageError::Io(e.to_string())
}

/// What a `return` failpoint of an import step injects: a failed write.
#[cfg_attr(not(feature = "failpoints"), allow(dead_code))]
fn injected_failure(name: &'static str) -> StorageResult<()> {
    Err(io(crate::failpoints::disk_failed(name)))
}

impl View<'_> {
    /// Writes the view's snapshot families to a new file at `path`, synced.
    pub fn export_snapshot(&self, path: &Path) -> StorageResult<()> {
        let file = std::fs::File::create(path).map_err(io)?;
        let mut out = BufWriter::new(WritebackFile::new(file));
        let source = self.source();
        for (tag, name) in SNAPSHOT_CFS.iter().enumerate() {
            for item in source.iter(self.storage.cf(name), rocksdb::IteratorMode::Start) {
                let (key, value) = item?;
                write_record(&mut out, tag as u8, &key, &value).map_err(io)?;
            }
        }
        out.into_inner()
            .map_err(|e| io(e.into_error()))?
            .file
            .sync_all()
            .map_err(io)
    }
}

/// Pages of a file being written are sent to disk every this many bytes.
const WRITEBACK_EVERY_BYTES: u64 = 8 << 20;

/// A file whose pages start going to disk as it is written (as RocksDB's `bytes_per_sync`),
/// so that its final fsync has little left to do. A snapshot file is the size of the store,
/// and one fsync of gigabytes of dirty pages holds up the Raft log's fsyncs behind it for as
/// long: about 0.9 s for 2 GB, measured with puts stalled meanwhile (BENCHMARKS.md).
pub(super) struct WritebackFile {
    pub(super) file: std::fs::File,
    written: u64,
    /// Where the range not yet sent to disk starts.
    pub(super) unsent_from: u64,
}

impl WritebackFile {
    pub(super) fn new(file: std::fs::File) -> WritebackFile {
        WritebackFile {
            file,
            written: 0,
            unsent_from: 0,
        }
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        if self.written - self.unsent_from >= WRITEBACK_EVERY_BYTES {
            use std::os::fd::AsRawFd;
            // SAFETY: a valid open descriptor and a range within the file. It only starts
            // the writeback (it does not wait for it), and its failure loses nothing: the
            // final fsync writes whatever is left.
            unsafe {
                libc::sync_file_range(
                    self.file.as_raw_fd(),
                    self.unsent_from as libc::off64_t,
                    (self.written - self.unsent_from) as libc::off64_t,
                    libc::SYNC_FILE_RANGE_WRITE,
                );
            }
            self.unsent_from = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

fn write_record(out: &mut impl Write, tag: u8, key: &[u8], value: &[u8]) -> std::io::Result<()> {
    out.write_all(&[tag])?;
    out.write_all(&(key.len() as u32).to_be_bytes())?;
    out.write_all(key)?;
    out.write_all(&(value.len() as u32).to_be_bytes())?;
    out.write_all(value)
}

impl Storage {
    /// The snapshot an interrupted import was installing, if a crash interrupted one.
    pub fn interrupted_import(&self) -> StorageResult<Option<PathBuf>> {
        let marker = self.raft_state().get_raw(KEY_INSTALLING)?;
        Ok(marker.map(|path| PathBuf::from(String::from_utf8_lossy(&path).into_owned())))
    }

    /// Records, synced, that the snapshot at `path` is being imported: from here on a
    /// restart finds it in `interrupted_import`.
    pub fn begin_import(&self, path: &Path) -> StorageResult<()> {
        let mut marker = WriteBatch::default();
        self.raft_state().put_raw(
            &mut marker,
            KEY_INSTALLING,
            path.to_string_lossy().as_bytes(),
        );
        fail::fail_point!("snapshot_install_before_marker", |_| injected_failure(
            "snapshot_install_before_marker"
        ));
        self.write(marker, true)?;
        fail::fail_point!("snapshot_install_after_marker", |_| injected_failure(
            "snapshot_install_after_marker"
        ));
        Ok(())
    }

    /// Replaces the snapshot families with the file's records, in bounded batches, then
    /// removes the marker `begin_import` set.
    pub fn import_snapshot(&self, path: &Path) -> StorageResult<()> {
        let mut clear = WriteBatch::default();
        for name in SNAPSHOT_CFS {
            let cf = self.cf(name);
            for item in self.db.iterator_cf(cf, rocksdb::IteratorMode::Start) {
                let (key, _) = item?;
                clear.delete_cf(cf, key);
                if clear.len() >= IMPORT_RECORDS_PER_BATCH {
                    self.write(std::mem::take(&mut clear), false)?;
                }
            }
        }
        self.write(clear, false)?;
        let mut reader = BufReader::new(std::fs::File::open(path).map_err(io)?);
        let mut batch = WriteBatch::default();
        while let Some((name, key, value)) = read_record(&mut reader)? {
            batch.put_cf(self.cf(name), key, value);
            if batch.len() >= IMPORT_RECORDS_PER_BATCH {
                self.write(std::mem::take(&mut batch), false)?;
            }
        }
        self.write(batch, false)?;
        fail::fail_point!("snapshot_install_after_load", |_| injected_failure(
            "snapshot_install_after_load"
        ));
        let mut done = WriteBatch::default();
        self.raft_state().delete_raw(&mut done, KEY_INSTALLING);
        self.write(done, true)?;
        fail::fail_point!("snapshot_install_after_finish", |_| injected_failure(
            "snapshot_install_after_finish"
        ));
        Ok(())
    }
}

/// The next record (its family's name, key, value), or `None` at the end of the file.
fn read_record(reader: &mut impl Read) -> StorageResult<Option<(&'static str, Vec<u8>, Vec<u8>)>> {
    let mut tag = [0u8; 1];
    match reader.read_exact(&mut tag) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(io(e)),
    }
    let name = SNAPSHOT_CFS
        .get(tag[0] as usize)
        .ok_or(StorageError::Corrupt("snapshot record tag"))?;
    let mut read_field = || -> StorageResult<Vec<u8>> {
        let mut len = [0u8; 4];
        reader.read_exact(&mut len).map_err(io)?;
        let mut field = vec![0; u32::from_be_bytes(len) as usize];
        reader.read_exact(&mut field).map_err(io)?;
        Ok(field)
    };
    let key = read_field()?;
    let value = read_field()?;
    Ok(Some((name, key, value)))
}
