//! Leases: TTLs granted through Raft, the keys attached to them, when they expire, and
//! their revocation with their keys.
//!
//! Owns the `lease` column family and its in-memory copy. What is replicated (leases, their
//! granted TTLs, attached keys) changes only when the state machine applies an entry, in
//! the same storage batch as the keys it concerns. Expiry times are not replicated: only the
//! leader (the *primary*) keeps them, and it revokes expired leases by proposing a revoke
//! through Raft, so a lease expires once, at one revision, on every member.
//!
//! Rule for remaining TTLs across leader changes and restarts, as etcd 3.4 without lease
//! checkpoints: a member that becomes leader gives every lease its full granted TTL plus
//! one election timeout from that moment, so no lease is revoked early; a lease whose
//! owner is gone expires at most one TTL and one election timeout after the change.
//!
//! May call `storage` and `mvcc` (for the changes a batch made).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rocksdb::WriteBatch;

use crate::error::EtcdError;
use crate::mvcc::{Change, RangeEnd, WriteLock};
use crate::storage::{Storage, StorageError, StorageResult};

/// etcd's largest TTL, in seconds.
pub const MAX_TTL_SECS: i64 = 9_000_000_000;
/// etcd's `NoLease`: a key without a lease; never a lease ID.
pub const NO_LEASE: i64 = 0;
/// A lease found expired is proposed for revocation again after this long if the revoke
/// has not been applied by then (it was lost in a leader change).
const REVOKE_RETRY: Duration = Duration::from_secs(3);
/// How often the primary looks for expired leases, as etcd's lessor does.
const EXPIRY_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// Leases handed over for revocation per check: a burst of expiries is spread out, so writes
/// keep flowing (etcd allows 1000 a second; twice that here, since revokes share Raft
/// entries).
const MAX_REVOKES_PER_CHECK: usize = 1000;

/// Record prefixes in the `lease` column family: `L` + ID → granted TTL; `A` + ID + key →
/// nothing (the key is attached).
const PREFIX_LEASE: u8 = b'L';
const PREFIX_ATTACHED: u8 = b'A';

struct Lease {
    ttl_secs: i64,
    keys: BTreeSet<Vec<u8>>,
    /// Set on the primary only.
    expiry: Option<Instant>,
    /// Expired, and its revoke proposed: keep-alives no longer save it. Holds when to
    /// propose the revoke again if it has not been applied by then.
    revoking: Option<Instant>,
}

#[derive(Default)]
struct State {
    leases: HashMap<i64, Lease>,
    /// Which lease each attached key is bound to.
    attached: HashMap<Vec<u8>, i64>,
    primary: bool,
    /// On the primary: when each lease is next due (its expiry, or the retry of its
    /// revoke), earliest first, as etcd's lessor keeps them; a check looks only at what is
    /// due. An entry a renewal or a removal made stale stays until it comes up and is
    /// skipped (`is_due`); the heap is rebuilt when stale entries outnumber the leases.
    due: BinaryHeap<Reverse<(Instant, i64)>>,
}

/// Stale entries the expiry heap may hold beyond one per lease before it is rebuilt.
const MAX_STALE_DUE_ENTRIES: usize = 1024;

impl State {
    /// Records that lease `id` is due at `at`.
    fn schedule(&mut self, id: i64, at: Instant) {
        self.due.push(Reverse((at, id)));
        if self.due.len() > 2 * self.leases.len() + MAX_STALE_DUE_ENTRIES {
            self.rebuild_due();
        }
    }

    fn rebuild_due(&mut self) {
        self.due = self
            .leases
            .iter()
            .filter_map(|(id, lease)| lease.due_at().map(|at| Reverse((at, *id))))
            .collect();
    }

    /// Whether the heap entry (`at`, `id`) is still the lease's current due time.
    fn is_due(&self, id: i64, at: Instant) -> bool {
        self.leases
            .get(&id)
            .is_some_and(|lease| lease.due_at() == Some(at))
    }
}

impl Lease {
    /// When the primary must next look at this lease: the retry of its revoke, else its
    /// expiry.
    fn due_at(&self) -> Option<Instant> {
        self.revoking.or(self.expiry)
    }
}

