//! Maintenance.Snapshot: the state machine at one point, as an etcd snapshot (etcd's bbolt
//! file, `etcd_backend::export`), then its sha256, as etcd sends them.
//!
//! The file is written first, from a RocksDB snapshot (writes go on meanwhile), into an
//! unlinked temporary file under `member/` (nothing is left behind if the member stops), then
//! read out in 32 KiB messages as the client takes them. Memory stays bounded: the writer
//! holds a page per tree level, the sender one message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::io::AsyncReadExt;

use super::{RequestContext, Server};
use crate::error::EtcdError;
use crate::etcd_backend::SnapshotInfo;
use crate::etcd_data::EtcdMember;
use crate::proto::etcdserverpb::SnapshotResponse;

/// etcd's message size for a snapshot's bytes.
const CHUNK_BYTES: usize = 32 * 1024;
/// How often the progress of a long snapshot is logged.
const PROGRESS_EVERY_BYTES: u64 = 256 << 20;

/// Names of the temporary files, unique within the process.
static NEXT_EXPORT: AtomicU64 = AtomicU64::new(0);

/// A snapshot being sent: the file, read from the start, then its hash.
pub struct SnapshotSender {
    file: Option<tokio::fs::File>,
    total_bytes: u64,
    sent_bytes: u64,
    sha256: ring::digest::Context,
    storage_version: String,
    started: Instant,
    next_progress_bytes: u64,
}

impl Server {
    /// Root only, as etcd. Writes the snapshot file, then answers a sender of it.
    pub async fn snapshot(&self, ctx: &RequestContext) -> Result<SnapshotSender, EtcdError> {
        self.check_admin(ctx).await?;
        let started = Instant::now();
        let members = self
            .members()
            .into_iter()
            .map(|m| EtcdMember {
                id: m.id,
                peer_urls: m.peer_ur_ls,
                name: m.name,
                client_urls: m.client_ur_ls,
                is_learner: m.is_learner,
            })
            .collect();
        let storage_version = self.storage_version();
        let mut info = SnapshotInfo {
            consistent_index: 0,
            term: 0,
            members,
            cluster_version: storage_version.clone(),
            storage_version: storage_version.clone(),
            // Read before the view is taken: it only grows, and what it covers is gone.
            physically_compacted_rev: self.mvcc.physically_compacted_rev(),
        };
        let storage = self.storage.clone();
        let path = self.member_dir.join(format!(
            "snapshot-export-{}.tmp",
            NEXT_EXPORT.fetch_add(1, Ordering::Relaxed)
        ));
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            // Unlinked at once: the open file is all that remains, gone when it closes.
            std::fs::remove_file(&path)?;
            let view = storage.view();
            let (index, term) =
                crate::raft::applied_index_and_term(view.meta()).map_err(std::io::Error::other)?;
            (info.consistent_index, info.term) = (index, term);
            let (summary, mut file) = crate::etcd_backend::export(&view, &info, file)?;
            use std::io::Seek;
            file.rewind()?;
            Ok((summary, file, index))
        })
        .await
        .map_err(|_| EtcdError::Stopped)?;
        let (summary, file, index) = written.map_err(|e| {
            tracing::error!(error = %e, "cannot write a snapshot");
            EtcdError::SnapshotFailed
        })?;
        tracing::info!(
            total_bytes = summary.file_size,
            keys = summary.keys,
            applied_index = index,
            storage_version = storage_version.as_deref().unwrap_or(""),
            took_ms = started.elapsed().as_millis() as u64,
            "sending database snapshot to client"
        );
        Ok(SnapshotSender {
            file: Some(tokio::fs::File::from_std(file)),
            total_bytes: summary.file_size,
            sent_bytes: 0,
            sha256: ring::digest::Context::new(&ring::digest::SHA256),
            storage_version: storage_version.unwrap_or_default(),
            started,
            next_progress_bytes: PROGRESS_EVERY_BYTES,
        })
    }
}

/// Closes the snapshot file on a blocking thread: closing the last handle of an unlinked
/// file frees all its blocks, which for gigabytes takes the filesystem hundreds of
/// milliseconds, and would stall a runtime worker (and the requests it serves) meanwhile.
fn close_off_the_runtime(file: Option<tokio::fs::File>) {
    let Some(file) = file else { return };
    match (file.try_into_std(), tokio::runtime::Handle::try_current()) {
        (Ok(file), Ok(runtime)) => {
            runtime.spawn_blocking(move || drop(file));
        }
        (Ok(file), Err(_)) => drop(file),
        (Err(file), _) => drop(file),
    }
}

/// A client that goes away mid-stream drops the sender: its file is closed off the runtime
/// too.
impl Drop for SnapshotSender {
    fn drop(&mut self) {
        close_off_the_runtime(self.file.take());
    }
}

impl SnapshotSender {
    /// The next message: the file's next bytes, then the sha256 of them all; None after.
    pub async fn next_message(&mut self) -> Option<Result<SnapshotResponse, EtcdError>> {
        let file = self.file.as_mut()?;
        let remaining = self.total_bytes - self.sent_bytes;
        if remaining == 0 {
            close_off_the_runtime(self.file.take());
            let sha = std::mem::replace(
                &mut self.sha256,
                ring::digest::Context::new(&ring::digest::SHA256),
            )
            .finish();
            let took = self.started.elapsed();
            tracing::info!(
                total_bytes = self.total_bytes,
                took_ms = took.as_millis() as u64,
                mb_per_sec = self.total_bytes as f64 / 1e6 / took.as_secs_f64().max(1e-6),
                "sent database snapshot to client"
            );
            return Some(Ok(SnapshotResponse {
                header: None,
                remaining_bytes: 0,
                blob: sha.as_ref().to_vec(),
                version: self.storage_version.clone(),
            }));
        }
        let mut blob = vec![0u8; CHUNK_BYTES.min(remaining as usize)];
        if let Err(e) = file.read_exact(&mut blob).await {
            close_off_the_runtime(self.file.take());
            tracing::error!(error = %e, "cannot read the snapshot file");
            return Some(Err(EtcdError::SnapshotFailed));
        }
        self.sha256.update(&blob);
        self.sent_bytes += blob.len() as u64;
        if self.sent_bytes >= self.next_progress_bytes {
            self.next_progress_bytes += PROGRESS_EVERY_BYTES;
            tracing::info!(
                sent_bytes = self.sent_bytes,
                total_bytes = self.total_bytes,
                "sending database snapshot"
            );
        }
        Some(Ok(SnapshotResponse {
            header: None,
            remaining_bytes: self.total_bytes - self.sent_bytes,
            blob,
            version: self.storage_version.clone(),
        }))
    }
}
