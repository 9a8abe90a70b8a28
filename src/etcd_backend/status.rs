//! etcdutl's `snapshot status` of an etcd bbolt file: the CRC-32C of every bucket's name,
//! keys and values in order, the latest revision of the `key` bucket, the keys live at it,
//! the file's size, and the storage version etcd 3.6+ records.

use std::collections::HashSet;
use std::io;

use prost::Message;

use super::*;
use crate::bbolt::Reader;
use crate::mvcc::Revision;
use crate::proto::mvccpb::KeyValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotStatus {
    pub hash: u32,
    pub revision: i64,
    pub total_keys: u64,
    pub total_size: u64,
    pub version: String,
}

pub fn status(db: &Reader) -> io::Result<SnapshotStatus> {
    let mut crc = crate::crc32c::Crc32c::default();
    let mut revision = 0;
    let mut live: HashSet<Vec<u8>> = HashSet::new();
    let mut version = String::new();
    for bucket in db.buckets()? {
        crc.update(&bucket.name);
        let is_key = bucket.name == BUCKET_KEY.as_bytes();
        let is_meta = bucket.name == BUCKET_META.as_bytes();
        for entry in db.entries(&bucket.name)? {
            let entry = entry?;
            crc.update(&entry.key);
            crc.update(&entry.value);
            if is_key {
                let (rev, tombstone) = Revision::from_etcd_key(&entry.key).ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidData, "cannot parse revision key")
                })?;
                revision = rev.main;
                let kv = KeyValue::decode(&*entry.value).map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("cannot unmarshal value: {e}"),
                    )
                })?;
                match tombstone {
                    true => live.remove(&kv.key),
                    false => live.insert(kv.key),
                };
            }
            if is_meta && entry.key == META_STORAGE_VERSION {
                version = String::from_utf8_lossy(&entry.value).into_owned();
            }
        }
    }
    Ok(SnapshotStatus {
        hash: crc.finish(),
        revision,
        total_keys: live.len() as u64,
        total_size: db.page_count() * u64::from(db.page_size()),
        version,
    })
}
