//! Read barriers for linearizable reads, shared by concurrent readers.
//!
//! A linearizable read needs a ReadIndex round: the leader confirms with a quorum that it
//! still leads, and the member applies up to the commit index of that moment. One task runs
//! the rounds one after another; every reader that arrived while a round was running waits
//! for the next one, which starts after its arrival, and shares it with all others that
//! queued meanwhile. So N concurrent readers cost one quorum round, not N.
//!
//! On a follower a round asks the leader (over the peer API) for its read index, then waits
//! until this member has applied up to it.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use openraft::error::{CheckIsLeaderError, RaftError};

use crate::error::EtcdError;
use crate::proto::cairnpeerpb::ReadIndexRequest;
use crate::raft::{leader, Leader, Peers, Raft};

/// Readers waiting for the next round; beyond this, reads get `too many requests`.
const QUEUE_CAPACITY: usize = 65_536;

type Waiter = oneshot::Sender<Result<(), EtcdError>>;

#[derive(Clone)]
pub struct ReadBarrier {
    queue: mpsc::Sender<Waiter>,
}

impl ReadBarrier {
    pub fn spawn(raft: Raft, peers: Arc<Peers>, me: u64, timeout: Duration) -> ReadBarrier {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(raft, peers, me, timeout, rx));
        ReadBarrier { queue: tx }
    }

    /// Returns once a ReadIndex round that started after this call has completed.
    pub async fn wait(&self) -> Result<(), EtcdError> {
        let (tx, rx) = oneshot::channel();
        self.queue.try_send(tx).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => EtcdError::TooManyRequests,
            mpsc::error::TrySendError::Closed(_) => EtcdError::Stopped,
        })?;
        rx.await.map_err(|_| EtcdError::Stopped)?
    }
}

async fn run(
    raft: Raft,
    peers: Arc<Peers>,
    me: u64,
    timeout: Duration,
    mut queue: mpsc::Receiver<Waiter>,
) {
    let mut waiters = Vec::new();
    while let Some(first) = queue.recv().await {
        waiters.push(first);
        while let Ok(w) = queue.try_recv() {
            waiters.push(w);
        }
        let round = async {
            match leader(&raft, &peers, me) {
                Some(Leader::Other(mut client)) => {
                    let answer = client
                        .read_index(ReadIndexRequest {})
                        .await
                        .map_err(|_| EtcdError::Timeout)?
                        .into_inner();
                    if answer.error != 0 {
                        return Err(EtcdError::from_number(answer.error));
                    }
                    super::applied_up_to(&raft, answer.index).await
                }
                // Without a known leader, openraft answers as etcd would: no leader.
                Some(Leader::Me) | None => raft
                    .ensure_linearizable()
                    .await
                    .map(|_| ())
                    .map_err(read_error),
            }
        };
        let outcome = tokio::time::timeout(timeout, round)
            .await
            .unwrap_or(Err(EtcdError::Timeout));
        for waiter in waiters.drain(..) {
            // A reader that gave up no longer needs the answer.
            let _ = waiter.send(outcome);
        }
    }
}

/// Raft errors of a read barrier, as etcd reports them.
pub fn read_error(
    e: RaftError<u64, CheckIsLeaderError<u64, crate::raft::MemberInfo>>,
) -> EtcdError {
    match e {
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) if f.leader_id.is_some() => {
            EtcdError::NotLeader
        }
        RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)) => EtcdError::NoLeader,
        RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)) => EtcdError::Timeout,
        RaftError::Fatal(_) => EtcdError::Stopped,
    }
}
