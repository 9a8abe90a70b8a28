//! The linearizability check: a Wing–Gong search with Lowe's improvements, as porcupine
//! runs it. Calls and returns form a doubly linked event list; linearizing an operation lifts
//! its call and return out of the list (unlifting restores them on backtrack); a stack keeps
//! the choices; a cache of (set of linearized operations, model state) already explored
//! prunes repeats.
//!
//! The history is not partitioned by key: every write bumps the one store revision, so the
//! keys' sub-histories are coupled and checking them apart would accept histories whose
//! revisions no single order explains. Instead the search leans on the revisions: an `Ok`
//! response pins the store revision just before the operation (a read at R, a write at R-1),
//! an operation is only tried at its revision, and a branch dies as soon as the store passes
//! the revision some pending operation needs. That makes a valid history's search about
//! linear in its length.
//!
//! `Unknown` operations have no return event: they may be linearized at any point after their
//! call, or never (the search ends when every known operation is placed). They are tried only
//! after the known candidates, and only where they change the state. Further sound cuts, each
//! argued where it is made: an operation that fits and leaves the state as it is (a read) is
//! never tried later instead; of unknown operations with one effect only the earliest called
//! is tried; a node is pruned by an explored one with the same known operations and state and
//! fewer unknown ones; an unknown grant of a lease granted nowhere else is placed at its call;
//! an unknown revoke only where it deletes keys. A cheap real-time check runs first (an
//! operation invoked after another returned with revision R cannot need an earlier one).
//!
//! A failing history can still take the search long when many unknown operations could each
//! explain a revision: the budget bounds it (`Undecided`).

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::model::{
    compile_request, compile_response, describe_kv, may_write, mix64, revision_before, step,
    Interner, KeyId, Req, Resp, State, TxOp, ValueId,
};
use crate::{Event, Operation, Outcome, Request};

/// The verdict of `check_linearizable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinearizabilityResult {
    /// A linearization exists (the search found one).
    Linearizable,
    /// No order of the operations fits etcd's model.
    NotLinearizable(NotLinearizableReport),
    /// The budget ran out before the search decided.
    Undecided {
        /// Operations the search had to place (after dropping `Failed` and read-only `Unknown` ones).
        operations: usize,
        /// The most operations placed in one partial linearization.
        longest_prefix: usize,
    },
    /// The history itself is malformed (e.g. an operation that returns before its call).
    Malformed { problems: Vec<String> },
}

impl LinearizabilityResult {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, LinearizabilityResult::Linearizable)
    }
}

/// Where the search got stuck: the longest partial linearization it found, and the
/// operations that could not be placed after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLinearizableReport {
    /// What was found, in one sentence.
    pub summary: String,
    /// Indices (into the checked history) of the longest partial linearization, in order.
    pub longest_prefix: Vec<usize>,
    /// The store revision after that prefix.
    pub revision_after_prefix: i64,
    /// The keys and leases after that prefix, one line each.
    pub state_after_prefix: Vec<String>,
    /// The known operations that were candidates to come next, none of which could.
    pub blocked: Vec<BlockedOperation>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedOperation {
    /// Index into the checked history.
    pub index: usize,
    pub operation: Operation,
    pub reason: String,
}

impl fmt::Display for NotLinearizableReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "not linearizable: {}", self.summary)?;
        if self.longest_prefix.is_empty() && self.state_after_prefix.is_empty() {
            for blocked in &self.blocked {
                writeln!(
                    f,
                    "  #{} {}: {}",
                    blocked.index,
                    describe_operation(&blocked.operation),
                    blocked.reason
                )?;
            }
            return Ok(());
        }
        let tail = self.longest_prefix.len().saturating_sub(5);
        writeln!(
            f,
            "last operations of that prefix: {:?}",
            &self.longest_prefix[tail..]
        )?;
        writeln!(f, "state after it:")?;
        for line in &self.state_after_prefix {
            writeln!(f, "  {line}")?;
        }
        writeln!(f, "operations that could not come next:")?;
        for blocked in &self.blocked {
            writeln!(
                f,
                "  #{} {}: {}",
                blocked.index,
                describe_operation(&blocked.operation),
                blocked.reason
            )?;
        }
        Ok(())
    }
}

