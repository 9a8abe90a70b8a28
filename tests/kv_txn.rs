//! Txn semantics, checked against etcd 3.4.

mod common;

use common::{assert_grpc_error, current_revision, rev, Code, TestServer};
use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, GetResponse, PutOptions, Txn, TxnOp,
    TxnOpResponse, TxnResponse,
};

async fn fresh() -> (TestServer, Client) {
    let server = TestServer::start(&[]);
    let client = server.client().await;
    (server, client)
}

/// Runs a txn with the given compares and no operations; returns `succeeded`.
async fn holds(c: &mut Client, compares: Vec<Compare>) -> bool {
    let resp = c.txn(Txn::new().when(compares)).await.unwrap();
    resp.succeeded()
}

async fn get_value(c: &mut Client, key: &str) -> Option<Vec<u8>> {
    let resp = c.get(key, None).await.unwrap();
    resp.kvs().first().map(|kv| kv.value().to_vec())
}

fn range_resp(op: &TxnOpResponse) -> &GetResponse {
    match op {
        TxnOpResponse::Get(r) => r,
        other => panic!("expected a range response, got {other:?}"),
    }
}

fn values(resp: &GetResponse) -> Vec<String> {
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .collect()
}

fn txn_revision(resp: &TxnResponse) -> i64 {
    rev(resp.header())
}

/// k = "b" at create 2; other = "x" at 3; k = "b" again at 4 (version 2, mod 4).
async fn with_compare_layout() -> (TestServer, Client) {
    let (s, mut c) = fresh().await;
    c.put("k", "b", None).await.unwrap(); // 2
    c.put("other", "x", None).await.unwrap(); // 3
    c.put("k", "b", None).await.unwrap(); // 4
    (s, c)
}

#[tokio::test]
async fn txn_compare_value() {
    let (_s, mut c) = with_compare_layout().await;
    let cases = [
        (CompareOp::Equal, "b", true),
        (CompareOp::Equal, "a", false),
        (CompareOp::NotEqual, "a", true),
        (CompareOp::NotEqual, "b", false),
        (CompareOp::Greater, "a", true),
        (CompareOp::Greater, "b", false),
        (CompareOp::Greater, "ba", false),
        (CompareOp::Less, "ba", true),
        (CompareOp::Less, "c", true),
        (CompareOp::Less, "b", false),
        (CompareOp::Less, "a", false),
    ];
    for (op, v, want) in cases {
        let got = holds(&mut c, vec![Compare::value("k", op, v)]).await;
        assert_eq!(got, want, "value(k) {op:?} {v:?}");
    }
}

#[tokio::test]
async fn txn_compare_version() {
    let (_s, mut c) = with_compare_layout().await;
    let cases = [
        (CompareOp::Equal, 2, true),
        (CompareOp::Equal, 1, false),
        (CompareOp::NotEqual, 1, true),
        (CompareOp::NotEqual, 2, false),
        (CompareOp::Greater, 1, true),
        (CompareOp::Greater, 2, false),
        (CompareOp::Less, 3, true),
        (CompareOp::Less, 2, false),
    ];
    for (op, v, want) in cases {
        let got = holds(&mut c, vec![Compare::version("k", op, v)]).await;
        assert_eq!(got, want, "version(k) {op:?} {v}");
    }
}

#[tokio::test]
async fn txn_compare_create_revision() {
    let (_s, mut c) = with_compare_layout().await;
    let cases = [
        (CompareOp::Equal, 2, true),
        (CompareOp::Equal, 4, false),
        (CompareOp::NotEqual, 4, true),
        (CompareOp::NotEqual, 2, false),
        (CompareOp::Greater, 1, true),
        (CompareOp::Greater, 2, false),
        (CompareOp::Less, 3, true),
        (CompareOp::Less, 2, false),
    ];
    for (op, v, want) in cases {
        let got = holds(&mut c, vec![Compare::create_revision("k", op, v)]).await;
        assert_eq!(got, want, "create(k) {op:?} {v}");
    }
}

