//! What etcd 3.7's API adds: `KV.RangeStream`, `HashKVResponse.hash_revision`,
//! `StatusResponse.storageVersion`, `dbSizeQuota` and `downgradeInfo`, and the Maintenance
//! calls `Hash` and `Downgrade`.
//!
//! etcd-client has none of these: the tests speak gRPC through tonic with Cairn's generated
//! clients. Every test also passes against etcd 3.7.3
//! (`CAIRN_TEST_SERVER_BIN=.../etcd37/bin/etcd`); where the two differ by design (Hash's
//! value, Downgrade ENABLE, how memory is counted), a comment says so.

mod common;

use std::time::Duration;

use cairn::proto::etcdserverpb as pb;
use common::cluster::TestCluster;
use common::TestServer;
use futures::StreamExt;
use pb::downgrade_request::DowngradeAction;
use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;
use pb::range_request::{SortOrder, SortTarget};
use pb::{RangeRequest, RangeResponse};
use tonic::transport::Channel;
use tonic::Code;

const CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn testing_cairn() -> bool {
    !common::server_bin().ends_with("etcd")
}

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"))
}

/// A KV client that takes chunks of any size (etcd's first chunk of large values is
/// larger than tonic's default limit).
async fn kv(endpoint: &str) -> KvClient<Channel> {
    KvClient::new(channel(endpoint).await).max_decoding_message_size(usize::MAX)
}

/// Polls `condition` every 100 ms for at most 15 s: for what etcd changes on a timer of its
/// own (its leader's version check, every few seconds), which no event announces.
async fn wait_until<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not reached within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn maintenance(endpoint: &str) -> MaintenanceClient<Channel> {
    MaintenanceClient::new(channel(endpoint).await)
}

fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(token) = token {
        req.metadata_mut()
            .insert("token", token.parse().expect("ASCII token"));
    }
    req
}

fn code_and_message(status: &tonic::Status) -> (Code, String) {
    (status.code(), status.message().to_string())
}

fn prefix(p: &str) -> RangeRequest {
    let mut end = p.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    RangeRequest {
        key: p.as_bytes().to_vec(),
        range_end: end,
        ..RangeRequest::default()
    }
}

/// Every chunk of a RangeStream, or its error: etcd and Cairn answer an error found before
/// the first chunk as the call's, one found later ends the stream; both count here.
async fn stream_all(
    c: &mut KvClient<Channel>,
    r: RangeRequest,
    token: Option<&str>,
) -> Result<Vec<RangeResponse>, tonic::Status> {
    let mut stream = c.range_stream(with_token(r, token)).await?.into_inner();
    let mut chunks = Vec::new();
    while let Some(message) = stream.message().await? {
        chunks.push(
            message
                .range_response
                .expect("a chunk carries a range response"),
        );
    }
    Ok(chunks)
}

/// The chunks merged as etcd's proto.Merge would: what a Range would have answered.
fn merged(chunks: &[RangeResponse]) -> RangeResponse {
    let last = chunks.last().expect("at least one chunk");
    RangeResponse {
        header: last.header.clone(),
        kvs: chunks.iter().flat_map(|c| c.kvs.clone()).collect(),
        more: last.more,
        count: last.count,
    }
}

/// Only the last chunk has a header, `more` and `count`.
#[track_caller]
fn assert_only_last_has_header_more_count(chunks: &[RangeResponse]) {
    let (last, rest) = chunks.split_last().expect("at least one chunk");
    for (i, c) in rest.iter().enumerate() {
        assert!(
            c.header.is_none() && !c.more && c.count == 0,
            "chunk {i} of {}: header {:?}, more {}, count {}",
            chunks.len(),
            c.header,
            c.more,
            c.count
        );
    }
    assert!(last.header.is_some(), "the last chunk has a header");
}

