//! Authentication and authorisation (etcd's Auth service): users, roles, key-range
//! permissions, tokens, and who may call what once auth is enabled.
//!
//! Covered:
//! - every RPC of the Auth service and its errors: enabling (root user and root role
//!   required), disabling, status, authenticating (wrong password, password-less users,
//!   auth disabled), users, roles, granting and revoking roles and permissions, root's
//!   protection, management by non-root users, requests without credentials or with an
//!   unknown token;
//! - permission rules: READ, WRITE and READWRITE on a key, a range, a prefix and "from key";
//!   requests wider than the permission; permissions of two roles merged; every compare and
//!   op of a Txn; prev_kv needing read; watches; leases (revoke, puts with a lease);
//! - which maintenance and cluster requests need the root role (Defragment, Snapshot, Hash,
//!   HashKV, MemberAdd/Remove/Update/Promote) and which any user may make (Status, Alarm,
//!   Compaction, MemberList, and MoveLeader, in the cluster test);
//! - tokens: simple tokens expire after `--auth-token-ttl` unused, a permission or role
//!   revoked takes effect on an open client, a password change or user deletion invalidates
//!   the user's tokens, JWT tokens (RS256, ES256) with their claims, staleness and expiry;
//! - the client certificate's common name as the user (`--client-cert-auth`), and a token
//!   taking precedence over it;
//! - auth in a three-member cluster (through a follower, a token used on another member);
//! - `--bcrypt-cost`, and etcdctl's `--user`, `role get`, `user get --detail`.
//!
//! Errors are checked by gRPC code and exact message. Where a call needs raw metadata (an
//! unknown token, one client's token on another member) or an RPC etcd-client lacks
//! (AuthStatus), the test speaks gRPC through tonic with Cairn's generated clients. Every
//! test was checked against etcd 3.4 (`CAIRN_TEST_SERVER_BIN=/usr/bin/etcd`); where etcd
//! behaves surprisingly, a comment says so.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cairn::proto::etcdserverpb as pb;
use common::cluster::{kvs, TestCluster};
use common::{assert_grpc_error, Code, TestServer};
use etcd_client::{
    AlarmAction, AlarmOptions, AlarmType, Certificate, Client, Compare, CompareOp, ConnectOptions,
    DeleteOptions, Error, GetOptions, Identity, LeaseTimeToLiveOptions, MemberAddOptions,
    Permission, PermissionType, PutOptions, RoleRevokePermissionOptions, TlsOptions, Txn, TxnOp,
    UserAddOptions, WatchOptions, WatchResponse, WatchStream,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use tonic::transport::Channel;

const ROOT_PASSWORD: &str = "root-secret";
/// A safety net against a hung call, not a performance bound.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on waiting for a watch response or a cluster's leader.
const WAIT: Duration = Duration::from_secs(20);
const ETCDCTL: &str = "/usr/bin/etcdctl";

// etcd's error messages (etcd 3.4 `rpctypes`).
const PERMISSION_DENIED: &str = "etcdserver: permission denied";
const USER_EMPTY: &str = "etcdserver: user name is empty";
const ROLE_EMPTY: &str = "etcdserver: role name is empty";
const USER_EXISTS: &str = "etcdserver: user name already exists";
const USER_NOT_FOUND: &str = "etcdserver: user name not found";
const ROLE_EXISTS: &str = "etcdserver: role name already exists";
const ROLE_NOT_FOUND: &str = "etcdserver: role name not found";
const ROLE_NOT_GRANTED: &str = "etcdserver: role is not granted to the user";
const PERMISSION_NOT_GRANTED: &str = "etcdserver: permission is not granted to the role";
const AUTH_FAILED: &str = "etcdserver: authentication failed, invalid user ID or password";
const AUTH_NOT_ENABLED: &str = "etcdserver: authentication is not enabled";
const INVALID_AUTH_MGMT: &str = "etcdserver: invalid auth management";
const INVALID_TOKEN: &str = "etcdserver: invalid auth token";
const AUTH_OLD_REVISION: &str = "etcdserver: revision of auth store is old";
const ROOT_USER_MISSING: &str = "etcdserver: root user does not exist";
const ROOT_ROLE_MISSING: &str = "etcdserver: root user does not have root role";
/// Maintenance requests reserved to root answer with the auth store's own error, not
/// translated to a gRPC code (etcd 3.4).
const MAINTENANCE_DENIED: &str = "auth: permission denied";
/// The cancel reason of a watch refused for want of read permission: etcd 3.4 gives the
/// text of the whole gRPC error, code included.
const WATCH_DENIED: &str =
    "rpc error: code = PermissionDenied desc = etcdserver: permission denied";

fn testing_cairn() -> bool {
    !common::server_bin().ends_with("etcd")
}

// ---------------------------------------------------------------------------------
// Servers, users and clients
// ---------------------------------------------------------------------------------

fn password_of(user: &str) -> String {
    format!("{user}-secret")
}

/// Options of a client that authenticates as `user` with `password` when it connects.
fn as_user(user: &str, password: &str) -> ConnectOptions {
    ConnectOptions::new()
        .with_user(user, password)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(CALL_TIMEOUT)
}

/// A client of `endpoints` authenticated as `user` (whose password is `password_of`, or
/// ROOT_PASSWORD for root).
async fn login(endpoints: &[String], user: &str) -> Client {
    let password = if user == "root" {
        ROOT_PASSWORD.to_string()
    } else {
        password_of(user)
    };
    Client::connect(endpoints, Some(as_user(user, &password)))
        .await
        .unwrap_or_else(|e| panic!("connect to {endpoints:?} as {user}: {e}"))
}

/// Adds the root user with the root role and enables auth, through a client that needs no
/// credentials (auth is still off).
async fn enable_auth(c: &mut Client) {
    c.user_add("root", ROOT_PASSWORD, None)
        .await
        .expect("add user root");
    c.role_add("root").await.expect("add role root");
    c.user_grant_role("root", "root")
        .await
        .expect("grant root the root role");
    c.auth_enable().await.expect("enable auth");
}

/// A fresh server with auth enabled, and a client authenticated as root.
async fn auth_server(args: &[&str]) -> (TestServer, Client) {
    let server = TestServer::start(args);
    let mut anonymous = server.client().await;
    enable_auth(&mut anonymous).await;
    let root = login(&[server.endpoint()], "root").await;
    (server, root)
}

/// Adds `user` (password `password_of(user)`) with one role, `<user>-role`, that holds
/// `perms`.
async fn add_user(root: &mut Client, user: &str, perms: Vec<Permission>) {
    let role = format!("{user}-role");
    root.user_add(user, password_of(user), None)
        .await
        .unwrap_or_else(|e| panic!("add user {user}: {e}"));
    root.role_add(role.as_str())
        .await
        .unwrap_or_else(|e| panic!("add role {role}: {e}"));
    for perm in perms {
        root.role_grant_permission(role.as_str(), perm)
            .await
            .unwrap_or_else(|e| panic!("grant a permission to {role}: {e}"));
    }
    root.user_grant_role(user, role.as_str())
        .await
        .unwrap_or_else(|e| panic!("grant {role} to {user}: {e}"));
}

#[track_caller]
fn assert_denied<T: std::fmt::Debug>(result: Result<T, Error>) {
    assert_grpc_error(result, Code::PermissionDenied, PERMISSION_DENIED);
}

/// The value of `key` as `c` reads it, if it exists.
async fn value(c: &mut Client, key: &str) -> Option<String> {
    let resp = c.get(key, None).await.expect("get");
    resp.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// Keys of a successful range, in order.
fn keys_of(resp: &etcd_client::GetResponse) -> Vec<String> {
    resp.kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------
// Raw gRPC: requests with a token of the test's choosing
// ---------------------------------------------------------------------------------

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"))
}

/// `msg` as a request carrying `token` in the `token` metadata, as etcd's clients send it.
fn with_token<T>(msg: T, token: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    if let Some(token) = token {
        req.metadata_mut()
            .insert("token", token.parse().expect("ASCII token"));
    }
    req
}

fn status_error(status: tonic::Status) -> Error {
    Error::GRpcStatus(status)
}

/// Authenticates `name` with `password`; the token.
async fn raw_authenticate(endpoint: &str, name: &str, password: &str) -> Result<String, Error> {
    let mut auth = pb::auth_client::AuthClient::new(channel(endpoint).await);
    auth.authenticate(pb::AuthenticateRequest {
        name: name.to_string(),
        password: password.to_string(),
    })
    .await
    .map(|r| r.into_inner().token)
    .map_err(status_error)
}

/// Reads `key` with `token`; the values found.
async fn raw_get(endpoint: &str, token: &str, key: &str) -> Result<Vec<String>, Error> {
    let mut kv = pb::kv_client::KvClient::new(channel(endpoint).await);
    let req = pb::RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    };
    kv.range(with_token(req, Some(token)))
        .await
        .map(|r| {
            r.into_inner()
                .kvs
                .iter()
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                .collect()
        })
        .map_err(status_error)
}

/// Puts `key` = `value` with `token`.
async fn raw_put(endpoint: &str, token: &str, key: &str, value: &str) -> Result<(), Error> {
    let mut kv = pb::kv_client::KvClient::new(channel(endpoint).await);
    let req = pb::PutRequest {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        ..Default::default()
    };
    kv.put(with_token(req, Some(token)))
        .await
        .map(|_| ())
        .map_err(status_error)
}

async fn raw_auth_status(
    endpoint: &str,
    token: Option<&str>,
) -> Result<pb::AuthStatusResponse, Error> {
    let mut auth = pb::auth_client::AuthClient::new(channel(endpoint).await);
    auth.auth_status(with_token(pb::AuthStatusRequest {}, token))
        .await
        .map(|r| r.into_inner())
        .map_err(status_error)
}

// ---------------------------------------------------------------------------------
// The Auth service
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn auth_enable_needs_a_root_user_with_the_root_role_and_auth_disable_turns_it_off() {
    let server = TestServer::start(&[]);
    let endpoint = server.endpoint();
    let mut anonymous = server.client().await;

    assert_grpc_error(
        anonymous.auth_enable().await,
        Code::FailedPrecondition,
        ROOT_USER_MISSING,
    );
    anonymous
        .user_add("root", ROOT_PASSWORD, None)
        .await
        .expect("add root");
    assert_grpc_error(
        anonymous.auth_enable().await,
        Code::FailedPrecondition,
        ROOT_ROLE_MISSING,
    );
    // While auth is off, nobody can authenticate, not even root.
    assert_grpc_error(
        raw_authenticate(&endpoint, "root", ROOT_PASSWORD).await,
        Code::FailedPrecondition,
        AUTH_NOT_ENABLED,
    );
    anonymous.put("k", "before", None).await.expect("put");

    anonymous.role_add("root").await.expect("add role root");
    anonymous
        .user_grant_role("root", "root")
        .await
        .expect("grant root");
    anonymous.auth_enable().await.expect("enable auth");

    // The client without credentials is now refused, management and data alike.
    assert_grpc_error(
        anonymous.get("k", None).await,
        Code::InvalidArgument,
        USER_EMPTY,
    );
    assert_grpc_error(
        anonymous.auth_disable().await,
        Code::InvalidArgument,
        USER_EMPTY,
    );

    let mut root = login(&[endpoint.clone()], "root").await;
    assert_eq!(value(&mut root, "k").await.as_deref(), Some("before"));
    root.put("k", "during", None).await.expect("root puts");
    // Enabling what is enabled is no error.
    root.auth_enable().await.expect("enable auth again");

    root.auth_disable().await.expect("disable auth");
    assert_eq!(
        value(&mut anonymous, "k").await.as_deref(),
        Some("during"),
        "auth off: a client without credentials reads again"
    );
    anonymous.put("k", "after", None).await.expect("put");
    assert_grpc_error(
        raw_authenticate(&endpoint, "root", ROOT_PASSWORD).await,
        Code::FailedPrecondition,
        AUTH_NOT_ENABLED,
    );
    // Users and roles outlive the switch: enabling again needs nothing new.
    anonymous.auth_enable().await.expect("enable auth again");
    assert_grpc_error(
        anonymous.get("k", None).await,
        Code::InvalidArgument,
        USER_EMPTY,
    );
}

#[tokio::test]
async fn auth_status_reports_whether_auth_is_enabled_and_its_revision() {
    let server = TestServer::start(&[]);
    let endpoint = server.endpoint();
    let before = raw_auth_status(&endpoint, None).await;
    if !testing_cairn() {
        // AuthStatus is etcd 3.5's; etcd 3.4 does not serve it.
        assert_grpc_error(
            before,
            Code::Unimplemented,
            "unknown method AuthStatus for service etcdserverpb.Auth",
        );
        return;
    }
    let before = before.expect("auth status, auth off");
    assert!(!before.enabled, "{before:?}");

    let mut anonymous = server.client().await;
    enable_auth(&mut anonymous).await;
    let token = raw_authenticate(&endpoint, "root", ROOT_PASSWORD)
        .await
        .expect("authenticate root");
    let enabled = raw_auth_status(&endpoint, Some(&token))
        .await
        .expect("auth status, auth on");
    assert!(enabled.enabled, "{enabled:?}");
    assert!(
        enabled.auth_revision > before.auth_revision,
        "adding root and enabling auth moved no revision: {before:?} then {enabled:?}"
    );

    let mut root = login(&[endpoint.clone()], "root").await;
    root.role_add("another").await.expect("add role");
    let later = raw_auth_status(&endpoint, Some(&token))
        .await
        .expect("auth status");
    assert!(later.enabled);
    assert!(
        later.auth_revision > enabled.auth_revision,
        "a role added moved no revision: {enabled:?} then {later:?}"
    );
}

#[tokio::test]
async fn users_are_added_read_listed_and_deleted() {
    let (_server, mut root) = auth_server(&[]).await;

    assert_grpc_error(
        root.user_add("", "pw", None).await,
        Code::InvalidArgument,
        USER_EMPTY,
    );
    root.user_add("alice", "alice-pw", None)
        .await
        .expect("add alice");
    root.user_add("bob", "", Some(UserAddOptions::new().with_no_pwd()))
        .await
        .expect("add bob without a password");
    assert_grpc_error(
        root.user_add("alice", "other", None).await,
        Code::FailedPrecondition,
        USER_EXISTS,
    );

    let list = root.user_list().await.expect("user list");
    assert_eq!(list.users(), ["alice", "bob", "root"]);
    assert_eq!(root.user_get("root").await.unwrap().roles(), ["root"]);
    assert!(root.user_get("alice").await.unwrap().roles().is_empty());
    assert_grpc_error(
        root.user_get("nobody").await,
        Code::FailedPrecondition,
        USER_NOT_FOUND,
    );

    root.user_delete("bob").await.expect("delete bob");
    assert_grpc_error(
        root.user_delete("bob").await,
        Code::FailedPrecondition,
        USER_NOT_FOUND,
    );
    assert_grpc_error(
        root.user_get("bob").await,
        Code::FailedPrecondition,
        USER_NOT_FOUND,
    );
    assert_grpc_error(
        root.user_change_password("nobody", "pw").await,
        Code::FailedPrecondition,
        USER_NOT_FOUND,
    );
    let list = root.user_list().await.expect("user list");
    assert_eq!(list.users(), ["alice", "root"]);
}

#[tokio::test]
async fn authenticate_checks_the_password_and_refuses_password_less_users() {
    let (server, mut root) = auth_server(&[]).await;
    let endpoint = server.endpoint();
    add_user(&mut root, "alice", vec![Permission::read_write("k")]).await;
    root.user_add("bob", "", Some(UserAddOptions::new().with_no_pwd()))
        .await
        .expect("add bob without a password");

    let token = raw_authenticate(&endpoint, "alice", &password_of("alice"))
        .await
        .expect("authenticate alice");
    assert!(!token.is_empty());
    raw_put(&endpoint, &token, "k", "v")
        .await
        .expect("put with the token");

    for (user, password) in [("alice", "wrong"), ("alice", ""), ("nobody", "pw")] {
        assert_grpc_error(
            raw_authenticate(&endpoint, user, password).await,
            Code::InvalidArgument,
            AUTH_FAILED,
        );
    }
    // etcd 3.4 refuses a password-less user with the auth store's own error (code Unknown),
    // whatever password is given, the empty one included.
    for password in ["", "anything"] {
        assert_grpc_error(
            raw_authenticate(&endpoint, "bob", password).await,
            Code::Unknown,
            "auth: authentication failed, password was given for no password user",
        );
    }
    // etcd-client authenticates when it connects.
    let refused = Client::connect([endpoint.as_str()], Some(as_user("alice", "wrong"))).await;
    assert_grpc_error(refused.map(|_| ()), Code::InvalidArgument, AUTH_FAILED);

    root.user_change_password("alice", "new-pw")
        .await
        .expect("change alice's password");
    assert_grpc_error(
        raw_authenticate(&endpoint, "alice", &password_of("alice")).await,
        Code::InvalidArgument,
        AUTH_FAILED,
    );
    let mut alice = Client::connect([endpoint.as_str()], Some(as_user("alice", "new-pw")))
        .await
        .expect("connect with the new password");
    assert_eq!(value(&mut alice, "k").await.as_deref(), Some("v"));
}

#[tokio::test]
async fn roles_are_added_read_listed_and_deleted_and_granted_to_users() {
    let (_server, mut root) = auth_server(&[]).await;
    root.user_add("alice", "pw", None).await.expect("add alice");

    assert_grpc_error(root.role_add("").await, Code::InvalidArgument, ROLE_EMPTY);
    root.role_add("reader").await.expect("add reader");
    root.role_add("writer").await.expect("add writer");
    assert_grpc_error(
        root.role_add("reader").await,
        Code::FailedPrecondition,
        ROLE_EXISTS,
    );
    assert_eq!(
        root.role_list().await.unwrap().roles(),
        ["reader", "root", "writer"]
    );
    assert!(root
        .role_get("reader")
        .await
        .unwrap()
        .permissions()
        .is_empty());
    assert!(root
        .role_get("root")
        .await
        .unwrap()
        .permissions()
        .is_empty());
    assert_grpc_error(
        root.role_get("nobody").await,
        Code::FailedPrecondition,
        ROLE_NOT_FOUND,
    );

    root.user_grant_role("alice", "writer")
        .await
        .expect("grant");
    root.user_grant_role("alice", "reader")
        .await
        .expect("grant");
    // Granting what is granted is no error.
    root.user_grant_role("alice", "reader")
        .await
        .expect("grant again");
    assert_eq!(
        root.user_get("alice").await.unwrap().roles(),
        ["reader", "writer"]
    );
    assert_grpc_error(
        root.user_grant_role("alice", "nobody").await,
        Code::FailedPrecondition,
        ROLE_NOT_FOUND,
    );
    assert_grpc_error(
        root.user_grant_role("nobody", "reader").await,
        Code::FailedPrecondition,
        USER_NOT_FOUND,
    );

    root.user_revoke_role("alice", "writer")
        .await
        .expect("revoke writer");
    assert_eq!(root.user_get("alice").await.unwrap().roles(), ["reader"]);
    assert_grpc_error(
        root.user_revoke_role("alice", "writer").await,
        Code::FailedPrecondition,
        ROLE_NOT_GRANTED,
    );
    assert_grpc_error(
        root.user_revoke_role("nobody", "writer").await,
        Code::FailedPrecondition,
        USER_NOT_FOUND,
    );

    // Deleting a role takes it from every user that had it.
    root.role_delete("reader").await.expect("delete reader");
    assert!(root.user_get("alice").await.unwrap().roles().is_empty());
    assert_eq!(root.role_list().await.unwrap().roles(), ["root", "writer"]);
    assert_grpc_error(
        root.role_delete("reader").await,
        Code::FailedPrecondition,
        ROLE_NOT_FOUND,
    );
    assert_grpc_error(
        root.role_get("reader").await,
        Code::FailedPrecondition,
        ROLE_NOT_FOUND,
    );
}

/// (type, key, range_end) of each permission of `role`, as RoleGet returns them.
async fn permissions_of(root: &mut Client, role: &str) -> Vec<(PermissionType, String, String)> {
    let resp = root.role_get(role).await.expect("role get");
    resp.permissions()
        .iter()
        .map(|p| {
            (
                PermissionType::try_from(p.get_type()).expect("a permission type"),
                String::from_utf8_lossy(p.key()).into_owned(),
                String::from_utf8_lossy(p.range_end()).into_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn permissions_are_granted_to_and_revoked_from_roles() {
    use PermissionType::{Read, Readwrite, Write};
    let (_server, mut root) = auth_server(&[]).await;
    root.role_add("r").await.expect("add role");

    for perm in [
        Permission::read("k1"),
        Permission::write("a").with_range_end("c"),
        Permission::read_write("p/").with_prefix(),
        Permission::read("z").with_from_key(),
    ] {
        root.role_grant_permission("r", perm)
            .await
            .expect("grant permission");
    }
    let s = |v: &str| v.to_string();
    // Listed in key order; a prefix is [prefix, prefix+1), "from key" ends at "\0".
    assert_eq!(
        permissions_of(&mut root, "r").await,
        vec![
            (Write, s("a"), s("c")),
            (Read, s("k1"), s("")),
            (Readwrite, s("p/"), s("p0")),
            (Read, s("z"), s("\0")),
        ]
    );
    // The same key and range granted again replaces the type.
    root.role_grant_permission("r", Permission::read_write("k1"))
        .await
        .expect("grant again");
    assert_eq!(
        permissions_of(&mut root, "r").await[1],
        (Readwrite, s("k1"), s(""))
    );
    assert_grpc_error(
        root.role_grant_permission("nobody", Permission::read("k1"))
            .await,
        Code::FailedPrecondition,
        ROLE_NOT_FOUND,
    );

    root.role_revoke_permission("r", "k1", None)
        .await
        .expect("revoke k1");
    assert_grpc_error(
        root.role_revoke_permission("r", "k1", None).await,
        Code::FailedPrecondition,
        PERMISSION_NOT_GRANTED,
    );
    // A permission is revoked by its exact key and range end.
    assert_grpc_error(
        root.role_revoke_permission("r", "a", None).await,
        Code::FailedPrecondition,
        PERMISSION_NOT_GRANTED,
    );
    assert_grpc_error(
        root.role_revoke_permission(
            "r",
            "a",
            Some(RoleRevokePermissionOptions::new().with_range_end("b")),
        )
        .await,
        Code::FailedPrecondition,
        PERMISSION_NOT_GRANTED,
    );
    root.role_revoke_permission(
        "r",
        "a",
        Some(RoleRevokePermissionOptions::new().with_range_end("c")),
    )
    .await
    .expect("revoke [a, c)");
    root.role_revoke_permission(
        "r",
        "p/",
        Some(RoleRevokePermissionOptions::new().with_prefix()),
    )
    .await
    .expect("revoke prefix p/");
    assert_eq!(
        permissions_of(&mut root, "r").await,
        vec![(Read, s("z"), s("\0"))]
    );
    assert_grpc_error(
        root.role_revoke_permission("nobody", "z", None).await,
        Code::FailedPrecondition,
        ROLE_NOT_FOUND,
    );
}

#[tokio::test]
async fn root_cannot_be_removed_while_auth_is_enabled() {
    let (server, mut root) = auth_server(&[]).await;
    assert_grpc_error(
        root.user_delete("root").await,
        Code::InvalidArgument,
        INVALID_AUTH_MGMT,
    );
    assert_grpc_error(
        root.user_revoke_role("root", "root").await,
        Code::InvalidArgument,
        INVALID_AUTH_MGMT,
    );
    assert_grpc_error(
        root.role_delete("root").await,
        Code::InvalidArgument,
        INVALID_AUTH_MGMT,
    );
    assert_eq!(root.user_get("root").await.unwrap().roles(), ["root"]);

    // The root role makes any user an administrator.
    root.user_add("admin", password_of("admin"), None)
        .await
        .expect("add admin");
    root.user_grant_role("admin", "root")
        .await
        .expect("grant root to admin");
    let mut admin = login(&[server.endpoint()], "admin").await;
    assert_eq!(
        admin.user_list().await.expect("admin lists users").users(),
        ["admin", "root"]
    );
    admin.put("any/key", "v", None).await.expect("admin puts");

    // With auth off, root is a user like any other.
    root.auth_disable().await.expect("disable auth");
    let mut anonymous = server.client().await;
    anonymous
        .user_revoke_role("root", "root")
        .await
        .expect("revoke root's root role");
    anonymous
        .role_delete("root")
        .await
        .expect("delete the root role");
    anonymous.user_delete("root").await.expect("delete root");
    assert_eq!(anonymous.user_list().await.unwrap().users(), ["admin"]);
    assert_grpc_error(
        anonymous.auth_enable().await,
        Code::FailedPrecondition,
        ROOT_USER_MISSING,
    );
}

#[tokio::test]
async fn only_root_manages_users_and_roles() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(&mut root, "alice", vec![Permission::read_write("k")]).await;
    add_user(&mut root, "bob", vec![]).await;
    let mut alice = login(&[server.endpoint()], "alice").await;

    assert_denied(alice.user_add("eve", "pw", None).await);
    assert_denied(alice.user_list().await);
    assert_denied(alice.user_delete("bob").await);
    // Not even their own password (etcd 3.4: UserChangePassword is root's only).
    assert_denied(alice.user_change_password("alice", "new").await);
    assert_denied(alice.user_grant_role("alice", "root").await);
    assert_denied(alice.user_revoke_role("alice", "alice-role").await);
    assert_denied(alice.role_add("mine").await);
    assert_denied(alice.role_list().await);
    assert_denied(alice.role_delete("bob-role").await);
    assert_denied(
        alice
            .role_grant_permission("alice-role", Permission::read_write("other"))
            .await,
    );
    assert_denied(alice.role_revoke_permission("alice-role", "k", None).await);
    assert_denied(alice.auth_disable().await);
    assert_denied(alice.auth_enable().await);

    // A user may read itself and the roles it has, nothing else.
    assert_eq!(
        alice.user_get("alice").await.expect("own user").roles(),
        ["alice-role"]
    );
    assert_eq!(
        alice
            .role_get("alice-role")
            .await
            .expect("own role")
            .permissions()
            .len(),
        1
    );
    assert_denied(alice.user_get("bob").await);
    assert_denied(alice.user_get("root").await);
    assert_denied(alice.role_get("bob-role").await);
    assert_denied(alice.role_get("root").await);

    // Nothing changed.
    assert_eq!(
        root.user_list().await.unwrap().users(),
        ["alice", "bob", "root"]
    );
    assert!(
        raw_authenticate(&server.endpoint(), "alice", &password_of("alice"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let (server, mut root) = auth_server(&[]).await;
    let endpoint = server.endpoint();
    root.put("k", "v", None).await.expect("root puts");
    let mut anonymous = server.client().await;

    // No credentials at all: the request has no user.
    assert_grpc_error(
        anonymous.get("k", None).await,
        Code::InvalidArgument,
        USER_EMPTY,
    );
    assert_grpc_error(
        anonymous.put("k", "x", None).await,
        Code::InvalidArgument,
        USER_EMPTY,
    );
    assert_grpc_error(
        anonymous.delete("k", None).await,
        Code::InvalidArgument,
        USER_EMPTY,
    );
    assert_grpc_error(
        anonymous
            .txn(Txn::new().and_then(vec![TxnOp::get("k", None)]))
            .await,
        Code::InvalidArgument,
        USER_EMPTY,
    );
    assert_grpc_error(
        anonymous.user_list().await,
        Code::InvalidArgument,
        USER_EMPTY,
    );
    assert_grpc_error(
        anonymous.role_add("r").await,
        Code::InvalidArgument,
        USER_EMPTY,
    );
    // Status and the member list need no user.
    anonymous
        .status()
        .await
        .expect("status without credentials");
    anonymous
        .member_list()
        .await
        .expect("member list without credentials");
    // etcd 3.4 grants a lease to a request without credentials.
    anonymous
        .lease_grant(60, None)
        .await
        .expect("lease grant without credentials");

    // A token the server never issued.
    assert_grpc_error(
        raw_get(&endpoint, "xyz", "k").await,
        Code::Unauthenticated,
        INVALID_TOKEN,
    );
    assert_grpc_error(
        raw_put(&endpoint, "xyz", "k", "x").await,
        Code::Unauthenticated,
        INVALID_TOKEN,
    );
    assert_eq!(value(&mut root, "k").await.as_deref(), Some("v"));
}

// ---------------------------------------------------------------------------------
// Permission rules
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn read_write_and_readwrite_on_a_single_key() {
    let (server, mut root) = auth_server(&[]).await;
    let ep = [server.endpoint()];
    add_user(&mut root, "reader", vec![Permission::read("k")]).await;
    add_user(&mut root, "writer", vec![Permission::write("k")]).await;
    add_user(&mut root, "both", vec![Permission::read_write("k")]).await;
    root.put("k", "v0", None).await.unwrap();
    root.put("k2", "x", None).await.unwrap();

    let mut reader = login(&ep, "reader").await;
    assert_eq!(value(&mut reader, "k").await.as_deref(), Some("v0"));
    assert_denied(reader.put("k", "r", None).await);
    assert_denied(reader.delete("k", None).await);
    // Neither a neighbouring key nor a range that holds more than the key.
    assert_denied(reader.get("k2", None).await);
    assert_denied(reader.get("k", Some(GetOptions::new().with_prefix())).await);

    let mut writer = login(&ep, "writer").await;
    assert_denied(writer.get("k", None).await);
    writer.put("k", "w", None).await.expect("writer puts");
    assert_denied(writer.put("k2", "w", None).await);
    assert_eq!(
        writer
            .delete("k", None)
            .await
            .expect("writer deletes")
            .deleted(),
        1
    );
    assert_denied(writer.delete("k2", None).await);

    let mut both = login(&ep, "both").await;
    both.put("k", "b", None).await.expect("put");
    assert_eq!(value(&mut both, "k").await.as_deref(), Some("b"));
    assert_eq!(both.delete("k", None).await.expect("delete").deleted(), 1);
    assert_denied(both.get("k2", None).await);

    assert_eq!(value(&mut root, "k2").await.as_deref(), Some("x"));
    assert_eq!(value(&mut root, "k").await, None);
}

#[tokio::test]
async fn a_range_permission_covers_requests_inside_it_only() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(
        &mut root,
        "alice",
        vec![Permission::read_write("b").with_range_end("d")],
    )
    .await;
    for k in ["a", "b", "c", "cz", "d"] {
        root.put(k, k, None).await.unwrap();
    }
    let mut alice = login(&[server.endpoint()], "alice").await;

    assert_eq!(value(&mut alice, "b").await.as_deref(), Some("b"));
    assert_eq!(value(&mut alice, "cz").await.as_deref(), Some("cz"));
    let inside = alice
        .get("b", Some(GetOptions::new().with_range("d")))
        .await
        .expect("range [b, d)");
    assert_eq!(keys_of(&inside), ["b", "c", "cz"]);
    let prefix = alice
        .get("c", Some(GetOptions::new().with_prefix()))
        .await
        .expect("prefix c");
    assert_eq!(keys_of(&prefix), ["c", "cz"]);

    assert_denied(alice.get("a", None).await);
    assert_denied(alice.get("d", None).await);
    assert_denied(
        alice
            .get("b", Some(GetOptions::new().with_range("e")))
            .await,
    );
    assert_denied(
        alice
            .get("a", Some(GetOptions::new().with_range("c")))
            .await,
    );
    assert_denied(
        alice
            .get("b", Some(GetOptions::new().with_from_key()))
            .await,
    );

    alice.put("c", "new", None).await.expect("put inside");
    assert_denied(alice.put("d", "new", None).await);
    assert_denied(alice.put("a", "new", None).await);
    assert_denied(
        alice
            .delete("b", Some(DeleteOptions::new().with_range("e")))
            .await,
    );
    let deleted = alice
        .delete("b", Some(DeleteOptions::new().with_range("d")))
        .await
        .expect("delete [b, d)");
    assert_eq!(deleted.deleted(), 3);
    let left = root
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys_of(&left), ["a", "d"]);
}

#[tokio::test]
async fn a_prefix_permission_covers_its_prefix_only() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(
        &mut root,
        "alice",
        vec![Permission::read_write("app/").with_prefix()],
    )
    .await;
    for k in ["app", "app/x", "app/x/y", "app0", "apo"] {
        root.put(k, k, None).await.unwrap();
    }
    let mut alice = login(&[server.endpoint()], "alice").await;

    assert_eq!(value(&mut alice, "app/x").await.as_deref(), Some("app/x"));
    let all = alice
        .get("app/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("prefix app/");
    assert_eq!(keys_of(&all), ["app/x", "app/x/y"]);
    let sub = alice
        .get("app/x/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("prefix app/x/");
    assert_eq!(keys_of(&sub), ["app/x/y"]);
    alice.put("app/z", "z", None).await.expect("put under app/");

    assert_denied(alice.get("app", None).await);
    assert_denied(alice.get("app0", None).await);
    assert_denied(
        alice
            .get("app", Some(GetOptions::new().with_prefix()))
            .await,
    );
    assert_denied(alice.put("app0", "v", None).await);
    assert_denied(alice.put("apo", "v", None).await);
    assert_denied(
        alice
            .delete("ap", Some(DeleteOptions::new().with_prefix()))
            .await,
    );

    let deleted = alice
        .delete("app/", Some(DeleteOptions::new().with_prefix()))
        .await
        .expect("delete prefix app/");
    assert_eq!(deleted.deleted(), 3);
    let left = root
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys_of(&left), ["apo", "app", "app0"]);
}

#[tokio::test]
async fn a_from_key_permission_covers_every_key_from_its_key_on() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(
        &mut root,
        "alice",
        vec![Permission::read_write("m").with_from_key()],
    )
    .await;
    for k in ["a", "l", "m", "n", "zzz"] {
        root.put(k, k, None).await.unwrap();
    }
    let mut alice = login(&[server.endpoint()], "alice").await;

    assert_eq!(value(&mut alice, "m").await.as_deref(), Some("m"));
    assert_eq!(value(&mut alice, "zzz").await.as_deref(), Some("zzz"));
    let from_m = alice
        .get("m", Some(GetOptions::new().with_from_key()))
        .await
        .expect("from m");
    assert_eq!(keys_of(&from_m), ["m", "n", "zzz"]);
    let inner = alice
        .get("n", Some(GetOptions::new().with_range("q")))
        .await
        .expect("[n, q)");
    assert_eq!(keys_of(&inner), ["n"]);
    alice
        .put("\u{7f}", "v", None)
        .await
        .expect("put a high key");

    assert_denied(alice.get("l", None).await);
    assert_denied(
        alice
            .get("l", Some(GetOptions::new().with_from_key()))
            .await,
    );
    assert_denied(alice.get("", Some(GetOptions::new().with_all_keys())).await);
    assert_denied(alice.put("a", "v", None).await);

    let deleted = alice
        .delete("n", Some(DeleteOptions::new().with_from_key()))
        .await
        .expect("delete from n");
    assert_eq!(deleted.deleted(), 3);
    let left = root
        .get("", Some(GetOptions::new().with_all_keys()))
        .await
        .unwrap();
    assert_eq!(keys_of(&left), ["a", "l", "m"]);
}

#[tokio::test]
async fn permissions_of_several_roles_together_cover_a_range() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(
        &mut root,
        "alice",
        vec![Permission::read("a").with_range_end("c")],
    )
    .await;
    root.role_add("upper").await.unwrap();
    root.role_grant_permission("upper", Permission::read("c").with_range_end("e"))
        .await
        .unwrap();
    for k in ["a", "b", "c", "d", "e"] {
        root.put(k, k, None).await.unwrap();
    }
    let mut alice = login(&[server.endpoint()], "alice").await;

    assert_denied(
        alice
            .get("a", Some(GetOptions::new().with_range("e")))
            .await,
    );
    assert_denied(alice.get("c", None).await);

    // The second role, granted to the open client's user, joins [a, c) and [c, e).
    root.user_grant_role("alice", "upper").await.unwrap();
    let all = alice
        .get("a", Some(GetOptions::new().with_range("e")))
        .await
        .expect("[a, e) across two roles");
    assert_eq!(keys_of(&all), ["a", "b", "c", "d"]);
    let across = alice
        .get("b", Some(GetOptions::new().with_range("d")))
        .await
        .expect("[b, d) across the boundary");
    assert_eq!(keys_of(&across), ["b", "c"]);

    assert_denied(
        alice
            .get("a", Some(GetOptions::new().with_range("f")))
            .await,
    );
    assert_denied(
        alice
            .get("a", Some(GetOptions::new().with_from_key()))
            .await,
    );
    assert_denied(alice.put("b", "v", None).await);
}

#[tokio::test]
async fn a_txn_needs_permission_for_every_compare_and_every_op_of_both_branches() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(
        &mut root,
        "alice",
        vec![
            Permission::read_write("t/").with_prefix(),
            Permission::read("ro"),
            Permission::write("wo"),
        ],
    )
    .await;
    for k in ["t/a", "ro", "wo", "secret"] {
        root.put(k, "1", None).await.unwrap();
    }
    let mut alice = login(&[server.endpoint()], "alice").await;
    let on_t = || Compare::value("t/a", CompareOp::Equal, "1");

    let ok = alice
        .txn(
            Txn::new()
                .when(vec![on_t(), Compare::version("ro", CompareOp::Greater, 0)])
                .and_then(vec![
                    TxnOp::put("t/b", "2", None),
                    TxnOp::get("ro", None),
                    TxnOp::put("wo", "2", None),
                ])
                .or_else(vec![TxnOp::delete(
                    "t/",
                    Some(DeleteOptions::new().with_prefix()),
                )]),
        )
        .await
        .expect("a permitted txn");
    assert!(ok.succeeded());

    // Each one of these holds a single compare or op alice may not make. (etcd 3.4 has no
    // nested txns, so none is tried.)
    let denied: Vec<(&str, Txn)> = vec![
        (
            "compare on a key without read",
            Txn::new().when(vec![Compare::value("secret", CompareOp::Equal, "1")]),
        ),
        (
            "compare on a write-only key",
            Txn::new().when(vec![Compare::value("wo", CompareOp::Equal, "1")]),
        ),
        (
            "compare over a range wider than the permission",
            Txn::new().when(vec![
                Compare::version("t/", CompareOp::Greater, 0).with_range("u")
            ]),
        ),
        (
            "put on a read-only key",
            Txn::new()
                .when(vec![on_t()])
                .and_then(vec![TxnOp::put("ro", "2", None)]),
        ),
        (
            "get of a write-only key",
            Txn::new().and_then(vec![TxnOp::get("wo", None)]),
        ),
        (
            "delete of a read-only key",
            Txn::new().and_then(vec![TxnOp::delete("ro", None)]),
        ),
        (
            "delete with prev_kv of a write-only key",
            Txn::new().and_then(vec![TxnOp::delete(
                "wo",
                Some(DeleteOptions::new().with_prev_key()),
            )]),
        ),
        (
            "get in the failure branch, which is not taken",
            Txn::new()
                .when(vec![on_t()])
                .and_then(vec![TxnOp::put("t/c", "3", None)])
                .or_else(vec![TxnOp::get("secret", None)]),
        ),
        (
            "put in the failure branch, which is not taken",
            Txn::new()
                .when(vec![on_t()])
                .and_then(vec![TxnOp::put("t/c", "3", None)])
                .or_else(vec![TxnOp::put("secret", "2", None)]),
        ),
        (
            "range wider than the permission in the success branch",
            Txn::new().and_then(vec![TxnOp::get("t", Some(GetOptions::new().with_prefix()))]),
        ),
    ];
    for (what, t) in denied {
        let got = common::grpc_error(alice.txn(t).await);
        assert_eq!(
            got,
            (Code::PermissionDenied, PERMISSION_DENIED.to_string()),
            "{what}"
        );
    }
    // A refused txn applies nothing of its other ops.
    assert_eq!(value(&mut root, "t/c").await, None);
    assert_eq!(value(&mut root, "wo").await.as_deref(), Some("2"));

    // etcd 3.4 checks prev_kv's read permission for a Put only outside a Txn: inside one a
    // write-only user gets the previous value.
    let leaked = alice
        .txn(Txn::new().and_then(vec![TxnOp::put(
            "wo",
            "3",
            Some(PutOptions::new().with_prev_key()),
        )]))
        .await
        .expect("txn put with prev_kv of a write-only key");
    let responses = leaked.op_responses();
    let etcd_client::TxnOpResponse::Put(put) = &responses[0] else {
        panic!("not a put response: {responses:?}");
    };
    assert_eq!(put.prev_key().map(|kv| kv.value()), Some(&b"2"[..]));
}

#[tokio::test]
async fn prev_kv_needs_read_permission() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(&mut root, "writer", vec![Permission::write("k")]).await;
    add_user(&mut root, "both", vec![Permission::read_write("k")]).await;
    root.put("k", "v0", None).await.unwrap();
    let ep = [server.endpoint()];

    let mut writer = login(&ep, "writer").await;
    writer.put("k", "v1", None).await.expect("put");
    assert_denied(
        writer
            .put("k", "v2", Some(PutOptions::new().with_prev_key()))
            .await,
    );
    assert_denied(
        writer
            .delete("k", Some(DeleteOptions::new().with_prev_key()))
            .await,
    );
    assert_eq!(value(&mut root, "k").await.as_deref(), Some("v1"));

    let mut both = login(&ep, "both").await;
    let put = both
        .put("k", "v3", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put with prev_kv");
    assert_eq!(put.prev_key().map(|kv| kv.value()), Some(&b"v1"[..]));
    let deleted = both
        .delete("k", Some(DeleteOptions::new().with_prev_key()))
        .await
        .expect("delete with prev_kv");
    assert_eq!(deleted.prev_kvs().len(), 1);
    assert_eq!(deleted.prev_kvs()[0].value(), b"v3");
}

async fn next_watch_response(ws: &mut WatchStream) -> WatchResponse {
    match tokio::time::timeout(WAIT, ws.message()).await {
        Ok(Ok(Some(r))) => r,
        other => panic!("no watch response: {other:?}"),
    }
}

#[tokio::test]
async fn a_watch_without_read_permission_is_canceled() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(
        &mut root,
        "alice",
        vec![Permission::read("w/").with_prefix()],
    )
    .await;
    let mut alice = login(&[server.endpoint()], "alice").await;

    let mut ws = alice.watch("secret", None).await.expect("watch stream");
    let refused = next_watch_response(&mut ws).await;
    assert!(refused.created() && refused.canceled(), "{refused:?}");
    assert_eq!(refused.watch_id(), -1, "{refused:?}");
    assert_eq!(refused.cancel_reason(), WATCH_DENIED, "{refused:?}");

    // Wider than the permission, on the same stream.
    ws.watch("w", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let wider = next_watch_response(&mut ws).await;
    assert!(wider.created() && wider.canceled(), "{wider:?}");
    assert_eq!(wider.watch_id(), -1, "{wider:?}");
    assert_eq!(wider.cancel_reason(), WATCH_DENIED);

    // The stream still serves a permitted watch.
    ws.watch("w/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    let created = next_watch_response(&mut ws).await;
    assert!(created.created() && !created.canceled(), "{created:?}");
    root.put("secret", "s", None).await.unwrap();
    root.put("w/a", "1", None).await.unwrap();
    let events = next_watch_response(&mut ws).await;
    assert_eq!(events.watch_id(), created.watch_id());
    let keys: Vec<&[u8]> = events
        .events()
        .iter()
        .map(|e| e.kv().unwrap().key())
        .collect();
    assert_eq!(keys, [b"w/a"]);

    // Without credentials, a watch is refused for want of a user.
    let mut anonymous = server.client().await;
    let mut ws = anonymous.watch("w/a", None).await.expect("watch stream");
    let refused = next_watch_response(&mut ws).await;
    assert!(refused.created() && refused.canceled(), "{refused:?}");
    assert_eq!(
        refused.cancel_reason(),
        format!("rpc error: code = InvalidArgument desc = {USER_EMPTY}")
    );
}

#[tokio::test]
async fn leases_need_write_permission_on_their_keys_to_be_revoked_or_extended_by_a_put() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(
        &mut root,
        "alice",
        vec![Permission::read_write("l/").with_prefix()],
    )
    .await;
    let shared = root.lease_grant(100, None).await.unwrap().id();
    root.put("other", "x", Some(PutOptions::new().with_lease(shared)))
        .await
        .unwrap();
    let mut alice = login(&[server.endpoint()], "alice").await;

    // Granting, reading and listing leases need no permission.
    let own = alice
        .lease_grant(100, None)
        .await
        .expect("alice grants a lease")
        .id();
    alice
        .put("l/a", "1", Some(PutOptions::new().with_lease(own)))
        .await
        .expect("put with her own lease");
    let ttl = alice
        .lease_time_to_live(shared, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .expect("time-to-live of a lease on a key she cannot read");
    // etcd 3.4 lists the attached keys even to a user who may not read them.
    assert_eq!(ttl.keys(), [b"other".to_vec()]);
    let mut listed: Vec<i64> = alice
        .leases()
        .await
        .expect("lease list")
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    listed.sort();
    let mut want = vec![shared, own];
    want.sort();
    assert_eq!(listed, want);

    // The shared lease holds a key alice cannot write: she may neither revoke it nor put
    // under it (she could not revoke it afterwards).
    assert_denied(alice.lease_revoke(shared).await);
    assert_denied(
        alice
            .put("l/b", "1", Some(PutOptions::new().with_lease(shared)))
            .await,
    );
    assert_eq!(value(&mut root, "l/b").await, None);
    assert_eq!(value(&mut root, "other").await.as_deref(), Some("x"));

    // Once the key leaves the lease, both are hers to do.
    root.delete("other", None).await.unwrap();
    alice
        .put("l/b", "1", Some(PutOptions::new().with_lease(shared)))
        .await
        .expect("put with the shared lease");
    alice.lease_revoke(shared).await.expect("revoke");
    alice.lease_revoke(own).await.expect("revoke her own");
    let left = root
        .get("l/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(left.kvs().is_empty(), "{:?}", keys_of(&left));
}

// ---------------------------------------------------------------------------------
// Maintenance and cluster requests
// ---------------------------------------------------------------------------------

async fn read_snapshot(c: &mut Client) -> Result<usize, Error> {
    let mut stream = c.snapshot().await?;
    let mut bytes = 0;
    while let Some(part) = stream.message().await? {
        bytes += part.blob().len();
    }
    Ok(bytes)
}

#[tokio::test]
async fn maintenance_and_membership_requests_reserved_to_root() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(&mut root, "alice", vec![Permission::read_write("k")]).await;
    let mut alice = login(&[server.endpoint()], "alice").await;
    let put = alice.put("k", "v", None).await.unwrap();

    // Refused to any other user. etcd 3.4 answers with the auth store's own text and the
    // code Unknown; Cairn as etcd 3.5+ does (README, "Known differences").
    let (denied_code, denied) = if testing_cairn() {
        (Code::PermissionDenied, PERMISSION_DENIED)
    } else {
        (Code::Unknown, MAINTENANCE_DENIED)
    };
    assert_grpc_error(alice.defragment().await, denied_code, denied);
    assert_grpc_error(alice.hash_kv(0).await, denied_code, denied);
    assert_grpc_error(alice.hash().await, denied_code, denied);
    assert_grpc_error(read_snapshot(&mut alice).await, denied_code, denied);

    let status = alice.status().await.expect("status: any user");
    let member_id = status.header().unwrap().member_id();
    let members = alice.member_list().await.expect("member list: any user");
    assert_eq!(members.members().len(), 1);
    let own_urls = members.members()[0].peer_urls().to_vec();
    let learner_url = "http://127.0.0.1:9";
    assert_denied(
        alice
            .member_add(
                [learner_url],
                Some(MemberAddOptions::new().with_is_learner()),
            )
            .await,
    );
    assert_denied(alice.member_update(member_id, own_urls.clone()).await);
    assert_denied(alice.member_remove(member_id).await);
    assert_denied(alice.member_promote(member_id).await);

    // etcd 3.4 lets any user compact and raise or clear alarms (3.7 wants root; Cairn's
    // Auth follows 3.4).
    alice
        .compact(common::rev(put.header()), None)
        .await
        .expect("compaction: any user");
    let mut activate = AlarmOptions::new();
    activate.with_member(member_id);
    alice
        .alarm(AlarmAction::Activate, AlarmType::Nospace, Some(activate))
        .await
        .expect("alarm activate: any user");
    let alarms = root
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .unwrap();
    assert_eq!(alarms.alarms().len(), 1);
    assert_eq!(alarms.alarms()[0].member_id(), member_id);
    assert_eq!(alarms.alarms()[0].alarm(), AlarmType::Nospace);
    let mut deactivate = AlarmOptions::new();
    deactivate.with_member(member_id);
    alice
        .alarm(
            AlarmAction::Deactivate,
            AlarmType::Nospace,
            Some(deactivate),
        )
        .await
        .expect("alarm deactivate: any user");
    let alarms = alice
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .expect("alarm list: any user");
    assert!(
        alarms.alarms().is_empty(),
        "{} alarms left",
        alarms.alarms().len()
    );

    alice
        .alarm(AlarmAction::Get, AlarmType::None, None)
        .await
        .expect("alarm list: any user");

    // Root may do all of it.
    root.defragment().await.expect("root defragments");
    assert!(read_snapshot(&mut root).await.expect("root's snapshot") > 0);
    root.hash().await.expect("root's hash");
    root.hash_kv(0).await.expect("root's hash_kv");
    let added = root
        .member_add(
            [learner_url],
            Some(MemberAddOptions::new().with_is_learner()),
        )
        .await
        .expect("root adds a learner");
    let learner = added.member().expect("the added member").id();
    // The permission check passes; the learner, never started, is not ready.
    assert_grpc_error(
        root.member_promote(learner).await,
        Code::FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader",
    );
    root.member_update(learner, vec!["http://127.0.0.1:10".to_string()])
        .await
        .expect("root updates a member");
    root.member_remove(learner)
        .await
        .expect("root removes a member");
    root.member_update(member_id, own_urls)
        .await
        .expect("root updates its own member");
    assert_eq!(root.member_list().await.unwrap().members().len(), 1);
}

// ---------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn a_simple_token_expires_once_unused_for_its_ttl() {
    const TTL: Duration = Duration::from_secs(2);
    let (server, mut root) = auth_server(&["--auth-token-ttl=2"]).await;
    let endpoint = server.endpoint();
    add_user(&mut root, "alice", vec![Permission::read_write("k")]).await;
    root.put("k", "v", None).await.unwrap();
    let token = raw_authenticate(&endpoint, "alice", &password_of("alice"))
        .await
        .unwrap();
    let mut idle = login(&[endpoint.clone()], "alice").await;
    let mut refreshing = Client::connect(
        [endpoint.as_str()],
        Some(as_user("alice", &password_of("alice")).with_auto_token_refresh(true)),
    )
    .await
    .unwrap();

    // Each use restarts its TTL: used every 500 ms, it outlives twice its TTL.
    let started = Instant::now();
    while started.elapsed() < 2 * TTL {
        raw_get(&endpoint, &token, "k")
            .await
            .expect("a token in use stays valid");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Unused for longer than its TTL (etcd looks for expired tokens once a second), it
    // expires: no event tells, so the test waits that long.
    tokio::time::sleep(TTL + Duration::from_secs(2)).await;
    assert_grpc_error(
        raw_get(&endpoint, &token, "k").await,
        Code::Unauthenticated,
        INVALID_TOKEN,
    );
    assert_grpc_error(
        idle.get("k", None).await,
        Code::Unauthenticated,
        INVALID_TOKEN,
    );
    assert_eq!(
        value(&mut refreshing, "k").await.as_deref(),
        Some("v"),
        "a client that authenticates again on an invalid token"
    );
    let fresh = raw_authenticate(&endpoint, "alice", &password_of("alice"))
        .await
        .unwrap();
    assert_eq!(raw_get(&endpoint, &fresh, "k").await.unwrap(), ["v"]);
}

#[tokio::test]
async fn revoking_a_permission_or_a_role_applies_to_an_open_client() {
    let (server, mut root) = auth_server(&[]).await;
    add_user(&mut root, "alice", vec![Permission::read_write("k")]).await;
    let mut alice = login(&[server.endpoint()], "alice").await;
    alice.put("k", "1", None).await.expect("put");

    root.role_revoke_permission("alice-role", "k", None)
        .await
        .unwrap();
    assert_denied(alice.put("k", "2", None).await);
    assert_denied(alice.get("k", None).await);

    root.role_grant_permission("alice-role", Permission::read("k"))
        .await
        .unwrap();
    assert_eq!(value(&mut alice, "k").await.as_deref(), Some("1"));
    assert_denied(alice.put("k", "3", None).await);

    root.user_revoke_role("alice", "alice-role").await.unwrap();
    assert_denied(alice.get("k", None).await);
    assert_eq!(value(&mut root, "k").await.as_deref(), Some("1"));
}

#[tokio::test]
async fn a_password_change_or_deletion_invalidates_the_users_tokens() {
    let (server, mut root) = auth_server(&[]).await;
    let endpoint = server.endpoint();
    let ep = [endpoint.clone()];
    add_user(&mut root, "alice", vec![Permission::read_write("k")]).await;
    add_user(&mut root, "bob", vec![Permission::read_write("k")]).await;
    root.put("k", "v", None).await.unwrap();
    let mut alice = login(&ep, "alice").await;
    let mut bob = login(&ep, "bob").await;
    let token = raw_authenticate(&endpoint, "alice", &password_of("alice"))
        .await
        .unwrap();
    assert_eq!(value(&mut alice, "k").await.as_deref(), Some("v"));

    root.user_change_password("alice", "new-pw").await.unwrap();
    assert_grpc_error(
        alice.get("k", None).await,
        Code::Unauthenticated,
        INVALID_TOKEN,
    );
    assert_grpc_error(
        raw_get(&endpoint, &token, "k").await,
        Code::Unauthenticated,
        INVALID_TOKEN,
    );
    // Another user's tokens stay valid.
    assert_eq!(value(&mut bob, "k").await.as_deref(), Some("v"));
    let mut alice = Client::connect([endpoint.as_str()], Some(as_user("alice", "new-pw")))
        .await
        .expect("connect with the new password");
    assert_eq!(value(&mut alice, "k").await.as_deref(), Some("v"));

    root.user_delete("alice").await.unwrap();
    assert_grpc_error(
        alice.get("k", None).await,
        Code::Unauthenticated,
        INVALID_TOKEN,
    );
    assert_grpc_error(
        raw_authenticate(&endpoint, "alice", "new-pw").await,
        Code::InvalidArgument,
        AUTH_FAILED,
    );
    assert_eq!(value(&mut bob, "k").await.as_deref(), Some("v"));
}

/// Runs `openssl` with `args` in `dir`; panics if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run openssl: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `priv.pem` and `pub.pem` in `dir`: an RSA 2048 key pair for RS256, or a P-256
/// one for ES256.
fn jwt_key_pair(dir: &Path, sign_method: &str) {
    match sign_method {
        "RS256" => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                "priv.pem",
            ],
        ),
        "ES256" => openssl(
            dir,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                "priv.pem",
            ],
        ),
        other => panic!("no key pair for {other}"),
    }
    openssl(
        dir,
        &["pkey", "-in", "priv.pem", "-pubout", "-out", "pub.pem"],
    );
}

