//! The simulated network: every RPC goes straight to the target's `Raft`
//! handle after a delay drawn from the seeded generator, unless the link is
//! cut (partition, crashed target) or the message is lost. Requests may be
//! delivered twice (a retransmission) and, since every delay is drawn
//! separately, overtake each other.

use consensus::raft::{NodeId, NodeInfo, Raft, TypeConfig};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use rand::rngs::StdRng;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the links behave now; the fault injector changes it as the run goes.
pub struct NetState {
    pub rng: StdRng,
    /// Live nodes by id; a crashed node is absent.
    pub nodes: BTreeMap<NodeId, Raft>,
    /// When set, only nodes on the same side can talk.
    pub partition: Option<BTreeSet<NodeId>>,
    /// Probability that a message (request or response) is lost.
    pub loss: f64,
    /// Probability that a request is delivered twice.
    pub duplication: f64,
    /// Each link's own base delay is drawn from this range when the link is
    /// first used (a node in the next rack, one across town)…
    pub link_base_ms: (u64, u64),
    /// …and each message adds a jitter from this one, so messages on one
    /// link overtake each other.
    pub jitter_ms: (u64, u64),
    /// The base delay of each link (a pair of nodes, either direction).
    pub link_ms: BTreeMap<(NodeId, NodeId), u64>,
}

impl NetState {
    fn connected(&self, a: NodeId, b: NodeId) -> bool {
        match &self.partition {
            None => true,
            Some(side) => side.contains(&a) == side.contains(&b),
        }
    }
}

#[derive(Clone)]
pub struct SimNet(pub Arc<Mutex<NetState>>);

impl SimNet {
    pub fn state(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The fate of one message from `from` to `to`: its delay, or `None` if lost.
    fn fate(&self, from: NodeId, to: NodeId) -> Option<Duration> {
        let mut s = self.state();
        if !s.connected(from, to) || !s.nodes.contains_key(&to) || !s.nodes.contains_key(&from) {
            return None;
        }
        let loss = s.loss;
        if loss > 0.0 && s.rng.gen_bool(loss) {
            return None;
        }
        let (lo, hi) = s.link_base_ms;
        let link = (from.min(to), from.max(to));
        let base = match s.link_ms.get(&link) {
            Some(ms) => *ms,
            None => {
                let ms = s.rng.gen_range(lo..=hi.max(lo));
                s.link_ms.insert(link, ms);
                ms
            }
        };
        let (lo, hi) = s.jitter_ms;
        Some(Duration::from_millis(base + s.rng.gen_range(lo..=hi.max(lo))))
    }

    /// The delay of one message of another protocol (the spool's copies)
    /// from `from` to `to`, or `None` if the network drops it.
    pub fn message_delay(&self, from: NodeId, to: NodeId) -> Option<Duration> {
        self.fate(from, to)
    }

    /// Whether `from` can reach `to` at all now (both up, same side).
    pub fn reachable(&self, from: NodeId, to: NodeId) -> bool {
        let s = self.state();
        s.connected(from, to) && s.nodes.contains_key(&to) && s.nodes.contains_key(&from)
    }

    fn duplicate(&self) -> bool {
        let mut s = self.state();
        let p = s.duplication;
        p > 0.0 && s.rng.gen_bool(p)
    }

    fn target(&self, to: NodeId) -> Option<Raft> {
        self.state().nodes.get(&to).cloned()
    }

    /// Carries a request there and the answer back, or fails as the network
    /// decides; a lost message costs the caller its timeout, as on a wire.
    async fn carry<T, Fut>(&self, from: NodeId, to: NodeId, ttl: Duration, call: impl Fn(Raft) -> Fut) -> Option<T>
    where
        Fut: std::future::Future<Output = T>,
    {
        let lost = || async move {
            tokio::time::sleep(ttl).await;
            None
        };
        let Some(there) = self.fate(from, to) else { return lost().await };
        tokio::time::sleep(there).await;
        let raft = self.target(to)?;
        if self.duplicate() {
            let _ = call(raft.clone()).await;
        }
        let answer = call(raft).await;
        let Some(back) = self.fate(to, from) else { return lost().await };
        tokio::time::sleep(back).await;
        Some(answer)
    }
}

/// One node's view of the network (openraft asks it for clients).
pub struct SimNetworkFactory {
    pub me: NodeId,
    pub net: SimNet,
}

impl RaftNetworkFactory<TypeConfig> for SimNetworkFactory {
    type Network = SimClient;

    async fn new_client(&mut self, target: NodeId, _node: &NodeInfo) -> SimClient {
        SimClient { from: self.me, to: target, net: self.net.clone() }
    }
}

pub struct SimClient {
    from: NodeId,
    to: NodeId,
    net: SimNet,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

fn unreachable<E: std::error::Error>(from: NodeId, to: NodeId) -> RPCError<NodeId, NodeInfo, RaftError<NodeId, E>> {
    let e = std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{from} -> {to}: no answer"));
    RPCError::Unreachable(Unreachable::new(&e))
}

// openraft fixes the error type; its size is not ours to change.
#[allow(clippy::result_large_err)]
fn remote<T, E: std::error::Error>(to: NodeId, r: Result<T, RaftError<NodeId, E>>) -> RpcResult<T, E> {
    r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(to, e)))
}

impl SimClient {
    /// One RPC over the simulated network: the target's answer, or unreachable.
    async fn rpc<Req, T, E, Fut>(&self, rpc: Req, ttl: Duration, call: impl Fn(Raft, Req) -> Fut) -> RpcResult<T, E>
    where
        Req: Clone,
        E: std::error::Error,
        Fut: std::future::Future<Output = Result<T, RaftError<NodeId, E>>>,
    {
        match self.net.carry(self.from, self.to, ttl, |r| call(r, rpc.clone())).await {
            Some(answer) => remote(self.to, answer),
            None => Err(unreachable(self.from, self.to)),
        }
    }
}

impl RaftNetwork<TypeConfig> for SimClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.rpc(rpc, option.hard_ttl(), |r, rpc| async move { r.append_entries(rpc).await }).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(rpc, option.hard_ttl(), |r, rpc| async move { r.install_snapshot(rpc).await }).await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.rpc(rpc, option.hard_ttl(), |r, rpc| async move { r.vote(rpc).await }).await
    }
}
