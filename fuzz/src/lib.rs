//! What Cairn's fuzz targets share: a throwaway store on /dev/shm, the client requests'
//! path from protobuf bytes to the store (decode, the handlers' checks, apply, watch), the
//! peer messages' decoders, and the invariants checked after every input.
//!
//! Each input starts from an empty store and a fresh watch hub, so a crash reproduces from
//! its input alone. The RocksDB instance itself is reused (emptied between inputs) because
//! opening one per input would cost more than the input.

pub mod structured;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cairn::apply::{self, apply_request};
use cairn::error::EtcdError;
use cairn::fuzzing;
use cairn::lease::Lessor;
use cairn::mvcc::{KvRead, Mvcc, RangeEnd, RangeOptions};
use cairn::proto::cairnpeerpb::{
    ClusterInfoResponse, ProposeResponse, RaftMessage, ReadIndexResponse,
};
use cairn::proto::cairnraftpb::{apply_result, internal_request, InternalRequest, Proposal};
use cairn::proto::etcdserverpb::alarm_request::AlarmAction;
use cairn::proto::etcdserverpb::watch_request::RequestUnion;
use cairn::proto::etcdserverpb::*;
use cairn::proto::mvccpb::KeyValue;
use cairn::raft::TypeConfig;
use cairn::storage::{Storage, CF_KV, CF_LEASE, CF_META, CF_RAFT_LOG, CF_RAFT_STATE};
use cairn::watch::{KeyRange, Outbox, Outgoing, WatchHub, WatchSpec, WatchStream};
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use prost::Message;

/// The KV service's default `--max-txn-ops`.
pub const MAX_TXN_OPS: usize = 128;
/// Requests proposed before the harness applies them as one Raft batch.
const MAX_PENDING: usize = 8;
/// Watch streams per input.
pub const STREAMS: usize = 3;
/// Inputs served by one RocksDB instance before it is replaced by a fresh one.
const INPUTS_PER_DB: u64 = 2000;
/// Longest wait for anything asynchronous (physical compaction); longer is a hang.
const HANG: Duration = Duration::from_secs(5);
/// Revisions whose reads are compared with a reloaded store, at most.
const MAX_REVS_COMPARED: i64 = 64;

/// A directory on /dev/shm (memory), unique to this process.
pub fn scratch_dir(what: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let root = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    root.join(format!("cairn-fuzz-{}-{what}-{n}", std::process::id()))
}

