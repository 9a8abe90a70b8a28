//! Key-range permissions, merged per user: what etcd's range-permission cache answers with
//! interval trees, here as sorted disjoint ranges searched by bisection.

use crate::proto::authpb::{permission::Type as PermType, Permission};

/// The end of a key range: exclusive, or the end of the key space.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Before(Vec<u8>),
    Unbounded,
}

/// A union of key ranges `[start, end)`: sorted, disjoint, and never adjacent (adjacent and
/// overlapping ranges are merged), so that one range covering a request is enough to know.
#[derive(Debug, Default, Clone)]
pub struct RangeSet {
    ranges: Vec<(Vec<u8>, End)>,
}

/// A request's or a permission's `key` and `range_end` as a range, as etcd reads them: no
/// end is the key alone, `"\0"` is every key from `key` on. None for an empty range.
fn as_range(key: &[u8], range_end: &[u8]) -> Option<(Vec<u8>, End)> {
    let end = match range_end {
        [] => End::Before([key, &[0]].concat()),
        [0] => End::Unbounded,
        end => End::Before(end.to_vec()),
    };
    match &end {
        End::Before(end) if end.as_slice() <= key => None,
        _ => Some((key.to_vec(), end)),
    }
}

impl RangeSet {
    fn from_ranges(mut ranges: Vec<(Vec<u8>, End)>) -> RangeSet {
        ranges.sort();
        let mut merged: Vec<(Vec<u8>, End)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some((_, last_end)) if End::Before(start.clone()) <= *last_end => {
                    if end > *last_end {
                        *last_end = end;
                    }
                }
                _ => merged.push((start, end)),
            }
        }
        RangeSet { ranges: merged }
    }

    /// Whether the ranges cover all of `key`..`range_end` (etcd's spelling of a range).
    pub fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        let Some((start, end)) = as_range(key, range_end) else {
            return false;
        };
        // The last range starting at or before `start`: the only one that can hold it.
        let after = self
            .ranges
            .partition_point(|(s, _)| s.as_slice() <= start.as_slice());
        after > 0 && self.ranges[after - 1].1 >= end
    }
}

/// What one user may read and write: the union of their roles' permissions.
#[derive(Debug, Default, Clone)]
pub struct UserPermissions {
    pub read: RangeSet,
    pub write: RangeSet,
}

impl UserPermissions {
    pub fn merge<'a>(permissions: impl IntoIterator<Item = &'a Permission>) -> UserPermissions {
        let (mut read, mut write) = (Vec::new(), Vec::new());
        for p in permissions {
            let Some(range) = as_range(&p.key, &p.range_end) else {
                continue;
            };
            match PermType::try_from(p.perm_type).unwrap_or(PermType::Read) {
                PermType::Read => read.push(range),
                PermType::Write => write.push(range),
                PermType::Readwrite => {
                    read.push(range.clone());
                    write.push(range);
                }
            }
        }
        UserPermissions {
            read: RangeSet::from_ranges(read),
            write: RangeSet::from_ranges(write),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(t: PermType, key: &[u8], end: &[u8]) -> Permission {
        Permission {
            perm_type: t as i32,
            key: key.to_vec(),
            range_end: end.to_vec(),
        }
    }

    #[test]
    fn a_single_key_permission_covers_that_key_only() {
        let p = UserPermissions::merge(&[perm(PermType::Read, b"a", b"")]);
        assert!(p.read.covers(b"a", b""));
        assert!(!p.read.covers(b"a\0", b""));
        assert!(!p.read.covers(b"a", b"b"), "a range wider than the key");
        assert!(!p.write.covers(b"a", b""));
    }

    #[test]
    fn ranges_cover_what_lies_inside_them() {
        let p = UserPermissions::merge(&[perm(PermType::Readwrite, b"k", b"l")]);
        assert!(p.read.covers(b"k", b"l"));
        assert!(p.write.covers(b"k1", b"k9"));
        assert!(p.read.covers(b"kzzz", b""));
        assert!(!p.read.covers(b"k", b"m"));
        assert!(!p.read.covers(b"j", b"l"));
        assert!(!p.read.covers(b"l", b""));
        assert!(!p.read.covers(b"k", b"\0"), "from key onward is unbounded");
    }

    #[test]
    fn adjacent_and_overlapping_ranges_of_several_roles_merge() {
        let p = UserPermissions::merge(&[
            perm(PermType::Read, b"a", b"c"),
            perm(PermType::Read, b"c", b"e"),
            perm(PermType::Read, b"d", b"g"),
            perm(PermType::Read, b"x", b""),
        ]);
        assert!(p.read.covers(b"a", b"g"));
        assert!(!p.read.covers(b"a", b"h"));
        assert!(p.read.covers(b"x", b""));
        assert!(!p.read.covers(b"g", b""));
    }

    #[test]
    fn from_key_permissions_are_unbounded() {
        let p = UserPermissions::merge(&[perm(PermType::Write, b"m", b"\0")]);
        assert!(p.write.covers(b"m", b"\0"));
        assert!(p.write.covers(b"zzz", b""));
        assert!(!p.write.covers(b"a", b"\0"));
    }

    #[test]
    fn empty_ranges_are_never_covered() {
        let p = UserPermissions::merge(&[perm(PermType::Read, b"\0", b"\0")]);
        assert!(p.read.covers(b"a", b""));
        assert!(!p.read.covers(b"b", b"a"));
    }

    #[test]
    fn thousands_of_permissions_answer_by_bisection() {
        let perms: Vec<Permission> = (0..10_000)
            .map(|i| {
                perm(
                    PermType::Read,
                    format!("k{i:05}/").as_bytes(),
                    format!("k{i:05}0").as_bytes(),
                )
            })
            .collect();
        let p = UserPermissions::merge(&perms);
        assert!(p.read.covers(b"k04242/x", b""));
        assert!(!p.read.covers(b"k04242", b""));
    }
}
