//! `etcdserverpb.Watch`: one bidirectional stream carries many watches. Requests are
//! checked and handed to the server's watch handle; what it reports becomes responses
//! (fragmented as etcd fragments them) and is sent.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prost::Message;
use tokio::sync::oneshot;
use tonic::{Request, Response, Status, Streaming};

use super::BoxStream;
use crate::error::EtcdError;
use crate::proto::etcdserverpb::watch_request::RequestUnion;
use crate::proto::etcdserverpb::watch_server::Watch;
use crate::proto::etcdserverpb::{
    watch_create_request::FilterType, ResponseHeader, WatchCreateRequest, WatchRequest,
    WatchResponse,
};
use crate::proto::mvccpb::Event;
use crate::server::{KeyRange, Outgoing, Server, WatchHandle, WatchSpec, NO_WATCH_ID};

/// Watch streams one client connection may hold open: each has a bounded queue
/// (`watch::MAX_QUEUED_BYTES`).
pub const MAX_WATCH_STREAMS_PER_CONNECTION: usize = 1024;
/// etcd's floor for the progress notification interval.
const MIN_PROGRESS_INTERVAL: Duration = Duration::from_millis(100);

pub struct WatchService {
    server: Arc<Server>,
    progress_interval: Duration,
    /// A fragmented response's parts stay under this size, as etcd cuts them.
    fragment_bytes: usize,
    streams_per_connection: Arc<Mutex<HashMap<SocketAddr, usize>>>,
}

impl WatchService {
    pub fn new(server: Arc<Server>, progress_interval: Duration, fragment_bytes: usize) -> Self {
        WatchService {
            server,
            progress_interval: progress_interval.max(MIN_PROGRESS_INTERVAL),
            fragment_bytes,
            streams_per_connection: Arc::default(),
        }
    }
}

/// Counts a connection's open watch streams while it lives.
struct ConnectionSlot {
    counts: Arc<Mutex<HashMap<SocketAddr, usize>>>,
    peer: Option<SocketAddr>,
}

impl ConnectionSlot {
    fn take(
        counts: &Arc<Mutex<HashMap<SocketAddr, usize>>>,
        peer: Option<SocketAddr>,
    ) -> Result<ConnectionSlot, Status> {
        if let Some(peer) = peer {
            let mut map = counts.lock().expect("stream counts lock");
            let count = map.entry(peer).or_default();
            if *count >= MAX_WATCH_STREAMS_PER_CONNECTION {
                return Err(Status::resource_exhausted(format!(
                    "cairn: too many watch streams on one connection (at most {MAX_WATCH_STREAMS_PER_CONNECTION})"
                )));
            }
            *count += 1;
        }
        Ok(ConnectionSlot {
            counts: counts.clone(),
            peer,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            let mut map = self.counts.lock().expect("stream counts lock");
            if let Some(count) = map.get_mut(&peer) {
                *count -= 1;
                if *count == 0 {
                    map.remove(&peer);
                }
            }
        }
    }
}

/// Everything one stream's sending side owns; dropped when the client goes away.
struct Sender {
    handle: Arc<WatchHandle>,
    /// A failed receive (e.g. an oversized request) ends the stream with its status;
    /// `None` once the receiving side is over.
    receive_failed: Option<oneshot::Receiver<Status>>,
    receiver: tokio::task::JoinHandle<()>,
    progress: tokio::time::Interval,
    ready: VecDeque<WatchResponse>,
    fragment_bytes: usize,
    _slot: ConnectionSlot,
    done: bool,
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = BoxStream<WatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let slot = ConnectionSlot::take(&self.streams_per_connection, request.remote_addr())?;
        let handle = Arc::new(self.server.watch(&super::context(&request))?);
        let (fail_tx, fail_rx) = oneshot::channel();
        let receiver = tokio::spawn(receive(request.into_inner(), handle.clone(), fail_tx));
        // etcd adds up to 10% jitter so many streams' notifications do not arrive together.
        let jitter_ms = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            % (self.progress_interval.as_millis() as u64 / 10 + 1);
        let period = self.progress_interval + Duration::from_millis(jitter_ms);
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let sender = Sender {
            handle,
            receive_failed: Some(fail_rx),
            receiver,
            progress,
            ready: VecDeque::new(),
            fragment_bytes: self.fragment_bytes,
            _slot: slot,
            done: false,
        };
        let responses = futures::stream::unfold(sender, |mut sender| async move {
            let item = sender.next().await?;
            Some((item, sender))
        });
        Ok(Response::new(Box::pin(responses)))
    }
}

/// Reads the client's requests until it closes its side. After a close the watches go on,
/// as with etcd: the stream ends when the client cancels it.
async fn receive(
    mut requests: Streaming<WatchRequest>,
    handle: Arc<WatchHandle>,
    failed: oneshot::Sender<Status>,
) {
    let stream = handle.stream();
    loop {
        let request = match requests.message().await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(status) => {
                let _ = failed.send(status);
                return;
            }
        };
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => {
                // Who may watch is decided first, as etcd does.
                let key = if create.key.is_empty() {
                    &[0][..]
                } else {
                    &create.key[..]
                };
                if let Err(e) = handle.may_watch(key, &create.range_end).await {
                    stream.reject(&watch_refusal(e));
                    continue;
                }
                match watch_spec(&create) {
                    Ok(spec) => stream.create(spec),
                    Err(reason) => stream.reject(&reason),
                }
            }
            Some(RequestUnion::CancelRequest(cancel)) => stream.cancel(cancel.watch_id),
            Some(RequestUnion::ProgressRequest(_)) => stream.request_progress(),
            None => {}
        }
    }
}