struct Db {
    storage: Arc<Storage>,
    dir: PathBuf,
    inputs: u64,
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn open_db() -> Db {
    let dir = scratch_dir("db");
    let storage = Arc::new(Storage::open(&dir).expect("open the scratch RocksDB"));
    Db {
        storage,
        dir,
        inputs: 0,
    }
}

/// An empty storage for one input.
fn fresh_storage() -> Arc<Storage> {
    static DB: OnceLock<Mutex<Option<Db>>> = OnceLock::new();
    let mut db = DB
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if db.as_ref().is_none_or(|d| d.inputs >= INPUTS_PER_DB) {
        *db = None;
        *db = Some(open_db());
    }
    let db = db.as_mut().expect("just opened");
    db.inputs += 1;
    wipe(&db.storage);
    db.storage.clone()
}

/// Deletes every record of every column family.
fn wipe(storage: &Storage) {
    let db = storage.db();
    for cf in [CF_KV, CF_META, CF_LEASE, CF_RAFT_LOG, CF_RAFT_STATE] {
        let handle = storage.cf(cf);
        let keys: Vec<Box<[u8]>> = db
            .iterator_cf(handle, rocksdb::IteratorMode::Start)
            .map(|item| item.expect("iterate the scratch store").0)
            .collect();
        for key in keys {
            db.delete_cf(handle, key).expect("wipe the scratch store");
        }
    }
}

/// A member's client-facing state for one input: the store, leases and watch hub, with
/// Raft replaced by applying each batch of proposed requests at once.
pub struct Session {
    pub storage: Arc<Storage>,
    pub mvcc: Arc<Mvcc>,
    pub lessor: Arc<Lessor>,
    pub hub: Arc<WatchHub>,
    streams: Vec<Stream>,
    /// Requests proposed but not applied yet, with whether the client API checked them.
    pending: Vec<(InternalRequest, bool)>,
    next_lease_id: i64,
}

struct Stream {
    stream: WatchStream,
    outbox: Arc<Outbox>,
    /// One per create request whose answer has not been read yet, in order: its spec, or
    /// `None` when the API refused it before the hub saw it.
    creating: std::collections::VecDeque<Option<WatchSpec>>,
    watches: HashMap<i64, Watch>,
    /// Watch IDs that were canceled (or compacted away): they get nothing more.
    ended: std::collections::HashSet<i64>,
}

struct Watch {
    spec: WatchSpec,
    /// The revision of the last event sent.
    last_rev: i64,
}

/// Which request a frame of raw input carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Range,
    Put,
    DeleteRange,
    Txn,
    Compact,
    LeaseGrant,
    LeaseRevoke,
    LeaseKeepAlive,
    LeaseTimeToLive,
    LeaseLeases,
    /// A `WatchRequest` on stream `n`.
    Watch(usize),
    MemberAdd,
    MemberRemove,
    MemberUpdate,
    MemberList,
    MemberPromote,
    Alarm,
    Status,
    Defragment,
    Hash,
    HashKv,
    MoveLeader,
    /// Not a request: the pending proposals are applied.
    Commit,
    /// Not a request: the periodic progress notification of stream `n`.
    ProgressTick(usize),
    /// Not a request: this member becomes (true) or stops being (false) leader.
    Leader(bool),
}

impl Method {
    pub const COUNT: u8 = 29;

    pub fn from_byte(b: u8) -> Method {
        match b % Self::COUNT {
            0 => Method::Range,
            1 => Method::Put,
            2 => Method::DeleteRange,
            3 => Method::Txn,
            4 => Method::Compact,
            5 => Method::LeaseGrant,
            6 => Method::LeaseRevoke,
            7 => Method::LeaseKeepAlive,
            8 => Method::LeaseTimeToLive,
            9 => Method::LeaseLeases,
            10 => Method::Watch(0),
            11 => Method::Watch(1),
            12 => Method::Watch(2),
            13 => Method::MemberAdd,
            14 => Method::MemberRemove,
            15 => Method::MemberUpdate,
            16 => Method::MemberList,
            17 => Method::MemberPromote,
            18 => Method::Alarm,
            19 => Method::Status,
            20 => Method::Defragment,
            21 => Method::Hash,
            22 => Method::HashKv,
            23 => Method::MoveLeader,
            24 => Method::Commit,
            25 => Method::ProgressTick(0),
            26 => Method::ProgressTick(1),
            27 => Method::Leader(true),
            _ => Method::Leader(false),
        }
    }
}

/// Runs `f` with a fresh session on a fresh single-threaded runtime, then checks the
/// invariants. The runtime goes with the input, and every task with it.
pub fn with_session(f: impl AsyncFnOnce(&mut Session)) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let mut session = Session::open();
        f(&mut session).await;
        session.finish().await;
    });
}

impl Session {
    fn open() -> Session {
        let storage = fresh_storage();
        let mvcc = Mvcc::open(storage.clone()).expect("open the store");
        let lessor = Lessor::open(storage.clone(), 1).expect("open the lessor");
        let hub = WatchHub::start(mvcc.clone());
        let streams = (0..STREAMS)
            .map(|_| {
                let stream = hub.open_stream().expect("the hub is open");
                Stream {
                    outbox: stream.outbox(),
                    stream,
                    creating: Default::default(),
                    watches: HashMap::new(),
                    ended: Default::default(),
                }
            })
            .collect();
        Session {
            storage,
            mvcc,
            lessor,
            hub,
            streams,
            pending: Vec::new(),
            next_lease_id: 1,
        }
    }