/// Puts `n` keys `<p>000`.. with values `v<i>`; the store's revision after.
async fn put_keys(c: &mut etcd_client::Client, p: &str, n: usize) -> i64 {
    let mut rev = 0;
    for i in 0..n {
        let resp = c
            .put(format!("{p}{i:03}"), format!("v{i}"), None)
            .await
            .unwrap();
        rev = common::rev(resp.header());
    }
    rev
}

async fn range(c: &mut KvClient<Channel>, r: RangeRequest) -> RangeResponse {
    c.range(r).await.expect("range").into_inner()
}

// ---------------------------------------------------------------------------------
// RangeStream
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn range_stream_sends_chunks_that_merge_into_the_range() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let rev = put_keys(&mut c, "k", 200).await;
    c.put("l", "after the prefix", None).await.unwrap();
    let mut kv = kv(&server.endpoint()).await;

    let chunks = stream_all(&mut kv, prefix("k"), None).await.unwrap();
    // etcd 3.7's first chunk holds 10 keys; small chunks then double.
    assert_eq!(chunks[0].kvs.len(), 10, "first chunk");
    assert_eq!(chunks[1].kvs.len(), 20, "second chunk");
    assert!(chunks.len() >= 3, "{} chunks", chunks.len());
    assert_only_last_has_header_more_count(&chunks);
    let all = merged(&chunks);
    let whole = range(&mut kv, prefix("k")).await;
    assert_eq!(all.kvs, whole.kvs);
    assert_eq!((all.count, all.more), (200, false));
    assert_eq!(all.header.as_ref().unwrap().revision, rev + 1);
    assert_eq!(all.header, whole.header);

    // A limit: the keys up to it, `more`, and the count of the whole range, as Range.
    let limited = RangeRequest {
        limit: 35,
        ..prefix("k")
    };
    let chunks = stream_all(&mut kv, limited.clone(), None).await.unwrap();
    assert_only_last_has_header_more_count(&chunks);
    let all = merged(&chunks);
    let whole = range(&mut kv, limited).await;
    assert_eq!((all.kvs.len(), all.more, all.count), (35, true, 200));
    assert_eq!(all, whole);

    // keys_only: no values; a single key: one chunk.
    let keys_only = RangeRequest {
        keys_only: true,
        ..prefix("k")
    };
    let all = merged(&stream_all(&mut kv, keys_only.clone(), None).await.unwrap());
    assert_eq!(all, range(&mut kv, keys_only).await);
    assert!(all.kvs.iter().all(|kv| kv.value.is_empty()));
    let one = RangeRequest {
        key: b"k007".to_vec(),
        ..RangeRequest::default()
    };
    let chunks = stream_all(&mut kv, one.clone(), None).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0], range(&mut kv, one).await);

    // count_only: one chunk, with the count.
    let count_only = RangeRequest {
        count_only: true,
        ..prefix("k")
    };
    let chunks = stream_all(&mut kv, count_only.clone(), None).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].count, 200);
    assert_eq!(chunks[0], range(&mut kv, count_only).await);

    // Nothing in range: one chunk, empty, with its header.
    let chunks = stream_all(&mut kv, prefix("none"), None).await.unwrap();
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0], range(&mut kv, prefix("none")).await);

    // An older revision, and no order but another sort target: key order all the same
    // (etcd 3.7.3 sorts each chunk on its own there and repeats keys; see README).
    let at = RangeRequest {
        revision: rev - 100,
        sort_target: SortTarget::Value as i32,
        ..prefix("k")
    };
    let all = merged(&stream_all(&mut kv, at, None).await.unwrap());
    if testing_cairn() {
        let old = range(
            &mut kv,
            RangeRequest {
                revision: rev - 100,
                ..prefix("k")
            },
        )
        .await;
        assert_eq!(all.kvs, old.kvs);
        assert_eq!(all.count, 100);
    }
    // The header is the store's revision, as Range's.
    assert_eq!(all.header.unwrap().revision, rev + 1);
}