pub struct Lessor {
    storage: Arc<Storage>,
    state: Mutex<State>,
    min_ttl_secs: i64,
}

/// What `time_to_live` reports.
pub struct LeaseStatus {
    pub remaining_secs: i64,
    pub granted_secs: i64,
    pub keys: Vec<Vec<u8>>,
}

impl Lessor {
    /// Loads the leases from storage. `min_ttl_secs` is etcd's floor: one and a half
    /// election timeouts, rounded up to whole seconds.
    pub fn open(storage: Arc<Storage>, min_ttl_secs: i64) -> StorageResult<Arc<Lessor>> {
        let lessor = Arc::new(Lessor {
            storage,
            state: Mutex::default(),
            min_ttl_secs,
        });
        lessor.reload()?;
        Ok(lessor)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("lessor lock")
    }

    /// Rebuilds the leases from storage (at start, and after a snapshot replaced it).
    pub fn reload(&self) -> StorageResult<()> {
        let mut leases: HashMap<i64, Lease> = HashMap::new();
        let mut attached = HashMap::new();
        for item in self.storage.lease().iter() {
            let (key, value) = item?;
            match LeaseRecord::decode(&key, &value) {
                Some(LeaseRecord::Lease { id, ttl_secs }) => {
                    leases.entry(id).or_insert_with(|| Lease {
                        ttl_secs,
                        keys: BTreeSet::new(),
                        expiry: None,
                        revoking: None,
                    });
                }
                Some(LeaseRecord::Attached { id, key }) => {
                    attached.insert(key, id);
                }
                None => return Err(StorageError::Corrupt("lease record")),
            }
        }
        for (key, id) in &attached {
            let lease = leases
                .get_mut(id)
                .ok_or(StorageError::Corrupt("key attached to a missing lease"))?;
            lease.keys.insert(key.clone());
        }
        let mut state = self.lock();
        let primary = state.primary;
        *state = State {
            leases,
            attached,
            ..State::default()
        };
        if primary {
            promote_locked(&mut state, Duration::ZERO);
        }
        Ok(())
    }

    pub fn exists(&self, id: i64) -> bool {
        self.lock().leases.contains_key(&id)
    }

    /// Applies a grant; returns the TTL granted.
    pub fn grant(&self, batch: &mut WriteBatch, id: i64, ttl_secs: i64) -> Result<i64, EtcdError> {
        if id == NO_LEASE {
            return Err(EtcdError::LeaseNotFound);
        }
        if ttl_secs > MAX_TTL_SECS {
            return Err(EtcdError::LeaseTtlTooLarge);
        }
        let mut state = self.lock();
        if state.leases.contains_key(&id) {
            return Err(EtcdError::LeaseExists);
        }
        let ttl_secs = ttl_secs.max(self.min_ttl_secs);
        let expiry = state
            .primary
            .then(|| Instant::now() + Duration::from_secs(ttl_secs as u64));
        state.leases.insert(
            id,
            Lease {
                ttl_secs,
                keys: BTreeSet::new(),
                expiry,
                revoking: None,
            },
        );
        if let Some(expiry) = expiry {
            state.schedule(id, expiry);
        }
        self.storage.lease().put(
            batch,
            &record_key(PREFIX_LEASE, id, b""),
            &ttl_secs.to_be_bytes(),
        );
        Ok(ttl_secs)
    }

    /// Applies a revoke: deletes the lease's keys, all in one revision (watchers see one
    /// set of deletes), in sorted order (the same on every member), then the lease.
    pub fn revoke(&self, guard: &mut WriteLock<'_>, id: i64) -> Result<(), EtcdError> {
        let keys: Vec<Vec<u8>> = {
            let state = self.lock();
            let lease = state.leases.get(&id).ok_or(EtcdError::LeaseNotFound)?;
            lease.keys.iter().cloned().collect()
        };
        let mut txn = guard.txn();
        for key in &keys {
            txn.delete_range(key, RangeEnd::Single);
        }
        drop(txn);
        self.remove(guard.batch_mut(), id);
        Ok(())
    }