#[tokio::test]
async fn txn_compare_mod_revision() {
    let (_s, mut c) = with_compare_layout().await;
    let cases = [
        (CompareOp::Equal, 4, true),
        (CompareOp::Equal, 2, false),
        (CompareOp::NotEqual, 2, true),
        (CompareOp::NotEqual, 4, false),
        (CompareOp::Greater, 3, true),
        (CompareOp::Greater, 4, false),
        (CompareOp::Less, 5, true),
        (CompareOp::Less, 4, false),
    ];
    for (op, v, want) in cases {
        let got = holds(&mut c, vec![Compare::mod_revision("k", op, v)]).await;
        assert_eq!(got, want, "mod(k) {op:?} {v}");
    }
}

#[tokio::test]
async fn txn_compare_lease() {
    let (_s, mut c) = fresh().await;
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("leased", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    c.put("plain", "v", None).await.unwrap();
    let cases = [
        ("leased", CompareOp::Equal, lease, true),
        ("leased", CompareOp::Equal, 0, false),
        ("leased", CompareOp::NotEqual, 0, true),
        ("leased", CompareOp::Greater, lease - 1, true),
        ("leased", CompareOp::Greater, lease, false),
        ("leased", CompareOp::Less, lease + 1, true),
        ("leased", CompareOp::Less, lease, false),
        ("plain", CompareOp::Equal, 0, true),
        ("plain", CompareOp::NotEqual, lease, true),
        ("plain", CompareOp::Less, lease, true),
    ];
    for (key, op, v, want) in cases {
        let got = holds(&mut c, vec![Compare::lease(key, op, v)]).await;
        assert_eq!(got, want, "lease({key}) {op:?} {v}");
    }
}

#[tokio::test]
async fn txn_compare_on_missing_key_uses_zero_metadata() {
    let (_s, mut c) = fresh().await;
    c.put("present", "v", None).await.unwrap();
    let cases = [
        (Compare::version("missing", CompareOp::Equal, 0), true),
        (Compare::version("missing", CompareOp::Greater, 0), false),
        (Compare::version("missing", CompareOp::Less, 1), true),
        (
            Compare::create_revision("missing", CompareOp::Equal, 0),
            true,
        ),
        (Compare::mod_revision("missing", CompareOp::Equal, 0), true),
        (
            Compare::mod_revision("missing", CompareOp::NotEqual, 0),
            false,
        ),
        (Compare::lease("missing", CompareOp::Equal, 0), true),
    ];
    for (i, (cmp, want)) in cases.into_iter().enumerate() {
        assert_eq!(holds(&mut c, vec![cmp]).await, want, "case {i}");
    }
}

#[tokio::test]
async fn txn_value_compare_on_missing_key_is_always_false() {
    let (_s, mut c) = fresh().await;
    for op in [
        CompareOp::Equal,
        CompareOp::NotEqual,
        CompareOp::Greater,
        CompareOp::Less,
    ] {
        for v in ["", "x"] {
            let got = holds(&mut c, vec![Compare::value("missing", op, v)]).await;
            assert!(!got, "value(missing) {op:?} {v:?} must be false");
        }
    }
}

#[tokio::test]
async fn txn_compare_with_range_requires_every_key_to_match() {
    let (_s, mut c) = fresh().await;
    c.put("r/1", "1", None).await.unwrap(); // 2
    c.put("r/2", "1", None).await.unwrap(); // 3
    c.put("r/3", "2", None).await.unwrap(); // 4
    c.put("s", "1", None).await.unwrap(); // 5

    let eq1 = |key: &str| Compare::value(key, CompareOp::Equal, "1");
    assert!(!holds(&mut c, vec![eq1("r/").with_prefix()]).await);
    assert!(holds(&mut c, vec![eq1("r/1").with_range("r/3")]).await);
    assert!(!holds(&mut c, vec![eq1("r/1").with_range("r/4")]).await);
    assert!(
        holds(
            &mut c,
            vec![Compare::version("r/", CompareOp::Equal, 1).with_prefix()]
        )
        .await
    );
    assert!(
        holds(
            &mut c,
            vec![Compare::mod_revision("r/", CompareOp::Less, 5).with_prefix()]
        )
        .await
    );
    assert!(
        !holds(
            &mut c,
            vec![Compare::mod_revision("r/", CompareOp::Less, 4).with_prefix()]
        )
        .await
    );
    // From-key range ("\0" end) covers r/* and s.
    assert!(
        holds(
            &mut c,
            vec![Compare::create_revision("r/", CompareOp::Greater, 1).with_range(vec![0u8])]
        )
        .await
    );
    assert!(
        !holds(
            &mut c,
            vec![Compare::create_revision("r/", CompareOp::Less, 5).with_range(vec![0u8])]
        )
        .await
    );
}

#[tokio::test]
async fn txn_compare_with_empty_range_behaves_like_missing_key() {
    let (_s, mut c) = fresh().await;
    c.put("a", "1", None).await.unwrap();
    assert!(
        holds(
            &mut c,
            vec![Compare::version("x/", CompareOp::Equal, 0).with_prefix()]
        )
        .await
    );
    assert!(
        !holds(
            &mut c,
            vec![Compare::value("x/", CompareOp::NotEqual, "1").with_prefix()]
        )
        .await
    );
}

#[tokio::test]
async fn txn_multiple_compares_must_all_hold() {
    let (_s, mut c) = with_compare_layout().await;
    let v = |val: &str| Compare::value("k", CompareOp::Equal, val);
    let ver = |n: i64| Compare::version("k", CompareOp::Equal, n);
    assert!(holds(&mut c, vec![v("b"), ver(2)]).await);
    assert!(!holds(&mut c, vec![v("b"), ver(3)]).await);
    assert!(!holds(&mut c, vec![v("z"), ver(2)]).await);
}

#[tokio::test]
async fn txn_without_compares_succeeds() {
    let (_s, mut c) = fresh().await;
    let resp = c
        .txn(Txn::new().and_then(vec![TxnOp::put("a", "1", None)]))
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(txn_revision(&resp), 2);
    assert_eq!(get_value(&mut c, "a").await.unwrap(), b"1");
}

#[tokio::test]
async fn txn_success_branch_runs_put_get_delete() {
    let (_s, mut c) = with_compare_layout().await;
    let resp = c
        .txn(
            Txn::new()
                .when(vec![Compare::value("k", CompareOp::Equal, "b")])
                .and_then(vec![
                    TxnOp::put("new", "n", None),
                    TxnOp::get("k", None),
                    TxnOp::delete("other", Some(DeleteOptions::new().with_prev_key())),
                ])
                .or_else(vec![TxnOp::put("failed", "f", None)]),
        )
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(txn_revision(&resp), 5);
    let ops = resp.op_responses();
    assert_eq!(ops.len(), 3);
    assert!(matches!(ops[0], TxnOpResponse::Put(_)));
    assert_eq!(values(range_resp(&ops[1])), ["b"]);
    match &ops[2] {
        TxnOpResponse::Delete(d) => {
            assert_eq!(d.deleted(), 1);
            assert_eq!(d.prev_kvs().len(), 1);
            assert_eq!(d.prev_kvs()[0].value(), b"x");
        }
        other => panic!("expected delete response, got {other:?}"),
    }
    assert_eq!(get_value(&mut c, "new").await.unwrap(), b"n");
    assert_eq!(get_value(&mut c, "other").await, None);
    assert_eq!(get_value(&mut c, "failed").await, None);
}

#[tokio::test]
async fn txn_failure_branch_runs_when_compare_fails() {
    let (_s, mut c) = with_compare_layout().await;
    let resp = c
        .txn(
            Txn::new()
                .when(vec![Compare::value("k", CompareOp::Equal, "nope")])
                .and_then(vec![TxnOp::put("succeeded", "s", None)])
                .or_else(vec![
                    TxnOp::put("failed", "f", Some(PutOptions::new().with_prev_key())),
                    TxnOp::get("k", None),
                ]),
        )
        .await
        .unwrap();
    assert!(!resp.succeeded());
    assert_eq!(txn_revision(&resp), 5);
    let ops = resp.op_responses();
    assert_eq!(ops.len(), 2);
    match &ops[0] {
        TxnOpResponse::Put(p) => assert!(p.prev_key().is_none()),
        other => panic!("expected put response, got {other:?}"),
    }
    assert_eq!(values(range_resp(&ops[1])), ["b"]);
    assert_eq!(get_value(&mut c, "failed").await.unwrap(), b"f");
    assert_eq!(get_value(&mut c, "succeeded").await, None);
}

#[tokio::test]
async fn txn_failed_compare_with_empty_failure_branch_changes_nothing() {
    let (_s, mut c) = with_compare_layout().await;
    let resp = c
        .txn(
            Txn::new()
                .when(vec![Compare::version("k", CompareOp::Equal, 99)])
                .and_then(vec![TxnOp::put("k", "changed", None)]),
        )
        .await
        .unwrap();
    assert!(!resp.succeeded());
    assert!(resp.op_responses().is_empty());
    assert_eq!(txn_revision(&resp), 4);
    assert_eq!(get_value(&mut c, "k").await.unwrap(), b"b");
}

#[tokio::test]
async fn txn_compare_and_swap_on_mod_revision() {
    let (_s, mut c) = fresh().await;
    let r = rev(c.put("cas", "v1", None).await.unwrap().header());
    let swap = |expected: i64, new: &'static str| {
        Txn::new()
            .when(vec![Compare::mod_revision(
                "cas",
                CompareOp::Equal,
                expected,
            )])
            .and_then(vec![TxnOp::put("cas", new, None)])
    };
    let first = c.txn(swap(r, "v2")).await.unwrap();
    assert!(first.succeeded());
    let second = c.txn(swap(r, "v3")).await.unwrap();
    assert!(!second.succeeded());
    assert_eq!(get_value(&mut c, "cas").await.unwrap(), b"v2");
}