/// One line for an operation: client, window, request, outcome.
pub fn describe_operation(op: &Operation) -> String {
    let window = match op.outcome {
        Outcome::Unknown(_) => format!("[{}ns..]", op.call_ns),
        _ => format!("[{}ns..{}ns]", op.call_ns, op.return_ns),
    };
    format!(
        "client {} {window} {:?} -> {:?}",
        op.client, op.request, op.outcome
    )
}

/// Cache and step limits beyond the time budget: the cache stops growing past this many
/// entries (which only costs speed, never soundness).
const CACHE_LIMIT: usize = 2_000_000;
const NIL: u32 = u32::MAX;

struct Op {
    /// Index into the checked history.
    index: usize,
    req: Req,
    /// `None` for an `Unknown` outcome.
    expected: Option<Resp>,
    /// The store revisions the operation may start from (known operations).
    before: (i64, i64),
    /// An unknown operation that is only worth placing where it makes a new revision.
    must_bump: bool,
    /// Ordinal among known operations in call order, or among unknown ones.
    slot: u32,
    call_event: u32,
    return_event: u32,
}

/// Hashes of cache keys are already mixed: pass them through.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The writes of one revision: (key, value written or `None` for a delete), sorted.
type RevisionWrites = Vec<(KeyId, Option<ValueId>)>;

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<IdentityHasher>>;

/// The set of linearized operations, in a form that is cheap to hash and to snapshot:
/// known operations are mostly placed in call order, so they are a prefix (`frontier`) plus a
/// few beyond it; applied unknown operations are few. `hash` covers the known part only: the
/// cache matches the unknown part by inclusion (see the search).
struct LinearizedSet {
    known: Vec<u64>,
    known_count: u32,
    frontier: u32,
    known_total: u32,
    /// Unknown slots applied, in the order applied (a stack, as the search).
    unknown: Vec<u32>,
    unknown_applied: Vec<bool>,
    hash: u64,
}

impl LinearizedSet {
    fn new(known_total: usize, unknown_total: usize) -> Self {
        LinearizedSet {
            known: vec![0; known_total.div_ceil(64)],
            known_count: 0,
            frontier: 0,
            known_total: known_total as u32,
            unknown: Vec::new(),
            unknown_applied: vec![false; unknown_total],
            hash: 0,
        }
    }

    fn is_applied(&self, op: &Op) -> bool {
        if op.expected.is_some() {
            self.is_known_set(op.slot)
        } else {
            self.unknown_applied[op.slot as usize]
        }
    }

    fn is_known_set(&self, slot: u32) -> bool {
        self.known[(slot / 64) as usize] >> (slot % 64) & 1 == 1
    }

    fn add(&mut self, op: &Op) {
        if op.expected.is_some() {
            self.hash ^= mix64(op.slot as u64);
            self.known[(op.slot / 64) as usize] |= 1 << (op.slot % 64);
            self.known_count += 1;
            while self.frontier < self.known_total && self.is_known_set(self.frontier) {
                self.frontier += 1;
            }
        } else {
            self.unknown.push(op.slot);
            self.unknown_applied[op.slot as usize] = true;
        }
    }

    fn remove(&mut self, op: &Op) {
        if op.expected.is_some() {
            self.hash ^= mix64(op.slot as u64);
            self.known[(op.slot / 64) as usize] &= !(1 << (op.slot % 64));
            self.known_count -= 1;
            self.frontier = self.frontier.min(op.slot);
        } else {
            self.unknown.pop();
            self.unknown_applied[op.slot as usize] = false;
        }
    }

    /// The known part, exactly and compactly: the frontier and the known slots beyond it.
    fn known_snapshot(&self, out: &mut Vec<u32>) {
        out.clear();
        out.push(self.frontier);
        let mut extra = self.known_count - self.frontier;
        let mut word = (self.frontier / 64) as usize;
        let mut bits = self.known.get(word).copied().unwrap_or(0) & (!0u64 << (self.frontier % 64));
        while extra > 0 && word < self.known.len() {
            if bits == 0 {
                word += 1;
                bits = self.known.get(word).copied().unwrap_or(0);
                continue;
            }
            out.push(word as u32 * 64 + bits.trailing_zeros());
            bits &= bits - 1;
            extra -= 1;
        }
    }

    /// The applied unknown slots, sorted.
    fn unknown_snapshot(&self, out: &mut Vec<u32>) {
        out.clear();
        out.extend_from_slice(&self.unknown);
        out.sort_unstable();
    }
}

