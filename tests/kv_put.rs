//! Put semantics, checked against etcd 3.4.

mod common;

use common::{assert_grpc_error, rev, Code, TestServer};
use etcd_client::{Client, PutOptions};

async fn fresh() -> (TestServer, Client) {
    let server = TestServer::start(&[]);
    let client = server.client().await;
    (server, client)
}

async fn get_one(client: &mut Client, key: &[u8]) -> Option<etcd_client::KeyValue> {
    let mut resp = client.get(key, None).await.expect("get");
    let mut kvs = resp.take_kvs();
    assert!(kvs.len() <= 1);
    kvs.pop()
}

#[tokio::test]
async fn fresh_store_is_at_revision_one() {
    let (_s, mut c) = fresh().await;
    let resp = c.get("nothing", None).await.unwrap();
    assert_eq!(rev(resp.header()), 1);
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 0);
}

#[tokio::test]
async fn first_put_returns_revision_two() {
    let (_s, mut c) = fresh().await;
    let resp = c.put("foo", "bar", None).await.unwrap();
    assert_eq!(rev(resp.header()), 2);
    let resp = c.put("foo2", "bar", None).await.unwrap();
    assert_eq!(rev(resp.header()), 3);
}

#[tokio::test]
async fn put_response_header_identifies_cluster_member_and_term() {
    let (_s, mut c) = fresh().await;
    let resp = c.put("foo", "bar", None).await.unwrap();
    let h = resp.header().unwrap();
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.member_id(), 0);
    assert!(h.raft_term() >= 1, "raft_term = {}", h.raft_term());
    // Reads carry the same identity.
    let g = c.get("foo", None).await.unwrap();
    let gh = g.header().unwrap();
    assert_eq!(gh.cluster_id(), h.cluster_id());
    assert_eq!(gh.member_id(), h.member_id());
    assert_eq!(gh.raft_term(), h.raft_term());
}

#[tokio::test]
async fn put_tracks_create_mod_revision_and_version() {
    let (_s, mut c) = fresh().await;
    c.put("a", "1", None).await.unwrap(); // rev 2
    c.put("other", "x", None).await.unwrap(); // rev 3
    c.put("a", "2", None).await.unwrap(); // rev 4
    c.put("a", "3", None).await.unwrap(); // rev 5

    let kv = get_one(&mut c, b"a").await.unwrap();
    assert_eq!(kv.value(), b"3");
    assert_eq!(kv.create_revision(), 2);
    assert_eq!(kv.mod_revision(), 5);
    assert_eq!(kv.version(), 3);
    assert_eq!(kv.lease(), 0);

    let kv = get_one(&mut c, b"other").await.unwrap();
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (3, 3, 1)
    );
}

#[tokio::test]
async fn put_same_value_still_bumps_revision_and_version() {
    let (_s, mut c) = fresh().await;
    c.put("k", "v", None).await.unwrap();
    let resp = c.put("k", "v", None).await.unwrap();
    assert_eq!(rev(resp.header()), 3);
    let kv = get_one(&mut c, b"k").await.unwrap();
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 3, 2)
    );
}

