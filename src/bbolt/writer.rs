//! Writing a bbolt file in one pass: a bulk-loaded B+tree per bucket.

use std::collections::BTreeMap;
use std::io::{self, Seek, SeekFrom, Write};

use super::format::*;

/// The smallest file bbolt opens.
const MIN_FILE_SIZE: u64 = 4096;
/// The most pages a leaf of large elements spans (`PendingPage::full_for`): values of about
/// a page then waste at most a sixteenth of their pages, where bbolt's own splits (two
/// elements at least per page) spend half a page on each.
const LARGE_LEAF_PAGES: usize = 16;

/// Streams buckets and their keys, in key order, into a new bbolt file.
///
/// Leaf pages are written as they fill (to the page size; leaves of values a quarter page
/// or larger to up to 16 pages, with overflow pages); each level of branch pages keeps one
/// pending page and is written bottom-up as it fills. Memory is about one page per tree
/// level plus the largest leaf (16 pages, or one larger element), however many keys go in
/// (and, until `finish`, the value of each small bucket kept inline, at most a quarter page
/// each). Pages 0 and 1 (the metas) are
/// written last, by seeking back, so an unfinished file is not a valid bbolt file. After
/// an I/O error the output is of no use; a refused key or bucket changes nothing.
pub struct Writer<W: Write + Seek> {
    out: W,
    base: u64,
    page_size: usize,
    next_pgid: u64,
    /// Finished buckets: name → value in the root bucket.
    buckets: BTreeMap<Vec<u8>, Vec<u8>>,
    current: Option<(Vec<u8>, Tree)>,
    keys: u64,
    scratch: Vec<u8>,
}

/// What [`Writer::finish`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Bytes written: `pages × page_size`, or 4 KiB if that is less (bbolt refuses
    /// shorter files; the padding lies past the last page).
    pub file_size: u64,
    /// The high-water mark: pages in the file, the two metas included.
    pub pages: u64,
    pub page_size: u32,
    pub buckets: usize,
    pub keys: u64,
    /// The txid of the newer meta page.
    pub txid: u64,
}

impl<W: Write + Seek> Writer<W> {
    /// Starts a file at `out`'s current position. `page_size` must be a power of two
    /// from 512 to 1 MiB (bbolt uses the OS page size, 4096 on most machines).
    pub fn create(mut out: W, page_size: u32) -> io::Result<Writer<W>> {
        if !page_size.is_power_of_two() || !(512..=1 << 20).contains(&page_size) {
            return Err(invalid_input(format!(
                "page size {page_size} is not a power of two from 512 to 1 MiB"
            )));
        }
        let base = out.stream_position()?;
        let page_size = page_size as usize;
        // Placeholders for the metas, written by finish.
        out.write_all(&vec![0u8; 2 * page_size])?;
        Ok(Writer {
            out,
            base,
            page_size,
            next_pgid: 2,
            buckets: BTreeMap::new(),
            current: None,
            keys: 0,
            scratch: Vec::new(),
        })
    }

    /// Starts the top-level bucket `name`, ending the one before. Buckets may come in any
    /// order; a name already used is an error.
    pub fn begin_bucket(&mut self, name: &[u8]) -> io::Result<()> {
        check_key(name)?;
        let dup =
            self.buckets.contains_key(name) || matches!(&self.current, Some((n, _)) if n == name);
        if dup {
            return Err(invalid_input(format!(
                "bucket {} written twice",
                show(name)
            )));
        }
        self.end_bucket()?;
        self.current = Some((name.to_vec(), Tree::new()));
        Ok(())
    }

