//! Everything openraft needs from us: the type configuration, redb storage,
//! the TLS network, and the node that wires them.

pub mod frame;
pub mod log_store;
pub mod network;
pub mod rpc;
pub mod runtime;
pub mod server;
pub mod state_machine;
pub mod tls;

use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Cursor;

use crate::command::{ClusterRequest, ClusterResponse};

/// What a member announces about itself: where peers reach its Raft port,
/// and where its admin API listens (so `cluster status` can show it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub raft_addr: String,
    pub admin_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} admin={}", self.raft_addr, self.admin_addr)
    }
}

pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of a Gatehouse cluster.
    pub TypeConfig:
        D = ClusterRequest,
        R = ClusterResponse,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = runtime::SeededTokio,
);

pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type Entry = openraft::Entry<TypeConfig>;
pub type StorageError = openraft::StorageError<NodeId>;
pub type StoredMembership = openraft::StoredMembership<NodeId, NodeInfo>;
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, NodeInfo>;
pub type Snapshot = openraft::Snapshot<TypeConfig>;
pub type Vote = openraft::Vote<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, NodeInfo>;

/// Turns any storage-side failure into openraft's error type.
pub(crate) fn storage_io<E: std::error::Error + 'static>(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: E,
) -> StorageError {
    openraft::StorageIOError::new(subject, verb, openraft::AnyError::new(&e)).into()
}