#[tokio::test]
async fn range_stream_reads_every_chunk_at_the_revision_of_the_first() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    // 20 MiB: far more than gRPC's flow-control windows let the server send ahead, so
    // after the first message most chunks are read only once the client reads on.
    let value = vec![b'x'; 100 * 1024];
    for i in 0..200 {
        c.put(format!("k{i:03}"), value.clone(), None)
            .await
            .unwrap();
    }
    let mut kv = kv(&server.endpoint()).await;
    let before = range(&mut kv, prefix("k")).await;

    let mut stream = kv.range_stream(prefix("k")).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    // Changes behind the first chunk: new values, deletions, new keys, in range.
    for i in 100..200 {
        c.put(format!("k{i:03}"), "changed", None).await.unwrap();
    }
    c.delete(
        "k150",
        Some(etcd_client::DeleteOptions::new().with_prefix()),
    )
    .await
    .unwrap();
    c.put("k500", "new", None).await.unwrap();
    let mut chunks = vec![first.range_response.unwrap()];
    while let Some(message) = stream.message().await.unwrap() {
        chunks.push(message.range_response.unwrap());
    }
    assert!(chunks.len() > 2, "{} chunks", chunks.len());
    assert_only_last_has_header_more_count(&chunks);
    let all = merged(&chunks);
    assert_eq!(all.kvs.len(), 200);
    assert!(
        all.kvs == before.kvs,
        "the stream shows changes made after it began"
    );
    assert_eq!(all.count, 200);
    assert_eq!(all.header, before.header);
}

#[tokio::test]
async fn range_stream_ends_with_compacted_once_compaction_passes_its_revision() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let value = vec![b'x'; 100 * 1024];
    for i in 0..200 {
        c.put(format!("k{i:03}"), value.clone(), None)
            .await
            .unwrap();
    }
    let mut kv = kv(&server.endpoint()).await;
    let mut stream = kv.range_stream(prefix("k")).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert!(first.range_response.unwrap().header.is_none());
    c.put("k000", "newer", None).await.unwrap();
    let now = common::current_revision(&mut c).await;
    c.compact(now, None).await.unwrap();
    let mut keys = 10;
    let err = loop {
        match stream.message().await {
            Ok(Some(message)) => {
                let chunk = message.range_response.unwrap();
                assert!(chunk.header.is_none(), "the stream completed");
                keys += chunk.kvs.len();
            }
            Ok(None) => panic!("the stream ended without error"),
            Err(status) => break status,
        }
    };
    assert!(keys < 200, "{keys} keys before the error");
    assert_eq!(
        code_and_message(&err),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision has been compacted".to_string()
        )
    );
}