#[tokio::test]
async fn txn_nested_txn_runs_its_own_branch() {
    let (_s, mut c) = with_compare_layout().await;
    let inner = Txn::new()
        .when(vec![Compare::value("other", CompareOp::Equal, "nope")])
        .and_then(vec![TxnOp::put("inner-then", "t", None)])
        .or_else(vec![
            TxnOp::put("inner-else", "e", None),
            TxnOp::get("k", None),
        ]);
    let resp = c
        .txn(
            Txn::new()
                .when(vec![Compare::version("k", CompareOp::Equal, 2)])
                .and_then(vec![TxnOp::put("outer", "o", None), TxnOp::txn(inner)]),
        )
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(txn_revision(&resp), 5);
    let ops = resp.op_responses();
    assert_eq!(ops.len(), 2);
    match &ops[1] {
        TxnOpResponse::Txn(t) => {
            assert!(!t.succeeded());
            let inner_ops = t.op_responses();
            assert_eq!(inner_ops.len(), 2);
            assert!(matches!(inner_ops[0], TxnOpResponse::Put(_)));
            assert_eq!(values(range_resp(&inner_ops[1])), ["b"]);
        }
        other => panic!("expected nested txn response, got {other:?}"),
    }
    assert_eq!(get_value(&mut c, "outer").await.unwrap(), b"o");
    assert_eq!(get_value(&mut c, "inner-else").await.unwrap(), b"e");
    assert_eq!(get_value(&mut c, "inner-then").await, None);
    // Outer and nested writes share one revision.
    let kv = c.get("inner-else", None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.mod_revision(), 5);
    let kv = c.get("outer", None).await.unwrap().kvs()[0].clone();
    assert_eq!(kv.mod_revision(), 5);
}

