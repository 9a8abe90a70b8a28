//! Services whose features are not built yet. Every RPC answers `Unimplemented` with a
//! message naming it, never a fake success; the README's compatibility table lists them.

use std::future::Future;
use std::pin::Pin;

use tonic::{Request, Response, Status};

use super::{not_yet, BoxStream};
use crate::proto::v3electionpb::election_server::Election;
use crate::proto::v3electionpb::*;
use crate::proto::v3lockpb::lock_server::Lock;
use crate::proto::v3lockpb::*;

pub struct NotYet;

/// Implements unary RPCs as `Unimplemented`, named `Service.Method` in the message. Written
/// in the shape `async_trait` gives methods, since it cannot see inside a macro call.
macro_rules! unary_not_yet {
    ($service:literal: $($method:ident($req:ty) -> $resp:ty = $name:literal;)*) => {
        $(
            fn $method<'life0, 'async_trait>(
                &'life0 self,
                _: Request<$req>,
            ) -> Pin<Box<dyn Future<Output = Result<Response<$resp>, Status>> + Send + 'async_trait>>
            where
                'life0: 'async_trait,
                Self: 'async_trait,
            {
                Box::pin(async move { Err(not_yet(concat!($service, ".", $name))) })
            }
        )*
    };
}

#[tonic::async_trait]
impl Lock for NotYet {
    unary_not_yet! { "Lock":
        lock(LockRequest) -> LockResponse = "Lock";
        unlock(UnlockRequest) -> UnlockResponse = "Unlock";
    }
}

#[tonic::async_trait]
impl Election for NotYet {
    unary_not_yet! { "Election":
        campaign(CampaignRequest) -> CampaignResponse = "Campaign";
        proclaim(ProclaimRequest) -> ProclaimResponse = "Proclaim";
        leader(LeaderRequest) -> LeaderResponse = "Leader";
        resign(ResignRequest) -> ResignResponse = "Resign";
    }

    type ObserveStream = BoxStream<LeaderResponse>;

    async fn observe(
        &self,
        _: Request<LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        Err(not_yet("Election.Observe"))
    }
}
