//! openraft's errors as etcd reports them: the one conversion.
//!
//! The rule for writes (and membership changes, which are writes too): openraft answers
//! ForwardToLeader both when this member no longer led as the write arrived and when a new
//! leader truncated the entry after it was appended, and a truncated entry may still be
//! committed by a later leader that has it. So the outcome is unknown, and it is reported as
//! etcd reports such writes: `request timed out`, which clients do not take for "not
//! applied". A definite `not leader` is answered only before anything is proposed
//! (`route` is asked first).

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};

use crate::error::EtcdError;
use crate::raft::MemberInfo;

/// How a write (a proposal, a membership change) Raft did not apply is reported.
pub fn write_error(e: RaftError<u64, ClientWriteError<u64, MemberInfo>>) -> EtcdError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => EtcdError::Timeout,
        // Refused before anything was appended: another membership change is still in
        // progress (`cluster` waits for it and tries again), or one that makes no sense.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(_)) => EtcdError::NotLeader,
        RaftError::Fatal(_) => EtcdError::Stopped,
    }
}

/// How a read barrier (ReadIndex) that failed is reported.
pub fn read_error(e: RaftError<u64, CheckIsLeaderError<u64, MemberInfo>>) -> EtcdError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) if f.leader_id.is_some() => {
            EtcdError::NotLeader
        }
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)) => EtcdError::NoLeader,
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)) => EtcdError::Timeout,
        RaftError::Fatal(_) => EtcdError::Stopped,
    }
}