    /// Adds a key to the current bucket; keys must be strictly increasing (byte order)
    /// within a bucket.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let Some((_, tree)) = &mut self.current else {
            return Err(invalid_input("put before begin_bucket"));
        };
        check_key(key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(invalid_input(format!(
                "value of {} bytes is larger than bbolt allows",
                value.len()
            )));
        }
        if tree.count > 0 && key <= tree.last_key.as_slice() {
            return Err(invalid_input(format!(
                "key {} is not after the previous key {}",
                show(key),
                show(&tree.last_key)
            )));
        }
        let mut io = PageOut {
            out: &mut self.out,
            page_size: self.page_size,
            next_pgid: &mut self.next_pgid,
            scratch: &mut self.scratch,
        };
        tree.add(&mut io, key, value, 0)?;
        tree.last_key.clear();
        tree.last_key.extend_from_slice(key);
        self.keys += 1;
        Ok(())
    }

    fn end_bucket(&mut self) -> io::Result<()> {
        if let Some((name, tree)) = self.current.take() {
            let mut io = PageOut {
                out: &mut self.out,
                page_size: self.page_size,
                next_pgid: &mut self.next_pgid,
                scratch: &mut self.scratch,
            };
            let value = match tree.finish(&mut io, false)? {
                Root::Page(pgid) => {
                    let mut v = pgid.to_le_bytes().to_vec();
                    v.extend_from_slice(&0u64.to_le_bytes());
                    v
                }
                Root::Inline(v) => v,
            };
            self.buckets.insert(name, value);
        }
        Ok(())
    }

    /// Ends the last bucket, writes the root bucket, an empty freelist and the two meta
    /// pages, and flushes.
    pub fn finish(self) -> io::Result<Summary> {
        Ok(self.finish_into_inner()?.0)
    }

    /// As [`Writer::finish`], and gives back the output (to sync a file, say).
    pub fn finish_into_inner(mut self) -> io::Result<(Summary, W)> {
        self.end_bucket()?;
        let mut io = PageOut {
            out: &mut self.out,
            page_size: self.page_size,
            next_pgid: &mut self.next_pgid,
            scratch: &mut self.scratch,
        };
        // The root bucket: one element per bucket, flagged as a bucket, its value the
        // bucket header (root pgid, sequence), then the page of an inline bucket.
        let mut root = Tree::new();
        for (name, value) in &self.buckets {
            root.add(&mut io, name, value, BUCKET_LEAF_FLAG)?;
        }
        let Root::Page(root_pgid) = root.finish(&mut io, true)? else {
            unreachable!("the root bucket is never inline")
        };

        // An empty freelist: every page below the high-water mark is in use.
        let freelist = io.write(|buf, pgid| {
            buf.resize(PAGE_HEADER_SIZE, 0);
            put_page_header(buf, pgid, FREELIST_PAGE, 0, 0);
        })?;
        let pages = self.next_pgid;

        let ps = self.page_size;
        let mut meta = Meta {
            page_size: ps as u32,
            flags: 0,
            root: root_pgid,
            sequence: 0,
            freelist,
            pgid: pages,
            txid: 0,
        };
        // bbolt writes txid t to meta page t % 2 and reads the valid one with the
        // higher txid: page 1 (txid 1) is the current one.
        let mut page = vec![0u8; 2 * ps];
        for (i, chunk) in page.chunks_mut(ps).enumerate() {
            meta.txid = i as u64;
            put_page_header(chunk, i as u64, META_PAGE, 0, 0);
            chunk[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + META_SIZE].copy_from_slice(&meta.encode());
        }
        self.out.flush()?;
        self.out.seek(SeekFrom::Start(self.base))?;
        self.out.write_all(&page)?;
        let mut file_size = pages * ps as u64;
        self.out.seek(SeekFrom::Start(self.base + file_size))?;
        if file_size < MIN_FILE_SIZE {
            // bbolt reads the first 4 KiB when it opens a file and refuses a shorter one:
            // pad small files (past the high-water mark, where nothing is read).
            self.out
                .write_all(&vec![0u8; (MIN_FILE_SIZE - file_size) as usize])?;
            file_size = MIN_FILE_SIZE;
        }
        self.out.flush()?;
        let summary = Summary {
            file_size,
            pages,
            page_size: ps as u32,
            buckets: self.buckets.len(),
            keys: self.keys,
            txid: 1,
        };
        Ok((summary, self.out))
    }
}

/// A key for an error message: quoted, its first 64 bytes.
fn show(key: &[u8]) -> String {
    let more = if key.len() > 64 { "…" } else { "" };
    format!(
        "{:?}{more}",
        String::from_utf8_lossy(&key[..key.len().min(64)])
    )
}

fn check_key(key: &[u8]) -> io::Result<()> {
    if key.is_empty() {
        return Err(invalid_input("empty key or bucket name"));
    }
    if key.len() > MAX_KEY_SIZE {
        return Err(invalid_input(format!(
            "key of {} bytes is larger than bbolt allows ({MAX_KEY_SIZE})",
            key.len()
        )));
    }
    Ok(())
}

