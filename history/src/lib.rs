//! Histories of client operations against an etcd-compatible store, and the checks Cairn's
//! robustness suite runs on them.
//!
//! - `Operation`: one client call with its invocation and completion time and its outcome:
//!   `Ok` with the response, `Failed` (definitely not applied), or `Unknown` (a timeout or a
//!   lost connection: it may take effect at any point after its invocation, or never).
//! - `check_linearizable`: whether a history of KV and lease operations has a linearization
//!   under etcd's KV model, revisions included.
//! - `patch_with_event_log` and `check_history`: resolve `Unknown` writes from the store's
//!   event log (as etcd's robustness suite does), then check linearizability.
//! - `check_event_log`: the store's event log against the history (no lost, phantom or
//!   duplicated write; revisions without gaps).
//! - `check_watches`: etcd's watch guarantees, each watch against the store's event log.
//!
//! Knows nothing of gRPC or of any client library: the recorder translates into these types.

mod event_log;
mod linearizability;
mod model;
mod patch;
mod violation;
mod watch;

pub use event_log::check_event_log;
pub use linearizability::{
    check_linearizable, describe_operation, BlockedOperation, LinearizabilityResult,
    NotLinearizableReport,
};
pub use patch::{check_history, patch_with_event_log};
pub use violation::{Violation, ViolationKind};
pub use watch::check_watches;

use serde::{Deserialize, Serialize};

/// A request, as the model understands it. Keys and values are strings; the recorder makes
/// every put's value unique within a history, which the checks may rely on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Request {
    /// A linearizable read of one key.
    Get {
        key: String,
    },
    /// `lease_id` 0 is no lease.
    Put {
        key: String,
        value: String,
        lease_id: i64,
    },
    /// A delete of one key.
    Delete {
        key: String,
    },
    Txn {
        compares: Vec<Compare>,
        on_success: Vec<TxnOp>,
        on_failure: Vec<TxnOp>,
    },
    /// A grant with an ID the client chose.
    LeaseGrant {
        lease_id: i64,
    },
    LeaseRevoke {
        lease_id: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxnOp {
    Get {
        key: String,
    },
    Put {
        key: String,
        value: String,
        lease_id: i64,
    },
    Delete {
        key: String,
    },
}

/// An equality compare on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Compare {
    pub key: String,
    pub target: CompareTarget,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The key's value equals this; `None`: the key does not exist (etcd: version == 0).
    Value(Option<String>),
    /// The key's mod revision equals this (0: the key does not exist).
    ModRevision(i64),
}

/// A key's state as a response reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyValue {
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    /// 0 is no lease.
    pub lease_id: i64,
}

/// A successful response. Every `revision` is the response header's: the store's revision
/// after the request (after its write, if it wrote).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Response {
    Get {
        revision: i64,
        kv: Option<KeyValue>,
    },
    Put {
        revision: i64,
    },
    Delete {
        revision: i64,
        deleted: i64,
    },
    Txn {
        revision: i64,
        succeeded: bool,
        results: Vec<TxnOpResult>,
    },
    LeaseGrant {
        revision: i64,
    },
    LeaseRevoke {
        revision: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TxnOpResult {
    Get { kv: Option<KeyValue> },
    Put,
    Delete { deleted: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    Ok(Response),
    /// Definitely not applied (the server said so before it could have applied it).
    Failed(String),
    /// May have been applied at any point after the invocation, or never.
    Unknown(String),
}

/// One client call. Times are nanoseconds since the history's start, from one monotonic
/// clock shared by all clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub client: u32,
    pub call_ns: u64,
    /// When the client saw the outcome (for `Unknown`: when it gave up).
    pub return_ns: u64,
    pub request: Request,
    pub outcome: Outcome,
}

/// One event of a watch response, or of the store's event log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Event {
    pub key: String,
    /// `None` for a delete.
    pub value: Option<String>,
    /// The revision of the write (a delete's revision for a delete).
    pub mod_revision: i64,
    pub create_revision: i64,
    pub version: i64,
    pub lease_id: i64,
    /// The key's previous state, when the watch asked for it and the key existed.
    pub prev_kv: Option<KeyValue>,
}

/// One response on a watch stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResponse {
    /// When the client received it, as `Operation` times.
    pub received_ns: u64,
    pub header_revision: i64,
    pub events: Vec<Event>,
    /// Set when the server canceled the watch because its start revision was compacted.
    pub compact_revision: i64,
    pub canceled: bool,
}

/// Everything one watch (one watch ID, possibly resumed on a new stream) received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchHistory {
    pub client: u32,
    /// Keys from `key` up to `range_end` (exclusive); an empty `range_end` is the one key.
    pub key: String,
    pub range_end: String,
    /// The revision the watch (its first stream) started from.
    pub start_revision: i64,
    pub prev_kv: bool,
    pub progress_notify: bool,
    /// Each stream's responses in order; a resumed watch starts a new stream from the
    /// revision after the last event it saw.
    pub streams: Vec<WatchStream>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchStream {
    pub start_revision: i64,
    pub responses: Vec<WatchResponse>,
}