#[tokio::test]
async fn txn_writes_share_one_revision() {
    let (_s, mut c) = with_compare_layout().await; // at 4
    let resp = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("a", "1", None),
            TxnOp::put("b", "2", None),
            TxnOp::put("k", "3", None),
            TxnOp::delete("other", None),
        ]))
        .await
        .unwrap();
    assert_eq!(txn_revision(&resp), 5);
    let all = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    let summary: Vec<(String, i64, i64, i64)> = all
        .kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a".to_string(), 5, 5, 1),
            ("b".to_string(), 5, 5, 1),
            ("k".to_string(), 2, 5, 3),
        ]
    );
    // At revision 4 the txn's effects are invisible.
    let old = c
        .get("other", Some(GetOptions::new().with_revision(4)))
        .await
        .unwrap();
    assert_eq!(old.kvs().len(), 1);
    assert_eq!(current_revision(&mut c).await, 5);
}

#[tokio::test]
async fn txn_range_sees_earlier_writes_of_same_txn() {
    let (_s, mut c) = with_compare_layout().await; // at 4
    let resp = c
        .txn(Txn::new().and_then(vec![
            TxnOp::get("k", None),
            TxnOp::put("k", "new", None),
            TxnOp::get("k", None),
            TxnOp::delete("other", None),
            TxnOp::get("other", None),
            TxnOp::put("fresh", "f", None),
            TxnOp::get("", Some(GetOptions::new().with_all_keys())),
        ]))
        .await
        .unwrap();
    let ops = resp.op_responses();
    assert_eq!(values(range_resp(&ops[0])), ["b"]);
    let after_put = range_resp(&ops[2]);
    assert_eq!(values(after_put), ["new"]);
    let kv = &after_put.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 5, 3)
    );
    assert!(range_resp(&ops[4]).kvs().is_empty());
    assert_eq!(range_resp(&ops[4]).count(), 0);
    let all = range_resp(&ops[6]);
    let keys: Vec<&[u8]> = all.kvs().iter().map(|kv| kv.key()).collect();
    assert_eq!(keys, vec![&b"fresh"[..], &b"k"[..]]);
    assert_eq!(all.count(), 2);
}

