//! DeleteRange semantics, checked against etcd 3.4.

mod common;

use common::{assert_grpc_error, current_revision, rev, Code, TestServer};
use etcd_client::{Client, DeleteOptions, GetOptions};

/// Eight keys put at revisions 2..=9 in this order.
const LAYOUT: [&str; 8] = ["a", "b", "c", "foo", "foo/1", "foo/2", "fop", "z"];

async fn with_layout() -> (TestServer, Client) {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    for k in LAYOUT {
        c.put(k, format!("v-{k}"), None).await.unwrap();
    }
    (server, c)
}

async fn all_keys(c: &mut Client) -> Vec<String> {
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

fn without(removed: &[&str]) -> Vec<String> {
    LAYOUT
        .iter()
        .filter(|k| !removed.contains(k))
        .map(|k| k.to_string())
        .collect()
}

#[tokio::test]
async fn delete_single_key() {
    let (_s, mut c) = with_layout().await;
    let resp = c.delete("foo", None).await.unwrap();
    assert_eq!(resp.deleted(), 1);
    assert_eq!(rev(resp.header()), 10);
    assert!(resp.prev_kvs().is_empty(), "no prev_kvs unless asked");
    assert_eq!(all_keys(&mut c).await, without(&["foo"]));
}

#[tokio::test]
async fn delete_prefix() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .delete("foo", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(resp.deleted(), 3);
    assert_eq!(all_keys(&mut c).await, without(&["foo", "foo/1", "foo/2"]));
}

#[tokio::test]
async fn delete_from_key() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .delete("foo/2", Some(DeleteOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(resp.deleted(), 3);
    assert_eq!(all_keys(&mut c).await, without(&["foo/2", "fop", "z"]));
}

#[tokio::test]
async fn delete_range_end_is_exclusive() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .delete("b", Some(DeleteOptions::new().with_range("foo/1")))
        .await
        .unwrap();
    assert_eq!(resp.deleted(), 3);
    assert_eq!(all_keys(&mut c).await, without(&["b", "c", "foo"]));
}

#[tokio::test]
async fn delete_all_keys() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .delete("", Some(DeleteOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(resp.deleted(), 8);
    assert_eq!(rev(resp.header()), 10);
    assert!(all_keys(&mut c).await.is_empty());
}

#[tokio::test]
async fn delete_with_range_end_before_key_deletes_nothing() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .delete("z", Some(DeleteOptions::new().with_range("a")))
        .await
        .unwrap();
    assert_eq!(resp.deleted(), 0);
    assert_eq!(rev(resp.header()), 9);
    assert_eq!(all_keys(&mut c).await, without(&[]));
}

#[tokio::test]
async fn delete_prev_kvs_returns_deleted_pairs_in_key_order() {
    let (_s, mut c) = with_layout().await;
    c.put("foo/1", "updated", None).await.unwrap(); // 10
    let resp = c
        .delete(
            "foo",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(resp.deleted(), 3);
    assert_eq!(rev(resp.header()), 11);
    let prev: Vec<(String, String, i64, i64, i64)> = resp
        .prev_kvs()
        .iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(kv.key()).into_owned(),
                String::from_utf8_lossy(kv.value()).into_owned(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
            )
        })
        .collect();
    assert_eq!(
        prev,
        vec![
            ("foo".into(), "v-foo".into(), 5, 5, 1),
            ("foo/1".into(), "updated".into(), 6, 10, 2),
            ("foo/2".into(), "v-foo/2".into(), 7, 7, 1),
        ]
    );
}

#[tokio::test]
async fn delete_missing_key_deletes_nothing_and_keeps_revision() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .delete("nope", Some(DeleteOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(resp.deleted(), 0);
    assert!(resp.prev_kvs().is_empty());
    assert_eq!(rev(resp.header()), 9);
    assert_eq!(current_revision(&mut c).await, 9);
    // The next write gets the next revision.
    let resp = c.put("x", "y", None).await.unwrap();
    assert_eq!(rev(resp.header()), 10);
}

#[tokio::test]
async fn delete_missing_prefix_keeps_revision() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .delete("nothing/", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(resp.deleted(), 0);
    assert_eq!(rev(resp.header()), 9);
}

#[tokio::test]
async fn delete_already_deleted_key_deletes_nothing() {
    let (_s, mut c) = with_layout().await;
    assert_eq!(c.delete("a", None).await.unwrap().deleted(), 1);
    let resp = c.delete("a", None).await.unwrap();
    assert_eq!(resp.deleted(), 0);
    assert_eq!(rev(resp.header()), 10);
}

#[tokio::test]
async fn delete_of_many_keys_bumps_revision_once() {
    let (_s, mut c) = with_layout().await;
    let resp = c
        .delete("a", Some(DeleteOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(resp.deleted(), 8);
    assert_eq!(rev(resp.header()), 10);
    assert_eq!(current_revision(&mut c).await, 10);
    // All the deletions happened at revision 10: at 9 everything is visible.
    let resp = c
        .get("", Some(GetOptions::new().with_all_keys().with_revision(9)))
        .await
        .unwrap();
    assert_eq!(resp.count(), 8);
    let resp = c.put("a", "again", None).await.unwrap();
    assert_eq!(rev(resp.header()), 11);
}

#[tokio::test]
async fn deleted_key_remains_readable_at_older_revision() {
    let (_s, mut c) = with_layout().await;
    c.delete("b", None).await.unwrap(); // 10
    let resp = c
        .get("b", Some(GetOptions::new().with_revision(9)))
        .await
        .unwrap();
    assert_eq!(resp.kvs().len(), 1);
    assert_eq!(resp.kvs()[0].value(), b"v-b");
    let resp = c
        .get("b", Some(GetOptions::new().with_revision(10)))
        .await
        .unwrap();
    assert!(resp.kvs().is_empty());
}

#[tokio::test]
async fn delete_binary_key() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let key = vec![0u8, 0xff, 0];
    c.put(key.clone(), "v", None).await.unwrap();
    c.put(vec![0u8, 0xff], "w", None).await.unwrap();
    let resp = c.delete(key.clone(), None).await.unwrap();
    assert_eq!(resp.deleted(), 1);
    let resp = c.get(vec![0u8, 0xff], None).await.unwrap();
    assert_eq!(resp.kvs()[0].value(), b"w");
}

#[tokio::test]
async fn delete_empty_key_is_key_not_provided() {
    let (_s, mut c) = with_layout().await;
    let r = c.delete("", None).await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: key is not provided");
    let r = c
        .delete("", Some(DeleteOptions::new().with_range("z")))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, "etcdserver: key is not provided");
    assert_eq!(all_keys(&mut c).await, without(&[]));
}