fn base64url_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            b'=' => continue,
            _ => panic!("not base64url: {s:?}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Header and claims of a JWT; panics unless it is three dot-separated base64url parts
/// whose first two are JSON objects.
fn jwt_parts(token: &str) -> (serde_json::Value, serde_json::Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token:?}");
    assert!(parts.iter().all(|p| !p.is_empty()), "{token:?}");
    let json = |p: &str| -> serde_json::Value {
        serde_json::from_slice(&base64url_decode(p))
            .unwrap_or_else(|e| panic!("JWT part {p:?} is no JSON: {e}"))
    };
    let _signature = base64url_decode(parts[2]);
    (json(parts[0]), json(parts[1]))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A server with JWT tokens signed with `sign_method` and valid `ttl`; its root client,
/// and alice (READWRITE on prefix `j/`) added.
async fn jwt_server(keys: &Path, sign_method: &str, ttl: &str) -> (TestServer, Client) {
    jwt_key_pair(keys, sign_method);
    let flag = format!(
        "--auth-token=jwt,pub-key={},priv-key={},sign-method={sign_method},ttl={ttl}",
        keys.join("pub.pem").display(),
        keys.join("priv.pem").display()
    );
    let (server, mut root) = auth_server(&[&flag]).await;
    add_user(
        &mut root,
        "alice",
        vec![Permission::read_write("j/").with_prefix()],
    )
    .await;
    (server, root)
}

#[tokio::test]
async fn jwt_tokens_signed_with_rs256_carry_the_user_and_the_auth_revision() {
    let keys = tempfile::tempdir().unwrap();
    let (server, mut root) = jwt_server(keys.path(), "RS256", "10m").await;
    let endpoint = server.endpoint();

    let token = raw_authenticate(&endpoint, "alice", &password_of("alice"))
        .await
        .expect("authenticate");
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["alg"], "RS256", "{header}");
    assert_eq!(claims["username"], "alice", "{claims}");
    let exp = claims["exp"].as_u64().expect("exp claim");
    let now = unix_now();
    assert!(
        exp > now + 500 && exp <= now + 601,
        "exp {exp} is not 10 minutes after {now}"
    );

    raw_put(&endpoint, &token, "j/k", "v").await.expect("put");
    assert_eq!(raw_get(&endpoint, &token, "j/k").await.unwrap(), ["v"]);
    assert_denied(raw_put(&endpoint, &token, "other", "v").await);
    let mut alice = login(&[endpoint.clone()], "alice").await;
    assert_eq!(value(&mut alice, "j/k").await.as_deref(), Some("v"));

    // The token holds the auth revision it was issued at; any later change to users,
    // roles or permissions makes it stale.
    root.role_add("unrelated").await.unwrap();
    assert_grpc_error(
        raw_get(&endpoint, &token, "j/k").await,
        Code::InvalidArgument,
        AUTH_OLD_REVISION,
    );
    assert_grpc_error(
        alice.get("j/k", None).await,
        Code::InvalidArgument,
        AUTH_OLD_REVISION,
    );
    let fresh = raw_authenticate(&endpoint, "alice", &password_of("alice"))
        .await
        .unwrap();
    assert_eq!(raw_get(&endpoint, &fresh, "j/k").await.unwrap(), ["v"]);
    assert_grpc_error(
        raw_get(&endpoint, "not.a.jwt", "j/k").await,
        Code::Unauthenticated,
        INVALID_TOKEN,
    );
}

