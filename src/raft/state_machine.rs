//! The Raft state machine: applies committed entries to the MVCC store, and builds and
//! installs snapshots.
//!
//! Owns the applied log id and membership (`MetaKey::Applied`, `MetaKey::Membership`),
//! and the snapshot files' names, metas and lifecycle in the snapshot directory. May call
//! `storage`, `mvcc`, `lease`, `auth`, `alarms`, `members`, `watch`, `apply`, and `metrics` (commit
//! times, slow applies).
//!
//! The applied log id and membership are written in the same storage batch as the changes
//! they cover, so a restart neither re-applies nor skips an entry. State-machine writes are
//! not synced on their own: the Raft log is the durable record, and entries past the last
//! applied id on disk are applied again at start-up.
//!
//! A snapshot's data is a file that `storage` exports from a view taken at an entry
//! boundary and imports (see `storage::snapshot` for its format), so neither building nor
//! installing one holds the state in memory. Installing holds the store (readers wait) and
//! is redone at start-up if a crash interrupted it.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError};
use tokio::io::AsyncWriteExt;

use super::snapshot_schedule::SnapshotSchedule;
use super::{trace_of, BatchResults, LogId, MemberInfo, StoredMembership, TypeConfig};
use crate::alarms::AlarmStore;
use crate::apply::{apply_request, Applier};
use crate::auth::AuthStore;
use crate::lease::Lessor;
use crate::members::MemberStore;
use crate::metrics::Metrics;
use crate::mvcc::{Mvcc, WriteLock};
use crate::proto::cairnraftpb::{
    apply_result, internal_request, ApplyResult, ApplyResults, InternalRequest,
};
use crate::storage::{MetaCf, MetaKey, Storage};
use crate::telemetry::Applying;
use crate::watch::WatchHub;

/// Where a snapshot sent by the leader is received (builds write `*.building` files).
const RECEIVING_FILE: &str = "snapshot.receiving";
/// Bounds on what one storage commit of applied entries holds.
const MAX_ENTRIES_PER_COMMIT: usize = 64;
const MAX_BYTES_PER_COMMIT: usize = 32 << 20;
/// etcd's `warnApplyDuration`: a request that takes longer to apply is counted as slow
/// (`etcd_server_slow_apply_total`).
const SLOW_APPLY: Duration = Duration::from_millis(100);

type Meta = SnapshotMeta<u64, MemberInfo>;

pub struct StateMachine {
    storage: Arc<Storage>,
    mvcc: Arc<Mvcc>,
    watch: Arc<WatchHub>,
    lessor: Arc<Lessor>,
    auth: Arc<AuthStore>,
    alarms: Arc<AlarmStore>,
    snapshot_dir: PathBuf,
    applied: Option<LogId>,
    membership: StoredMembership,
    /// The log index up to which the state no longer needs the log: what it applied, or
    /// what a snapshot install covers once its redo marker is durable. The log store purges
    /// no further (see `LogStore::purge`).
    recoverable: tokio::sync::watch::Sender<u64>,
    /// Held while snapshot files are published, removed or opened: openraft runs a build
    /// and an install at the same time, and neither may remove what the other is using.
    files: Arc<tokio::sync::Mutex<()>>,
    /// Told of each applied entry's requests: when a snapshot is due.
    schedule: Arc<SnapshotSchedule>,
    metrics: Arc<Metrics>,
}

fn sm_read_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::read_state_machine(&e).into()
}

fn sm_write_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_state_machine(&e).into()
}

fn snapshot_err(e: impl std::error::Error + 'static) -> StorageError<u64> {
    StorageIOError::write_snapshot(None, &e).into()
}