#[tokio::test]
async fn txn_inner_response_headers_carry_revision_as_of_that_op() {
    let (_s, mut c) = with_compare_layout().await; // at 4
    let resp = c
        .txn(Txn::new().and_then(vec![
            TxnOp::get("k", None),
            TxnOp::put("k", "new", None),
            TxnOp::get("k", None),
            TxnOp::delete("other", None),
        ]))
        .await
        .unwrap();
    assert_eq!(txn_revision(&resp), 5);
    let inner: Vec<i64> = resp
        .op_responses()
        .iter()
        .map(|op| match op {
            TxnOpResponse::Get(r) => rev(r.header()),
            TxnOpResponse::Put(r) => rev(r.header()),
            TxnOpResponse::Delete(r) => rev(r.header()),
            TxnOpResponse::Txn(r) => rev(r.header()),
        })
        .collect();
    assert_eq!(inner, vec![4, 5, 5, 5]);
}

#[tokio::test]
async fn txn_with_only_reads_does_not_bump_revision() {
    let (_s, mut c) = with_compare_layout().await; // at 4
    let resp = c
        .txn(
            Txn::new()
                .when(vec![Compare::version("k", CompareOp::Equal, 2)])
                .and_then(vec![TxnOp::get("k", None), TxnOp::get("other", None)]),
        )
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(txn_revision(&resp), 4);
    assert_eq!(current_revision(&mut c).await, 4);
    let resp = c.put("next", "n", None).await.unwrap();
    assert_eq!(rev(resp.header()), 5);
}

#[tokio::test]
async fn txn_deleting_only_missing_keys_does_not_bump_revision() {
    let (_s, mut c) = with_compare_layout().await; // at 4
    let resp = c
        .txn(Txn::new().and_then(vec![
            TxnOp::delete("missing", None),
            TxnOp::delete("gone/", Some(DeleteOptions::new().with_prefix())),
        ]))
        .await
        .unwrap();
    assert_eq!(txn_revision(&resp), 4);
    for op in resp.op_responses() {
        match op {
            TxnOpResponse::Delete(d) => assert_eq!(d.deleted(), 0),
            other => panic!("expected delete response, got {other:?}"),
        }
    }
    assert_eq!(current_revision(&mut c).await, 4);
}

#[tokio::test]
async fn empty_txn_succeeds_without_changes() {
    let (_s, mut c) = with_compare_layout().await;
    let resp = c.txn(Txn::new()).await.unwrap();
    assert!(resp.succeeded());
    assert!(resp.op_responses().is_empty());
    assert_eq!(txn_revision(&resp), 4);
}

