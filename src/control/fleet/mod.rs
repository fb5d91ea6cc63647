//! Fleet mode's etcd layer (SPEC.md section 9): the one state document, the
//! members and their leases, the leader, the write-hold acknowledgements
//! and the published stats, all under one key prefix of an etcd v3 cluster.
//!
//! It speaks in bytes (the JSON documents the controller writes) and etcd
//! revisions, never in the controller's types, so the controller's state
//! store plugs it in without this layer knowing what a document holds.
//! It must not decide anything (which document to write, whether to
//! switch or roll back): it commits what it is given, reports what etcd
//! holds, and owns the reconnection etcd-client leaves to its user (watch
//! streams and lease keep-alives are not reconnected by etcd-client).
//!
//! Every call is bounded by a deadline; no loop retries without a bound
//! except the two background tasks whose job is to stay connected (the
//! watcher and the lease keeper), and they back off.
//!
//! - `keys`: the key layout under the prefix.
//! - `client`: settings, connecting, the deadline around each call.
//! - `contact`: whether this member is in touch with etcd, for the
//!   out-of-touch rules and the write fence.
//! - `state`: reading and committing the state document, resolving
//!   ambiguous results.
//! - `member`: the lease, `members/<id>`, candidacy, acks and stats.
//! - `view` / `watch`: the mirror of the prefix and the watcher that keeps
//!   it, turning etcd events into typed [`FleetEvent`]s.

mod client;
mod contact;
mod keys;
mod member;
mod state;
mod view;
mod watch;

pub use client::{Etcd, EtcdSettings, TlsPem};
pub use contact::Contact;
pub use keys::{KeyKind, Keys};
pub use member::{AckHandle, LeaseState, Member};
pub use state::{Base, Commit, CommitOutcome, Guard, StateDoc, StateRead};
pub use view::{Entry, FleetEvent, LeaderKey, Snapshot};
pub use watch::{FleetWatch, Resync};

use std::path::PathBuf;
use std::time::Duration;

/// An etcd revision (the store's logical clock).
pub type Revision = i64;

/// Why a fleet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("cannot read the {what} `{}`: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the etcd client: {0}")]
    Setup(#[source] etcd_client::Error),
    #[error("etcd did not answer `{op}` within {deadline:?}")]
    Timeout {
        op: &'static str,
        deadline: Duration,
    },
    #[error("etcd `{op}` failed: {source}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    /// The commit may or may not have landed, and etcd could not tell
    /// before the commit's deadline (or its history was compacted).
    #[error("the outcome of commit `{op_id}` is unknown: {why}")]
    Indeterminate { op_id: String, why: &'static str },
    /// This member holds no lease at the moment (etcd unreachable, or the
    /// lease expired and a new one is not granted yet).
    #[error("this member has no lease")]
    NoLease,
    /// An id that cannot be part of a key (empty, or holding `/`).
    #[error("`{0}` cannot be part of an etcd key")]
    BadId(String),
    /// A commit creating the document cannot carry guards (see [`Commit`]).
    #[error("a commit that creates the document cannot be guarded")]
    GuardedCreate,
    /// The watcher has stopped (dropped, or the runtime is shutting down).
    #[error("the fleet watch has stopped")]
    Closed,
}

impl FleetError {
    /// Whether a write that failed this way may still have been applied:
    /// a timeout, a lost connection, a leader change. Only errors etcd
    /// gives before applying anything (bad argument, permission, a lease
    /// it does not know) are certain failures.
    pub fn is_ambiguous(&self) -> bool {
        match self {
            FleetError::Timeout { .. } => true,
            FleetError::Etcd { source, .. } => match source {
                etcd_client::Error::GRpcStatus(s) => !matches!(
                    s.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::PermissionDenied
                        | tonic::Code::Unauthenticated
                        | tonic::Code::NotFound
                        | tonic::Code::OutOfRange
                        | tonic::Code::AlreadyExists
                ),
                etcd_client::Error::InvalidArgs(_) | etcd_client::Error::InvalidUri(_) => false,
                _ => true,
            },
            _ => false,
        }
    }
}