impl StateMachine {
    pub fn open(
        storage: Arc<Storage>,
        mvcc: Arc<Mvcc>,
        watch: Arc<WatchHub>,
        lessor: Arc<Lessor>,
        auth: Arc<AuthStore>,
        alarms: Arc<AlarmStore>,
        snapshot_dir: PathBuf,
        schedule: Arc<SnapshotSchedule>,
        metrics: Arc<Metrics>,
    ) -> Result<StateMachine, StorageError<u64>> {
        std::fs::create_dir_all(&snapshot_dir).map_err(sm_write_err)?;
        if let Some(path) = storage.interrupted_import().map_err(sm_read_err)? {
            tracing::warn!(snapshot = %path.display(), "redoing a snapshot install a stop interrupted");
            mvcc.replace(|| storage.import_snapshot(&path))
                .map_err(sm_write_err)?;
            lessor.reload().map_err(sm_write_err)?;
            auth.reload().map_err(sm_write_err)?;
            alarms.reload().map_err(sm_write_err)?;
            // Watchers are told of changes after the store's revision from here on.
            watch.reset(mvcc.current_rev());
        }
        let (applied, membership) = read_applied_state(storage.meta())?;
        remove_leftovers(&snapshot_dir, applied).map_err(sm_write_err)?;
        Ok(StateMachine {
            storage,
            mvcc,
            watch,
            lessor,
            auth,
            alarms,
            snapshot_dir,
            applied,
            membership,
            recoverable: tokio::sync::watch::channel(applied.map_or(0, |l| l.index)).0,
            files: Arc::default(),
            schedule,
            metrics,
        })
    }

    /// Follows the log index up to which the state no longer needs the log.
    pub fn recoverable_index(&self) -> tokio::sync::watch::Receiver<u64> {
        self.recoverable.subscribe()
    }

    fn set_recoverable(&self, log_id: Option<LogId>) {
        let index = log_id.map_or(0, |l| l.index);
        self.recoverable.send_if_modified(|was| {
            let newer = index > *was;
            *was = (*was).max(index);
            newer
        });
    }
}

impl StateMachine {
    fn apply_one(
        &self,
        guard: &mut WriteLock<'_>,
        index: u64,
        request: &InternalRequest,
    ) -> Result<ApplyResult, crate::storage::StorageError> {
        let applier = Applier {
            leases: &self.lessor,
            auth: &self.auth,
            alarms: &self.alarms,
            index,
        };
        apply_one(&self.storage, guard, &applier, request)
    }