#[tokio::test]
async fn jwt_tokens_signed_with_es256_expire_after_their_ttl() {
    let keys = tempfile::tempdir().unwrap();
    let (server, _root) = jwt_server(keys.path(), "ES256", "3s").await;
    let endpoint = server.endpoint();

    let token = raw_authenticate(&endpoint, "alice", &password_of("alice"))
        .await
        .expect("authenticate");
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["alg"], "ES256", "{header}");
    assert_eq!(claims["username"], "alice", "{claims}");
    let exp = claims["exp"].as_u64().expect("exp claim");
    raw_put(&endpoint, &token, "j/k", "v").await.expect("put");

    // Unlike a simple token, use does not extend it: it is refused once past its exp
    // (whole seconds), whatever happened in between.
    while unix_now() <= exp + 1 {
        let _ = raw_get(&endpoint, &token, "j/k").await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_grpc_error(
        raw_get(&endpoint, &token, "j/k").await,
        Code::Unauthenticated,
        INVALID_TOKEN,
    );
    let fresh = raw_authenticate(&endpoint, "alice", &password_of("alice"))
        .await
        .unwrap();
    assert_eq!(raw_get(&endpoint, &fresh, "j/k").await.unwrap(), ["v"]);
}

// ---------------------------------------------------------------------------------
// Client certificates
// ---------------------------------------------------------------------------------

