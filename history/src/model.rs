//! etcd's KV and lease model, as the linearizability search steps it: interned keys and
//! values, a persistent state that clones in O(1) and hashes incrementally, and `step`, which
//! applies one request to a state and checks the response against it.
//!
//! The semantics follow etcd (and its robustness suite's model): the revision starts at 1;
//! every write bumps it by one (a txn once, however many writes it holds); a delete of an
//! absent key and a lease grant leave it; a revoke deletes the lease's keys in one revision.

use std::collections::HashMap;
use std::rc::Rc;

use crate::{CompareTarget, KeyValue, Request, Response, TxnOp, TxnOpResult};

pub(crate) type KeyId = u32;
pub(crate) type ValueId = u32;

/// A key's state; also a response's view of a key (its value interned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyState {
    pub value: ValueId,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    pub lease_id: i64,
}

/// Maps keys and values to dense IDs so that states are small and compare cheaply.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    key_ids: HashMap<String, KeyId>,
    key_names: Vec<String>,
    value_ids: HashMap<String, ValueId>,
    value_names: Vec<String>,
}

impl Interner {
    pub fn key(&mut self, key: &str) -> KeyId {
        if let Some(&id) = self.key_ids.get(key) {
            return id;
        }
        let id = self.key_names.len() as KeyId;
        self.key_ids.insert(key.to_string(), id);
        self.key_names.push(key.to_string());
        id
    }

    pub fn value(&mut self, value: &str) -> ValueId {
        if let Some(&id) = self.value_ids.get(value) {
            return id;
        }
        let id = self.value_names.len() as ValueId;
        self.value_ids.insert(value.to_string(), id);
        self.value_names.push(value.to_string());
        id
    }

    pub fn key_count(&self) -> usize {
        self.key_names.len()
    }

