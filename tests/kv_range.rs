//! Range (get) semantics, checked against etcd 3.4.

mod common;

use common::{assert_grpc_error, rev, Code, TestServer};
use etcd_client::{Client, GetOptions, GetResponse, SortOrder, SortTarget};

async fn fresh() -> (TestServer, Client) {
    let server = TestServer::start(&[]);
    let client = server.client().await;
    (server, client)
}

fn keys(resp: &GetResponse) -> Vec<String> {
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

fn values(resp: &GetResponse) -> Vec<String> {
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
        .collect()
}

async fn put_all(c: &mut Client, kvs: &[(&str, &str)]) {
    for (k, v) in kvs {
        c.put(*k, *v, None).await.unwrap();
    }
}

/// Eight keys put at revisions 2..=9 in this order.
const LAYOUT: [&str; 8] = ["a", "b", "c", "foo", "foo/1", "foo/2", "fop", "z"];

async fn with_layout() -> (TestServer, Client) {
    let (s, mut c) = fresh().await;
    for k in LAYOUT {
        c.put(k, format!("v-{k}"), None).await.unwrap();
    }
    (s, c)
}

/// Three keys whose orders differ for every sort target:
/// k1: create 3, mod 7, version 2, value "c2"
/// k2: create 4, mod 4, version 1, value "b"
/// k3: create 2, mod 6, version 3, value "a3"
async fn with_sort_layout() -> (TestServer, Client) {
    let (s, mut c) = fresh().await;
    put_all(
        &mut c,
        &[
            ("k3", "a1"), // 2
            ("k1", "c1"), // 3
            ("k2", "b"),  // 4
            ("k3", "a2"), // 5
            ("k3", "a3"), // 6
            ("k1", "c2"), // 7
        ],
    )
    .await;
    (s, c)
}

async fn sorted(c: &mut Client, target: SortTarget, order: SortOrder) -> Vec<String> {
    let resp = c
        .get(
            "k",
            Some(GetOptions::new().with_prefix().with_sort(target, order)),
        )
        .await
        .unwrap();
    assert_eq!(resp.count(), 3);
    keys(&resp)
}

#[tokio::test]
async fn range_single_key_returns_only_that_key() {
    let (_s, mut c) = with_layout().await;
    let resp = c.get("foo", None).await.unwrap();
    assert_eq!(keys(&resp), ["foo"]);
    assert_eq!(values(&resp), ["v-foo"]);
    assert_eq!(resp.count(), 1);
    assert!(!resp.more());
    assert_eq!(rev(resp.header()), 9);
    let kv = &resp.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (5, 5, 1)
    );
}

#[tokio::test]
async fn range_missing_key_returns_nothing() {
    let (_s, mut c) = with_layout().await;
    let resp = c.get("fo", None).await.unwrap();
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 0);
    assert!(!resp.more());
    assert_eq!(rev(resp.header()), 9);
}

#[tokio::test]
async fn range_prefix_returns_keys_with_prefix_in_key_order() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("foo", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["foo", "foo/1", "foo/2"]);
    assert_eq!(resp.count(), 3);
    assert!(!resp.more());
}

#[tokio::test]
async fn range_prefix_of_0xff_key_extends_to_end_of_keyspace() {
    let (_s, mut c) = fresh().await;
    c.put(vec![0xfeu8], "1", None).await.unwrap();
    c.put(vec![0xffu8], "2", None).await.unwrap();
    c.put(vec![0xffu8, 0x00], "3", None).await.unwrap();
    c.put(vec![0xffu8, 0xff], "4", None).await.unwrap();
    let resp = c
        .get(vec![0xffu8], Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let got: Vec<Vec<u8>> = resp.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    assert_eq!(got, vec![vec![0xffu8], vec![0xff, 0x00], vec![0xff, 0xff]]);
}

#[tokio::test]
async fn range_from_key_returns_keys_at_or_after_key() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("foo/1", Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["foo/1", "foo/2", "fop", "z"]);
    assert_eq!(resp.count(), 4);
}

#[tokio::test]
async fn range_from_key_with_explicit_nul_range_end() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("fop", Some(GetOptions::new().with_range(vec![0u8])))
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["fop", "z"]);
}

#[tokio::test]
async fn range_all_keys_returns_everything_in_key_order() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys(&resp), LAYOUT);
    assert_eq!(resp.count(), 8);
    assert!(!resp.more());
}

