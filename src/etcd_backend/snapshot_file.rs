//! A snapshot file as `etcdctl snapshot save` writes it: the bbolt file, then the sha256 of
//! it, which etcd checks before restoring. etcd tells a file with a hash from one without by
//! its length: a bbolt file's is a multiple of 512, so 32 bytes more means a hash follows.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

pub const SHA256_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("{0}")]
    Io(#[from] io::Error),
    /// etcd's words.
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
    /// etcd's words, the hashes printed as Go prints byte slices (`[1 2 3]`).
    #[error("expected sha256 {}, got {}", go_bytes(expected), go_bytes(got))]
    HashMismatch { expected: Vec<u8>, got: Vec<u8> },
}

/// Checks the file's hash (unless `skip_hash_check`) and answers the length of the bbolt
/// file in it: what follows is the hash.
pub fn check_snapshot_file(path: &Path, skip_hash_check: bool) -> Result<u64, SnapshotFileError> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let has_hash = len % 512 == SHA256_LEN as u64;
    if !has_hash {
        return match skip_hash_check {
            true => Ok(len),
            false => Err(SnapshotFileError::MissingHash),
        };
    }
    let db_len = len - SHA256_LEN as u64;
    if skip_hash_check {
        return Ok(db_len);
    }
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut remaining = db_len;
    let mut buf = vec![0u8; 1 << 20];
    while remaining > 0 {
        let n = buf.len().min(remaining as usize);
        file.read_exact(&mut buf[..n])?;
        context.update(&buf[..n]);
        remaining -= n as u64;
    }
    let mut expected = vec![0u8; SHA256_LEN];
    file.read_exact(&mut expected)?;
    let got = context.finish().as_ref().to_vec();
    if got != expected {
        return Err(SnapshotFileError::HashMismatch { expected, got });
    }
    Ok(db_len)
}

fn go_bytes(bytes: &[u8]) -> String {
    let numbers: Vec<String> = bytes.iter().map(u8::to_string).collect();
    format!("[{}]", numbers.join(" "))
}