#[tokio::test]
async fn range_stream_errors_are_ranges() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let rev = put_keys(&mut c, "k", 5).await;
    c.compact(rev - 1, None).await.unwrap();
    let kv = kv(&server.endpoint()).await;
    let fails = |r: RangeRequest| {
        let mut kv = kv.clone();
        async move {
            let streamed = stream_all(&mut kv, r.clone(), None).await.unwrap_err();
            let ranged = kv.range(r).await.unwrap_err();
            (code_and_message(&streamed), code_and_message(&ranged))
        }
    };
    let same = |got: ((Code, String), (Code, String)), code: Code, message: &str| {
        let want = (code, message.to_string());
        assert_eq!(got, (want.clone(), want));
    };
    same(
        fails(RangeRequest {
            revision: rev - 2,
            ..prefix("k")
        })
        .await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    same(
        fails(RangeRequest {
            revision: rev + 1,
            ..prefix("k")
        })
        .await,
        Code::OutOfRange,
        "etcdserver: mvcc: required revision is a future revision",
    );
    same(
        fails(RangeRequest::default()).await,
        Code::InvalidArgument,
        "etcdserver: key is not provided",
    );
    same(
        fails(RangeRequest {
            sort_order: 7,
            ..prefix("k")
        })
        .await,
        Code::InvalidArgument,
        "etcdserver: invalid sort option",
    );
    same(
        fails(RangeRequest {
            sort_target: 9,
            ..prefix("k")
        })
        .await,
        Code::InvalidArgument,
        "etcdserver: invalid sort option",
    );

    // RangeStream serves key order only, without revision filters.
    let stream_refuses = |r: RangeRequest, message: &'static str| {
        let mut kv = kv.clone();
        async move {
            let err = stream_all(&mut kv, r.clone(), None).await.unwrap_err();
            assert_eq!(
                code_and_message(&err),
                (Code::Unimplemented, message.to_string()),
                "{r:?}"
            );
            kv.range(r).await.expect("Range serves it");
        }
    };
    for (order, target) in [
        (SortOrder::Descend, SortTarget::Key),
        (SortOrder::Ascend, SortTarget::Value),
        (SortOrder::Ascend, SortTarget::Mod),
    ] {
        let r = RangeRequest {
            sort_order: order as i32,
            sort_target: target as i32,
            ..prefix("k")
        };
        stream_refuses(r, "RangeStream does not support custom sort orders").await;
    }
    let ascending_keys = RangeRequest {
        sort_order: SortOrder::Ascend as i32,
        ..prefix("k")
    };
    let all = merged(
        &stream_all(&mut kv.clone(), ascending_keys, None)
            .await
            .unwrap(),
    );
    assert_eq!(all.count, 5);
    for r in [
        RangeRequest {
            min_mod_revision: 2,
            ..prefix("k")
        },
        RangeRequest {
            max_create_revision: 3,
            ..prefix("k")
        },
    ] {
        stream_refuses(r, "RangeStream does not support revision filters").await;
    }
}

#[tokio::test]
async fn range_stream_needs_read_permission_as_range() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    put_keys(&mut c, "k", 30).await;
    put_keys(&mut c, "secret", 3).await;
    c.user_add("root", "root-pw", None).await.unwrap();
    c.role_add("root").await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.user_add("alice", "alice-pw", None).await.unwrap();
    c.role_add("reader").await.unwrap();
    c.role_grant_permission("reader", etcd_client::Permission::read("k").with_prefix())
        .await
        .unwrap();
    c.user_grant_role("alice", "reader").await.unwrap();
    c.auth_enable().await.unwrap();
    let token = |user: &'static str, password: &'static str| {
        let endpoint = server.endpoint();
        async move {
            let mut auth = pb::auth_client::AuthClient::new(channel(&endpoint).await);
            let request = pb::AuthenticateRequest {
                name: user.to_string(),
                password: password.to_string(),
            };
            auth.authenticate(request).await.unwrap().into_inner().token
        }
    };
    let alice = token("alice", "alice-pw").await;
    let mut kv = kv(&server.endpoint()).await;

    let all = merged(
        &stream_all(&mut kv, prefix("k"), Some(&alice))
            .await
            .unwrap(),
    );
    assert_eq!(all.count, 30);
    let denied = (
        Code::PermissionDenied,
        "etcdserver: permission denied".to_string(),
    );
    let err = stream_all(&mut kv, prefix("secret"), Some(&alice))
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err), denied);
    // Without a token: what Range answers.
    let err = stream_all(&mut kv, prefix("k"), None).await.unwrap_err();
    let ranged = kv.range(prefix("k")).await.unwrap_err();
    assert_eq!(code_and_message(&err), code_and_message(&ranged));
    assert_eq!(
        code_and_message(&err),
        (
            Code::InvalidArgument,
            "etcdserver: user name is empty".to_string()
        )
    );
}

/// Anonymous memory of a process, from /proc: (RssAnon, VmHWM) in bytes.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .map(|kb| kb.trim().parse::<u64>().unwrap() * 1024)
            .unwrap_or_else(|| panic!("{name} in /proc/{pid}/status"))
    };
    (field("RssAnon:"), field("VmHWM:"))
}