/// The cancel reason of a watch its caller may not create: etcd names a token or identity
/// problem, and says `permission denied` for anything else, each as Go prints a gRPC error.
fn watch_refusal(e: EtcdError) -> String {
    let e = match e {
        EtcdError::InvalidAuthToken | EtcdError::AuthOldRevision | EtcdError::UserEmpty => e,
        _ => EtcdError::PermissionDenied,
    };
    format!("rpc error: code = {:?} desc = {e}", e.code())
}

/// The watch a create request asks for, or why it is refused (a created-and-canceled reply).
pub(crate) fn watch_spec(create: &WatchCreateRequest) -> Result<WatchSpec, String> {
    // etcd 3.6+ refuses a negative start revision outright; 3.4 created, then canceled it.
    if create.start_revision < 0 {
        return Err(EtcdError::Compacted.to_string());
    }
    let filters = |f: FilterType| create.filters.contains(&(f as i32));
    Ok(WatchSpec {
        range: KeyRange::from_request(&create.key, &create.range_end).map_err(str::to_string)?,
        watch_id: create.watch_id,
        start_rev: create.start_revision,
        prev_kv: create.prev_kv,
        progress_notify: create.progress_notify,
        fragment: create.fragment,
        no_put: filters(FilterType::Noput),
        no_delete: filters(FilterType::Nodelete),
    })
}

impl Sender {
    async fn next(&mut self) -> Option<Result<WatchResponse, Status>> {
        loop {
            if let Some(response) = self.ready.pop_front() {
                fail::fail_point!("watch_before_send");
                return Some(Ok(response));
            }
            if self.done {
                return None;
            }
            tokio::select! {
                outgoing = self.handle.next() => match outgoing {
                    Some(outgoing) => self.complete(outgoing),
                    None => {
                        // Only a stopping member closes a stream's queue.
                        self.done = true;
                        return Some(Err(Status::unavailable("etcdserver: server stopped")));
                    }
                },
                failed = async { self.receive_failed.as_mut().expect("guarded").await },
                    if self.receive_failed.is_some() =>
                {
                    self.receive_failed = None;
                    if let Ok(status) = failed {
                        self.done = true;
                        return Some(Err(status));
                    }
                }
                _ = self.progress.tick() => self.handle.progress_tick(),
                lost = self.handle.leader_lost() => {
                    self.done = true;
                    return Some(Err(lost.into()));
                }
            }
        }
    }

    /// Turns a queued response into what goes on the wire.
    fn complete(&mut self, outgoing: Outgoing) {
        let header = |rev: i64| Some(self.handle.header(rev));
        let response = match outgoing {
            Outgoing::Created { watch_id, rev } => WatchResponse {
                header: header(rev),
                watch_id,
                created: true,
                ..WatchResponse::default()
            },
            Outgoing::CreateFailed { rev, reason } => WatchResponse {
                header: header(rev),
                watch_id: NO_WATCH_ID,
                created: true,
                canceled: true,
                cancel_reason: reason,
                ..WatchResponse::default()
            },
            Outgoing::Canceled { watch_id, rev } => WatchResponse {
                header: header(rev),
                watch_id,
                canceled: true,
                ..WatchResponse::default()
            },
            Outgoing::Progress { watch_id, rev } => WatchResponse {
                header: header(rev),
                watch_id,
                ..WatchResponse::default()
            },
            // etcd's header here carries no revision.
            Outgoing::Compacted {
                watch_id,
                compact_rev,
            } => WatchResponse {
                header: Some(ResponseHeader {
                    revision: 0,
                    ..self.handle.header(0)
                }),
                watch_id,
                compact_revision: compact_rev,
                canceled: true,
                ..WatchResponse::default()
            },
            Outgoing::Events {
                watch_id,
                rev,
                events,
                prev_kv,
                fragment,
            } => {
                // The hub shares events between streams; this stream's copy is made only
                // now, as it is sent.
                let mut events: Vec<Event> = events.into_iter().map(Arc::unwrap_or_clone).collect();
                if prev_kv {
                    self.handle.fill_prev_kvs(&mut events);
                }
                let response = WatchResponse {
                    header: header(rev),
                    watch_id,
                    events,
                    ..WatchResponse::default()
                };
                if fragment {
                    self.fragment(response);
                    return;
                }
                response
            }
        };
        self.ready.push_back(response);
    }

    /// etcd's fragmentation: parts of at most `fragment_bytes` (one event may exceed
    /// it), all but the last marked `fragment`.
    fn fragment(&mut self, mut response: WatchResponse) {
        if response.encoded_len() < self.fragment_bytes || response.events.len() < 2 {
            self.ready.push_back(response);
            return;
        }
        let events = std::mem::take(&mut response.events);
        let template = WatchResponse {
            fragment: true,
            ..response
        };
        let mut part = template.clone();
        for event in events {
            part.events.push(event);
            if part.events.len() > 1 && part.encoded_len() >= self.fragment_bytes {
                let overflow = part.events.pop().expect("just pushed");
                let mut next = template.clone();
                next.events.push(overflow);
                self.ready.push_back(std::mem::replace(&mut part, next));
            }
        }
        part.fragment = false;
        self.ready.push_back(part);
    }
}
