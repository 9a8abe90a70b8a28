//! `HashKV`: a CRC-32C over the stored history up to a revision, computed over exactly the
//! bytes etcd hashes (its bucket name, its revision keys, the encoded `KeyValue`s), so a
//! Cairn member and an etcd member holding the same history report the same hash.
//!
//! `Hash`: a CRC-32C over the state machine's records as Cairn stores them (see
//! `Mvcc::hash`); etcd's hashes its bbolt file's buckets, so the two never compare.

use std::collections::HashSet;

use prost::Message;

use super::index::KeyIndex;
use super::revision::Revision;
use super::Mvcc;
use crate::error::EtcdError;
use crate::proto::mvccpb::KeyValue;

/// etcd's name for the bucket of revisions; part of what it hashes.
const KEY_BUCKET_NAME: &[u8] = b"key";

pub struct HashKv {
    pub hash: u32,
    pub current_rev: i64,
    pub compact_rev: i64,
    /// The revision hashed up to.
    pub hash_rev: i64,
}

/// `Hash`'s answer: the hash, and the store's revision it was taken at.
pub struct StoreHash {
    pub hash: u32,
    pub rev: i64,
}

impl Mvcc {
    /// The hash of history up to `rev` (0: the current revision).
    pub fn hash_kv(&self, rev: i64) -> Result<HashKv, EtcdError> {
        let (rev, current_rev, compact_rev, keep, view) = {
            let state = self.state.read().expect("mvcc lock");
            if rev > 0 && rev <= state.compact_rev {
                return Err(EtcdError::Compacted);
            }
            if rev > state.current_rev {
                return Err(EtcdError::FutureRev);
            }
            let rev = if rev == 0 { state.current_rev } else { rev };
            let keep = kept_at(&state.index, rev);
            let view = self.storage.view();
            (rev, state.current_rev, state.compact_rev, keep, view)
        };
        let mut crc = crate::crc32c::Crc32c::default();
        crc.update(KEY_BUCKET_NAME);
        for item in view.kv().iter() {
            let (key, value) = item.map_err(|_| EtcdError::Corrupt)?;
            let (r, tombstone) = Revision::from_key(&key).ok_or(EtcdError::Corrupt)?;
            if r.main > rev {
                break;
            }
            // Revisions a compaction made unreachable may still be on disk: etcd skips
            // them, unless nothing is kept at all.
            if r.main <= compact_rev && !keep.is_empty() && !keep.contains(&r) {
                continue;
            }
            // A delete at the compacted revision is kept on disk (see `KeyIndex::compact`);
            // etcd leaves it out of the hash so that members from before and after that
            // change agree, and so does Cairn.
            if tombstone && r.main == compact_rev {
                continue;
            }
            crc.update(&r.to_etcd_key(tombstone));
            if tombstone {
                // etcd's tombstone holds the key alone.
                let kv = KeyValue::decode(&*value).map_err(|_| EtcdError::Corrupt)?;
                crc.update(
                    &KeyValue {
                        key: kv.key,
                        ..KeyValue::default()
                    }
                    .encode_to_vec(),
                );
            } else {
                crc.update(&value);
            }
        }
        Ok(HashKv {
            hash: crc.finish(),
            current_rev,
            compact_rev,
            hash_rev: rev,
        })
    }

    /// `Hash`: every record of the state machine's families at the current revision, one
    /// family after another, each its name then its keys and values in key order: `kv`
    /// without the revisions compaction made unreachable (members delete those from disk
    /// each at its own pace), then what `View::replicated_records` adds. Members that
    /// applied the same entries give the same hash.
    pub fn hash(&self) -> Result<StoreHash, EtcdError> {
        let (rev, compact_rev, keep, view) = {
            let state = self.state.read().expect("mvcc lock");
            let keep = kept_at(&state.index, state.current_rev);
            let view = self.storage.view();
            (state.current_rev, state.compact_rev, keep, view)
        };
        let mut crc = crate::crc32c::Crc32c::default();
        crc.update(crate::storage::CF_KV.as_bytes());
        for item in view.kv().iter() {
            let (key, value) = item.map_err(|_| EtcdError::Corrupt)?;
            let (r, _) = Revision::from_key(&key).ok_or(EtcdError::Corrupt)?;
            if r.main <= compact_rev && !keep.contains(&r) {
                continue;
            }
            crc.update(&key);
            crc.update(&value);
        }
        view.replicated_records(|bytes| crc.update(bytes))
            .map_err(|_| EtcdError::Corrupt)?;
        Ok(StoreHash {
            hash: crc.finish(),
            rev,
        })
    }
}

/// What a compaction at `rev` would keep: each key's latest revision at `rev`, unless the
/// key was deleted then (etcd's `Keep`).
fn kept_at(index: &KeyIndex, rev: i64) -> HashSet<Revision> {
    let mut keep = HashSet::new();
    index.range(b"", super::RangeEnd::Unbounded, rev, |_, entry| {
        keep.insert(entry.rev);
        true
    });
    keep
}
