//! etcd 3.4's request semantics, request by request, as `apply_request` and `range` give
//! them: the values expected are what etcd answers (tests/kv_*.rs check the same against a
//! running server).

use std::sync::Arc;

use super::*;
use crate::mvcc::Mvcc;
use crate::proto::cairnraftpb::Caller;
use crate::proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use crate::proto::etcdserverpb::request_op::Request;
use crate::proto::etcdserverpb::response_op::Response;
use crate::proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, TxnRequest,
    TxnResponse,
};
use crate::proto::mvccpb::KeyValue;
use crate::storage::{Storage, StorageError};

use apply_result::Result as R;
use internal_request::Request as Q;

const UNKNOWN_LEASE: i64 = 0x7777;

struct Fixture {
    _dir: tempfile::TempDir,
    storage: Arc<Storage>,
    mvcc: Arc<Mvcc>,
    leases: Arc<Lessor>,
    auth: Arc<AuthStore>,
    alarms: crate::alarms::AlarmStore,
}

fn open() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Storage::open(&dir.path().join("db")).unwrap());
    let mvcc = Mvcc::open(storage.clone()).unwrap();
    let leases = Lessor::open(storage.clone(), 0).unwrap();
    let settings = crate::auth::AuthSettings {
        // The cheapest cost: hashing is not what these tests are about.
        bcrypt_cost: 4,
        ..crate::auth::AuthSettings::default()
    };
    let auth = AuthStore::open(storage.clone(), &settings).unwrap();
    let alarms = crate::alarms::AlarmStore::open(storage.clone()).unwrap();
    Fixture {
        _dir: dir,
        alarms,
        storage,
        mvcc,
        leases,
        auth,
    }
}

impl Fixture {
    /// Applies one request as the state machine does, and commits it.
    fn apply(&self, request: Q) -> R {
        self.apply_as(None, request)
    }

    /// Applies one request from `caller` (None: Cairn's own), and commits it.
    fn apply_as(&self, caller: Option<Caller>, request: Q) -> R {
        let mut guard = self.mvcc.write();
        let applier = Applier {
            leases: &self.leases,
            auth: &self.auth,
            alarms: &self.alarms,
            index: 1,
        };
        let applied = apply_request(
            &mut guard,
            &applier,
            &InternalRequest {
                request: Some(request),
                caller,
            },
        )
        .expect("no storage failure");
        guard.commit().unwrap();
        applied.result.expect("a result")
    }

    fn put(&self, p: PutRequest) -> PutResponse {
        match self.apply(Q::Put(p)) {
            R::Put(r) => r,
            other => panic!("put failed: {other:?}"),
        }
    }

    fn put_kv(&self, key: &str, value: &str) -> i64 {
        rev(&self.put(put_req(key, value)).header)
    }

    fn delete(&self, d: DeleteRangeRequest) -> DeleteRangeResponse {
        match self.apply(Q::DeleteRange(d)) {
            R::DeleteRange(r) => r,
            other => panic!("delete failed: {other:?}"),
        }
    }

    fn txn(&self, t: TxnRequest) -> TxnResponse {
        match self.apply(Q::Txn(t)) {
            R::Txn(r) => r,
            other => panic!("txn failed: {other:?}"),
        }
    }

    fn grant(&self, id: i64) {
        let granted = self.apply(Q::LeaseGrant(LeaseGrantRequest { ttl: 600, id }));
        assert!(matches!(granted, R::LeaseGrant(_)), "{granted:?}");
    }

    fn compact(&self, revision: i64) -> R {
        self.apply(Q::Compaction(CompactionRequest {
            revision,
            physical: false,
        }))
    }

    fn range(&self, r: RangeRequest) -> Result<RangeResponse, EtcdError> {
        range(&self.mvcc.read_view(), &r)
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        let mut found = self.range(get_req(key)).unwrap();
        assert!(found.kvs.len() <= 1);
        found.kvs.pop()
    }

    fn value(&self, key: &str) -> Option<String> {
        self.get(key).map(|kv| String::from_utf8(kv.value).unwrap())
    }

    fn lease_keys(&self, id: i64) -> Vec<Vec<u8>> {
        self.leases.time_to_live(id, true).unwrap().keys
    }

    /// Whether a transaction with these compares and no operations succeeds.
    fn holds(&self, compare: Vec<Compare>) -> bool {
        self.txn(TxnRequest {
            compare,
            ..TxnRequest::default()
        })
        .succeeded
    }
}

fn rev(header: &Option<ResponseHeader>) -> i64 {
    header.as_ref().expect("a header").revision
}

fn error(e: EtcdError) -> R {
    R::Error(e.number())
}

fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: key.into(),
        value: value.into(),
        ..PutRequest::default()
    }
}

fn get_req(key: &str) -> RangeRequest {
    RangeRequest {
        key: key.into(),
        ..RangeRequest::default()
    }
}

fn all_req() -> RangeRequest {
    RangeRequest {
        key: vec![0],
        range_end: vec![0],
        ..RangeRequest::default()
    }
}

fn delete_req(key: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: key.into(),
        ..DeleteRangeRequest::default()
    }
}

fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    op(Request::RequestPut(put_req(key, value)))
}

fn get_op(key: &str) -> RequestOp {
    op(Request::RequestRange(get_req(key)))
}