fn new_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("generate P-256 key")
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn set_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(1);
}

/// A CA and certificates it issued, as PEM: `ca.pem`, the server's `server.pem` /
/// `server-key.pem` (127.0.0.1 and localhost), and for each client common name `cn`,
/// `<cn>.pem` / `<cn>-key.pem`.
struct Certs {
    dir: tempfile::TempDir,
}

impl Certs {
    fn generate(client_names: &[&str]) -> Certs {
        let certs = Certs {
            dir: tempfile::Builder::new()
                .prefix("kvauth-")
                .tempdir()
                .unwrap(),
        };
        let mut ca_params = CertificateParams::default();
        ca_params.distinguished_name = common_name("Cairn auth test CA");
        set_validity(&mut ca_params);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, new_key()).expect("self-sign CA");
        certs.write("ca.pem", &ca.pem());
        certs.issue(
            &ca,
            "server",
            "cairn-test-server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        for cn in client_names {
            certs.issue(&ca, cn, cn, &[], ExtendedKeyUsagePurpose::ClientAuth);
        }
        certs
    }

    fn issue(
        &self,
        ca: &CertifiedIssuer<'static, KeyPair>,
        file: &str,
        cn: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("certificate parameters");
        params.distinguished_name = common_name(cn);
        set_validity(&mut params);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let key = new_key();
        let cert = params.signed_by(&key, ca).expect("sign certificate");
        self.write(&format!("{file}.pem"), &cert.pem());
        self.write(&format!("{file}-key.pem"), &key.serialize_pem());
    }

    fn write(&self, file: &str, pem: &str) {
        std::fs::write(self.path(file), pem).unwrap_or_else(|e| panic!("write {file}: {e}"));
    }

    fn path(&self, file: &str) -> String {
        self.dir.path().join(file).to_str().unwrap().to_string()
    }

    fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.path(file)).unwrap_or_else(|e| panic!("read {file}: {e}"))
    }

    /// TLS options of a client that trusts the CA and presents the certificate of `cn`.
    fn client_tls(&self, cn: &str) -> TlsOptions {
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(self.read("ca.pem")))
            .identity(Identity::from_pem(
                self.read(&format!("{cn}.pem")),
                self.read(&format!("{cn}-key.pem")),
            ))
    }
}

