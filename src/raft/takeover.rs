//! Taking over a stopped etcd member's data directory in place: Cairn started with
//! `--data-dir` on an etcd 3.4–3.7 member's directory (`member/snap/db`, `member/wal`)
//! builds its own store beside them (`member/db`), then serves the same data as the same
//! member of the same cluster. etcd's files are only read: going back to etcd is starting
//! etcd on the directory again (with what was written meanwhile lost, as with any
//! restore from before it).
//!
//! What comes over, at etcd's committed index:
//! - the store (`member/snap/db`, through `etcd_backend::import`), then every committed
//!   entry of etcd's WAL past the store's consistent index, applied as Cairn applies its own
//!   (puts, txns, leases, auth, alarms, member attributes, membership changes);
//! - member and cluster IDs (the WAL's metadata), membership (the store's `members` bucket
//!   and the changes after it), the Raft term and vote;
//! - entries past the commit index, with their index and term, as Cairn log entries not yet
//!   committed: a member whose log is ahead still wins the next election, so an entry the
//!   old leader committed and acknowledged is not lost when only followers' commit indexes
//!   lagged.
//!
//! The new store is built in a staging directory and renamed into place last: a takeover
//! interrupted by a crash starts again from scratch at the next start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use openraft::{CommittedLeaderId, Entry, EntryPayload, Membership, Vote};

use super::state_machine::apply_one;
use super::{Batch, LogId, MemberInfo, StoredMembership, TypeConfig};
use crate::alarms::AlarmStore;
use crate::apply::Applier;
use crate::auth::{AuthSettings, AuthStore};
use crate::etcd_data::{self, ConfChangeKind, EtcdDirs, EtcdEntry, EtcdMember, MapOptions};
use crate::lease::Lessor;
use crate::mvcc::Mvcc;
use crate::proto::cairnraftpb::{internal_request, InternalRequest, Proposal};
use crate::storage::{MetaKey, StateKey, Storage, WriteBatch};

/// Where the store is built before it is renamed to `member/db`.
const STAGING_DIR: &str = "db.cairn-takeover";
/// Committed entries applied per storage commit.
const ENTRIES_PER_COMMIT: usize = 1000;

/// Whether `member_dir` holds a stopped etcd member's data and no Cairn store yet.
pub fn is_etcd_member_dir(member_dir: &Path) -> bool {
    !member_dir.join("db").exists()
        && member_dir.join("wal").is_dir()
        && member_dir.join("snap").join("db").is_file()
}

/// What the takeover found, for the log.
#[derive(Debug)]
pub struct TakenOver {
    pub member_id: u64,
    pub cluster_id: u64,
    pub applied_index: u64,
    pub revision: i64,
    pub uncommitted_entries: u64,
}

