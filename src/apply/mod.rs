//! etcd's request semantics on top of the MVCC store: what Range, Put, DeleteRange, Txn and
//! Compact mean, one file per request; who may run them (`authorize`); and the auth
//! requests (`auth`).
//!
//! Writes run here when the Raft state machine applies a committed entry; reads run here
//! when the API serves them. Owns no state. May call `mvcc`, `lease`, `auth`, `alarms`,
//! and `storage` for its error type.

mod auth;
pub mod authorize;
mod delete_range;
mod put;
pub mod quota;
mod range;
pub mod txn;

pub use range::range;

use crate::alarms::AlarmStore;
use crate::auth::AuthStore;
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::mvcc::WriteLock;
use crate::proto::cairnraftpb::{apply_result, internal_request, ApplyResult, InternalRequest};
use crate::proto::etcdserverpb::{
    AlarmType, CompactionResponse, LeaseGrantResponse, LeaseRevokeResponse, ResponseHeader,
};
use crate::storage::StorageError;

/// What applying a request reads besides the store: leases, auth, alarms, and the entry's
/// index (a simple token names the entry that issued it).
pub struct Applier<'a> {
    pub leases: &'a Lessor,
    pub auth: &'a AuthStore,
    pub alarms: &'a AlarmStore,
    pub index: u64,
}

/// Applies one committed request as its own transaction (its own revision, if it writes).
/// etcd's errors are results, the same on every member. `Err` is never one: storage could
/// not be read, or the entry is damaged, and the member must stop applying rather than
/// diverge from the others.
pub fn apply_request(
    guard: &mut WriteLock<'_>,
    applier: &Applier<'_>,
    request: &InternalRequest,
) -> Result<ApplyResult, StorageError> {
    use apply_result::Result as R;
    let leases = applier.leases;
    let changes_before = guard.changes().len();
    let result = match refused_by_alarm(applier.alarms, request) {
        Some(error) => Err(error),
        None => apply_allowed(guard, applier, request)?,
    };
    // Keys put or deleted follow their leases, in the same storage batch.
    let (changes, batch) = guard.changes_and_batch();
    leases.apply_changes(batch, &changes[changes_before..]);
    match result {
        // A record the request had to read is unreadable (`mvcc`).
        Err(EtcdError::Corrupt) => Err(StorageError::Corrupt("an unreadable record")),
        result => Ok(ApplyResult {
            result: Some(result.unwrap_or_else(|e| R::Error(e.number()))),
        }),
    }
}

/// What etcd's applier refuses while an alarm is raised: with CORRUPT, every write; with
/// NOSPACE, what would grow the store (what `quota` charges for). Reads are
/// served outside apply, and are never refused.
fn refused_by_alarm(alarms: &AlarmStore, request: &InternalRequest) -> Option<EtcdError> {
    use internal_request::Request as Q;
    let request = request.request.as_ref()?;
    let writes_kv = matches!(
        request,
        Q::Put(_)
            | Q::DeleteRange(_)
            | Q::Txn(_)
            | Q::Compaction(_)
            | Q::LeaseGrant(_)
            | Q::LeaseRevoke(_)
    );
    if writes_kv && alarms.is_raised(AlarmType::Corrupt) {
        return Some(EtcdError::CorruptAlarm);
    }
    let grows = quota::cost_bytes(request) > 0;
    (grows && alarms.is_raised(AlarmType::Nospace)).then_some(EtcdError::NoSpace)
}

fn apply_allowed(
    guard: &mut WriteLock<'_>,
    applier: &Applier<'_>,
    request: &InternalRequest,
) -> Result<Result<apply_result::Result, EtcdError>, StorageError> {
    use apply_result::Result as R;
    use internal_request::Request as Q;
    let (leases, auth) = (applier.leases, applier.auth);
    let caller = request.caller.as_ref();
    let result = match &request.request {
        Some(Q::Put(p)) => authorize::put(auth, leases, caller, p).and_then(|()| {
            let mut txn = guard.txn();
            put::check(&txn, leases, p, put::CheckOrder::LeaseFirst)
                .and_then(|()| put::put(&mut txn, p).map(R::Put))
        }),
        Some(Q::DeleteRange(d)) => authorize::delete_range(auth, caller, d)
            .and_then(|()| delete_range::delete_range(&mut guard.txn(), d).map(R::DeleteRange)),
        Some(Q::Txn(t)) => authorize::txn(auth, caller, t)
            .and_then(|()| txn::txn(&mut guard.txn(), leases, t).map(R::Txn)),
        Some(Q::Compaction(c)) => guard.compact(c.revision).map(|()| {
            R::Compaction(CompactionResponse {
                header: Some(header(guard.current_rev())),
            })
        }),
        Some(Q::LeaseGrant(g)) => leases.grant(guard.batch_mut(), g.id, g.ttl).map(|ttl| {
            R::LeaseGrant(LeaseGrantResponse {
                header: Some(header(guard.current_rev())),
                id: g.id,
                ttl,
                error: String::new(),
            })
        }),
        Some(Q::LeaseRevoke(r)) => authorize::lease_keys(auth, leases, caller, r.id)
            .and_then(|()| leases.revoke(guard, r.id))
            .map(|()| {
                R::LeaseRevoke(LeaseRevokeResponse {
                    header: Some(header(guard.current_rev())),
                })
            }),
        Some(
            q @ (Q::AuthEnable(_)
            | Q::AuthDisable(_)
            | Q::Authenticate(_)
            | Q::UserAdd(_)
            | Q::UserDelete(_)
            | Q::UserChangePassword(_)
            | Q::UserGrantRole(_)
            | Q::UserRevokeRole(_)
            | Q::RoleAdd(_)
            | Q::RoleDelete(_)
            | Q::RoleGrantPermission(_)
            | Q::RoleRevokePermission(_)),
        ) => auth::apply(auth, guard.batch_mut(), caller, q, applier.index).map(R::Auth),
        Some(Q::Alarm(a)) => {
            let mut response = applier.alarms.apply(guard.batch_mut(), a);
            response.header = Some(header(guard.current_rev()));
            Ok(R::Alarm(response))
        }
        // Membership is the state machine's: a publish never reaches here.
        Some(Q::Publish(_) | Q::DowngradeInfoSet(_)) => {
            return Err(StorageError::Corrupt(
                "a membership change applied as a request",
            ))
        }
        // Only a damaged log holds an empty request.
        None => return Err(StorageError::Corrupt("an empty request in the log")),
    };
    Ok(result)
}

/// A header with only the revision: the API layer fills in cluster, member and term.
fn header(revision: i64) -> ResponseHeader {
    ResponseHeader {
        revision,
        ..ResponseHeader::default()
    }
}

#[cfg(test)]
mod tests;
