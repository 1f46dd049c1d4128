//! A running cluster member: Raft, storage, the RPC server, the proposer and
//! the read handle, plus the membership operations (init, join, add, remove).
//!
//! The data directory holds `node.json` (this node's id and cluster id),
//! `tls/` (the cluster CA and this node's certificate) and `raft.redb` (log,
//! vote and snapshots).

use crate::state::settings::key;
use openraft::{ChangeMembers, ServerState, SnapshotPolicy};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::command::{Command, Outcome};
use crate::proposer::{leader_of, Clock, ProposeError, Proposer, ProposerLimits};
use crate::raft::log_store::LogStore;
use crate::raft::network::{Dialer, NetworkFactory};
use crate::raft::rpc::{JoinGrant, JoinRequest, RemoteFailure, RpcRequest, RpcResponse};
use crate::raft::state_machine::{SnapshotStats, StateMachineStore};
use crate::raft::tls::{self, TlsMaterial};
use crate::raft::{NodeId, NodeInfo, Raft};
use crate::read_handle::ReadHandle;

/// Everything a member needs to run, each limit named; defaults in `Default`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Set by the node from its top-level `data_dir`.
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// Address the Raft port binds.
    pub raft_listen: String,
    /// Address peers dial to reach this node (defaults to `raft_listen`).
    pub raft_advertise: String,
    /// Admin API address announced to peers, shown by `cluster status`;
    /// set by the node from `admin.listen`.
    #[serde(skip)]
    pub admin_advertise: String,
    pub heartbeat_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_logs_since_last: u64,
    /// Entries kept after a snapshot so slightly lagging followers need none.
    pub logs_kept_after_snapshot: u64,
    pub frame_bytes_max: usize,
    pub connect_timeout_ms: u64,
    /// How long `join` and `add-node` wait for the new node to catch up.
    pub join_timeout_ms: u64,
    /// How often the leader proposes `ExpireCounters` (greylist triplets,
    /// quotas, blocks and join tokens past their time); 0 disables it.
    pub expire_interval_ms: u64,
    /// How long a log purge waits for the state machine to store the
    /// snapshot that covers it before the node stops on a storage error.
    pub purge_wait_ms: u64,
    pub proposer: ProposerLimits,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("gatehouse-data"),
            raft_listen: "127.0.0.1:7025".into(),
            raft_advertise: String::new(),
            admin_advertise: "127.0.0.1:8025".into(),
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_logs_since_last: 5000,
            logs_kept_after_snapshot: 1000,
            frame_bytes_max: crate::raft::frame::FRAME_BYTES_MAX_DEFAULT,
            connect_timeout_ms: 1000,
            join_timeout_ms: 30_000,
            expire_interval_ms: 60_000,
            purge_wait_ms: 30_000,
            proposer: ProposerLimits::default(),
        }
    }
}

impl ClusterConfig {
    fn advertise(&self) -> NodeInfo {
        let raft_addr =
            if self.raft_advertise.is_empty() { self.raft_listen.clone() } else { self.raft_advertise.clone() };
        NodeInfo { raft_addr, admin_addr: self.admin_advertise.clone() }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}: data directory already belongs to a cluster member")]
    AlreadyInitialised(String),
    #[error("{0}: data directory holds no cluster member (run `gatehouse cluster init` or `gatehouse join`)")]
    NotInitialised(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("token: {0}")]
    BadToken(String),
    #[error("join refused by {seed}: {reason}")]
    JoinRefused { seed: String, reason: String },
    #[error(transparent)]
    Propose(#[from] ProposeError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io { path: path.display().to_string(), source }
}

/// Who this node is; written once at init or join.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Identity {
    node_id: NodeId,
    cluster_id: String,
}

impl Identity {
    fn path(dir: &Path) -> PathBuf {
        dir.join("node.json")
    }

    fn load(dir: &Path) -> Result<Option<Self>, ClusterError> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| ClusterError::Io { path: path.display().to_string(), source: e.into() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn save(&self, dir: &Path) -> Result<(), ClusterError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = Self::path(dir);
        let tmp = dir.join("node.json.tmp");
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| ClusterError::Storage(e.to_string()))?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&bytes).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }
}

