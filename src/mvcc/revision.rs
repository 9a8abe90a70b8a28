//! A revision: `main` counts committed write transactions (the store's revision), `sub`
//! orders the changes within one. On disk a revision is the key of the `kv` column family:
//! 8 bytes main, 8 bytes sub, big-endian so keys sort by revision, then a marker byte that
//! tells a tombstone from a put.

pub const REV_KEY_LEN: usize = 17;
const MARK_PUT: u8 = b'p';
const MARK_TOMBSTONE: u8 = b't';
/// etcd's revision keys: with a `_` between main and sub, and a trailing `t` only on
/// tombstones.
const ETCD_KEY_LEN: usize = 17;
const ETCD_TOMBSTONE_KEY_LEN: usize = 18;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Revision {
        Revision { main, sub }
    }

    pub fn to_key(self, tombstone: bool) -> [u8; REV_KEY_LEN] {
        let mut key = [0u8; REV_KEY_LEN];
        key[..8].copy_from_slice(&self.main.to_be_bytes());
        key[8..16].copy_from_slice(&self.sub.to_be_bytes());
        key[16] = if tombstone { MARK_TOMBSTONE } else { MARK_PUT };
        key
    }

    /// The key etcd's `key` bucket gives the same revision: 8 bytes main, `_`, 8 bytes
    /// sub, then `t` for a tombstone.
    pub fn to_etcd_key(self, tombstone: bool) -> Vec<u8> {
        let mut key = Vec::with_capacity(ETCD_TOMBSTONE_KEY_LEN);
        key.extend_from_slice(&self.main.to_be_bytes());
        key.push(b'_');
        key.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            key.push(MARK_TOMBSTONE);
        }
        key
    }

    /// Decodes a key of etcd's `key` bucket.
    pub fn from_etcd_key(key: &[u8]) -> Option<(Revision, bool)> {
        let tombstone = match key.len() {
            ETCD_KEY_LEN => false,
            ETCD_TOMBSTONE_KEY_LEN if key[ETCD_KEY_LEN] == MARK_TOMBSTONE => true,
            _ => return None,
        };
        if key[8] != b'_' {
            return None;
        }
        let main = i64::from_be_bytes(key[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(key[9..17].try_into().ok()?);
        Some((Revision { main, sub }, tombstone))
    }

    /// Decodes a `kv` column family key into the revision and whether it is a tombstone.
    pub fn from_key(key: &[u8]) -> Option<(Revision, bool)> {
        if key.len() != REV_KEY_LEN {
            return None;
        }
        let main = i64::from_be_bytes(key[..8].try_into().ok()?);
        let sub = i64::from_be_bytes(key[8..16].try_into().ok()?);
        let tombstone = match key[16] {
            MARK_PUT => false,
            MARK_TOMBSTONE => true,
            _ => return None,
        };
        Some((Revision { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_keys_round_trip_and_sort_as_cairn_keys() {
        let revs = [(1, 0, false), (2, 0, true), (2, 1, false), (300, 7, true)];
        let mut cairn = Vec::new();
        let mut etcd = Vec::new();
        for (main, sub, tombstone) in revs {
            let rev = Revision::new(main, sub);
            assert_eq!(
                Revision::from_etcd_key(&rev.to_etcd_key(tombstone)),
                Some((rev, tombstone))
            );
            cairn.push(rev.to_key(tombstone).to_vec());
            etcd.push(rev.to_etcd_key(tombstone));
        }
        assert!(cairn.is_sorted() && etcd.is_sorted());
        assert_eq!(Revision::from_etcd_key(b"0000000_00000000"), None);
        assert_eq!(Revision::from_etcd_key(&[0; 17]), None, "no `_`");
    }

    #[test]
    fn keys_sort_by_revision_and_round_trip() {
        let a = Revision::new(2, 0).to_key(false);
        let b = Revision::new(2, 1).to_key(true);
        let c = Revision::new(10, 0).to_key(false);
        assert!(a < b && b < c);
        assert_eq!(Revision::from_key(&b), Some((Revision::new(2, 1), true)));
        assert_eq!(Revision::from_key(&a[..5]), None);
    }
}
