//! Reading a bbolt file page by page.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::format::*;

/// Smallest and largest page size the reader accepts from a meta page.
const MIN_PAGE_SIZE: u32 = 512;
const MAX_PAGE_SIZE: u32 = 16 << 20;
/// Deeper trees than this are taken for a loop: a B+tree of 64 levels would hold more
/// keys than any file can.
const MAX_DEPTH: usize = 64;

/// A bbolt file opened for reading. Pages are read on demand with positioned reads; the
/// memory held is a few pages per open iterator.
pub struct Reader {
    file: File,
    len: u64,
    meta: Meta,
    meta_page: u64,
}

/// A bucket of the root bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketInfo {
    pub name: Vec<u8>,
    /// The pgid of the bucket's root page; 0 for an inline bucket.
    pub root: u64,
    pub sequence: u64,
    /// The bucket's only page is stored in its value in the parent bucket.
    pub inline: bool,
}

/// A key/value pair of a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Vec<u8>,
    /// For a nested bucket: its header (and inline page), as stored.
    pub value: Vec<u8>,
    /// The entry is a nested bucket.
    pub is_bucket: bool,
}

impl Reader {
    pub fn open(path: impl AsRef<Path>) -> io::Result<Reader> {
        Reader::from_file(File::open(path)?)
    }