#[tokio::test]
async fn range_nul_key_with_nul_range_end_returns_everything() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get(vec![0u8], Some(GetOptions::new().with_range(vec![0u8])))
        .await
        .unwrap();
    assert_eq!(keys(&resp), LAYOUT);
}

#[tokio::test]
async fn range_end_is_exclusive() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("b", Some(GetOptions::new().with_range("foo/1")))
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["b", "c", "foo"]);
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn range_end_equal_to_key_returns_nothing() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("foo", Some(GetOptions::new().with_range("foo")))
        .await
        .unwrap();
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 0);
}

#[tokio::test]
async fn range_end_before_key_returns_nothing() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("z", Some(GetOptions::new().with_range("a")))
        .await
        .unwrap();
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 0);
    assert!(!resp.more());
}

#[tokio::test]
async fn range_limit_sets_more_and_count_is_total() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys().with_limit(3)))
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["a", "b", "c"]);
    assert!(resp.more());
    assert_eq!(resp.count(), 8);
}

#[tokio::test]
async fn range_limit_equal_to_count_has_no_more() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys().with_limit(8)))
        .await
        .unwrap();
    assert_eq!(resp.kvs().len(), 8);
    assert!(!resp.more());
    assert_eq!(resp.count(), 8);

    let resp = c
        .get("", Some(GetOptions::new().with_all_keys().with_limit(7)))
        .await
        .unwrap();
    assert_eq!(resp.kvs().len(), 7);
    assert!(resp.more());
}

#[tokio::test]
async fn range_limit_larger_than_count_has_no_more() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("foo", Some(GetOptions::new().with_prefix().with_limit(100)))
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["foo", "foo/1", "foo/2"]);
    assert!(!resp.more());
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn range_at_revision_reads_older_values() {
    let (_s, mut c) = fresh().await;
    c.put("k", "v1", None).await.unwrap(); // 2
    c.put("k", "v2", None).await.unwrap(); // 3
    c.delete("k", None).await.unwrap(); // 4
    c.put("k", "v3", None).await.unwrap(); // 5
    c.put("other", "x", None).await.unwrap(); // 6

    let at = |r: i64| GetOptions::new().with_revision(r);

    let resp = c.get("k", Some(at(2))).await.unwrap();
    assert_eq!(values(&resp), ["v1"]);
    let kv = &resp.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 2, 1)
    );
    // The header carries the current revision, not the requested one.
    assert_eq!(rev(resp.header()), 6);

    let resp = c.get("k", Some(at(3))).await.unwrap();
    assert_eq!(values(&resp), ["v2"]);
    let kv = &resp.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 3, 2)
    );

    let resp = c.get("k", Some(at(4))).await.unwrap();
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 0);

    let resp = c.get("k", Some(at(5))).await.unwrap();
    assert_eq!(values(&resp), ["v3"]);
    let kv = &resp.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (5, 5, 1)
    );

    // Revision 1: nothing existed yet.
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys().with_revision(1)))
        .await
        .unwrap();
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 0);
}

#[tokio::test]
async fn range_prefix_at_revision_counts_keys_at_that_revision() {
    let (_s, mut c) = with_layout().await; // a..z at 2..=9
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys().with_revision(4)))
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["a", "b", "c"]);
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn range_at_current_revision_works() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get("z", Some(GetOptions::new().with_revision(9)))
        .await
        .unwrap();
    assert_eq!(values(&resp), ["v-z"]);
}

#[tokio::test]
async fn range_at_future_revision_is_out_of_range() {
    let (_s, mut c) = with_layout().await;
    let r = c.get("a", Some(GetOptions::new().with_revision(10))).await;
    assert_grpc_error(
        r,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
}

#[tokio::test]
async fn range_at_compacted_revision_is_out_of_range() {
    let (_s, mut c) = with_layout().await;
    c.compact(5, None).await.unwrap();
    let r = c.get("a", Some(GetOptions::new().with_revision(4))).await;
    assert_grpc_error(
        r,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    let r = c.get("a", Some(GetOptions::new().with_revision(1))).await;
    assert_grpc_error(
        r,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
}

#[tokio::test]
async fn range_exactly_at_compacted_revision_works() {
    let (_s, mut c) = with_layout().await;
    c.compact(5, None).await.unwrap();
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys().with_revision(5)))
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["a", "b", "c", "foo"]);
    assert_eq!(resp.count(), 4);
}

