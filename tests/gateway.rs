//! The client port's plain HTTP: etcd's JSON gateway (`POST /v3/...`, unary and streams,
//! errors, auth, limits), `/version`, `/health`, `/livez` and `/readyz`, on the same port as
//! gRPC. Checked against what etcd 3.4 answers (see compat/curl for the whole session).

mod common;

use common::cluster::TestCluster;
use common::http::{self, b64, get, post};
use common::TestServer;
use serde_json::{json, Value};

fn header_revision(reply: &Value) -> i64 {
    reply["header"]["revision"]
        .as_str()
        .expect("revision as a string")
        .parse()
        .unwrap()
}

#[tokio::test]
async fn kv_over_json_uses_base64_strings_for_int64_and_proto_field_names() {
    let server = TestServer::start(&[]);
    let ep = server.endpoint();

    let put = post(
        &ep,
        "/v3/kv/put",
        &json!({"key": b64("foo"), "value": b64("bar")}).to_string(),
    )
    .await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(put.header("content-type"), Some("application/json"));
    assert_eq!(
        put.header("grpc-metadata-content-type"),
        Some("application/grpc")
    );
    let revision = header_revision(&put.json());

    // camelCase input, int64 given as a string, an unknown field ignored.
    let range = post(
        &ep,
        "/v3/kv/range",
        &json!({"key": b64("foo"), "rangeEnd": b64("fop"), "limit": "5", "bogus": 1}).to_string(),
    )
    .await
    .json();
    assert_eq!(range["count"], "1");
    let kv = &range["kvs"][0];
    assert_eq!(kv["key"], b64("foo"));
    assert_eq!(kv["value"], b64("bar"));
    assert_eq!(kv["create_revision"], revision.to_string());
    // Defaults are left out: no lease, no `more`.
    assert!(
        kv.get("lease").is_none() && range.get("more").is_none(),
        "{range}"
    );

    // The same call under 3.4's /v3beta/ prefix; a range of nothing is only a header.
    let nothing = post(
        &ep,
        "/v3beta/kv/range",
        &json!({"key": b64("none")}).to_string(),
    )
    .await;
    assert_eq!(
        nothing
            .json()
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["header"]
    );

    // A txn with a compare, a nested txn and a delete, enums by name.
    let txn = post(
        &ep,
        "/v3/kv/txn",
        &json!({
            "compare": [{"key": b64("foo"), "target": "VALUE", "result": "EQUAL", "value": b64("bar")}],
            "success": [
                {"request_delete_range": {"key": b64("foo"), "prev_kv": true}},
                {"request_txn": {"success": [{"request_range": {"key": b64("foo")}}]}}
            ]
        })
        .to_string(),
    )
    .await
    .json();
    assert_eq!(txn["succeeded"], true);
    assert_eq!(txn["responses"][0]["response_delete_range"]["deleted"], "1");
    assert_eq!(
        txn["responses"][0]["response_delete_range"]["prev_kvs"][0]["value"],
        b64("bar")
    );
    assert_eq!(txn["responses"][1]["response_txn"]["succeeded"], true);
}

