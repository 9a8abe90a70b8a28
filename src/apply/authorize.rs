//! Who may run which key-value request, as etcd's auth applier decides: the one place the
//! keys of a request are matched against the caller's permissions. Writes are checked here
//! when their entry is applied (with the auth state every member has at that entry); the
//! server calls the same functions for reads before serving them.

use crate::auth::{Access, AuthStore};
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::proto::cairnraftpb::Caller;
use crate::proto::etcdserverpb::request_op::Request as Op;
use crate::proto::etcdserverpb::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
};

pub fn range(auth: &AuthStore, caller: Option<&Caller>, r: &RangeRequest) -> Result<(), EtcdError> {
    auth.check_op(caller, &r.key, &r.range_end, Access::Read)
}

/// A put needs write permission on its key, read permission too for `prev_kv`, and write
/// permission on every key already attached to its lease (else it could attach a key to a
/// lease whose revocation it may not cause, as etcd reasons).
pub fn put(
    auth: &AuthStore,
    leases: &Lessor,
    caller: Option<&Caller>,
    p: &PutRequest,
) -> Result<(), EtcdError> {
    auth.check_op(caller, &p.key, &[], Access::Write)?;
    lease_keys(auth, leases, caller, p.lease)?;
    if p.prev_kv {
        auth.check_op(caller, &p.key, &[], Access::Read)?;
    }
    Ok(())
}

pub fn delete_range(
    auth: &AuthStore,
    caller: Option<&Caller>,
    d: &DeleteRangeRequest,
) -> Result<(), EtcdError> {
    auth.check_op(caller, &d.key, &d.range_end, Access::Write)?;
    if d.prev_kv {
        auth.check_op(caller, &d.key, &d.range_end, Access::Read)?;
    }
    Ok(())
}

/// Every compare's range, then every op of both branches, nested txns included (etcd 3.4
/// skipped nested ones; later releases check them, and so does Cairn).
pub fn txn(auth: &AuthStore, caller: Option<&Caller>, t: &TxnRequest) -> Result<(), EtcdError> {
    for c in &t.compare {
        auth.check_op(caller, &c.key, &c.range_end, Access::Read)?;
    }
    ops(auth, caller, &t.success)?;
    ops(auth, caller, &t.failure)
}

fn ops(auth: &AuthStore, caller: Option<&Caller>, ops: &[RequestOp]) -> Result<(), EtcdError> {
    for op in ops {
        match &op.request {
            Some(Op::RequestRange(r)) => range(auth, caller, r)?,
            // As etcd's txn check: the key only (a lease's other keys are checked for
            // single puts).
            Some(Op::RequestPut(p)) => {
                auth.check_op(caller, &p.key, &[], Access::Write)?;
            }
            Some(Op::RequestDeleteRange(d)) => {
                if d.prev_kv {
                    auth.check_op(caller, &d.key, &d.range_end, Access::Read)?;
                }
                auth.check_op(caller, &d.key, &d.range_end, Access::Write)?;
            }
            Some(Op::RequestTxn(t)) => txn(auth, caller, t)?,
            None => {}
        }
    }
    Ok(())
}

/// Revoking a lease deletes its keys: the caller must be able to write each.
pub fn lease_keys(
    auth: &AuthStore,
    leases: &Lessor,
    caller: Option<&Caller>,
    lease: i64,
) -> Result<(), EtcdError> {
    if !auth.is_enabled() || lease == crate::lease::NO_LEASE {
        return Ok(());
    }
    let keys = leases
        .time_to_live(lease, true)
        .map(|s| s.keys)
        .unwrap_or_default();
    for key in keys {
        auth.check_op(caller, &key, &[], Access::Write)?;
    }
    Ok(())
}