/// Where pages go: sequentially, from pgid `next_pgid` on.
struct PageOut<'a, W: Write> {
    out: &'a mut W,
    page_size: usize,
    next_pgid: &'a mut u64,
    scratch: &'a mut Vec<u8>,
}

impl<W: Write> PageOut<'_, W> {
    /// Writes the page `render(buf, pgid)` appends to `buf`, padded to whole pages, its
    /// header's overflow count set to the pages past the first; returns its pgid.
    fn write(&mut self, render: impl FnOnce(&mut Vec<u8>, u64)) -> io::Result<u64> {
        let pgid = *self.next_pgid;
        let buf = &mut *self.scratch;
        buf.clear();
        render(buf, pgid);
        let npages = buf.len().div_ceil(self.page_size).max(1);
        buf.resize(npages * self.page_size, 0);
        buf[12..16].copy_from_slice(&((npages - 1) as u32).to_le_bytes());
        self.out.write_all(buf)?;
        if buf.capacity() > 2 * LARGE_LEAF_PAGES * self.page_size {
            // Let go of the room a value larger than a leaf of large values took.
            *buf = Vec::new();
        }
        *self.next_pgid += npages as u64;
        Ok(pgid)
    }
}

/// One page being filled: its elements (16 bytes each; `pos` holds the offset into
/// `data` until the page is written) and their keys and values.
struct PendingPage {
    leaf: bool,
    count: usize,
    elements: Vec<u8>,
    data: Vec<u8>,
    first_key: Vec<u8>,
}

impl PendingPage {
    fn new(leaf: bool) -> PendingPage {
        PendingPage {
            leaf,
            count: 0,
            elements: Vec::new(),
            data: Vec::new(),
            first_key: Vec::new(),
        }
    }

    fn size(&self) -> usize {
        PAGE_HEADER_SIZE + self.elements.len() + self.data.len()
    }

    /// Whether an element of `kv` key and value bytes must go on the next page. A branch
    /// page takes at least two elements (overflowing if its keys are large), so each level
    /// has fewer pages than the one below and the tree ends in one root.
    ///
    /// A leaf grows past one page, up to `LARGE_LEAF_PAGES`, when an element a quarter page
    /// or larger comes (a value just over a page would otherwise take two pages alone, half
    /// of them empty); small elements after it join it until it is full. Leaves of small
    /// elements only stay within one page, as bbolt's.
    fn full_for(&self, kv: usize, page_size: usize) -> bool {
        let least = if self.leaf { 1 } else { 2 };
        if self.count < least {
            return false;
        }
        if self.count >= MAX_PAGE_ELEMENTS {
            return true;
        }
        let size = self.size() + ELEMENT_SIZE + kv;
        if size <= page_size {
            return false;
        }
        let large = ELEMENT_SIZE + kv >= page_size / 4 || self.size() > page_size;
        !(self.leaf && large && size <= LARGE_LEAF_PAGES * page_size)
    }

    fn push(&mut self, flags: u32, key: &[u8], value: &[u8], pgid: u64) {
        if self.count == 0 {
            self.first_key.clear();
            self.first_key.extend_from_slice(key);
        }
        let off = self.data.len() as u32;
        let e = &mut self.elements;
        if self.leaf {
            e.extend_from_slice(&flags.to_le_bytes());
            e.extend_from_slice(&off.to_le_bytes());
            e.extend_from_slice(&(key.len() as u32).to_le_bytes());
            e.extend_from_slice(&(value.len() as u32).to_le_bytes());
        } else {
            e.extend_from_slice(&off.to_le_bytes());
            e.extend_from_slice(&(key.len() as u32).to_le_bytes());
            e.extend_from_slice(&pgid.to_le_bytes());
        }
        self.data.extend_from_slice(key);
        self.data.extend_from_slice(value);
        self.count += 1;
    }

