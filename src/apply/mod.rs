//! etcd's request semantics on top of the MVCC store: what Range, Put, DeleteRange, Txn and
//! Compact mean, one file per request.
//!
//! Writes run here when the Raft state machine applies a committed entry; reads run here
//! when the API serves them. Owns no state. May call `mvcc` (and, as they land, `lease`).

mod delete_range;
mod put;
mod range;
pub mod txn;

pub use range::range;

use crate::error::EtcdError;
use crate::mvcc::WriteBatchGuard;
use crate::proto::cairnraftpb::{apply_result, internal_request, ApplyResult, InternalRequest};
use crate::proto::etcdserverpb::{CompactionResponse, ResponseHeader};

/// Applies one committed request as its own transaction (its own revision, if it writes).
/// etcd's errors are results, the same on every member; `Err` means storage failed, and
/// the member must stop applying rather than diverge from the others.
pub fn apply_request(
    guard: &mut WriteBatchGuard<'_>,
    request: &InternalRequest,
) -> Result<ApplyResult, EtcdError> {
    use apply_result::Result as R;
    use internal_request::Request as Q;
    let result = match &request.request {
        Some(Q::Put(p)) => {
            let mut txn = guard.txn();
            put::check(&txn, p, put::CheckOrder::LeaseFirst)
                .and_then(|()| put::put(&mut txn, p).map(R::Put))
        }
        Some(Q::DeleteRange(d)) => {
            delete_range::delete_range(&mut guard.txn(), d).map(R::DeleteRange)
        }
        Some(Q::Txn(t)) => txn::txn(&mut guard.txn(), t).map(R::Txn),
        Some(Q::Compaction(c)) => guard.compact(c.revision).map(|()| {
            R::Compaction(CompactionResponse {
                header: Some(header(guard.current_rev())),
            })
        }),
        // Only a damaged log holds an empty request.
        None => Err(EtcdError::Corrupt),
    };
    match result {
        Err(EtcdError::Corrupt) => Err(EtcdError::Corrupt),
        result => Ok(ApplyResult {
            result: Some(result.unwrap_or_else(|e| R::Error(e.number()))),
        }),
    }
}

/// Whether a lease exists. Leases arrive with the lease module; until then none exists,
/// so any non-zero lease is unknown, as it would be in etcd before a grant.
fn lease_exists(lease: i64) -> bool {
    lease == 0
}

/// A header with only the revision: the API layer fills in cluster, member and term.
fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..ResponseHeader::default()
    }
}