    /// One client request (or harness event), as protobuf bytes: decoded as the gRPC
    /// server decodes it, then handled as the handler handles it.
    pub async fn call(&mut self, method: Method, bytes: &[u8]) {
        match method {
            Method::Range => {
                let Ok(r) = RangeRequest::decode(bytes) else {
                    return;
                };
                if fuzzing::validate_range(&r).is_ok() {
                    let view = self.mvcc.read_view();
                    if let Ok(response) = apply::range(&view, &r) {
                        check_range_response(&r, &response);
                    }
                }
            }
            Method::Put => {
                let Ok(r) = PutRequest::decode(bytes) else {
                    return;
                };
                if fuzzing::validate_put(&r).is_ok() {
                    self.propose(internal_request::Request::Put(r), true).await;
                }
            }
            Method::DeleteRange => {
                let Ok(r) = DeleteRangeRequest::decode(bytes) else {
                    return;
                };
                if fuzzing::validate_delete_range(&r).is_ok() {
                    self.propose(internal_request::Request::DeleteRange(r), true)
                        .await;
                }
            }
            Method::Txn => {
                let Ok(r) = TxnRequest::decode(bytes) else {
                    return;
                };
                if fuzzing::validate_txn(&r, MAX_TXN_OPS).is_err() {
                    return;
                }
                if apply::txn::is_read_only(&r) {
                    // Served from a read view, as the KV service serves it.
                    let mut view = self.mvcc.read_view();
                    let _ = apply::txn::txn(&mut view, &self.lessor, &r);
                } else {
                    self.propose(internal_request::Request::Txn(r), true).await;
                }
            }
            Method::Compact => {
                let Ok(r) = CompactionRequest::decode(bytes) else {
                    return;
                };
                self.propose(internal_request::Request::Compaction(r), true)
                    .await;
            }
            Method::LeaseGrant => {
                let Ok(mut r) = LeaseGrantRequest::decode(bytes) else {
                    return;
                };
                if r.id == 0 {
                    r.id = self.next_lease_id;
                    self.next_lease_id += 1;
                }
                self.propose(internal_request::Request::LeaseGrant(r), true)
                    .await;
            }
            Method::LeaseRevoke => {
                let Ok(r) = LeaseRevokeRequest::decode(bytes) else {
                    return;
                };
                self.propose(internal_request::Request::LeaseRevoke(r), true)
                    .await;
            }
            Method::LeaseKeepAlive => {
                let Ok(r) = LeaseKeepAliveRequest::decode(bytes) else {
                    return;
                };
                self.keep_alive(r.id);
            }
            Method::LeaseTimeToLive => {
                let Ok(r) = LeaseTimeToLiveRequest::decode(bytes) else {
                    return;
                };
                self.time_to_live(r.id, r.keys);
            }
            Method::LeaseLeases => {
                let Ok(LeaseLeasesRequest {}) = LeaseLeasesRequest::decode(bytes) else {
                    return;
                };
                let leases = self.lessor.leases();
                assert!(
                    leases.windows(2).all(|w| w[0] < w[1]),
                    "leases sorted, unique"
                );
            }
            Method::Watch(n) => {
                let Ok(r) = WatchRequest::decode(bytes) else {
                    return;
                };
                self.watch(n, r).await;
            }
            Method::MemberAdd => {
                let Ok(r) = MemberAddRequest::decode(bytes) else {
                    return;
                };
                member_urls(&r.peer_ur_ls);
            }
            Method::MemberUpdate => {
                let Ok(r) = MemberUpdateRequest::decode(bytes) else {
                    return;
                };
                member_urls(&r.peer_ur_ls);
            }
            Method::MemberRemove => {
                let _ = MemberRemoveRequest::decode(bytes);
            }
            Method::MemberList => {
                let _ = MemberListRequest::decode(bytes);
            }
            Method::MemberPromote => {
                let _ = MemberPromoteRequest::decode(bytes);
            }
            Method::Alarm => {
                let Ok(r) = AlarmRequest::decode(bytes) else {
                    return;
                };
                let _ = AlarmAction::try_from(r.action);
            }
            Method::Status => {
                let Ok(StatusRequest {}) = StatusRequest::decode(bytes) else {
                    return;
                };
                let _ = self.storage.size_bytes();
            }
            Method::Defragment => {
                let Ok(DefragmentRequest {}) = DefragmentRequest::decode(bytes) else {
                    return;
                };
                let cf = self.storage.cf(CF_KV);
                self.storage
                    .db()
                    .compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
            }
            Method::Hash => {
                let _ = HashRequest::decode(bytes);
            }
            Method::HashKv => {
                let Ok(r) = HashKvRequest::decode(bytes) else {
                    return;
                };
                if let Ok(hashed) = self.mvcc.hash_kv(r.revision) {
                    assert_eq!(hashed.current_rev, self.mvcc.current_rev());
                    assert_eq!(hashed.compact_rev, self.mvcc.compact_rev());
                }
            }
            Method::MoveLeader => {
                let _ = MoveLeaderRequest::decode(bytes);
            }
            Method::Commit => self.commit().await,
            Method::ProgressTick(n) => {
                self.streams[n % STREAMS].stream.progress_tick();
                self.drain().await;
            }
            Method::Leader(true) => self.lessor.promote(Duration::ZERO),
            Method::Leader(false) => self.lessor.demote(),
        }
    }

