//! Request checks the API makes before anything is proposed, with etcd's errors.
//! (Lock and Election answer them as code Unknown: `api::plain_error`.)

use std::collections::HashSet;

use crate::error::EtcdError;
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use crate::proto::v3electionpb::LeaderKey;

/// Peer URLs as etcd accepts them in a member add or update: absolute http(s) URLs with a
/// port, printed as etcd prints them.
pub fn peer_urls(urls: &[String]) -> Result<Vec<String>, EtcdError> {
    if urls.is_empty() {
        return Err(EtcdError::MemberBadUrls);
    }
    urls.iter()
        .map(|u| match url::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.port().is_some() => {
                Ok(crate::cluster::url_string(&url))
            }
            _ => Err(EtcdError::MemberBadUrls),
        })
        .collect()
}

pub fn range(r: &RangeRequest) -> Result<(), EtcdError> {
    non_empty(&r.key)?;
    if SortOrder::try_from(r.sort_order).is_err() || SortTarget::try_from(r.sort_target).is_err() {
        return Err(EtcdError::InvalidSortOption);
    }
    Ok(())
}

/// Range's checks, then etcd 3.7's limits on RangeStream: key order only (no order, or
/// ascending by key), no revision filters.
pub fn range_stream(r: &RangeRequest) -> Result<(), EtcdError> {
    range(r)?;
    let key_order = r.sort_order == SortOrder::None as i32
        || (r.sort_target == SortTarget::Key as i32 && r.sort_order == SortOrder::Ascend as i32);
    if !key_order {
        return Err(EtcdError::StreamSortOrder);
    }
    if r.min_mod_revision != 0
        || r.max_mod_revision != 0
        || r.min_create_revision != 0
        || r.max_create_revision != 0
    {
        return Err(EtcdError::StreamRevisionFilters);
    }
    Ok(())
}

pub fn put(r: &PutRequest) -> Result<(), EtcdError> {
    non_empty(&r.key)?;
    if r.ignore_value && !r.value.is_empty() {
        return Err(EtcdError::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(EtcdError::LeaseProvided);
    }
    Ok(())
}

pub fn delete_range(r: &DeleteRangeRequest) -> Result<(), EtcdError> {
    non_empty(&r.key)
}

/// An Unlock deletes its key: the key must be given, as for any delete.
pub fn unlock(key: &[u8]) -> Result<(), EtcdError> {
    non_empty(key)
}

/// The leader key of a Proclaim or Resign: present, and naming a key (whose put or delete
/// etcd checks as any other).
pub fn leader_key(leader: Option<&LeaderKey>) -> Result<(), EtcdError> {
    non_empty(&leader.ok_or(EtcdError::MissingLeaderKey)?.key)
}

/// etcd's transaction checks: operation count (nested budgets shrink), keys present, and no
/// key written twice on one path.
pub fn txn(r: &TxnRequest, max_txn_ops: usize) -> Result<(), EtcdError> {
    check_txn(r, max_txn_ops as i64)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn non_empty(key: &[u8]) -> Result<(), EtcdError> {
    if key.is_empty() {
        Err(EtcdError::EmptyKey)
    } else {
        Ok(())
    }
}

fn check_txn(r: &TxnRequest, max_txn_ops: i64) -> Result<(), EtcdError> {
    let ops = r.compare.len().max(r.success.len()).max(r.failure.len()) as i64;
    if ops > max_txn_ops {
        return Err(EtcdError::TooManyOps);
    }
    for c in &r.compare {
        non_empty(&c.key)?;
    }
    for op in r.success.iter().chain(&r.failure) {
        check_op(op, max_txn_ops - ops)?;
    }
    Ok(())
}

fn check_op(op: &RequestOp, max_txn_ops: i64) -> Result<(), EtcdError> {
    match &op.request {
        Some(Request::RequestRange(r)) => range(r),
        Some(Request::RequestPut(r)) => put(r),
        Some(Request::RequestDeleteRange(r)) => delete_range(r),
        Some(Request::RequestTxn(r)) => check_txn(r, max_txn_ops),
        // etcd answers an empty operation this way.
        None => Err(EtcdError::KeyNotFound),
    }
}

/// A deleted interval `[key, end)`, or the single `key` when `end` is empty. Compared as
/// plain byte strings, as etcd does: a from-key delete (`end` = "\0") overlaps nothing.
struct Deleted<'a> {
    key: &'a [u8],
    end: &'a [u8],
}

impl Deleted<'_> {
    fn contains(&self, k: &[u8]) -> bool {
        if self.end.is_empty() {
            k == self.key
        } else {
            self.key <= k && k < self.end
        }
    }
}