/// Streaming 1 GiB of values keeps the server's anonymous memory within 256 MiB of what it
/// held before (one chunk is about 2 MiB here). RssAnon rather than the whole RSS: etcd
/// maps its db file, so its RSS grows by every page the stream reads; Cairn maps nothing.
#[tokio::test]
async fn range_stream_of_a_gibibyte_holds_one_chunk_at_a_time() {
    const VALUE_BYTES: usize = 1 << 20;
    const KEYS: usize = 1024;
    const BOUND: u64 = 256 << 20;
    // Frequent snapshots: etcd then drops the entries from memory, and its heap (and the
    // collector's pace with it) follows what it holds.
    let server = TestServer::start(&[
        "--quota-backend-bytes",
        "8589934592",
        "--snapshot-count",
        "100",
        "--snapshot-catchup-entries",
        "10",
    ]);
    let c = server.client().await;
    futures::stream::iter(0..KEYS)
        .map(|i| {
            let mut c = c.clone();
            async move {
                // Differing values, so that storage cannot share them.
                let mut value = vec![(i % 251) as u8; VALUE_BYTES];
                value[..8].copy_from_slice(&(i as u64).to_be_bytes());
                c.put(format!("big{i:04}"), value, None).await.unwrap();
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let pid = server.pid();
    let (baseline, _) = memory_of(pid);

    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(memory_of(pid).0);
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        })
    };
    let mut kv = kv(&server.endpoint()).await;
    let mut stream = kv.range_stream(prefix("big")).await.unwrap().into_inner();
    let (mut keys, mut bytes, mut chunks) = (0, 0, 0);
    let mut last = None;
    while let Some(message) = stream.message().await.unwrap() {
        let chunk = message.range_response.unwrap();
        chunks += 1;
        keys += chunk.kvs.len();
        bytes += chunk.kvs.iter().map(|kv| kv.value.len()).sum::<usize>();
        last = Some((chunk.count, chunk.more));
    }
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    let (_, hwm) = memory_of(pid);
    println!(
        "anonymous memory: {} MiB before, peak {} MiB while streaming; VmHWM {} MiB",
        baseline >> 20,
        peak >> 20,
        hwm >> 20
    );
    assert!(
        peak <= baseline + BOUND,
        "anonymous memory grew from {} MiB to {} MiB while streaming",
        baseline >> 20,
        peak >> 20
    );
    assert_eq!((keys, bytes), (KEYS, KEYS * VALUE_BYTES));
    assert_eq!(last, Some((KEYS as i64, false)));
    assert!(chunks > 100, "{chunks} chunks");
}

// ---------------------------------------------------------------------------------
// Maintenance: Status, HashKV, Hash, Downgrade
// ---------------------------------------------------------------------------------

/// Major and minor of a version such as "3.7.3".
fn major_minor(version: &str) -> (u64, u64) {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap());
    (parts.next().unwrap(), parts.next().unwrap())
}

#[tokio::test]
async fn status_reports_storage_version_quota_and_no_downgrade() {
    let server = TestServer::start(&[]);
    let mut m = maintenance(&server.endpoint()).await;
    let status = m.status(pb::StatusRequest {}).await.unwrap().into_inner();
    let (major, minor) = major_minor(&status.version);
    assert_eq!(status.storage_version, format!("{major}.{minor}.0"));
    assert_eq!(status.db_size_quota, 2 << 30, "etcd's default quota");
    assert_eq!(status.downgrade_info, Some(pb::DowngradeInfo::default()));

    // /version reports the same storage version.
    let version = common::http::get(&server.endpoint(), "/version")
        .await
        .json();
    assert_eq!(
        version["storage"],
        status.storage_version.as_str(),
        "{version}"
    );

    let server = TestServer::start(&["--quota-backend-bytes", "123456789"]);
    let mut m = maintenance(&server.endpoint()).await;
    let status = m.status(pb::StatusRequest {}).await.unwrap().into_inner();
    assert_eq!(status.db_size_quota, 123_456_789);
}