    /// What the peer API's `LeaseKeepAlive` and the Lease service do on the leader.
    pub fn keep_alive(&self, id: i64) {
        match self.lessor.renew(id) {
            Ok(Some(ttl)) => assert!(ttl > 0, "a renewed lease has a TTL"),
            Ok(None) => {}
            Err(e) => assert_eq!(e, EtcdError::NotLeader),
        }
    }

    pub fn time_to_live(&self, id: i64, keys: bool) {
        if let Some(status) = self.lessor.time_to_live(id, keys) {
            assert!(status.remaining_secs <= status.granted_secs.max(0) + 1);
            assert!(keys || status.keys.is_empty());
        }
    }

    async fn watch(&mut self, n: usize, r: WatchRequest) {
        let stream = &mut self.streams[n % STREAMS];
        match r.request_union {
            Some(RequestUnion::CreateRequest(create)) => match fuzzing::watch_spec(&create) {
                Ok(spec) => {
                    stream.creating.push_back(Some(spec.clone()));
                    stream.stream.create(spec);
                }
                Err(reason) => {
                    // A refused create is answered with a failed create, no watch.
                    stream.creating.push_back(None);
                    stream.stream.reject(&reason);
                }
            },
            Some(RequestUnion::CancelRequest(cancel)) => stream.stream.cancel(cancel.watch_id),
            Some(RequestUnion::ProgressRequest(_)) => stream.stream.request_progress(),
            None => {}
        }
        self.drain().await;
    }

    /// Proposes a request; a full batch is applied at once.
    pub async fn propose(&mut self, request: internal_request::Request, checked: bool) {
        self.pending.push((
            InternalRequest {
                request: Some(request),
            },
            checked,
        ));
        if self.pending.len() >= MAX_PENDING {
            self.commit().await;
        }
    }

    /// Proposes a request exactly as it came from a peer (a forwarded proposal).
    pub async fn propose_raw(&mut self, request: InternalRequest) {
        self.pending.push((request, false));
        if self.pending.len() >= MAX_PENDING {
            self.commit().await;
        }
    }