/// Builds `member_dir/db` from the etcd member data in `member_dir`. Refuses a directory
/// a running etcd holds.
/// `initial_members` (this member's flags) fill in the peer URLs of a member etcd's data
/// names only by ID (a directory `etcdctl snapshot restore` wrote keeps its membership in
/// etcd's v2 store, which is read too).
pub fn take_over(
    member_dir: &Path,
    bcrypt_cost: u32,
    initial_members: &[crate::cluster::InitialMember],
) -> anyhow::Result<TakenOver> {
    let data_dir = member_dir.parent().unwrap_or(Path::new("."));
    let dirs = EtcdDirs::of_data_dir(data_dir);
    etcd_data::check_not_running(&dirs)?;
    tracing::info!(data_dir = %data_dir.display(), "taking over an etcd data directory: reading its Raft log");
    let log = etcd_data::read_raft_log(&dirs).context("reading etcd's WAL")?;
    if let Some(torn) = &log.torn_tail {
        tracing::warn!(file = %torn.path.display(), offset = torn.offset, reason = %torn.reason,
            "etcd's last WAL record is torn; it is left out, as etcd's repair would");
    }
    let staging = member_dir.join(STAGING_DIR);
    if staging.exists() {
        tracing::warn!(dir = %staging.display(), "an interrupted takeover left a staging store; starting again");
        std::fs::remove_dir_all(&staging)?;
    }
    let result = build(member_dir, &staging, &log, bcrypt_cost, initial_members);
    match result {
        Ok(taken) => {
            std::fs::rename(&staging, member_dir.join("db"))
                .context("moving the new store into place")?;
            tracing::info!(
                member_id = format!("{:x}", taken.member_id),
                cluster_id = format!("{:x}", taken.cluster_id),
                applied_index = taken.applied_index,
                revision = taken.revision,
                uncommitted_entries = taken.uncommitted_entries,
                "took over the etcd data directory; etcd's files are unchanged"
            );
            Ok(taken)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

fn build(
    member_dir: &Path,
    staging: &PathBuf,
    log: &etcd_data::EtcdRaftLog,
    bcrypt_cost: u32,
    initial_members: &[crate::cluster::InitialMember],
) -> anyhow::Result<TakenOver> {
    let storage = Arc::new(Storage::open(staging)?);
    let db_path = member_dir.join("snap").join("db");
    tracing::info!(db = %db_path.display(), "taking over: importing etcd's store");
    let db = crate::bbolt::Reader::open(&db_path).context("reading etcd's store")?;
    let imported = crate::etcd_backend::import(&db, &storage, Default::default())
        .context("importing etcd's store")?;
    let commit = log.hard_state.commit;
    if imported.consistent_index > commit {
        bail!(
            "etcd's store is at index {} but its WAL commits only up to {commit}",
            imported.consistent_index
        );
    }
    let mut members: BTreeMap<u64, EtcdMember> =
        imported.members.iter().map(|m| (m.id, m.clone())).collect();
    for removed in &imported.removed_members {
        members.remove(removed);
    }
    // The snapshot's voters and learners, when the store does not list them (etcd 3.4
    // keeps membership in its v2 store; a restored directory has it only there).
    if let Some(conf) = &log.snapshot.conf_state {
        let v2 = match log.snapshot_data()? {
            Some(snapshot) => members_of_v2_store(&snapshot.data),
            None => BTreeMap::new(),
        };
        for (&id, learner) in conf
            .voters
            .iter()
            .map(|id| (id, false))
            .chain(conf.learners.iter().map(|id| (id, true)))
        {
            members.entry(id).or_insert_with(|| {
                let mut m = v2.get(&id).cloned().unwrap_or_default();
                m.id = id;
                m.is_learner = learner;
                m
            });
        }
    }

    // Peer URLs etcd's data lacks, from this member's --initial-cluster (etcd derives the
    // IDs from them as Cairn does).
    let fill_in = |members: &mut BTreeMap<u64, EtcdMember>| {
        for m in members.values_mut().filter(|m| m.peer_urls.is_empty()) {
            if let Some(initial) = initial_members.iter().find(|i| i.id == m.id) {
                m.peer_urls = initial.peer_urls.clone();
                if m.name.is_empty() {
                    m.name = initial.name.clone();
                }
            }
        }
    };

    let mvcc = Mvcc::open(storage.clone())?;
    let lessor = Lessor::open(storage.clone(), 1)?;
    let auth = AuthStore::open(
        storage.clone(),
        &AuthSettings {
            bcrypt_cost,
            ..AuthSettings::default()
        },
    )?;
    let alarms = AlarmStore::open(storage.clone())?;
    let options = MapOptions { bcrypt_cost };

    // The term of each index we may need: the snapshot's, then the entries'.
    let mut applied = (log.snapshot.index, log.snapshot.term);
    let mut tail: Vec<Entry<TypeConfig>> = Vec::new();
    let mut replayed = 0u64;
    let mut guard = mvcc.write();
    let mut uncommitted_in_guard = 0;
    for entry in log.entries() {
        let entry = entry?;
        let (index, term) = (entry.index, entry.term);
        let mapped = etcd_data::map_entry(&entry, &options)?;
        if index > commit {
            tail.push(tail_entry(index, term, mapped)?);
            continue;
        }
        applied = (index, term);
        if index <= imported.consistent_index {
            // In the store already; membership changes are applied to `members` by etcd
            // 3.4 without moving the consistent index, so they are replayed (idempotently).
            if let EtcdEntry::ConfChange { .. } = mapped {
                change_membership(&mut members, mapped);
            }
            continue;
        }
        if let EtcdEntry::ConfChange { .. } = mapped {
            change_membership(&mut members, mapped);
            continue;
        }
        if let Some(request) = request_of(mapped) {
            let applier = Applier {
                leases: &lessor,
                auth: &auth,
                alarms: &alarms,
                index,
            };
            apply_one(&storage, &mut guard, &applier, &request)?;
            replayed += 1;
            uncommitted_in_guard += 1;
            if uncommitted_in_guard >= ENTRIES_PER_COMMIT {
                guard.commit()?;
                guard = mvcc.write();
                uncommitted_in_guard = 0;
            }
        }
    }
    guard.commit()?;
    let revision = mvcc.current_rev();
    tracing::info!(
        replayed_entries = replayed,
        applied_index = applied.0,
        revision,
        "taking over: applied etcd's committed entries past its store"
    );

    // Raft's state: applied and committed at etcd's commit, the log from there on.
    let applied_log_id = etcd_log_id(applied.1, applied.0);
    fill_in(&mut members);
    let membership = openraft_membership(&members)?;
    let stored = StoredMembership::new(Some(applied_log_id), membership);
    let mut batch = WriteBatch::default();
    let meta = storage.meta();
    meta.put(
        &mut batch,
        MetaKey::Applied,
        &bincode::serialize(&Some(applied_log_id))?,
    );
    meta.put(
        &mut batch,
        MetaKey::Membership,
        &bincode::serialize(&stored)?,
    );
    for member in members.values().filter(|m| !m.name.is_empty()) {
        crate::members::MemberStore::new(&storage).save(
            &mut batch,
            &crate::proto::cairnraftpb::MemberAttributes {
                member_id: member.id,
                name: member.name.clone(),
                client_urls: member.client_urls.clone(),
                server_version: String::new(),
            },
        );
    }
    let state = storage.raft_state();
    let vote = Vote::new(log.hard_state.term, log.hard_state.vote);
    state.put(&mut batch, StateKey::Vote, &bincode::serialize(&vote)?);
    state.put(
        &mut batch,
        StateKey::Committed,
        &bincode::serialize(&Some(applied_log_id))?,
    );
    state.put(
        &mut batch,
        StateKey::LastPurged,
        &bincode::serialize(&applied_log_id)?,
    );
    state.put(
        &mut batch,
        StateKey::Identity,
        &bincode::serialize(&(log.member_id, log.cluster_id))?,
    );
    let raft_log = storage.raft_log();
    for entry in &tail {
        raft_log.put(&mut batch, entry.log_id.index, &bincode::serialize(entry)?);
    }
    storage.write(batch, true)?;
    storage.sync_wal()?;
    // The staging store is closed and moved once this returns: nothing may hold it then.
    // A compaction the import resumed is finished by the member's first start.
    mvcc.stop_compactor();
    Ok(TakenOver {
        member_id: log.member_id,
        cluster_id: log.cluster_id,
        applied_index: applied.0,
        revision,
        uncommitted_entries: tail.len() as u64,
    })
}

/// etcd's entries carry only a term; the leader of each term is not recorded. Every
/// member taking over names the same leader (none, 0) for the same term, so their log ids
/// agree with each other, and every term after the takeover is higher.
fn etcd_log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 0), index)
}

