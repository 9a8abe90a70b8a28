//! Member attributes: the name, client URLs and server version each member publishes
//! through Raft once it serves clients, as etcd's members do; and the downgrade in progress,
//! which with them decides the cluster version.
//!
//! Owns their records (storage's `MetaKey::Member`, one per member, and `MetaKey::Downgrade`,
//! in the `meta` family, so snapshots carry them) and their encoding (protobuf). The state
//! machine saves them in the storage batch of the entry that sets them; the server reads
//! them back. May call `storage` and `proto` only.

use std::collections::{BTreeMap, HashMap};

use prost::Message;

use crate::proto::cairnraftpb::{DowngradeInfoSet, MemberAttributes};
use crate::storage::{MetaCf, MetaKey, Storage, WriteBatch};

/// The published attributes in a member's storage.
pub struct MemberStore<'a> {
    meta: MetaCf<'a>,
}

impl<'a> MemberStore<'a> {
    pub fn new(storage: &'a Storage) -> Self {
        MemberStore {
            meta: storage.meta(),
        }
    }

    /// Stages `attributes` in `batch`, replacing what the member published before.
    pub fn save(&self, batch: &mut WriteBatch, attributes: &MemberAttributes) {
        self.meta.put(
            batch,
            MetaKey::Member(attributes.member_id),
            &attributes.encode_to_vec(),
        );
    }

    /// Stages the downgrade in progress (or its end) in `batch`.
    pub fn save_downgrade(&self, batch: &mut WriteBatch, downgrade: &DowngradeInfoSet) {
        self.meta
            .put(batch, MetaKey::Downgrade, &downgrade.encode_to_vec());
    }

    /// The downgrade in progress; None when there is none. A record that cannot be read
    /// counts as none, as for the attributes.
    pub fn downgrade(&self) -> Option<DowngradeInfoSet> {
        let record = self.meta.get(MetaKey::Downgrade).ok()??;
        DowngradeInfoSet::decode(&*record)
            .ok()
            .filter(|d| d.enabled)
    }

    /// Every member's attributes, by member ID. Best effort: a record that cannot be read
    /// ends the scan and one that does not decode is skipped, since the attributes only
    /// decorate the member list and must never fail it.
    pub fn all(&self) -> BTreeMap<u64, MemberAttributes> {
        self.meta
            .members()
            .map_while(Result::ok)
            .filter_map(|value| MemberAttributes::decode(&*value).ok())
            .map(|attributes| (attributes.member_id, attributes))
            .collect()
    }
}

/// Attributes the members published (name, client URLs), by member ID.
pub fn published_members(storage: &Storage) -> HashMap<u64, MemberAttributes> {
    MemberStore::new(storage).all().into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attributes(member_id: u64, name: &str) -> MemberAttributes {
        MemberAttributes {
            member_id,
            name: name.to_string(),
            client_urls: vec![format!("http://{name}:2379")],
            ..MemberAttributes::default()
        }
    }

    #[test]
    fn saved_attributes_are_read_back_by_member() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&dir.path().join("db")).unwrap();
        let store = MemberStore::new(&storage);
        assert!(store.all().is_empty());
        let mut batch = WriteBatch::default();
        store.save(&mut batch, &attributes(9, "old-name"));
        store.save(&mut batch, &attributes(2, "b"));
        storage.write(batch, false).unwrap();
        let mut batch = WriteBatch::default();
        // Publishing again replaces.
        store.save(&mut batch, &attributes(9, "c"));
        storage.write(batch, false).unwrap();

        let all = store.all();
        assert_eq!(
            all.values().collect::<Vec<_>>(),
            [&attributes(2, "b"), &attributes(9, "c")]
        );
        let published = published_members(&storage);
        assert_eq!(published.len(), 2);
        assert_eq!(published[&9], attributes(9, "c"));
    }
}