    /// Applies the pending requests as the state machine applies one batch: one storage
    /// commit, then the watch hub is told.
    pub async fn commit(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        let mut guard = self.mvcc.write();
        for (request, checked) in &pending {
            let rev_before = guard.current_rev();
            // Member attributes are the state machine's own (`raft::state_machine`).
            if let Some(internal_request::Request::Publish(_)) = &request.request {
                continue;
            }
            let result = apply_request(&mut guard, &self.lessor, request);
            let rev_after = guard.current_rev();
            assert!(rev_after == rev_before || rev_after == rev_before + 1);
            let result = match result {
                Ok(result) => result,
                Err(e) => {
                    // Only a request no client could send (an empty one) may fail whole.
                    assert!(
                        !checked && request.request.is_none(),
                        "apply failed: {e:?} for {request:?}"
                    );
                    continue;
                }
            };
            check_apply_result(request, &result, rev_before, rev_after, *checked);
        }
        let committed = guard.commit().expect("commit to the scratch store");
        assert_eq!(committed.rev, self.mvcc.current_rev());
        assert!(
            committed.changes.windows(2).all(|w| w[0].rev < w[1].rev),
            "changes in revision order"
        );
        self.hub.notify(committed);
        self.drain().await;
    }

    /// Reads every stream's queued responses, checking what each watch is sent.
    async fn drain(&mut self) {
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
        for stream in &mut self.streams {
            while let Ok(Some(outgoing)) =
                tokio::time::timeout(Duration::ZERO, stream.outbox.pop()).await
            {
                stream.check(outgoing);
            }
        }
    }

    /// Applies what is pending, waits for physical compaction, and checks that the store,
    /// its leases and a store reloaded from storage agree.
    async fn finish(&mut self) {
        self.commit().await;
        wait_compacted(&self.mvcc).await;
        let reloaded = Mvcc::open(self.storage.clone()).expect("reload the store");
        wait_compacted(&reloaded).await;
        let (rev, compact_rev) = (self.mvcc.current_rev(), self.mvcc.compact_rev());
        assert_eq!(reloaded.current_rev(), rev, "revision survives a reload");
        assert_eq!(
            reloaded.compact_rev(),
            compact_rev,
            "compaction survives a reload"
        );
        let (live, reread) = (self.mvcc.read_view(), reloaded.read_view());
        let first = compact_rev.max(1).max(rev - MAX_REVS_COMPARED);
        for at in first..=rev {
            let opts = RangeOptions {
                rev: at,
                ..RangeOptions::default()
            };
            let a = live.range(b"", RangeEnd::Unbounded, opts);
            let b = reread.range(b"", RangeEnd::Unbounded, opts);
            match (a, b) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.kvs, b.kvs, "reads at {at} agree after a reload");
                    assert_eq!(a.count, b.count);
                    assert!(a.kvs.windows(2).all(|w| w[0].key < w[1].key));
                    for kv in &a.kvs {
                        check_kv(kv, at);
                    }
                }
                (a, b) => panic!("reads at {at}: {:?} / {:?}", a.err(), b.err()),
            }
        }
        let hash = |m: &Mvcc| m.hash_kv(0).map(|h| h.hash);
        assert_eq!(hash(&self.mvcc), hash(&reloaded), "hash survives a reload");
        drop((live, reread));
        drop(reloaded);
        self.check_leases();
    }

    /// Leases and their keys agree with the store, and survive a reload.
    fn check_leases(&self) {
        let reloaded = Lessor::open(self.storage.clone(), 1).expect("reload the lessor");
        let ids = self.lessor.leases();
        assert_eq!(ids, reloaded.leases(), "leases survive a reload");
        let view = self.mvcc.read_view();
        let all = view
            .range(b"", RangeEnd::Unbounded, RangeOptions::default())
            .expect("read the current revision");
        let live: HashMap<&[u8], &KeyValue> =
            all.kvs.iter().map(|kv| (kv.key.as_slice(), kv)).collect();
        let mut attached = 0;
        for id in &ids {
            let keys = self.lessor.time_to_live(*id, true).expect("listed").keys;
            assert_eq!(
                keys,
                reloaded.time_to_live(*id, true).expect("reloaded").keys,
                "lease {id}'s keys survive a reload"
            );
            for key in &keys {
                let kv = live
                    .get(key.as_slice())
                    .unwrap_or_else(|| panic!("lease {id} holds {key:?}, which does not exist"));
                assert_eq!(kv.lease, *id, "{key:?} is attached to lease {id}");
            }
            attached += keys.len();
        }
        let with_lease = all.kvs.iter().filter(|kv| kv.lease != 0).count();
        assert_eq!(
            attached, with_lease,
            "every key with a lease is attached to it"
        );
    }
}

