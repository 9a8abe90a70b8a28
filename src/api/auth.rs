//! `etcdserverpb.Auth`: each request goes to the server's method of the same name, which
//! decides everything (who may, what it means); nothing to check here first.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::context;
use crate::proto::etcdserverpb::auth_server::Auth;
use crate::proto::etcdserverpb::*;
use crate::server::Server;

pub struct AuthService {
    server: Arc<Server>,
}

impl AuthService {
    pub fn new(server: Arc<Server>) -> AuthService {
        AuthService { server }
    }
}

/// Handlers that pass the request to the server method of the same name; `_` for those
/// whose request carries nothing. Written in the shape `async_trait` gives methods, since it
/// cannot see inside a macro call.
macro_rules! pass {
    ($($method:ident($req:ty) -> $resp:ty $(, $empty:tt)?;)*) => {
        $(
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                request: Request<$req>,
            ) -> Pin<Box<dyn Future<Output = Result<Response<$resp>, Status>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move {
                    let ctx = context(&request);
                    pass!(@call self, $method, ctx, request $(, $empty)?)
                })
            }
        )*
    };
    (@call $self:ident, $method:ident, $ctx:ident, $request:ident) => {
        Ok(Response::new($self.server.$method(&$ctx, $request.into_inner()).await?))
    };
    (@call $self:ident, $method:ident, $ctx:ident, $request:ident, _) => {
        Ok(Response::new($self.server.$method(&$ctx).await?))
    };
}

#[tonic::async_trait]
impl Auth for AuthService {
    pass! {
        auth_enable(AuthEnableRequest) -> AuthEnableResponse, _;
        auth_disable(AuthDisableRequest) -> AuthDisableResponse, _;
        auth_status(AuthStatusRequest) -> AuthStatusResponse, _;
        authenticate(AuthenticateRequest) -> AuthenticateResponse;
        user_add(AuthUserAddRequest) -> AuthUserAddResponse;
        user_get(AuthUserGetRequest) -> AuthUserGetResponse;
        user_list(AuthUserListRequest) -> AuthUserListResponse, _;
        user_delete(AuthUserDeleteRequest) -> AuthUserDeleteResponse;
        user_change_password(AuthUserChangePasswordRequest) -> AuthUserChangePasswordResponse;
        user_grant_role(AuthUserGrantRoleRequest) -> AuthUserGrantRoleResponse;
        user_revoke_role(AuthUserRevokeRoleRequest) -> AuthUserRevokeRoleResponse;
        role_add(AuthRoleAddRequest) -> AuthRoleAddResponse;
        role_get(AuthRoleGetRequest) -> AuthRoleGetResponse;
        role_list(AuthRoleListRequest) -> AuthRoleListResponse, _;
        role_delete(AuthRoleDeleteRequest) -> AuthRoleDeleteResponse;
        role_grant_permission(AuthRoleGrantPermissionRequest) -> AuthRoleGrantPermissionResponse;
        role_revoke_permission(AuthRoleRevokePermissionRequest) -> AuthRoleRevokePermissionResponse;
    }
}
