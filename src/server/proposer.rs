//! Proposal batching: concurrent client writes share one Raft entry.
//!
//! Requests wait in a bounded queue. A single task takes everything queued (up to a batch
//! limit) as one `Batch`, hands it to Raft, and goes on collecting the next batch while
//! the previous one is stored and applied, up to `MAX_IN_FLIGHT_BATCHES`. One entry means
//! one log append and one fsync for the whole batch: openraft 0.9 awaits each append's
//! flush before the next, so this is where writes share an fsync. Each request still gets
//! its own revision and its own result when the entry is applied.
//!
//! On a follower the batch goes to the leader over the peer API, which proposes it as is.

use std::sync::Arc;

use std::time::Instant;

use openraft::error::RaftError;
use openraft::raft::responder::Responder;
use tokio::sync::{mpsc, oneshot, Semaphore};

use super::raft_errors::write_error;
use super::route::{leader_replaced, never_sent, wait_for_leader, Route};
use crate::error::EtcdError;
use crate::proto::cairnpeerpb::peer_client::PeerClient;
use crate::proto::cairnraftpb::{ApplyResult, InternalRequest, Proposal};
use crate::raft::{Batch, Peers, Raft, TypeConfig};
use crate::telemetry::{BatchTrace, Proposing};
use tonic::transport::Channel;

/// Requests waiting for a batch; beyond this, writers get `too many requests` at once
/// rather than an ever-growing queue.
const QUEUE_CAPACITY: usize = 16_384;
/// Upper bounds of one batch (one Raft entry).
const MAX_BATCH_REQUESTS: usize = 2048;
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Batches proposed but not yet applied. Two let one batch's fsync overlap the previous
/// batch's apply; more would only split the waiting requests into more entries, each with
/// an fsync of its own, queued inside Raft.
const MAX_IN_FLIGHT_BATCHES: usize = 2;

struct Pending {
    request: InternalRequest,
    size_bytes: usize,
    /// When the caller gets `request timed out` if there is no result yet.
    deadline: Instant,
    reply: oneshot::Sender<Result<ApplyResult, EtcdError>>,
    /// The request's `propose` span, when it is traced (see `telemetry`).
    trace: Option<opentelemetry::Context>,
}

#[derive(Clone)]
pub struct Proposer {
    queue: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Each request is answered by its deadline, `request timed out` at the latest.
    /// The deadline is kept per batch, not per request (a timer per request was 1.5% of the
    /// server's CPU under put load): a batch Raft never answers (its entry replaced by a
    /// snapshot after a leader change) cannot hold its slot past its earliest deadline, and a
    /// request still queued at its deadline is answered without being proposed.
    pub fn spawn(raft: Raft, peers: Arc<Peers>, me: u64) -> Proposer {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(run(raft, peers, me, rx));
        Proposer { queue: tx }
    }

    /// Proposes one request and waits until it is applied, or until its deadline.
    pub async fn propose(
        &self,
        request: InternalRequest,
        size_bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<ApplyResult, EtcdError> {
        let proposing = Proposing::start();
        let (reply, result) = oneshot::channel();
        let pending = Pending {
            request,
            size_bytes,
            deadline: deadline.into_std(),
            reply,
            trace: proposing.as_ref().map(Proposing::context),
        };
        let outcome = match self.queue.try_send(pending) {
            Ok(()) => result.await.unwrap_or(Err(EtcdError::Stopped)),
            Err(mpsc::error::TrySendError::Full(_)) => Err(EtcdError::TooManyRequests),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(EtcdError::Stopped),
        };
        if let Some(proposing) = proposing {
            proposing.finish(outcome.as_ref().err().map(|e| e as _));
        }
        outcome
    }
}

async fn run(raft: Raft, peers: Arc<Peers>, me: u64, mut queue: mpsc::Receiver<Pending>) {
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_BATCHES));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = queue.recv().await else {
            return;
        };
        let now = Instant::now();
        let mut bytes = 0;
        let mut batch: Vec<Pending> = Vec::new();
        let mut next = Some(first);
        while let Some(p) = next {
            if p.deadline <= now {
                // Waited its whole time in the queue (Raft is stuck): too late to propose.
                let _ = p.reply.send(Err(EtcdError::Timeout));
            } else {
                bytes += p.size_bytes;
                batch.push(p);
            }
            if batch.len() >= MAX_BATCH_REQUESTS || bytes >= MAX_BATCH_BYTES {
                break;
            }
            next = queue.try_recv().ok();
        }
        let Some(deadline) = batch.iter().map(|p| p.deadline).min() else {
            continue;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        // Empty, and never allocated, unless requests are traced.
        let mut traced = Vec::new();
        let (requests, replies): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .map(|p| {
                traced.extend(p.trace);
                (p.request, p.reply)
            })
            .unzip();
        let mut proposal = Batch(Arc::new(Proposal { requests }), None);
        // Without a leader (an election), the batch waits for the next one, as a proposal
        // waits in etcd; nothing is proposed meanwhile, so `no leader` at the deadline is
        // a definite failure.
        match wait_for_leader(&raft, &peers, me, None, deadline).await {
            Some(Route::Me) => {}
            Some(Route::Other(id, client)) => {
                let raft = raft.clone();
                let peers = peers.clone();
                tokio::spawn(async move {
                    let forwarded = forward(&raft, &peers, me, id, client, proposal, deadline);
                    let outcome = tokio::time::timeout_at(deadline, forwarded)
                        .await
                        .unwrap_or(Err(EtcdError::Timeout));
                    deliver(replies, outcome);
                    drop(permit);
                });
                continue;
            }
            None => {
                deliver(replies, Err(EtcdError::NoLeader));
                continue;
            }
        }
        proposal.1 = BatchTrace::start(traced, replies.len());
        match raft.client_write_ff(proposal).await {
            Ok(applied) => {
                tokio::spawn(async move {
                    deliver(replies, applied_here(applied, deadline).await);
                    drop(permit);
                });
            }
            Err(_) => deliver(replies, Err(EtcdError::Stopped)),
        }
    }
}