async fn wait_compacted(mvcc: &Mvcc) {
    let rev = mvcc.compact_rev();
    tokio::time::timeout(HANG, mvcc.wait_physically_compacted(rev))
        .await
        .unwrap_or_else(|_| panic!("physical compaction at {rev} hangs"));
}

fn check_kv(kv: &KeyValue, at: i64) {
    assert!(kv.mod_revision <= at && kv.create_revision <= kv.mod_revision);
    assert!(kv.version >= 1 && kv.create_revision >= 2, "{kv:?}");
}

impl Stream {
    fn check(&mut self, outgoing: Outgoing) {
        match outgoing {
            Outgoing::Created { watch_id, .. } => {
                let spec = self
                    .creating
                    .pop_front()
                    .flatten()
                    .expect("a create the hub accepted");
                assert!(
                    !self.watches.contains_key(&watch_id),
                    "watch {watch_id} twice"
                );
                self.ended.remove(&watch_id);
                let last_rev = spec.start_rev - 1;
                self.watches.insert(watch_id, Watch { spec, last_rev });
            }
            Outgoing::CreateFailed { .. } => {
                // Refused by the API, or by the hub (a duplicate ID, too many watches).
                self.creating.pop_front().expect("a create was asked for");
            }
            Outgoing::Canceled { watch_id, .. } | Outgoing::Compacted { watch_id, .. } => {
                assert!(
                    self.watches.remove(&watch_id).is_some(),
                    "unknown watch ended"
                );
                self.ended.insert(watch_id);
            }
            Outgoing::Events {
                watch_id, events, ..
            } => {
                assert!(
                    !self.ended.contains(&watch_id),
                    "events after watch {watch_id} ended"
                );
                let watch = self
                    .watches
                    .get_mut(&watch_id)
                    .unwrap_or_else(|| panic!("events for unknown watch {watch_id}"));
                assert!(!events.is_empty(), "an empty events response");
                for event in events {
                    let kv = event.kv.as_ref().expect("an event has its pair");
                    assert!(
                        range_contains(&watch.spec.range, &kv.key),
                        "watch {watch_id} sent {:?}",
                        kv.key
                    );
                    assert!(
                        kv.mod_revision > watch.last_rev
                            || (kv.mod_revision == watch.last_rev && watch.last_rev > 0),
                        "watch {watch_id}: revision {} after {}",
                        kv.mod_revision,
                        watch.last_rev
                    );
                    watch.last_rev = kv.mod_revision;
                }
            }
            Outgoing::Progress { .. } => {}
        }
    }
}

fn range_contains(range: &KeyRange, key: &[u8]) -> bool {
    match range {
        KeyRange::Single(k) => k == key,
        KeyRange::Below(start, end) => start.as_slice() <= key && key < end.as_slice(),
        KeyRange::From(start) => start.as_slice() <= key,
    }
}

fn member_urls(urls: &[String]) {
    if let Ok(parsed) = fuzzing::parse_peer_urls(urls) {
        assert_eq!(parsed.len(), urls.len());
        let _ = cairn::cluster::added_member_id(&parsed, "fuzz", 0);
        // What Cairn prints, it accepts again as it is.
        assert_eq!(fuzzing::parse_peer_urls(&parsed).as_ref(), Ok(&parsed));
    }
}

