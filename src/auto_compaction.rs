//! Automatic compaction (`--auto-compaction-mode`, `--auto-compaction-retention`), on etcd's
//! schedule. Periodic: sample the revision every tenth of the retention (at most every six
//! minutes), and once per retention (at most hourly) compact to the revision sampled one
//! retention ago. Revision: every five minutes, compact to `current - retention`.
//!
//! Compactions are ordinary compaction requests to the server, made by the leader only.
//! May call `server`, and `config` for the mode it is given.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{interval, Instant, MissedTickBehavior};

use crate::config::AutoCompaction;
use crate::error::EtcdError;
use crate::proto::etcdserverpb::CompactionRequest;
use crate::server::{RequestContext, Server};

const REVISION_MODE_INTERVAL: Duration = Duration::from_secs(5 * 60);
const PERIODIC_INTERVAL_CAP: Duration = Duration::from_secs(3600);
const PERIODIC_SAMPLES: u32 = 10;

/// Starts the compactor, or nothing when auto compaction is disabled.
pub fn spawn(node: Arc<Server>, mode: AutoCompaction) -> Option<tokio::task::JoinHandle<()>> {
    match mode {
        AutoCompaction::Disabled => None,
        AutoCompaction::Periodic(period) => Some(tokio::spawn(periodic(node, period))),
        AutoCompaction::Revision(keep) => Some(tokio::spawn(by_revision(node, keep))),
    }
}

async fn periodic(node: Arc<Server>, period: Duration) {
    let compact_every = period.min(PERIODIC_INTERVAL_CAP);
    let sample_every = compact_every / PERIODIC_SAMPLES;
    // Samples cover one retention: the oldest is the revision of `period` ago.
    let samples_kept = (period.as_secs_f64() / sample_every.as_secs_f64()) as usize + 1;
    let mut samples: VecDeque<i64> = VecDeque::with_capacity(samples_kept + 1);
    let mut ticks = interval(sample_every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_success = Instant::now();
    let mut wait = period;
    loop {
        samples.push_back(node.current_revision());
        if samples.len() > samples_kept {
            samples.pop_front();
        }
        ticks.tick().await;
        if last_success.elapsed() < wait {
            continue;
        }
        wait = compact_every;
        let rev = samples[0];
        if compact(&node, rev).await {
            last_success = Instant::now();
        }
    }
}

async fn by_revision(node: Arc<Server>, keep: i64) {
    let mut ticks = interval(REVISION_MODE_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ticks.tick().await;
    let mut previous = 0;
    loop {
        ticks.tick().await;
        let rev = node.current_revision() - keep;
        if rev <= 0 || rev == previous {
            continue;
        }
        if compact(&node, rev).await {
            previous = rev;
        }
    }
}

/// Compacts at `rev` if this member leads; true when the store is compacted at least that far.
async fn compact(node: &Server, rev: i64) -> bool {
    if !node.is_leader() {
        return false;
    }
    let request = CompactionRequest {
        revision: rev,
        physical: false,
    };
    match node.compact(&RequestContext::internal(), request).await {
        Ok(_) | Err(EtcdError::Compacted) => {
            tracing::info!(revision = rev, "completed auto compaction");
            true
        }
        Err(e) => {
            tracing::warn!(revision = rev, error = %e, "failed auto compaction; will retry");
            false
        }
    }
}