/// A client of `endpoint` presenting the certificate of `cn`, authenticating as `user`
/// (with `password_of(user)`) if given.
async fn tls_client(certs: &Certs, endpoint: &str, cn: &str, user: Option<&str>) -> Client {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(CALL_TIMEOUT)
        .with_tls(certs.client_tls(cn));
    if let Some(user) = user {
        options = options.with_user(user, password_of(user));
    }
    Client::connect([endpoint], Some(options))
        .await
        .unwrap_or_else(|e| panic!("connect to {endpoint} with the certificate of {cn}: {e}"))
}

#[tokio::test]
async fn the_client_certificates_common_name_is_the_user_unless_a_token_says_otherwise() {
    let certs = Certs::generate(&["root", "alice"]);
    let server = TestServer::start_client_tls(&[
        &format!("--cert-file={}", certs.path("server.pem")),
        &format!("--key-file={}", certs.path("server-key.pem")),
        &format!("--trusted-ca-file={}", certs.path("ca.pem")),
        "--client-cert-auth",
    ]);
    let endpoint = server.endpoint();

    // The certificate named root acts as root once auth is on: no password needed.
    let mut root = tls_client(&certs, &endpoint, "root", None).await;
    enable_auth(&mut root).await;
    add_user(
        &mut root,
        "alice",
        vec![Permission::read_write("a/").with_prefix()],
    )
    .await;
    add_user(
        &mut root,
        "bob",
        vec![Permission::read_write("b/").with_prefix()],
    )
    .await;
    assert_eq!(
        root.user_list().await.expect("root by certificate").users(),
        ["alice", "bob", "root"]
    );

    let mut alice = tls_client(&certs, &endpoint, "alice", None).await;
    alice
        .put("a/1", "v", None)
        .await
        .expect("alice by certificate");
    assert_eq!(value(&mut alice, "a/1").await.as_deref(), Some("v"));
    assert_denied(alice.put("b/1", "v", None).await);
    assert_denied(alice.user_list().await);
    assert_eq!(
        alice.user_get("alice").await.unwrap().roles(),
        ["alice-role"]
    );

    // Alice's certificate with bob's token: the token decides.
    let mut bob = tls_client(&certs, &endpoint, "alice", Some("bob")).await;
    bob.put("b/1", "v", None).await.expect("bob by token");
    assert_denied(bob.put("a/2", "v", None).await);
    assert_denied(bob.get("a/1", None).await);
    assert_eq!(bob.user_get("bob").await.unwrap().roles(), ["bob-role"]);
    assert_denied(bob.user_get("alice").await);
}

