//! The simulated cluster: nodes with their disks, started, crashed and
//! restarted on the simulated network.

use consensus::raft::log_store::LogStore;
use consensus::raft::state_machine::{SnapshotStats, StateMachineStore};
use consensus::raft::{NodeId, NodeInfo, Raft};
use consensus::ReadHandle;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::disk::SimDisk;
use crate::net::{SimNet, SimNetworkFactory};
use crate::storage::{FaultyLog, FaultyStateMachine, StorageFaults};

pub struct SimNode {
    pub id: NodeId,
    pub disk: SimDisk,
    pub raft: Option<Raft>,
    pub read: ReadHandle,
    /// A reader over the running incarnation's log, for the log invariants.
    pub log: Option<LogStore>,
    /// Slow-disk and snapshot-install traps; they outlive restarts.
    pub faults: Arc<StorageFaults>,
    /// Snapshots built and installed over all incarnations.
    pub snapshots: Arc<SnapshotStats>,
}

pub fn raft_config() -> Arc<openraft::Config> {
    let config = openraft::Config {
        cluster_name: "gatehouse-sim".into(),
        heartbeat_interval: 50,
        election_timeout_min: 150,
        election_timeout_max: 300,
        // Small, so snapshots are built and installed (and crashed into) often.
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(40),
        max_in_snapshot_log_to_keep: 5,
        ..Default::default()
    };
    Arc::new(config.validate().unwrap_or_default())
}

pub fn info(id: NodeId) -> NodeInfo {
    NodeInfo { raft_addr: format!("sim-{id}"), admin_addr: String::new() }
}

impl SimNode {
    pub fn new(id: NodeId, skip_fsync: bool) -> Self {
        Self {
            id,
            disk: SimDisk::new(skip_fsync),
            raft: None,
            read: ReadHandle::default(),
            log: None,
            faults: Default::default(),
            snapshots: Default::default(),
        }
    }

    /// Opens the storage on the disk as it is and starts Raft.
    pub async fn start(&mut self, net: &SimNet) -> Result<(), String> {
        let db = redb::Database::builder().create_with_backend(self.disk.backend()).map_err(|e| e.to_string())?;
        let db = Arc::new(db);
        let log = LogStore::open(db.clone())
            .map_err(|e| e.to_string())?
            .purge_after_snapshot(std::time::Duration::from_secs(30));
        let reader = log.clone();
        self.read = ReadHandle::default();
        let sm = StateMachineStore::open(db, self.read.clone(), self.snapshots.clone()).map_err(|e| e.to_string())?;
        let log = FaultyLog { inner: log, faults: self.faults.clone() };
        let sm = FaultyStateMachine { inner: sm, faults: self.faults.clone() };
        let network = SimNetworkFactory { me: self.id, net: net.clone() };
        let raft = Raft::new(self.id, raft_config(), network, log, sm).await.map_err(|e| e.to_string())?;
        net.state().nodes.insert(self.id, raft.clone());
        self.raft = Some(raft);
        self.log = Some(reader);
        Ok(())
    }

    /// Power loss: off the network, unsynced writes gone, tasks stopped.
    pub async fn crash(&mut self, net: &SimNet) {
        net.state().nodes.remove(&self.id);
        self.disk.crash();
        self.log = None;
        if let Some(raft) = self.raft.take() {
            let _ = raft.shutdown().await;
        }
    }

    pub fn is_up(&self) -> bool {
        self.raft.is_some()
    }
}

/// The first start: node 1 initialises the membership with every node as a voter.
pub async fn initialise(nodes: &[SimNode]) -> Result<(), String> {
    let members: BTreeMap<NodeId, NodeInfo> = nodes.iter().map(|n| (n.id, info(n.id))).collect();
    let first = nodes.first().and_then(|n| n.raft.as_ref()).ok_or("no first node")?;
    first.initialize(members).await.map_err(|e| e.to_string())
}
