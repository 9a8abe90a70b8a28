//! What a request costs against the space quota, as etcd charges it: a put its key, value
//! and 256 bytes of metadata; a txn the puts of its costlier branch, nested txns included
//! (etcd 3.5 on); a lease grant 64 bytes; anything else nothing. A request that costs
//! nothing cannot grow the store, and is never refused for space.

use crate::proto::cairnraftpb::internal_request::Request;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{PutRequest, RequestOp, TxnRequest};

/// etcd's estimate of a key's metadata in the store.
const KV_OVERHEAD_BYTES: u64 = 256;
/// etcd's estimate of a lease in the store.
const LEASE_OVERHEAD_BYTES: u64 = 64;

pub fn cost_bytes(request: &Request) -> u64 {
    match request {
        Request::Put(p) => put_cost_bytes(p),
        Request::Txn(t) => txn_cost_bytes(t),
        Request::LeaseGrant(_) => LEASE_OVERHEAD_BYTES,
        _ => 0,
    }
}

fn put_cost_bytes(p: &PutRequest) -> u64 {
    KV_OVERHEAD_BYTES + p.key.len() as u64 + p.value.len() as u64
}

fn txn_cost_bytes(t: &TxnRequest) -> u64 {
    let branch = |ops: &[RequestOp]| -> u64 {
        ops.iter()
            .map(|op| match &op.request {
                Some(Op::RequestPut(p)) => put_cost_bytes(p),
                Some(Op::RequestTxn(t)) => txn_cost_bytes(t),
                _ => 0,
            })
            .sum()
    };
    branch(&t.success).max(branch(&t.failure))
}
