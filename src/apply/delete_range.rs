//! DeleteRange: delete a key or a range, optionally returning the deleted pairs.

use crate::error::EtcdError;
use crate::mvcc::{KvRead, RangeEnd, RangeOptions, WriteTxn};
use crate::proto::etcdserverpb::{DeleteRangeRequest, DeleteRangeResponse};

/// Fails only if storage does.
pub fn delete_range(
    txn: &mut WriteTxn<'_, '_>,
    d: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, EtcdError> {
    let end = RangeEnd::from_request(&d.range_end);
    let prev_kvs = if d.prev_kv {
        txn.range(&d.key, end, RangeOptions::default())?.kvs
    } else {
        Vec::new()
    };
    let (deleted, revision) = txn.delete_range(&d.key, end);
    Ok(DeleteRangeResponse {
        header: Some(super::header(revision)),
        deleted,
        prev_kvs,
    })
}
