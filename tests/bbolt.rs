//! `cairn::bbolt`: files the writer makes read back key for key, in order, and the writer's
//! and reader's memory stays bounded; files written by real etcd and bbolt read as they
//! should; corrupt files give errors, not panics.
//!
//! Fixtures, in `tests/fixtures/bbolt/`:
//! - `etcd34.snap`, `etcd37.snap`: `ETCDCTL_API=3 etcdctl snapshot save` of a fresh
//!   one-member etcd 3.4.23 and 3.7.3 after: `put foo bar`; `put counter v1` … `v20`;
//!   `put big` (10000 × 'x'); `put gone soon`; `del gone`; `lease grant 3600`;
//!   `put leased "with a lease" --lease=ID`. Kept as saved, with the 32-byte sha256 etcd
//!   appends after the last page.
//! - `nested.db`: made with bbolt v1.3.11 (a throwaway Go program), page size 1024:
//!   bucket `plain` (keys `key-0000` … `key-0199` = `value-{i*i}`, `key-big` = 5000 bytes
//!   `i % 251`, sequence 42), `parent` (`a`=`1`, nested bucket `child` {`x`=`y`}, `z`=`26`),
//!   `small` (`k`=`v`, then `k2`=`v2` in a second transaction), `empty`.

use std::fs::{File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cairn::bbolt::{FirstPass, Reader, SecondPass, Summary, Writer};
use cairn::proto::mvccpb::KeyValue;
use prost::Message;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/bbolt")
        .join(name)
}

/// Deterministic bytes: `n` of them from `seed`.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

type Bucket = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// Writes `buckets` (in the order given) to `path`.
fn write(path: &Path, page_size: u32, buckets: &[Bucket]) -> Summary {
    let mut w = Writer::create(File::create(path).unwrap(), page_size).unwrap();
    for (name, kvs) in buckets {
        w.begin_bucket(name).unwrap();
        for (k, v) in kvs {
            w.put(k, v).unwrap();
        }
    }
    let summary = w.finish().unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), summary.file_size);
    summary
}

/// Every bucket of the file and its entries, in the reader's order.
fn read_all(path: &Path) -> Vec<Bucket> {
    let r = Reader::open(path).unwrap();
    r.buckets()
        .unwrap()
        .into_iter()
        .map(|b| {
            let kvs = r
                .entries(&b.name)
                .unwrap()
                .map(|e| {
                    let e = e.unwrap();
                    assert!(!e.is_bucket);
                    (e.key, e.value)
                })
                .collect();
            (b.name, kvs)
        })
        .collect()
}

fn sorted(mut buckets: Vec<Bucket>) -> Vec<Bucket> {
    buckets.sort_by(|a, b| a.0.cmp(&b.0));
    buckets
}

