//! The request checks and decoders that the fuzz targets in `fuzz/` (see FUZZING.md) call,
//! exactly as the gRPC handlers call them. Compiled only with the cargo feature `fuzzing`;
//! not an API. May call `api`, `peer`, `server` and `raft`.

use serde::de::DeserializeOwned;

use crate::proto::cairnpeerpb::RaftMessage;
use crate::proto::etcdserverpb::WatchCreateRequest;
use crate::server::WatchSpec;

/// The KV service's request checks (`api::validate`).
pub use crate::api::validate::{
    delete_range as validate_delete_range, put as validate_put, range as validate_range,
    txn as validate_txn,
};

/// The watch a `WatchCreateRequest` asks for, or why it is refused (`api::watch`).
pub fn watch_spec(create: &WatchCreateRequest) -> Result<WatchSpec, String> {
    crate::api::watch::watch_spec(create)
}

/// The peer URLs of a member add or update, as the Cluster service accepts them, or its
/// error message (`api::validate`).
pub fn parse_peer_urls(urls: &[String]) -> Result<Vec<String>, String> {
    crate::api::validate::peer_urls(urls).map_err(|e| e.to_string())
}

/// The peer API's handlers of Raft's messages (`peer`): the answer's payload, or the
/// status's message when the request is refused.
pub async fn handle_raft_message(
    raft: &crate::raft::Raft,
    method: RaftMethod,
    message: &RaftMessage,
) -> Result<Vec<u8>, String> {
    use crate::peer::{decode_append, decode_snapshot, decode_vote, encode};
    let answer = match method {
        RaftMethod::AppendEntries => match decode_append(message) {
            Ok(rpc) => encode(&raft.append_entries(rpc).await),
            Err(refused) => Err(refused),
        },
        RaftMethod::Vote => match decode_vote(message) {
            Ok(rpc) => encode(&raft.vote(rpc).await),
            Err(refused) => Err(refused),
        },
        RaftMethod::InstallSnapshot => match decode_snapshot(message) {
            Ok(rpc) => encode(&raft.install_snapshot(rpc).await),
            Err(refused) => Err(refused),
        },
    };
    answer
        .map(|a| a.into_inner().payload)
        .map_err(|s| s.message().to_string())
}

#[derive(Debug, Clone, Copy)]
pub enum RaftMethod {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

/// The peer API's decoding of a Raft message's payload (`peer`).
pub fn decode_raft_message<T: DeserializeOwned>(message: &RaftMessage) -> Result<T, String> {
    crate::peer::decode(message).map_err(|s| s.message().to_string())
}