// ---------------------------------------------------------------------------------
// A cluster, flags, etcdctl
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn auth_across_a_three_member_cluster() {
    let mut c = TestCluster::start(3, &[]);
    let leader = c.wait_for_leader(WAIT).await;
    let followers = c.followers(leader);
    let (f1, f2) = (followers[0], followers[1]);

    // Enabled through one member, authenticated through a follower.
    let mut first = c.member_client(f1).await;
    enable_auth(&mut first).await;
    let mut root = login(&[c.endpoint(f1)], "root").await;
    add_user(
        &mut root,
        "alice",
        vec![Permission::read_write("c/").with_prefix()],
    )
    .await;
    let mut alice = login(&[c.endpoint(f2)], "alice").await;

    alice
        .put("c/1", "v", None)
        .await
        .expect("put via a follower");
    assert_denied(alice.put("x", "v", None).await);
    assert_denied(alice.get("x", None).await);
    assert_eq!(value(&mut alice, "c/1").await.as_deref(), Some("v"));
    let mut root_at_leader = login(&[c.endpoint(leader)], "root").await;
    let held = kvs(&mut root_at_leader, "", false).await;
    assert_eq!(held.get("c/1").map(String::as_str), Some("v"));
    assert!(!held.contains_key("x"), "{held:?}");

    // A token issued by one member is valid on every member.
    let token = raw_authenticate(&c.endpoint(f2), "alice", &password_of("alice"))
        .await
        .unwrap();
    for i in 0..c.len() {
        assert_eq!(
            raw_get(&c.endpoint(i), &token, "c/1").await.unwrap(),
            ["v"],
            "token of {} on {}",
            c.name(f2),
            c.name(i)
        );
        assert_denied(raw_put(&c.endpoint(i), &token, "x", "v").await);
    }

    // etcd 3.4 lets any user move the leader.
    let target = c.member_id(f2).await;
    let mut alice_at_leader = login(&[c.endpoint(leader)], "alice").await;
    alice_at_leader
        .move_leader(target)
        .await
        .expect("move leader as alice");
    assert_eq!(c.wait_for_leader(WAIT).await, f2);
}