#[tokio::test]
async fn txn_with_too_many_operations_is_rejected() {
    let server = TestServer::start(&["--max-txn-ops", "3"]);
    let mut c = server.client().await;
    let puts = |n: usize, prefix: &str| -> Vec<TxnOp> {
        (0..n)
            .map(|i| TxnOp::put(format!("{prefix}{i}"), "v", None))
            .collect()
    };
    let msg = "etcdserver: too many operations in txn request";

    let r = c.txn(Txn::new().and_then(puts(4, "s"))).await;
    assert_grpc_error(r, Code::InvalidArgument, msg);

    let r = c.txn(Txn::new().or_else(puts(4, "f"))).await;
    assert_grpc_error(r, Code::InvalidArgument, msg);

    let compares: Vec<Compare> = (0..4)
        .map(|i| Compare::version(format!("c{i}"), CompareOp::Equal, 0))
        .collect();
    let r = c.txn(Txn::new().when(compares)).await;
    assert_grpc_error(r, Code::InvalidArgument, msg);

    // Nothing was applied.
    assert_eq!(current_revision(&mut c).await, 1);

    // The limit is per list: 3 compares, 3 success and 3 failure ops are fine.
    let compares: Vec<Compare> = (0..3)
        .map(|i| Compare::version(format!("c{i}"), CompareOp::Equal, 0))
        .collect();
    let resp = c
        .txn(
            Txn::new()
                .when(compares)
                .and_then(puts(3, "s"))
                .or_else(puts(3, "f")),
        )
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(txn_revision(&resp), 2);
}

/// In etcd 3.4 a nested txn may hold at most `max-txn-ops` minus the size of the
/// largest list (compares, success, failure) of the txn that contains it.
#[tokio::test]
async fn txn_nested_ops_share_the_operation_budget_of_the_outer_txn() {
    let server = TestServer::start(&["--max-txn-ops", "3"]);
    let mut c = server.client().await;
    let msg = "etcdserver: too many operations in txn request";
    let inner = |p: &str, n: usize| {
        Txn::new().and_then(
            (0..n)
                .map(|i| TxnOp::put(format!("{p}{i}"), "v", None))
                .collect::<Vec<_>>(),
        )
    };

    // Outer list of 1 leaves room for 2 nested ops.
    let resp = c
        .txn(Txn::new().and_then(vec![TxnOp::txn(inner("a", 2))]))
        .await
        .unwrap();
    assert!(resp.succeeded());
    let r = c
        .txn(Txn::new().and_then(vec![TxnOp::txn(inner("b", 3))]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, msg);

    // Outer list of 2 leaves room for 1 nested op in each nested txn.
    let resp = c
        .txn(Txn::new().and_then(vec![TxnOp::txn(inner("c", 1)), TxnOp::txn(inner("d", 1))]))
        .await
        .unwrap();
    assert!(resp.succeeded());
    let r = c
        .txn(Txn::new().and_then(vec![TxnOp::put("e", "v", None), TxnOp::txn(inner("f", 2))]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, msg);

    // Outer list of 3 leaves no room at all.
    let r = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("g1", "v", None),
            TxnOp::put("g2", "v", None),
            TxnOp::txn(inner("h", 1)),
        ]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, msg);

    // Compares count towards the outer size too.
    let r = c
        .txn(
            Txn::new()
                .when(vec![
                    Compare::version("x", CompareOp::Equal, 0),
                    Compare::version("y", CompareOp::Equal, 0),
                ])
                .and_then(vec![TxnOp::txn(inner("i", 2))]),
        )
        .await;
    assert_grpc_error(r, Code::InvalidArgument, msg);

    let all = c
        .get(
            "",
            Some(GetOptions::new().with_all_keys().with_count_only()),
        )
        .await
        .unwrap();
    assert_eq!(all.count(), 4, "only a0, a1, c0, d0 were written");
}

