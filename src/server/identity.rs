//! Who this member is: its member and cluster IDs, fixed when the data directory is
//! created, or learned from the running members when it joins one.

use std::time::Duration;

use anyhow::Context;

use crate::cluster::Identity;
use crate::storage::{StateKey, Storage};

pub(super) fn has_identity(storage: &Storage) -> anyhow::Result<bool> {
    Ok(storage.raft_state().get(StateKey::Identity)?.is_some())
}

/// A member started with `--initial-cluster-state existing` and no data learns its ID and
/// the cluster's from the running members (it was given an ID by `member add`), as etcd
/// does: it is the member whose peer URLs are this member's.
pub(super) async fn join(
    derived: Identity,
    peers: &crate::raft::Peers,
    timeout: Duration,
) -> anyhow::Result<Identity> {
    let me = derived
        .initial_members
        .iter()
        .find(|m| m.id == derived.member_id)
        .context("this member is not in --initial-cluster")?
        .clone();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = String::from("no other member in --initial-cluster");
    loop {
        for other in derived.initial_members.iter().filter(|m| m.id != me.id) {
            let Some(url) = other.peer_urls.first() else {
                continue;
            };
            let answer = async {
                let mut client = peers.client_for_url(url)?;
                client
                    .cluster_info(crate::proto::cairnpeerpb::ClusterInfoRequest {})
                    .await
                    .map(|r| r.into_inner())
                    .map_err(|e| e.to_string())
            };
            match tokio::time::timeout(Duration::from_secs(1), answer).await {
                Ok(Ok(info)) => {
                    let mut mine = me.peer_urls.clone();
                    mine.sort();
                    let found = info.members.iter().find(|m| {
                        let mut urls = m.peer_urls.clone();
                        urls.sort();
                        urls == mine
                    });
                    let Some(found) = found else {
                        anyhow::bail!(
                            "no member of the running cluster has peer URLs {:?}; add this member first (etcdctl member add)",
                            me.peer_urls
                        );
                    };
                    return Ok(Identity {
                        member_id: found.id,
                        cluster_id: info.cluster_id,
                        ..derived
                    });
                }
                Ok(Err(e)) => last_error = format!("{}: {e}", other.name),
                Err(_) => last_error = format!("{}: no answer", other.name),
            }
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("cannot reach the running cluster to join it: {last_error}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The member and cluster IDs are fixed when the data directory is created: a restart with
/// other flags keeps them, as etcd does.
/// Records `identity` as this data directory's (a restore writes a new directory with it;
/// the member then keeps it, as any restart does).
pub fn save_identity(storage: &Storage, identity: &Identity) -> anyhow::Result<()> {
    let mut batch = crate::storage::WriteBatch::default();
    storage.raft_state().put(
        &mut batch,
        StateKey::Identity,
        &bincode::serialize(&(identity.member_id, identity.cluster_id))?,
    );
    storage.write(batch, true)?;
    Ok(())
}

pub(super) fn restore_or_save_identity(
    storage: &Storage,
    derived: Identity,
) -> anyhow::Result<Identity> {
    if let Some(bytes) = storage.raft_state().get(StateKey::Identity)? {
        let (member_id, cluster_id): (u64, u64) = bincode::deserialize(&bytes)?;
        return Ok(Identity {
            member_id,
            cluster_id,
            ..derived
        });
    }
    save_identity(storage, &derived)?;
    Ok(derived)
}