    pub fn key_name(&self, key: KeyId) -> &str {
        self.key_names
            .get(key as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    pub fn value_name(&self, value: ValueId) -> &str {
        self.value_names
            .get(value as usize)
            .map(String::as_str)
            .unwrap_or("?")
    }

    pub fn key_value(&mut self, kv: &KeyValue) -> KeyState {
        KeyState {
            value: self.value(&kv.value),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease_id: kv.lease_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Cmp {
    Value(KeyId, Option<ValueId>),
    ModRevision(KeyId, i64),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum TxOp {
    Get(KeyId),
    Put {
        key: KeyId,
        value: ValueId,
        lease_id: i64,
    },
    Delete(KeyId),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Req {
    Get(KeyId),
    Put {
        key: KeyId,
        value: ValueId,
        lease_id: i64,
    },
    Delete(KeyId),
    Txn {
        compares: Vec<Cmp>,
        on_success: Vec<TxOp>,
        on_failure: Vec<TxOp>,
    },
    LeaseGrant(i64),
    LeaseRevoke(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TxRes {
    Get(Option<KeyState>),
    Put,
    Delete(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resp {
    Get {
        revision: i64,
        kv: Option<KeyState>,
    },
    Put {
        revision: i64,
    },
    Delete {
        revision: i64,
        deleted: i64,
    },
    /// `results: None`: not recorded (a txn the event-log patch resolved), unconstrained.
    Txn {
        revision: i64,
        succeeded: bool,
        results: Option<Vec<TxRes>>,
    },
    LeaseGrant {
        revision: i64,
    },
    LeaseRevoke {
        revision: i64,
    },
    /// Known to have taken effect, with no response to check (see the search's lease rules).
    Applied,
}

impl Resp {
    pub fn revision(&self) -> i64 {
        match self {
            Resp::Get { revision, .. }
            | Resp::Put { revision }
            | Resp::Delete { revision, .. }
            | Resp::Txn { revision, .. }
            | Resp::LeaseGrant { revision }
            | Resp::LeaseRevoke { revision } => *revision,
            Resp::Applied => 0,
        }
    }
}

pub(crate) fn compile_request(interner: &mut Interner, request: &Request) -> Req {
    let tx_op = |interner: &mut Interner, op: &TxnOp| match op {
        TxnOp::Get { key } => TxOp::Get(interner.key(key)),
        TxnOp::Put {
            key,
            value,
            lease_id,
        } => TxOp::Put {
            key: interner.key(key),
            value: interner.value(value),
            lease_id: *lease_id,
        },
        TxnOp::Delete { key } => TxOp::Delete(interner.key(key)),
    };
    match request {
        Request::Get { key } => Req::Get(interner.key(key)),
        Request::Put {
            key,
            value,
            lease_id,
        } => Req::Put {
            key: interner.key(key),
            value: interner.value(value),
            lease_id: *lease_id,
        },
        Request::Delete { key } => Req::Delete(interner.key(key)),
        Request::Txn {
            compares,
            on_success,
            on_failure,
        } => Req::Txn {
            compares: compares
                .iter()
                .map(|c| {
                    let key = interner.key(&c.key);
                    match &c.target {
                        CompareTarget::Value(v) => {
                            Cmp::Value(key, v.as_deref().map(|v| interner.value(v)))
                        }
                        CompareTarget::ModRevision(r) => Cmp::ModRevision(key, *r),
                    }
                })
                .collect(),
            on_success: on_success.iter().map(|op| tx_op(interner, op)).collect(),
            on_failure: on_failure.iter().map(|op| tx_op(interner, op)).collect(),
        },
        Request::LeaseGrant { lease_id } => Req::LeaseGrant(*lease_id),
        Request::LeaseRevoke { lease_id } => Req::LeaseRevoke(*lease_id),
    }
}

/// `request` is needed to tell a patched txn (no results for a non-empty branch) from one
/// whose response really lists results.
pub(crate) fn compile_response(
    interner: &mut Interner,
    request: &Request,
    response: &Response,
) -> Resp {
    let kv = |interner: &mut Interner, kv: &Option<KeyValue>| {
        kv.as_ref().map(|kv| interner.key_value(kv))
    };
    match response {
        Response::Get { revision, kv: v } => Resp::Get {
            revision: *revision,
            kv: kv(interner, v),
        },
        Response::Put { revision } => Resp::Put {
            revision: *revision,
        },
        Response::Delete { revision, deleted } => Resp::Delete {
            revision: *revision,
            deleted: *deleted,
        },
        Response::Txn {
            revision,
            succeeded,
            results,
        } => {
            let branch_len = match request {
                Request::Txn {
                    on_success,
                    on_failure,
                    ..
                } => {
                    if *succeeded {
                        on_success.len()
                    } else {
                        on_failure.len()
                    }
                }
                _ => 0,
            };
            let results = if results.is_empty() && branch_len > 0 {
                None
            } else {
                Some(
                    results
                        .iter()
                        .map(|r| match r {
                            TxnOpResult::Get { kv: v } => TxRes::Get(kv(interner, v)),
                            TxnOpResult::Put => TxRes::Put,
                            TxnOpResult::Delete { deleted } => TxRes::Delete(*deleted),
                        })
                        .collect(),
                )
            };
            Resp::Txn {
                revision: *revision,
                succeeded: *succeeded,
                results,
            }
        }
        Response::LeaseGrant { revision } => Resp::LeaseGrant {
            revision: *revision,
        },
        Response::LeaseRevoke { revision } => Resp::LeaseRevoke {
            revision: *revision,
        },
    }
}

/// Whether the request can change the store at all (a read-only one never does).
pub(crate) fn may_write(req: &Req) -> bool {
    match req {
        Req::Get(_) => false,
        Req::Txn {
            on_success,
            on_failure,
            ..
        } => on_success
            .iter()
            .chain(on_failure)
            .any(|op| !matches!(op, TxOp::Get(_))),
        _ => true,
    }
}

/// etcd rejects a txn that puts one key twice, or puts and deletes one key, in a branch.
pub(crate) fn txn_is_valid(on_success: &[TxOp], on_failure: &[TxOp]) -> bool {
    let branch_ok = |ops: &[TxOp]| {
        let mut put_keys: Vec<KeyId> = Vec::new();
        let mut deleted_keys: Vec<KeyId> = Vec::new();
        for op in ops {
            match op {
                TxOp::Put { key, .. } => {
                    if put_keys.contains(key) || deleted_keys.contains(key) {
                        return false;
                    }
                    put_keys.push(*key);
                }
                TxOp::Delete(key) => {
                    if put_keys.contains(key) {
                        return false;
                    }
                    deleted_keys.push(*key);
                }
                TxOp::Get(_) => {}
            }
        }
        true
    };
    branch_ok(on_success) && branch_ok(on_failure)
}

/// The revisions the store may be at just before the operation, given its response:
/// `(lowest, highest)`. Used to pin operations to their place in the search.
pub(crate) fn revision_before(req: &Req, resp: &Resp) -> (i64, i64) {
    if *resp == Resp::Applied {
        return (i64::MIN, i64::MAX);
    }
    let r = resp.revision();
    let wrote = (r.saturating_sub(1), r.saturating_sub(1));
    let read = (r, r);
    match (req, resp) {
        (Req::Put { .. }, _) => wrote,
        (Req::Delete(_), Resp::Delete { deleted, .. }) => {
            if *deleted > 0 {
                wrote
            } else {
                read
            }
        }
        (
            Req::Txn {
                on_success,
                on_failure,
                ..
            },
            Resp::Txn {
                succeeded, results, ..
            },
        ) => {
            let branch = if *succeeded { on_success } else { on_failure };
            if branch.iter().any(|op| matches!(op, TxOp::Put { .. })) {
                return wrote;
            }
            if !branch.iter().any(|op| matches!(op, TxOp::Delete(_))) {
                return read;
            }
            match results {
                Some(results) if results.len() == branch.len() => {
                    if results
                        .iter()
                        .any(|r| matches!(r, TxRes::Delete(n) if *n > 0))
                    {
                        wrote
                    } else {
                        read
                    }
                }
                _ => (wrote.0, r),
            }
        }
        (Req::LeaseRevoke(_), _) => (wrote.0, r),
        _ => read,
    }
}

const CHUNK: usize = 16;
type Chunk = [Option<KeyState>; CHUNK];

fn mix(mut x: u64) -> u64 {
    // splitmix64's finalizer: good enough to XOR-combine per-component hashes.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

pub(crate) fn mix64(x: u64) -> u64 {
    mix(x)
}

fn key_hash(key: KeyId, state: &Option<KeyState>) -> u64 {
    match state {
        None => 0,
        Some(s) => {
            let mut h = mix(key as u64 ^ 0x5151_0000_0000_0000);
            for x in [
                s.value as u64,
                s.create_revision as u64,
                s.mod_revision as u64,
                s.version as u64,
                s.lease_id as u64,
            ] {
                h = mix(h ^ x);
            }
            h
        }
    }
}

fn lease_hash(lease: i64) -> u64 {
    mix(lease as u64 ^ 0x1ea5_e000_0000_0000)
}

fn revision_hash(revision: i64) -> u64 {
    mix(revision as u64 ^ 0x7e71_5100_0000_0000)
}

/// The store's state. Cloning shares everything; a write copies one chunk of 16 keys (and
/// the chunk index), so a step costs O(keys / 16) at worst and O(1) for the ~10 keys of a
/// robustness run. `hash` is kept up to date on every change.
#[derive(Debug, Clone)]
pub(crate) struct State {
    revision: i64,
    chunks: Rc<Vec<Rc<Chunk>>>,
    /// Granted leases, sorted; the keys attached to one are those whose `lease_id` names it.
    leases: Rc<Vec<i64>>,
    hash: u64,
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.revision == other.revision
            && (Rc::ptr_eq(&self.leases, &other.leases) || self.leases == other.leases)
            && (Rc::ptr_eq(&self.chunks, &other.chunks)
                || (self.chunks.len() == other.chunks.len()
                    && self
                        .chunks
                        .iter()
                        .zip(other.chunks.iter())
                        .all(|(a, b)| Rc::ptr_eq(a, b) || a == b)))
    }
}

impl Eq for State {}

impl State {
    /// An empty store at revision 1, as etcd starts.
    pub fn initial(key_count: usize) -> State {
        let chunk_count = key_count.div_ceil(CHUNK).max(1);
        State {
            revision: 1,
            chunks: Rc::new((0..chunk_count).map(|_| Rc::new([None; CHUNK])).collect()),
            leases: Rc::new(Vec::new()),
            hash: revision_hash(1),
        }
    }

    pub fn revision(&self) -> i64 {
        self.revision
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn get(&self, key: KeyId) -> Option<KeyState> {
        let key = key as usize;
        self.chunks.get(key / CHUNK).and_then(|c| c[key % CHUNK])
    }

    pub fn has_lease(&self, lease: i64) -> bool {
        self.leases.binary_search(&lease).is_ok()
    }

    /// Every key with its state, for reports.
    pub fn keys(&self) -> impl Iterator<Item = (KeyId, KeyState)> + '_ {
        self.chunks.iter().enumerate().flat_map(|(ci, chunk)| {
            chunk
                .iter()
                .enumerate()
                .filter_map(move |(i, s)| s.map(|s| ((ci * CHUNK + i) as KeyId, s)))
        })
    }

    pub fn leases(&self) -> &[i64] {
        &self.leases
    }

    /// The writes that took `before` to `self` at `revision`, by key: a put as the value
    /// written, a delete as `None`. Unchanged chunks are skipped by pointer.
    pub fn writes_since(
        &self,
        before: &State,
        revision: i64,
        out: &mut Vec<(KeyId, Option<ValueId>)>,
    ) {
        out.clear();
        let chunk_count = self.chunks.len().max(before.chunks.len());
        for ci in 0..chunk_count {
            let (after_chunk, before_chunk) = (self.chunks.get(ci), before.chunks.get(ci));
            if let (Some(a), Some(b)) = (after_chunk, before_chunk) {
                if Rc::ptr_eq(a, b) {
                    continue;
                }
            }
            for i in 0..CHUNK {
                let after = after_chunk.and_then(|c| c[i]);
                let previous = before_chunk.and_then(|c| c[i]);
                let key = (ci * CHUNK + i) as KeyId;
                match after {
                    Some(s) if s.mod_revision == revision && after != previous => {
                        out.push((key, Some(s.value)))
                    }
                    None if previous.is_some() => out.push((key, None)),
                    _ => {}
                }
            }
        }
    }

    fn set_revision(&mut self, revision: i64) {
        self.hash ^= revision_hash(self.revision) ^ revision_hash(revision);
        self.revision = revision;
    }

    fn set(&mut self, key: KeyId, value: Option<KeyState>) {
        let key = key as usize;
        let chunks = Rc::make_mut(&mut self.chunks);
        while chunks.len() <= key / CHUNK {
            chunks.push(Rc::new([None; CHUNK]));
        }
        let slot = &mut Rc::make_mut(&mut chunks[key / CHUNK])[key % CHUNK];
        self.hash ^= key_hash(key as KeyId, slot) ^ key_hash(key as KeyId, &value);
        *slot = value;
    }

    fn grant(&mut self, lease: i64) {
        let leases = Rc::make_mut(&mut self.leases);
        if let Err(at) = leases.binary_search(&lease) {
            leases.insert(at, lease);
            self.hash ^= lease_hash(lease);
        }
    }

    fn revoke(&mut self, lease: i64) {
        let leases = Rc::make_mut(&mut self.leases);
        if let Ok(at) = leases.binary_search(&lease) {
            leases.remove(at);
            self.hash ^= lease_hash(lease);
        }
    }

    fn put(&mut self, key: KeyId, value: ValueId, lease_id: i64, revision: i64) {
        let previous = self.get(key);
        self.set(
            key,
            Some(KeyState {
                value,
                create_revision: previous.map_or(revision, |p| p.create_revision),
                mod_revision: revision,
                version: previous.map_or(1, |p| p.version.saturating_add(1)),
                lease_id,
            }),
        );
    }
}

/// Why a request with its response cannot be applied to a state. Cheap to build (the search
/// makes many); `describe` turns one into words for a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StepError {
    ResponseKind,
    /// The response's revision differs from the store's after the request.
    Revision {
        store: i64,
        response: i64,
    },
    GetKv {
        key: KeyId,
        store: Option<KeyState>,
        response: Option<KeyState>,
    },
    Deleted {
        store: i64,
        response: i64,
    },
    LeaseNotGranted(i64),
    LeaseAlreadyGranted(i64),
    TxnInvalid,
    TxnSucceeded {
        store: bool,
        response: bool,
    },
    TxnResultCount {
        store: usize,
        response: usize,
    },
    TxnResult {
        index: usize,
        store: TxRes,
        response: TxRes,
    },
}

pub(crate) fn describe_kv(interner: &Interner, kv: &Option<KeyState>) -> String {
    match kv {
        None => "absent".to_string(),
        Some(s) => format!(
            "value {:?} create {} mod {} version {} lease {}",
            interner.value_name(s.value),
            s.create_revision,
            s.mod_revision,
            s.version,
            s.lease_id
        ),
    }
}

fn describe_tx_res(interner: &Interner, r: &TxRes) -> String {
    match r {
        TxRes::Get(kv) => format!("get: {}", describe_kv(interner, kv)),
        TxRes::Put => "put".to_string(),
        TxRes::Delete(n) => format!("delete: deleted {n}"),
    }
}

impl StepError {
    pub fn describe(&self, interner: &Interner) -> String {
        match self {
            StepError::ResponseKind => {
                "the response is of another kind than the request".to_string()
            }
            StepError::Revision { store, response } => {
                format!(
                    "the store would be at revision {store} after it, the response says {response}"
                )
            }
            StepError::GetKv {
                key,
                store,
                response,
            } => format!(
                "key {:?} is {} in the store, the response says {}",
                interner.key_name(*key),
                describe_kv(interner, store),
                describe_kv(interner, response)
            ),
            StepError::Deleted { store, response } => {
                format!("it would delete {store} key(s), the response says {response}")
            }
            StepError::LeaseNotGranted(l) => {
                format!("lease {l} is not granted (etcd would fail the request)")
            }
            StepError::LeaseAlreadyGranted(l) => {
                format!("lease {l} is already granted (etcd would fail the grant)")
            }
            StepError::TxnInvalid => {
                "the txn writes one key twice in a branch (etcd rejects it)".to_string()
            }
            StepError::TxnSucceeded { store, response } => {
                format!("its compares evaluate to {store} in the store, the response says succeeded = {response}")
            }
            StepError::TxnResultCount { store, response } => {
                format!("the branch has {store} operation(s), the response {response} result(s)")
            }
            StepError::TxnResult {
                index,
                store,
                response,
            } => format!(
                "txn operation {index}: the store gives {}, the response says {}",
                describe_tx_res(interner, store),
                describe_tx_res(interner, response)
            ),
        }
    }
}

fn check_revision(store: i64, response: i64) -> Result<(), StepError> {
    if store == response {
        Ok(())
    } else {
        Err(StepError::Revision { store, response })
    }
}

fn compare_holds(state: &State, cmp: &Cmp) -> bool {
    match cmp {
        Cmp::Value(key, expected) => state.get(*key).map(|s| s.value) == *expected,
        Cmp::ModRevision(key, expected) => {
            state.get(*key).map_or(0, |s| s.mod_revision) == *expected
        }
    }
}

/// Applies `req` to `state`. With `expected` (a known outcome) the response must match what
/// the store would answer; without (an `Unknown` outcome) any response goes, and an error
/// means the request would have failed, so it had no effect.
pub(crate) fn step(state: &State, req: &Req, expected: Option<&Resp>) -> Result<State, StepError> {
    if expected == Some(&Resp::Applied) {
        return step(state, req, None);
    }
    let mut next = state.clone();
    match req {
        Req::Get(key) => match expected {
            None => {}
            Some(Resp::Get { revision, kv }) => {
                check_revision(state.revision, *revision)?;
                let stored = state.get(*key);
                if stored != *kv {
                    return Err(StepError::GetKv {
                        key: *key,
                        store: stored,
                        response: *kv,
                    });
                }
            }
            Some(_) => return Err(StepError::ResponseKind),
        },
        Req::Put {
            key,
            value,
            lease_id,
        } => {
            if *lease_id != 0 && !state.has_lease(*lease_id) {
                return Err(StepError::LeaseNotGranted(*lease_id));
            }
            let revision = state.revision.saturating_add(1);
            next.put(*key, *value, *lease_id, revision);
            next.set_revision(revision);
            match expected {
                None => {}
                Some(Resp::Put { revision: r }) => check_revision(revision, *r)?,
                Some(_) => return Err(StepError::ResponseKind),
            }
        }
        Req::Delete(key) => {
            let deleted = if state.get(*key).is_some() {
                next.set(*key, None);
                next.set_revision(state.revision.saturating_add(1));
                1
            } else {
                0
            };
            match expected {
                None => {}
                Some(Resp::Delete {
                    revision,
                    deleted: d,
                }) => {
                    if *d != deleted {
                        return Err(StepError::Deleted {
                            store: deleted,
                            response: *d,
                        });
                    }
                    check_revision(next.revision, *revision)?;
                }
                Some(_) => return Err(StepError::ResponseKind),
            }
        }
        Req::Txn {
            compares,
            on_success,
            on_failure,
        } => {
            if !txn_is_valid(on_success, on_failure) {
                return Err(StepError::TxnInvalid);
            }
            let succeeded = compares.iter().all(|c| compare_holds(state, c));
            let expected = match expected {
                None => None,
                Some(Resp::Txn {
                    revision,
                    succeeded: s,
                    results,
                }) => {
                    if *s != succeeded {
                        return Err(StepError::TxnSucceeded {
                            store: succeeded,
                            response: *s,
                        });
                    }
                    Some((*revision, results.as_deref()))
                }
                Some(_) => return Err(StepError::ResponseKind),
            };
            let branch = if succeeded { on_success } else { on_failure };
            for op in branch {
                if let TxOp::Put { lease_id, .. } = op {
                    if *lease_id != 0 && !state.has_lease(*lease_id) {
                        return Err(StepError::LeaseNotGranted(*lease_id));
                    }
                }
            }
            let expected_results = expected.and_then(|(_, results)| results);
            if let Some(results) = expected_results {
                if results.len() != branch.len() {
                    return Err(StepError::TxnResultCount {
                        store: branch.len(),
                        response: results.len(),
                    });
                }
            }
            let revision = state.revision.saturating_add(1);
            let mut wrote = false;
            for (index, op) in branch.iter().enumerate() {
                let result = match op {
                    TxOp::Get(key) => TxRes::Get(next.get(*key)),
                    TxOp::Put {
                        key,
                        value,
                        lease_id,
                    } => {
                        next.put(*key, *value, *lease_id, revision);
                        wrote = true;
                        TxRes::Put
                    }
                    TxOp::Delete(key) => {
                        if next.get(*key).is_some() {
                            next.set(*key, None);
                            wrote = true;
                            TxRes::Delete(1)
                        } else {
                            TxRes::Delete(0)
                        }
                    }
                };
                if let Some(results) = expected_results {
                    if results[index] != result {
                        return Err(StepError::TxnResult {
                            index,
                            store: result,
                            response: results[index].clone(),
                        });
                    }
                }
            }
            if wrote {
                next.set_revision(revision);
            }
            if let Some((r, _)) = expected {
                check_revision(next.revision, r)?;
            }
        }
        Req::LeaseGrant(lease) => {
            if state.has_lease(*lease) {
                return Err(StepError::LeaseAlreadyGranted(*lease));
            }
            next.grant(*lease);
            match expected {
                None => {}
                Some(Resp::LeaseGrant { revision }) => check_revision(state.revision, *revision)?,
                Some(_) => return Err(StepError::ResponseKind),
            }
        }
        Req::LeaseRevoke(lease) => {
            if !state.has_lease(*lease) {
                return Err(StepError::LeaseNotGranted(*lease));
            }
            let attached: Vec<KeyId> = state
                .keys()
                .filter(|(_, s)| s.lease_id == *lease)
                .map(|(k, _)| k)
                .collect();
            for key in &attached {
                next.set(*key, None);
            }
            if !attached.is_empty() {
                next.set_revision(state.revision.saturating_add(1));
            }
            next.revoke(*lease);
            match expected {
                None => {}
                Some(Resp::LeaseRevoke { revision }) => check_revision(next.revision, *revision)?,
                Some(_) => return Err(StepError::ResponseKind),
            }
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_follows_content_not_history() {
        let mut a = State::initial(3);
        let mut b = State::initial(3);
        a.put(0, 7, 0, 2);
        a.set(0, None);
        b.grant(5);
        b.revoke(5);
        assert_eq!(a, b);
        assert_eq!(a.hash(), b.hash());
        a.put(1, 3, 0, 2);
        assert_ne!(a, b);
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn txn_reads_see_its_own_writes_at_the_new_revision() {
        let state = State::initial(1);
        let req = Req::Txn {
            compares: vec![Cmp::Value(0, None)],
            on_success: vec![
                TxOp::Put {
                    key: 0,
                    value: 1,
                    lease_id: 0,
                },
                TxOp::Get(0),
            ],
            on_failure: vec![],
        };
        let kv = KeyState {
            value: 1,
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            lease_id: 0,
        };
        let resp = Resp::Txn {
            revision: 2,
            succeeded: true,
            results: Some(vec![TxRes::Put, TxRes::Get(Some(kv))]),
        };
        let next = step(&state, &req, Some(&resp)).expect("fits");
        assert_eq!(next.revision(), 2);
        let stale = Resp::Txn {
            revision: 2,
            succeeded: true,
            results: Some(vec![TxRes::Put, TxRes::Get(None)]),
        };
        assert!(step(&state, &req, Some(&stale)).is_err());
    }
}