    /// Forgets a lease and its attachments.
    fn remove(&self, batch: &mut WriteBatch, id: i64) {
        let mut state = self.lock();
        let Some(lease) = state.leases.remove(&id) else {
            return;
        };
        let cf = self.storage.lease();
        for key in &lease.keys {
            state.attached.remove(key);
            cf.delete(batch, &record_key(PREFIX_ATTACHED, id, key));
        }
        cf.delete(batch, &record_key(PREFIX_LEASE, id, b""));
    }

    /// Follows a batch's changes: a put binds its key to the put's lease (or to none), a
    /// delete unbinds it.
    pub fn apply_changes(&self, batch: &mut WriteBatch, changes: &[Change]) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let cf = self.storage.lease();
        for change in changes {
            let key = &change.kv.key;
            let new = if change.deleted {
                NO_LEASE
            } else {
                change.kv.lease
            };
            let old = state.attached.get(key).copied().unwrap_or(NO_LEASE);
            if old == new {
                continue;
            }
            if old != NO_LEASE {
                state.attached.remove(key);
                if let Some(lease) = state.leases.get_mut(&old) {
                    lease.keys.remove(key);
                }
                cf.delete(batch, &record_key(PREFIX_ATTACHED, old, key));
            }
            // A put names only existing leases: it was checked before it was applied.
            if let Some(lease) = state.leases.get_mut(&new) {
                lease.keys.insert(key.clone());
                state.attached.insert(key.clone(), new);
                cf.put(batch, &record_key(PREFIX_ATTACHED, new, key), b"");
            }
        }
    }

    /// This member became leader: it now keeps expiry times (see the module comment).
    pub fn promote(&self, extend: Duration) {
        promote_locked(&mut self.lock(), extend);
    }

    /// This member is no longer leader: the new leader decides expiry.
    pub fn demote(&self) {
        let mut state = self.lock();
        state.primary = false;
        for lease in state.leases.values_mut() {
            lease.expiry = None;
            lease.revoking = None;
        }
        state.due.clear();
    }

    pub fn is_primary(&self) -> bool {
        self.lock().primary
    }

    /// A keep-alive: restarts the lease's TTL. `None` for an unknown lease; `Err(NotLeader)`
    /// off the primary.
    pub fn renew(&self, id: i64) -> Result<Option<i64>, EtcdError> {
        let mut state = self.lock();
        if !state.primary {
            return Err(EtcdError::NotLeader);
        }
        let Some(lease) = state.leases.get_mut(&id) else {
            return Ok(None);
        };
        let now = Instant::now();
        // Expired, its revoke on the way: too late to keep it, as etcd answers.
        if lease.revoking.is_some() || lease.expiry.is_some_and(|e| e <= now) {
            return Ok(None);
        }
        let (expiry, ttl_secs) = (
            now + Duration::from_secs(lease.ttl_secs as u64),
            lease.ttl_secs,
        );
        lease.expiry = Some(expiry);
        state.schedule(id, expiry);
        Ok(Some(ttl_secs))
    }

    pub fn time_to_live(&self, id: i64, with_keys: bool) -> Option<LeaseStatus> {
        let state = self.lock();
        let lease = state.leases.get(&id)?;
        let remaining_secs = match lease.expiry {
            _ if lease.revoking.is_some() => 0,
            Some(expiry) => expiry.saturating_duration_since(Instant::now()).as_secs() as i64,
            // Off the primary no expiry is kept; the full TTL is the honest upper bound.
            None => lease.ttl_secs,
        };
        Some(LeaseStatus {
            remaining_secs,
            granted_secs: lease.ttl_secs,
            keys: if with_keys {
                lease.keys.iter().cloned().collect()
            } else {
                Vec::new()
            },
        })
    }

    pub fn leases(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self.lock().leases.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// Up to `max` leases expired by now, on the primary, earliest first. Each is not
    /// offered again for `REVOKE_RETRY`, while its revoke goes through Raft.
    pub fn take_expired(&self, max: usize) -> Vec<i64> {
        let mut state = self.lock();
        if !state.primary {
            return Vec::new();
        }
        let now = Instant::now();
        let mut expired = Vec::new();
        while expired.len() < max {
            let Some(&Reverse((at, id))) = state.due.peek() else {
                break;
            };
            if at > now {
                break;
            }
            state.due.pop();
            if !state.is_due(id, at) {
                continue;
            }
            let retry_at = now + REVOKE_RETRY;
            if let Some(lease) = state.leases.get_mut(&id) {
                lease.revoking = Some(retry_at);
            }
            state.schedule(id, retry_at);
            expired.push(id);
        }
        expired
    }
}

