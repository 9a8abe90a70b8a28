//! Watchers that record what they receive, and the store's event log.
//!
//! A watcher watches every key of the traffic with `prev_kv` and `progress_notify` from a
//! start revision, asks for progress now and then, and when its stream breaks (its member
//! was killed) reconnects and resumes from the revision after the last event it saw, as a
//! client that must miss nothing does. It ends once it has seen the run's final revision.

use std::time::Duration;

use cairn_history::{Event, WatchHistory, WatchResponse, WatchStream};
use etcd_client::{EventType, WatchOptions};
use tokio::sync::watch;

use super::traffic::{connect, key_value, Recorder, KEY_PREFIX};

/// How often a watcher asks for a progress notification.
const PROGRESS_REQUEST_EVERY: Duration = Duration::from_millis(700);

/// The end of the traffic's key range (every key starting with `KEY_PREFIX`).
fn range_end() -> String {
    let mut end = KEY_PREFIX.as_bytes().to_vec();
    *end.last_mut().unwrap() += 1;
    String::from_utf8(end).unwrap()
}

fn options(start_revision: i64) -> WatchOptions {
    WatchOptions::new()
        .with_range(range_end())
        .with_start_revision(start_revision)
        .with_prev_key()
        .with_progress_notify()
}

fn event(e: &etcd_client::Event) -> Event {
    let kv = e.kv().expect("an event carries its key");
    Event {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        value: match e.event_type() {
            EventType::Put => Some(String::from_utf8_lossy(kv.value()).into_owned()),
            EventType::Delete => None,
        },
        mod_revision: kv.mod_revision(),
        create_revision: kv.create_revision(),
        version: kv.version(),
        lease_id: kv.lease(),
        prev_kv: e.prev_kv().map(key_value),
    }
}

/// Watches from `start_revision` until it has seen the final revision `until` gives, or its
/// watch was canceled; reconnects and resumes after every broken stream.
pub async fn run_watcher(
    id: u32,
    endpoint: String,
    start_revision: i64,
    recorder: std::sync::Arc<Recorder>,
    mut until: watch::Receiver<Option<i64>>,
) -> WatchHistory {
    let mut history = WatchHistory {
        client: id,
        key: KEY_PREFIX.to_string(),
        range_end: range_end(),
        start_revision,
        prev_kv: true,
        progress_notify: true,
        streams: Vec::new(),
    };
    // The revision the next stream starts from, and the highest revision known complete.
    let mut next = start_revision;
    let mut progress_seen: i64 = 0;
    let done = |next: i64, progress: i64, until: &watch::Receiver<Option<i64>>| {
        until
            .borrow()
            .is_some_and(|last| next > last || progress >= last)
    };
    'streams: while !done(next, progress_seen, &until) {
        let mut client = connect(&endpoint).await;
        let mut stream = match client.watch(KEY_PREFIX, Some(options(next))).await {
            Ok(s) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        history.streams.push(WatchStream {
            start_revision: next,
            responses: Vec::new(),
        });
        let mut progress_tick = tokio::time::interval(PROGRESS_REQUEST_EVERY);
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(r)) => {
                        if r.created() && r.events().is_empty() && !r.canceled() {
                            continue;
                        }
                        let response = WatchResponse {
                            received_ns: recorder.now_ns(),
                            header_revision: r.header().map_or(0, |h| h.revision()),
                            events: r.events().iter().map(event).collect(),
                            compact_revision: r.compact_revision(),
                            canceled: r.canceled(),
                        };
                        if let Some(last) = response.events.last() {
                            next = last.mod_revision + 1;
                        } else if !response.canceled {
                            progress_seen = progress_seen.max(response.header_revision);
                        }
                        let canceled = response.canceled;
                        history.streams.last_mut().unwrap().responses.push(response);
                        if canceled {
                            break 'streams;
                        }
                    }
                    // The stream broke (its member went down): resume on a new one.
                    Ok(None) | Err(_) => break,
                },
                _ = progress_tick.tick() => {
                    if stream.request_progress().await.is_err() {
                        break;
                    }
                }
                _ = until.changed() => {}
            }
            if done(next, progress_seen, &until) {
                break 'streams;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    history
}

/// The store's whole event log as member `endpoint` has it: a watch from revision 1 over
/// the traffic's keys, read until `last_revision`.
pub async fn read_event_log(endpoint: &str, last_revision: i64) -> Result<Vec<Event>, String> {
    let mut log = Vec::new();
    if last_revision < 2 {
        return Ok(log);
    }
    let mut client = connect(endpoint).await;
    let mut stream = client
        .watch(KEY_PREFIX, Some(options(1)))
        .await
        .map_err(|e| format!("watch from revision 1 on {endpoint}: {e}"))?;
    loop {
        match stream.message().await {
            Ok(Some(r)) => {
                if r.canceled() {
                    return Err(format!(
                        "watch from revision 1 on {endpoint} canceled: {} (compact revision {})",
                        r.cancel_reason(),
                        r.compact_revision()
                    ));
                }
                log.extend(r.events().iter().map(event));
                if log.last().is_some_and(|e| e.mod_revision >= last_revision) {
                    return Ok(log);
                }
            }
            Ok(None) => return Err(format!("watch on {endpoint} ended")),
            Err(e) => return Err(format!("watch on {endpoint}: {e}")),
        }
    }
}