fn delete_op(key: &str) -> RequestOp {
    op(Request::RequestDeleteRange(delete_req(key)))
}

fn compare(key: &str, result: CompareResult, operand: TargetUnion) -> Compare {
    let target = match operand {
        TargetUnion::Version(_) => CompareTarget::Version,
        TargetUnion::CreateRevision(_) => CompareTarget::Create,
        TargetUnion::ModRevision(_) => CompareTarget::Mod,
        TargetUnion::Value(_) => CompareTarget::Value,
        TargetUnion::Lease(_) => CompareTarget::Lease,
    };
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.into(),
        target_union: Some(operand),
        range_end: Vec::new(),
    }
}

fn value_is(key: &str, value: &str) -> Compare {
    compare(key, CompareResult::Equal, TargetUnion::Value(value.into()))
}

fn range_of(op: &ResponseOp) -> &RangeResponse {
    match &op.response {
        Some(Response::ResponseRange(r)) => r,
        other => panic!("not a range response: {other:?}"),
    }
}

fn op_revision(op: &ResponseOp) -> i64 {
    match &op.response {
        Some(Response::ResponseRange(r)) => rev(&r.header),
        Some(Response::ResponsePut(r)) => rev(&r.header),
        Some(Response::ResponseDeleteRange(r)) => rev(&r.header),
        Some(Response::ResponseTxn(r)) => rev(&r.header),
        None => panic!("empty response"),
    }
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

fn values(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
        .collect()
}

/// tests/kv_txn.rs's layout: k = "b" @2, other = "x" @3, k = "b" again @4 (version 2).
fn with_compare_layout() -> Fixture {
    let f = open();
    assert_eq!(f.put_kv("k", "b"), 2);
    assert_eq!(f.put_kv("other", "x"), 3);
    assert_eq!(f.put_kv("k", "b"), 4);
    f
}

/// tests/kv_range.rs's sort layout, three keys whose orders differ for every sort target:
/// k1: create 3, mod 7, version 2, value "c2"; k2: create 4, mod 4, version 1, value "b";
/// k3: create 2, mod 6, version 3, value "a3".
fn with_sort_layout() -> Fixture {
    let f = open();
    for (key, value) in [
        ("k3", "a1"),
        ("k1", "c1"),
        ("k2", "b"),
        ("k3", "a2"),
        ("k3", "a3"),
        ("k1", "c2"),
    ] {
        f.put_kv(key, value);
    }
    assert_eq!(f.mvcc.current_rev(), 7);
    f
}

fn prefix_k() -> RangeRequest {
    RangeRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        ..RangeRequest::default()
    }
}

#[test]
fn put_answers_its_revision_and_the_previous_pair_only_when_asked() {
    let f = open();
    let first = f.put(put_req("k", "v1"));
    assert_eq!((rev(&first.header), first.prev_kv), (2, None));
    let second = f.put(PutRequest {
        prev_kv: true,
        ..put_req("k", "v2")
    });
    assert_eq!(rev(&second.header), 3);
    assert_eq!(
        second.prev_kv,
        Some(KeyValue {
            key: b"k".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"v1".to_vec(),
            lease: 0,
        })
    );
    let third = f.put(put_req("k", "v3"));
    assert_eq!((rev(&third.header), third.prev_kv), (4, None));
    let fresh = f.put(PutRequest {
        prev_kv: true,
        ..put_req("new", "n")
    });
    assert_eq!((rev(&fresh.header), fresh.prev_kv), (5, None));
    let kv = f.get("k").unwrap();
    assert_eq!(
        (kv.value, kv.create_revision, kv.mod_revision, kv.version),
        (b"v3".to_vec(), 2, 4, 3)
    );
}

#[test]
fn put_ignore_value_and_ignore_lease_keep_the_old_value_and_lease() {
    let f = open();
    f.grant(7);
    assert_eq!(f.mvcc.current_rev(), 1, "a grant makes no revision");
    f.put(PutRequest {
        lease: 7,
        ..put_req("k", "v1")
    });
    assert_eq!(f.lease_keys(7), vec![b"k".to_vec()]);
    // ignore_lease: the new value, the old lease.
    let kept_lease = f.put(PutRequest {
        ignore_lease: true,
        prev_kv: true,
        ..put_req("k", "v2")
    });
    assert_eq!(rev(&kept_lease.header), 3);
    assert_eq!(kept_lease.prev_kv.unwrap().lease, 7);
    let kv = f.get("k").unwrap();
    assert_eq!((kv.value, kv.lease, kv.version), (b"v2".to_vec(), 7, 2));
    assert_eq!(f.lease_keys(7), vec![b"k".to_vec()]);
    // ignore_value without ignore_lease: the old value, the lease asked for (none).
    let kept_value = f.put(PutRequest {
        ignore_value: true,
        ..put_req("k", "")
    });
    assert_eq!(rev(&kept_value.header), 4);
    let kv = f.get("k").unwrap();
    assert_eq!(
        (kv.value, kv.lease, kv.version, kv.mod_revision),
        (b"v2".to_vec(), 0, 3, 4)
    );
    assert!(f.lease_keys(7).is_empty(), "the key left its lease");
}