fn check_range_response(r: &RangeRequest, response: &RangeResponse) {
    if r.limit > 0 {
        assert!(response.kvs.len() as i64 <= r.limit);
    }
    if r.count_only {
        assert!(response.kvs.is_empty());
    } else {
        assert!(
            response.count >= response.kvs.len() as i64
                || r.min_mod_revision != 0
                || r.max_mod_revision != 0
                || r.min_create_revision != 0
                || r.max_create_revision != 0
        );
    }
    if r.keys_only {
        assert!(response.kvs.iter().all(|kv| kv.value.is_empty()));
    }
}

fn check_apply_result(
    request: &InternalRequest,
    result: &cairn::proto::cairnraftpb::ApplyResult,
    rev_before: i64,
    rev_after: i64,
    checked: bool,
) {
    use apply_result::Result as R;
    use internal_request::Request as Q;
    let result = result.result.as_ref().expect("a result");
    match (&request.request, result) {
        (_, R::Error(code)) => {
            assert_ne!(
                *code,
                EtcdError::Corrupt.number(),
                "corrupt for {request:?}"
            );
            assert_eq!(rev_after, rev_before, "a failed request changed nothing");
        }
        (Some(Q::Put(_)), R::Put(p)) => {
            assert_eq!(rev_after, rev_before + 1);
            assert_eq!(p.header.as_ref().map(|h| h.revision), Some(rev_after));
        }
        (Some(Q::DeleteRange(_)), R::DeleteRange(d)) => {
            assert_eq!(rev_after, rev_before + (d.deleted > 0) as i64);
            assert_eq!(d.header.as_ref().map(|h| h.revision), Some(rev_after));
            assert!(d.prev_kvs.is_empty() || d.prev_kvs.len() as i64 == d.deleted);
        }
        (Some(Q::Txn(t)), R::Txn(r)) => {
            let branch = if r.succeeded { &t.success } else { &t.failure };
            assert_eq!(branch.len(), r.responses.len());
            assert_eq!(r.header.as_ref().map(|h| h.revision), Some(rev_after));
        }
        (Some(Q::Compaction(_)), R::Compaction(_))
        | (Some(Q::LeaseGrant(_)), R::LeaseGrant(_))
        | (Some(Q::LeaseRevoke(_)), R::LeaseRevoke(_)) => {}
        (q, r) => panic!("result {r:?} for {q:?} (checked: {checked})"),
    }
}

/// A frame of raw input: a selector byte, a length byte, then that many bytes (fewer at
/// the end of the input).
pub fn frames(data: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let (&selector, after) = rest.split_first()?;
        let (&len, after) = after.split_first().unwrap_or((&0, after));
        let len = (len as usize).min(after.len());
        let (frame, after) = after.split_at(len);
        rest = after;
        Some((selector, frame))
    })
}

/// What the peer port decodes, by selector.
#[derive(Debug, Clone, Copy)]
pub enum PeerFrame {
    AppendEntries,
    Vote,
    InstallSnapshot,
    AppendEntriesAnswer,
    VoteAnswer,
    InstallSnapshotAnswer,
    Propose,
    ProposeAnswer,
    LeaseKeepAlive,
    LeaseTimeToLive,
    ReadIndexAnswer,
    ClusterInfoAnswer,
    Envelope,
    Commit,
}

impl PeerFrame {
    pub fn from_byte(b: u8) -> PeerFrame {
        use PeerFrame::*;
        [
            AppendEntries,
            Vote,
            InstallSnapshot,
            AppendEntriesAnswer,
            VoteAnswer,
            InstallSnapshotAnswer,
            Propose,
            ProposeAnswer,
            LeaseKeepAlive,
            LeaseTimeToLive,
            ReadIndexAnswer,
            ClusterInfoAnswer,
            Envelope,
            Commit,
        ][b as usize % 14]
    }
}

type Answer<T, E> = Result<T, RaftError<u64, E>>;

