//! Maintenance.Snapshot: the state machine at one point, as an etcd snapshot (etcd's bbolt
//! file, `etcd_backend::export`), then its sha256, as etcd sends them.
//!
//! The file is written from one RocksDB snapshot (writes go on meanwhile) straight into the
//! client's stream, never to disk: a member whose disk is full still sends a backup, and
//! one with room does not need the store's size again. bbolt's meta pages come first in
//! the file but are known last, so the view is written twice (`export_unseekable`): once
//! to measure, once to send. Memory stays bounded: the writer holds a page per tree level
//! and a leaf, the channel to the client `CHUNKS_IN_FLIGHT` messages. A snapshot holds its
//! view and a thread for as long as its client takes to read it (etcd holds a read
//! transaction as long), so at most `MAX_SNAPSHOTS_IN_FLIGHT` are written at once; past
//! that, `etcdserver: too many requests`.

use std::io::{self, Write};
use std::time::Instant;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};

use super::{RequestContext, Server};
use crate::error::EtcdError;
use crate::etcd_backend::SnapshotInfo;
use crate::etcd_data::EtcdMember;
use crate::proto::etcdserverpb::SnapshotResponse;

/// etcd's message size for a snapshot's bytes.
const CHUNK_BYTES: usize = 32 * 1024;
/// Messages written ahead of the client: the writer waits when it is this far ahead.
const CHUNKS_IN_FLIGHT: usize = 16;
/// How often the progress of a long snapshot is logged.
const PROGRESS_EVERY_BYTES: u64 = 256 << 20;
/// Snapshots written at once (see the top).
const MAX_SNAPSHOTS_IN_FLIGHT: usize = 4;

/// The member's room for snapshots being written.
pub(super) struct SnapshotSlots(Arc<Semaphore>);

impl Default for SnapshotSlots {
    fn default() -> SnapshotSlots {
        SnapshotSlots(Arc::new(Semaphore::new(MAX_SNAPSHOTS_IN_FLIGHT)))
    }
}

/// A snapshot being sent: the file's messages as the writer makes them, then its hash.
pub struct SnapshotSender {
    chunks: mpsc::Receiver<Vec<u8>>,
    /// The writer's thread, until it is done.
    writer: Option<tokio::task::JoinHandle<io::Result<()>>>,
    total_bytes: u64,
    sent_bytes: u64,
    sha256: ring::digest::Context,
    storage_version: String,
    started: Instant,
    next_progress_bytes: u64,
}

/// The writer's output: the file in `CHUNK_BYTES` messages, to the client's channel.
struct ChunkOut {
    chunks: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChunkOut {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK_BYTES));
        self.chunks
            .blocking_send(chunk)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// Sends what is left.
    fn finish(mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.send()
    }
}

impl Write for ChunkOut {
    fn write(&mut self, mut data: &[u8]) -> io::Result<usize> {
        let n = data.len();
        while !data.is_empty() {
            let take = (CHUNK_BYTES - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() == CHUNK_BYTES {
                self.send()?;
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Server {
    /// Root only, as etcd. Lays the snapshot file out (the first pass), then answers a
    /// sender of it, which the writer fills (the second).
    pub async fn snapshot(&self, ctx: &RequestContext) -> Result<SnapshotSender, EtcdError> {
        self.check_admin(ctx).await?;
        let slot = (self.snapshots.0.clone().try_acquire_owned())
            .map_err(|_| EtcdError::TooManyRequests)?;
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
        let (measured_tx, measured) = oneshot::channel();
        let (chunks_tx, chunks) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let writer = tokio::task::spawn_blocking(move || -> io::Result<()> {
            let _slot = slot;
            let view = storage.view();
            let (index, term) =
                crate::raft::applied_index_and_term(view.meta()).map_err(io::Error::other)?;
            (info.consistent_index, info.term) = (index, term);
            let out = ChunkOut {
                chunks: chunks_tx,
                buf: Vec::with_capacity(CHUNK_BYTES),
            };
            let client = out.chunks.clone();
            let wanted = move || !client.is_closed();
            let (_, out) =
                crate::etcd_backend::export_unseekable(&view, &info, out, wanted, |summary| {
                    (measured_tx.send((summary.clone(), index))).map_err(|_| {
                        io::Error::new(io::ErrorKind::BrokenPipe, "the client went away")
                    })
                })?;
            out.finish()
        });
        let Ok((summary, index)) = measured.await else {
            let error = match writer.await {
                Ok(Err(e)) => e.to_string(),
                Ok(Ok(())) => "the writer ended before the file was laid out".to_string(),
                Err(e) => e.to_string(),
            };
            tracing::error!(error, "cannot write a snapshot");
            return Err(EtcdError::SnapshotFailed);
        };
        tracing::info!(
            total_bytes = summary.file_size,
            keys = summary.keys,
            applied_index = index,
            storage_version = storage_version.as_deref().unwrap_or(""),
            took_ms = started.elapsed().as_millis() as u64,
            "sending database snapshot to client"
        );
        Ok(SnapshotSender {
            chunks,
            writer: Some(writer),
            total_bytes: summary.file_size,
            sent_bytes: 0,
            sha256: ring::digest::Context::new(&ring::digest::SHA256),
            storage_version: storage_version.unwrap_or_default(),
            started,
            next_progress_bytes: PROGRESS_EVERY_BYTES,
        })
    }
}

impl SnapshotSender {
    /// The next message: the file's next bytes, then the sha256 of them all; None after.
    /// A client that goes away drops the sender, and the writer stops at its next message.
    pub async fn next_message(&mut self) -> Option<Result<SnapshotResponse, EtcdError>> {
        let Some(blob) = self.chunks.recv().await else {
            return self.last_message().await;
        };
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
            remaining_bytes: self.total_bytes.saturating_sub(self.sent_bytes),
            blob,
            version: self.storage_version.clone(),
        }))
    }

    /// Once the writer is done: the hash, or the error that stopped it.
    async fn last_message(&mut self) -> Option<Result<SnapshotResponse, EtcdError>> {
        let writer = self.writer.take()?;
        let result = match writer.await {
            Ok(Ok(())) if self.sent_bytes == self.total_bytes => Ok(()),
            Ok(Ok(())) => Err(format!(
                "{} bytes written of {}",
                self.sent_bytes, self.total_bytes
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = result {
            tracing::error!(error, "cannot write a snapshot");
            return Some(Err(EtcdError::SnapshotFailed));
        }
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
        Some(Ok(SnapshotResponse {
            header: None,
            remaining_bytes: 0,
            blob: sha.as_ref().to_vec(),
            version: self.storage_version.clone(),
        }))
    }
}
