//! Txn: compare, then run the success or failure branch, all at one revision.
//!
//! As in etcd, every compare (nested ones included) is evaluated against the state before the
//! transaction, then every request on the chosen path is checked, and only then does anything
//! write: a transaction applies whole or fails whole.

use crate::error::EtcdError;
use crate::mvcc::{KvRead, RangeEnd, RangeOptions, RangeResult, WriteTxn};
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RequestOp,
    ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};
use crate::proto::mvccpb::KeyValue;

/// The branch each transaction on the chosen path takes.
struct Path {
    succeeded: bool,
    /// One per nested transaction in the chosen branch, in order.
    nested: Vec<Path>,
}

/// Where a transaction's operations run.
pub trait TxnTarget: KvRead {
    fn put(&mut self, p: &PutRequest) -> PutResponse;
    fn delete_range(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse;
}

impl TxnTarget for WriteTxn<'_, '_> {
    fn put(&mut self, p: &PutRequest) -> PutResponse {
        super::put::put(self, p)
    }

    fn delete_range(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        super::delete_range::delete_range(self, d)
    }
}

/// A read-only transaction over committed state; `is_read_only` must hold for it.
pub struct ReadOnly<V>(pub V);

impl<V: KvRead> KvRead for ReadOnly<V> {
    fn rev(&self) -> i64 {
        self.0.rev()
    }

    fn compact_rev(&self) -> i64 {
        self.0.compact_rev()
    }

    fn range(
        &self,
        key: &[u8],
        end: RangeEnd<'_>,
        opts: RangeOptions,
    ) -> Result<RangeResult, EtcdError> {
        self.0.range(key, end, opts)
    }
}

impl<V: KvRead> TxnTarget for ReadOnly<V> {
    fn put(&mut self, _: &PutRequest) -> PutResponse {
        unreachable!("read-only transactions are checked to hold no puts")
    }

    fn delete_range(&mut self, _: &DeleteRangeRequest) -> DeleteRangeResponse {
        unreachable!("read-only transactions are checked to hold no deletes")
    }
}

/// Whether every operation, in both branches and all nested transactions, is a read; such a
/// transaction needs no Raft round, as in etcd.
pub fn is_read_only(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(_)) | None => true,
            Some(Request::RequestTxn(t)) => is_read_only(t),
            Some(Request::RequestPut(_)) | Some(Request::RequestDeleteRange(_)) => false,
        })
}

/// Whether every read in it is serializable (etcd then skips the read barrier).
pub fn is_serializable(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| match &op.request {
            Some(Request::RequestRange(q)) => q.serializable,
            Some(Request::RequestTxn(t)) => is_serializable(t),
            _ => true,
        })
}

pub fn txn(target: &mut impl TxnTarget, r: &TxnRequest) -> Result<TxnResponse, EtcdError> {
    let path = choose_path(&*target, r);
    check(&*target, r, &path)?;
    let mut response = run(target, r, &path);
    response.header = Some(super::header(target.rev()));
    Ok(response)
}

fn branch<'r>(r: &'r TxnRequest, path: &Path) -> &'r [RequestOp] {
    if path.succeeded {
        &r.success
    } else {
        &r.failure
    }
}

fn choose_path(view: &impl KvRead, r: &TxnRequest) -> Path {
    let succeeded = r.compare.iter().all(|c| compare(view, c));
    let ops = if succeeded { &r.success } else { &r.failure };
    let nested = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestTxn(t)) => Some(choose_path(view, t)),
            _ => None,
        })
        .collect();
    Path { succeeded, nested }
}

fn compare(view: &impl KvRead, c: &Compare) -> bool {
    let target = CompareTarget::try_from(c.target).unwrap_or(CompareTarget::Version);
    let Ok(found) = view.range(
        &c.key,
        RangeEnd::from_request(&c.range_end),
        RangeOptions::default(),
    ) else {
        return false;
    };
    if found.kvs.is_empty() {
        // A missing key compares as all zeroes, except that it has no value at all.
        return target != CompareTarget::Value && compare_kv(c, target, &KeyValue::default());
    }
    found.kvs.iter().all(|kv| compare_kv(c, target, kv))
}

