//! DeleteRange: delete a key or a range, optionally returning the deleted pairs.

use crate::mvcc::{KvRead, RangeEnd, RangeOptions, WriteTxn};
use crate::proto::etcdserverpb::{DeleteRangeRequest, DeleteRangeResponse};

pub fn delete_range(txn: &mut WriteTxn<'_, '_>, d: &DeleteRangeRequest) -> DeleteRangeResponse {
    let end = RangeEnd::from_request(&d.range_end);
    let prev_kvs = if d.prev_kv {
        // Reads at the transaction's own revision never hit a compacted or future revision.
        txn.range(&d.key, end, RangeOptions::default())
            .map(|r| r.kvs)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let (deleted, revision) = txn.delete_range(&d.key, end);
    DeleteRangeResponse {
        header: Some(super::header(revision)),
        deleted,
        prev_kvs,
    }
}