    /// Commits applied changes with the applied log id and membership they bring us to,
    /// then tells watchers: they only ever hear of committed revisions.
    fn commit(&self, mut guard: WriteLock<'_>) -> Result<(), StorageError<u64>> {
        let meta = self.storage.meta();
        let applied = bincode::serialize(&self.applied).map_err(sm_write_err)?;
        let membership = bincode::serialize(&self.membership).map_err(sm_write_err)?;
        meta.put(guard.batch_mut(), MetaKey::Applied, &applied);
        meta.put(guard.batch_mut(), MetaKey::Membership, &membership);
        fail::fail_point!("apply_before_commit", |_| Err(sm_write_err(
            crate::failpoints::disk_failed("apply_before_commit")
        )));
        let committed = (self.metrics.disk.backend_commit_seconds)
            .observe_closure_duration(|| guard.commit())
            .map_err(sm_write_err)?;
        fail::fail_point!("apply_after_commit", |_| Err(sm_write_err(
            crate::failpoints::disk_failed("apply_after_commit")
        )));
        self.set_recoverable(self.applied);
        self.watch.notify(committed);
        Ok(())
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembership), StorageError<u64>> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<BatchResults>, StorageError<u64>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        // On a full disk, wait for space before taking the store: the commit would wait
        // for it holding the store, and readers with it (see `Storage::write`).
        self.storage.wait_for_space().map_err(sm_write_err)?;
        // Long runs of entries (a restart re-applying its log) are committed in bounded
        // pieces: memory stays bounded, and readers get the lock back in between.
        let mvcc = self.mvcc.clone();
        let mut guard = mvcc.write();
        let mut uncommitted_entries = 0;
        let mut replies = Vec::new();
        // The traced requests' `apply` spans, until their changes are committed (empty,
        // never allocated, when none is traced).
        let mut applying = Vec::new();
        // One clock read per request: each request's time runs from the previous one's end.
        let mut last_done = Instant::now();
        for entry in entries {
            applying.extend(trace_of(&entry).map(|trace| trace.applying()));
            self.applied = Some(entry.log_id);
            let requests = match &entry.payload {
                EntryPayload::Normal(batch) => batch.0.requests.len() as u64,
                _ => 0,
            };
            self.schedule.applied(entry.log_id.index, requests);
            let results = match entry.payload {
                EntryPayload::Blank => ApplyResults::default(),
                EntryPayload::Normal(batch) => ApplyResults {
                    results: batch
                        .0
                        .requests
                        .iter()
                        .map(|request| {
                            let result = self.apply_one(&mut guard, entry.log_id.index, request);
                            let done = Instant::now();
                            if done - last_done > SLOW_APPLY {
                                self.metrics.server.slow_applies.inc();
                            }
                            last_done = done;
                            result
                        })
                        .collect::<Result<_, _>>()
                        // Storage failed: stop here, before this member diverges.
                        .map_err(|e| StorageIOError::apply(entry.log_id, &e))?,
                },
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    ApplyResults::default()
                }
            };
            replies.push(BatchResults(results));
            uncommitted_entries += 1;
            if uncommitted_entries >= MAX_ENTRIES_PER_COMMIT
                || guard.pending_bytes() >= MAX_BYTES_PER_COMMIT
            {
                self.commit(guard)?;
                applying.drain(..).for_each(Applying::applied);
                guard = mvcc.write();
                uncommitted_entries = 0;
                last_done = Instant::now();
            }
        }
        self.commit(guard)?;
        applying.into_iter().for_each(Applying::applied);
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            storage: self.storage.clone(),
            mvcc: self.mvcc.clone(),
            snapshot_dir: self.snapshot_dir.clone(),
            files: self.files.clone(),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<tokio::fs::File>, StorageError<u64>> {
        let path = self.snapshot_dir.join(RECEIVING_FILE);
        let file = tokio::fs::File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await
            .map_err(snapshot_err)?;
        Ok(Box::new(file))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError<u64>> {
        snapshot.sync_all().await.map_err(snapshot_err)?;
        drop(snapshot);
        let received = self.snapshot_dir.join(RECEIVING_FILE);
        let path = snapshot_path(&self.snapshot_dir, meta);
        {
            let _files = self.files.lock().await;
            write_meta_file(&path, meta, "receiving").await?;
            publish(&received, &path).await?;
        }
        self.watch.begin_reset();
        let storage = self.storage.clone();
        // openraft purges the log the snapshot covers while this runs: only once the redo
        // marker is durable may it go, or a crash here would leave a state behind the log.
        tokio::task::block_in_place(|| storage.begin_import(&path)).map_err(sm_write_err)?;
        self.set_recoverable(meta.last_log_id);
        tokio::task::block_in_place(|| self.mvcc.replace(|| storage.import_snapshot(&path)))
            .map_err(sm_write_err)?;
        self.lessor.reload().map_err(sm_write_err)?;
        self.auth.reload().map_err(sm_write_err)?;
        self.alarms.reload().map_err(sm_write_err)?;
        self.watch.reset(self.mvcc.current_rev());
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.schedule.installed();
        let _files = self.files.lock().await;
        remove_older_snapshots(&self.snapshot_dir, meta.last_log_id).await;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        let _files = self.files.lock().await;
        let Some((path, meta)) = latest_snapshot(&self.snapshot_dir).await? else {
            return Ok(None);
        };
        let file = tokio::fs::File::open(&path).await.map_err(snapshot_err)?;
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(file),
        }))
    }
}

pub struct SnapshotBuilder {
    storage: Arc<Storage>,
    mvcc: Arc<Mvcc>,
    snapshot_dir: PathBuf,
    files: Arc<tokio::sync::Mutex<()>>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        // Holding the store for writing pins an entry boundary: no apply is half-done.
        let storage = &self.storage;
        let (path, tmp, meta) = {
            let guard = self.mvcc.write();
            let view = storage.view();
            drop(guard);
            let (applied, membership) = read_applied_state(view.meta())?;
            let meta = Meta {
                last_log_id: applied,
                last_membership: membership,
                snapshot_id: applied.map_or("0-0-0".to_string(), |l| {
                    format!("{}-{}-{}", l.leader_id.term, l.leader_id.node_id, l.index)
                }),
            };
            let path = snapshot_path(&self.snapshot_dir, &meta);
            let tmp = path.with_extension("snap.building");
            // Written synchronously from the view: a blocking section, but it streams record
            // by record and never holds the state in memory.
            fail::fail_point!("snapshot_build_before_write", |_| Err(snapshot_err(
                crate::failpoints::disk_failed("snapshot_build_before_write")
            )));
            tokio::task::block_in_place(|| view.export_snapshot(&tmp)).map_err(snapshot_err)?;
            fail::fail_point!("snapshot_build_before_rename", |_| Err(snapshot_err(
                crate::failpoints::disk_failed("snapshot_build_before_rename")
            )));
            (path, tmp, meta)
        };
        let _files = self.files.lock().await;
        // The meta first: a `.snap` is only ever visible with its meta beside it.
        write_meta_file(&path, &meta, "building").await?;
        publish(&tmp, &path).await?;
        remove_older_snapshots(&self.snapshot_dir, meta.last_log_id).await;
        let file = tokio::fs::File::open(&path).await.map_err(snapshot_err)?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(file),
        })
    }
}