#[tokio::test]
async fn range_sort_by_key() {
    let (_s, mut c) = with_sort_layout().await;
    assert_eq!(
        sorted(&mut c, SortTarget::Key, SortOrder::Ascend).await,
        ["k1", "k2", "k3"]
    );
    assert_eq!(
        sorted(&mut c, SortTarget::Key, SortOrder::Descend).await,
        ["k3", "k2", "k1"]
    );
    assert_eq!(
        sorted(&mut c, SortTarget::Key, SortOrder::None).await,
        ["k1", "k2", "k3"]
    );
}

#[tokio::test]
async fn range_sort_by_version() {
    let (_s, mut c) = with_sort_layout().await;
    assert_eq!(
        sorted(&mut c, SortTarget::Version, SortOrder::Ascend).await,
        ["k2", "k1", "k3"]
    );
    assert_eq!(
        sorted(&mut c, SortTarget::Version, SortOrder::Descend).await,
        ["k3", "k1", "k2"]
    );
}

#[tokio::test]
async fn range_sort_by_create_revision() {
    let (_s, mut c) = with_sort_layout().await;
    assert_eq!(
        sorted(&mut c, SortTarget::Create, SortOrder::Ascend).await,
        ["k3", "k1", "k2"]
    );
    assert_eq!(
        sorted(&mut c, SortTarget::Create, SortOrder::Descend).await,
        ["k2", "k1", "k3"]
    );
}

#[tokio::test]
async fn range_sort_by_mod_revision() {
    let (_s, mut c) = with_sort_layout().await;
    assert_eq!(
        sorted(&mut c, SortTarget::Mod, SortOrder::Ascend).await,
        ["k2", "k3", "k1"]
    );
    assert_eq!(
        sorted(&mut c, SortTarget::Mod, SortOrder::Descend).await,
        ["k1", "k3", "k2"]
    );
}

#[tokio::test]
async fn range_sort_by_value() {
    let (_s, mut c) = with_sort_layout().await;
    assert_eq!(
        sorted(&mut c, SortTarget::Value, SortOrder::Ascend).await,
        ["k3", "k2", "k1"]
    );
    assert_eq!(
        sorted(&mut c, SortTarget::Value, SortOrder::Descend).await,
        ["k1", "k2", "k3"]
    );
}

#[tokio::test]
async fn range_sort_order_none_with_non_key_target_sorts_ascending() {
    let (_s, mut c) = with_sort_layout().await;
    assert_eq!(
        sorted(&mut c, SortTarget::Version, SortOrder::None).await,
        ["k2", "k1", "k3"]
    );
    assert_eq!(
        sorted(&mut c, SortTarget::Create, SortOrder::None).await,
        ["k3", "k1", "k2"]
    );
    assert_eq!(
        sorted(&mut c, SortTarget::Mod, SortOrder::None).await,
        ["k2", "k3", "k1"]
    );
    assert_eq!(
        sorted(&mut c, SortTarget::Value, SortOrder::None).await,
        ["k3", "k2", "k1"]
    );
}

#[tokio::test]
async fn range_sort_is_applied_before_limit() {
    let (_s, mut c) = with_sort_layout().await;
    let resp = c
        .get(
            "k",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Mod, SortOrder::Descend)
                    .with_limit(2),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["k1", "k3"]);
    assert!(resp.more());
    assert_eq!(resp.count(), 3);

    let resp = c
        .get(
            "k",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Key, SortOrder::Descend)
                    .with_limit(1),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["k3"]);
    assert!(resp.more());
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn range_keys_only_omits_values_but_keeps_metadata() {
    let (_s, mut c) = with_sort_layout().await;
    let resp = c
        .get("k", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["k1", "k2", "k3"]);
    assert!(resp.kvs().iter().all(|kv| kv.value().is_empty()));
    let kv = &resp.kvs()[0];
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (3, 7, 2)
    );
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn range_count_only_returns_count_without_kvs() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get(
            "foo",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 3);
    assert!(!resp.more());
    assert_eq!(rev(resp.header()), 9);
}