impl Lessor {
    /// The leases found expired, checked every `EXPIRY_CHECK_INTERVAL` while this member is
    /// the primary, at most `MAX_REVOKES_PER_CHECK` at a time, for the server to revoke
    /// through Raft (etcd's `ExpiredLeasesC`). The checks end when the receiver is dropped.
    pub fn expired_leases(self: &Arc<Self>) -> tokio::sync::mpsc::Receiver<Vec<i64>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let lessor = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut check = tokio::time::interval(EXPIRY_CHECK_INTERVAL);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = check.tick() => {}
                    () = tx.closed() => return,
                }
                let Some(lessor) = lessor.upgrade() else {
                    return;
                };
                let expired = lessor.take_expired(MAX_REVOKES_PER_CHECK);
                // A server still busy with the last ones gets these at the next check.
                if !expired.is_empty() && tx.send(expired).await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}

fn promote_locked(state: &mut State, extend: Duration) {
    state.primary = true;
    let now = Instant::now();
    for lease in state.leases.values_mut() {
        lease.expiry = Some(now + extend + Duration::from_secs(lease.ttl_secs as u64));
        lease.revoking = None;
    }
    state.rebuild_due();
}

/// One record of the `lease` family, as etcd's backend holds the same data elsewhere
/// (`etcd_backend`): a lease's granted TTL, or a key attached to a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseRecord {
    Lease { id: i64, ttl_secs: i64 },
    Attached { id: i64, key: Vec<u8> },
}

impl LeaseRecord {
    /// Decodes a record of the family; None for one that is not a lease record.
    pub fn decode(key: &[u8], value: &[u8]) -> Option<LeaseRecord> {
        let id = i64::from_be_bytes(key.get(1..9)?.try_into().ok()?);
        match key[0] {
            PREFIX_LEASE => Some(LeaseRecord::Lease {
                id,
                ttl_secs: i64::from_be_bytes(value.try_into().ok()?),
            }),
            PREFIX_ATTACHED => Some(LeaseRecord::Attached {
                id,
                key: key[9..].to_vec(),
            }),
            _ => None,
        }
    }

    /// The record's key and value in the family.
    pub fn encode(&self) -> (Vec<u8>, Vec<u8>) {
        match self {
            LeaseRecord::Lease { id, ttl_secs } => (
                record_key(PREFIX_LEASE, *id, b""),
                ttl_secs.to_be_bytes().to_vec(),
            ),
            LeaseRecord::Attached { id, key } => {
                (record_key(PREFIX_ATTACHED, *id, key), Vec::new())
            }
        }
    }
}