#[tokio::test]
async fn txn_default_operation_limit_is_128() {
    let (_s, mut c) = fresh().await;
    let puts = |n: usize| -> Vec<TxnOp> {
        (0..n)
            .map(|i| TxnOp::put(format!("k{i:03}"), "v", None))
            .collect()
    };
    let r = c.txn(Txn::new().and_then(puts(129))).await;
    assert_grpc_error(
        r,
        Code::InvalidArgument,
        "etcdserver: too many operations in txn request",
    );
    let resp = c.txn(Txn::new().and_then(puts(128))).await.unwrap();
    assert_eq!(txn_revision(&resp), 2);
}

const DUPLICATE: &str = "etcdserver: duplicate key given in txn request";

#[tokio::test]
async fn txn_duplicate_put_keys_are_rejected() {
    let (_s, mut c) = fresh().await;
    let r = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("dup", "1", None),
            TxnOp::put("other", "x", None),
            TxnOp::put("dup", "2", None),
        ]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, DUPLICATE);
    assert_eq!(current_revision(&mut c).await, 1);

    let r = c
        .txn(Txn::new().or_else(vec![
            TxnOp::put("dup", "1", None),
            TxnOp::put("dup", "2", None),
        ]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, DUPLICATE);
}

#[tokio::test]
async fn txn_put_and_overlapping_delete_are_rejected() {
    let (_s, mut c) = fresh().await;
    let r = c
        .txn(Txn::new().and_then(vec![TxnOp::put("k", "1", None), TxnOp::delete("k", None)]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, DUPLICATE);

    let r = c
        .txn(Txn::new().and_then(vec![TxnOp::delete("k", None), TxnOp::put("k", "1", None)]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, DUPLICATE);

    let r = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("dir/k", "1", None),
            TxnOp::delete("dir/", Some(DeleteOptions::new().with_prefix())),
        ]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, DUPLICATE);

    let r = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("m", "1", None),
            TxnOp::delete("a", Some(DeleteOptions::new().with_range("z"))),
        ]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, DUPLICATE);
    assert_eq!(current_revision(&mut c).await, 1);
}

#[tokio::test]
async fn txn_put_outside_delete_range_is_allowed() {
    let (_s, mut c) = fresh().await;
    c.put("m", "old", None).await.unwrap(); // 2
    let resp = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("z", "1", None),
            TxnOp::delete("a", Some(DeleteOptions::new().with_range("z"))),
        ]))
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(get_value(&mut c, "z").await.unwrap(), b"1");
    assert_eq!(get_value(&mut c, "m").await, None);
}

#[tokio::test]
async fn txn_duplicate_deletes_are_allowed() {
    let (_s, mut c) = fresh().await;
    c.put("k", "v", None).await.unwrap(); // 2
    let resp = c
        .txn(Txn::new().and_then(vec![TxnOp::delete("k", None), TxnOp::delete("k", None)]))
        .await
        .unwrap();
    assert_eq!(txn_revision(&resp), 3);
    let deleted: Vec<i64> = resp
        .op_responses()
        .iter()
        .map(|op| match op {
            TxnOpResponse::Delete(d) => d.deleted(),
            other => panic!("expected delete response, got {other:?}"),
        })
        .collect();
    assert_eq!(deleted, vec![1, 0]);
}

#[tokio::test]
async fn txn_same_key_in_success_and_failure_is_allowed() {
    let (_s, mut c) = fresh().await;
    let resp = c
        .txn(
            Txn::new()
                .when(vec![Compare::version("k", CompareOp::Equal, 0)])
                .and_then(vec![TxnOp::put("k", "then", None)])
                .or_else(vec![TxnOp::put("k", "else", None)]),
        )
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(get_value(&mut c, "k").await.unwrap(), b"then");
}

