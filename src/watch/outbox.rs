//! One watch stream's queue of responses waiting to be sent: filled by the hub (under its
//! lock, so a stream's responses keep the hub's order), drained by the stream's sender.
//!
//! Bounded in bytes: when it is full, the hub stops filling it and the stream's watchers
//! catch up from the store later, so a client that does not read costs at most
//! `MAX_QUEUED_BYTES` plus one response.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Outgoing;

/// Bytes of responses a stream may have queued before its watchers are set aside.
pub const MAX_QUEUED_BYTES: usize = 2 << 20;

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
    /// Wakes the hub's catch-up when a full queue drains.
    catch_up: Arc<Notify>,
}

impl Outbox {
    pub fn new(catch_up: Arc<Notify>) -> Outbox {
        Outbox {
            queue: Mutex::default(),
            ready: Notify::new(),
            catch_up,
        }
    }

    /// Whether another response fits. A full queue marks the stream starved, so draining
    /// it wakes the catch-up.
    pub fn has_room(&self) -> bool {
        let mut queue = self.queue.lock().expect("outbox lock");
        let room = queue.bytes < MAX_QUEUED_BYTES;
        if !room {
            queue.starved = true;
        }
        room
    }

    pub fn push(&self, item: Outgoing) {
        let size = item.size_bytes();
        let mut queue = self.queue.lock().expect("outbox lock");
        if queue.closed {
            return;
        }
        queue.bytes += size;
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
                    if queue.starved && queue.bytes < MAX_QUEUED_BYTES / 2 {
                        queue.starved = false;
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
