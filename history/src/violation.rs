//! What the event-log and watch checks report: one `Violation` per broken guarantee, with
//! where it was seen and what was expected.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ViolationKind {
    // The store's event log against the history.
    /// Event revisions decrease.
    LogRevisionOrder,
    /// A revision between 2 and the last one has no event.
    LogRevisionGap,
    /// An event contradicts the log before it (e.g. version or create revision, a delete of
    /// an absent key).
    LogInconsistent,
    /// An acknowledged write is missing from the log (or at another revision).
    LostWrite,
    /// A put event whose value no operation wrote, or only a `Failed` one.
    PhantomWrite,
    /// One value in more than one put event.
    DuplicatedWrite,
    /// The events of one revision come from more than one operation.
    NonAtomicRevision,
    // Watches against the event log.
    /// Event revisions decrease along a watch.
    WatchOrder,
    /// One (key, mod revision) event delivered twice on a watch.
    WatchDuplicate,
    /// The events of one revision in the watched range split over responses.
    WatchAtomicity,
    /// A stream skipped events of the log in its range.
    WatchGap,
    /// A delivered event is not the log's (absent, different, or outside the range).
    WatchUnexpectedEvent,
    /// A resumed stream does not continue where the watch stopped.
    WatchResume,
    /// An event's `prev_kv` is not the key's state before it.
    WatchPrevKv,
    /// A progress notification came before events it claims were delivered, or events at or
    /// below its revision came after it.
    WatchProgress,
    /// Events after a canceled response.
    WatchAfterCancel,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    /// For watch violations: the watch's index in the slice given, its stream and response.
    pub watch: Option<usize>,
    pub stream: Option<usize>,
    pub response: Option<usize>,
    /// What was expected and what was seen.
    pub detail: String,
}

impl Violation {
    pub(crate) fn log(kind: ViolationKind, detail: String) -> Self {
        Violation {
            kind,
            watch: None,
            stream: None,
            response: None,
            detail,
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.kind)?;
        if let Some(w) = self.watch {
            write!(f, " (watch {w}")?;
            if let Some(s) = self.stream {
                write!(f, ", stream {s}")?;
            }
            if let Some(r) = self.response {
                write!(f, ", response {r}")?;
            }
            write!(f, ")")?;
        }
        write!(f, ": {}", self.detail)
    }
}
