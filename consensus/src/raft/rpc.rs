//! The messages nodes exchange on the Raft port. Besides openraft's three
//! RPCs there are the requests a follower forwards to the leader (proposals,
//! membership changes) and the join request of a node without a certificate.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::{NodeId, NodeInfo, TypeConfig};
use crate::command::{ClusterResponse, Command};

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// Commands a follower's proposer forwards; the leader stamps the time.
    Propose(Vec<Command>),
    /// Add a node as learner, wait for it to catch up, promote it to voter.
    AddMember {
        node_id: NodeId,
        info: NodeInfo,
    },
    RemoveMember {
        node_id: NodeId,
    },
    /// From a node that holds no certificate yet: the only request accepted
    /// without a client certificate.
    Join(JoinRequest),
    /// The receiver's own view of the cluster (the leader's has replication lag).
    Status,
    /// A request for one of the services the mail layer registered on the
    /// receiver (`ClusterNode::serve`): linked attachments, spool replicas.
    /// The body is the service's own encoding.
    Peer {
        service: String,
        body: Vec<u8>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JoinRequest {
    /// The token's secret part; the cluster stores only its SHA-256.
    pub secret: Vec<u8>,
    pub raft_addr: String,
    pub admin_addr: String,
}

/// What a joining node needs to become a member.
#[derive(Debug, Serialize, Deserialize)]
pub struct JoinGrant {
    pub node_id: NodeId,
    pub cluster_id: String,
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
}

/// Errors a forwarded request can meet on the far side, flattened to text
/// with the one distinction a caller acts on: whether to retry elsewhere.
#[derive(Debug, Clone, Serialize, Deserialize, thiserror::Error)]
pub enum RemoteFailure {
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, NodeInfo)> },
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Propose(Result<ClusterResponse, RemoteFailure>),
    Membership(Result<(), RemoteFailure>),
    Join(Result<JoinGrant, RemoteFailure>),
    Status(Box<crate::cluster::ClusterStatus>),
    Peer(Result<Vec<u8>, RemoteFailure>),
    /// The request needs a client certificate and none was presented.
    Unauthenticated,
}