/// Whether sorted `small` is a subset of sorted `big`.
fn is_subset(small: &[u32], big: &[u32]) -> bool {
    let mut big = big.iter();
    small.iter().all(|x| big.by_ref().any(|y| y == x))
}

/// Minimum of the highest start revision over known operations not yet linearized: the
/// store must never pass it.
struct MinTree {
    size: usize,
    tree: Vec<i64>,
}

impl MinTree {
    fn new(values: &[i64]) -> Self {
        let size = values.len().next_power_of_two().max(1);
        let mut tree = vec![i64::MAX; 2 * size];
        tree[size..size + values.len()].copy_from_slice(values);
        for i in (1..size).rev() {
            tree[i] = tree[2 * i].min(tree[2 * i + 1]);
        }
        MinTree { size, tree }
    }

    fn set(&mut self, at: usize, value: i64) {
        let mut i = self.size + at;
        self.tree[i] = value;
        while i > 1 {
            i /= 2;
            self.tree[i] = self.tree[2 * i].min(self.tree[2 * i + 1]);
        }
    }

    fn min(&self) -> i64 {
        self.tree[1]
    }
}

struct PrefixNode {
    op: u32,
    parent: Option<Rc<PrefixNode>>,
}

impl Drop for PrefixNode {
    // Iteratively: a recursive drop of a prefix of 50,000 nodes overflows the stack.
    fn drop(&mut self) {
        let mut parent = self.parent.take();
        while let Some(node) = parent {
            match Rc::try_unwrap(node) {
                Ok(mut node) => parent = node.parent.take(),
                Err(_) => break,
            }
        }
    }
}

/// A node the search reached: its known and unknown operations (as `LinearizedSet`'s
/// snapshots) and state; `finished` once the search backtracked out of it.
struct CacheEntry {
    known: Box<[u32]>,
    unknown: Box<[u32]>,
    state: State,
    finished: bool,
}

struct Frame {
    op: u32,
    /// The node's cache entry (none once the cache is full).
    entry: Option<u32>,
    /// The operation left the state as it was: had the search any way on from the frame's
    /// node, it would have one with this operation first (it fitted, and moving a
    /// state-preserving candidate to the front breaks no real-time order), so on backtrack
    /// the node is not tried further.
    pure: bool,
    unknown_pass: bool,
    window_end: u32,
    state_before: State,
}

/// Whether `history` has a linearization under etcd's KV and lease model, revisions
/// included. `Failed` operations are dropped; `Unknown` ones may take effect at any point
/// after their call, or never. Gives up with `Undecided` when `budget` runs out.
pub fn check_linearizable(history: &[Operation], budget: Duration) -> LinearizabilityResult {
    search(history, None, budget)
}