/// Decodes a Raft message with the peer API's decoder, and checks that it encodes back to
/// what decodes the same.
fn raft_decode<T>(payload: &[u8]) -> Option<T>
where
    T: serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let message = RaftMessage {
        payload: payload.to_vec(),
    };
    let decoded: T = fuzzing::decode_raft_message(&message).ok()?;
    let encoded = bincode::serialize(&decoded).expect("a decoded message encodes");
    let again: T = bincode::deserialize(&encoded).expect("an encoded message decodes");
    assert_eq!(
        format!("{decoded:?}"),
        format!("{again:?}"),
        "Raft message round trip"
    );
    Some(decoded)
}

/// Decodes an answer the way the peer network's client does (`raft::network`).
fn answer_decode<T>(payload: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    if let Ok(decoded) = bincode::deserialize::<T>(payload) {
        let encoded = bincode::serialize(&decoded).expect("a decoded answer encodes");
        let again: T = bincode::deserialize(&encoded).expect("an encoded answer decodes");
        assert_eq!(
            format!("{decoded:?}"),
            format!("{again:?}"),
            "answer round trip"
        );
    }
}

impl Session {
    /// One message from a peer: decoded as the peer API (or the peer client) decodes it;
    /// what would be applied (proposals, appended entries) is applied to the store.
    pub async fn peer(&mut self, frame: PeerFrame, bytes: &[u8]) {
        match frame {
            PeerFrame::AppendEntries => {
                if let Some(rpc) = raft_decode::<AppendEntriesRequest<TypeConfig>>(bytes) {
                    self.apply_entries(&rpc.entries).await;
                }
            }
            PeerFrame::Vote => {
                raft_decode::<VoteRequest<u64>>(bytes);
            }
            PeerFrame::InstallSnapshot => {
                raft_decode::<InstallSnapshotRequest<TypeConfig>>(bytes);
            }
            PeerFrame::AppendEntriesAnswer => answer_decode::<
                Answer<AppendEntriesResponse<u64>, openraft::error::Infallible>,
            >(bytes),
            PeerFrame::VoteAnswer => {
                answer_decode::<Answer<VoteResponse<u64>, openraft::error::Infallible>>(bytes)
            }
            PeerFrame::InstallSnapshotAnswer => {
                answer_decode::<Answer<InstallSnapshotResponse<u64>, InstallSnapshotError>>(bytes)
            }
            PeerFrame::Propose => {
                let Ok(proposal) = Proposal::decode(bytes) else {
                    return;
                };
                for request in proposal.requests {
                    self.propose_raw(request).await;
                }
            }
            PeerFrame::ProposeAnswer => {
                let _ = ProposeResponse::decode(bytes);
            }
            PeerFrame::LeaseKeepAlive => {
                let Ok(r) = LeaseKeepAliveRequest::decode(bytes) else {
                    return;
                };
                self.keep_alive(r.id);
            }
            PeerFrame::LeaseTimeToLive => {
                let Ok(r) = LeaseTimeToLiveRequest::decode(bytes) else {
                    return;
                };
                self.time_to_live(r.id, r.keys);
            }
            PeerFrame::ReadIndexAnswer => {
                let _ = ReadIndexResponse::decode(bytes);
            }
            PeerFrame::ClusterInfoAnswer => {
                let _ = ClusterInfoResponse::decode(bytes);
            }
            PeerFrame::Envelope => {
                let Ok(message) = RaftMessage::decode(bytes) else {
                    return;
                };
                if let Some(rpc) = raft_decode::<AppendEntriesRequest<TypeConfig>>(&message.payload)
                {
                    self.apply_entries(&rpc.entries).await;
                }
            }
            PeerFrame::Commit => self.commit().await,
        }
    }

    async fn apply_entries(&mut self, entries: &[openraft::Entry<TypeConfig>]) {
        for entry in entries {
            if let openraft::EntryPayload::Normal(batch) = &entry.payload {
                for request in &batch.0.requests {
                    self.propose_raw(request.clone()).await;
                }
                self.commit().await;
            }
        }
    }
}
