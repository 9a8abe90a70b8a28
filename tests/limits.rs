//! Request-size limits and argument validation, checked against etcd 3.4.
//!
//! etcd has two limits: `--max-request-bytes` (default 1.5 MiB) on the request as
//! proposed to raft ("etcdserver: request is too large", InvalidArgument), and the gRPC
//! receive limit of max-request-bytes + 512 KiB, enforced by the gRPC layer itself
//! (ResourceExhausted, "grpc: received message larger than max (N vs. M)").

mod common;

use common::{assert_grpc_error, current_revision, grpc_error, Code, TestServer};
use etcd_client::{Client, DeleteOptions, GetOptions, Txn, TxnOp};

const TOO_LARGE: &str = "etcdserver: request is too large";
const GRPC_TOO_LARGE: &str = "grpc: received message larger than max";

async fn small_limit() -> (TestServer, Client) {
    let server = TestServer::start(&["--max-request-bytes", "1024"]);
    let client = server.client().await;
    (server, client)
}

fn bytes(n: usize) -> Vec<u8> {
    vec![b'x'; n]
}

#[tokio::test]
async fn put_over_max_request_bytes_is_request_too_large() {
    let (_s, mut c) = small_limit().await;
    let r = c.put("k", bytes(2000), None).await;
    assert_grpc_error(r, Code::InvalidArgument, TOO_LARGE);
    assert_eq!(current_revision(&mut c).await, 1);
    let resp = c.get("k", None).await.unwrap();
    assert!(resp.kvs().is_empty());
}

#[tokio::test]
async fn put_under_max_request_bytes_works() {
    let (_s, mut c) = small_limit().await;
    c.put("k", bytes(600), None).await.unwrap();
    let resp = c.get("k", None).await.unwrap();
    assert_eq!(resp.kvs()[0].value(), bytes(600).as_slice());
}

#[tokio::test]
async fn request_too_large_does_not_break_the_server() {
    let (_s, mut c) = small_limit().await;
    for _ in 0..3 {
        let r = c.put("k", bytes(2000), None).await;
        assert_grpc_error(r, Code::InvalidArgument, TOO_LARGE);
    }
    let resp = c.put("k", "small", None).await.unwrap();
    assert_eq!(resp.header().unwrap().revision(), 2);
}

#[tokio::test]
async fn txn_over_max_request_bytes_is_request_too_large() {
    let (_s, mut c) = small_limit().await;
    let r = c
        .txn(Txn::new().and_then(vec![
            TxnOp::put("a", bytes(400), None),
            TxnOp::put("b", bytes(400), None),
            TxnOp::put("c", bytes(400), None),
        ]))
        .await;
    assert_grpc_error(r, Code::InvalidArgument, TOO_LARGE);
    assert_eq!(current_revision(&mut c).await, 1);
    // Two of them fit.
    c.txn(Txn::new().and_then(vec![
        TxnOp::put("a", bytes(400), None),
        TxnOp::put("b", bytes(400), None),
    ]))
    .await
    .unwrap();
    assert_eq!(current_revision(&mut c).await, 2);
}

#[tokio::test]
async fn delete_with_key_over_max_request_bytes_is_request_too_large() {
    let (_s, mut c) = small_limit().await;
    let r = c.delete(bytes(2000), None).await;
    assert_grpc_error(r, Code::InvalidArgument, TOO_LARGE);
}

#[tokio::test]
async fn range_is_not_subject_to_max_request_bytes() {
    // Reads are not proposed to raft, so only the gRPC limit applies to them.
    let (_s, mut c) = small_limit().await;
    let resp = c.get(bytes(2000), None).await.unwrap();
    assert!(resp.kvs().is_empty());
    let resp = c
        .get(bytes(2000), Some(GetOptions::new().with_range(bytes(3000))))
        .await
        .unwrap();
    assert_eq!(resp.count(), 0);
}

#[tokio::test]
async fn message_over_grpc_limit_is_resource_exhausted() {
    // gRPC limit is 1024 + 512 KiB = 525312 bytes here.
    let (_s, mut c) = small_limit().await;
    let (code, msg) = grpc_error(c.put("k", bytes(600_000), None).await);
    assert_eq!(code, Code::ResourceExhausted, "message: {msg}");
    assert!(msg.starts_with(GRPC_TOO_LARGE), "message: {msg}");
    // The connection stays usable.
    c.put("k", "small", None).await.unwrap();
}

#[tokio::test]
async fn default_limits_reject_large_put_as_request_too_large() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    // Default --max-request-bytes is 1.5 MiB.
    c.put("ok", bytes(1_500_000), None).await.unwrap();
    let r = c.put("k", bytes(1_600_000), None).await;
    assert_grpc_error(r, Code::InvalidArgument, TOO_LARGE);
}

#[tokio::test]
async fn default_limits_reject_3_mib_put_at_grpc_layer() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    // Beyond 1.5 MiB + 512 KiB = 2 MiB the gRPC layer refuses the message.
    let (code, msg) = grpc_error(c.put("k", bytes(3 * 1024 * 1024), None).await);
    assert_eq!(code, Code::ResourceExhausted, "message: {msg}");
    assert!(msg.starts_with(GRPC_TOO_LARGE), "message: {msg}");
    assert_eq!(current_revision(&mut c).await, 1);
    c.put("k", "small", None).await.unwrap();
}

#[tokio::test]
async fn empty_key_is_rejected_by_put_range_and_delete() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let msg = "etcdserver: key is not provided";
    assert_grpc_error(c.put("", "v", None).await, Code::InvalidArgument, msg);
    assert_grpc_error(c.get("", None).await, Code::InvalidArgument, msg);
    assert_grpc_error(
        c.get("", Some(GetOptions::new().with_range("z"))).await,
        Code::InvalidArgument,
        msg,
    );
    assert_grpc_error(c.delete("", None).await, Code::InvalidArgument, msg);
    assert_grpc_error(
        c.delete("", Some(DeleteOptions::new().with_range("z")))
            .await,
        Code::InvalidArgument,
        msg,
    );
    assert_eq!(current_revision(&mut c).await, 1);
}
