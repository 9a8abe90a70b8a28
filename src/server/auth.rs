//! Who the caller is, and the Auth service: `AuthEnable`, `AuthDisable`, `AuthStatus`,
//! `Authenticate`, and users and roles.
//!
//! A call's identity is its token (a simple token waits until this member has applied the
//! entry that issued it), else, with `--client-cert-auth`, its certificate's common name.
//! Writes carry it into the log (`Caller`), where `apply` checks it; reads and watches are
//! checked here, with the same functions (`apply::authorize`). Changes of users and roles
//! go through Raft, with passwords hashed before proposing; reading them is served here
//! after a read barrier. Passwords are hashed and checked on blocking threads.

use super::{RequestContext, Server};
use crate::auth::{Access, Tokens};
use crate::error::EtcdError;
use crate::proto::cairnraftpb::{
    apply_result, internal_request::Request, AuthApplied, Authenticate, Caller, UserAdd,
    UserChangePassword,
};
use crate::proto::etcdserverpb::*;

impl Server {
    /// The identity a request is checked as: None for Cairn's own requests, an empty
    /// `Caller` for a client that gave none.
    pub(super) async fn caller(&self, ctx: &RequestContext) -> Result<Option<Caller>, EtcdError> {
        if ctx.internal {
            return Ok(None);
        }
        if let Some(token) = &ctx.token {
            if let Some(index) = self.auth.tokens().issued_at_index(token) {
                self.wait_for_token_entry(ctx, index).await?;
            }
            let who = self.auth.tokens().identify(token)?;
            return Ok(Some(Caller {
                auth_revision: who.auth_revision.unwrap_or_else(|| self.auth.revision()),
                user: who.user,
            }));
        }
        if !self.auth.is_enabled() {
            // Nothing to look up: the request carries "nobody", checked if auth is enabled
            // before it is applied.
            return Ok(Some(Caller::default()));
        }
        match &ctx.common_name {
            Some(name) if self.client_cert_auth => Ok(Some(Caller {
                user: name.to_string(),
                auth_revision: self.auth.revision(),
            })),
            _ => Ok(Some(Caller::default())),
        }
    }

