//! The batching proposer: the one way writes enter the log.
//!
//! Callers hand in single commands and await their own outcome. A batcher
//! task coalesces what arrives within `batch_wait_ms` (or until
//! `batch_commands_max` commands) into one `ClusterRequest`, stamps it with the
//! proposer's clock, and submits it: directly when this node leads, else
//! forwarded to the leader over the Raft port. Several batches may be in
//! flight at once (`batches_in_flight_max`), so a slow commit does not stall
//! the next batch's collection. Each caller receives the result at its own
//! position in the entry's response.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::command::{ApplyError, ClusterRequest, ClusterResponse, Command, Outcome};
use crate::raft::network::{ConnectionPool, Dialer};
use crate::raft::rpc::{RemoteFailure, RpcRequest, RpcResponse};
use crate::raft::{NodeId, NodeInfo, Raft};

/// A clock in milliseconds since the Unix epoch; the node passes the wall
/// clock, the simulator a virtual one.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Limits of the proposer: the `[cluster.proposer]` table of the node's config.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProposerLimits {
    pub batch_commands_max: usize,
    pub batch_wait_ms: u64,
    pub batches_in_flight_max: usize,
    /// How long a write may wait for a leader before it fails.
    pub propose_timeout_ms: u64,
    /// Waiting callers beyond this get `Overloaded` at once.
    pub queue_commands_max: usize,
}

impl Default for ProposerLimits {
    fn default() -> Self {
        Self {
            batch_commands_max: 512,
            batch_wait_ms: 2,
            batches_in_flight_max: 4,
            propose_timeout_ms: 5000,
            queue_commands_max: 65536,
        }
    }
}

/// Why a write did not take effect.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProposeError {
    /// The state machine refused the command: permanent.
    #[error(transparent)]
    Rejected(#[from] ApplyError),
    /// No leader could commit it in time (no quorum, election): transient.
    #[error("cluster unavailable: {0}")]
    Unavailable(String),
    #[error("proposer queue is full ({0} commands waiting)")]
    Overloaded(usize),
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Result<Outcome, ProposeError>>,
}

/// Handle for submitting writes; cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    limits: ProposerLimits,
}

impl Proposer {
    pub fn start(raft: Raft, dialer: Dialer, clock: Clock, limits: ProposerLimits) -> Self {
        let (tx, rx) = mpsc::channel(limits.queue_commands_max.max(1));
        let pool = ConnectionPool::new(dialer, limits.batches_in_flight_max.max(1) * 2);
        let submitter = Submitter { raft, pool, clock, limits: limits.clone() };
        tokio::spawn(batch_loop(rx, submitter));
        Self { tx, limits }
    }

    /// Proposes one command and waits until it is applied (or refused).
    pub async fn propose(&self, command: Command) -> Result<Outcome, ProposeError> {
        let (reply, rx) = oneshot::channel();
        self.tx.try_send(Pending { command, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ProposeError::Overloaded(self.limits.queue_commands_max),
            mpsc::error::TrySendError::Closed(_) => ProposeError::Unavailable("proposer stopped".into()),
        })?;
        rx.await.map_err(|_| ProposeError::Unavailable("proposer dropped the request".into()))?
    }
}

async fn batch_loop(mut rx: mpsc::Receiver<Pending>, submitter: Submitter) {
    let submitter = Arc::new(submitter);
    let in_flight = Arc::new(Semaphore::new(submitter.limits.batches_in_flight_max.max(1)));
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(submitter.limits.batch_wait_ms);
        while batch.len() < submitter.limits.batch_commands_max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(p)) => batch.push(p),
                _ => break,
            }
        }
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let submitter = submitter.clone();
        tokio::spawn(async move {
            let (commands, replies): (Vec<_>, Vec<_>) = batch.into_iter().map(|p| (p.command, p.reply)).unzip();
            let outcome = submitter.submit(commands).await;
            drop(permit);
            deliver(outcome, replies);
        });
    }
}

/// Where one caller waits for its outcome: a oneshot sender here, a loom
/// slot in `loom_models.rs` (built with the `loom` feature).
pub(crate) trait ReplySlot {
    /// Hands the result over; a caller that stopped waiting is not an error.
    fn fill(self, result: Result<Outcome, ProposeError>);
}

impl ReplySlot for oneshot::Sender<Result<Outcome, ProposeError>> {
    fn fill(self, result: Result<Outcome, ProposeError>) {
        let _ = self.send(result);
    }
}