/// One member's view, for `gatehouse cluster status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster_id: String,
    pub node_id: NodeId,
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub snapshot_index: Option<u64>,
    pub purged_index: Option<u64>,
    pub snapshots_built: u64,
    pub snapshots_installed: u64,
    pub members: Vec<MemberStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemberStatus {
    pub node_id: NodeId,
    pub raft_addr: String,
    pub admin_addr: String,
    pub voter: bool,
    /// Highest log index the leader knows this member holds.
    pub matched_index: Option<u64>,
    /// Leader's last index minus `matched_index`.
    pub lag: Option<u64>,
    /// The member's own applied index and role, asked of it directly;
    /// `None` when it did not answer (down, partitioned).
    pub applied_index: Option<u64>,
    pub state: Option<String>,
}

pub struct ClusterNode {
    pub id: NodeId,
    pub cluster_id: String,
    pub raft: Raft,
    pub read: ReadHandle,
    pub proposer: Proposer,
    pub stats: Arc<SnapshotStats>,
    pub dialer: Dialer,
    pub clock: Clock,
    pub config: ClusterConfig,
    tls: TlsMaterial,
    /// The services peers may call (`RpcRequest::Peer`), by name.
    services: std::sync::RwLock<BTreeMap<String, Arc<dyn PeerService>>>,
    /// Connections to peers for service calls, kept between calls.
    peer_pool: crate::raft::network::ConnectionPool,
}

/// A service the mail layer offers its peers over the cluster's mTLS port
/// (linked attachments, spool replicas): bytes in, bytes out, its own
/// encoding. An error is text the caller logs.
pub trait PeerService: Send + Sync {
    fn call(&self, body: Vec<u8>) -> futures::future::BoxFuture<'static, Result<Vec<u8>, String>>;
}

/// The wall clock in ms since the epoch: what the node's proposer stamps.
pub fn wall_clock() -> Clock {
    Arc::new(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    })
}

impl ClusterNode {
    pub fn is_initialised(data_dir: &Path) -> bool {
        Identity::path(data_dir).exists()
    }

    /// Creates a new cluster with this node as its only voter.
    pub async fn init(config: ClusterConfig, clock: Clock) -> Result<Arc<Self>, ClusterError> {
        if Self::is_initialised(&config.data_dir) {
            return Err(ClusterError::AlreadyInitialised(config.data_dir.display().to_string()));
        }
        let mut id_bytes = [0u8; 8];
        rand::thread_rng().fill_bytes(&mut id_bytes);
        let cluster_id = hex::encode(id_bytes);
        let (ca_cert_pem, ca_key_pem) = tls::generate_ca(&cluster_id)?;
        let (node_cert_pem, node_key_pem) = tls::issue_node_cert(&cluster_id, &ca_key_pem, 1)?;
        let material = TlsMaterial { ca_cert_pem, ca_key_pem, node_cert_pem, node_key_pem };
        material.save(&config.data_dir.join("tls"))?;
        Identity { node_id: 1, cluster_id }.save(&config.data_dir)?;
        let node = Self::start(config, clock).await?;
        let members = BTreeMap::from([(1, node.config.advertise())]);
        node.raft.initialize(members).await.map_err(|e| ClusterError::Raft(e.to_string()))?;
        Ok(node)
    }