#[tokio::test]
async fn hash_kv_reports_the_revision_it_hashed_up_to() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    let rev = put_keys(&mut c, "k", 5).await;
    let mut m = maintenance(&server.endpoint()).await;
    let hash_kv = |revision| {
        let mut m = m.clone();
        async move {
            m.hash_kv(pb::HashKvRequest { revision })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let latest = hash_kv(0).await;
    assert_eq!(latest.hash_revision, rev);
    assert_eq!(latest.header.unwrap().revision, rev);
    let older = hash_kv(rev - 2).await;
    assert_eq!(older.hash_revision, rev - 2);
    assert_eq!(
        older.header.unwrap().revision,
        rev,
        "the header is the store's"
    );
    assert_ne!(older.hash, latest.hash);
    assert_eq!(hash_kv(rev - 2).await.hash, older.hash);
    let err = m
        .hash_kv(pb::HashKvRequest { revision: rev + 1 })
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision".to_string()
        )
    );
}

async fn hash_of(endpoint: &str, token: Option<&str>) -> Result<pb::HashResponse, tonic::Status> {
    let mut m = maintenance(endpoint).await;
    Ok(m.hash(with_token(pb::HashRequest {}, token))
        .await?
        .into_inner())
}

#[tokio::test]
async fn hash_changes_with_the_state_and_is_the_same_on_every_member() {
    let cluster = TestCluster::start(3, &[]);
    let mut c = cluster.member_client(0).await;
    let before = hash_of(&cluster.endpoint(0), None).await.unwrap();
    c.put("a", "1", None).await.unwrap();
    let after_put = hash_of(&cluster.endpoint(0), None).await.unwrap();
    assert_ne!(after_put.hash, before.hash);
    c.lease_grant(600, None).await.unwrap();
    c.put("b", "2", None).await.unwrap();
    c.delete("a", None).await.unwrap();
    let rev = common::current_revision(&mut c).await;
    assert_eq!(
        hash_of(&cluster.endpoint(0), None)
            .await
            .unwrap()
            .header
            .unwrap()
            .revision,
        rev
    );

    // Each member, once it has applied the same entries, hashes the same.
    let mut hashes = Vec::new();
    for i in 0..3 {
        let mut member = cluster.member_client(i).await;
        let serializable = etcd_client::GetOptions::new().with_serializable();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Wait until the member has applied the delete (rev): a linearizable read would do
        // the same, but a Hash is local and not linearizable.
        loop {
            let resp = member.get("b", Some(serializable.clone())).await.unwrap();
            if common::rev(resp.header()) >= rev {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "member {i} lags");
            tokio::task::yield_now().await;
        }
        let h = hash_of(&cluster.endpoint(i), None).await.unwrap();
        assert_eq!(h.header.unwrap().revision, rev);
        hashes.push(h.hash);
    }
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{hashes:?}");
}