#[test]
fn many_small_keys_in_several_buckets_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let names: [&[u8]; 4] = [b"zeta", b"key", b"alpha", b"lease"];
    let key = |b: usize, i: u64| format!("{b}/{:09}", i * 7).into_bytes();
    let value = |i: u64| vec![(i % 251) as u8; (i % 60) as usize];
    let per_bucket = 50_000u64;

    let mut w = Writer::create(File::create(&path).unwrap(), 4096).unwrap();
    for (b, name) in names.iter().enumerate() {
        w.begin_bucket(name).unwrap();
        for i in 0..per_bucket {
            w.put(&key(b, i), &value(i)).unwrap();
        }
    }
    let s = w.finish().unwrap();
    assert_eq!((s.buckets, s.keys, s.page_size), (4, 200_000, 4096));
    assert_eq!(s.file_size, s.pages * 4096);

    let r = Reader::open(&path).unwrap();
    assert_eq!(r.page_count(), s.pages);
    let listed: Vec<Vec<u8>> = r.buckets().unwrap().into_iter().map(|b| b.name).collect();
    let mut expected: Vec<Vec<u8>> = names.iter().map(|n| n.to_vec()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for (b, name) in names.iter().enumerate() {
        let mut i = 0;
        r.for_each(name, |k, v, is_bucket| {
            assert!(!is_bucket);
            assert_eq!(k, key(b, i).as_slice());
            assert_eq!(v, value(i).as_slice());
            i += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(i, per_bucket);
    }
    // The iterator sees the same.
    let n = r.entries(b"key").unwrap().map(|e| e.unwrap()).count();
    assert_eq!(n as u64, per_bucket);
}

/// The leaf pages of a file the writer made, in file order (the root bucket's last): how
/// many pages each spans.
fn leaf_spans(path: &Path, page_size: usize) -> Vec<u64> {
    let file = std::fs::read(path).unwrap();
    let pages = (file.len() / page_size) as u64;
    let (mut pgid, mut leaves) = (2, Vec::new());
    while pgid < pages {
        let at = pgid as usize * page_size;
        let flags = u16::from_le_bytes(file[at + 8..at + 10].try_into().unwrap());
        let overflow = u32::from_le_bytes(file[at + 12..at + 16].try_into().unwrap()) as u64;
        if flags == 0x02 {
            leaves.push(1 + overflow);
        }
        pgid += 1 + overflow;
    }
    leaves
}

/// Values just over a page (etcd's revisions of 4 KiB values) share their leaves' overflow
/// pages: 16 pages for 15 of them, where each took two pages alone. Small values keep
/// leaves of one page, as bbolt's.
#[test]
fn values_just_over_a_page_share_pages_and_small_ones_keep_one_page_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let n = 2_000u64;
    let key = |i: u64| format!("{i:017}").into_bytes();

    let path = dir.path().join("large");
    let large = vec![(
        b"key".to_vec(),
        (0..n).map(|i| (key(i), bytes(4_096, i))).collect(),
    )];
    let s = write(&path, 4096, &large);
    assert_eq!(read_all(&path), large);
    let mut leaves = leaf_spans(&path, 4096);
    assert_eq!(leaves.pop(), Some(1), "the root bucket's leaf");
    // 16 + 17 + 4,096 bytes an element: 15 fit in 16 pages, with the page header.
    assert_eq!(leaves.len() as u64, n.div_ceil(15), "{leaves:?}");
    assert!(leaves.iter().all(|&pages| pages <= 16), "{leaves:?}");
    let leaf_pages: u64 = leaves.iter().sum();
    assert!(
        leaf_pages <= n * 108 / 100,
        "{leaf_pages} pages for {n} values"
    );
    assert!(s.pages < leaf_pages + 8, "{} pages in all", s.pages);

    let path = dir.path().join("small");
    let small = vec![(
        b"key".to_vec(),
        (0..n).map(|i| (key(i), bytes(200, i))).collect(),
    )];
    write(&path, 4096, &small);
    assert_eq!(read_all(&path), small);
    let leaves = leaf_spans(&path, 4096);
    assert!(leaves.iter().all(|&pages| pages == 1), "{leaves:?}");
    // 16 + 17 + 200 bytes an element: 17 to a page; and the root bucket's leaf.
    assert_eq!(leaves.len() as u64, n.div_ceil(17) + 1);
}

/// Writes `buckets` twice, to outputs that cannot seek: the second pass's bytes, or its
/// error. `second` may differ from `buckets` (a second pass that goes wrong).
fn write_unseekable(page_size: u32, buckets: &[Bucket], second: &[Bucket]) -> io::Result<Vec<u8>> {
    fn fill<W: Write + Seek>(w: &mut Writer<W>, buckets: &[Bucket]) -> io::Result<()> {
        for (name, kvs) in buckets {
            w.begin_bucket(name)?;
            for (k, v) in kvs {
                w.put(k, v)?;
            }
        }
        Ok(())
    }
    let mut w = Writer::create(FirstPass::new(page_size), page_size)?;
    fill(&mut w, buckets)?;
    let (summary, first) = w.finish_into_inner()?;
    let measured = first.measured();
    assert_eq!(measured.len(), summary.file_size);
    let mut w = Writer::create(SecondPass::new(measured, Vec::new()), page_size)?;
    fill(&mut w, second)?;
    w.finish_into_inner()?.1.into_inner()
}

/// Written twice to an output that cannot seek, a file is byte for byte the one written
/// once to a file; a second pass laid out on other pages is an error, not a broken file.
#[test]
fn a_file_written_twice_without_seeking_is_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let kvs = |n: u64, size: usize| -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n)
            .map(|i| (format!("{i:08}").into_bytes(), bytes(size, i)))
            .collect()
    };
    let cases: Vec<Vec<Bucket>> = vec![
        vec![],
        vec![(b"small".to_vec(), kvs(3, 10))],
        vec![
            (b"key".to_vec(), kvs(5_000, 300)),
            (b"large".to_vec(), kvs(40, 9_000)),
            (b"meta".to_vec(), kvs(2, 8)),
        ],
    ];
    // 512-byte pages: the small files are padded to the 4 KiB bbolt reads.
    for page_size in [4096, 512] {
        for buckets in &cases {
            write(&path, page_size, buckets);
            let once = std::fs::read(&path).unwrap();
            let twice = write_unseekable(page_size, buckets, buckets).unwrap();
            assert!(
                once == twice,
                "{} bytes against {}",
                once.len(),
                twice.len()
            );
        }
    }

    // Second passes laid out on other pages.
    let buckets = &cases[2];
    let mut longer = buckets.clone();
    longer[0].1.extend(
        kvs(100, 300)
            .into_iter()
            .map(|(k, v)| ([b"z", &k[..]].concat(), v)),
    );
    let mut larger_value = buckets.clone();
    larger_value[1].1[0].1.extend_from_slice(&[7; 20_000]);
    let fewer_buckets = vec![buckets[0].clone()];
    for second in [longer, larger_value, fewer_buckets] {
        assert!(write_unseekable(4096, buckets, &second).is_err());
    }

    // A first pass no longer wanted gives up within a MiB.
    let mut w = Writer::create(FirstPass::new(4096).while_wanted(|| false), 4096).unwrap();
    w.begin_bucket(b"key").unwrap();
    let mut written = 0u64;
    let given_up = loop {
        if let Err(e) = w.put(&written.to_be_bytes(), &[0; 1000]) {
            break e;
        }
        written += 1;
    };
    assert_eq!(given_up.to_string(), "the file is no longer wanted");
    assert!((1_000..1_100).contains(&written), "{written} keys written");
}