/// Where openraft sends the outcome of a write it accepted.
type AppliedReceiver =
    <<TypeConfig as openraft::RaftTypeConfig>::Responder as Responder<TypeConfig>>::Receiver;

/// The results of a batch this member proposed as the leader, once applied.
async fn applied_here(
    applied: AppliedReceiver,
    deadline: tokio::time::Instant,
) -> Result<Vec<ApplyResult>, EtcdError> {
    match tokio::time::timeout_at(deadline, applied).await {
        Ok(Ok(Ok(response))) => Ok(response.data.0.results),
        Ok(Ok(Err(e))) => Err(write_error(RaftError::APIError(e))),
        Ok(Err(_)) => Err(EtcdError::Stopped),
        Err(_) => Err(EtcdError::Timeout),
    }
}

/// Sends a batch to leader `id` and waits for its results, and for this member to apply
/// them. A batch that certainly never left (no connection to the leader could be made)
/// goes to the next leader instead. After any other failure the outcome is unknown
/// (`request timed out`), and it is answered only once another leader is known or at the
/// deadline: the clients of a member whose leader went away wait out the election, as in
/// etcd, instead of failing again and again until this member learns of the new leader.
/// An answer still awaited when another leader is elected is given up as unknown.
async fn forward(
    raft: &Raft,
    peers: &Peers,
    me: u64,
    mut id: u64,
    mut client: PeerClient<Channel>,
    proposal: Batch,
    deadline: tokio::time::Instant,
) -> Result<Vec<ApplyResult>, EtcdError> {
    loop {
        let sent = client.propose(Proposal::clone(&proposal.0));
        let answer = tokio::select! {
            answer = sent => answer,
            // The leader was paused or cut off after it got the batch, and the others
            // elected another: the answer may never come, and the outcome is unknown.
            // Stop waiting, so that this slot serves the next batches (to the new leader)
            // rather than holding them up until the deadline.
            () = leader_replaced(raft, peers, me, id) => return Err(EtcdError::Timeout),
        };
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                if answer.error != 0 {
                    return Err(EtcdError::from_number(answer.error));
                }
                // As etcd, answer only once this member has applied the write too, so that
                // a serializable read or a watch here right after the answer sees it.
                super::applied_up_to(raft, answer.index).await?;
                return Ok(answer.results.unwrap_or_default().results);
            }
            Err(status) if never_sent(&status) => {
                match wait_for_leader(raft, peers, me, Some(id), deadline).await {
                    Some(Route::Other(next, next_client)) => {
                        id = next;
                        client = next_client;
                    }
                    Some(Route::Me) => {
                        let applied = raft
                            .client_write_ff(proposal)
                            .await
                            .map_err(|_| EtcdError::Stopped)?;
                        return applied_here(applied, deadline).await;
                    }
                    // Nothing was sent anywhere.
                    None => return Err(EtcdError::NoLeader),
                }
            }
            Err(_) => {
                let _ = wait_for_leader(raft, peers, me, Some(id), deadline).await;
                return Err(EtcdError::Timeout);
            }
        }
    }
}

fn deliver(
    replies: Vec<oneshot::Sender<Result<ApplyResult, EtcdError>>>,
    outcome: Result<Vec<ApplyResult>, EtcdError>,
) {
    match outcome {
        Ok(results) => {
            debug_assert_eq!(results.len(), replies.len());
            for (reply, result) in replies.into_iter().zip(results) {
                // A client that went away no longer needs its answer.
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e));
            }
        }
    }
}