#[tokio::test]
async fn bcrypt_cost_flag_is_accepted_and_auth_works_with_it() {
    let (server, mut root) = auth_server(&["--bcrypt-cost=4"]).await;
    let endpoint = server.endpoint();
    add_user(&mut root, "alice", vec![Permission::read_write("k")]).await;
    let mut alice = login(&[endpoint.clone()], "alice").await;
    alice.put("k", "v", None).await.expect("put");
    assert_eq!(value(&mut alice, "k").await.as_deref(), Some("v"));
    assert_grpc_error(
        raw_authenticate(&endpoint, "alice", "wrong").await,
        Code::InvalidArgument,
        AUTH_FAILED,
    );
    root.user_change_password("alice", "new-pw").await.unwrap();
    raw_authenticate(&endpoint, "alice", "new-pw")
        .await
        .expect("the new password");
}

/// Runs etcdctl (v3 API) against `endpoint` as `user` (`name:password`); its stdout, or
/// its stderr when it fails.
fn etcdctl(endpoint: &str, user: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(ETCDCTL)
        .env("ETCDCTL_API", "3")
        .args([
            "--endpoints",
            endpoint,
            "--user",
            user,
            "--dial-timeout=5s",
            "--command-timeout=10s",
        ])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {ETCDCTL}: {e}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test]