#[test]
fn values_from_empty_to_multi_page_and_long_keys_read_back() {
    for page_size in [4096u32, 512, 16384] {
        let ps = page_size as usize;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        // A 4-byte key whose element fills its page exactly: header, element, key, value.
        let exact = ps - 16 - 16 - 4;
        let sizes = [
            0,
            1,
            exact - 1,
            exact,
            exact + 1,
            ps,
            ps + 1,
            3 * ps,
            10_000,
            100_000,
            2 << 20,
            0,
            7,
        ];
        let values: Vec<(Vec<u8>, Vec<u8>)> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (format!("v{i:03}").into_bytes(), bytes(n, i as u64)))
            .collect();
        let key_sizes = [1usize, 100, 1000, 2000, 4096, 5000, 32768];
        let long_keys: Vec<(Vec<u8>, Vec<u8>)> = key_sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let mut k = bytes(n, 99 + i as u64);
                k[0] = i as u8;
                (k, bytes(i * 300, 5))
            })
            .collect();
        // Many long keys: branch pages of two elements spanning several pages.
        let deep: Vec<(Vec<u8>, Vec<u8>)> = (0..1500u32)
            .map(|i| {
                let mut k = format!("{i:06}").into_bytes();
                k.resize(3000, b'.');
                (k, i.to_be_bytes().to_vec())
            })
            .collect();
        let buckets: Vec<Bucket> = vec![
            (b"values".to_vec(), values),
            (b"empty".to_vec(), vec![]),
            (b"long keys".to_vec(), long_keys),
            (b"deep".to_vec(), deep),
            (b"also empty".to_vec(), vec![]),
            (b"one".to_vec(), vec![(b"k".to_vec(), b"v".to_vec())]),
        ];
        let s = write(&path, page_size, &buckets);
        assert_eq!(s.file_size % u64::from(page_size), 0);
        assert_eq!(read_all(&path), sorted(buckets), "page size {page_size}");
        let r = Reader::open(&path).unwrap();
        let info = r.bucket(b"empty").unwrap().unwrap();
        assert!(info.inline && info.root == 0);
        assert!(r.bucket(b"one").unwrap().unwrap().inline);
        assert!(!r.bucket(b"values").unwrap().unwrap().inline);
        assert!(r.bucket(b"missing").unwrap().is_none());
    }
}

