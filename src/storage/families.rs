//! Typed handles on the column families: one small struct per family, with the reads and
//! batch writes its users need, so that no caller names a family or touches RocksDB.
//!
//! The keys of the families several modules share (`raft_state`, `meta`) are listed here,
//! so that no two owners can collide; a family with one owner (`kv`: mvcc, `lease`: lease)
//! takes that owner's keys as they are. Values are bytes: each owner encodes its own.
//! Changing a key here changes the on-disk format.

use std::borrow::Cow;

use rocksdb::{ColumnFamily, Direction, IteratorMode};

use super::{Record, Source, StorageError, StorageResult, WriteBatch};

// Every handle is a family and where to read it (live or a view); they differ only in
// their methods.
macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name<'a> {
            cf: &'a ColumnFamily,
            source: Source<'a>,
        }

        impl<'a> $name<'a> {
            pub(super) fn new(cf: &'a ColumnFamily, source: Source<'a>) -> Self {
                $name { cf, source }
            }
        }
    };
}

handle!(
    /// `raft_log`: encoded entries by index (key: the index, 8 bytes big-endian, so that
    /// RocksDB's order is the log's).
    RaftLogCf
);
handle!(
    /// `raft_state`: Raft's vote, committed and last purged log ids, and the member's
    /// identity; never replaced by a snapshot.
    RaftStateCf
);
handle!(
    /// A family with one owner, whose keys it takes as they are: `kv` (the store's
    /// revisions, owned by mvcc), `lease` (leases and their attached keys, owned by
    /// lease) and `auth` (users and roles, owned by auth).
    BytesCf
);
/// See `Storage::kv`.
pub type KvCf<'a> = BytesCf<'a>;
/// See `Storage::lease`.
pub type LeaseCf<'a> = BytesCf<'a>;
/// See `Storage::auth`.
pub type AuthCf<'a> = BytesCf<'a>;
handle!(
    /// `meta`: the state machine's metadata and published member attributes; carried in
    /// snapshots.
    MetaCf
);

fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl<'a> RaftLogCf<'a> {
    pub fn put(&self, batch: &mut WriteBatch, index: u64, entry: &[u8]) {
        batch.put_cf(self.cf, index_key(index), entry);
    }

    /// Entries from `start` on, in order, with their indexes.
    pub fn entries_from(
        &self,
        start: u64,
    ) -> impl Iterator<Item = StorageResult<(u64, Box<[u8]>)>> + 'a {
        let mode = IteratorMode::From(&index_key(start), Direction::Forward);
        self.source.iter(self.cf, mode).map(|item| {
            let (key, value) = item?;
            let index = key
                .as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StorageError::Corrupt("raft log key is not 8 bytes"))?;
            Ok((index, value))
        })
    }

    /// The last entry, if the log holds any.
    pub fn last(&self) -> StorageResult<Option<Box<[u8]>>> {
        match self.source.iter(self.cf, IteratorMode::End).next() {
            Some(item) => Ok(Some(item?.1)),
            None => Ok(None),
        }
    }

    /// Deletes the entries up to and including `index` (a purge).
    pub fn delete_through(&self, batch: &mut WriteBatch, index: u64) {
        batch.delete_range_cf(self.cf, index_key(0), index_key(index + 1));
    }

    /// Deletes the entries from `index` on (a truncated tail).
    pub fn delete_from(&self, batch: &mut WriteBatch, index: u64) {
        batch.delete_range_cf(self.cf, index_key(index), index_key(u64::MAX));
        // The range's end is exclusive.
        batch.delete_cf(self.cf, index_key(u64::MAX));
    }
}

/// The records of `raft_state` (besides the snapshot install marker, which is storage's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKey {
    /// bincode `Vote` (log store).
    Vote,
    /// bincode `Option<LogId>` (log store).
    Committed,
    /// bincode `LogId` (log store).
    LastPurged,
    /// bincode `(member ID, cluster ID)` (`node::identity`).
    Identity,
}

impl StateKey {
    fn key(self) -> &'static [u8] {
        match self {
            StateKey::Vote => b"vote",
            StateKey::Committed => b"committed",
            StateKey::LastPurged => b"last_purged",
            StateKey::Identity => b"identity",
        }
    }
}

impl RaftStateCf<'_> {
    pub fn get(&self, key: StateKey) -> StorageResult<Option<Vec<u8>>> {
        self.source.get(self.cf, key.key())
    }

    pub fn put(&self, batch: &mut WriteBatch, key: StateKey, value: &[u8]) {
        batch.put_cf(self.cf, key.key(), value);
    }

    /// The snapshot install marker (see `snapshot`), kept out of `StateKey` so that
    /// nothing else writes it.
    pub(super) fn get_raw(&self, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        self.source.get(self.cf, key)
    }

    pub(super) fn put_raw(&self, batch: &mut WriteBatch, key: &[u8], value: &[u8]) {
        batch.put_cf(self.cf, key, value);
    }

    pub(super) fn delete_raw(&self, batch: &mut WriteBatch, key: &[u8]) {
        batch.delete_cf(self.cf, key);
    }
}