/// The applied log id and membership, as a batch of applied entries last stored them.
/// Applies one request: member attributes and the downgrade here (they belong with
/// membership, not with the key-value requests of `apply`), the rest through `apply`.
pub(super) fn apply_one(
    storage: &Storage,
    guard: &mut WriteLock<'_>,
    applier: &Applier<'_>,
    request: &InternalRequest,
) -> Result<ApplyResult, crate::storage::StorageError> {
    match &request.request {
        Some(internal_request::Request::Publish(attributes)) => {
            MemberStore::new(storage).save(guard.batch_mut(), attributes);
            Ok(ApplyResult {
                result: Some(apply_result::Result::Published(attributes.clone())),
            })
        }
        Some(internal_request::Request::DowngradeInfoSet(downgrade)) => {
            MemberStore::new(storage).save_downgrade(guard.batch_mut(), downgrade);
            Ok(ApplyResult {
                result: Some(apply_result::Result::Downgrade(downgrade.clone())),
            })
        }
        _ => apply_request(guard, applier, request),
    }
}

/// The index and term of the last applied entry as `meta` records them (a storage view's,
/// for a snapshot of that point): etcd's consistent index and term.
pub fn applied_index_and_term(meta: MetaCf<'_>) -> Result<(u64, u64), StorageError<u64>> {
    let (applied, _) = read_applied_state(meta)?;
    Ok(applied.map_or((0, 0), |log_id| (log_id.index, log_id.leader_id.term)))
}

fn read_applied_state(
    meta: MetaCf<'_>,
) -> Result<(Option<LogId>, StoredMembership), StorageError<u64>> {
    let read = |key| meta.get(key).map_err(sm_read_err);
    let applied = match read(MetaKey::Applied)? {
        Some(b) => bincode::deserialize(&b).map_err(sm_read_err)?,
        None => None,
    };
    let membership = match read(MetaKey::Membership)? {
        Some(b) => bincode::deserialize(&b).map_err(sm_read_err)?,
        None => StoredMembership::default(),
    };
    Ok((applied, membership))
}

/// Renames a fully written, synced file into place and syncs the directory, so the new
/// name survives a crash.
async fn publish(tmp: &Path, path: &Path) -> Result<(), StorageError<u64>> {
    tokio::fs::rename(tmp, path).await.map_err(snapshot_err)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::File::open(dir)
        .await
        .map_err(snapshot_err)?
        .sync_all()
        .await
        .map_err(snapshot_err)
}

fn snapshot_path(dir: &Path, meta: &Meta) -> PathBuf {
    dir.join(format!("{}.snap", meta.snapshot_id))
}

fn meta_path(snapshot: &Path) -> PathBuf {
    snapshot.with_extension("meta")
}

/// Writes a snapshot's meta file, through a temporary file whose name says who writes it
/// (`tmp_tag`: a build and an install never share one).
async fn write_meta_file(
    snapshot: &Path,
    meta: &Meta,
    tmp_tag: &str,
) -> Result<(), StorageError<u64>> {
    let bytes = serde_json::to_vec(meta).map_err(snapshot_err)?;
    let path = meta_path(snapshot);
    let tmp = path.with_extension(format!("meta.{tmp_tag}"));
    let mut file = tokio::fs::File::create(&tmp).await.map_err(snapshot_err)?;
    file.write_all(&bytes).await.map_err(snapshot_err)?;
    file.sync_all().await.map_err(snapshot_err)?;
    publish(&tmp, &path).await
}