#[tokio::test]
async fn range_count_only_with_limit_reports_full_count_and_no_more() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get(
            "",
            Some(
                GetOptions::new()
                    .with_all_keys()
                    .with_count_only()
                    .with_limit(2),
            ),
        )
        .await
        .unwrap();
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 8);
    assert!(!resp.more());
}

#[tokio::test]
async fn range_serializable_read_sees_committed_writes() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .get(
            "foo",
            Some(GetOptions::new().with_prefix().with_serializable()),
        )
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["foo", "foo/1", "foo/2"]);
    assert_eq!(rev(resp.header()), 9);
}

#[tokio::test]
async fn range_min_mod_revision_filters_but_count_is_unfiltered() {
    let (_s, mut c) = with_sort_layout().await;
    let resp = c
        .get(
            "k",
            Some(GetOptions::new().with_prefix().with_min_mod_revision(6)),
        )
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["k1", "k3"]);
    assert_eq!(resp.count(), 3);
    assert!(!resp.more());
}

#[tokio::test]
async fn range_max_mod_revision_filters() {
    let (_s, mut c) = with_sort_layout().await;
    let resp = c
        .get(
            "k",
            Some(GetOptions::new().with_prefix().with_max_mod_revision(6)),
        )
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["k2", "k3"]);
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn range_min_create_revision_filters() {
    let (_s, mut c) = with_sort_layout().await;
    let resp = c
        .get(
            "k",
            Some(GetOptions::new().with_prefix().with_min_create_revision(3)),
        )
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["k1", "k2"]);
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn range_max_create_revision_filters() {
    let (_s, mut c) = with_sort_layout().await;
    let resp = c
        .get(
            "k",
            Some(GetOptions::new().with_prefix().with_max_create_revision(3)),
        )
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["k1", "k3"]);
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn range_combined_revision_filters_are_all_applied() {
    let (_s, mut c) = with_sort_layout().await;
    // mod in [5, 6] and create <= 3: only k3 (create 2, mod 6).
    let resp = c
        .get(
            "k",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_min_mod_revision(5)
                    .with_max_mod_revision(6)
                    .with_max_create_revision(3),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["k3"]);
    assert_eq!(resp.count(), 3);
}

#[tokio::test]
async fn range_filter_with_limit_applies_limit_after_filter() {
    let (_s, mut c) = with_sort_layout().await;
    let resp = c
        .get(
            "k",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_min_mod_revision(6)
                    .with_limit(1),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["k1"]);
    assert!(resp.more());
    assert_eq!(resp.count(), 3);

    let resp = c
        .get(
            "k",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_min_mod_revision(6)
                    .with_limit(2),
            ),
        )
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["k1", "k3"]);
    assert!(!resp.more());
}

#[tokio::test]
async fn range_does_not_return_deleted_keys() {
    let (_s, mut c) = with_layout().await;
    c.delete("foo/1", None).await.unwrap();
    let resp = c
        .get("foo", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(keys(&resp), ["foo", "foo/2"]);
    assert_eq!(resp.count(), 2);
    let resp = c.get("foo/1", None).await.unwrap();
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 0);
}

#[tokio::test]
async fn range_recreated_key_has_new_create_revision_and_version_one() {
    let (_s, mut c) = fresh().await;
    c.put("k", "v1", None).await.unwrap(); // 2
    c.put("k", "v2", None).await.unwrap(); // 3
    c.delete("k", None).await.unwrap(); // 4
    c.put("k", "v3", None).await.unwrap(); // 5
    let resp = c.get("k", None).await.unwrap();
    let kv = &resp.kvs()[0];
    assert_eq!(kv.value(), b"v3");
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (5, 5, 1)
    );
}

#[tokio::test]
async fn range_empty_key_is_key_not_provided() {
    let (_s, mut c) = with_layout().await;
    let r = c.get("", None).await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: key is not provided");
    let r = c.get("", Some(GetOptions::new().with_range("z"))).await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: key is not provided");
}

#[tokio::test]
async fn range_does_not_bump_revision() {
    let (_s, mut c) = with_layout().await;
    for _ in 0..3 {
        let resp = c.get("a", None).await.unwrap();
        assert_eq!(rev(resp.header()), 9);
    }
    let resp = c.put("a", "x", None).await.unwrap();
    assert_eq!(rev(resp.header()), 10);
}