    /// Starts an initialised member from its data directory.
    pub async fn start(config: ClusterConfig, clock: Clock) -> Result<Arc<Self>, ClusterError> {
        let dir = config.data_dir.clone();
        let identity = Identity::load(&dir)?.ok_or_else(|| ClusterError::NotInitialised(dir.display().to_string()))?;
        let material = TlsMaterial::load(&dir.join("tls"))?;
        let db_path = dir.join("raft.redb");
        let db = redb::Database::create(&db_path)
            .map_err(|e| ClusterError::Storage(format!("{}: {e}", db_path.display())))?;
        crate::format::check_or_stamp(&db, &db_path, crate::format::RAFT_FORMAT)
            .map_err(|e| ClusterError::Storage(e.to_string()))?;
        let db = Arc::new(db);
        let storage = |e: crate::raft::StorageError| ClusterError::Storage(e.to_string());
        let log_store = LogStore::open(db.clone())
            .map_err(storage)?
            .purge_after_snapshot(Duration::from_millis(config.purge_wait_ms));
        let read = ReadHandle::default();
        let stats = Arc::new(SnapshotStats::default());
        let state_machine = StateMachineStore::open(db, read.clone(), stats.clone()).map_err(storage)?;
        let dialer = Dialer {
            tls: material.client_config()?,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            frame_bytes_max: config.frame_bytes_max,
        };
        let raft_config = openraft::Config {
            cluster_name: format!("gatehouse-{}", identity.cluster_id),
            heartbeat_interval: config.heartbeat_ms,
            election_timeout_min: config.election_timeout_min_ms,
            election_timeout_max: config.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_logs_since_last),
            max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let network = NetworkFactory { dialer: dialer.clone() };
        let raft = Raft::new(identity.node_id, Arc::new(raft_config), network, log_store, state_machine)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        let proposer = Proposer::start(raft.clone(), dialer.clone(), clock.clone(), config.proposer.clone());
        let dialer_for_pool = dialer.clone();
        let listener = TcpListener::bind(&config.raft_listen).await.map_err(io_err(Path::new(&config.raft_listen)))?;
        let acceptor = TlsAcceptor::from(material.server_config()?);
        let node = Arc::new(Self {
            id: identity.node_id,
            cluster_id: identity.cluster_id,
            raft,
            read,
            proposer,
            stats,
            dialer,
            clock,
            config,
            tls: material,
            services: Default::default(),
            peer_pool: crate::raft::network::ConnectionPool::new(dialer_for_pool, 8),
        });
        tokio::spawn(crate::raft::server::serve(node.clone(), listener, acceptor));
        if node.config.expire_interval_ms > 0 {
            tokio::spawn(expire_counters(Arc::downgrade(&node)));
        }
        Ok(node)
    }

    /// Joins an existing cluster through `seed` with a token from `cluster add-node`.
    pub async fn join(config: ClusterConfig, clock: Clock, token: &str, seed: &str) -> Result<Arc<Self>, ClusterError> {
        if Self::is_initialised(&config.data_dir) {
            return Err(ClusterError::AlreadyInitialised(config.data_dir.display().to_string()));
        }
        let (fingerprint, secret) = parse_join_token(token)?;
        let info = config.advertise();
        let join_dialer = Dialer {
            tls: tls::join_client_config(fingerprint)?,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            frame_bytes_max: config.frame_bytes_max,
        };
        let request = RpcRequest::Join(JoinRequest {
            secret,
            raft_addr: info.raft_addr.clone(),
            admin_addr: info.admin_addr.clone(),
        });
        let refused = |reason: String| ClusterError::JoinRefused { seed: seed.to_string(), reason };
        let timeout = Duration::from_millis(config.join_timeout_ms);
        let grant: JoinGrant =
            match join_dialer.call_once(seed, &request, timeout).await.map_err(|e| refused(e.to_string()))? {
                RpcResponse::Join(Ok(grant)) => grant,
                RpcResponse::Join(Err(e)) => return Err(refused(e.to_string())),
                _ => return Err(refused("unexpected response".into())),
            };
        let (node_cert_pem, node_key_pem) = tls::issue_node_cert(&grant.cluster_id, &grant.ca_key_pem, grant.node_id)?;
        let material =
            TlsMaterial { ca_cert_pem: grant.ca_cert_pem, ca_key_pem: grant.ca_key_pem, node_cert_pem, node_key_pem };
        material.save(&config.data_dir.join("tls"))?;
        Identity { node_id: grant.node_id, cluster_id: grant.cluster_id }.save(&config.data_dir)?;
        let node = Self::start(config, clock).await?;
        let add = RpcRequest::AddMember { node_id: node.id, info };
        match node.dialer.call_once(seed, &add, timeout).await.map_err(|e| refused(e.to_string()))? {
            RpcResponse::Membership(Ok(())) => Ok(node),
            RpcResponse::Membership(Err(e)) => Err(refused(e.to_string())),
            _ => Err(refused("unexpected response to add-member".into())),
        }
    }