#[test]
fn a_file_without_buckets_and_a_small_page_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let s = write(&path, 512, &[]);
    // Four pages (two metas, freelist, empty root leaf), padded to the 4 KiB bbolt reads.
    assert_eq!((s.pages, s.file_size), (4, 4096));
    let r = Reader::open(&path).unwrap();
    assert!(r.buckets().unwrap().is_empty());
    assert_eq!(r.txid(), 1);
    assert_eq!(r.freelist(), Some(3));
    let err = r.entries(b"key").err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
}

#[test]
fn the_writer_takes_any_seekable_output_at_any_offset() {
    let mut out = Cursor::new(b"prefix".to_vec());
    out.seek(SeekFrom::End(0)).unwrap();
    let mut w = Writer::create(out, 1024).unwrap();
    w.begin_bucket(b"b").unwrap();
    for i in 0..1000u32 {
        w.put(&i.to_be_bytes(), &bytes(i as usize % 700, 1))
            .unwrap();
    }
    let (s, out) = w.finish_into_inner().unwrap();
    let bytes_out = out.into_inner();
    assert_eq!(&bytes_out[..6], b"prefix");
    assert_eq!(bytes_out.len() as u64, 6 + s.file_size);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    std::fs::write(&path, &bytes_out[6..]).unwrap();
    let read = read_all(&path);
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].1.len(), 1000);
    assert_eq!(read[0].1[999].0, 999u32.to_be_bytes());
}

#[test]
fn the_writer_refuses_what_bbolt_would_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    for bad in [0u32, 100, 511, 3000, 4097, 2 << 20] {
        assert!(
            Writer::create(File::create(&path).unwrap(), bad).is_err(),
            "{bad}"
        );
    }
    let mut w = Writer::create(File::create(&path).unwrap(), 4096).unwrap();
    let kind = |r: io::Result<()>| r.unwrap_err().kind();
    assert_eq!(kind(w.put(b"k", b"v")), io::ErrorKind::InvalidInput);
    assert_eq!(kind(w.begin_bucket(b"")), io::ErrorKind::InvalidInput);
    w.begin_bucket(b"b").unwrap();
    w.put(b"b", b"1").unwrap();
    assert_eq!(kind(w.put(b"b", b"again")), io::ErrorKind::InvalidInput);
    assert_eq!(kind(w.put(b"a", b"before")), io::ErrorKind::InvalidInput);
    assert_eq!(kind(w.put(b"", b"empty")), io::ErrorKind::InvalidInput);
    assert_eq!(
        kind(w.put(&[b'z'; 32769], b"")),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(kind(w.begin_bucket(b"b")), io::ErrorKind::InvalidInput);
    // A refused put leaves the writer as it was.
    w.put(b"c", b"2").unwrap();
    w.begin_bucket(b"a").unwrap();
    assert_eq!(kind(w.begin_bucket(b"b")), io::ErrorKind::InvalidInput);
    w.put(b"x", b"3").unwrap();
    w.finish().unwrap();
    let read = read_all(&path);
    let expected: Vec<Bucket> = vec![
        (b"a".to_vec(), vec![(b"x".to_vec(), b"3".to_vec())]),
        (
            b"b".to_vec(),
            vec![
                (b"b".to_vec(), b"1".to_vec()),
                (b"c".to_vec(), b"2".to_vec()),
            ],
        ),
    ];
    assert_eq!(read, expected);
}

