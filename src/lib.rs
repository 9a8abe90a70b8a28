//! Cairn: an etcd-v3-compatible, Raft-replicated key-value store.
//!
//! A request flows one way, down the layers; each module's doc says what it may call, and
//! `tests/layers.rs` checks that it calls nothing else and nothing above it.
//!
//! ```text
//!  client (gRPC)          other members (peer API)
//!       │                        │
//!      api                      peer                 check the request, call the server
//!       └──────────┬─────────────┘
//!               server         who may call what, routing to the leader, read barrier,
//!                  │           proposals batched into Raft entries, apply-wait
//!                raft          openraft: log in storage, replication, state machine
//!                  │
//!                apply         etcd's semantics of Range, Put, DeleteRange, Txn, Compact,
//!                  │           Auth; who may run which request
//!  mvcc, lease, auth, alarms, members ──▶ watch (each commit's changes, to the watchers)
//!                  │
//!               storage        RocksDB, one typed handle per column family
//! ```
//!
//! Client API:
//! - [`api`]: etcd's gRPC services, gRPC health and reflection; checks and translates.
//! - [`peer`]: the peer API's server: Raft's messages, and requests followers forward.
//!
//! Command line: [`snapshot_cli`]: `cairn snapshot restore|status`, etcdutl's commands.
//!
//! Server:
//! - [`server`]: a running member and the one place every request passes.
//! - [`auto_compaction`]: `--auto-compaction-*`, compaction requests to the server.
//!
//! Consensus and state:
//! - [`raft`]: openraft's log store, state machine and networking on RocksDB.
//! - [`apply`]: etcd's request semantics (Range, Put, DeleteRange, Txn, Compact).
//! - [`watch`]: watchers, told of each commit in revision order, caught up from history.
//! - [`lease`]: leases, their attached keys, their expiry (on the leader) and revocation.
//! - [`auth`]: users, roles, key-range permissions, password hashes and tokens.
//! - [`alarms`]: the alarms raised (NOSPACE, CORRUPT), the same on every member.
//! - [`members`]: the name and client URLs each member publishes.
//! - [`mvcc`]: revisions, the key index, history and compaction.
//! - [`etcd_backend`]: etcd's bbolt layout: Cairn's state as an etcd snapshot, and back.
//! - [`storage`]: the RocksDB instance, typed handles on its column families, snapshot files.
//!
//! Start-up and plumbing:
//! - [`config`]: etcd's flags, `ETCD_*` variables and YAML config file.
//! - [`feature_gates`]: etcd 3.7's `--feature-gates`, and which Cairn can honour.
//! - [`etcd_data`]: a stopped etcd member's Raft state (WAL, .snap files) and its log entries as Cairn's requests.
//! - [`cluster`]: member and cluster IDs, derived as etcd derives them; etcd's URL spelling.
//! - [`net`]: listeners, TLS on both ports and to peers, replies coalesced into fewer writes.
//! - [`metrics`]: Prometheus metrics under etcd's names, one registry per member.
//! - [`bbolt`]: bbolt files (etcd's backend and snapshots), read page by page, bulk-written.
//!
//! Shared by all: [`proto`] (the wire messages), [`error`] (etcd's error codes and
//! messages), [`failpoints`] (named fault-injection points for tests, cargo feature
//! `failpoints`), [`telemetry`] (logs, and the OpenTelemetry spans of client requests with
//! `--enable-distributed-tracing`). `fuzzing`: the checks the fuzz targets in `fuzz/` call (cargo feature
//! `fuzzing`).

pub mod alarms;
pub mod api;
pub mod apply;
pub mod auth;
pub mod auto_compaction;
pub mod bbolt;
pub mod cluster;
pub mod config;
pub mod crc32c;
pub mod error;
pub mod etcd_backend;
pub mod etcd_data;
pub mod failpoints;
pub mod feature_gates;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod lease;
pub mod members;
pub mod metrics;
pub mod mvcc;
pub mod net;
pub mod peer;
pub mod proto;
pub mod raft;
pub mod server;
pub mod snapshot_cli;
pub mod storage;
pub mod telemetry;
pub mod watch;
