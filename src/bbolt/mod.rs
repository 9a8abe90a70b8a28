//! bbolt database files, the format of etcd's backend and of its snapshots: a [`Reader`]
//! that lists the buckets of a file and walks a bucket's keys in order, reading pages on
//! demand, and a [`Writer`] that bulk-loads buckets of sorted keys into a new file in one
//! streaming pass (or two, for an output that cannot seek: `unseekable`). Memory is a few
//! pages either way (a leaf of large values: up to 16), however large the file.
//!
//! This module owns the file format only; it calls nothing else in Cairn.

mod format;
mod reader;
mod unseekable;
mod writer;

pub use reader::{BucketInfo, Entries, Entry, Reader};
pub use unseekable::{FirstPass, Measured, SecondPass};
pub use writer::{Summary, Writer};