#[tokio::test]
async fn hash_and_downgrade_need_the_root_role() {
    let server = TestServer::start(&[]);
    let mut c = server.client().await;
    c.user_add("root", "root-pw", None).await.unwrap();
    c.role_add("root").await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.user_add("alice", "alice-pw", None).await.unwrap();
    c.auth_enable().await.unwrap();
    let auth = pb::auth_client::AuthClient::new(channel(&server.endpoint()).await);
    let token = |name: &str, password: &str| {
        let request = pb::AuthenticateRequest {
            name: name.to_string(),
            password: password.to_string(),
        };
        let mut auth = auth.clone();
        async move { auth.authenticate(request).await.unwrap().into_inner().token }
    };
    let root = token("root", "root-pw").await;
    let alice = token("alice", "alice-pw").await;
    let denied = (
        Code::PermissionDenied,
        "etcdserver: permission denied".to_string(),
    );
    let e = server.endpoint();
    hash_of(&e, Some(&root)).await.unwrap();
    assert_eq!(
        code_and_message(&hash_of(&e, Some(&alice)).await.unwrap_err()),
        denied
    );

    let mut m = maintenance(&e).await;
    let cancel = pb::DowngradeRequest {
        action: DowngradeAction::Cancel as i32,
        version: String::new(),
    };
    m.downgrade(with_token(cancel.clone(), Some(&root)))
        .await
        .unwrap();
    let err = m
        .downgrade(with_token(cancel.clone(), Some(&alice)))
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err), denied);
    let err = m.downgrade(with_token(cancel, None)).await.unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (
            Code::InvalidArgument,
            "etcdserver: user name is empty".to_string()
        )
    );
    // The root check comes before the action is looked at.
    let unknown = pb::DowngradeRequest {
        action: 9,
        version: String::new(),
    };
    let err = m
        .downgrade(with_token(unknown, Some(&alice)))
        .await
        .unwrap_err();
    assert_eq!(code_and_message(&err), denied);
}

#[tokio::test]
async fn downgrade_validates_the_target_as_etcd_and_cancel_has_nothing_to_cancel() {
    let server = TestServer::start(&[]);
    let mut m = maintenance(&server.endpoint()).await;
    let status = m.status(pb::StatusRequest {}).await.unwrap().into_inner();
    let (major, minor) = major_minor(&status.version);
    let cluster_version = format!("{major}.{minor}");
    let downgrade = |action: DowngradeAction, version: String| {
        let mut m = m.clone();
        async move {
            m.downgrade(pb::DowngradeRequest {
                action: action as i32,
                version,
            })
            .await
            .map(tonic::Response::into_inner)
        }
    };
    let one_below = format!("{major}.{}", minor - 1);
    for target in [
        one_below.clone(),
        format!("{one_below}.0"),
        format!("{one_below}.9"),
        format!("{one_below}.0-rc.1"),
    ] {
        let ok = downgrade(DowngradeAction::Validate, target).await.unwrap();
        assert_eq!(ok.version, cluster_version);
        assert!(ok.header.is_some());
    }
    let invalid = (
        Code::InvalidArgument,
        "etcdserver: invalid downgrade target version".to_string(),
    );
    let wrong_format = (
        Code::InvalidArgument,
        "etcdserver: wrong downgrade target version format".to_string(),
    );
    for action in [DowngradeAction::Validate, DowngradeAction::Enable] {
        for target in [
            format!("{major}.{}", minor - 2),
            cluster_version.clone(),
            format!("{major}.{}", minor + 1),
            format!("{}.{minor}", major + 1),
        ] {
            let err = downgrade(action, target.clone()).await.unwrap_err();
            assert_eq!(code_and_message(&err), invalid, "{action:?} {target}");
        }
        for target in ["", "v3.6", "3", "3.6-alpha", "3.6.0.1"] {
            let err = downgrade(action, target.to_string()).await.unwrap_err();
            assert_eq!(
                code_and_message(&err),
                wrong_format,
                "{action:?} {target:?}"
            );
        }
    }
    let err = m
        .clone()
        .downgrade(pb::DowngradeRequest {
            action: 9,
            version: one_below.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        code_and_message(&err),
        (Code::Unknown, "etcdserver: unknown method".to_string())
    );

    // No downgrade in progress: etcd 3.7 answers CANCEL with success all the same.
    let cancelled = downgrade(DowngradeAction::Cancel, String::new())
        .await
        .unwrap();
    assert_eq!(cancelled.version, cluster_version);

    // A valid ENABLE starts the downgrade: answered with the cluster version it starts from;
    // Status then shows it; CANCEL ends it.
    let enabled = downgrade(DowngradeAction::Enable, one_below.clone()).await;
    assert_eq!(enabled.unwrap().version, cluster_version);
    let status = m
        .clone()
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let info = status.downgrade_info.unwrap();
    assert!(info.enabled);
    assert_eq!(info.target_version, format!("{one_below}.0"));
    downgrade(DowngradeAction::Cancel, String::new())
        .await
        .unwrap();
    let status = m
        .clone()
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.downgrade_info, Some(pb::DowngradeInfo::default()));
}