    /// Reads and checks the two meta pages and keeps the valid one with the highest txid.
    /// Bytes past the last page (as the checksum etcd appends to a snapshot) are ignored.
    pub fn from_file(file: File) -> io::Result<Reader> {
        let len = file.metadata()?.len();
        let head_len = (PAGE_HEADER_SIZE + META_SIZE) as u64;
        if len < head_len {
            return Err(invalid(format!(
                "not a bbolt file: {len} bytes is too small to hold a meta page"
            )));
        }
        let read_meta = |offset: u64| -> io::Result<Result<Meta, String>> {
            if offset + head_len > len {
                return Ok(Err("past the end of the file".into()));
            }
            let mut b = [0u8; PAGE_HEADER_SIZE + META_SIZE];
            file.read_exact_at(&mut b, offset)?;
            Ok(Meta::decode(&b[PAGE_HEADER_SIZE..]))
        };
        let meta0 = read_meta(0)?;
        // Meta 1 sits one page in; without a valid meta 0 the page size is unknown, so
        // look at each power of two for a valid meta that names that page size.
        let meta1 = match &meta0 {
            Ok(m) => read_meta(u64::from(m.page_size))?,
            Err(_) => {
                let mut found = Err("no valid meta found at any page size".to_string());
                let mut size = MIN_PAGE_SIZE;
                while size <= MAX_PAGE_SIZE {
                    if let Ok(m) = read_meta(u64::from(size))? {
                        if m.page_size == size {
                            found = Ok(m);
                            break;
                        }
                    }
                    size *= 2;
                }
                found
            }
        };
        let (meta, meta_page) = match (meta0, meta1) {
            (Ok(a), Ok(b)) if b.txid > a.txid => (b, 1),
            (Ok(a), _) => (a, 0),
            (Err(_), Ok(b)) => (b, 1),
            (Err(e0), Err(e1)) => {
                return Err(invalid(format!(
                    "no valid meta page: meta 0: {e0}; meta 1: {e1}"
                )))
            }
        };
        if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&meta.page_size) {
            return Err(invalid(format!(
                "meta {meta_page}: unsupported page size {}",
                meta.page_size
            )));
        }
        let ps = u64::from(meta.page_size);
        if meta.pgid < 3 || meta.root < 2 || meta.root >= meta.pgid {
            return Err(invalid(format!(
                "meta {meta_page}: root page {} and high-water mark {} do not fit",
                meta.root, meta.pgid
            )));
        }
        let need = meta.pgid.checked_mul(ps).unwrap_or(u64::MAX);
        if len < need {
            return Err(invalid(format!(
                "file is truncated: the meta names {} pages of {ps} bytes ({need} bytes), the file has {len}",
                meta.pgid
            )));
        }
        Ok(Reader {
            file,
            len,
            meta,
            meta_page,
        })
    }

    pub fn page_size(&self) -> u32 {
        self.meta.page_size
    }

    /// The txid of the meta page in use.
    pub fn txid(&self) -> u64 {
        self.meta.txid
    }

    /// Which meta page (0 or 1) is in use.
    pub fn meta_page(&self) -> u64 {
        self.meta_page
    }

    /// The high-water mark: the number of pages in use, metas included.
    pub fn page_count(&self) -> u64 {
        self.meta.pgid
    }

    /// The freelist's pgid, None when the freelist is not stored in the file.
    pub fn freelist(&self) -> Option<u64> {
        (self.meta.freelist != NO_FREELIST).then_some(self.meta.freelist)
    }

    /// The buckets of the root bucket, in name order.
    pub fn buckets(&self) -> io::Result<Vec<BucketInfo>> {
        let mut out = Vec::new();
        let mut it = self.tree(Source::Page(self.meta.root))?;
        while let Some((key, value, flags)) = it.advance()? {
            if flags & BUCKET_LEAF_FLAG == 0 {
                return Err(invalid(format!(
                    "root bucket holds key {} that is not a bucket",
                    String::from_utf8_lossy(key)
                )));
            }
            let (root, sequence) = bucket_header(key, value)?;
            out.push(BucketInfo {
                name: key.to_vec(),
                root,
                sequence,
                inline: root == 0,
            });
        }
        Ok(out)
    }

    /// The bucket of the root bucket named `name`, if any.
    pub fn bucket(&self, name: &[u8]) -> io::Result<Option<BucketInfo>> {
        Ok(self.buckets()?.into_iter().find(|b| b.name == name))
    }

    /// The entries of the top-level bucket `name`, in key order; an error of kind
    /// NotFound when there is no such bucket.
    pub fn entries(&self, name: &[u8]) -> io::Result<Entries<'_>> {
        let mut root = self.tree(Source::Page(self.meta.root))?;
        while let Some((key, value, flags)) = root.advance()? {
            if key == name && flags & BUCKET_LEAF_FLAG != 0 {
                let (pgid, _) = bucket_header(key, value)?;
                let source = if pgid == 0 {
                    Source::Inline(value[BUCKET_HEADER_SIZE..].to_vec())
                } else {
                    Source::Page(pgid)
                };
                return self.tree(source);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no bucket {}", String::from_utf8_lossy(name)),
        ))
    }

    /// Calls `f(key, value, is_bucket)` for each entry of the top-level bucket `name`, in
    /// key order, without copying them; stops at the first error `f` returns.
    pub fn for_each<F>(&self, name: &[u8], mut f: F) -> io::Result<()>
    where
        F: FnMut(&[u8], &[u8], bool) -> io::Result<()>,
    {
        let mut it = self.entries(name)?;
        while let Some((k, v, flags)) = it.advance()? {
            f(k, v, flags & BUCKET_LEAF_FLAG != 0)?;
        }
        Ok(())
    }

    fn tree(&self, source: Source) -> io::Result<Entries<'_>> {
        let root = match source {
            Source::Page(pgid) => self.page(pgid)?,
            Source::Inline(bytes) => {
                let page = Page::parse(bytes, None)?;
                if !page.leaf {
                    return Err(invalid("inline bucket page is not a leaf page"));
                }
                page
            }
        };
        Ok(Entries {
            reader: self,
            stack: vec![root],
            last_key: Vec::new(),
            started: false,
            failed: false,
        })
    }

    /// Page `pgid` with its overflow pages, checked to be a branch or leaf page.
    fn page(&self, pgid: u64) -> io::Result<Page> {
        let ps = u64::from(self.meta.page_size);
        if pgid < 2 || pgid >= self.meta.pgid {
            return Err(invalid(format!(
                "page id {pgid} out of range [2, {})",
                self.meta.pgid
            )));
        }
        let offset = pgid * ps;
        if offset + ps > self.len {
            return Err(invalid(format!(
                "page {pgid} lies past the end of the file"
            )));
        }
        let mut buf = vec![0u8; ps as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        let overflow = u64::from(u32_at(&buf, 12));
        if overflow > 0 {
            if pgid + overflow >= self.meta.pgid {
                return Err(invalid(format!(
                    "page {pgid}: {overflow} overflow pages reach past the high-water mark {}",
                    self.meta.pgid
                )));
            }
            let total = (overflow + 1) * ps;
            if offset + total > self.len {
                return Err(invalid(format!(
                    "page {pgid}: {overflow} overflow pages reach past the end of the file"
                )));
            }
            buf.resize(total as usize, 0);
            self.file
                .read_exact_at(&mut buf[ps as usize..], offset + ps)?;
        }
        Page::parse(buf, Some(pgid))
    }
}

enum Source {
    Page(u64),
    Inline(Vec<u8>),
}

/// The (root pgid, sequence) of a bucket's value.
fn bucket_header(name: &[u8], value: &[u8]) -> io::Result<(u64, u64)> {
    let short = value.len() < BUCKET_HEADER_SIZE;
    let root = if short { 0 } else { u64_at(value, 0) };
    if short || (root == 0 && value.len() < BUCKET_HEADER_SIZE + PAGE_HEADER_SIZE) {
        return Err(invalid(format!(
            "bucket {}: value of {} bytes is too short for a bucket",
            String::from_utf8_lossy(name),
            value.len()
        )));
    }
    Ok((root, u64_at(value, 8)))
}

/// A branch or leaf page (with its overflow pages), its elements checked to lie inside.
struct Page {
    bytes: Vec<u8>,
    id: u64,
    leaf: bool,
    count: usize,
    next: usize,
}