#[test]
fn a_file_bbolt_wrote_with_nested_inline_and_overflow_buckets() {
    let r = Reader::open(fixture("nested.db")).unwrap();
    assert_eq!(r.page_size(), 1024);
    assert_eq!(r.txid(), 3);
    let buckets = r.buckets().unwrap();
    let names: Vec<&[u8]> = buckets.iter().map(|b| b.name.as_slice()).collect();
    assert_eq!(names, [&b"empty"[..], b"parent", b"plain", b"small"]);
    let plain = &buckets[2];
    assert_eq!((plain.sequence, plain.inline), (42, false));
    assert!(buckets[0].inline && buckets[3].inline);

    let mut plain = r.entries(b"plain").unwrap().map(|e| e.unwrap());
    for i in 0..200 {
        let e = plain.next().unwrap();
        assert_eq!(e.key, format!("key-{i:04}").into_bytes());
        assert_eq!(e.value, format!("value-{}", i * i).into_bytes());
    }
    let big = plain.next().unwrap();
    assert_eq!(big.key, b"key-big");
    assert!(big
        .value
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
    assert_eq!(big.value.len(), 5000);
    assert!(plain.next().is_none());

    let parent: Vec<_> = r.entries(b"parent").unwrap().map(|e| e.unwrap()).collect();
    let keys: Vec<(&[u8], bool)> = parent
        .iter()
        .map(|e| (e.key.as_slice(), e.is_bucket))
        .collect();
    assert_eq!(keys, [(&b"a"[..], false), (b"child", true), (b"z", false)]);
    // The nested bucket's value is its header (inline: root 0) and its page.
    assert_eq!(&parent[1].value[..8], &[0u8; 8]);

    let small: Vec<_> = r.entries(b"small").unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(small.len(), 2);
    assert_eq!(small[1].key, b"k2");
    assert_eq!(r.entries(b"empty").unwrap().count(), 0);
}

/// etcd's `lease` bucket value (leasepb.Lease).
#[derive(Clone, PartialEq, prost::Message)]
struct Lease {
    #[prost(int64, tag = "1")]
    id: i64,
    #[prost(int64, tag = "2")]
    ttl: i64,
}

/// A `key` bucket key: main revision, '_', sub revision, and 't' for a tombstone.
fn revision(key: &[u8]) -> (u64, u64, bool) {
    assert!(
        key.len() == 17 || (key.len() == 18 && key[17] == b't'),
        "{key:?}"
    );
    assert_eq!(key[8], b'_');
    let main = u64::from_be_bytes(key[..8].try_into().unwrap());
    let sub = u64::from_be_bytes(key[9..17].try_into().unwrap());
    (main, sub, key.len() == 18)
}

fn check_etcd_snapshot(name: &str, version: &str) {
    let path = fixture(name);
    // Pages, then the sha256 etcd appends.
    assert_eq!(std::fs::metadata(&path).unwrap().len() % 4096, 32);
    let r = Reader::open(&path).unwrap();
    assert_eq!(r.page_size(), 4096);
    // etcd does not sync the freelist.
    assert_eq!(r.freelist(), None);
    let names: Vec<String> = r
        .buckets()
        .unwrap()
        .into_iter()
        .map(|b| String::from_utf8(b.name).unwrap())
        .collect();
    let expected = [
        "alarm",
        "auth",
        "authRoles",
        "authUsers",
        "cluster",
        "key",
        "lease",
        "members",
        "members_removed",
        "meta",
    ];
    assert_eq!(names, expected, "{name}");

    let leases: Vec<_> = r.entries(b"lease").unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(leases.len(), 1);
    let lease = Lease::decode(leases[0].value.as_slice()).unwrap();
    assert_eq!(leases[0].key, lease.id.to_be_bytes());
    assert_eq!(lease.ttl, 3600);

    let mut kvs = Vec::new();
    r.for_each(b"key", |k, v, _| {
        let (main, sub, tombstone) = revision(k);
        let kv = KeyValue::decode(v).map_err(io::Error::other)?;
        kvs.push((main, sub, tombstone, kv));
        Ok(())
    })
    .unwrap();
    // Revision 1 is the empty store; each put or delete made one revision.
    assert_eq!(kvs.len(), 25);
    assert!(kvs.iter().all(|kv| kv.1 == 0));
    assert_eq!(kvs[0].0, 2);
    assert_eq!(kvs[0].3.key, b"foo");
    assert_eq!(kvs[0].3.value, b"bar");
    for (i, kv) in kvs[1..21].iter().enumerate() {
        let i = i as i64;
        assert_eq!(kv.0, 3 + i as u64);
        assert_eq!(kv.3.key, b"counter");
        assert_eq!(kv.3.value, format!("v{}", i + 1).into_bytes());
        assert_eq!((kv.3.create_revision, kv.3.mod_revision), (3, 3 + i));
        assert_eq!(kv.3.version, i + 1);
    }
    let big = &kvs[21];
    assert_eq!((big.0, big.3.key.as_slice()), (23, &b"big"[..]));
    assert_eq!(big.3.value, vec![b'x'; 10000]);
    let (put, del) = (&kvs[22], &kvs[23]);
    assert_eq!(
        (put.0, put.2, put.3.value.as_slice()),
        (24, false, &b"soon"[..])
    );
    assert_eq!(
        (del.0, del.2, del.3.key.as_slice()),
        (25, true, &b"gone"[..])
    );
    assert!(del.3.value.is_empty());
    let leased = &kvs[24];
    assert_eq!((leased.0, leased.3.key.as_slice()), (26, &b"leased"[..]));
    assert_eq!(leased.3.value, b"with a lease");
    assert_eq!(leased.3.lease, lease.id);

    let meta: Vec<_> = r.entries(b"meta").unwrap().map(|e| e.unwrap()).collect();
    assert!(meta.iter().any(|e| e.key == b"consistent_index"));
    let cluster: Vec<_> = r.entries(b"cluster").unwrap().map(|e| e.unwrap()).collect();
    assert_eq!(cluster[0].key, b"clusterVersion");
    assert_eq!(cluster[0].value, version.as_bytes());
    assert_eq!(r.entries(b"members").unwrap().count(), 1);
}

#[test]
fn an_etcd_3_4_snapshot() {
    check_etcd_snapshot("etcd34.snap", "3.4.0");
}

#[test]
fn an_etcd_3_7_snapshot() {
    check_etcd_snapshot("etcd37.snap", "3.7.0");
    let r = Reader::open(fixture("etcd37.snap")).unwrap();
    let meta: Vec<_> = r.entries(b"meta").unwrap().map(|e| e.unwrap()).collect();
    let storage = meta.iter().find(|e| e.key == b"storageVersion").unwrap();
    assert_eq!(storage.value, b"3.7.0");
}

/// A copy of a written file to spoil: 20k keys of one bucket under a branch root.
fn spoilable(dir: &Path) -> (PathBuf, u64) {
    let path = dir.join("db");
    let kvs = (0..20_000u32)
        .map(|i| (i.to_be_bytes().to_vec(), bytes(i as usize % 40, 3)))
        .collect();
    write(&path, 4096, &[(b"b".to_vec(), kvs)]);
    let root = Reader::open(&path)
        .unwrap()
        .bucket(b"b")
        .unwrap()
        .unwrap()
        .root;
    (path, root)
}

/// Opens and reads every bucket: the first error, if any.
fn read_everything(path: &Path) -> io::Result<u64> {
    let r = Reader::open(path)?;
    let mut n = 0;
    for b in r.buckets()? {
        r.for_each(&b.name, |_, _, _| {
            n += 1;
            Ok(())
        })?;
    }
    Ok(n)
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .write_all_at(bytes, at)
        .unwrap();
}

fn err_text(path: &Path) -> String {
    read_everything(path).unwrap_err().to_string()
}

#[test]
fn a_spoilt_meta_page_falls_back_to_the_other_and_both_spoilt_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = spoilable(dir.path());
    let good = std::fs::read(&path).unwrap();
    assert_eq!(Reader::open(&path).unwrap().meta_page(), 1);

    // Meta 1 (the newer) spoilt: meta 0 serves.
    patch(&path, 4096 + 16 + 40, &[0xAB]);
    let r = Reader::open(&path).unwrap();
    assert_eq!((r.meta_page(), r.txid()), (0, 0));
    assert_eq!(read_everything(&path).unwrap(), 20_000);

    // Meta 0 spoilt, meta 1 good: meta 1 is found without meta 0's page size.
    std::fs::write(&path, &good).unwrap();
    patch(&path, 16 + 8, &[0x00, 0x20]);
    assert_eq!(Reader::open(&path).unwrap().meta_page(), 1);
    assert_eq!(read_everything(&path).unwrap(), 20_000);

    // Both spoilt (magic, version).
    patch(&path, 4096 + 16, &[0]);
    let e = err_text(&path);
    assert!(e.contains("no valid meta page"), "{e}");
    std::fs::write(&path, &good).unwrap();
    patch(&path, 16 + 4, &[3]);
    patch(&path, 4096 + 16 + 4, &[3]);
    assert!(err_text(&path).contains("version"));
}