#[test]
fn put_ignore_flags_on_a_missing_key_are_key_not_found_and_write_nothing() {
    let f = open();
    for p in [
        PutRequest {
            ignore_value: true,
            ..put_req("missing", "")
        },
        PutRequest {
            ignore_lease: true,
            ..put_req("missing", "v")
        },
    ] {
        assert_eq!(f.apply(Q::Put(p)), error(EtcdError::KeyNotFound));
    }
    assert_eq!(f.mvcc.current_rev(), 1);
    assert_eq!(f.get("missing"), None);
    // A deleted key is missing too.
    f.put_kv("gone", "v");
    f.delete(delete_req("gone"));
    let p = PutRequest {
        ignore_value: true,
        ..put_req("gone", "")
    };
    assert_eq!(f.apply(Q::Put(p)), error(EtcdError::KeyNotFound));
    assert_eq!(f.mvcc.current_rev(), 3);
}

#[test]
fn a_missing_lease_is_checked_before_the_key_in_a_put_and_after_it_in_a_txn() {
    let f = open();
    let leased = PutRequest {
        lease: UNKNOWN_LEASE,
        ..put_req("k", "v")
    };
    assert_eq!(
        f.apply(Q::Put(leased.clone())),
        error(EtcdError::LeaseNotFound)
    );
    assert_eq!(f.mvcc.current_rev(), 1);
    // Both wrong: a Put reports the lease, a put inside a Txn the key, as etcd does.
    let both = PutRequest {
        ignore_value: true,
        value: Vec::new(),
        ..leased
    };
    assert_eq!(
        f.apply(Q::Put(both.clone())),
        error(EtcdError::LeaseNotFound)
    );
    let in_txn = TxnRequest {
        success: vec![op(Request::RequestPut(both))],
        ..TxnRequest::default()
    };
    assert_eq!(f.apply(Q::Txn(in_txn)), error(EtcdError::KeyNotFound));
    assert_eq!(f.mvcc.current_rev(), 1);
}

#[test]
fn delete_range_counts_and_returns_prev_kvs_in_key_order_at_one_revision() {
    let f = open();
    for key in ["a", "b", "c", "d"] {
        f.put_kv(key, &format!("v-{key}"));
    }
    let ranged = f.delete(DeleteRangeRequest {
        key: b"b".to_vec(),
        range_end: b"d".to_vec(),
        prev_kv: true,
    });
    assert_eq!((ranged.deleted, rev(&ranged.header)), (2, 6));
    assert_eq!(keys(&ranged.prev_kvs), ["b", "c"]);
    assert_eq!(values(&ranged.prev_kvs), ["v-b", "v-c"]);
    assert_eq!(
        (
            ranged.prev_kvs[1].create_revision,
            ranged.prev_kvs[1].version
        ),
        (4, 1)
    );
    let single = f.delete(delete_req("a"));
    assert_eq!((single.deleted, rev(&single.header)), (1, 7));
    assert!(single.prev_kvs.is_empty(), "no prev_kvs unless asked");
    // Deleting nothing makes no revision.
    let nothing = f.delete(DeleteRangeRequest {
        prev_kv: true,
        ..delete_req("b")
    });
    assert_eq!((nothing.deleted, rev(&nothing.header)), (0, 7));
    assert!(nothing.prev_kvs.is_empty());
    assert_eq!(f.mvcc.current_rev(), 7);
    let rest = f.delete(DeleteRangeRequest {
        key: vec![0],
        range_end: vec![0],
        prev_kv: false,
    });
    assert_eq!((rest.deleted, rev(&rest.header)), (1, 8));
    assert_eq!(f.range(all_req()).unwrap().count, 0);
    // History keeps what was deleted.
    let at_five = f
        .range(RangeRequest {
            revision: 5,
            ..all_req()
        })
        .unwrap();
    assert_eq!(keys(&at_five.kvs), ["a", "b", "c", "d"]);
}

#[test]
fn txn_success_ops_share_one_revision_and_later_reads_see_earlier_writes() {
    let f = with_compare_layout();
    let response = f.txn(TxnRequest {
        compare: vec![compare("k", CompareResult::Equal, TargetUnion::Version(2))],
        success: vec![
            get_op("k"),
            put_op("k", "new"),
            get_op("k"),
            delete_op("other"),
            get_op("other"),
            put_op("fresh", "f"),
            op(Request::RequestRange(all_req())),
        ],
        failure: vec![put_op("failure", "ran")],
    });
    assert!(response.succeeded);
    assert_eq!(rev(&response.header), 5);
    let ops = &response.responses;
    // Each operation's header carries the revision as of that operation.
    assert_eq!(
        ops.iter().map(op_revision).collect::<Vec<_>>(),
        [4, 5, 5, 5, 5, 5, 5]
    );
    assert_eq!(values(&range_of(&ops[0]).kvs), ["b"]);
    let after_put = &range_of(&ops[2]).kvs[0];
    assert_eq!(
        (
            after_put.value.as_slice(),
            after_put.create_revision,
            after_put.mod_revision,
            after_put.version
        ),
        (&b"new"[..], 2, 5, 3)
    );
    match &ops[3].response {
        Some(Response::ResponseDeleteRange(d)) => assert_eq!(d.deleted, 1),
        other => panic!("not a delete response: {other:?}"),
    }
    assert_eq!(range_of(&ops[4]).count, 0);
    let all = range_of(&ops[6]);
    assert_eq!(
        (keys(&all.kvs), all.count),
        (vec!["fresh".into(), "k".into()], 2)
    );
    assert_eq!(f.mvcc.current_rev(), 5);
    assert_eq!(f.value("failure"), None);
    assert_eq!(f.get("fresh").unwrap().mod_revision, 5);
}