impl Page {
    fn parse(bytes: Vec<u8>, pgid: Option<u64>) -> io::Result<Page> {
        let name = match pgid {
            Some(p) => format!("page {p}"),
            None => "inline page".to_string(),
        };
        if bytes.len() < PAGE_HEADER_SIZE {
            return Err(invalid(format!("{name}: shorter than a page header")));
        }
        let id = u64_at(&bytes, 0);
        if let Some(p) = pgid {
            if id != p {
                return Err(invalid(format!("{name} says it is page {id}")));
            }
        }
        let leaf = match u16_at(&bytes, 8) {
            LEAF_PAGE => true,
            BRANCH_PAGE => false,
            f => {
                return Err(invalid(format!(
                    "{name}: flags {f:#x}, expected a branch or leaf page"
                )))
            }
        };
        let count = usize::from(u16_at(&bytes, 10));
        if PAGE_HEADER_SIZE + count * ELEMENT_SIZE > bytes.len() {
            return Err(invalid(format!(
                "{name}: {count} elements do not fit in the page"
            )));
        }
        if !leaf && count == 0 {
            return Err(invalid(format!("{name}: empty branch page")));
        }
        let page = Page {
            bytes,
            id,
            leaf,
            count,
            next: 0,
        };
        for i in 0..count {
            let (k, v) = page.spans(i);
            if k.end > page.bytes.len() || v.end > page.bytes.len() {
                return Err(invalid(format!(
                    "{name}: element {i} lies outside the page"
                )));
            }
        }
        Ok(page)
    }

    /// Byte ranges of element `i`'s key and value (empty for a branch element).
    fn spans(&self, i: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
        let at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
        let b = &self.bytes;
        let (pos, ksize, vsize) = if self.leaf {
            (u32_at(b, at + 4), u32_at(b, at + 8), u32_at(b, at + 12))
        } else {
            (u32_at(b, at), u32_at(b, at + 4), 0)
        };
        let k = at + pos as usize;
        let v = k + ksize as usize;
        (k..v, v..v + vsize as usize)
    }

    fn key(&self, i: usize) -> &[u8] {
        &self.bytes[self.spans(i).0]
    }

    fn leaf_flags(&self, i: usize) -> u32 {
        u32_at(&self.bytes, PAGE_HEADER_SIZE + i * ELEMENT_SIZE)
    }

    fn child(&self, i: usize) -> u64 {
        u64_at(&self.bytes, PAGE_HEADER_SIZE + i * ELEMENT_SIZE + 8)
    }
}

/// The entries of a bucket in key order: an iterator of `io::Result<Entry>`. It holds one
/// page per level of the tree. After an error it yields nothing more.
pub struct Entries<'r> {
    reader: &'r Reader,
    stack: Vec<Page>,
    last_key: Vec<u8>,
    started: bool,
    failed: bool,
}

impl Entries<'_> {
    /// The next (key, value, leaf flags), borrowed from the page held.
    fn advance(&mut self) -> io::Result<Option<(&[u8], &[u8], u32)>> {
        if self.failed {
            return Ok(None);
        }
        let r = self.step();
        if r.is_err() {
            self.failed = true;
            self.stack.clear();
        }
        let Some(()) = r? else { return Ok(None) };
        let top = self.stack.last().unwrap();
        let i = top.next - 1;
        let (k, v) = top.spans(i);
        Ok(Some((&top.bytes[k], &top.bytes[v], top.leaf_flags(i))))
    }

    /// Moves to the next leaf element, checking keys strictly increase.
    fn step(&mut self) -> io::Result<Option<()>> {
        loop {
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            if top.next >= top.count {
                self.stack.pop();
                continue;
            }
            let i = top.next;
            top.next += 1;
            if top.leaf {
                let key = top.key(i);
                if self.started && key <= self.last_key.as_slice() {
                    return Err(invalid(format!(
                        "page {}: keys out of order at element {i}",
                        top.id
                    )));
                }
                self.last_key.clear();
                self.last_key.extend_from_slice(key);
                self.started = true;
                return Ok(Some(()));
            }
            let child = top.child(i);
            let parent = top.id;
            if self.stack.iter().any(|p| p.id == child) {
                return Err(invalid(format!(
                    "page {parent}: child {child} loops back to an ancestor"
                )));
            }
            if self.stack.len() >= MAX_DEPTH {
                return Err(invalid(format!(
                    "page {parent}: tree deeper than {MAX_DEPTH} levels"
                )));
            }
            let page = self.reader.page(child)?;
            self.stack.push(page);
        }
    }
}

impl Iterator for Entries<'_> {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<io::Result<Entry>> {
        match self.advance() {
            Ok(Some((k, v, flags))) => Some(Ok(Entry {
                key: k.to_vec(),
                value: v.to_vec(),
                is_bucket: flags & BUCKET_LEAF_FLAG != 0,
            })),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
