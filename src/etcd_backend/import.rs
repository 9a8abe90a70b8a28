//! An etcd bbolt file (a snapshot, or a member's `member/snap/db`) read into Cairn's
//! storage: the state machine's families (`kv`, `lease`, `auth`, the store's records in
//! `meta`). What belongs to the cluster rather than the store (members, the cluster
//! version, the consistent index) is answered to the caller, which decides what to keep.
//!
//! Every revision, tombstone and compaction revision comes through unchanged; keys are
//! attached to their leases as etcd's lessor attaches them when it starts (a live key whose
//! lease exists). Records are written in bounded batches; the keys' leases are held in
//! memory (one entry per live key with a lease) to attach them at the end.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;

use prost::Message;

use super::*;
use crate::bbolt::Reader;
use crate::etcd_data::EtcdMember;
use crate::lease::LeaseRecord;
use crate::mvcc::Revision;
use crate::proto::mvccpb::KeyValue;
use crate::storage::{MetaKey, Storage, WriteBatch};

/// Records written per storage batch.
const RECORDS_PER_BATCH: usize = 10_000;

/// etcdutl's `--bump-revision` and `--mark-compacted`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Added to the latest revision: a restored store's next revisions are above any a
    /// watcher of the old cluster has seen.
    pub bump_revision: u64,
    /// The latest revision (after the bump) becomes the compaction revision, so that
    /// watchers resuming from older revisions are told they were compacted.
    pub mark_compacted: bool,
}

/// What the file held besides the store, and what was imported.
#[derive(Debug, Clone, Default)]
pub struct Imported {
    pub consistent_index: u64,
    pub term: u64,
    pub members: Vec<EtcdMember>,
    pub removed_members: Vec<u64>,
    pub cluster_version: Option<String>,
    pub current_rev: i64,
    pub compact_rev: Option<i64>,
    /// Records of the `key` bucket (revisions, tombstones included).
    pub revisions: u64,
    pub leases: u64,
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn storage_err(e: crate::storage::StorageError) -> io::Error {
    io::Error::other(e.to_string())
}

/// Writes batches of at most `RECORDS_PER_BATCH` records.
struct BatchWriter<'a> {
    storage: &'a Storage,
    batch: WriteBatch,
    records: usize,
}

impl BatchWriter<'_> {
    fn added(&mut self) -> io::Result<()> {
        self.records += 1;
        if self.records >= RECORDS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.records = 0;
        self.storage.write(batch, false).map_err(storage_err)
    }
}