    /// Proposes a join token and returns the text to hand to the new node.
    pub async fn issue_join_token(&self) -> Result<String, ClusterError> {
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let state = self.read.load();
        let ttl_s = state.state.settings.int(key::CLUSTER_JOIN_TOKEN_TTL_S).max(0) as u64;
        let expires_ms = (self.clock)().saturating_add(ttl_s * 1000);
        let token_sha256 = hex::encode(Sha256::digest(secret));
        self.proposer.propose(Command::IssueJoinToken { token_sha256, expires_ms }).await?;
        let mut raw = self.tls.ca_fingerprint()?.to_vec();
        raw.extend_from_slice(&secret);
        use base64::Engine;
        Ok(format!("GH1.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)))
    }

    /// Seed side of a join: redeems the token (once, cluster-wide) and hands
    /// over the CA so the new node can sign its own certificate.
    pub async fn admit(&self, join: JoinRequest) -> Result<JoinGrant, RemoteFailure> {
        let token_sha256 = hex::encode(Sha256::digest(&join.secret));
        let command = Command::RedeemJoinToken { token_sha256, raft_addr: join.raft_addr, admin_addr: join.admin_addr };
        match self.proposer.propose(command).await {
            Ok(Outcome::NodeAdmitted { node_id }) => Ok(JoinGrant {
                node_id,
                cluster_id: self.cluster_id.clone(),
                ca_cert_pem: self.tls.ca_cert_pem.clone(),
                ca_key_pem: self.tls.ca_key_pem.clone(),
            }),
            Ok(other) => Err(RemoteFailure::Refused(format!("unexpected outcome {other:?}"))),
            Err(e) => Err(RemoteFailure::Refused(e.to_string())),
        }
    }

    /// Adds a node as learner, waits until it has caught up, promotes it.
    /// Runs on the leader; a follower forwards the request.
    pub async fn add_member(&self, node_id: NodeId, info: NodeInfo) -> Result<(), RemoteFailure> {
        if let Some(forwarded) = self.forward_if_follower(RpcRequest::AddMember { node_id, info: info.clone() }).await {
            return forwarded;
        }
        let refused = |e: String| RemoteFailure::Refused(e);
        let membership = self.raft.metrics().borrow().membership_config.clone();
        if membership.membership().get_node(&node_id).is_none() {
            self.raft.add_learner(node_id, info, true).await.map_err(|e| refused(e.to_string()))?;
        }
        let ids = BTreeSet::from([node_id]);
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(ids), false)
            .await
            .map_err(|e| refused(e.to_string()))?;
        Ok(())
    }

    /// Removes a member (voter or learner). openraft 0.9 has no leadership
    /// transfer, so a leader that removes itself commits the new membership
    /// first and then steps down; the remaining voters elect a successor once
    /// the old leader's lease (`election_timeout_max_ms`) has run out. Writes
    /// arriving in that gap wait in the proposer, which retries them until
    /// `propose_timeout_ms`.
    pub async fn remove_member(&self, node_id: NodeId) -> Result<(), RemoteFailure> {
        if let Some(forwarded) = self.forward_if_follower(RpcRequest::RemoveMember { node_id }).await {
            return forwarded;
        }
        let refused = |e: String| RemoteFailure::Refused(e);
        let membership = self.raft.metrics().borrow().membership_config.clone();
        let voters: BTreeSet<NodeId> = membership.membership().voter_ids().collect();
        let ids = BTreeSet::from([node_id]);
        let change = if voters.contains(&node_id) {
            if voters.len() == 1 {
                return Err(refused(format!(
                    "node {node_id} is the last voter; a cluster cannot remove its last voter"
                )));
            }
            ChangeMembers::RemoveVoters(ids)
        } else if membership.membership().get_node(&node_id).is_some() {
            ChangeMembers::RemoveNodes(ids)
        } else {
            return Err(refused(format!("node_id: {node_id} is not a member")));
        };
        self.raft.change_membership(change, false).await.map_err(|e| refused(e.to_string()))?;
        // The record of a token-joined node is bookkeeping; node 1 has none.
        let _ = self.proposer.propose(Command::ForgetNode { node_id }).await;
        // Its replicated messages go to the members holding their copies now.
        // Removing the leader leaves the cluster leaderless for a moment: the
        // record is retried in the background (without it, the holders still
        // take over once the removed node's lease runs out).
        let proposer = self.proposer.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                match proposer.propose(Command::SpoolOwnerRemoved { node_id }).await {
                    Ok(_) => return,
                    Err(e) if tokio::time::Instant::now() >= deadline => {
                        tracing::warn!(node_id, error = %e, "removed node's queue not handed over; its holders wait for its lease to run out");
                        return;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
                }
            }
        });
        Ok(())
    }

    /// `None` when this node leads (the caller acts); else the leader's answer.
    async fn forward_if_follower(&self, request: RpcRequest) -> Option<Result<(), RemoteFailure>> {
        let Some((leader, info)) = leader_of(&self.raft) else {
            return Some(Err(RemoteFailure::NotLeader { leader: None }));
        };
        if leader == self.id {
            return None;
        }
        let timeout = Duration::from_millis(self.config.join_timeout_ms);
        Some(match self.dialer.call_once(&info.raft_addr, &request, timeout).await {
            Ok(RpcResponse::Membership(r)) => r,
            Ok(_) => Err(RemoteFailure::Refused("unexpected response from leader".into())),
            Err(e) => Err(RemoteFailure::Refused(format!("leader {leader} at {}: {e}", info.raft_addr))),
        })
    }

    /// Offers `service` to the peers under `name` (a later call replaces it).
    pub fn serve(&self, name: &str, service: Arc<dyn PeerService>) {
        if let Ok(mut services) = self.services.write() {
            services.insert(name.to_string(), service);
        }
    }

    /// Answers a peer's call of one of this node's services.
    pub(crate) async fn call_local(&self, name: &str, body: Vec<u8>) -> Result<Vec<u8>, RemoteFailure> {
        let service = self.services.read().ok().and_then(|s| s.get(name).cloned());
        let Some(service) = service else {
            return Err(RemoteFailure::Refused(format!("node {} offers no service {name:?}", self.id)));
        };
        service.call(body).await.map_err(RemoteFailure::Refused)
    }

    /// The Raft address of member `node_id`, if it is one.
    pub fn member_addr(&self, node_id: NodeId) -> Option<String> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        membership.get_node(&node_id).map(|info| info.raft_addr.clone())
    }

    /// The ids of the current members (voters and learners).
    pub fn member_ids(&self) -> Vec<NodeId> {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        membership.nodes().map(|(id, _)| *id).collect()
    }

    /// Calls `service` on member `node_id` (this node's own directly), over
    /// a pooled mTLS connection, within `timeout`.
    pub async fn call_member(
        &self,
        node_id: NodeId,
        service: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClusterError> {
        if node_id == self.id {
            return self.call_local(service, body).await.map_err(|e| ClusterError::Storage(e.to_string()));
        }
        let addr =
            self.member_addr(node_id).ok_or_else(|| ClusterError::Raft(format!("node {node_id} is not a member")))?;
        let request = RpcRequest::Peer { service: service.into(), body };
        match self.peer_pool.call(&addr, &request, timeout).await {
            Ok(RpcResponse::Peer(Ok(bytes))) => Ok(bytes),
            Ok(RpcResponse::Peer(Err(e))) => Err(ClusterError::Storage(format!("node {node_id}: {e}"))),
            Ok(_) => Err(ClusterError::Raft(format!("node {node_id}: unexpected answer to a {service} call"))),
            Err(e) => Err(ClusterError::Io { path: addr, source: e }),
        }
    }

    /// SHA-256 of the cluster CA certificate, as pinned by join tokens.
    pub fn ca_fingerprint(&self) -> Result<[u8; 32], ClusterError> {
        Ok(self.tls.ca_fingerprint()?)
    }

    /// This node's own view.
    pub fn local_status(&self) -> ClusterStatus {
        let m = self.raft.metrics().borrow().clone();
        let last_log_index = m.last_log_index.unwrap_or(0);
        let replication = m.replication.clone().unwrap_or_default();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .map(|(id, info)| {
                let matched_index = replication.get(id).map(|l| l.map(|l| l.index).unwrap_or(0));
                MemberStatus {
                    node_id: *id,
                    raft_addr: info.raft_addr.clone(),
                    admin_addr: info.admin_addr.clone(),
                    voter: voters.contains(id),
                    matched_index,
                    lag: matched_index.map(|i| last_log_index.saturating_sub(i)),
                    applied_index: None,
                    state: None,
                }
            })
            .collect();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        ClusterStatus {
            cluster_id: self.cluster_id.clone(),
            node_id: self.id,
            state: state.to_string(),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index,
            applied_index: m.last_applied.map(|l| l.index).unwrap_or(0),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            snapshots_built: self.stats.built.load(Ordering::Relaxed),
            snapshots_installed: self.stats.installed.load(Ordering::Relaxed),
            members,
        }
    }

    /// This node's view, with replication progress as the leader sees it and
    /// each member's own applied index and role, asked of it in parallel.
    pub async fn status(&self) -> ClusterStatus {
        let mut status = self.local_status();
        let timeout = Duration::from_millis(self.config.connect_timeout_ms * 2);
        let asks = status.members.iter().map(|m| {
            let addr = m.raft_addr.clone();
            let remote = m.node_id != self.id;
            async move {
                if !remote {
                    return None;
                }
                match self.dialer.call_once(&addr, &RpcRequest::Status, timeout).await {
                    Ok(RpcResponse::Status(view)) => Some(*view),
                    _ => None,
                }
            }
        });
        let views: Vec<Option<ClusterStatus>> = futures::future::join_all(asks).await;
        let mut by_id: BTreeMap<NodeId, ClusterStatus> = views.into_iter().flatten().map(|v| (v.node_id, v)).collect();
        by_id.insert(self.id, status.clone());
        if let Some(leader_view) = status.leader.and_then(|l| by_id.get(&l)).filter(|v| v.state == "leader") {
            status.members = leader_view.members.clone();
        }
        for member in &mut status.members {
            let view = by_id.get(&member.node_id);
            member.applied_index = view.map(|v| v.applied_index);
            member.state = view.map(|v| v.state.clone());
        }
        status
    }
}

