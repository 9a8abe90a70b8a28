//! Structured client requests: small mirror types derived with `arbitrary`, built into
//! etcd's protobuf messages. Keys come mostly from a handful of one- and two-letter keys,
//! revisions and lease IDs are mostly small, so that requests meet each other in the store.

use arbitrary::Arbitrary;
use prost::Message;

use crate::Method;
use cairn::proto::etcdserverpb::compare::TargetUnion;
use cairn::proto::etcdserverpb::request_op::Request;
use cairn::proto::etcdserverpb::watch_request::RequestUnion;
use cairn::proto::etcdserverpb::*;

#[derive(Arbitrary, Debug)]
pub enum Key {
    Small(u8),
    Raw(Vec<u8>),
}

impl Key {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Key::Small(n) if n & 0x80 != 0 => vec![b'a' + n % 4, b'a' + (n >> 2) % 4],
            Key::Small(n) => vec![b'a' + n % 4],
            Key::Raw(raw) => raw.clone(),
        }
    }
}

/// How a request's `range_end` relates to its key.
#[derive(Arbitrary, Debug)]
pub enum End {
    One,
    FromKey,
    Prefix,
    To(Key),
}

fn end(key: &[u8], e: &End) -> Vec<u8> {
    match e {
        End::One => Vec::new(),
        End::FromKey => vec![0],
        End::Prefix => {
            let mut end = key.to_vec();
            while let Some(last) = end.pop() {
                if last < 0xff {
                    end.push(last + 1);
                    return end;
                }
            }
            vec![0]
        }
        End::To(k) => k.bytes(),
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Rev {
    Small(i8),
    Any(i64),
}

impl Rev {
    fn get(self) -> i64 {
        match self {
            Rev::Small(n) => n as i64,
            Rev::Any(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum LeaseId {
    None,
    Small(u8),
    Any(i64),
}

impl LeaseId {
    fn get(self) -> i64 {
        match self {
            LeaseId::None => 0,
            LeaseId::Small(n) => (n % 4) as i64 + 1,
            LeaseId::Any(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum Url {
    Good { https: bool, host: u8, port: u16 },
    Raw(String),
}

impl Url {
    fn get(&self) -> String {
        match self {
            Url::Good { https, host, port } => format!(
                "{}://10.0.0.{}:{port}",
                if *https { "https" } else { "http" },
                host % 4
            ),
            Url::Raw(raw) => raw.clone(),
        }
    }
}

fn urls(urls: &[Url]) -> Vec<String> {
    urls.iter().map(Url::get).collect()
}

#[derive(Arbitrary, Debug)]
pub struct Put {
    key: Key,
    value: Vec<u8>,
    lease: LeaseId,
    prev_kv: bool,
    ignore_value: bool,
    ignore_lease: bool,
}

impl Put {
    fn build(&self) -> PutRequest {
        PutRequest {
            key: self.key.bytes(),
            value: self.value.clone(),
            lease: self.lease.get(),
            prev_kv: self.prev_kv,
            ignore_value: self.ignore_value,
            ignore_lease: self.ignore_lease,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Delete {
    key: Key,
    end: End,
    prev_kv: bool,
}

impl Delete {
    fn build(&self) -> DeleteRangeRequest {
        let key = self.key.bytes();
        DeleteRangeRequest {
            range_end: end(&key, &self.end),
            key,
            prev_kv: self.prev_kv,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Range {
    key: Key,
    end: End,
    limit: i8,
    revision: Rev,
    sort_order: i8,
    sort_target: i8,
    serializable: bool,
    keys_only: bool,
    count_only: bool,
    filters: Option<[Rev; 4]>,
}

impl Range {
    fn build(&self) -> RangeRequest {
        let key = self.key.bytes();
        let [min_mod, max_mod, min_create, max_create] =
            self.filters.map_or([0; 4], |f| f.map(Rev::get));
        RangeRequest {
            range_end: end(&key, &self.end),
            key,
            limit: self.limit as i64,
            revision: self.revision.get(),
            sort_order: self.sort_order as i32,
            sort_target: self.sort_target as i32,
            serializable: self.serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            min_mod_revision: min_mod,
            max_mod_revision: max_mod,
            min_create_revision: min_create,
            max_create_revision: max_create,
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum Operand {
    None,
    Version(Rev),
    Create(Rev),
    Mod(Rev),
    Value(Vec<u8>),
    Lease(LeaseId),
}

#[derive(Arbitrary, Debug)]
pub struct Cmp {
    key: Key,
    end: End,
    target: i8,
    result: i8,
    operand: Operand,
}

impl Cmp {
    fn build(&self) -> Compare {
        let key = self.key.bytes();
        Compare {
            range_end: end(&key, &self.end),
            key,
            target: self.target as i32,
            result: self.result as i32,
            target_union: match &self.operand {
                Operand::None => None,
                Operand::Version(r) => Some(TargetUnion::Version(r.get())),
                Operand::Create(r) => Some(TargetUnion::CreateRevision(r.get())),
                Operand::Mod(r) => Some(TargetUnion::ModRevision(r.get())),
                Operand::Value(v) => Some(TargetUnion::Value(v.clone())),
                Operand::Lease(l) => Some(TargetUnion::Lease(l.get())),
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
pub enum TxnOp {
    Range(Range),
    Put(Put),
    Delete(Delete),
    Txn(Box<Txn>),
    Empty,
}

impl TxnOp {
    fn build(&self) -> RequestOp {
        RequestOp {
            request: match self {
                TxnOp::Range(r) => Some(Request::RequestRange(r.build())),
                TxnOp::Put(p) => Some(Request::RequestPut(p.build())),
                TxnOp::Delete(d) => Some(Request::RequestDeleteRange(d.build())),
                TxnOp::Txn(t) => Some(Request::RequestTxn(t.build())),
                TxnOp::Empty => None,
            },
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct Txn {
    compare: Vec<Cmp>,
    success: Vec<TxnOp>,
    failure: Vec<TxnOp>,
}

impl Txn {
    fn build(&self) -> TxnRequest {
        TxnRequest {
            compare: self.compare.iter().map(Cmp::build).collect(),
            success: self.success.iter().map(TxnOp::build).collect(),
            failure: self.failure.iter().map(TxnOp::build).collect(),
        }
    }
}

#[derive(Arbitrary, Debug)]
pub struct WatchCreate {
    key: Key,
    end: End,
    start_revision: Rev,
    watch_id: i8,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
    filters: Vec<i8>,
}

#[derive(Arbitrary, Debug)]
pub enum Op {
    Range(Range),
    Put(Put),
    Delete(Delete),
    Txn(Txn),
    Compact {
        revision: Rev,
        physical: bool,
    },
    LeaseGrant {
        id: LeaseId,
        ttl: i64,
    },
    LeaseRevoke {
        id: LeaseId,
    },
    LeaseKeepAlive {
        id: LeaseId,
    },
    LeaseTimeToLive {
        id: LeaseId,
        keys: bool,
    },
    LeaseLeases,
    WatchCreate {
        stream: u8,
        create: WatchCreate,
    },
    WatchCancel {
        stream: u8,
        watch_id: i8,
    },
    WatchProgress {
        stream: u8,
    },
    MemberAdd {
        urls: Vec<Url>,
        is_learner: bool,
    },
    MemberUpdate {
        id: u64,
        urls: Vec<Url>,
    },
    MemberRemove {
        id: u64,
    },
    MemberPromote {
        id: u64,
    },
    MemberList,
    Alarm {
        action: i8,
        member_id: u64,
        alarm: i8,
    },
    Status,
    Defragment,
    Hash,
    HashKv {
        revision: Rev,
    },
    MoveLeader {
        target: u64,
    },
    Commit,
    ProgressTick(u8),
    Leader(bool),
}

impl Op {
    /// The method and its request's protobuf bytes.
    pub fn encode(&self) -> (Method, Vec<u8>) {
        let streams = crate::STREAMS;
        match self {
            Op::Range(r) => (Method::Range, r.build().encode_to_vec()),
            Op::Put(p) => (Method::Put, p.build().encode_to_vec()),
            Op::Delete(d) => (Method::DeleteRange, d.build().encode_to_vec()),
            Op::Txn(t) => (Method::Txn, t.build().encode_to_vec()),
            Op::Compact { revision, physical } => (
                Method::Compact,
                CompactionRequest {
                    revision: revision.get(),
                    physical: *physical,
                }
                .encode_to_vec(),
            ),
            Op::LeaseGrant { id, ttl } => (
                Method::LeaseGrant,
                LeaseGrantRequest {
                    id: id.get(),
                    ttl: *ttl,
                }
                .encode_to_vec(),
            ),
            Op::LeaseRevoke { id } => (
                Method::LeaseRevoke,
                LeaseRevokeRequest { id: id.get() }.encode_to_vec(),
            ),
            Op::LeaseKeepAlive { id } => (
                Method::LeaseKeepAlive,
                LeaseKeepAliveRequest { id: id.get() }.encode_to_vec(),
            ),
            Op::LeaseTimeToLive { id, keys } => (
                Method::LeaseTimeToLive,
                LeaseTimeToLiveRequest {
                    id: id.get(),
                    keys: *keys,
                }
                .encode_to_vec(),
            ),
            Op::LeaseLeases => (Method::LeaseLeases, Vec::new()),
            Op::WatchCreate { stream, create: c } => {
                let key = c.key.bytes();
                let request = WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                        range_end: end(&key, &c.end),
                        key,
                        start_revision: c.start_revision.get(),
                        progress_notify: c.progress_notify,
                        filters: c.filters.iter().map(|f| *f as i32).collect(),
                        prev_kv: c.prev_kv,
                        watch_id: c.watch_id as i64,
                        fragment: c.fragment,
                    })),
                };
                (
                    Method::Watch(*stream as usize % streams),
                    request.encode_to_vec(),
                )
            }
            Op::WatchCancel { stream, watch_id } => (
                Method::Watch(*stream as usize % streams),
                WatchRequest {
                    request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                        watch_id: *watch_id as i64,
                    })),
                }
                .encode_to_vec(),
            ),
            Op::WatchProgress { stream } => (
                Method::Watch(*stream as usize % streams),
                WatchRequest {
                    request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
                }
                .encode_to_vec(),
            ),
            Op::MemberAdd {
                urls: u,
                is_learner,
            } => (
                Method::MemberAdd,
                MemberAddRequest {
                    peer_ur_ls: urls(u),
                    is_learner: *is_learner,
                }
                .encode_to_vec(),
            ),
            Op::MemberUpdate { id, urls: u } => (
                Method::MemberUpdate,
                MemberUpdateRequest {
                    id: *id,
                    peer_ur_ls: urls(u),
                }
                .encode_to_vec(),
            ),
            Op::MemberRemove { id } => (
                Method::MemberRemove,
                MemberRemoveRequest { id: *id }.encode_to_vec(),
            ),
            Op::MemberPromote { id } => (
                Method::MemberPromote,
                MemberPromoteRequest { id: *id }.encode_to_vec(),
            ),
            Op::MemberList => (
                Method::MemberList,
                MemberListRequest::default().encode_to_vec(),
            ),
            Op::Alarm {
                action,
                member_id,
                alarm,
            } => (
                Method::Alarm,
                AlarmRequest {
                    action: *action as i32,
                    member_id: *member_id,
                    alarm: *alarm as i32,
                }
                .encode_to_vec(),
            ),
            Op::Status => (Method::Status, Vec::new()),
            Op::Defragment => (Method::Defragment, Vec::new()),
            Op::Hash => (Method::Hash, Vec::new()),
            Op::HashKv { revision } => (
                Method::HashKv,
                HashKvRequest {
                    revision: revision.get(),
                }
                .encode_to_vec(),
            ),
            Op::MoveLeader { target } => (
                Method::MoveLeader,
                MoveLeaderRequest { target_id: *target }.encode_to_vec(),
            ),
            Op::Commit => (Method::Commit, Vec::new()),
            Op::ProgressTick(n) => (Method::ProgressTick(*n as usize % streams), Vec::new()),
            Op::Leader(on) => (Method::Leader(*on), Vec::new()),
        }
    }
}

/// A write as it travels in a Raft entry (`cairnraftpb.InternalRequest`), unchecked: a
/// leader applies what its log holds.
#[derive(Arbitrary, Debug)]
pub enum Write {
    Put(Put),
    Delete(Delete),
    Txn(Txn),
    Compact(Rev),
    LeaseGrant { id: LeaseId, ttl: i64 },
    LeaseRevoke { id: LeaseId },
    Publish { member_id: u64, name: String },
    Empty,
}

impl Write {
    pub fn build(&self) -> cairn::proto::cairnraftpb::InternalRequest {
        use cairn::proto::cairnraftpb::internal_request::Request as Q;
        use cairn::proto::cairnraftpb::{InternalRequest, MemberAttributes};
        InternalRequest {
            request: match self {
                Write::Put(p) => Some(Q::Put(p.build())),
                Write::Delete(d) => Some(Q::DeleteRange(d.build())),
                Write::Txn(t) => Some(Q::Txn(t.build())),
                Write::Compact(r) => Some(Q::Compaction(CompactionRequest {
                    revision: r.get(),
                    physical: false,
                })),
                Write::LeaseGrant { id, ttl } => Some(Q::LeaseGrant(LeaseGrantRequest {
                    id: id.get(),
                    ttl: *ttl,
                })),
                Write::LeaseRevoke { id } => {
                    Some(Q::LeaseRevoke(LeaseRevokeRequest { id: id.get() }))
                }
                Write::Publish { member_id, name } => Some(Q::Publish(MemberAttributes {
                    member_id: *member_id,
                    name: name.clone(),
                    ..MemberAttributes::default()
                })),
                Write::Empty => None,
            },
        }
    }
}