/// An entry past etcd's commit index, as a Cairn log entry with the same index and term.
fn tail_entry(index: u64, term: u64, mapped: EtcdEntry) -> anyhow::Result<Entry<TypeConfig>> {
    if let EtcdEntry::ConfChange { .. } = mapped {
        bail!(
            "etcd's log ends with a membership change not committed yet (index {index}): \
             start etcd once so that it commits, stop it, then start Cairn"
        );
    }
    Ok(Entry {
        log_id: etcd_log_id(term, index),
        payload: match request_of(mapped) {
            Some(request) => EntryPayload::Normal(Batch(
                Arc::new(Proposal {
                    requests: vec![request],
                }),
                None,
            )),
            None => EntryPayload::Blank,
        },
    })
}

/// The request Cairn applies for an etcd entry; None for one that changes nothing in the
/// store (blank, lease checkpoint, cluster version, ignored) or is a membership change.
fn request_of(mapped: EtcdEntry) -> Option<InternalRequest> {
    match mapped {
        EtcdEntry::Request(request) => Some(request),
        EtcdEntry::Alarm { caller, request } => Some(InternalRequest {
            request: Some(internal_request::Request::Alarm(request)),
            caller,
        }),
        _ => None,
    }
}

/// Applies a membership change; applying one twice changes nothing.
fn change_membership(members: &mut BTreeMap<u64, EtcdMember>, change: EtcdEntry) {
    let EtcdEntry::ConfChange {
        kind,
        node_id,
        member,
        promote,
    } = change
    else {
        return;
    };
    match kind {
        ConfChangeKind::RemoveNode => {
            members.remove(&node_id);
        }
        ConfChangeKind::AddNode if promote => {
            if let Some(m) = members.get_mut(&node_id) {
                m.is_learner = false;
            }
        }
        ConfChangeKind::AddNode | ConfChangeKind::AddLearnerNode | ConfChangeKind::UpdateNode => {
            if let Some(mut m) = member {
                m.id = node_id;
                m.is_learner = kind == ConfChangeKind::AddLearnerNode
                    || (kind == ConfChangeKind::UpdateNode
                        && members.get(&node_id).is_some_and(|old| old.is_learner));
                let old = members.get(&node_id);
                // An update carries only the peer URLs: the name and client URLs stay.
                if let Some(old) = old.filter(|_| kind == ConfChangeKind::UpdateNode) {
                    m.name = old.name.clone();
                    m.client_urls = old.client_urls.clone();
                }
                members.insert(node_id, m);
            }
        }
    }
}

