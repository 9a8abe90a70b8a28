//! Put: write a key, optionally keeping its value or lease, optionally returning the old pair.

use crate::error::EtcdError;
use crate::lease::{Lessor, NO_LEASE};
use crate::mvcc::{KvRead, RangeEnd, RangeOptions, WriteTxn};
use crate::proto::etcdserverpb::{PutRequest, PutResponse};
use crate::proto::mvccpb::KeyValue;

/// Which failure etcd reports first when a put has both: a plain Put checks the lease
/// first, a put inside a transaction the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CheckOrder {
    LeaseFirst,
    KeyFirst,
}

/// What must hold before the put writes anything (so a transaction fails whole or not at all).
pub fn check(
    view: &impl KvRead,
    leases: &Lessor,
    p: &PutRequest,
    order: CheckOrder,
) -> Result<(), EtcdError> {
    let lease = || {
        if p.lease == NO_LEASE || leases.exists(p.lease) {
            Ok(())
        } else {
            Err(EtcdError::LeaseNotFound)
        }
    };
    if order == CheckOrder::LeaseFirst {
        lease()?;
    }
    if (p.ignore_value || p.ignore_lease) && previous(view, &p.key)?.is_none() {
        return Err(EtcdError::KeyNotFound);
    }
    lease()
}

/// Applies a checked put. Fails only if storage does.
pub fn put(txn: &mut WriteTxn<'_, '_>, p: &PutRequest) -> Result<PutResponse, EtcdError> {
    let prev = if p.ignore_value || p.ignore_lease || p.prev_kv {
        previous(txn, &p.key)?
    } else {
        None
    };
    let value = match (&prev, p.ignore_value) {
        (Some(old), true) => old.value.clone(),
        _ => p.value.clone(),
    };
    let lease = match (&prev, p.ignore_lease) {
        (Some(old), true) => old.lease,
        _ => p.lease,
    };
    let revision = txn.put(&p.key, value, lease);
    Ok(PutResponse {
        header: Some(super::header(revision)),
        prev_kv: if p.prev_kv { prev } else { None },
    })
}

fn previous(view: &impl KvRead, key: &[u8]) -> Result<Option<KeyValue>, EtcdError> {
    Ok(view
        .range(key, RangeEnd::Single, RangeOptions::default())?
        .kvs
        .pop())
}