    /// Appends the page to `out` (header, elements, data; no padding), as page `id`.
    fn render(&self, out: &mut Vec<u8>, id: u64) {
        let start = out.len();
        out.resize(start + PAGE_HEADER_SIZE, 0);
        let flags = if self.leaf { LEAF_PAGE } else { BRANCH_PAGE };
        put_page_header(&mut out[start..], id, flags, self.count as u16, 0);
        // pos is relative to the element itself: element i is (count - i) elements
        // before the start of the data.
        let pos_at = if self.leaf { 4 } else { 0 };
        for i in 0..self.count {
            let e = &self.elements[i * ELEMENT_SIZE..(i + 1) * ELEMENT_SIZE];
            let off = u32_at(e, pos_at);
            let pos = ((self.count - i) * ELEMENT_SIZE) as u32 + off;
            out.extend_from_slice(&e[..pos_at]);
            out.extend_from_slice(&pos.to_le_bytes());
            out.extend_from_slice(&e[pos_at + 4..]);
        }
        out.extend_from_slice(&self.data);
    }

    /// Writes the page and empties it; returns (its first key, its pgid).
    fn flush<W: Write>(&mut self, io: &mut PageOut<'_, W>) -> io::Result<(Vec<u8>, u64)> {
        let pgid = io.write(|buf, pgid| self.render(buf, pgid))?;
        self.count = 0;
        self.elements.clear();
        self.data.clear();
        if self.data.capacity() > 2 * LARGE_LEAF_PAGES * io.page_size {
            // Let go of the room a value larger than a leaf of large values took.
            self.data = Vec::new();
        }
        Ok((std::mem::take(&mut self.first_key), pgid))
    }
}

enum Root {
    Page(u64),
    /// The value of an inline bucket: header (root 0, sequence 0) and its leaf page.
    Inline(Vec<u8>),
}

/// A bucket's B+tree being bulk-loaded: the leaf being filled and one pending branch
/// page per level above it.
struct Tree {
    leaf: PendingPage,
    branches: Vec<PendingPage>,
    count: u64,
    last_key: Vec<u8>,
}

impl Tree {
    fn new() -> Tree {
        Tree {
            leaf: PendingPage::new(true),
            branches: Vec::new(),
            count: 0,
            last_key: Vec::new(),
        }
    }

    fn add<W: Write>(
        &mut self,
        io: &mut PageOut<'_, W>,
        key: &[u8],
        value: &[u8],
        flags: u32,
    ) -> io::Result<()> {
        if self.leaf.full_for(key.len() + value.len(), io.page_size) {
            let (first, pgid) = self.leaf.flush(io)?;
            self.push_branch(io, 0, &first, pgid)?;
        }
        self.leaf.push(flags, key, value, 0);
        self.count += 1;
        Ok(())
    }

    /// Adds (first key, pgid) of a written child to the branch page at `level`, writing
    /// that page first when it is full.
    fn push_branch<W: Write>(
        &mut self,
        io: &mut PageOut<'_, W>,
        level: usize,
        key: &[u8],
        pgid: u64,
    ) -> io::Result<()> {
        if self.branches.len() == level {
            self.branches.push(PendingPage::new(false));
        }
        if self.branches[level].full_for(key.len(), io.page_size) {
            let (first, child) = self.branches[level].flush(io)?;
            self.push_branch(io, level + 1, &first, child)?;
        }
        self.branches[level].push(0, key, &[], pgid);
        Ok(())
    }

    /// Writes what is pending, bottom-up; returns the root. Unless `root_bucket`, a tree
    /// of one leaf no larger than a quarter page is kept inline, as bbolt keeps it.
    fn finish<W: Write>(mut self, io: &mut PageOut<'_, W>, root_bucket: bool) -> io::Result<Root> {
        if !root_bucket && self.branches.is_empty() && self.leaf.size() <= io.page_size / 4 {
            let mut value = vec![0u8; BUCKET_HEADER_SIZE];
            self.leaf.render(&mut value, 0);
            return Ok(Root::Inline(value));
        }
        let (first, pgid) = self.leaf.flush(io)?;
        if self.branches.is_empty() {
            return Ok(Root::Page(pgid));
        }
        self.push_branch(io, 0, &first, pgid)?;
        let mut level = 0;
        loop {
            let top = level + 1 == self.branches.len();
            if top && self.branches[level].count == 1 {
                return Ok(Root::Page(self.branches[level].child_of_only()));
            }
            let (first, pgid) = self.branches[level].flush(io)?;
            self.push_branch(io, level + 1, &first, pgid)?;
            level += 1;
        }
    }
}

impl PendingPage {
    /// The pgid of a branch page's only element.
    fn child_of_only(&self) -> u64 {
        u64_at(&self.elements, 8)
    }
}
