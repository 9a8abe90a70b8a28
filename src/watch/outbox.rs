//! One watch stream's queue of responses waiting to be sent: filled by the hub (under its
//! lock, so a stream's responses keep the hub's order), drained by the stream's sender.
//!
//! Bounded in bytes, per stream and over all streams: the hub queues what a commit brings a
//! stream only when all of it fits, in the stream's queue and in the total; otherwise the
//! stream's watchers are set aside and catch up from the store later. So a client that does
//! not read costs at most `MAX_QUEUED_BYTES` (or one response, into an empty queue), and all
//! streams together at most `MAX_TOTAL_QUEUED_BYTES` plus `SMALL_QUEUE_BYTES` per stream (or
//! one response, when nothing else is queued): a hard bound, and streams whose clients read
//! always get small responses through, whatever the others hold. Sizes count shared events in
//! full, so what the queues hold in memory is at most that.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Outgoing;

/// Bytes of responses a stream may have queued before its watchers are set aside.
pub const MAX_QUEUED_BYTES: usize = 2 << 20;
/// Bytes of responses all streams together may have queued.
pub const MAX_TOTAL_QUEUED_BYTES: usize = 64 << 20;
/// What a stream may always queue, beyond the total (so the total is at most exceeded by
/// this much per stream); a starved stream wakes the catch-up once it drained below this.
const SMALL_QUEUE_BYTES: usize = 16 << 10;

/// What all streams' queues hold together, shared by every outbox of a hub.
#[derive(Default)]
pub struct Budget {
    queued_bytes: AtomicUsize,
    /// A watcher was set aside because the total was reached.
    starved: AtomicBool,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<(Outgoing, usize)>,
    bytes: usize,
    /// The hub set a watcher of this stream aside because the queue was full.
    starved: bool,
    closed: bool,
}

pub struct Outbox {
    queue: Mutex<Queue>,
    ready: Notify,
    budget: Arc<Budget>,
    /// Wakes the hub's catch-up when a full queue, or the total, drains.
    catch_up: Arc<Notify>,
}

impl Outbox {
    pub fn new(budget: Arc<Budget>, catch_up: Arc<Notify>) -> Outbox {
        Outbox {
            queue: Mutex::default(),
            ready: Notify::new(),
            budget,
            catch_up,
        }
    }

    /// Whether `size_bytes` more fit, in this queue and in the total. An empty queue takes
    /// one response of any size, and so does an empty total, so that every watcher makes
    /// progress. A full queue (or total) is marked starved, so draining it wakes the
    /// catch-up. The hub alone fills queues, under its lock: nothing else can fill the
    /// room between this check and the push.
    pub fn has_room(&self, size_bytes: usize) -> bool {
        let mut queue = self.queue.lock().expect("outbox lock");
        if queue.bytes > 0 && queue.bytes + size_bytes > MAX_QUEUED_BYTES {
            queue.starved = true;
            return false;
        }
        // A queue may always hold `SMALL_QUEUE_BYTES`, whatever the total: streams whose
        // clients read are not starved by streams that hold the total and read nothing.
        let within_own_share = queue.bytes + size_bytes <= SMALL_QUEUE_BYTES;
        let total = self.budget.queued_bytes.load(Ordering::Relaxed);
        if !within_own_share && total > 0 && total + size_bytes > MAX_TOTAL_QUEUED_BYTES {
            queue.starved = true;
            self.budget.starved.store(true, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn push(&self, item: Outgoing) {
        let size = item.size_bytes();
        let mut queue = self.queue.lock().expect("outbox lock");
        if queue.closed {
            return;
        }
        queue.bytes += size;
        self.budget.queued_bytes.fetch_add(size, Ordering::Relaxed);
        queue.items.push_back((item, size));
        drop(queue);
        self.ready.notify_one();
    }

    /// Ends the stream after what is queued.
    pub fn close(&self) {
        self.queue.lock().expect("outbox lock").closed = true;
        self.ready.notify_one();
    }

    /// The next response; `None` once closed and empty. One consumer only.
    pub async fn pop(&self) -> Option<Outgoing> {
        loop {
            {
                let mut queue = self.queue.lock().expect("outbox lock");
                if let Some((item, size)) = queue.items.pop_front() {
                    queue.bytes -= size;
                    let total = self.budget.queued_bytes.fetch_sub(size, Ordering::Relaxed) - size;
                    // Wake the catch-up once there is room again for what was refused.
                    if queue.starved && queue.bytes < SMALL_QUEUE_BYTES {
                        queue.starved = false;
                        self.catch_up.notify_one();
                    }
                    if total < MAX_TOTAL_QUEUED_BYTES
                        && self.budget.starved.swap(false, Ordering::Relaxed)
                    {
                        self.catch_up.notify_one();
                    }
                    return Some(item);
                }
                if queue.closed {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }
}

impl Drop for Outbox {
    /// What was never sent no longer counts against the total.
    fn drop(&mut self) {
        let queue = self.queue.get_mut().expect("outbox lock");
        self.budget
            .queued_bytes
            .fetch_sub(queue.bytes, Ordering::Relaxed);
        if self.budget.starved.swap(false, Ordering::Relaxed) {
            self.catch_up.notify_one();
        }
    }
}
