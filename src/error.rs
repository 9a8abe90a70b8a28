//! etcd's errors: the gRPC code and exact message text clients match on.
//!
//! Owns the mapping from Cairn's failures to `tonic::Status`. Each variant has a stable
//! number because results of applied Raft entries carry errors as numbers. Calls nothing
//! else in Cairn.

use tonic::{Code, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[repr(u32)]
pub enum EtcdError {
    #[error("etcdserver: key is not provided")]
    EmptyKey = 1,
    #[error("etcdserver: key not found")]
    KeyNotFound = 2,
    #[error("etcdserver: value is provided")]
    ValueProvided = 3,
    #[error("etcdserver: lease is provided")]
    LeaseProvided = 4,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps = 5,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey = 6,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted = 7,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev = 8,
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace = 9,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound = 10,
    #[error("etcdserver: request is too large")]
    RequestTooLarge = 11,
    #[error("etcdserver: too many requests")]
    TooManyRequests = 12,
    #[error("etcdserver: no leader")]
    NoLeader = 13,
    #[error("etcdserver: not leader")]
    NotLeader = 14,
    #[error("etcdserver: server stopped")]
    Stopped = 15,
    #[error("etcdserver: request timed out")]
    Timeout = 16,
    /// This member's data is damaged: a record it must read is unreadable, or a result does
    /// not match its request. Answered to clients; where it happens while applying, the
    /// member halts instead (`apply::apply_request`).
    #[error("etcdserver: corrupt cluster")]
    Corrupt = 17,
    #[error("etcdserver: lease already exists")]
    LeaseExists = 18,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge = 19,
    #[error("etcdserver: rpc not supported for learner")]
    NotSupportedForLearner = 20,
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists = 21,
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls = 22,
    #[error("etcdserver: member not found")]
    MemberNotFound = 23,
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner = 24,
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady = 25,
    #[error("etcdserver: too many learner members in cluster")]
    TooManyLearners = 26,
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee = 27,
    #[error("etcdserver: request timed out, leader transfer took too long")]
    LeaderTransferTimeout = 28,
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist = 29,
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist = 30,
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist = 31,
    #[error("etcdserver: user name is empty")]
    UserEmpty = 32,
    #[error("etcdserver: user name not found")]
    UserNotFound = 33,
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist = 34,
    #[error("etcdserver: role name not found")]
    RoleNotFound = 35,
    #[error("etcdserver: role name is empty")]
    RoleEmpty = 36,
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed = 37,
    #[error("etcdserver: permission denied")]
    PermissionDenied = 38,
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted = 39,
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted = 40,
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled = 41,
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken = 42,
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt = 43,
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision = 44,
    /// etcd has no gRPC error for it: its text reaches clients as is, with code Unknown.
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser = 45,
    /// etcd 3.5's answer to a permission grant without a permission.
    #[error("etcdserver: permission not given")]
    PermissionNotGiven = 46,
    /// The lease of a Lock's key ran out while it waited (etcd's mutex error, code Unknown).
    #[error("mutex: session is expired")]
    SessionExpired = 47,
    /// Proclaim by a caller that no longer holds the leader key (code Unknown, as etcd).
    #[error("election: not leader")]
    ElectionNotLeader = 48,
    /// Leader of an election nobody holds (code Unknown, as etcd).
    #[error("election: no leader")]
    ElectionNoLeader = 49,
    /// Proclaim or Resign without a leader key (code Unknown, as etcd).
    #[error("\"leader\" field must be provided")]
    MissingLeaderKey = 50,
    #[error("etcdserver: wrong downgrade target version format")]
    WrongDowngradeVersionFormat = 51,
    #[error("etcdserver: invalid downgrade target version")]
    InvalidDowngradeTargetVersion = 52,
    /// A Downgrade action etcd does not know (code Unknown, as etcd).
    #[error("etcdserver: unknown method")]
    UnknownMethod = 53,
    /// etcd 3.7's RangeStream serves only key order.
    #[error("RangeStream does not support custom sort orders")]
    StreamSortOrder = 54,
    #[error("RangeStream does not support revision filters")]
    StreamRevisionFilters = 55,
    /// A sort order or target etcd does not know (etcd 3.5 on).
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption = 56,
    /// Downgrade before the cluster version is decided (code FailedPrecondition, as etcd).
    #[error("etcdserver: cluster version not found during downgrade")]
    ClusterVersionUnavailable = 57,
    #[error("etcdserver: cluster has a downgrade job in progress")]
    DowngradeInProcess = 58,
    /// A write refused while a CORRUPT alarm is raised: etcd's answer, the same text as
    /// `Corrupt`, but about the cluster's alarm, not this member's data.
    #[error("etcdserver: corrupt cluster")]
    CorruptAlarm = 59,
    /// Maintenance.Snapshot could not write its file (the member's log says why); etcd
    /// answers its I/O error's text, code Unknown.
    #[error("cairn: the snapshot could not be written; see the member's log")]
    SnapshotFailed = 60,
    /// A write refused because the disk of this member's data directory is (nearly) full:
    /// Cairn's own, as etcd has no such check (code ResourceExhausted, as etcd's `database
    /// space exceeded`, which is about the quota instead).
    #[error("etcdserver: no space left on the member's disk")]
    DiskFull = 61,
}

impl EtcdError {
    const ALL: [EtcdError; 61] = [
        EtcdError::EmptyKey,
        EtcdError::KeyNotFound,
        EtcdError::ValueProvided,
        EtcdError::LeaseProvided,
        EtcdError::TooManyOps,
        EtcdError::DuplicateKey,
        EtcdError::Compacted,
        EtcdError::FutureRev,
        EtcdError::NoSpace,
        EtcdError::LeaseNotFound,
        EtcdError::RequestTooLarge,
        EtcdError::TooManyRequests,
        EtcdError::NoLeader,
        EtcdError::NotLeader,
        EtcdError::Stopped,
        EtcdError::Timeout,
        EtcdError::Corrupt,
        EtcdError::LeaseExists,
        EtcdError::LeaseTtlTooLarge,
        EtcdError::NotSupportedForLearner,
        EtcdError::PeerUrlExists,
        EtcdError::MemberBadUrls,
        EtcdError::MemberNotFound,
        EtcdError::MemberNotLearner,
        EtcdError::LearnerNotReady,
        EtcdError::TooManyLearners,
        EtcdError::BadLeaderTransferee,
        EtcdError::LeaderTransferTimeout,
        EtcdError::RootUserNotExist,
        EtcdError::RootRoleNotExist,
        EtcdError::UserAlreadyExist,
        EtcdError::UserEmpty,
        EtcdError::UserNotFound,
        EtcdError::RoleAlreadyExist,
        EtcdError::RoleNotFound,
        EtcdError::RoleEmpty,
        EtcdError::AuthFailed,
        EtcdError::PermissionDenied,
        EtcdError::RoleNotGranted,
        EtcdError::PermissionNotGranted,
        EtcdError::AuthNotEnabled,
        EtcdError::InvalidAuthToken,
        EtcdError::InvalidAuthMgmt,
        EtcdError::AuthOldRevision,
        EtcdError::NoPasswordUser,
        EtcdError::PermissionNotGiven,
        EtcdError::SessionExpired,
        EtcdError::ElectionNotLeader,
        EtcdError::ElectionNoLeader,
        EtcdError::MissingLeaderKey,
        EtcdError::WrongDowngradeVersionFormat,
        EtcdError::InvalidDowngradeTargetVersion,
        EtcdError::UnknownMethod,
        EtcdError::StreamSortOrder,
        EtcdError::StreamRevisionFilters,
        EtcdError::InvalidSortOption,
        EtcdError::ClusterVersionUnavailable,
        EtcdError::DowngradeInProcess,
        EtcdError::CorruptAlarm,
        EtcdError::SnapshotFailed,
        EtcdError::DiskFull,
    ];

    pub fn code(self) -> Code {
        use EtcdError::*;
        match self {
            EmptyKey | KeyNotFound | ValueProvided | LeaseProvided | TooManyOps | DuplicateKey
            | RequestTooLarge | MemberBadUrls | UserEmpty | RoleEmpty | AuthFailed
            | InvalidAuthMgmt | AuthOldRevision | PermissionNotGiven => Code::InvalidArgument,
            WrongDowngradeVersionFormat | InvalidDowngradeTargetVersion | InvalidSortOption => {
                Code::InvalidArgument
            }
            UnknownMethod | SnapshotFailed => Code::Unknown,
            StreamSortOrder | StreamRevisionFilters => Code::Unimplemented,
            ClusterVersionUnavailable | DowngradeInProcess => Code::FailedPrecondition,
            Compacted | FutureRev | LeaseTtlTooLarge => Code::OutOfRange,
            NoSpace | TooManyRequests | DiskFull => Code::ResourceExhausted,
            LeaseNotFound | MemberNotFound => Code::NotFound,
            NotLeader | LeaseExists | PeerUrlExists | MemberNotLearner | LearnerNotReady
            | TooManyLearners | BadLeaderTransferee | RootUserNotExist | RootRoleNotExist
            | UserAlreadyExist | UserNotFound | RoleAlreadyExist | RoleNotFound
            | RoleNotGranted | PermissionNotGranted | AuthNotEnabled => Code::FailedPrecondition,
            NoLeader | Stopped | Timeout | NotSupportedForLearner | LeaderTransferTimeout => {
                Code::Unavailable
            }
            Corrupt | CorruptAlarm => Code::DataLoss,
            PermissionDenied => Code::PermissionDenied,
            InvalidAuthToken => Code::Unauthenticated,
            NoPasswordUser | SessionExpired | ElectionNotLeader | ElectionNoLeader
            | MissingLeaderKey => Code::Unknown,
        }
    }

    pub fn number(self) -> u32 {
        self as u32
    }

    /// The error a number stands for; `Corrupt` for a number no variant has, since only a
    /// damaged log could hold one.
    pub fn from_number(number: u32) -> EtcdError {
        Self::ALL
            .into_iter()
            .find(|e| e.number() == number)
            .unwrap_or(EtcdError::Corrupt)
    }
}

impl EtcdError {
    /// The error a status carries, when it is one of etcd's (as another member answered).
    pub fn from_status(status: &Status) -> Option<EtcdError> {
        Self::ALL
            .into_iter()
            .find(|e| e.code() == status.code() && e.to_string() == status.message())
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for e in EtcdError::ALL {
            assert_eq!(EtcdError::from_number(e.number()), e);
        }
        assert_eq!(EtcdError::from_number(0), EtcdError::Corrupt);
    }

    #[test]
    fn statuses_round_trip() {
        for e in EtcdError::ALL {
            // A CORRUPT alarm's refusal is `Corrupt` on the wire: clients cannot tell them
            // apart, nor need to.
            let expected = match e {
                EtcdError::CorruptAlarm => EtcdError::Corrupt,
                e => e,
            };
            assert_eq!(EtcdError::from_status(&e.into()), Some(expected));
        }
        assert_eq!(EtcdError::from_status(&Status::unavailable("other")), None);
    }

    #[test]
    fn status_carries_etcd_text() {
        let s: Status = EtcdError::Compacted.into();
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
    }
}
