//! Writing a file to an output that cannot seek back (a network stream): the [`Writer`]
//! writes the two meta pages last, at the start of the file, once it knows the root and
//! the high-water mark. So the same keys are written twice: first into a [`FirstPass`],
//! which keeps nothing but those two pages, then into a [`SecondPass`], which passes the
//! file on in order with the measured metas in their place, and checks that the second
//! pass wrote the same ones. No file, and memory for two pages.
//!
//! [`Writer`]: super::Writer

use std::io::{self, Seek, SeekFrom, Write};

/// The first pass: counts the bytes and keeps the metas.
pub struct FirstPass {
    head: Vec<u8>,
    pos: u64,
    len: u64,
    wanted: Box<dyn Fn() -> bool + Send>,
    ask_at: u64,
}

/// How often a first pass asks whether its file is still wanted.
const ASK_EVERY_BYTES: u64 = 1 << 20;

/// What a [`FirstPass`] found: the file's two meta pages and its size.
pub struct Measured {
    head: Vec<u8>,
    len: u64,
}

/// The second pass: the file, in order, to `out`, its first bytes replaced by the metas
/// of the first pass.
pub struct SecondPass<W: Write> {
    out: W,
    head: Vec<u8>,
    pos: u64,
    sent: u64,
    len: u64,
}

impl FirstPass {
    /// For a file of `page_size` pages (the metas are its first two).
    pub fn new(page_size: u32) -> FirstPass {
        FirstPass {
            head: vec![0; 2 * page_size as usize],
            pos: 0,
            len: 0,
            wanted: Box::new(|| true),
            ask_at: ASK_EVERY_BYTES,
        }
    }

    /// Gives up (its writes fail) once `wanted` says the file is no longer wanted, say
    /// because the client that asked for it went away; asked after each MiB.
    pub fn while_wanted(mut self, wanted: impl Fn() -> bool + Send + 'static) -> FirstPass {
        self.wanted = Box::new(wanted);
        self
    }

    pub fn measured(self) -> Measured {
        Measured {
            head: self.head,
            len: self.len,
        }
    }
}

impl Write for FirstPass {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let head_len = self.head.len() as u64;
        if self.pos < head_len {
            let n = (head_len - self.pos).min(buf.len() as u64) as usize;
            let at = self.pos as usize;
            self.head[at..at + n].copy_from_slice(&buf[..n]);
        }
        self.pos += buf.len() as u64;
        self.len = self.len.max(self.pos);
        if self.len >= self.ask_at {
            self.ask_at = self.len + ASK_EVERY_BYTES;
            if !(self.wanted)() {
                // Not ErrorKind::Interrupted: write_all would try again.
                return Err(io::Error::other("the file is no longer wanted"));
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for FirstPass {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = seek_target(to, self.pos, self.len)?;
        Ok(self.pos)
    }
}

impl Measured {
    /// The file's size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<W: Write> SecondPass<W> {
    /// The second pass of the file `measured`, to `out`.
    pub fn new(measured: Measured, out: W) -> SecondPass<W> {
        SecondPass {
            out,
            head: measured.head,
            pos: 0,
            sent: 0,
            len: measured.len,
        }
    }

    /// The output, once the file is whole; an error if this pass wrote a different file
    /// (its metas or its size differ from the first pass's).
    pub fn into_inner(self) -> io::Result<W> {
        if self.sent != self.len {
            return Err(io::Error::other(format!(
                "the second pass wrote {} bytes, the first {}",
                self.sent, self.len
            )));
        }
        Ok(self.out)
    }
}

impl<W: Write> Write for SecondPass<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let head_len = self.head.len() as u64;
        if self.pos < self.sent {
            // Only the metas are written again, over what was sent as the first pass's.
            let end = self.pos + buf.len() as u64;
            if end > head_len || buf != &self.head[self.pos as usize..end as usize] {
                return Err(io::Error::other(
                    "the second pass wrote other metas than the first",
                ));
            }
            self.pos = end;
            return Ok(buf.len());
        }
        debug_assert_eq!(self.pos, self.sent, "seek_target allows no gap");
        if self.sent + buf.len() as u64 > self.len {
            return Err(io::Error::other(
                "the second pass wrote more than the first",
            ));
        }
        if self.pos < head_len {
            let n = (head_len - self.pos).min(buf.len() as u64) as usize;
            let at = self.pos as usize;
            self.out.write_all(&self.head[at..at + n])?;
            self.out.write_all(&buf[n..])?;
        } else {
            self.out.write_all(buf)?;
        }
        self.pos += buf.len() as u64;
        self.sent = self.pos;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // The output decides when to pass on what it holds.
        Ok(())
    }
}

impl<W: Write> Seek for SecondPass<W> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = seek_target(to, self.pos, self.sent)?;
        Ok(self.pos)
    }
}

/// Where a seek lands: anywhere up to the end written so far (a writer that seeks past it
/// would leave a hole neither output can write).
fn seek_target(to: SeekFrom, pos: u64, end: u64) -> io::Result<u64> {
    let target = match to {
        SeekFrom::Start(at) => Some(at),
        SeekFrom::Current(by) => pos.checked_add_signed(by),
        SeekFrom::End(by) => end.checked_add_signed(by),
    };
    match target {
        Some(at) if at <= end => Ok(at),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a seek past the end written",
        )),
    }
}