#[test]
fn a_truncated_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = spoilable(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    for keep in [len - 1, len / 2, 8192, 4096 + 100, 4000, 50, 0] {
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(keep).unwrap();
        let e = err_text(&path);
        assert!(
            e.contains("truncated") || e.contains("too small") || e.contains("no valid meta"),
            "{keep}: {e}"
        );
    }
}

#[test]
fn bad_page_ids_loops_and_bad_pages_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (path, root) = spoilable(dir.path());
    let good = std::fs::read(&path).unwrap();
    let pages = good.len() as u64 / 4096;
    let at = root * 4096;
    // The root is a branch page; its first element's child pgid is 8 bytes into it.
    assert_eq!(good[at as usize + 8], 0x01);
    let child_at = at + 16 + 8;
    let cases: Vec<(u64, Vec<u8>, &str)> = vec![
        (child_at, (pages + 5).to_le_bytes().to_vec(), "out of range"),
        (child_at, 1u64.to_le_bytes().to_vec(), "out of range"),
        (child_at, root.to_le_bytes().to_vec(), "loops"),
        // A later element pointing at the first child: keys go backwards.
        (
            at + 16 + 16 + 8,
            good[child_at as usize..child_at as usize + 8].to_vec(),
            "order",
        ),
        // Page header: flags, id, count, overflow.
        (at + 8, vec![0x10], "flags"),
        (at, (root + 1).to_le_bytes().to_vec(), "says it is page"),
        (at + 10, vec![0xff, 0xff], "do not fit"),
        (at + 12, 1_000_000u32.to_le_bytes().to_vec(), "overflow"),
        // First element's key runs far past the page.
        (at + 16 + 4, 100_000u32.to_le_bytes().to_vec(), "outside"),
    ];
    for (offset, bytes, expect) in cases {
        std::fs::write(&path, &good).unwrap();
        patch(&path, offset, &bytes);
        let e = err_text(&path);
        assert!(e.contains(expect), "patch at {offset}: {e}");
    }
}