#[test]
fn txn_failure_branch_runs_when_any_compare_fails() {
    let f = with_compare_layout();
    let response = f.txn(TxnRequest {
        compare: vec![
            compare("k", CompareResult::Equal, TargetUnion::Version(2)),
            value_is("other", "nope"),
        ],
        success: vec![put_op("success", "ran")],
        failure: vec![put_op("failure", "ran"), get_op("other")],
    });
    assert!(!response.succeeded);
    assert_eq!(rev(&response.header), 5);
    assert_eq!(response.responses.len(), 2);
    assert_eq!(values(&range_of(&response.responses[1]).kvs), ["x"]);
    assert_eq!(f.value("failure").as_deref(), Some("ran"));
    assert_eq!(f.value("success"), None);
    // A failed compare with nothing to do changes nothing.
    let nothing = f.txn(TxnRequest {
        compare: vec![value_is("other", "nope")],
        success: vec![put_op("success", "ran")],
        ..TxnRequest::default()
    });
    assert!(!nothing.succeeded);
    assert!(nothing.responses.is_empty());
    assert_eq!(rev(&nothing.header), 5);
    assert_eq!(f.mvcc.current_rev(), 5);
}

#[test]
fn txn_compares_treat_a_missing_key_as_zeroes_without_a_value_and_ranges_need_every_key() {
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use TargetUnion::{CreateRevision, Lease, ModRevision, Value, Version};
    let f = open();
    f.grant(5);
    f.put_kv("a", "1"); // 2
    f.put_kv("b", "1"); // 3
    f.put(PutRequest {
        lease: 5,
        ..put_req("c", "2")
    }); // 4
    let over = |key: &str, end: &str, c: Compare| Compare {
        key: key.into(),
        range_end: end.into(),
        ..c
    };
    let cases = [
        // A missing key: zero version, revisions and lease...
        (compare("missing", Equal, Version(0)), true),
        (compare("missing", Greater, Version(0)), false),
        (compare("missing", Less, Version(1)), true),
        (compare("missing", Equal, CreateRevision(0)), true),
        (compare("missing", NotEqual, ModRevision(0)), false),
        (compare("missing", Equal, Lease(0)), true),
        // ...and no value at all: every value compare fails.
        (compare("missing", Equal, Value(Vec::new())), false),
        (compare("missing", NotEqual, Value(b"x".to_vec())), false),
        (compare("missing", Less, Value(b"x".to_vec())), false),
        // A present key.
        (compare("b", Equal, ModRevision(3)), true),
        (compare("b", Greater, ModRevision(2)), true),
        (compare("b", Less, ModRevision(3)), false),
        (compare("c", Equal, CreateRevision(4)), true),
        (compare("c", Equal, Lease(5)), true),
        (compare("b", NotEqual, Lease(0)), false),
        (compare("c", Greater, Value(b"1".to_vec())), true),
        // A range holds only if every key in it does.
        (
            over("a", "c", compare("", Equal, Value(b"1".to_vec()))),
            true,
        ),
        (
            over("a", "d", compare("", Equal, Value(b"1".to_vec()))),
            false,
        ),
        (over("a", "d", compare("", Equal, Version(1))), true),
        // An empty range compares as a missing key.
        (over("x", "z", compare("", Equal, Version(0))), true),
        (over("x", "z", compare("", Equal, Value(Vec::new()))), false),
    ];
    for (i, (c, want)) in cases.into_iter().enumerate() {
        assert_eq!(f.holds(vec![c.clone()]), want, "case {i}: {c:?}");
    }
    assert_eq!(f.mvcc.current_rev(), 4, "compares alone write nothing");
}

#[test]
fn nested_txn_compares_see_the_state_before_the_outer_writes() {
    let f = open();
    f.put_kv("k", "old");
    let nested = TxnRequest {
        compare: vec![value_is("k", "old")],
        success: vec![put_op("inner", "yes"), get_op("k")],
        failure: vec![put_op("inner", "no")],
    };
    let response = f.txn(TxnRequest {
        success: vec![put_op("k", "new"), op(Request::RequestTxn(nested))],
        ..TxnRequest::default()
    });
    assert!(response.succeeded);
    assert_eq!(rev(&response.header), 3);
    let inner = match &response.responses[1].response {
        Some(Response::ResponseTxn(t)) => t,
        other => panic!("not a txn response: {other:?}"),
    };
    // Compared before anything was written: k was still "old".
    assert!(inner.succeeded);
    // etcd leaves a nested transaction's header empty.
    assert_eq!(inner.header, Some(ResponseHeader::default()));
    assert_eq!(op_revision(&inner.responses[0]), 3);
    // Operations run in order: the read sees the outer put.
    assert_eq!(values(&range_of(&inner.responses[1]).kvs), ["new"]);
    assert_eq!(f.value("inner").as_deref(), Some("yes"));
    assert_eq!(f.get("inner").unwrap().mod_revision, 3);
    assert_eq!(f.mvcc.current_rev(), 3);
}