/// The search; with `event_log` (the store's complete log, see `patch`), every step that
/// makes a new revision must make exactly the log's events of that revision.
pub(crate) fn search(
    history: &[Operation],
    event_log: Option<&[Event]>,
    budget: Duration,
) -> LinearizabilityResult {
    let started = Instant::now();
    let mut interner = Interner::default();
    let mut problems = Vec::new();
    // Grants per lease ID (of operations that may have happened), for the lease rules below.
    let mut grants: HashMap<i64, usize> = HashMap::new();
    for operation in history {
        if let (Request::LeaseGrant { lease_id }, false) = (
            &operation.request,
            matches!(operation.outcome, Outcome::Failed(_)),
        ) {
            *grants.entry(*lease_id).or_default() += 1;
        }
    }
    let mut ops: Vec<(u64, u64, Op)> = Vec::new();
    for (index, operation) in history.iter().enumerate() {
        let req = compile_request(&mut interner, &operation.request);
        let mut return_ns = operation.return_ns;
        let mut must_bump = false;
        let expected = match &operation.outcome {
            Outcome::Failed(_) => continue,
            Outcome::Unknown(_) => {
                if !may_write(&req) {
                    continue;
                }
                match req {
                    // The only grant of its lease: granting it at its call is as good as any
                    // later or never (only a second grant of the ID could tell), so it is
                    // placed there instead of at every point of the search.
                    Req::LeaseGrant(lease) if grants.get(&lease) == Some(&1) => {
                        return_ns = operation.call_ns;
                        Some(Resp::Applied)
                    }
                    // Likewise a revoke that deletes no key only matters to a later grant of
                    // its ID: without one, it is only placed where it deletes keys.
                    Req::LeaseRevoke(lease) => {
                        must_bump = grants.get(&lease).copied().unwrap_or(0) <= 1;
                        None
                    }
                    _ => None,
                }
            }
            Outcome::Ok(response) => {
                if operation.return_ns < operation.call_ns {
                    problems.push(format!(
                        "operation #{index} returns at {}ns, before its call at {}ns",
                        operation.return_ns, operation.call_ns
                    ));
                }
                Some(compile_response(
                    &mut interner,
                    &operation.request,
                    response,
                ))
            }
        };
        let before = expected
            .as_ref()
            .map_or((i64::MIN, i64::MAX), |resp| revision_before(&req, resp));
        let op = Op {
            index,
            req,
            expected,
            before,
            must_bump,
            slot: 0,
            call_event: NIL,
            return_event: NIL,
        };
        ops.push((operation.call_ns, return_ns, op));
    }
    if !problems.is_empty() {
        return LinearizabilityResult::Malformed { problems };
    }
    if ops.len() >= (NIL as usize) / 2 {
        return LinearizabilityResult::Malformed {
            problems: vec![format!("{} operations is too many", ops.len())],
        };
    }
    ops.sort_by_key(|(call, _, op)| (*call, op.index));
    if let Some(report) = real_time_revision_check(&ops, history) {
        return LinearizabilityResult::NotLinearizable(report);
    }

    // Events: (time, 0 for a call / 1 for a return, op); calls sort before returns at one
    // instant, so operations that touch at an instant count as concurrent.
    let mut events: Vec<(u64, u8, u32)> = Vec::with_capacity(ops.len() * 2);
    let (mut known_total, mut unknown_total) = (0u32, 0u32);
    for (id, (call, ret, op)) in ops.iter_mut().enumerate() {
        events.push((*call, 0, id as u32));
        if op.expected.is_some() {
            op.slot = known_total;
            known_total += 1;
            events.push((*ret, 1, id as u32));
        } else {
            op.slot = unknown_total;
            unknown_total += 1;
        }
    }
    events.sort_unstable();
    let mut ops: Vec<Op> = ops.into_iter().map(|(_, _, op)| op).collect();
    let event_count = events.len();
    let known_head = event_count as u32;
    let unknown_head = known_head + 1;
    let mut next = vec![NIL; event_count + 2];
    let mut prev = vec![NIL; event_count + 2];
    let mut event_op = vec![0u32; event_count];
    let mut event_is_call = vec![false; event_count];
    let (mut known_tail, mut unknown_tail) = (known_head, unknown_head);
    for (position, &(_, kind, id)) in events.iter().enumerate() {
        let position = position as u32;
        event_op[position as usize] = id;
        event_is_call[position as usize] = kind == 0;
        let op = &mut ops[id as usize];
        let tail = if kind == 0 {
            op.call_event = position;
            if op.expected.is_some() {
                &mut known_tail
            } else {
                &mut unknown_tail
            }
        } else {
            op.return_event = position;
            &mut known_tail
        };
        next[*tail as usize] = position;
        prev[position as usize] = *tail;
        *tail = position;
    }

    let mut highest_start = vec![i64::MAX; known_total as usize];
    for op in ops.iter().filter(|op| op.expected.is_some()) {
        highest_start[op.slot as usize] = op.before.1;
    }
    let mut pending_min = MinTree::new(&highest_start);
    let mut set = LinearizedSet::new(known_total as usize, unknown_total as usize);
    let mut cache: FastMap<u64, Vec<u32>> = FastMap::default();
    let mut cache_entries: Vec<CacheEntry> = Vec::new();
    let mut scratch = Vec::new();
    let mut scratch_unknown = Vec::new();

    // The log's writes per revision, in the form `State::writes_since` gives.
    let log_writes: Option<HashMap<i64, RevisionWrites>> = event_log.map(|log| {
        let mut by_revision: HashMap<i64, RevisionWrites> = HashMap::new();
        for event in log {
            let write = (
                interner.key(&event.key),
                event.value.as_deref().map(|v| interner.value(v)),
            );
            by_revision
                .entry(event.mod_revision)
                .or_default()
                .push(write);
        }
        for writes in by_revision.values_mut() {
            writes.sort_unstable();
        }
        by_revision
    });
    let mut step_writes = Vec::new();

    // Unknown operations with one effect are interchangeable: only the earliest called of
    // those not yet applied is tried (using a later one where an earlier one also fits gains
    // nothing: the earlier one stays available wherever the later one would be).
    let mut same_effect_before: Vec<Option<u32>> = vec![None; ops.len()];
    {
        let mut last_of_effect: HashMap<Req, u32> = HashMap::new();
        for (id, op) in ops.iter().enumerate() {
            if op.expected.is_none() {
                if let Some(previous) = last_of_effect.insert(effect_of(&op.req), id as u32) {
                    same_effect_before[id] = Some(previous);
                }
            }
        }
    }

    let mut state = State::initial(interner.key_count());
    let mut stack: Vec<Frame> = Vec::new();
    let mut prefix: Option<Rc<PrefixNode>> = None;
    let mut longest: Option<Rc<PrefixNode>> = None;
    let mut longest_len = 0usize;
    let mut unknown_pass = false;
    let mut window_end = NIL;
    let mut cursor = next[known_head as usize];
    let mut iterations: u64 = 0;

    let remove = |next: &mut Vec<u32>, prev: &mut Vec<u32>, e: u32| {
        let (p, n) = (prev[e as usize], next[e as usize]);
        next[p as usize] = n;
        if n != NIL {
            prev[n as usize] = p;
        }
    };
    let restore = |next: &mut Vec<u32>, prev: &mut Vec<u32>, e: u32| {
        let (p, n) = (prev[e as usize], next[e as usize]);
        next[p as usize] = e;
        if n != NIL {
            prev[n as usize] = e;
        }
    };

    loop {
        if set.known_count == known_total {
            return LinearizabilityResult::Linearizable;
        }
        iterations += 1;
        if iterations.is_multiple_of(512) && started.elapsed() > budget {
            return LinearizabilityResult::Undecided {
                operations: ops.len(),
                longest_prefix: longest_len,
            };
        }

        // Pick the next candidate: known calls up to the first return, then unknown calls
        // made before that return.
        let candidate = if !unknown_pass {
            if cursor == NIL || !event_is_call[cursor as usize] {
                window_end = cursor;
                unknown_pass = true;
                cursor = next[unknown_head as usize];
                continue;
            }
            Some(event_op[cursor as usize])
        } else if cursor == NIL || cursor >= window_end {
            None
        } else {
            Some(event_op[cursor as usize])
        };

        let mut backtrack = candidate.is_none();
        if let Some(id) = candidate {
            let op = &ops[id as usize];
            let known = op.expected.is_some();
            let blocked_by_twin = same_effect_before[id as usize]
                .is_some_and(|twin| !set.is_applied(&ops[twin as usize]));
            let stepped = if blocked_by_twin
                || (known && (state.revision() < op.before.0 || state.revision() > op.before.1))
            {
                None
            } else {
                step(&state, &op.req, op.expected.as_ref()).ok()
            };
            // An unknown operation is only worth placing where it changes the state.
            let next_state = stepped.filter(|s| {
                known || (*s != state && (!op.must_bump || s.revision() > state.revision()))
            });
            let next_state = next_state.filter(|s| match &log_writes {
                Some(log_writes) if s.revision() > state.revision() => {
                    s.writes_since(&state, s.revision(), &mut step_writes);
                    log_writes
                        .get(&s.revision())
                        .is_some_and(|logged| *logged == step_writes)
                }
                _ => true,
            });
            let pure = known && next_state.as_ref() == Some(&state);
            let mut repeated = false;
            let mut entry = None;
            let accepted = next_state.and_then(|next_state| {
                if known {
                    pending_min.set(op.slot as usize, i64::MAX);
                }
                // The store must not pass a revision a pending operation needs.
                if next_state.revision() > pending_min.min() {
                    if known {
                        pending_min.set(op.slot as usize, op.before.1);
                    }
                    return None;
                }
                set.add(op);
                set.known_snapshot(&mut scratch);
                set.unknown_snapshot(&mut scratch_unknown);
                // A finished cached node failed (a success ends the search). A node with the
                // same known operations and state and fewer unknown ones applied can do all
                // this one can (unknown operations are optional), so its failure prunes this
                // one; a node still on the stack prunes only its exact repeat.
                let key = mix64(set.hash ^ next_state.hash().rotate_left(29));
                let bucket = cache.entry(key).or_default();
                repeated = bucket.iter().any(|&e| {
                    let entry: &CacheEntry = &cache_entries[e as usize];
                    *entry.known == *scratch
                        && entry.state == next_state
                        && if entry.finished {
                            is_subset(&entry.unknown, &scratch_unknown)
                        } else {
                            *entry.unknown == *scratch_unknown
                        }
                });
                if repeated {
                    set.remove(op);
                    if known {
                        pending_min.set(op.slot as usize, op.before.1);
                    }
                    return None;
                }
                entry = None;
                if cache_entries.len() < CACHE_LIMIT {
                    entry = Some(cache_entries.len() as u32);
                    bucket.push(cache_entries.len() as u32);
                    cache_entries.push(CacheEntry {
                        known: scratch.clone().into_boxed_slice(),
                        unknown: scratch_unknown.clone().into_boxed_slice(),
                        state: next_state.clone(),
                        finished: false,
                    });
                }
                Some(next_state)
            });
            match accepted {
                // A state-preserving candidate already explored: so was this node (see `Frame::pure`).
                None if repeated && pure => backtrack = true,
                None => cursor = next[cursor as usize],
                Some(next_state) => {
                    remove(&mut next, &mut prev, op.call_event);
                    if known {
                        remove(&mut next, &mut prev, op.return_event);
                    }
                    let state_before = std::mem::replace(&mut state, next_state);
                    stack.push(Frame {
                        op: id,
                        pure,
                        unknown_pass,
                        window_end,
                        state_before,
                        entry,
                    });
                    prefix = Some(Rc::new(PrefixNode {
                        op: id,
                        parent: prefix.take(),
                    }));
                    if stack.len() > longest_len {
                        longest_len = stack.len();
                        longest = prefix.clone();
                    }
                    unknown_pass = false;
                    window_end = NIL;
                    cursor = next[known_head as usize];
                }
            }
        }
        while backtrack {
            let Some(frame) = stack.pop() else {
                let report = report_failure(&ops, &interner, longest.as_ref(), history);
                return LinearizabilityResult::NotLinearizable(report);
            };
            if let Some(entry) = frame.entry {
                cache_entries[entry as usize].finished = true;
            }
            let op = &ops[frame.op as usize];
            set.remove(op);
            if op.expected.is_some() {
                pending_min.set(op.slot as usize, op.before.1);
                restore(&mut next, &mut prev, op.return_event);
            }
            restore(&mut next, &mut prev, op.call_event);
            state = frame.state_before;
            unknown_pass = frame.unknown_pass;
            window_end = frame.window_end;
            cursor = next[op.call_event as usize];
            prefix = prefix.and_then(|node| node.parent.clone());
            backtrack = frame.pure;
        }
    }
}

