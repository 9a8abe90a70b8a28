//! Cairn's state machine, as of one storage view, written as etcd's bbolt file.
//!
//! Streams: each family is read in key order and written as it is read (the bbolt writer
//! keeps a page per tree level and one leaf of up to 16 pages), so memory stays bounded
//! however large the store is. Cairn's and etcd's revision keys sort alike, so the `key`
//! bucket needs no sorting. To an output that cannot seek (a client's stream), the view is
//! written twice (`export_unseekable`).

use std::collections::BTreeMap;
use std::io::{self, Seek, Write};

use prost::Message;

use super::*;
use crate::bbolt::{FirstPass, SecondPass, Summary, Writer};
use crate::etcd_data::EtcdMember;
use crate::lease::LeaseRecord;
use crate::mvcc::Revision;
use crate::storage::{MetaKey, View};

/// bbolt's page size on the machines etcd runs on.
const PAGE_SIZE: u32 = 4096;

/// What the snapshot says about the cluster besides the store: read by the caller from the
/// same view, so that it describes the same point.
#[derive(Debug, Clone, Default)]
pub struct SnapshotInfo {
    /// The last applied log index (etcd's consistent index) and its term.
    pub consistent_index: u64,
    pub term: u64,
    pub members: Vec<EtcdMember>,
    /// `major.minor.0`, as etcd stores it; None before the cluster version is decided.
    pub cluster_version: Option<String>,
    /// etcd 3.6+'s storage version (`major.minor.0`), if the cluster runs as 3.6 or later.
    pub storage_version: Option<String>,
    /// The highest compaction whose unreachable revisions were all deleted before the view
    /// was taken (`Mvcc::physically_compacted_rev`). Below the compacted revision, the file
    /// says the compaction is unfinished, so that etcd finishes it when it restores.
    pub physically_compacted_rev: i64,
}

fn io_err(e: crate::storage::StorageError) -> io::Error {
    io::Error::other(e.to_string())
}

/// As [`export`], to an output that cannot seek (a client's stream): the view is written
/// twice (`bbolt::FirstPass`, then `SecondPass` to `out`), and `measured` is told the file's
/// summary before its first byte goes out. The first pass gives up once `wanted` says no,
/// and so does the whole when `measured` fails.
pub fn export_unseekable<W: Write>(
    view: &View<'_>,
    info: &SnapshotInfo,
    out: W,
    wanted: impl Fn() -> bool + Send + 'static,
    measured: impl FnOnce(&Summary) -> io::Result<()>,
) -> io::Result<(Summary, W)> {
    let first = FirstPass::new(PAGE_SIZE).while_wanted(wanted);
    let (summary, first) = export(view, info, first)?;
    measured(&summary)?;
    let (again, second) = export(view, info, SecondPass::new(first.measured(), out))?;
    let out = second.into_inner()?;
    if again != summary {
        return Err(io::Error::other(format!(
            "the second pass wrote {again:?}, the first {summary:?}"
        )));
    }
    Ok((summary, out))
}