#[test]
fn txn_fails_whole_when_a_put_on_the_chosen_path_fails_its_checks() {
    let f = open();
    let bad_lease = TxnRequest {
        success: vec![
            put_op("a", "1"),
            op(Request::RequestPut(PutRequest {
                lease: UNKNOWN_LEASE,
                ..put_req("b", "2")
            })),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(f.apply(Q::Txn(bad_lease)), error(EtcdError::LeaseNotFound));
    let bad_nested = TxnRequest {
        success: vec![
            put_op("a", "1"),
            op(Request::RequestTxn(TxnRequest {
                success: vec![op(Request::RequestPut(PutRequest {
                    ignore_value: true,
                    ..put_req("missing", "")
                }))],
                ..TxnRequest::default()
            })),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(f.apply(Q::Txn(bad_nested)), error(EtcdError::KeyNotFound));
    assert_eq!(f.value("a"), None);
    assert_eq!(f.mvcc.current_rev(), 1);
    // A bad put on the branch not taken is never checked.
    let response = f.txn(TxnRequest {
        compare: vec![compare("k", CompareResult::Equal, TargetUnion::Version(0))],
        success: vec![put_op("a", "1")],
        failure: vec![op(Request::RequestPut(PutRequest {
            lease: UNKNOWN_LEASE,
            ..put_req("b", "2")
        }))],
    });
    assert!(response.succeeded);
    assert_eq!(rev(&response.header), 2);
    assert_eq!(f.value("a").as_deref(), Some("1"));
}

#[test]
fn txn_range_revisions_are_checked_before_anything_is_written() {
    let f = with_compare_layout(); // at 4
    assert!(matches!(f.compact(3), R::Compaction(_)));
    let at = |revision: i64| TxnRequest {
        success: vec![
            put_op("a", "1"),
            op(Request::RequestRange(RangeRequest {
                revision,
                ..get_req("other")
            })),
        ],
        ..TxnRequest::default()
    };
    assert_eq!(f.apply(Q::Txn(at(2))), error(EtcdError::Compacted));
    // Checked against the revision before the transaction: its own is still the future.
    assert_eq!(f.apply(Q::Txn(at(5))), error(EtcdError::FutureRev));
    // Inside a transaction a negative revision is checked too, and is below any compaction.
    assert_eq!(f.apply(Q::Txn(at(-5))), error(EtcdError::Compacted));
    assert_eq!(f.value("a"), None);
    assert_eq!(f.mvcc.current_rev(), 4);
    // Exactly the compacted revision is readable.
    let response = f.txn(at(3));
    assert_eq!(values(&range_of(&response.responses[1]).kvs), ["x"]);
    assert_eq!(rev(&response.header), 5);
}

#[test]
fn txn_of_reads_and_deletes_of_nothing_makes_no_revision() {
    let f = open();
    f.put_kv("k", "v");
    let reads = TxnRequest {
        compare: vec![value_is("k", "v")],
        success: vec![get_op("k"), delete_op("missing")],
        failure: vec![get_op("other")],
    };
    let response = f.txn(reads.clone());
    assert!(response.succeeded);
    assert_eq!(rev(&response.header), 2);
    assert_eq!(
        response
            .responses
            .iter()
            .map(op_revision)
            .collect::<Vec<_>>(),
        [2, 2]
    );
    assert_eq!(f.mvcc.current_rev(), 2);
    assert_eq!(f.put_kv("next", "n"), 3);
    // A read-only transaction runs on a read view, with the same answer.
    let read_only = TxnRequest {
        success: vec![get_op("k")],
        ..reads
    };
    assert!(txn::is_read_only(&read_only));
    let response = txn::txn(&mut f.mvcc.read_view(), &f.leases, &read_only).unwrap();
    assert!(response.succeeded);
    assert_eq!(rev(&response.header), 3);
    assert_eq!(values(&range_of(&response.responses[0]).kvs), ["v"]);
}

#[test]
fn is_read_only_and_is_serializable_follow_etcd() {
    let serializable = |key: &str| {
        op(Request::RequestRange(RangeRequest {
            serializable: true,
            ..get_req(key)
        }))
    };
    let txn = |success: Vec<RequestOp>, failure: Vec<RequestOp>| TxnRequest {
        compare: vec![value_is("k", "v")],
        success,
        failure,
    };
    let cases = [
        // (transaction, read-only, serializable)
        (TxnRequest::default(), true, true),
        (txn(vec![get_op("a")], vec![get_op("b")]), true, false),
        (txn(vec![serializable("a")], vec![get_op("b")]), true, false),
        (
            txn(vec![serializable("a")], vec![serializable("b")]),
            true,
            true,
        ),
        (
            txn(vec![get_op("a"), put_op("b", "v")], vec![]),
            false,
            false,
        ),
        (txn(vec![get_op("a")], vec![delete_op("b")]), false, false),
        // A nested transaction counts as a write, whatever it holds.
        (
            txn(
                vec![op(Request::RequestTxn(txn(
                    vec![serializable("a")],
                    vec![],
                )))],
                vec![],
            ),
            false,
            false,
        ),
    ];
    for (i, (t, read_only, serial)) in cases.iter().enumerate() {
        assert_eq!(txn::is_read_only(t), *read_only, "case {i}: read-only");
        if *read_only {
            assert_eq!(txn::is_serializable(t), *serial, "case {i}: serializable");
        }
    }
}

#[test]
fn range_limit_sets_more_and_count_is_the_total() {
    let f = open();
    for key in ["a", "b", "c", "d", "e"] {
        f.put_kv(key, &format!("v-{key}"));
    }
    let limited = |limit: i64| f.range(RangeRequest { limit, ..all_req() }).unwrap();
    let two = limited(2);
    assert_eq!(
        (keys(&two.kvs), two.more, two.count),
        (vec!["a".into(), "b".into()], true, 5)
    );
    assert_eq!(rev(&two.header), 6);
    let exact = limited(5);
    assert_eq!((exact.kvs.len(), exact.more, exact.count), (5, false, 5));
    let larger = limited(10);
    assert_eq!((larger.kvs.len(), larger.more, larger.count), (5, false, 5));
    let counted = f
        .range(RangeRequest {
            count_only: true,
            limit: 2,
            ..all_req()
        })
        .unwrap();
    assert_eq!(
        (counted.kvs.len(), counted.more, counted.count),
        (0, false, 5)
    );
    let keys_only = f
        .range(RangeRequest {
            keys_only: true,
            key: b"b".to_vec(),
            range_end: b"d".to_vec(),
            ..RangeRequest::default()
        })
        .unwrap();
    assert_eq!(keys(&keys_only.kvs), ["b", "c"]);
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));
    let c = &keys_only.kvs[1];
    assert_eq!((c.create_revision, c.mod_revision, c.version), (4, 4, 1));
    assert_eq!(keys_only.count, 2);
}

#[test]
fn range_sorts_by_every_target_before_the_limit() {
    let f = with_sort_layout();
    let sorted = |target: SortTarget, order: SortOrder, limit: i64| {
        let r = f
            .range(RangeRequest {
                sort_target: target as i32,
                sort_order: order as i32,
                limit,
                ..prefix_k()
            })
            .unwrap();
        (keys(&r.kvs), r.more)
    };
    let ascending = [
        (SortTarget::Key, ["k1", "k2", "k3"]),
        (SortTarget::Version, ["k2", "k1", "k3"]),
        (SortTarget::Create, ["k3", "k1", "k2"]),
        (SortTarget::Mod, ["k2", "k3", "k1"]),
        (SortTarget::Value, ["k3", "k2", "k1"]),
    ];
    for (target, order) in ascending {
        let mut descending = order;
        descending.reverse();
        assert_eq!(
            sorted(target, SortOrder::Ascend, 0).0,
            order,
            "{target:?} ascending"
        );
        assert_eq!(
            sorted(target, SortOrder::Descend, 0).0,
            descending,
            "{target:?} descending"
        );
        // No order with a target other than the key sorts ascending, as in etcd.
        assert_eq!(
            sorted(target, SortOrder::None, 0).0,
            order,
            "{target:?} no order"
        );
    }
    // The limit applies to the sorted keys.
    assert_eq!(
        sorted(SortTarget::Mod, SortOrder::Descend, 1),
        (vec!["k1".into()], true)
    );
    assert_eq!(
        sorted(SortTarget::Create, SortOrder::Ascend, 2),
        (vec!["k3".into(), "k1".into()], true)
    );
}

#[test]
fn range_revision_filters_apply_before_the_limit_and_count_is_unfiltered() {
    let f = with_sort_layout();
    let filtered = |r: RangeRequest| {
        let r = f.range(r).unwrap();
        (keys(&r.kvs), r.more, r.count)
    };
    let k = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        filtered(RangeRequest {
            min_mod_revision: 6,
            ..prefix_k()
        }),
        (k(&["k1", "k3"]), false, 3)
    );
    assert_eq!(
        filtered(RangeRequest {
            max_mod_revision: 6,
            ..prefix_k()
        }),
        (k(&["k2", "k3"]), false, 3)
    );
    assert_eq!(
        filtered(RangeRequest {
            min_create_revision: 3,
            ..prefix_k()
        }),
        (k(&["k1", "k2"]), false, 3)
    );
    assert_eq!(
        filtered(RangeRequest {
            max_create_revision: 3,
            ..prefix_k()
        }),
        (k(&["k1", "k3"]), false, 3)
    );
    assert_eq!(
        filtered(RangeRequest {
            min_create_revision: 3,
            max_mod_revision: 5,
            ..prefix_k()
        }),
        (k(&["k2"]), false, 3)
    );
    assert_eq!(
        filtered(RangeRequest {
            min_mod_revision: 6,
            limit: 1,
            ..prefix_k()
        }),
        (k(&["k1"]), true, 3)
    );
    assert_eq!(
        filtered(RangeRequest {
            min_mod_revision: 6,
            limit: 2,
            ..prefix_k()
        }),
        (k(&["k1", "k3"]), false, 3)
    );
}

#[test]
fn range_at_a_future_or_compacted_revision_fails_and_a_past_read_answers_the_current_revision() {
    let f = open();
    f.put_kv("k", "v1"); // 2
    f.put_kv("other", "x"); // 3
    f.put_kv("k", "v2"); // 4
    let at = |revision: i64| {
        f.range(RangeRequest {
            revision,
            ..get_req("k")
        })
    };
    assert_eq!(at(5).unwrap_err(), EtcdError::FutureRev);
    let past = at(3).unwrap();
    assert_eq!(values(&past.kvs), ["v1"]);
    assert_eq!((past.kvs[0].version, past.count), (1, 1));
    assert_eq!(rev(&past.header), 4);
    assert_eq!(values(&at(1).unwrap().kvs), Vec::<String>::new());
    assert!(matches!(f.compact(3), R::Compaction(_)));
    assert_eq!(at(2).unwrap_err(), EtcdError::Compacted);
    assert_eq!(at(1).unwrap_err(), EtcdError::Compacted);
    assert_eq!(values(&at(3).unwrap().kvs), ["v1"]);
    assert_eq!(values(&at(0).unwrap().kvs), ["v2"]);
}

#[test]
fn compaction_answers_the_current_revision_and_refuses_future_and_repeated_revisions() {
    let f = with_compare_layout(); // at 4
    match f.compact(3) {
        R::Compaction(c) => assert_eq!(rev(&c.header), 4),
        other => panic!("compaction failed: {other:?}"),
    }
    assert_eq!((f.mvcc.current_rev(), f.mvcc.compact_rev()), (4, 3));
    assert_eq!(f.compact(3), error(EtcdError::Compacted));
    assert_eq!(f.compact(2), error(EtcdError::Compacted));
    assert_eq!(f.compact(5), error(EtcdError::FutureRev));
    assert!(matches!(f.compact(4), R::Compaction(_)));
    assert_eq!(f.mvcc.compact_rev(), 4);
    assert_eq!(f.put_kv("next", "n"), 5);
}

#[test]
fn an_empty_request_is_a_failure_to_apply_not_an_etcd_error() {
    let f = open();
    let mut guard = f.mvcc.write();
    let applier = Applier {
        leases: &f.leases,
        auth: &f.auth,
        alarms: &f.alarms,
        index: 1,
    };
    let applied = apply_request(
        &mut guard,
        &applier,
        &InternalRequest {
            request: None,
            caller: None,
        },
    );
    assert!(matches!(applied, Err(StorageError::Corrupt(_))));
}

// ---- Auth: changes and checks as applied entries make them ----

mod auth {
    use super::*;
    use crate::proto::authpb::{permission::Type as PermType, Permission};
    use crate::proto::cairnraftpb::{AuthApplied, Authenticate, UserAdd};
    use crate::proto::etcdserverpb::{
        AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
        AuthRoleGrantPermissionRequest, AuthRoleRevokePermissionRequest, AuthUserGrantRoleRequest,
        AuthUserRevokeRoleRequest, LeaseRevokeRequest,
    };

    fn error(r: R) -> EtcdError {
        match r {
            R::Error(n) => EtcdError::from_number(n),
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn applied(r: R) -> AuthApplied {
        match r {
            R::Auth(a) => a,
            other => panic!("expected an auth change, got {other:?}"),
        }
    }

    fn user_add(name: &str) -> Q {
        Q::UserAdd(UserAdd {
            name: name.into(),
            hashed_password: bcrypt::hash("pw", 4).unwrap().into_bytes(),
            options: None,
        })
    }

    fn grant_role(user: &str, role: &str) -> Q {
        Q::UserGrantRole(AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        })
    }

    fn grant(role: &str, t: PermType, key: &str, end: &str) -> Q {
        Q::RoleGrantPermission(AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(Permission {
                perm_type: t as i32,
                key: key.into(),
                range_end: end.into(),
            }),
        })
    }

    /// As `user`, at the current auth revision.
    fn as_user(f: &Fixture, user: &str) -> Option<Caller> {
        Some(Caller {
            user: user.into(),
            auth_revision: f.auth.revision(),
        })
    }

    /// root (with the root role) and alice (role `r`: readwrite on k..l), auth enabled.
    fn with_auth() -> Fixture {
        let f = open();
        for q in [
            user_add("root"),
            grant_role("root", "root"),
            user_add("alice"),
            Q::RoleAdd(AuthRoleAddRequest { name: "r".into() }),
            grant("r", PermType::Readwrite, "k", "l"),
            grant_role("alice", "r"),
            Q::AuthEnable(AuthEnableRequest {}),
        ] {
            applied(f.apply_as(None, q));
        }
        assert!(f.auth.is_enabled());
        f
    }

    #[test]
    fn enabling_needs_a_root_user_with_the_root_role() {
        let f = open();
        let enable = || Q::AuthEnable(AuthEnableRequest {});
        assert_eq!(error(f.apply(enable())), EtcdError::RootUserNotExist);
        applied(f.apply(user_add("root")));
        assert_eq!(error(f.apply(enable())), EtcdError::RootRoleNotExist);
        applied(f.apply(grant_role("root", "root")));
        let revision = f.auth.revision();
        assert_eq!(
            applied(f.apply(enable())).auth_revision,
            revision,
            "enabling keeps the revision"
        );
        assert!(f.auth.is_enabled());
    }

    #[test]
    fn every_change_raises_the_revision_and_survives_a_reload() {
        let f = with_auth();
        let before = f.auth.revision();
        let root = as_user(&f, "root");
        let after = applied(f.apply_as(root, Q::RoleAdd(AuthRoleAddRequest { name: "s".into() })));
        assert_eq!(after.auth_revision, before + 1);
        f.auth.reload().unwrap();
        assert_eq!(f.auth.revision(), before + 1);
        assert!(f.auth.is_enabled());
        assert_eq!(f.auth.role_names(), ["r", "s"]);
        assert_eq!(f.auth.user_roles("alice").unwrap(), ["r"]);
        // A fresh store reads the same from storage.
        let reopened =
            AuthStore::open(f.storage.clone(), &crate::auth::AuthSettings::default()).unwrap();
        assert_eq!(reopened.status(), (true, before + 1));
    }

    #[test]
    fn writes_are_checked_against_the_callers_permissions_when_applied() {
        let f = with_auth();
        let alice = as_user(&f, "alice");
        f.apply_as(alice.clone(), Q::Put(put_req("k1", "v")));
        assert_eq!(
            error(f.apply_as(alice.clone(), Q::Put(put_req("m", "v")))),
            EtcdError::PermissionDenied
        );
        let anonymous = Some(Caller::default());
        assert_eq!(
            error(f.apply_as(anonymous, Q::Put(put_req("k1", "v")))),
            EtcdError::UserEmpty
        );
        // Cairn's own requests (lease expiry) are not checked.
        f.apply_as(None, Q::Put(put_req("m", "v")));

        let nested = TxnRequest {
            success: vec![RequestOp {
                request: Some(Request::RequestTxn(TxnRequest {
                    success: vec![RequestOp {
                        request: Some(Request::RequestPut(put_req("z", "v"))),
                    }],
                    ..TxnRequest::default()
                })),
            }],
            ..TxnRequest::default()
        };
        assert_eq!(
            error(f.apply_as(alice.clone(), Q::Txn(nested))),
            EtcdError::PermissionDenied
        );

        // A role revoked before the entry is applied: the entry is refused, and an identity
        // resolved before the change is old.
        let root = as_user(&f, "root");
        applied(f.apply_as(
            root,
            Q::RoleRevokePermission(AuthRoleRevokePermissionRequest {
                role: "r".into(),
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
            }),
        ));
        assert_eq!(
            error(f.apply_as(alice, Q::Put(put_req("k1", "v")))),
            EtcdError::AuthOldRevision
        );
        let alice = as_user(&f, "alice");
        assert_eq!(
            error(f.apply_as(alice, Q::Put(put_req("k1", "v")))),
            EtcdError::PermissionDenied
        );
    }

    #[test]
    fn revoking_a_lease_needs_write_permission_on_its_keys() {
        let f = with_auth();
        f.apply(Q::LeaseGrant(LeaseGrantRequest { id: 7, ttl: 60 }));
        f.apply(Q::Put(PutRequest {
            lease: 7,
            ..put_req("m", "v")
        }));
        let alice = as_user(&f, "alice");
        assert_eq!(
            error(f.apply_as(alice.clone(), Q::LeaseRevoke(LeaseRevokeRequest { id: 7 }))),
            EtcdError::PermissionDenied
        );
        // A put to a key alice may write, with that lease: refused too (etcd's rule).
        let put = PutRequest {
            lease: 7,
            ..put_req("k1", "v")
        };
        assert_eq!(
            error(f.apply_as(alice, Q::Put(put))),
            EtcdError::PermissionDenied
        );
    }

    #[test]
    fn managing_users_and_roles_needs_the_root_role() {
        let f = with_auth();
        let alice = as_user(&f, "alice");
        assert_eq!(
            error(f.apply_as(alice, user_add("bob"))),
            EtcdError::PermissionDenied
        );
        let nobody = Some(Caller {
            user: "ghost".into(),
            auth_revision: f.auth.revision(),
        });
        assert_eq!(
            error(f.apply_as(nobody, user_add("bob"))),
            EtcdError::UserNotFound
        );
        let root = as_user(&f, "root");
        assert_eq!(
            error(f.apply_as(
                root.clone(),
                Q::UserRevokeRole(AuthUserRevokeRoleRequest {
                    name: "root".into(),
                    role: "root".into()
                })
            )),
            EtcdError::InvalidAuthMgmt
        );
        assert_eq!(
            error(f.apply_as(
                root.clone(),
                Q::RoleDelete(AuthRoleDeleteRequest {
                    role: "root".into()
                })
            )),
            EtcdError::InvalidAuthMgmt
        );
        assert_eq!(
            error(f.apply_as(root.clone(), user_add(""))),
            EtcdError::UserEmpty
        );
        assert_eq!(
            error(f.apply_as(root.clone(), user_add("alice"))),
            EtcdError::UserAlreadyExist
        );
        // Deleting a role takes it from its users.
        applied(f.apply_as(
            root,
            Q::RoleDelete(AuthRoleDeleteRequest { role: "r".into() }),
        ));
        assert!(f.auth.user_roles("alice").unwrap().is_empty());
    }

    #[test]
    fn authenticate_issues_a_simple_token_named_after_its_entry() {
        let f = with_auth();
        let a = applied(f.apply_as(
            Some(Caller::default()),
            Q::Authenticate(Authenticate {
                name: "alice".into(),
                token_prefix: "abcdefghijklmnop".into(),
            }),
        ));
        assert_eq!(a.simple_token, "abcdefghijklmnop.1");
        let who = f.auth.tokens().identify(&a.simple_token).unwrap();
        assert_eq!(who.user, "alice");
        assert_eq!(f.auth.check_password("alice", "pw"), Ok(f.auth.revision()));
        assert_eq!(
            f.auth.check_password("alice", "wrong"),
            Err(EtcdError::AuthFailed)
        );
        assert_eq!(
            f.auth.check_password("ghost", "pw"),
            Err(EtcdError::AuthFailed)
        );
    }
}