type Puts<'a> = HashSet<&'a [u8]>;

/// Rejects a key put twice, or put and deleted, on any one execution path of a transaction
/// branch (etcd's `checkIntervals`).
fn check_intervals(ops: &[RequestOp]) -> Result<(Puts<'_>, Vec<Deleted<'_>>), EtcdError> {
    let mut dels: Vec<Deleted<'_>> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(Request::RequestDeleteRange(d)) => Some(Deleted {
                key: &d.key,
                end: &d.range_end,
            }),
            _ => None,
        })
        .collect();
    let overlaps = |dels: &[Deleted<'_>], k: &[u8]| dels.iter().any(|d| d.contains(k));
    let mut puts: Puts<'_> = HashSet::new();
    for op in ops {
        let Some(Request::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || overlaps(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k);
        }
        for k in &puts_else {
            // Then and else exclude each other, so a key in both is fine.
            if (puts.contains(k) && !puts_then.contains(k)) || overlaps(&dels, k) {
                return Err(EtcdError::DuplicateKey);
            }
            puts.insert(k);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let Some(Request::RequestPut(p)) = &op.request else {
            continue;
        };
        let k = p.key.as_slice();
        if puts.contains(k) || overlaps(&dels, k) {
            return Err(EtcdError::DuplicateKey);
        }
        puts.insert(k);
    }
    Ok((puts, dels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::etcdserverpb::Compare;

    fn put_op(k: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestPut(PutRequest {
                key: k.into(),
                ..Default::default()
            })),
        }
    }

    fn del_op(k: &str, end: &str) -> RequestOp {
        RequestOp {
            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                key: k.into(),
                range_end: end.into(),
                ..Default::default()
            })),
        }
    }

    fn txn_of(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    #[test]
    fn duplicate_puts_and_put_over_delete_are_refused() {
        let t = txn_of(vec![put_op("a"), put_op("a")], vec![]);
        assert_eq!(txn(&t, 128), Err(EtcdError::DuplicateKey));
        let t = txn_of(vec![del_op("a", "c"), put_op("b")], vec![]);
        assert_eq!(txn(&t, 128), Err(EtcdError::DuplicateKey));
        let t = txn_of(vec![put_op("a")], vec![put_op("a")]);
        assert_eq!(txn(&t, 128), Ok(()));
    }

    #[test]
    fn nested_branches_may_share_keys_but_not_with_their_parent() {
        let nested = RequestOp {
            request: Some(Request::RequestTxn(txn_of(
                vec![put_op("x")],
                vec![put_op("x")],
            ))),
        };
        assert_eq!(txn(&txn_of(vec![nested.clone()], vec![]), 128), Ok(()));
        let t = txn_of(vec![nested, put_op("x")], vec![]);
        assert_eq!(txn(&t, 128), Err(EtcdError::DuplicateKey));
    }

    #[test]
    fn op_count_and_empty_keys() {
        let t = txn_of(vec![put_op("a"), put_op("b"), put_op("c")], vec![]);
        assert_eq!(txn(&t, 2), Err(EtcdError::TooManyOps));
        let t = TxnRequest {
            compare: vec![Compare::default()],
            success: vec![],
            failure: vec![],
        };
        assert_eq!(txn(&t, 2), Err(EtcdError::EmptyKey));
        let t = txn_of(vec![RequestOp { request: None }], vec![]);
        assert_eq!(txn(&t, 2), Err(EtcdError::KeyNotFound));
    }
}