#[test]
fn flipping_any_byte_gives_an_error_or_data_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let kvs: Vec<(Vec<u8>, Vec<u8>)> = (0..400u32)
        .map(|i| (i.to_be_bytes().to_vec(), bytes(i as usize % 30, 1)))
        .collect();
    let big = vec![(b"big".to_vec(), bytes(3000, 2))];
    write(
        &path,
        1024,
        &[
            (b"b".to_vec(), kvs),
            (b"big".to_vec(), big),
            (b"e".to_vec(), vec![]),
        ],
    );
    let good = std::fs::read(&path).unwrap();
    for at in (0..good.len()).step_by(3) {
        patch(&path, at as u64, &[good[at] ^ 0x5A]);
        let _ = read_everything(&path);
        patch(&path, at as u64, &[good[at]]);
    }
}

/// Resident memory, from /proc/self/status: (now, peak), in KiB.
fn rss_kib() -> (u64, u64) {
    let mut status = String::new();
    File::open("/proc/self/status")
        .unwrap()
        .read_to_string(&mut status)
        .unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// An output that keeps nothing: the writer's own memory, without a disk.
struct Sink {
    pos: u64,
    len: u64,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pos += buf.len() as u64;
        self.len = self.len.max(self.pos);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Sink {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::End(d) => self.len.checked_add_signed(d).unwrap(),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).unwrap(),
        };
        Ok(self.pos)
    }
}