#[tokio::test]
async fn put_prev_kv_is_absent_for_new_key() {
    let (_s, mut c) = fresh().await;
    let resp = c
        .put("new", "v1", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert!(resp.prev_key().is_none(), "prev_kv = {:?}", resp.prev_key());
}

#[tokio::test]
async fn put_prev_kv_returns_previous_pair() {
    let (_s, mut c) = fresh().await;
    c.put("k", "v1", None).await.unwrap();
    c.put("k", "v2", None).await.unwrap();
    let resp = c
        .put("k", "v3", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(rev(resp.header()), 4);
    let prev = resp.prev_key().expect("prev_kv present");
    assert_eq!(prev.key(), b"k");
    assert_eq!(prev.value(), b"v2");
    assert_eq!(prev.create_revision(), 2);
    assert_eq!(prev.mod_revision(), 3);
    assert_eq!(prev.version(), 2);
}

#[tokio::test]
async fn put_without_prev_kv_option_returns_no_prev_kv() {
    let (_s, mut c) = fresh().await;
    c.put("k", "v1", None).await.unwrap();
    let resp = c.put("k", "v2", None).await.unwrap();
    assert!(resp.prev_key().is_none());
}

#[tokio::test]
async fn put_ignore_value_keeps_old_value_and_bumps_version() {
    let (_s, mut c) = fresh().await;
    c.put("k", "original", None).await.unwrap();
    let resp = c
        .put(
            "k",
            "",
            Some(PutOptions::new().with_ignore_value().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(rev(resp.header()), 3);
    assert_eq!(resp.prev_key().unwrap().value(), b"original");
    let kv = get_one(&mut c, b"k").await.unwrap();
    assert_eq!(kv.value(), b"original");
    assert_eq!(
        (kv.create_revision(), kv.mod_revision(), kv.version()),
        (2, 3, 2)
    );
}

#[tokio::test]
async fn put_ignore_value_on_missing_key_is_key_not_found() {
    let (_s, mut c) = fresh().await;
    let r = c
        .put("missing", "", Some(PutOptions::new().with_ignore_value()))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: key not found");
    // Nothing was written.
    assert_eq!(common::current_revision(&mut c).await, 1);
    assert!(get_one(&mut c, b"missing").await.is_none());
}

#[tokio::test]
async fn put_ignore_value_with_value_is_value_provided() {
    let (_s, mut c) = fresh().await;
    c.put("k", "v", None).await.unwrap();
    let r = c
        .put("k", "new", Some(PutOptions::new().with_ignore_value()))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: value is provided");
    assert_eq!(get_one(&mut c, b"k").await.unwrap().value(), b"v");
}

#[tokio::test]
async fn put_ignore_lease_with_lease_is_lease_provided() {
    let (_s, mut c) = fresh().await;
    c.put("k", "v", None).await.unwrap();
    let r = c
        .put(
            "k",
            "v2",
            Some(PutOptions::new().with_ignore_lease().with_lease(12345)),
        )
        .await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: lease is provided");
}

#[tokio::test]
async fn put_ignore_lease_keeps_attached_lease() {
    let (_s, mut c) = fresh().await;
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("k", "v1", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    c.put("k", "v2", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap();
    let kv = get_one(&mut c, b"k").await.unwrap();
    assert_eq!(kv.value(), b"v2");
    assert_eq!(kv.lease(), lease);
    // A plain put detaches the lease.
    c.put("k", "v3", None).await.unwrap();
    assert_eq!(get_one(&mut c, b"k").await.unwrap().lease(), 0);
}

#[tokio::test]
async fn put_ignore_lease_on_missing_key_is_key_not_found() {
    let (_s, mut c) = fresh().await;
    let r = c
        .put("missing", "v", Some(PutOptions::new().with_ignore_lease()))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: key not found");
}

#[tokio::test]
async fn put_with_unknown_lease_is_not_found() {
    let (_s, mut c) = fresh().await;
    let r = c
        .put("k", "v", Some(PutOptions::new().with_lease(0x1234_5678)))
        .await;
    assert_grpc_error(r, Code::NotFound, "etcdserver: requested lease not found");
    assert_eq!(common::current_revision(&mut c).await, 1);
}

#[tokio::test]
async fn put_with_granted_lease_records_lease_id() {
    let (_s, mut c) = fresh().await;
    let lease = c.lease_grant(600, None).await.unwrap().id();
    let resp = c
        .put("k", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    // Granting a lease does not bump the revision.
    assert_eq!(rev(resp.header()), 2);
    assert_eq!(get_one(&mut c, b"k").await.unwrap().lease(), lease);
}

#[tokio::test]
async fn put_empty_key_is_key_not_provided() {
    let (_s, mut c) = fresh().await;
    let r = c.put("", "v", None).await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: key is not provided");
}

#[tokio::test]
async fn put_empty_value_is_stored() {
    let (_s, mut c) = fresh().await;
    c.put("k", "", None).await.unwrap();
    let kv = get_one(&mut c, b"k").await.unwrap();
    assert_eq!(kv.value(), b"");
    assert_eq!(kv.version(), 1);
}

#[tokio::test]
async fn put_binary_key_and_value_round_trip() {
    let (_s, mut c) = fresh().await;
    let key: Vec<u8> = vec![0x00, 0xff, b'k', 0x00, 0xfe, 0xff];
    let value: Vec<u8> = vec![0xff, 0x00, 0x00, 0x01, 0x80, 0xff, 0x00];
    c.put(key.clone(), value.clone(), None).await.unwrap();
    let kv = get_one(&mut c, &key).await.expect("binary key found");
    assert_eq!(kv.key(), key.as_slice());
    assert_eq!(kv.value(), value.as_slice());

    // A key that is a prefix of it (up to the zero byte) is distinct.
    assert!(get_one(&mut c, &key[..3]).await.is_none());
    // Key consisting of a single 0xff byte.
    c.put(vec![0xffu8], vec![0u8; 4], None).await.unwrap();
    let kv = get_one(&mut c, &[0xff]).await.unwrap();
    assert_eq!(kv.value(), &[0u8; 4]);
}

#[tokio::test]
async fn put_large_value_round_trips() {
    let (_s, mut c) = fresh().await;
    let value: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    c.put("big", value.clone(), None).await.unwrap();
    let kv = get_one(&mut c, b"big").await.unwrap();
    assert_eq!(kv.value(), value.as_slice());
}
