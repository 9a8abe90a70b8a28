//! Txn: compare, then run the success or failure branch, all at one revision.
//!
//! As in etcd, every compare (nested ones included) is evaluated against the state before the
//! transaction, then every request on the chosen path is checked, and only then does anything
//! write: a transaction applies whole or fails whole.

use super::put::CheckOrder;
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::mvcc::{KvRead, RangeEnd, RangeOptions, ReadView, WriteTxn};
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

/// Where a transaction's operations run. Writes fail only if storage does.
pub trait TxnTarget: KvRead {
    fn put(&mut self, p: &PutRequest) -> Result<PutResponse, EtcdError>;
    fn delete_range(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError>;
}

impl TxnTarget for WriteTxn<'_, '_> {
    fn put(&mut self, p: &PutRequest) -> Result<PutResponse, EtcdError> {
        super::put::put(self, p)
    }

    fn delete_range(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError> {
        super::delete_range::delete_range(self, d)
    }
}

/// A read-only transaction runs on a view of committed state; `is_read_only` must hold.
impl TxnTarget for ReadView<'_> {
    fn put(&mut self, _: &PutRequest) -> Result<PutResponse, EtcdError> {
        unreachable!("read-only transactions are checked to hold no puts")
    }

    fn delete_range(&mut self, _: &DeleteRangeRequest) -> Result<DeleteRangeResponse, EtcdError> {
        unreachable!("read-only transactions are checked to hold no deletes")
    }
}

/// Whether every operation of both branches is a range, as etcd decides it: a nested
/// transaction counts as a write. Such a transaction needs no Raft round.
pub fn is_read_only(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| matches!(op.request, Some(Request::RequestRange(_))))
}

/// Whether every range of a read-only transaction is serializable (then no read barrier).
pub fn is_serializable(r: &TxnRequest) -> bool {
    r.success
        .iter()
        .chain(&r.failure)
        .all(|op| matches!(&op.request, Some(Request::RequestRange(q)) if q.serializable))
}

pub fn txn(
    target: &mut impl TxnTarget,
    leases: &Lessor,
    r: &TxnRequest,
) -> Result<TxnResponse, EtcdError> {
    let path = choose_path(&*target, r)?;
    check_puts(&*target, leases, r, &path)?;
    check_ranges(&*target, r, &path)?;
    let mut response = run(target, r, &path)?;
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

fn choose_path(view: &impl KvRead, r: &TxnRequest) -> Result<Path, EtcdError> {
    let mut succeeded = true;
    for c in &r.compare {
        if !compare(view, c)? {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded { &r.success } else { &r.failure };
    let nested = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestTxn(t)) => Some(choose_path(view, t)),
            _ => None,
        })
        .collect::<Result<_, _>>()?;
    Ok(Path { succeeded, nested })
}

/// Reads at the current revision, so only a storage failure makes it an error.
fn compare(view: &impl KvRead, c: &Compare) -> Result<bool, EtcdError> {
    let target = CompareTarget::try_from(c.target).ok();
    let found = view.range(
        &c.key,
        RangeEnd::from_request(&c.range_end),
        RangeOptions::default(),
    )?;
    if found.kvs.is_empty() {
        // A missing key compares as all zeroes, except that it has no value at all.
        return Ok(
            target != Some(CompareTarget::Value) && compare_kv(c, target, &KeyValue::default())
        );
    }
    Ok(found.kvs.iter().all(|kv| compare_kv(c, target, kv)))
}

/// `target` is None for a target number etcd does not know: it then compares as equal.
fn compare_kv(c: &Compare, target: Option<CompareTarget>, kv: &KeyValue) -> bool {
    let Some(target) = target else {
        return compare_result(c, std::cmp::Ordering::Equal);
    };
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
    compare_result(c, ordering)
}

/// An unknown result number holds, as in etcd.
fn compare_result(c: &Compare, ordering: std::cmp::Ordering) -> bool {
    match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => ordering.is_eq(),
        Ok(CompareResult::NotEqual) => ordering.is_ne(),
        Ok(CompareResult::Greater) => ordering.is_gt(),
        Ok(CompareResult::Less) => ordering.is_lt(),
        Err(_) => true,
    }
}

/// The integer a compare names; 0 when its union holds another target's operand, as in etcd.
fn int_operand(u: &Option<TargetUnion>, pick: impl Fn(&TargetUnion) -> Option<i64>) -> i64 {
    u.as_ref().and_then(pick).unwrap_or(0)
}

/// etcd checks every put on the chosen path first, then every range.
fn check_puts(
    view: &impl KvRead,
    leases: &Lessor,
    r: &TxnRequest,
    path: &Path,
) -> Result<(), EtcdError> {
    let mut nested = path.nested.iter();
    for op in branch(r, path) {
        match &op.request {
            Some(Request::RequestPut(p)) => {
                super::put::check(view, leases, p, CheckOrder::KeyFirst)?
            }
            Some(Request::RequestTxn(t)) => check_puts(
                view,
                leases,
                t,
                nested.next().expect("a path per nested txn"),
            )?,
            _ => {}
        }
    }
    Ok(())
}

fn check_ranges(view: &impl KvRead, r: &TxnRequest, path: &Path) -> Result<(), EtcdError> {
    let mut nested = path.nested.iter();
    for op in branch(r, path) {
        match &op.request {
            // etcd: inside a transaction any non-zero revision is checked, negative ones too.
            Some(Request::RequestRange(q)) if q.revision != 0 => {
                if q.revision > view.rev() {
                    return Err(EtcdError::FutureRev);
                }
                if q.revision < view.compact_rev() {
                    return Err(EtcdError::Compacted);
                }
            }
            Some(Request::RequestTxn(t)) => {
                check_ranges(view, t, nested.next().expect("a path per nested txn"))?
            }
            _ => {}
        }
    }
    Ok(())
}

fn run(txn: &mut impl TxnTarget, r: &TxnRequest, path: &Path) -> Result<TxnResponse, EtcdError> {
    let mut nested = path.nested.iter();
    let mut responses = Vec::with_capacity(branch(r, path).len());
    for op in branch(r, path) {
        let response = match &op.request {
            // Revisions were checked above; only storage can fail here.
            Some(Request::RequestRange(q)) => {
                Some(Response::ResponseRange(super::range(&*txn, q)?))
            }
            Some(Request::RequestPut(p)) => Some(Response::ResponsePut(txn.put(p)?)),
            Some(Request::RequestDeleteRange(d)) => {
                Some(Response::ResponseDeleteRange(txn.delete_range(d)?))
            }
            Some(Request::RequestTxn(t)) => {
                let mut inner = run(txn, t, nested.next().expect("a path per nested txn"))?;
                // etcd leaves a nested transaction's header empty.
                inner.header = Some(ResponseHeader::default());
                Some(Response::ResponseTxn(inner))
            }
            // Rejected by validation before proposal; kept empty, as etcd does.
            None => None,
        };
        responses.push(ResponseOp { response });
    }
    Ok(TxnResponse {
        header: None,
        succeeded: path.succeeded,
        responses,
    })
}