#[tokio::test]
async fn txn_put_in_nested_txn_duplicating_outer_put_is_rejected() {
    let (_s, mut c) = fresh().await;
    let inner = Txn::new().and_then(vec![TxnOp::put("k", "inner", None)]);
    let r = c
        .txn(Txn::new().and_then(vec![TxnOp::put("k", "outer", None), TxnOp::txn(inner)]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, DUPLICATE);

    // A nested put under an outer delete is a duplicate too.
    let inner = Txn::new().and_then(vec![TxnOp::put("k", "inner", None)]);
    let r = c
        .txn(Txn::new().and_then(vec![TxnOp::delete("k", None), TxnOp::txn(inner)]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, DUPLICATE);

    // The nested txn may put the same key in both of its branches.
    let inner = Txn::new()
        .and_then(vec![TxnOp::put("k", "then", None)])
        .or_else(vec![TxnOp::put("k", "else", None)]);
    let resp = c
        .txn(Txn::new().and_then(vec![TxnOp::txn(inner)]))
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(get_value(&mut c, "k").await.unwrap(), b"then");
}

#[tokio::test]
async fn txn_put_with_unknown_lease_is_not_found_and_applies_nothing() {
    let (_s, mut c) = fresh().await;
    let r = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("a", "1", None),
            TxnOp::put("b", "2", Some(PutOptions::new().with_lease(0x7777))),
        ]))
        .await;
    assert_grpc_error(r, Code::NotFound, "etcdserver: requested lease not found");
    assert_eq!(get_value(&mut c, "a").await, None);
    assert_eq!(current_revision(&mut c).await, 1);
}

#[tokio::test]
async fn txn_unknown_lease_in_branch_not_taken_is_ignored() {
    let (_s, mut c) = fresh().await;
    let resp = c
        .txn(
            Txn::new()
                .when(vec![Compare::version("k", CompareOp::Equal, 0)])
                .and_then(vec![TxnOp::put("a", "1", None)])
                .or_else(vec![TxnOp::put(
                    "b",
                    "2",
                    Some(PutOptions::new().with_lease(0x7777)),
                )]),
        )
        .await
        .unwrap();
    assert!(resp.succeeded());
    assert_eq!(get_value(&mut c, "a").await.unwrap(), b"1");
}

#[tokio::test]
async fn txn_range_at_compacted_revision_is_out_of_range() {
    let (_s, mut c) = with_compare_layout().await; // at 4
    c.compact(3, None).await.unwrap();
    let r = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("a", "1", None),
            TxnOp::get("k", Some(GetOptions::new().with_revision(2))),
        ]))
        .await;
    assert_grpc_error(
        r,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_eq!(get_value(&mut c, "a").await, None);
    assert_eq!(current_revision(&mut c).await, 4);

    // Exactly at the compact revision works.
    let resp = c
        .txn(Txn::new().and_then(vec![TxnOp::get(
            "other",
            Some(GetOptions::new().with_revision(3)),
        )]))
        .await
        .unwrap();
    assert_eq!(values(range_resp(&resp.op_responses()[0])), ["x"]);
}

#[tokio::test]
async fn txn_range_at_future_revision_is_out_of_range() {
    let (_s, mut c) = with_compare_layout().await; // at 4
    let r = c
        .txn(Txn::new().and_then(vec![TxnOp::get(
            "k",
            Some(GetOptions::new().with_revision(5)),
        )]))
        .await;
    assert_grpc_error(
        r,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
}

#[tokio::test]
async fn txn_with_empty_key_is_key_not_provided() {
    let (_s, mut c) = fresh().await;
    let r = c
        .txn(Txn::new().and_then(vec![TxnOp::put("", "v", None)]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: key is not provided");
    let r = c.txn(Txn::new().or_else(vec![TxnOp::get("", None)])).await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: key is not provided");
    let r = c
        .txn(Txn::new().and_then(vec![TxnOp::delete("", None)]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: key is not provided");
}

#[tokio::test]
async fn read_only_txn_needs_no_raft_entry() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    c.put("a", "1", None).await.unwrap();
    let before = c.status().await.unwrap().raft_index();
    let txn = Txn::new()
        .when([Compare::value("a", CompareOp::Equal, "1")])
        .and_then([TxnOp::get("a", None)])
        .or_else([TxnOp::get("b", None)]);
    let resp = c.txn(txn).await.unwrap();
    assert!(resp.succeeded());
    let after = c.status().await.unwrap().raft_index();
    assert_eq!(before, after, "a read-only txn appended to the Raft log");
}