/// A necessary condition, checked before the search because it is cheap and proving its
/// violations by search can take long: revisions never decrease, so an operation that
/// returned (with response revision R) before another was invoked leaves the store at R or
/// later for it, which must not need an earlier revision.
fn real_time_revision_check(
    ops: &[(u64, u64, Op)],
    history: &[Operation],
) -> Option<NotLinearizableReport> {
    // Operations with a response revision, by return time.
    let mut by_return: Vec<(u64, i64, usize)> = ops
        .iter()
        .filter_map(|(_, ret, op)| match &op.expected {
            Some(resp) if *resp != Resp::Applied => Some((*ret, resp.revision(), op.index)),
            _ => None,
        })
        .collect();
    by_return.sort_unstable();
    let mut returned = 0;
    let mut highest: Option<(i64, usize)> = None;
    // `ops` is sorted by call time.
    for (call, _, op) in ops {
        while returned < by_return.len() && by_return[returned].0 < *call {
            let (_, revision, index) = by_return[returned];
            if highest.is_none_or(|(r, _)| revision > r) {
                highest = Some((revision, index));
            }
            returned += 1;
        }
        let (Some((revision, earlier)), Some(_)) = (highest, &op.expected) else {
            continue;
        };
        if revision > op.before.1 {
            let reason = format!(
                "it was invoked after #{earlier} returned with revision {revision}, but its response needs the store at revision {} or earlier just before it",
                op.before.1
            );
            let earlier_reason = "returned before the other operation was invoked".to_string();
            return Some(NotLinearizableReport {
                summary: format!(
                    "#{} needs an older revision than #{earlier} had already shown (a stale response)",
                    op.index
                ),
                longest_prefix: Vec::new(),
                revision_after_prefix: 0,
                state_after_prefix: Vec::new(),
                blocked: vec![
                    BlockedOperation { index: op.index, operation: history[op.index].clone(), reason },
                    BlockedOperation { index: earlier, operation: history[earlier].clone(), reason: earlier_reason },
                ],
            });
        }
    }
    None
}

