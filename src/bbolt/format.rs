//! The on-disk layout shared by the reader and the writer: page headers, page elements,
//! bucket headers and meta pages. All integers are little-endian, as bbolt writes them
//! on the platforms it runs on.

use std::io;

/// Page header: id u64, flags u16, count u16, overflow u32.
pub(crate) const PAGE_HEADER_SIZE: usize = 16;
/// Leaf element (flags, pos, ksize, vsize: u32 each) and branch element (pos u32,
/// ksize u32, pgid u64) are both 16 bytes.
pub(crate) const ELEMENT_SIZE: usize = 16;
/// A bucket's value starts with its header: root pgid u64, sequence u64.
pub(crate) const BUCKET_HEADER_SIZE: usize = 16;

pub(crate) const BRANCH_PAGE: u16 = 0x01;
pub(crate) const LEAF_PAGE: u16 = 0x02;
pub(crate) const META_PAGE: u16 = 0x04;
pub(crate) const FREELIST_PAGE: u16 = 0x10;

/// Leaf element flag of a nested bucket.
pub(crate) const BUCKET_LEAF_FLAG: u32 = 0x01;

pub(crate) const MAGIC: u32 = 0xED0C_DAED;
pub(crate) const VERSION: u32 = 2;
/// The meta's freelist pgid when the freelist is not written to the file.
pub(crate) const NO_FREELIST: u64 = u64::MAX;

/// The meta fields: magic, version, page size, flags, root bucket (root, sequence),
/// freelist, high-water pgid, txid, then the checksum of the 56 bytes before it.
pub(crate) const META_SIZE: usize = 64;
const CHECKSUM_OFFSET: usize = 56;

/// Largest key and value bbolt accepts.
pub(crate) const MAX_KEY_SIZE: usize = 32768;
pub(crate) const MAX_VALUE_SIZE: usize = (1 << 31) - 2;

/// The most elements a page may hold (bbolt refuses to write 0xFFFF).
pub(crate) const MAX_PAGE_ELEMENTS: usize = 0xFFFE;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub page_size: u32,
    pub flags: u32,
    pub root: u64,
    pub sequence: u64,
    pub freelist: u64,
    /// The high-water mark: one past the last page in use.
    pub pgid: u64,
    pub txid: u64,
}

impl Meta {
    pub(crate) fn encode(&self) -> [u8; META_SIZE] {
        let mut b = [0u8; META_SIZE];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b[16..24].copy_from_slice(&self.root.to_le_bytes());
        b[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        b[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        b[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        b[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv1a64(&b[..CHECKSUM_OFFSET]);
        b[CHECKSUM_OFFSET..].copy_from_slice(&sum.to_le_bytes());
        b
    }

    /// The meta in `b` (the bytes after the page header), checked as bbolt checks it:
    /// magic, version, checksum.
    pub(crate) fn decode(b: &[u8]) -> Result<Meta, String> {
        if b.len() < META_SIZE {
            return Err("meta page is cut short".into());
        }
        if u32_at(b, 0) != MAGIC {
            return Err(format!("bad magic {:#010x}", u32_at(b, 0)));
        }
        if u32_at(b, 4) != VERSION {
            return Err(format!("unsupported version {}", u32_at(b, 4)));
        }
        let sum = u64_at(b, CHECKSUM_OFFSET);
        if sum != fnv1a64(&b[..CHECKSUM_OFFSET]) {
            return Err("checksum mismatch".into());
        }
        Ok(Meta {
            page_size: u32_at(b, 8),
            flags: u32_at(b, 12),
            root: u64_at(b, 16),
            sequence: u64_at(b, 24),
            freelist: u64_at(b, 32),
            pgid: u64_at(b, 40),
            txid: u64_at(b, 48),
        })
    }
}

/// FNV-1a, 64 bits: the meta checksum.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A page header, written into the first 16 bytes of `b`.
pub(crate) fn put_page_header(b: &mut [u8], id: u64, flags: u16, count: u16, overflow: u32) {
    b[0..8].copy_from_slice(&id.to_le_bytes());
    b[8..10].copy_from_slice(&flags.to_le_bytes());
    b[10..12].copy_from_slice(&count.to_le_bytes());
    b[12..16].copy_from_slice(&overflow.to_le_bytes());
}

pub(crate) fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub(crate) fn invalid_input(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_known_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn meta_round_trips_and_rejects_a_flipped_byte() {
        let m = Meta {
            page_size: 4096,
            flags: 0,
            root: 3,
            sequence: 0,
            freelist: 2,
            pgid: 4,
            txid: 7,
        };
        let mut b = m.encode();
        assert_eq!(Meta::decode(&b).unwrap(), m);
        b[41] ^= 1;
        assert!(Meta::decode(&b).unwrap_err().contains("checksum"));
    }
}