fn openraft_membership(
    members: &BTreeMap<u64, EtcdMember>,
) -> anyhow::Result<Membership<u64, MemberInfo>> {
    let voters: std::collections::BTreeSet<u64> = members
        .values()
        .filter(|m| !m.is_learner)
        .map(|m| m.id)
        .collect();
    if voters.is_empty() {
        bail!("etcd's data names no voting member");
    }
    let nodes: BTreeMap<u64, MemberInfo> = members
        .values()
        .map(|m| {
            (
                m.id,
                MemberInfo {
                    name: m.name.clone(),
                    peer_urls: m.peer_urls.clone(),
                    client_urls: m.client_urls.clone(),
                    voter_when_caught_up: false,
                },
            )
        })
        .collect();
    Ok(Membership::new(vec![voters], nodes))
}

/// Members as etcd's v2 store (the JSON in a .snap file) records them: the nodes under
/// `/0/members/<hex ID>`, with `raftAttributes` (peer URLs, learner) and `attributes`
/// (name, client URLs) as JSON strings.
fn members_of_v2_store(json: &[u8]) -> BTreeMap<u64, EtcdMember> {
    let mut members = BTreeMap::new();
    let Ok(root) = serde_json::from_slice::<serde_json::Value>(json) else {
        return members;
    };
    let node =
        |v: &serde_json::Value, name: &str| v.get("Children").and_then(|c| c.get(name)).cloned();
    let Some(list) = root
        .get("Root")
        .and_then(|r| node(r, "0"))
        .and_then(|z| node(&z, "members"))
        .and_then(|m| m.get("Children").cloned())
    else {
        return members;
    };
    let Some(list) = list.as_object() else {
        return members;
    };
    for (hex, entry) in list {
        let Ok(id) = u64::from_str_radix(hex, 16) else {
            continue;
        };
        let value = |name: &str| -> serde_json::Value {
            node(entry, name)
                .and_then(|n| n.get("Value").and_then(|v| v.as_str()).map(str::to_owned))
                .and_then(|text| serde_json::from_str(&text).ok())
                .unwrap_or(serde_json::Value::Null)
        };
        let merged = serde_json::json!({
            "id": id,
            "peerURLs": value("raftAttributes").get("peerURLs").cloned().unwrap_or(serde_json::json!([])),
            "isLearner": value("raftAttributes").get("isLearner").cloned().unwrap_or(false.into()),
            "name": value("attributes").get("name").cloned().unwrap_or(serde_json::json!("")),
            "clientURLs": value("attributes").get("clientURLs").cloned().unwrap_or(serde_json::json!([])),
        });
        if let Ok(member) = serde_json::from_value::<EtcdMember>(merged) {
            members.insert(id, member);
        }
    }
    members
}