fn record_key(prefix: u8, id: i64, key: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(9 + key.len());
    record.push(prefix);
    record.extend_from_slice(&id.to_be_bytes());
    record.extend_from_slice(key);
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{KvRead, Mvcc, RangeOptions};

    struct Fixture {
        _dir: tempfile::TempDir,
        mvcc: Arc<Mvcc>,
        lessor: Arc<Lessor>,
    }

    /// A lessor with no TTL floor, so a lease granted with TTL 0 is expired at once.
    fn open() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(Storage::open(&dir.path().join("db")).unwrap());
        let mvcc = Mvcc::open(storage.clone()).unwrap();
        let lessor = Lessor::open(storage, 0).unwrap();
        Fixture {
            _dir: dir,
            mvcc,
            lessor,
        }
    }

    impl Fixture {
        fn grant(&self, id: i64, ttl_secs: i64) {
            let mut guard = self.mvcc.write();
            self.lessor.grant(guard.batch_mut(), id, ttl_secs).unwrap();
            guard.commit().unwrap();
        }

        fn put(&self, key: &[u8], lease: i64) {
            let mut guard = self.mvcc.write();
            guard.txn().put(key, b"v".to_vec(), lease);
            let (changes, batch) = guard.changes_and_batch();
            self.lessor.apply_changes(batch, changes);
            guard.commit().unwrap();
        }

        fn revoke(&self, id: i64) -> Result<(), EtcdError> {
            let mut guard = self.mvcc.write();
            let revoked = self.lessor.revoke(&mut guard, id);
            guard.commit().unwrap();
            revoked
        }

        fn keys(&self) -> Vec<Vec<u8>> {
            let view = self.mvcc.read_view();
            let all = view
                .range(b"\0", RangeEnd::Unbounded, RangeOptions::default())
                .unwrap();
            all.kvs.into_iter().map(|kv| kv.key).collect()
        }
    }

    #[test]
    fn expired_leases_are_offered_earliest_first_up_to_the_limit_and_once() {
        let f = open();
        f.lessor.promote(Duration::ZERO);
        f.grant(1, 0);
        f.grant(2, 0);
        f.grant(3, 3600);
        assert_eq!(f.lessor.take_expired(1), vec![1]);
        assert_eq!(f.lessor.take_expired(10), vec![2]);
        // Their revokes are on the way: not offered again until the retry.
        assert!(f.lessor.take_expired(10).is_empty());
        assert_eq!(
            f.lessor.renew(1),
            Ok(None),
            "too late to keep an expired lease"
        );
        assert_eq!(f.lessor.renew(3), Ok(Some(3600)));
    }

    #[test]
    fn only_the_primary_keeps_expiry_and_a_new_primary_gives_full_ttls() {
        let f = open();
        f.grant(1, 0);
        assert!(f.lessor.take_expired(10).is_empty(), "not the primary");
        assert_eq!(f.lessor.renew(1), Err(EtcdError::NotLeader));
        f.lessor.promote(Duration::from_secs(60));
        assert!(
            f.lessor.take_expired(10).is_empty(),
            "extended on promotion"
        );
        f.lessor.demote();
        assert!(f.lessor.take_expired(10).is_empty());
        assert!(!f.lessor.is_primary());
    }

    #[test]
    fn renewals_do_not_grow_the_expiry_heap_without_bound() {
        let f = open();
        f.lessor.promote(Duration::ZERO);
        f.grant(1, 3600);
        for _ in 0..10 * MAX_STALE_DUE_ENTRIES {
            f.lessor.renew(1).unwrap();
        }
        let entries = f.lessor.lock().due.len();
        assert!(
            entries <= 2 + MAX_STALE_DUE_ENTRIES,
            "{entries} heap entries"
        );
    }

    #[test]
    fn revoke_deletes_the_leases_keys_in_one_revision_and_forgets_it() {
        let f = open();
        f.grant(7, 3600);
        f.put(b"a", 7);
        f.put(b"b", 7);
        f.put(b"c", NO_LEASE);
        let before = f.mvcc.current_rev();
        f.revoke(7).unwrap();
        assert_eq!(f.mvcc.current_rev(), before + 1);
        assert_eq!(f.keys(), vec![b"c".to_vec()]);
        assert!(!f.lessor.exists(7));
        assert_eq!(f.revoke(7), Err(EtcdError::LeaseNotFound));
        // What was stored agrees: a reload finds neither the lease nor its keys.
        f.lessor.reload().unwrap();
        assert!(!f.lessor.exists(7));
        assert_eq!(f.lessor.leases(), Vec::<i64>::new());
    }

    #[test]
    fn a_key_put_again_without_its_lease_is_not_deleted_by_the_revoke() {
        let f = open();
        f.grant(7, 3600);
        f.put(b"a", 7);
        f.put(b"a", NO_LEASE);
        f.revoke(7).unwrap();
        assert_eq!(f.keys(), vec![b"a".to_vec()]);
    }
}