/// Value sizes cycled through by the memory check: small to 2 MiB.
const SIZES: [usize; 8] = [0, 100, 4000, 4096, 20_000, 300_000, 1 << 20, 2 << 20];

/// Runs in a child process of its own (see below), so the peak RSS is this test's alone.
#[test]
fn memory_probe() {
    if std::env::var_os("CAIRN_BBOLT_MEMORY_PROBE").is_none() {
        return;
    }
    let source = bytes(4 << 20, 11);
    let value = |i: usize| {
        let n = SIZES[i % SIZES.len()];
        let at = (i * 4099) % (source.len() - n);
        &source[at..at + n]
    };
    let (base, _) = rss_kib();

    // 1 GiB of values (plus 200k small keys), to a sink.
    let mut w = Writer::create(Sink { pos: 0, len: 0 }, 4096).unwrap();
    w.begin_bucket(b"small").unwrap();
    for i in 0..200_000u64 {
        w.put(&i.to_be_bytes(), &source[..(i % 64) as usize])
            .unwrap();
    }
    w.begin_bucket(b"large").unwrap();
    let (mut total, mut i) = (0usize, 0usize);
    while total < 1 << 30 {
        w.put(&(i as u64).to_be_bytes(), value(i)).unwrap();
        total += value(i).len();
        i += 1;
    }
    let s = w.finish().unwrap();
    assert!(s.file_size > 1 << 30);
    let (_, peak_write) = rss_kib();

    // 256 MiB of values to a file, read back and compared.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let mut w = Writer::create(File::create(&path).unwrap(), 4096).unwrap();
    w.begin_bucket(b"large").unwrap();
    let (mut total, mut n) = (0usize, 0usize);
    while total < 256 << 20 {
        w.put(&(n as u64).to_be_bytes(), value(n)).unwrap();
        total += value(n).len();
        n += 1;
    }
    w.finish().unwrap();
    let r = Reader::open(&path).unwrap();
    let mut i = 0;
    r.for_each(b"large", |k, v, _| {
        assert_eq!(k, (i as u64).to_be_bytes());
        assert!(v == value(i));
        i += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(i, n);
    let (_, peak) = rss_kib();
    println!(
        "MEMORY base {base} KiB, peak after writing {} MiB: +{} KiB, after the 256 MiB write and read: +{} KiB",
        s.file_size >> 20,
        peak_write - base,
        peak - base
    );
    // The source buffer is in base. Growth: a page per tree level, the 2 MiB value's page
    // and its copy for writing (or reading), allocator slack. 6 MiB when this was written.
    assert!(
        peak - base < 16 << 10,
        "peak RSS grew by {} KiB",
        peak - base
    );
}

#[test]
fn writing_and_reading_stay_within_bounded_memory() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["memory_probe", "--exact", "--nocapture", "--test-threads=1"])
        .env("CAIRN_BBOLT_MEMORY_PROBE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.find("MEMORY").map(|at| &l[at..]));
    println!("{}", line.unwrap_or("no MEMORY line"));
    assert!(
        out.status.success() && line.is_some(),
        "memory probe failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