#[tokio::test]
async fn errors_carry_etcds_code_message_and_http_status() {
    let server = TestServer::start(&[]);
    let ep = server.endpoint();

    let empty_key = post(&ep, "/v3/kv/range", "{}").await;
    assert_eq!(empty_key.status, 400);
    assert_eq!(
        empty_key.body,
        r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
    );
    let future = post(
        &ep,
        "/v3/kv/range",
        &json!({"key": b64("a"), "revision": 99}).to_string(),
    )
    .await;
    assert_eq!(
        (future.status, future.json()["code"].clone()),
        (400, json!(11))
    );
    let no_lease = post(&ep, "/v3/lease/revoke", r#"{"ID":777}"#).await;
    assert_eq!(no_lease.status, 404);
    assert_eq!(
        no_lease.json()["message"],
        "etcdserver: requested lease not found"
    );

    let malformed = post(&ep, "/v3/kv/range", r#"{"key":"Zm9v""#).await;
    assert_eq!(malformed.status, 400);
    assert_eq!(malformed.json()["message"], "unexpected EOF");
    assert_eq!(malformed.json()["code"], 3);

    let get_on_post = get(&ep, "/v3/kv/range").await;
    assert_eq!(
        (get_on_post.status, get_on_post.body.as_str()),
        (405, "Method Not Allowed\n")
    );
    let unknown_v3 = post(&ep, "/v3/kv/nothing", "{}").await;
    assert_eq!(
        (unknown_v3.status, unknown_v3.body.as_str()),
        (404, "Not Found\n")
    );
    let unknown = get(&ep, "/nothing").await;
    assert_eq!(
        (unknown.status, unknown.body.as_str()),
        (404, "404 page not found\n")
    );
    let options = http::request(&ep, "OPTIONS", "/v3/kv/range", &[], b"").await;
    assert_eq!((options.status, options.body.as_str()), (200, ""));
    assert_eq!(options.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn request_size_limits_are_the_grpc_ones() {
    let server = TestServer::start(&["--max-request-bytes", "1024"]);
    let ep = server.endpoint();
    let value = "v".repeat(2000);
    let too_large = post(
        &ep,
        "/v3/kv/put",
        &json!({"key": b64("k"), "value": b64(&value)}).to_string(),
    )
    .await;
    assert_eq!(too_large.status, 400, "{too_large:?}");
    assert_eq!(
        too_large.json()["message"],
        "etcdserver: request is too large"
    );

    // Beyond the gRPC message limit (the request limit plus 512 KiB), as grpc-go words it.
    let value = "v".repeat(600 * 1024);
    let beyond = post(
        &ep,
        "/v3/kv/put",
        &json!({"key": b64("k"), "value": b64(&value)}).to_string(),
    )
    .await;
    assert_eq!(beyond.status, 429, "{:?}", beyond.status);
    let message = beyond.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with("grpc: received message larger than max ("),
        "{message}"
    );
}

/// Cairn only: etcd reads a request body of any size before decoding it.
#[tokio::test]
async fn a_json_body_beyond_any_allowed_message_is_refused_unread() {
    let server = TestServer::start(&["--max-request-bytes", "1024"]);
    // Four times the gRPC message limit (1 KiB + 512 KiB) is the most JSON read.
    let padded = format!("{}{{}}", " ".repeat(3 * 1024 * 1024));
    let refused = post(&server.endpoint(), "/v3/kv/range", &padded).await;
    assert_eq!(refused.status, 429);
    let message = refused.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.starts_with("grpc: received message larger than max ("),
        "{message}"
    );
}

#[tokio::test]
async fn watch_streams_one_result_line_per_chunk_as_events_happen() {
    let server = TestServer::start(&[]);
    let ep = server.endpoint();
    let create = json!({"create_request": {"key": b64("w"), "prev_kv": true}}).to_string();
    let mut watch = http::open(&ep, "POST", "/v3/watch", &[], create.as_bytes()).await;
    assert_eq!(watch.status, 200);
    let created = watch.next_json().await;
    assert_eq!(created["result"]["created"], true, "{created}");

    // The body ended, the watch goes on: events arrive as they are committed.
    let mut client = server.client().await;
    client.put("w", "1", None).await.unwrap();
    client.delete("w", None).await.unwrap();
    let put = watch.next_json().await;
    assert_eq!(put["result"]["events"][0]["kv"]["value"], b64("1"), "{put}");
    assert!(
        put["result"]["events"][0].get("type").is_none(),
        "PUT is the default: {put}"
    );
    let deleted = watch.next_json().await;
    assert_eq!(deleted["result"]["events"][0]["type"], "DELETE");
    assert_eq!(deleted["result"]["events"][0]["prev_kv"]["value"], b64("1"));
}

#[tokio::test]
async fn keep_alive_answers_each_request_then_ends() {
    let server = TestServer::start(&[]);
    let ep = server.endpoint();
    let granted = post(&ep, "/v3/lease/grant", r#"{"TTL":60,"ID":1000}"#)
        .await
        .json();
    assert_eq!(
        (granted["ID"].as_str(), granted["TTL"].as_str()),
        (Some("1000"), Some("60"))
    );
    let reply = post(&ep, "/v3/lease/keepalive", r#"{"ID":1000}{"ID":"1000"}"#).await;
    let lines: Vec<Value> = reply
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", reply.body);
    assert!(
        lines.iter().all(|l| l["result"]["TTL"] == "60"),
        "{}",
        reply.body
    );
    // 3.4's alias.
    let ttl = post(&ep, "/v3/kv/lease/timetolive", r#"{"ID":1000}"#)
        .await
        .json();
    assert_eq!(ttl["grantedTTL"], "60");
}

#[tokio::test]
async fn auth_takes_the_token_from_the_authorization_header() {
    let server = TestServer::start(&["--bcrypt-cost", "4"]);
    let ep = server.endpoint();
    for (path, body) in [
        (
            "/v3/auth/user/add",
            r#"{"name":"root","password":"rootpw"}"#,
        ),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/enable", "{}"),
    ] {
        assert_eq!(post(&ep, path, body).await.status, 200, "{path}");
    }
    let anonymous = post(
        &ep,
        "/v3/kv/put",
        &json!({"key": b64("a"), "value": b64("1")}).to_string(),
    )
    .await;
    assert_eq!(anonymous.status, 400);
    assert_eq!(
        anonymous.json()["message"],
        "etcdserver: user name is empty"
    );

    let token = post(
        &ep,
        "/v3/auth/authenticate",
        r#"{"name":"root","password":"rootpw"}"#,
    )
    .await
    .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let put = json!({"key": b64("a"), "value": b64("1")}).to_string();
    let with_token = http::request(
        &ep,
        "POST",
        "/v3/kv/put",
        &[("Authorization", &token)],
        put.as_bytes(),
    )
    .await;
    assert_eq!(with_token.status, 200, "{with_token:?}");
    let bad = http::request(
        &ep,
        "POST",
        "/v3/kv/put",
        &[("Authorization", "nope")],
        put.as_bytes(),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["message"], "etcdserver: invalid auth token");
}

#[tokio::test]
async fn version_and_health() {
    let server = TestServer::start(&[]);
    let ep = server.endpoint();
    let version = get(&ep, "/version").await;
    assert_eq!(version.header("content-type"), Some("application/json"));
    let version = version.json();
    // A member alone: the cluster version is its own major.minor.
    let server = version["etcdserver"].as_str().unwrap();
    let major_minor = server.rsplit_once('.').expect("major.minor.patch").0;
    assert!(server.starts_with("3."), "{version}");
    assert_eq!(
        version["etcdcluster"].as_str().unwrap(),
        format!("{major_minor}.0"),
        "{version}"
    );

    // etcd 3.5+'s body, which Cairn writes; 3.4's has no reason.
    let healthy = if server.starts_with("3.4.") {
        r#"{"health":"true"}"#
    } else {
        r#"{"health":"true","reason":""}"#
    };
    let health = get(&ep, "/health").await;
    assert_eq!((health.status, health.body.as_str()), (200, healthy));
    let serializable = get(&ep, "/health?serializable=true").await;
    assert_eq!(serializable.status, 200);
    let post_health = post(&ep, "/health", "").await;
    assert_eq!(
        (post_health.status, post_health.header("allow")),
        (405, Some("GET"))
    );
}

/// etcd 3.6's probes (3.4.29 and 3.5.11 have them too; 3.4.23 answers 404).
#[tokio::test]
async fn livez_and_readyz() {
    let server = TestServer::start(&[]);
    let ep = server.endpoint();
    assert_eq!(get(&ep, "/livez").await.body, "ok\n");
    assert_eq!(
        get(&ep, "/livez?verbose").await.body,
        "[+]serializable_read ok\nok\n"
    );
    // etcd lists the checks in no fixed order; Cairn in this one.
    let ready = get(&ep, "/readyz?verbose=true&exclude=non_learner").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (
            200,
            "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n"
        )
    );
    assert_eq!(get(&ep, "/readyz/linearizable_read").await.body, "ok\n");
    assert_eq!(get(&ep, "/readyz/nothing").await.status, 404);
}

/// Two members, one gone: the other has no leader, and never will. Its endpoint.
fn member_without_leader() -> (TestCluster, String) {
    let mut cluster = TestCluster::start(2, &[]);
    cluster.kill9(1);
    let ep = cluster.endpoint(0);
    (cluster, ep)
}

/// The first answer of `path` that is not 200: a linearizable read needs both members, so
/// each check fails within its read's deadline once the member has noticed.
async fn first_failure(ep: &str, path: &str) -> http::HttpReply {
    for _ in 0..10 {
        let reply = get(ep, path).await;
        if reply.status != 200 {
            return reply;
        }
    }
    panic!("{path} stayed healthy without a leader");
}

#[tokio::test]
async fn health_is_false_without_a_leader() {
    let (_cluster, ep) = member_without_leader();
    let health = first_failure(&ep, "/health").await;
    let version = get(&ep, "/version").await.json();
    assert_eq!(health.status, 503);
    if version["etcdserver"].as_str().unwrap().starts_with("3.4.") {
        assert_eq!(health.body, "{\"health\":\"false\"}\n");
    } else {
        // etcd 3.5+ say why: no leader, or, before the member has noticed, the read that
        // could not be served.
        assert!(health.body.ends_with('\n'), "{}", health.body);
        let body = health.json();
        assert_eq!(body["health"], "false");
        let reason = body["reason"].as_str().unwrap();
        assert!(
            reason == "RAFT NO LEADER" || reason.starts_with("RANGE ERROR:"),
            "{reason}"
        );
    }
    assert_eq!(get(&ep, "/health?exclude=NOSPACE").await.status, 503);
}

/// etcd 3.5+: a serializable check needs no leader, nor do the probes' local checks (etcd
/// 3.4 ignores `serializable` and has no probes).
#[tokio::test]
async fn local_checks_pass_without_a_leader() {
    let (_cluster, ep) = member_without_leader();
    let ready = first_failure(&ep, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.body.contains("[+]serializable_read ok\n"),
        "{}",
        ready.body
    );
    assert!(
        ready.body.contains("[-]linearizable_read failed: "),
        "{}",
        ready.body
    );
    assert_eq!(get(&ep, "/health?serializable=true").await.status, 200);
    assert_eq!(get(&ep, "/livez").await.status, 200);
}