/// Reads `db` into `storage`, which must hold no state machine yet (a new data directory).
pub fn import(db: &Reader, storage: &Storage, options: ImportOptions) -> io::Result<Imported> {
    let mut imported = Imported::default();
    let mut out = BatchWriter {
        storage,
        batch: WriteBatch::default(),
        records: 0,
    };

    // Each key's lease as of its latest revision (tombstones remove the key).
    let mut leased: HashMap<Vec<u8>, i64> = HashMap::new();
    let mut last_rev = 0;
    for entry in db.entries(BUCKET_KEY.as_bytes())? {
        let entry = entry?;
        let (rev, tombstone) = Revision::from_etcd_key(&entry.key)
            .ok_or_else(|| invalid("a key bucket record that is not a revision"))?;
        let kv = KeyValue::decode(&*entry.value)
            .map_err(|_| invalid(format!("an unreadable key-value at revision {}", rev.main)))?;
        if rev.main < last_rev {
            return Err(invalid("revisions out of order in the key bucket"));
        }
        last_rev = rev.main;
        match (tombstone, kv.lease) {
            (true, _) | (false, 0) => leased.remove(&kv.key),
            (false, lease) => leased.insert(kv.key, lease),
        };
        storage
            .kv()
            .put(&mut out.batch, &rev.to_key(tombstone), &entry.value);
        imported.revisions += 1;
        out.added()?;
    }

    let mut leases = BTreeSet::new();
    if db.bucket(BUCKET_LEASE.as_bytes())?.is_some() {
        for entry in db.entries(BUCKET_LEASE.as_bytes())? {
            let entry = entry?;
            let lease = LeasePb::decode(&*entry.value)
                .map_err(|_| invalid("an unreadable lease record"))?;
            let (key, value) = LeaseRecord::Lease {
                id: lease.id,
                ttl_secs: lease.ttl,
            }
            .encode();
            storage.lease().put(&mut out.batch, &key, &value);
            leases.insert(lease.id);
            out.added()?;
        }
    }
    imported.leases = leases.len() as u64;
    for (key, id) in leased {
        // etcd attaches a key only to a lease it has (a key whose lease was lost stays).
        if leases.contains(&id) {
            let (key, value) = LeaseRecord::Attached { id, key }.encode();
            storage.lease().put(&mut out.batch, &key, &value);
            out.added()?;
        }
    }

    for bucket in crate::auth::ETCD_BUCKETS {
        if db.bucket(bucket.as_bytes())?.is_none() {
            continue;
        }
        for entry in db.entries(bucket.as_bytes())? {
            let entry = entry?;
            if let Some(key) = crate::auth::record_key_of_etcd(bucket, &entry.key) {
                storage.auth().put(&mut out.batch, &key, &entry.value);
                out.added()?;
            }
        }
    }

    if db.bucket(BUCKET_ALARM.as_bytes())?.is_some() {
        for entry in db.entries(BUCKET_ALARM.as_bytes())? {
            let entry = entry?;
            let alarm = crate::proto::etcdserverpb::AlarmMember::decode(&*entry.key)
                .map_err(|_| invalid("an unreadable alarm record"))?;
            let key = MetaKey::Alarm {
                member_id: alarm.member_id,
                alarm: alarm.alarm,
            };
            storage.meta().put(&mut out.batch, key, &entry.key);
        }
    }

    let meta = read_bucket(db, BUCKET_META)?;
    imported.consistent_index = meta
        .get(META_CONSISTENT_INDEX)
        .and_then(|v| u64_of(v))
        .unwrap_or(0);
    imported.term = meta.get(META_TERM).and_then(|v| u64_of(v)).unwrap_or(0);
    // A compaction etcd scheduled but did not finish is finished by Cairn when it starts.
    let compact_rev = [META_SCHEDULED_COMPACT, META_FINISHED_COMPACT]
        .iter()
        .filter_map(|k| meta.get(*k).and_then(|v| compact_rev_of(v)))
        .max();
    // As etcd: the store's revision is its latest, or the compaction's if that is later.
    let mut current_rev = last_rev.max(compact_rev.unwrap_or(0)).max(1);
    let mut compact_rev = compact_rev;
    if options.bump_revision > 0 {
        current_rev += options.bump_revision as i64;
    }
    if options.mark_compacted {
        compact_rev = Some(current_rev);
    }
    storage.meta().put(
        &mut out.batch,
        MetaKey::CurrentRev,
        &current_rev.to_be_bytes(),
    );
    if let Some(rev) = compact_rev {
        storage
            .meta()
            .put(&mut out.batch, MetaKey::CompactRev, &rev.to_be_bytes());
    }
    imported.current_rev = current_rev;
    imported.compact_rev = compact_rev;

    for (id, json) in read_bucket(db, BUCKET_MEMBERS)? {
        let member: EtcdMember = serde_json::from_slice(&json)
            .map_err(|e| invalid(format!("member {}: {e}", String::from_utf8_lossy(&id))))?;
        imported.members.push(member);
    }
    for id in read_bucket(db, BUCKET_MEMBERS_REMOVED)?.keys() {
        let id = std::str::from_utf8(id)
            .ok()
            .and_then(|s| u64::from_str_radix(s, 16).ok())
            .ok_or_else(|| invalid("a removed member ID that is not hexadecimal"))?;
        imported.removed_members.push(id);
    }
    imported.cluster_version = read_bucket(db, BUCKET_CLUSTER)?
        .get(CLUSTER_VERSION)
        .map(|v| String::from_utf8_lossy(v).into_owned());
    out.flush()?;
    Ok(imported)
}

/// A small bucket's records (empty when etcd has no such bucket).
fn read_bucket(db: &Reader, name: &str) -> io::Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut records = BTreeMap::new();
    if db.bucket(name.as_bytes())?.is_some() {
        for entry in db.entries(name.as_bytes())? {
            let entry = entry?;
            records.insert(entry.key, entry.value);
        }
    }
    Ok(records)
}