#[tokio::test]
async fn the_cluster_version_follows_a_downgrade_and_comes_back_when_it_is_cancelled() {
    let server = TestServer::start(&[]);
    let mut m = maintenance(&server.endpoint()).await;
    let status = m.status(pb::StatusRequest {}).await.unwrap().into_inner();
    let (major, minor) = major_minor(&status.version);
    let downgrade = |action: DowngradeAction, version: String| {
        let mut m = m.clone();
        async move {
            m.downgrade(pb::DowngradeRequest {
                action: action as i32,
                version,
            })
            .await
            .map(tonic::Response::into_inner)
        }
    };
    let storage_version = |m: &pb::maintenance_client::MaintenanceClient<Channel>| {
        let mut m = m.clone();
        async move {
            let status = m.status(pb::StatusRequest {}).await.unwrap().into_inner();
            status.storage_version
        }
    };
    let target = format!("{major}.{}", minor - 1);
    downgrade(DowngradeAction::Enable, target.clone())
        .await
        .unwrap();
    // etcd's leader moves the cluster version on its next version check: wait for it.
    let lowered = format!("{target}.0");
    wait_until(|| async { storage_version(&m).await == lowered }).await;
    // From there, the next minor down is a valid target, but one downgrade at a time.
    for action in [DowngradeAction::Validate, DowngradeAction::Enable] {
        let again = downgrade(action, format!("{major}.{}", minor - 2))
            .await
            .unwrap_err();
        assert_eq!(
            code_and_message(&again),
            (
                Code::FailedPrecondition,
                "etcdserver: cluster has a downgrade job in progress".to_string()
            ),
            "{action:?}"
        );
    }
    let cancelled = downgrade(DowngradeAction::Cancel, String::new())
        .await
        .unwrap();
    assert_eq!(cancelled.version, target, "answered from before the cancel");
    let restored = format!("{major}.{minor}.0");
    wait_until(|| async { storage_version(&m).await == restored }).await;
}
#[tokio::test]
async fn member_list_can_be_linearizable() {
    let server = TestServer::start(&[]);
    let mut cl = pb::cluster_client::ClusterClient::new(channel(&server.endpoint()).await);
    let plain = cl
        .member_list(pb::MemberListRequest {
            linearizable: false,
        })
        .await
        .unwrap()
        .into_inner();
    let linearizable = cl
        .member_list(pb::MemberListRequest { linearizable: true })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(plain.members.len(), 1);
    assert_eq!(plain, linearizable);
}

#[tokio::test]
async fn a_downgrade_enabled_on_one_member_is_seen_by_every_member() {
    let cluster = TestCluster::start(3, &[]);
    let mut first = maintenance(&cluster.endpoint(0)).await;
    let status = first
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let (major, minor) = major_minor(&status.version);
    let target = format!("{major}.{}", minor - 1);
    first
        .downgrade(pb::DowngradeRequest {
            action: DowngradeAction::Enable as i32,
            version: target.clone(),
        })
        .await
        .unwrap();
    // Replicated through Raft: each member reports it once it has applied the entry.
    for i in 0..3 {
        let m = maintenance(&cluster.endpoint(i)).await;
        wait_until(|| {
            let mut m = m.clone();
            let wanted = format!("{target}.0");
            async move {
                let status = m.status(pb::StatusRequest {}).await.unwrap().into_inner();
                status
                    .downgrade_info
                    .is_some_and(|d| d.enabled && d.target_version == wanted)
            }
        })
        .await;
    }
}