async fn latest_snapshot(dir: &Path) -> Result<Option<(PathBuf, Meta)>, StorageError<u64>> {
    let mut best: Option<(PathBuf, Meta)> = None;
    let mut entries = tokio::fs::read_dir(dir).await.map_err(snapshot_err)?;
    while let Some(entry) = entries.next_entry().await.map_err(snapshot_err)? {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("snap") {
            continue;
        }
        let Ok(bytes) = tokio::fs::read(meta_path(&path)).await else {
            continue;
        };
        let Ok(meta) = serde_json::from_slice::<Meta>(&bytes) else {
            tracing::warn!(path = %path.display(), "ignoring a snapshot whose meta does not parse");
            continue;
        };
        if best
            .as_ref()
            .is_none_or(|(_, b)| b.last_log_id < meta.last_log_id)
        {
            best = Some((path, meta));
        }
    }
    Ok(best)
}

/// At start-up, before anything else uses the directory: removes what an interrupted build
/// or transfer left, and snapshots ahead of the state. Those were received but a crash came
/// before their install was marked for redo (`Storage::begin_import`); offered to Raft as this
/// member's snapshot, they would claim entries it has not applied. The leader sends them
/// again.
fn remove_leftovers(dir: &Path, applied: Option<LogId>) -> std::io::Result<()> {
    let remove = |path: &Path| match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    };
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let ahead = || -> bool {
            std::fs::read(meta_path(&path))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<Meta>(&bytes).ok())
                .is_some_and(|meta| meta.last_log_id > applied)
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("snap") if ahead() => {
                tracing::warn!(snapshot = %path.display(), "removing a snapshot whose install never began");
                remove(&path)?;
                remove(&meta_path(&path))?;
            }
            // A snapshot without its meta (or the reverse): a crash between writing them.
            Some("snap") if !meta_path(&path).exists() => remove(&path)?,
            Some("meta") if !path.with_extension("snap").exists() => remove(&path)?,
            // Temporary files, of this version (`building`, `receiving`) or an older one.
            Some("building" | "receiving" | "part" | "tmp") => remove(&path)?,
            _ => {}
        }
    }
    Ok(())
}

/// Removes the published snapshots older than `kept` (with their metas). Never a file
/// being written (a build's or a transfer's: those are cleaned up at start-up, see
/// `remove_leftovers`), nor a newer snapshot. Called with `StateMachine::files` held.
async fn remove_older_snapshots(dir: &Path, kept: Option<LogId>) {
    let Ok(mut entries) = tokio::fs::read_dir(dir).await else {
        return;
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("snap") {
            continue;
        }
        let Ok(bytes) = tokio::fs::read(meta_path(&path)).await else {
            continue;
        };
        if serde_json::from_slice::<Meta>(&bytes).is_ok_and(|meta| meta.last_log_id < kept) {
            let _ = tokio::fs::remove_file(&path).await;
            let _ = tokio::fs::remove_file(meta_path(&path)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn meta_at(index: u64) -> Meta {
        let log_id = LogId::new(CommittedLeaderId::new(1, 1), index);
        Meta {
            last_log_id: Some(log_id),
            last_membership: StoredMembership::default(),
            snapshot_id: format!("1-1-{index}"),
        }
    }

    /// A build and an install run at once: the cleanup after either one removes older
    /// published snapshots only, never the other's files in progress nor a newer snapshot.
    #[tokio::test]
    async fn snapshot_cleanup_spares_files_in_progress_and_newer_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let mut published = Vec::new();
        for index in [10, 20, 30] {
            let path = snapshot_path(dir, &meta_at(index));
            std::fs::write(&path, b"records").unwrap();
            write_meta_file(&path, &meta_at(index), "building")
                .await
                .unwrap();
            published.push(path);
        }
        let in_progress = [
            dir.join(RECEIVING_FILE),
            snapshot_path(dir, &meta_at(40)).with_extension("snap.building"),
            meta_path(&snapshot_path(dir, &meta_at(40))).with_extension("meta.building"),
        ];
        for path in &in_progress {
            std::fs::write(path, b"being written").unwrap();
        }
        remove_older_snapshots(dir, meta_at(20).last_log_id).await;
        assert!(!published[0].exists() && !meta_path(&published[0]).exists());
        for path in published[1..].iter().chain(&in_progress) {
            assert!(path.exists(), "{} was removed", path.display());
        }
        // At start-up, what was in progress goes, and so does a snapshot ahead of the state.
        remove_leftovers(dir, meta_at(20).last_log_id).unwrap();
        assert!(published[1].exists() && !published[2].exists());
        assert!(in_progress.iter().all(|p| !p.exists()));
    }
}