/// While this node leads, proposes `ExpireCounters` every `expire_interval_ms`:
/// expiry is a command stamped with the leader's clock, never a clock read in
/// `apply`. Ends when the node is dropped.
async fn expire_counters(node: std::sync::Weak<ClusterNode>) {
    loop {
        let Some(interval) = node.upgrade().map(|n| n.config.expire_interval_ms) else { return };
        tokio::time::sleep(Duration::from_millis(interval)).await;
        let Some(n) = node.upgrade() else { return };
        if leader_of(&n.raft).is_some_and(|(l, _)| l == n.id) {
            if let Err(e) = n.proposer.propose(Command::ExpireCounters).await {
                tracing::warn!(error = %e, "expiring counters failed");
            }
        }
    }
}

/// Splits `GH1.<base64url(ca sha256 ‖ secret)>`.
fn parse_join_token(token: &str) -> Result<([u8; 32], Vec<u8>), ClusterError> {
    use base64::Engine;
    let body =
        token.trim().strip_prefix("GH1.").ok_or_else(|| ClusterError::BadToken("must start with GH1.".into()))?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|e| ClusterError::BadToken(format!("not base64url: {e}")))?;
    if raw.len() != 64 {
        return Err(ClusterError::BadToken(format!("decodes to {} bytes, expected 64", raw.len())));
    }
    let mut fingerprint = [0u8; 32];
    fingerprint.copy_from_slice(&raw[..32]);
    Ok((fingerprint, raw[32..].to_vec()))
}