async fn etcdctl_authenticates_and_shows_users_and_roles() {
    let (server, mut root) = auth_server(&[]).await;
    let ep = server.endpoint();
    add_user(
        &mut root,
        "alice",
        vec![
            Permission::read_write("k"),
            Permission::read("a").with_range_end("c"),
            Permission::write("p/").with_prefix(),
            Permission::read("z").with_from_key(),
        ],
    )
    .await;
    let root_user = format!("root:{ROOT_PASSWORD}");
    let alice_user = format!("alice:{}", password_of("alice"));

    assert_eq!(
        etcdctl(&ep, &alice_user, &["put", "k", "v"]),
        Ok("OK\n".into())
    );
    assert_eq!(
        etcdctl(&ep, &alice_user, &["get", "k", "--print-value-only"]),
        Ok("v\n".into())
    );
    let denied = etcdctl(&ep, &alice_user, &["put", "x", "v"]).unwrap_err();
    assert!(
        denied.contains(&format!("Error: {PERMISSION_DENIED}")),
        "{denied}"
    );
    let refused = etcdctl(&ep, "alice:wrong", &["get", "k"]).unwrap_err();
    assert!(
        refused.contains(&format!("Error: {AUTH_FAILED}")),
        "{refused}"
    );

    assert_eq!(
        etcdctl(&ep, &root_user, &["role", "get", "alice-role"]),
        Ok(
            "Role alice-role\nKV Read:\n\t[a, c)\n\tk\n\t[z, <open ended>\nKV Write:\n\tk\n\
            \t[p/, p0) (prefix p/)\n"
                .into()
        )
    );
    assert_eq!(
        etcdctl(&ep, &root_user, &["user", "get", "alice", "--detail"]),
        Ok(
            "User: alice\n\nRole alice-role\nKV Read:\n\t[a, c)\n\tk\n\t[z, <open ended>\n\
            KV Write:\n\tk\n\t[p/, p0) (prefix p/)\n"
                .into()
        )
    );
    assert_eq!(
        etcdctl(&ep, &root_user, &["user", "list"]),
        Ok("alice\nroot\n".into())
    );
    assert_eq!(
        etcdctl(&ep, &root_user, &["role", "list"]),
        Ok("alice-role\nroot\n".into())
    );
    let denied = etcdctl(&ep, &alice_user, &["user", "list"]).unwrap_err();
    assert!(
        denied.contains(&format!("Error: {PERMISSION_DENIED}")),
        "{denied}"
    );
    assert_eq!(
        etcdctl(&ep, &root_user, &["auth", "disable"]),
        Ok("Authentication Disabled\n".into())
    );
}