/// Hands each caller the result at its own position in the batch's
/// response; a response shorter than the batch fails the callers past its
/// end rather than shifting anyone onto another's result.
pub(crate) fn deliver<S: ReplySlot>(outcome: Result<ClusterResponse, ProposeError>, replies: Vec<S>) {
    match outcome {
        Ok(response) => {
            let mut results = response.results.into_iter();
            for reply in replies {
                let result = results.next().unwrap_or_else(|| {
                    Err(ApplyError::InvalidSetting { key: "batch".into(), reason: "missing result".into() })
                });
                reply.fill(result.map_err(ProposeError::Rejected));
            }
        }
        Err(e) => {
            for reply in replies {
                reply.fill(Err(e.clone()));
            }
        }
    }
}

/// Submits whole batches, to the local Raft when leading, else to the leader.
pub struct Submitter {
    pub raft: Raft,
    /// Connections to the leader, reused across forwarded batches.
    pub pool: ConnectionPool,
    pub clock: Clock,
    pub limits: ProposerLimits,
}

impl Submitter {
    async fn submit(&self, commands: Vec<Command>) -> Result<ClusterResponse, ProposeError> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(self.limits.propose_timeout_ms);
        let mut last_error;
        loop {
            let attempt = tokio::time::timeout_at(deadline, self.try_once(&commands)).await;
            match attempt {
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(Attempt::Retry(e))) => last_error = e,
                Ok(Err(Attempt::Unknown(e))) => return Err(ProposeError::Unavailable(e)),
                Err(_) => {
                    return Err(ProposeError::Unavailable(format!(
                        "no commit within {} ms",
                        self.limits.propose_timeout_ms
                    )))
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ProposeError::Unavailable(last_error));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// One try. Only failures that prove the batch was not applied are
    /// retried; once a batch may have reached a leader, retrying could apply
    /// it twice, so the caller hears that the outcome is unknown.
    async fn try_once(&self, commands: &[Command]) -> Result<ClusterResponse, Attempt> {
        match leader_of(&self.raft) {
            None => Err(Attempt::Retry("no leader elected".into())),
            Some((id, _)) if id == self.raft_id() => {
                submit_as_leader(&self.raft, &self.clock, commands.to_vec()).await.map_err(Attempt::from)
            }
            Some((_, info)) => {
                let request = RpcRequest::Propose(commands.to_vec());
                let timeout = Duration::from_millis(self.limits.propose_timeout_ms);
                match self.pool.call(&info.raft_addr, &request, timeout).await {
                    Ok(RpcResponse::Propose(Ok(response))) => Ok(response),
                    Ok(RpcResponse::Propose(Err(e))) => Err(Attempt::from(e)),
                    Ok(_) => Err(Attempt::Unknown("unexpected response to a forwarded proposal".into())),
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                        Err(Attempt::Retry(format!("leader at {} refused the connection", info.raft_addr)))
                    }
                    Err(e) => Err(Attempt::Unknown(format!("forwarding to leader at {}: {e}", info.raft_addr))),
                }
            }
        }
    }

    fn raft_id(&self) -> NodeId {
        self.raft.metrics().borrow().id
    }
}

enum Attempt {
    Retry(String),
    Unknown(String),
}

impl From<RemoteFailure> for Attempt {
    fn from(e: RemoteFailure) -> Self {
        match e {
            RemoteFailure::NotLeader { .. } => Attempt::Retry(e.to_string()),
            RemoteFailure::Refused(_) => Attempt::Unknown(e.to_string()),
        }
    }
}

/// Appends one entry on this node, which must be the leader.
pub async fn submit_as_leader(
    raft: &Raft,
    clock: &Clock,
    commands: Vec<Command>,
) -> Result<ClusterResponse, RemoteFailure> {
    let request = ClusterRequest { at_ms: clock(), commands };
    match raft.client_write(request).await {
        Ok(written) => Ok(written.data),
        Err(openraft::error::RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f))) => {
            let leader = f.leader_id.zip(f.leader_node);
            Err(RemoteFailure::NotLeader { leader })
        }
        Err(e) => Err(RemoteFailure::Refused(e.to_string())),
    }
}

/// The current leader as this node knows it, with its address.
pub fn leader_of(raft: &Raft) -> Option<(NodeId, NodeInfo)> {
    let metrics = raft.metrics().borrow().clone();
    let leader = metrics.current_leader?;
    let info = metrics.membership_config.membership().get_node(&leader).cloned()?;
    Some((leader, info))
}
