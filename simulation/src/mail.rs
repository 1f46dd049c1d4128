//! The mail path on a simulated node: the real spool (`actors::queue::spool`)
//! on a simulated disk, and the real replication (`actors::queue::replica`:
//! copies, outbox, lease, takeover) over the simulated network and Raft.
//! `SimCluster` is what a running node's `ClusterNode` is to the replicator.

use actors::queue::replica::{serve_request, ReplicaCluster};
use actors::queue::spool::Spool;
use consensus::command::{ClusterRequest, Command, Outcome};
use consensus::raft::NodeId;
use consensus::{AppliedState, ReadHandle};
use futures::future::BoxFuture;
use openraft::error::{ClientWriteError, RaftError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::net::SimNet;

/// The spools of the nodes that are up, by node: where copies are sent.
pub type SpoolRegistry = Arc<Mutex<BTreeMap<NodeId, Arc<Spool>>>>;

pub fn spool_of(registry: &SpoolRegistry, id: NodeId) -> Option<Arc<Spool>> {
    registry.lock().unwrap_or_else(|p| p.into_inner()).get(&id).cloned()
}

pub struct SimCluster {
    pub id: NodeId,
    pub net: SimNet,
    pub read: ReadHandle,
    pub spools: SpoolRegistry,
    /// The node's wall clock (ms since the epoch), as its proposer stamps.
    pub clock: Arc<dyn Fn() -> u64 + Send + Sync>,
}

impl ReplicaCluster for SimCluster {
    fn id(&self) -> u64 {
        self.id
    }

    fn members(&self) -> Vec<u64> {
        let raft = self.net.state().nodes.get(&self.id).cloned();
        let Some(raft) = raft else { return Vec::new() };
        let m = raft.metrics().borrow().clone();
        let ids = m.membership_config.membership().nodes().map(|(id, _)| *id).collect();
        ids
    }

    fn state(&self) -> Arc<AppliedState> {
        self.read.load()
    }

    fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    /// Through this node to the leader, as the proposer forwards; a leader
    /// this node cannot reach is no leader for it.
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<Outcome, String>> {
        Box::pin(async move {
            let request = ClusterRequest { at_ms: (self.clock)(), commands: vec![command] };
            let mut target = self.id;
            for _ in 0..3 {
                if !self.net.reachable(self.id, target) {
                    return Err(format!("node {target} unreachable from node {}", self.id));
                }
                let raft = self.net.state().nodes.get(&target).cloned().ok_or("node down")?;
                match tokio::time::timeout(Duration::from_secs(3), raft.client_write(request.clone())).await {
                    Ok(Ok(response)) => {
                        let first = response.data.results.into_iter().next();
                        return first.ok_or("no result")?.map_err(|e| e.to_string());
                    }
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => match f.leader_id {
                        Some(leader) => target = leader,
                        None => return Err("no leader".into()),
                    },
                    Ok(Err(e)) => return Err(e.to_string()),
                    Err(_) => return Err("proposal timed out".into()),
                }
            }
            Err("no leader within three hops".into())
        })
    }

    fn call_replica(&self, node: u64, body: Vec<u8>, timeout: Duration) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move {
            let lost = |what: &str| format!("copy to node {node}: {what}");
            let Some(there) = self.net.message_delay(self.id, node) else {
                tokio::time::sleep(timeout).await;
                return Err(lost("request lost"));
            };
            tokio::time::sleep(there).await;
            let spool = spool_of(&self.spools, node).ok_or_else(|| lost("node down"))?;
            serve_request(&spool, &body)?;
            let Some(back) = self.net.message_delay(node, self.id) else {
                tokio::time::sleep(timeout.saturating_sub(there)).await;
                return Err(lost("answer lost"));
            };
            tokio::time::sleep(back).await;
            Ok(Vec::new())
        })
    }

    fn inline_io(&self) -> bool {
        true
    }
}
