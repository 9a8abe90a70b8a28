//! The auth requests: users, roles, permissions, enabling auth, issuing tokens. Every one
//! but Authenticate needs the root role once auth is enabled (etcd's admin check, made
//! when the entry is applied, so every member decides alike).

use rocksdb::WriteBatch;

use crate::auth::AuthStore;
use crate::error::EtcdError;
use crate::proto::cairnraftpb::internal_request::Request as Q;
use crate::proto::cairnraftpb::{AuthApplied, Caller};

pub fn apply(
    auth: &AuthStore,
    batch: &mut WriteBatch,
    caller: Option<&Caller>,
    request: &Q,
    index: u64,
) -> Result<AuthApplied, EtcdError> {
    if !matches!(request, Q::Authenticate(_)) {
        auth.check_admin(caller)?;
    }
    let revision = |auth_revision| AuthApplied {
        auth_revision,
        simple_token: String::new(),
    };
    match request {
        Q::AuthEnable(_) => auth.enable_applied(batch).map(revision),
        Q::AuthDisable(_) => Ok(revision(auth.disable_applied(batch))),
        Q::Authenticate(a) => {
            let (auth_revision, token) =
                auth.authenticate_applied(&a.name, &a.token_prefix, index)?;
            Ok(AuthApplied {
                auth_revision,
                simple_token: token.unwrap_or_default(),
            })
        }
        Q::UserAdd(u) => auth
            .user_add_applied(batch, &u.name, &u.hashed_password, u.options)
            .map(revision),
        Q::UserDelete(u) => auth.user_delete_applied(batch, &u.name).map(revision),
        Q::UserChangePassword(u) => auth
            .user_change_password_applied(batch, &u.name, &u.hashed_password)
            .map(revision),
        Q::UserGrantRole(g) => auth
            .user_grant_role_applied(batch, &g.user, &g.role)
            .map(revision),
        Q::UserRevokeRole(r) => auth
            .user_revoke_role_applied(batch, &r.name, &r.role)
            .map(revision),
        Q::RoleAdd(r) => auth.role_add_applied(batch, &r.name).map(revision),
        Q::RoleDelete(r) => auth.role_delete_applied(batch, &r.role).map(revision),
        Q::RoleGrantPermission(g) => {
            // The server refuses a grant without a permission before proposing it.
            let permission = g.perm.clone().ok_or(EtcdError::PermissionNotGiven)?;
            auth.role_grant_permission_applied(batch, &g.name, permission)
                .map(revision)
        }
        Q::RoleRevokePermission(r) => auth
            .role_revoke_permission_applied(batch, &r.role, &r.key, &r.range_end)
            .map(revision),
        // Not an auth request: `apply_request` sends only auth requests here.
        _ => Err(EtcdError::Corrupt),
    }
}