impl<'a> BytesCf<'a> {
    pub fn get(&self, key: &[u8]) -> StorageResult<Option<Vec<u8>>> {
        self.source.get(self.cf, key)
    }

    /// Values of several keys at once, in the keys' order.
    pub fn multi_get<K: AsRef<[u8]>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Vec<StorageResult<Option<Vec<u8>>>> {
        self.source.multi_get(self.cf, keys)
    }

    /// Records from `start` on, in key order.
    pub fn iter_from(&self, start: &[u8]) -> impl Iterator<Item = StorageResult<Record>> + 'a {
        self.source
            .iter(self.cf, IteratorMode::From(start, Direction::Forward))
    }

    /// Every record, in key order.
    pub fn iter(&self) -> impl Iterator<Item = StorageResult<Record>> + 'a {
        self.source.iter(self.cf, IteratorMode::Start)
    }

    pub fn put(&self, batch: &mut WriteBatch, key: &[u8], value: &[u8]) {
        batch.put_cf(self.cf, key, value);
    }

    pub fn delete(&self, batch: &mut WriteBatch, key: &[u8]) {
        batch.delete_cf(self.cf, key);
    }

    /// Compacts the whole family (what `Defragment` does); blocks until done.
    pub fn compact(&self) {
        self.source
            .db
            .compact_range_cf(self.cf, None::<&[u8]>, None::<&[u8]>);
    }
}

/// The records of `meta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaKey {
    /// bincode `Option<LogId>`: the last applied entry (state machine).
    Applied,
    /// bincode `StoredMembership` (state machine).
    Membership,
    /// `i64` big-endian (mvcc).
    CurrentRev,
    /// `i64` big-endian (mvcc).
    CompactRev,
    /// Encoded `MemberAttributes` of one member (`members`).
    Member(u64),
    /// Encoded `DowngradeInfoSet`: the downgrade in progress, if any (`members`).
    Downgrade,
    /// An alarm raised (`alarms`): the record's presence is the alarm; its value is the
    /// encoded `AlarmMember`.
    Alarm { member_id: u64, alarm: i32 },
}

/// Prefix of `MetaKey::Member`: `member/` + member ID (8 bytes, big-endian).
const MEMBER_PREFIX: &[u8] = b"member/";
/// Prefix of `MetaKey::Alarm`: `alarm/` + alarm type (4 bytes) + member ID (8 bytes),
/// big-endian.
const ALARM_PREFIX: &[u8] = b"alarm/";

impl MetaKey {
    fn key(self) -> Cow<'static, [u8]> {
        match self {
            MetaKey::Applied => Cow::Borrowed(b"applied"),
            MetaKey::Membership => Cow::Borrowed(b"membership"),
            MetaKey::CurrentRev => Cow::Borrowed(b"current_rev"),
            MetaKey::CompactRev => Cow::Borrowed(b"compact_rev"),
            MetaKey::Member(id) => Cow::Owned([MEMBER_PREFIX, &id.to_be_bytes()].concat()),
            MetaKey::Downgrade => Cow::Borrowed(b"downgrade"),
            MetaKey::Alarm { member_id, alarm } => {
                Cow::Owned([ALARM_PREFIX, &alarm.to_be_bytes(), &member_id.to_be_bytes()].concat())
            }
        }
    }
}

impl MetaKey {
    /// Whether a `meta` key is Raft's (`Applied`, `Membership`) rather than the store's.
    pub(super) fn is_raft_record(key: &[u8]) -> bool {
        [MetaKey::Applied, MetaKey::Membership]
            .iter()
            .any(|k| k.key().as_ref() == key)
    }
}

impl<'a> MetaCf<'a> {
    pub fn get(&self, key: MetaKey) -> StorageResult<Option<Vec<u8>>> {
        self.source.get(self.cf, &key.key())
    }

    pub fn put(&self, batch: &mut WriteBatch, key: MetaKey, value: &[u8]) {
        batch.put_cf(self.cf, key.key(), value);
    }

    pub fn delete(&self, batch: &mut WriteBatch, key: MetaKey) {
        batch.delete_cf(self.cf, key.key());
    }

    /// The values of every `MetaKey::Alarm` record, by alarm type then member ID.
    pub fn alarms(&self) -> impl Iterator<Item = StorageResult<Box<[u8]>>> + 'a {
        self.source
            .iter(
                self.cf,
                IteratorMode::From(ALARM_PREFIX, Direction::Forward),
            )
            .take_while(|item| !matches!(item, Ok((key, _)) if !key.starts_with(ALARM_PREFIX)))
            .map(|item| item.map(|(_, value)| value))
    }

    /// The values of every `MetaKey::Member` record, in member ID order.
    pub fn members(&self) -> impl Iterator<Item = StorageResult<Box<[u8]>>> + 'a {
        self.source
            .iter(
                self.cf,
                IteratorMode::From(MEMBER_PREFIX, Direction::Forward),
            )
            .take_while(|item| !matches!(item, Ok((key, _)) if !key.starts_with(MEMBER_PREFIX)))
            .map(|item| item.map(|(_, value)| value))
    }
}