/// Writes `view` as etcd's bbolt file to `out` (which must start empty at its position).
pub fn export<W: Write + Seek>(
    view: &View<'_>,
    info: &SnapshotInfo,
    out: W,
) -> io::Result<(Summary, W)> {
    let mut writer = Writer::create(out, PAGE_SIZE)?;

    writer.begin_bucket(BUCKET_KEY.as_bytes())?;
    for item in view.kv().iter() {
        let (key, value) = item.map_err(io_err)?;
        let (rev, tombstone) = Revision::from_key(&key)
            .ok_or_else(|| io::Error::other("a revision key Cairn cannot read"))?;
        writer.put(&rev.to_etcd_key(tombstone), &value)?;
    }

    writer.begin_bucket(BUCKET_LEASE.as_bytes())?;
    for item in view.lease().iter() {
        let (key, value) = item.map_err(io_err)?;
        // Attached keys are not stored by etcd: it finds them in the keys' lease field.
        if let Some(LeaseRecord::Lease { id, ttl_secs }) = LeaseRecord::decode(&key, &value) {
            let lease = LeasePb {
                id,
                ttl: ttl_secs,
                remaining_ttl: 0,
            };
            writer.put(&id.to_be_bytes(), &lease.encode_to_vec())?;
        }
    }

    for bucket in crate::auth::ETCD_BUCKETS {
        writer.begin_bucket(bucket.as_bytes())?;
        // Cairn's records of one etcd bucket keep their order, but for `auth`'s two, which
        // are few: sorted here.
        let mut records = BTreeMap::new();
        for item in view.auth().iter() {
            let (key, value) = item.map_err(io_err)?;
            match crate::auth::etcd_place_of(&key) {
                Some((b, etcd_key)) if b == bucket && bucket == "auth" => {
                    records.insert(etcd_key.to_vec(), value.to_vec());
                }
                Some((b, etcd_key)) if b == bucket => writer.put(etcd_key, &value)?,
                _ => {}
            }
        }
        for (key, value) in records {
            writer.put(&key, &value)?;
        }
    }

    writer.begin_bucket(BUCKET_ALARM.as_bytes())?;
    let mut alarms = Vec::new();
    for value in view.meta().alarms() {
        // etcd's key is the encoded `AlarmMember`, its value empty.
        alarms.push(value.map_err(io_err)?.to_vec());
    }
    alarms.sort();
    for alarm in alarms {
        writer.put(&alarm, b"")?;
    }

    writer.begin_bucket(BUCKET_MEMBERS.as_bytes())?;
    let mut members = BTreeMap::new();
    for member in &info.members {
        let json = serde_json::to_vec(member).map_err(io::Error::other)?;
        members.insert(format!("{:x}", member.id), json);
    }
    for (id, json) in members {
        writer.put(id.as_bytes(), &json)?;
    }
    writer.begin_bucket(BUCKET_MEMBERS_REMOVED.as_bytes())?;

    writer.begin_bucket(BUCKET_CLUSTER.as_bytes())?;
    if let Some(version) = &info.cluster_version {
        writer.put(CLUSTER_VERSION, version.as_bytes())?;
    }

    writer.begin_bucket(BUCKET_META.as_bytes())?;
    let mut meta = BTreeMap::new();
    meta.insert(
        META_CONSISTENT_INDEX,
        info.consistent_index.to_be_bytes().to_vec(),
    );
    meta.insert(META_TERM, info.term.to_be_bytes().to_vec());
    let (voters, learners): (Vec<&EtcdMember>, Vec<&EtcdMember>) =
        info.members.iter().partition(|m| !m.is_learner);
    let ids = |members: Vec<&EtcdMember>| members.iter().map(|m| m.id).collect::<Vec<_>>();
    let conf_state = serde_json::json!({
        "voters": ids(voters),
        "learners": ids(learners),
        "auto_leave": false,
    });
    meta.insert(META_CONF_STATE, conf_state.to_string().into_bytes());
    let compact_rev = view
        .meta()
        .get(MetaKey::CompactRev)
        .map_err(io_err)?
        .and_then(|v| v.try_into().ok().map(i64::from_be_bytes));
    if let Some(rev) = compact_rev.filter(|&rev| rev > 0) {
        meta.insert(META_SCHEDULED_COMPACT, compact_rev_bytes(rev));
        // Unreachable revisions still on disk (the compactor works at a bounded pace) are
        // in the file: etcd deletes them, as it does after a stop, when the finished
        // compaction is behind the scheduled one. Cairn's import takes the later of the two.
        let finished = info.physically_compacted_rev.min(rev);
        if finished > 0 {
            meta.insert(META_FINISHED_COMPACT, compact_rev_bytes(finished));
        }
    }
    if let Some(version) = &info.storage_version {
        meta.insert(META_STORAGE_VERSION, version.as_bytes().to_vec());
    }
    for (key, value) in meta {
        writer.put(key, &value)?;
    }

    writer.finish_into_inner()
}