fn compare_kv(c: &Compare, target: CompareTarget, kv: &KeyValue) -> bool {
    let ordering = match (target, &c.target_union) {
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => kv.value.as_slice().cmp(v),
        (CompareTarget::Value, _) => kv.value.as_slice().cmp(&[][..]),
        (CompareTarget::Version, u) => kv.version.cmp(&int_operand(u, |u| match u {
            TargetUnion::Version(v) => Some(*v),
            _ => None,
        })),
        (CompareTarget::Create, u) => kv.create_revision.cmp(&int_operand(u, |u| match u {
            TargetUnion::CreateRevision(v) => Some(*v),
            _ => None,
        })),
        (CompareTarget::Mod, u) => kv.mod_revision.cmp(&int_operand(u, |u| match u {
            TargetUnion::ModRevision(v) => Some(*v),
            _ => None,
        })),
        (CompareTarget::Lease, u) => kv.lease.cmp(&int_operand(u, |u| match u {
            TargetUnion::Lease(v) => Some(*v),
            _ => None,
        })),
    };
    match CompareResult::try_from(c.result).unwrap_or(CompareResult::Equal) {
        CompareResult::Equal => ordering.is_eq(),
        CompareResult::NotEqual => ordering.is_ne(),
        CompareResult::Greater => ordering.is_gt(),
        CompareResult::Less => ordering.is_lt(),
    }
}

/// The integer a compare names; 0 when its union holds another target's operand, as in etcd.
fn int_operand(u: &Option<TargetUnion>, pick: impl Fn(&TargetUnion) -> Option<i64>) -> i64 {
    u.as_ref().and_then(pick).unwrap_or(0)
}

fn check(view: &impl KvRead, r: &TxnRequest, path: &Path) -> Result<(), EtcdError> {
    let mut nested = path.nested.iter();
    for op in branch(r, path) {
        match &op.request {
            Some(Request::RequestPut(p)) => super::put::check(view, p)?,
            Some(Request::RequestRange(q)) if q.revision > 0 => {
                if q.revision > view.rev() {
                    return Err(EtcdError::FutureRev);
                }
                if q.revision < view.compact_rev() {
                    return Err(EtcdError::Compacted);
                }
            }
            Some(Request::RequestTxn(t)) => {
                check(view, t, nested.next().expect("a path per nested txn"))?
            }
            _ => {}
        }
    }
    Ok(())
}

fn run(txn: &mut impl TxnTarget, r: &TxnRequest, path: &Path) -> TxnResponse {
    let mut nested = path.nested.iter();
    let responses = branch(r, path)
        .iter()
        .map(|op| {
            let response = match &op.request {
                Some(Request::RequestRange(q)) => Response::ResponseRange(
                    // Checked above: the revision is neither compacted nor in the future.
                    super::range(&*txn, q).unwrap_or_default(),
                ),
                Some(Request::RequestPut(p)) => Response::ResponsePut(txn.put(p)),
                Some(Request::RequestDeleteRange(d)) => {
                    Response::ResponseDeleteRange(txn.delete_range(d))
                }
                Some(Request::RequestTxn(t)) => {
                    let mut inner = run(txn, t, nested.next().expect("a path per nested txn"));
                    // etcd leaves a nested transaction's header empty.
                    inner.header = Some(ResponseHeader::default());
                    Response::ResponseTxn(inner)
                }
                // Rejected by validation before proposal; kept empty, as etcd does.
                None => return ResponseOp { response: None },
            };
            ResponseOp {
                response: Some(response),
            }
        })
        .collect();
    TxnResponse {
        header: None,
        succeeded: path.succeeded,
        responses,
    }
}