    /// A simple token is known once the entry that issued it is applied here: waits for it
    /// (as etcd), until the request's deadline. An index far beyond this member's log
    /// belongs to no real token: refused at once rather than waited for.
    async fn wait_for_token_entry(
        &self,
        ctx: &RequestContext,
        index: u64,
    ) -> Result<(), EtcdError> {
        /// How far past this member's log a token's entry may lie: a follower can be behind
        /// the leader that issued it, but not by this much while it still serves.
        const MAX_TOKEN_INDEX_AHEAD: u64 = 100_000;
        let (applied, last) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (
                m.last_applied.map_or(0, |l| l.index),
                m.last_log_index.unwrap_or(0),
            )
        };
        if index <= applied {
            return Ok(());
        }
        if index > last.saturating_add(MAX_TOKEN_INDEX_AHEAD) {
            return Err(EtcdError::InvalidAuthToken);
        }
        // etcd answers `invalid auth token` when it gives up waiting.
        tokio::time::timeout_at(self.deadline(ctx), super::applied_up_to(&self.raft, index))
            .await
            .map_err(|_| EtcdError::InvalidAuthToken)?
    }

    /// For the root-only operations (defragment, hashes, membership changes): whether the
    /// caller has the root role.
    pub(super) async fn check_admin(&self, ctx: &RequestContext) -> Result<(), EtcdError> {
        if !self.auth.is_enabled() && ctx.token.is_none() {
            return Ok(());
        }
        let caller = self.caller(ctx).await?;
        self.auth.check_admin(caller.as_ref())
    }

    /// Checks a read as etcd does: its permissions before serving, and that the auth state
    /// it was checked against has not changed since (else `revision of auth store is old`).
    pub(super) async fn authorized_read<T>(
        &self,
        ctx: &RequestContext,
        check: impl FnOnce(Option<&Caller>) -> Result<(), EtcdError>,
        read: impl FnOnce() -> Result<T, EtcdError>,
    ) -> Result<T, EtcdError> {
        let caller = self.read_caller(ctx, check).await?;
        let result = read()?;
        self.auth_unchanged(caller.as_ref())?;
        Ok(result)
    }

    /// The first half of `authorized_read`, for a read served in parts (RangeStream): the
    /// caller, checked; None when there is nothing to check.
    pub(super) async fn read_caller(
        &self,
        ctx: &RequestContext,
        check: impl FnOnce(Option<&Caller>) -> Result<(), EtcdError>,
    ) -> Result<Option<Caller>, EtcdError> {
        if !self.auth.is_enabled() && ctx.token.is_none() {
            return Ok(None);
        }
        let caller = self.caller(ctx).await?;
        check(caller.as_ref())?;
        Ok(caller)
    }

    /// The second half: the auth state `caller` was checked against is still current.
    pub(super) fn auth_unchanged(&self, caller: Option<&Caller>) -> Result<(), EtcdError> {
        match caller {
            Some(c) if c.auth_revision != 0 && c.auth_revision != self.auth.revision() => {
                Err(EtcdError::AuthOldRevision)
            }
            _ => Ok(()),
        }
    }

    /// Whether a watch may be created on `key`..`range_end` (read permission).
    pub(super) async fn check_watch(
        &self,
        ctx: &RequestContext,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        let check = |c: Option<&Caller>| self.auth.check_op(c, key, range_end, Access::Read);
        self.authorized_read(ctx, check, || Ok(())).await
    }

    /// Proposes an auth change: its result.
    async fn propose_auth(
        &self,
        ctx: &RequestContext,
        request: Request,
    ) -> Result<AuthApplied, EtcdError> {
        match self.propose(ctx, request).await? {
            apply_result::Result::Auth(applied) => Ok(applied),
            _ => Err(EtcdError::Corrupt),
        }
    }

    /// Proposes an auth change whose response is only a header: that header.
    async fn auth_change(
        &self,
        ctx: &RequestContext,
        request: Request,
    ) -> Result<Option<ResponseHeader>, EtcdError> {
        self.propose_auth(ctx, request).await?;
        Ok(Some(self.header(0)))
    }

    /// Hashes a password off the runtime.
    async fn hash_password(&self, password: String) -> Result<Vec<u8>, EtcdError> {
        let auth = self.auth.clone();
        tokio::task::spawn_blocking(move || auth.hash_password(&password))
            .await
            .map_err(|_| EtcdError::Stopped)?
    }

    /// Whether auth is enabled (as this member has applied it).
    pub fn auth_enabled(&self) -> bool {
        self.auth.is_enabled()
    }

    pub async fn auth_enable(&self, ctx: &RequestContext) -> Result<AuthEnableResponse, EtcdError> {
        Ok(AuthEnableResponse {
            header: self
                .auth_change(ctx, Request::AuthEnable(AuthEnableRequest {}))
                .await?,
        })
    }

    pub async fn auth_disable(
        &self,
        ctx: &RequestContext,
    ) -> Result<AuthDisableResponse, EtcdError> {
        Ok(AuthDisableResponse {
            header: self
                .auth_change(ctx, Request::AuthDisable(AuthDisableRequest {}))
                .await?,
        })
    }

    /// etcd 3.5's AuthStatus: whether auth is enabled, and its revision.
    pub async fn auth_status(&self, ctx: &RequestContext) -> Result<AuthStatusResponse, EtcdError> {
        self.read_barrier(ctx).await?;
        let (enabled, auth_revision) = self.auth.status();
        Ok(AuthStatusResponse {
            header: Some(self.header(0)),
            enabled,
            auth_revision,
        })
    }

    /// Checks the password (linearizably, off the runtime), then proposes the token's
    /// issue; done again if users or roles changed in between, as etcd does.
    pub async fn authenticate(
        &self,
        ctx: &RequestContext,
        r: AuthenticateRequest,
    ) -> Result<AuthenticateResponse, EtcdError> {
        self.read_barrier(ctx).await?;
        let deadline = self.deadline(ctx);
        loop {
            let auth = self.auth.clone();
            let (name, password) = (r.name.clone(), r.password.clone());
            let checked_revision =
                tokio::task::spawn_blocking(move || auth.check_password(&name, &password))
                    .await
                    .map_err(|_| EtcdError::Stopped)??;
            let request = Request::Authenticate(Authenticate {
                name: r.name.clone(),
                token_prefix: if self.auth.tokens().is_simple() {
                    Tokens::new_prefix()
                } else {
                    String::new()
                },
            });
            let applied = self.propose_auth(ctx, request).await?;
            if checked_revision == applied.auth_revision {
                let token = if applied.simple_token.is_empty() {
                    self.auth.tokens().sign(&r.name, applied.auth_revision)?
                } else {
                    applied.simple_token
                };
                return Ok(AuthenticateResponse {
                    header: Some(self.header(0)),
                    token,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(EtcdError::Timeout);
            }
            tracing::info!("revision when password checked became stale; retrying");
        }
    }

    pub async fn user_add(
        &self,
        ctx: &RequestContext,
        r: AuthUserAddRequest,
    ) -> Result<AuthUserAddResponse, EtcdError> {
        let no_password = r.options.as_ref().is_some_and(|o| o.no_password);
        let hashed_password = if no_password {
            Vec::new()
        } else {
            self.hash_password(r.password).await?
        };
        let request = Request::UserAdd(UserAdd {
            name: r.name,
            hashed_password,
            options: r.options,
        });
        Ok(AuthUserAddResponse {
            header: self.auth_change(ctx, request).await?,
        })
    }

    pub async fn user_delete(
        &self,
        ctx: &RequestContext,
        r: AuthUserDeleteRequest,
    ) -> Result<AuthUserDeleteResponse, EtcdError> {
        Ok(AuthUserDeleteResponse {
            header: self.auth_change(ctx, Request::UserDelete(r)).await?,
        })
    }

    pub async fn user_change_password(
        &self,
        ctx: &RequestContext,
        r: AuthUserChangePasswordRequest,
    ) -> Result<AuthUserChangePasswordResponse, EtcdError> {
        let hashed_password = self.hash_password(r.password).await?;
        let request = Request::UserChangePassword(UserChangePassword {
            name: r.name,
            hashed_password,
        });
        Ok(AuthUserChangePasswordResponse {
            header: self.auth_change(ctx, request).await?,
        })
    }

    pub async fn user_grant_role(
        &self,
        ctx: &RequestContext,
        r: AuthUserGrantRoleRequest,
    ) -> Result<AuthUserGrantRoleResponse, EtcdError> {
        Ok(AuthUserGrantRoleResponse {
            header: self.auth_change(ctx, Request::UserGrantRole(r)).await?,
        })
    }

    pub async fn user_revoke_role(
        &self,
        ctx: &RequestContext,
        r: AuthUserRevokeRoleRequest,
    ) -> Result<AuthUserRevokeRoleResponse, EtcdError> {
        Ok(AuthUserRevokeRoleResponse {
            header: self.auth_change(ctx, Request::UserRevokeRole(r)).await?,
        })
    }

    pub async fn role_add(
        &self,
        ctx: &RequestContext,
        r: AuthRoleAddRequest,
    ) -> Result<AuthRoleAddResponse, EtcdError> {
        Ok(AuthRoleAddResponse {
            header: self.auth_change(ctx, Request::RoleAdd(r)).await?,
        })
    }

    pub async fn role_delete(
        &self,
        ctx: &RequestContext,
        r: AuthRoleDeleteRequest,
    ) -> Result<AuthRoleDeleteResponse, EtcdError> {
        Ok(AuthRoleDeleteResponse {
            header: self.auth_change(ctx, Request::RoleDelete(r)).await?,
        })
    }

    pub async fn role_grant_permission(
        &self,
        ctx: &RequestContext,
        r: AuthRoleGrantPermissionRequest,
    ) -> Result<AuthRoleGrantPermissionResponse, EtcdError> {
        if r.perm.is_none() {
            return Err(EtcdError::PermissionNotGiven);
        }
        Ok(AuthRoleGrantPermissionResponse {
            header: self
                .auth_change(ctx, Request::RoleGrantPermission(r))
                .await?,
        })
    }

    pub async fn role_revoke_permission(
        &self,
        ctx: &RequestContext,
        r: AuthRoleRevokePermissionRequest,
    ) -> Result<AuthRoleRevokePermissionResponse, EtcdError> {
        Ok(AuthRoleRevokePermissionResponse {
            header: self
                .auth_change(ctx, Request::RoleRevokePermission(r))
                .await?,
        })
    }

    /// A user's roles: root may read any user, a user itself.
    pub async fn user_get(
        &self,
        ctx: &RequestContext,
        r: AuthUserGetRequest,
    ) -> Result<AuthUserGetResponse, EtcdError> {
        self.read_barrier(ctx).await?;
        let caller = self.caller(ctx).await?;
        if let Err(e) = self.auth.check_admin(caller.as_ref()) {
            if caller.is_some_and(|c| c.user != r.name) {
                return Err(e);
            }
        }
        Ok(AuthUserGetResponse {
            header: Some(self.header(0)),
            roles: self.auth.user_roles(&r.name)?,
        })
    }

    pub async fn user_list(&self, ctx: &RequestContext) -> Result<AuthUserListResponse, EtcdError> {
        self.read_barrier(ctx).await?;
        let caller = self.caller(ctx).await?;
        self.auth.check_admin(caller.as_ref())?;
        Ok(AuthUserListResponse {
            header: Some(self.header(0)),
            users: self.auth.user_names(),
        })
    }

    /// A role's permissions: root may read any role, a user the roles granted to it.
    pub async fn role_get(
        &self,
        ctx: &RequestContext,
        r: AuthRoleGetRequest,
    ) -> Result<AuthRoleGetResponse, EtcdError> {
        self.read_barrier(ctx).await?;
        let caller = self.caller(ctx).await?;
        if let Err(e) = self.auth.check_admin(caller.as_ref()) {
            if caller.is_some_and(|c| !self.auth.has_role(&c.user, &r.role)) {
                return Err(e);
            }
        }
        Ok(AuthRoleGetResponse {
            header: Some(self.header(0)),
            perm: self.auth.role_permissions(&r.role)?,
        })
    }

    pub async fn role_list(&self, ctx: &RequestContext) -> Result<AuthRoleListResponse, EtcdError> {
        self.read_barrier(ctx).await?;
        let caller = self.caller(ctx).await?;
        self.auth.check_admin(caller.as_ref())?;
        Ok(AuthRoleListResponse {
            header: Some(self.header(0)),
            roles: self.auth.role_names(),
        })
    }
}
