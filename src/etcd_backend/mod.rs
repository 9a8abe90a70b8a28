//! etcd's backend: the buckets of its bbolt file and their encodings, and Cairn's state
//! machine converted to and from them. A Maintenance.Snapshot is Cairn's state written in
//! this layout (`export`), so that etcd's tools read it and etcd restores it; `cairn
//! snapshot restore` and the takeover of an etcd data directory read one back into
//! Cairn's storage (`import`). The sha256 etcd appends to a snapshot file is checked here
//! too (`snapshot_file`).
//!
//! The buckets: `key` (revision → `mvccpb.KeyValue`, the same bytes in both), `lease` (ID →
//! `leasepb.Lease`), `meta` (consistent index, term, compaction revisions, conf state,
//! storage version), `members` and `members_removed` (by hex ID), `cluster` (the cluster
//! version), `auth`, `authUsers`, `authRoles`, `alarm`. Each family's own module says how
//! its records map (`mvcc::Revision`, `lease::LeaseRecord`, `auth::etcd_place_of`).
//!
//! May call `bbolt`, `storage`, `mvcc`, `lease`, `auth`, `etcd_data` and `crc32c`.

mod export;
mod import;
mod snapshot_file;
mod status;

pub use export::{export, export_unseekable, SnapshotInfo};
pub use import::{import, ImportOptions, Imported};
pub use snapshot_file::{check_snapshot_file, SnapshotFileError, SHA256_LEN};
pub use status::{status, SnapshotStatus};

/// etcd's bucket names, in the order bbolt sorts them.
const BUCKET_ALARM: &str = "alarm";
const BUCKET_CLUSTER: &str = "cluster";
const BUCKET_KEY: &str = "key";
const BUCKET_LEASE: &str = "lease";
const BUCKET_MEMBERS: &str = "members";
const BUCKET_MEMBERS_REMOVED: &str = "members_removed";
const BUCKET_META: &str = "meta";

/// Keys of the `meta` bucket.
const META_CONSISTENT_INDEX: &[u8] = b"consistent_index";
const META_TERM: &[u8] = b"term";
const META_CONF_STATE: &[u8] = b"confState";
const META_SCHEDULED_COMPACT: &[u8] = b"scheduledCompactRev";
const META_FINISHED_COMPACT: &[u8] = b"finishedCompactRev";
const META_STORAGE_VERSION: &[u8] = b"storageVersion";
/// Key of the `cluster` bucket.
const CLUSTER_VERSION: &[u8] = b"clusterVersion";

/// etcd's `leasepb.Lease`, the value of its `lease` bucket.
#[derive(Clone, PartialEq, prost::Message)]
struct LeasePb {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
    #[prost(int64, tag = "3")]
    remaining_ttl: i64,
}

/// A compaction revision as etcd stores it in `meta`: a revision key with sub 0.
fn compact_rev_bytes(rev: i64) -> Vec<u8> {
    crate::mvcc::Revision::new(rev, 0).to_etcd_key(false)
}

fn compact_rev_of(bytes: &[u8]) -> Option<i64> {
    crate::mvcc::Revision::from_etcd_key(bytes).map(|(rev, _)| rev.main)
}

fn u64_of(bytes: &[u8]) -> Option<u64> {
    bytes.try_into().ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests;
