//! Cairn: an etcd-v3-compatible, Raft-replicated key-value store.
//!
//! A request flows one way through the modules:
//!
//! ```text
//! client ─▶ api ─(write)─▶ node::proposer ─▶ raft (log in storage) ─▶ raft::state_machine
//!            │  ▲                                                       │        │
//!            │  └─(watch streams)── watch ◀──(each commit's changes)────┘        │
//!            └─(read, after node::read_barrier)──▶ apply ◀──────────────────────┘
//!                                                   │
//!                                          mvcc, lease ─▶ storage (RocksDB)
//! ```
//!
//! - [`config`]: etcd's flags, `ETCD_*` variables and YAML config file.
//! - [`feature_gates`]: etcd 3.7's `--feature-gates`, and which Cairn can honour.
//! - [`cluster`]: member and cluster IDs, derived as etcd derives them.
//! - [`api`]: the gRPC services; validates and translates, nothing more.
//! - [`node`]: a running member; batches writes into Raft proposals, serves read barriers.
//! - [`peer`]: the peer API's server: Raft's messages, and requests followers forward.
//! - [`tls`]: TLS on the client and peer ports: certificates, handshakes, auto TLS.
//! - [`net`]: connection plumbing: replies coalesced into fewer writes.
//! - [`raft`]: openraft's log store, state machine and networking on RocksDB.
//! - [`apply`]: etcd's request semantics (Range, Put, DeleteRange, Txn, Compact).
//! - [`auto_compaction`]: `--auto-compaction-*`, proposed through Raft like any compaction.
//! - [`watch`]: watchers, told of each commit in revision order, caught up from history.
//! - [`lease`]: leases, their attached keys and (on the leader) their expiry.
//! - [`members`]: the name and client URLs each member publishes.
//! - [`mvcc`]: revisions, the key index, history and compaction.
//! - [`storage`]: the RocksDB instance, typed handles on its column families, snapshot files.
//! - [`error`]: etcd's error codes and messages.
//! - [`failpoints`]: named fault-injection points for tests (cargo feature `failpoints`).
//! - `fuzzing`: the checks the fuzz targets in `fuzz/` call (cargo feature `fuzzing`).

pub mod api;
pub mod apply;
pub mod auto_compaction;
pub mod cluster;
pub mod config;
pub mod error;
pub mod failpoints;
pub mod feature_gates;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod lease;
pub mod members;
pub mod mvcc;
pub mod net;
pub mod peer;
pub mod proto;
pub mod raft;
pub mod server;
pub mod storage;
pub mod watch;