/// What an unknown operation can do to the store: its request without the reads of a txn.
fn effect_of(req: &Req) -> Req {
    match req {
        Req::Txn {
            compares,
            on_success,
            on_failure,
        } => {
            let writes = |ops: &Vec<TxOp>| {
                ops.iter()
                    .filter(|op| !matches!(op, TxOp::Get(_)))
                    .cloned()
                    .collect()
            };
            Req::Txn {
                compares: compares.clone(),
                on_success: writes(on_success),
                on_failure: writes(on_failure),
            }
        }
        other => other.clone(),
    }
}

/// Replays the longest prefix and says why each known operation that could come next does
/// not fit there.
fn report_failure(
    ops: &[Op],
    interner: &Interner,
    longest: Option<&Rc<PrefixNode>>,
    history: &[Operation],
) -> NotLinearizableReport {
    let mut order = Vec::new();
    let mut node = longest.cloned();
    while let Some(n) = node {
        order.push(n.op);
        node = n.parent.clone();
    }
    order.reverse();
    let mut placed = vec![false; ops.len()];
    let mut state = State::initial(interner.key_count());
    for &id in &order {
        placed[id as usize] = true;
        let op = &ops[id as usize];
        if let Ok(next) = step(&state, &op.req, op.expected.as_ref()) {
            state = next;
        }
    }
    // Candidates: known operations not placed, called before the first of their returns.
    let pending: Vec<&Op> = ops
        .iter()
        .enumerate()
        .filter(|(i, op)| !placed[*i] && op.expected.is_some())
        .map(|(_, op)| op)
        .collect();
    let first_return = pending
        .iter()
        .map(|op| op.return_event)
        .min()
        .unwrap_or(NIL);
    let mut blocked = Vec::new();
    for op in pending
        .iter()
        .filter(|op| op.call_event < first_return)
        .take(20)
    {
        let reason = if state.revision() < op.before.0 || state.revision() > op.before.1 {
            if op.before.0 == op.before.1 {
                format!(
                    "its response needs the store at revision {} just before it, the store is at {}",
                    op.before.0,
                    state.revision()
                )
            } else {
                format!(
                    "its response needs the store at revision {} or {} just before it, the store is at {}",
                    op.before.0,
                    op.before.1,
                    state.revision()
                )
            }
        } else {
            match step(&state, &op.req, op.expected.as_ref()) {
                Err(e) => e.describe(interner),
                Ok(next) => {
                    // Name an operation the store would pass by placing this one.
                    let passed = pending
                        .iter()
                        .filter(|other| other.index != op.index && other.before.1 < next.revision())
                        .min_by_key(|other| other.before.1);
                    match passed {
                        Some(other) => format!(
                            "it fits here, but takes the store to revision {}, past revision {} that #{} needs",
                            next.revision(),
                            other.before.1,
                            other.index
                        ),
                        None => "it fits here, but no order of the remaining operations does after it".to_string(),
                    }
                }
            }
        };
        let reason = if op.return_event == first_return {
            format!(
                "{reason} (and it had returned before any other pending operation could be placed)"
            )
        } else {
            reason
        };
        blocked.push(BlockedOperation {
            index: op.index,
            operation: history[op.index].clone(),
            reason,
        });
    }
    let mut state_lines: Vec<String> = state
        .keys()
        .map(|(key, s)| {
            format!(
                "{:?}: {}",
                interner.key_name(key),
                describe_kv(interner, &Some(s))
            )
        })
        .collect();
    state_lines.push(format!("leases granted: {:?}", state.leases()));
    NotLinearizableReport {
        summary: format!(
            "the longest linearizable prefix found has {} operation(s) and ends at revision {}; no pending operation can come next",
            order.len(),
            state.revision()
        ),
        longest_prefix: order.iter().map(|&id| ops[id as usize].index).collect(),
        revision_after_prefix: state.revision(),
        state_after_prefix: state_lines,
        blocked,
    }
}
