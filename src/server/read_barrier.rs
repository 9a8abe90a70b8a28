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

use super::raft_errors::read_error;
use super::route::{leader_replaced, wait_for_leader, Route};
use crate::error::EtcdError;
use crate::proto::cairnpeerpb::ReadIndexRequest;
use crate::raft::{Peers, Raft};

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
        let deadline = tokio::time::Instant::now() + timeout;
        let outcome = round(&raft, &peers, me, deadline).await;
        for waiter in waiters.drain(..) {
            // A reader that gave up no longer needs the answer.
            let _ = waiter.send(outcome);
        }
    }
}

/// Pause before a failed round is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(20);
/// After a round failed on a leader, how long another leader is awaited before that one
/// is asked again (the failure may have been a passing one).
const SAME_LEADER_AGAIN: Duration = Duration::from_millis(250);

/// One ReadIndex round, tried again until `deadline` while it fails for want of a leader
/// (an election, a leader gone or cut off): a read has no effect, so retrying it is always
/// safe, and a read that waits out an election is answered as in etcd rather than failed
/// at once. The leader a round just failed on is asked again only once no other has come
/// within `SAME_LEADER_AGAIN`.
async fn round(
    raft: &Raft,
    peers: &Peers,
    me: u64,
    deadline: tokio::time::Instant,
) -> Result<(), EtcdError> {
    let mut failed_on = None;
    let same_leader_again = || (tokio::time::Instant::now() + SAME_LEADER_AGAIN).min(deadline);
    loop {
        let attempt = async {
            let other_leader = wait_for_leader(raft, peers, me, failed_on, same_leader_again());
            let leader = match other_leader.await {
                Some(leader) => Some(leader),
                None => wait_for_leader(raft, peers, me, None, deadline).await,
            };
            match leader {
                Some(Route::Other(id, mut client)) => {
                    failed_on = Some(id);
                    let answer = tokio::select! {
                        answer = client.read_index(ReadIndexRequest {}) => answer,
                        // A leader paused or cut off may never answer: ask the next one.
                        () = leader_replaced(raft, peers, me, id) => {
                            return Err(EtcdError::NotLeader)
                        }
                    };
                    let answer = answer.map_err(|_| EtcdError::Timeout)?.into_inner();
                    if answer.error != 0 {
                        return Err(EtcdError::from_number(answer.error));
                    }
                    super::applied_up_to(raft, answer.index).await
                }
                Some(Route::Me) => {
                    failed_on = Some(me);
                    raft.ensure_linearizable()
                        .await
                        .map(|_| ())
                        .map_err(read_error)
                }
                None => Err(EtcdError::NoLeader),
            }
        };
        let outcome = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => return Err(EtcdError::Timeout),
        };
        match outcome {
            Err(EtcdError::NoLeader | EtcdError::NotLeader | EtcdError::Timeout)
                if tokio::time::Instant::now() + RETRY_PAUSE < deadline =>
            {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            outcome => return outcome,
        }
    }
}
