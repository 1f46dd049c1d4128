//! One simulated run: a workload shaped like mail traffic, faults drawn from
//! the seed, and the invariants checked as it runs and at the end.

use consensus::command::{ClusterRequest, Command, Outcome};
use consensus::raft::{LogId, NodeId, Raft};
use consensus::state::counters::DAY_MS;
use consensus::state::{ListName, ListRule, RuleKind};
use openraft::error::{ClientWriteError, RaftError};
use openraft::ServerState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::net::{NetState, SimNet};
use crate::world::{initialise, SimNode};

mod faults;
mod invariants;
mod mail;
mod membership;

pub use faults::Faults;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub steps: u32,
    pub faults: Faults,
    /// Test-only: fsync does nothing, so crashes lose acknowledged writes.
    /// The invariants must catch it.
    pub broken_skip_fsync: bool,
    /// Test-only: spool takeovers are not recorded through Raft, so an
    /// owner that comes back delivers what its holder took over.
    pub broken_unrecorded_takeover: bool,
}

/// What a run saw.
#[derive(Debug, Clone)]
pub struct SimReport {
    pub seed: u64,
    /// The readable timeline: `t=1234ms event`.
    pub timeline: Vec<String>,
    /// SHA-256 of the timeline: same seed, same hash.
    pub trace_hash: String,
    pub violations: Vec<String>,
    pub writes_acknowledged: usize,
    pub leaders: BTreeMap<u64, NodeId>,
    /// Virtual milliseconds the cluster took to converge once faults stopped.
    pub converged_after_ms: Option<u64>,
    /// Snapshots installed from a leader, over all nodes and restarts.
    pub snapshots_installed: u64,
    /// Crashes that landed inside a snapshot install.
    pub install_crashes: u32,
    /// Nodes that joined as voters, and nodes removed, during the run.
    pub nodes_joined: u32,
    pub nodes_removed: u32,
    /// Quota charges acknowledged as charged, and as refused at the limit.
    pub quota_charged: usize,
    pub quota_refused: usize,
    /// The highest daily count any node ever held (the limit is `QUOTA_MESSAGES_MAX`).
    pub quota_highest: u32,
    /// The mail path (faults `takeover`, `disk-loss`): messages acknowledged,
    /// delivered, delivered twice in the documented case, lost with every
    /// node that held them.
    pub mail_accepted: usize,
    pub mail_delivered: usize,
    pub mail_duplicates: usize,
    pub mail_lost: usize,
}

/// Virtual ms between two steps.
const STEP_MS: u64 = 50;
/// Once faults stop, the cluster must agree within this much virtual time.
pub const CONVERGENCE_BOUND_MS: u64 = 20_000;
/// The daily quota the workload charges against; the state machine must never pass it.
pub const QUOTA_MESSAGES_MAX: u32 = 12;
/// The proposers' clocks start here: a fixed instant a second before
/// midnight UTC, so skewed clocks straddle the day change.
pub(crate) const EPOCH_MS: u64 = 20_000 * DAY_MS - 1_000;

#[derive(Default)]
struct Ledger {
    /// Greylist triplets whose attempt was acknowledged as committed.
    triplets: BTreeSet<String>,
    /// Quota charges acknowledged as charged: (user, proposer's clock).
    charged: Vec<(String, u64)>,
    /// Quota charges acknowledged as refused at the limit.
    quota_refused: usize,
    /// Acknowledged writes: log index → the entry's log id and request.
    acked: BTreeMap<u64, (LogId, ClusterRequest)>,
    writes: usize,
    events: Vec<(u64, String)>,
    /// Nodes started for a join whose add/promote has not answered yet.
    joining: BTreeSet<NodeId>,
}

struct Sim {
    rng: StdRng,
    net: SimNet,
    nodes: Vec<SimNode>,
    start: tokio::time::Instant,
    skew_ms: BTreeMap<NodeId, i64>,
    ledger: Arc<Mutex<Ledger>>,
    violations: Vec<String>,
    leaders: BTreeMap<u64, NodeId>,
    /// applied index → state hash, as first seen on any node.
    states: BTreeMap<u64, String>,
    /// The highest daily quota count seen on any node at any step.
    quota_highest: u32,
    /// log index → the committed entry's id and payload digest, as first
    /// seen in an applied part of any node's log.
    committed: BTreeMap<u64, (LogId, String)>,
    /// Per node, the applied index up to which its log was already compared:
    /// those entries are committed and cannot change, so later checks start
    /// there. A restart starts the node over from 0.
    log_checked: BTreeMap<NodeId, u64>,
    /// Crashed node → step at which it comes back.
    down_until: BTreeMap<NodeId, u32>,
    heal_at: Option<u32>,
    install_crashes: u32,
    /// Nodes removed from the cluster: stopped for good, outside the checks.
    removed: BTreeSet<NodeId>,
    skip_fsync: bool,
    /// The mail path, when the faults ask for it.
    mail: Option<mail::MailWorld>,
}

fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sim {
    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn event(&self, text: String) {
        let t = self.now_ms();
        lock(&self.ledger).events.push((t, text));
    }

    fn live(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|n| n.is_up()).map(|n| n.id).collect()
    }

    /// The leader of the newest term seen: a node restarted from a term it
    /// led reports itself leader of that old term until it hears of a newer
    /// one, and an operator acting on its view (a membership it missed)
    /// would stop the wrong nodes.
    fn leader(&self) -> Option<NodeId> {
        let newest = self.leaders.keys().next_back().copied().unwrap_or(0);
        self.nodes
            .iter()
            .filter_map(|n| n.raft.as_ref().map(|r| (n.id, r.metrics().borrow().clone())))
            .filter(|(_, m)| m.state == ServerState::Leader && m.current_term >= newest)
            .max_by_key(|(_, m)| m.current_term)
            .map(|(id, _)| id)
    }

    /// The limit the workload's charges meet, committed before any fault.
    async fn set_quota_limit(&self) -> Result<(), String> {
        let mut commands =
            vec![Command::SetSetting { key: "quota.daily_messages_max".into(), value: QUOTA_MESSAGES_MAX.to_string() }];
        if self.mail.is_some() {
            commands.extend(Self::mail_settings());
        }
        let request = ClusterRequest { at_ms: EPOCH_MS, commands };
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(STEP_MS)).await;
            let leader = self.leader().and_then(|id| self.net.state().nodes.get(&id).cloned());
            if let Some(raft) = leader {
                if raft.client_write(request.clone()).await.is_ok() {
                    return Ok(());
                }
            }
        }
        Err("no leader took the write".into())
    }

    /// A command of the mail workload.
    fn workload_command(&mut self) -> Command {
        match self.rng.gen_range(0..10) {
            0..=4 => Command::RecordGreylistAttempt {
                triplet: format!(
                    "192.0.2.0/24 s{}@remote.example r{}@example.com",
                    self.rng.gen_range(0..20),
                    self.rng.gen_range(0..5)
                ),
                delay_ms: 2_000,
                retry_window_ms: DAY_MS,
                pass_ttl_ms: 36 * DAY_MS,
            },
            5..=7 => Command::ChargeDailyQuota {
                user: format!("u{}@example.com", self.rng.gen_range(0..3)),
                messages: 1,
                bytes: 1_000,
            },
            8 => Command::IncrementHijack {
                user: format!("u{}@example.com", self.rng.gen_range(0..3)),
                client: format!("192.0.2.{} submission", self.rng.gen_range(1..4)),
            },
            _ => Command::AddListRule {
                rule: ListRule::new(
                    ListName::Black,
                    RuleKind::Ip,
                    &format!("198.51.100.{}", self.rng.gen_range(0..255)),
                ),
            },
        }
    }

    /// Sends a write to a random live node, which forwards it to the leader
    /// as the proposer does; the outcome is recorded when acknowledged.
    fn submit(&mut self) {
        let live = self.live();
        if live.is_empty() {
            return;
        }
        let via = live[self.rng.gen_range(0..live.len())];
        let command = self.workload_command();
        let skew = self.skew_ms.get(&via).copied().unwrap_or(0);
        let at_ms = (EPOCH_MS as i64 + self.now_ms() as i64 + skew).max(0) as u64;
        let request = ClusterRequest { at_ms, commands: vec![command.clone()] };
        let rafts: BTreeMap<NodeId, Raft> = self.net.state().nodes.clone();
        let ledger = self.ledger.clone();
        let start = self.start;
        tokio::spawn(async move {
            let Some(mut raft) = rafts.get(&via).cloned() else { return };
            for _ in 0..3 {
                let attempt = tokio::time::timeout(Duration::from_secs(3), raft.client_write(request.clone())).await;
                let leader = match attempt {
                    Ok(Ok(response)) => {
                        let outcome = response.data.results.first().cloned();
                        let mut l = lock(&ledger);
                        l.acked.insert(response.log_id.index, (response.log_id, request.clone()));
                        l.writes += 1;
                        let t = start.elapsed().as_millis() as u64;
                        l.events
                            .push((t, format!("write committed at index {} via node {via}", response.log_id.index)));
                        match (&command, outcome) {
                            (Command::RecordGreylistAttempt { triplet, .. }, Some(Ok(_))) => {
                                l.triplets.insert(triplet.clone());
                            }
                            (Command::ChargeDailyQuota { user, .. }, Some(Ok(Outcome::QuotaCharged { .. }))) => {
                                l.charged.push((user.clone(), request.at_ms));
                            }
                            (Command::ChargeDailyQuota { .. }, Some(Ok(Outcome::QuotaExceeded { .. }))) => {
                                l.quota_refused += 1;
                            }
                            _ => {}
                        }
                        return;
                    }
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => f.leader_id,
                    _ => return,
                };
                match leader.and_then(|id| rafts.get(&id)) {
                    Some(r) => raft = r.clone(),
                    None => return,
                }
            }
        });
    }
}

/// Runs one simulation to the end on the current thread.
pub fn simulate(config: &SimConfig) -> SimReport {
    consensus::raft::runtime::seed_thread_rng(config.seed);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build() {
        Ok(r) => r,
        Err(e) => return failed(config.seed, format!("no runtime: {e}")),
    };
    runtime.block_on(run(config.clone()))
}

fn failed(seed: u64, why: String) -> SimReport {
    SimReport {
        seed,
        timeline: vec![why.clone()],
        trace_hash: String::new(),
        violations: vec![why],
        writes_acknowledged: 0,
        leaders: BTreeMap::new(),
        converged_after_ms: None,
        snapshots_installed: 0,
        install_crashes: 0,
        nodes_joined: 0,
        nodes_removed: 0,
        quota_charged: 0,
        quota_refused: 0,
        quota_highest: 0,
        mail_accepted: 0,
        mail_delivered: 0,
        mail_duplicates: 0,
        mail_lost: 0,
    }
}

async fn run(config: SimConfig) -> SimReport {
    let nodes = config.nodes.clamp(3, 7);
    let net = SimNet(Arc::new(Mutex::new(NetState {
        rng: StdRng::seed_from_u64(config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        nodes: BTreeMap::new(),
        partition: None,
        loss: 0.0,
        duplication: 0.0,
        link_base_ms: (1, 8),
        jitter_ms: (0, 7),
        link_ms: BTreeMap::new(),
    })));
    let mut sim = Sim {
        rng: StdRng::seed_from_u64(config.seed),
        net: net.clone(),
        nodes: (1..=nodes as NodeId).map(|id| SimNode::new(id, config.broken_skip_fsync)).collect(),
        start: tokio::time::Instant::now(),
        skew_ms: BTreeMap::new(),
        ledger: Default::default(),
        violations: Vec::new(),
        leaders: BTreeMap::new(),
        states: BTreeMap::new(),
        quota_highest: 0,
        committed: BTreeMap::new(),
        log_checked: BTreeMap::new(),
        down_until: BTreeMap::new(),
        heal_at: None,
        install_crashes: 0,
        removed: BTreeSet::new(),
        skip_fsync: config.broken_skip_fsync,
        mail: (config.faults.takeover || config.faults.disk_loss)
            .then(|| mail::MailWorld::new(config.broken_unrecorded_takeover)),
    };
    for node in sim.nodes.iter_mut() {
        tokio::time::sleep(Duration::from_millis(sim.rng.gen_range(0..STEP_MS))).await;
        if let Err(e) = node.start(&net).await {
            return failed(config.seed, format!("node {} did not start: {e}", node.id));
        }
    }
    if let Err(e) = initialise(&sim.nodes).await {
        return failed(config.seed, format!("initialise: {e}"));
    }
    if let Err(e) = sim.set_quota_limit().await {
        return failed(config.seed, format!("setting the quota limit: {e}"));
    }
    if sim.mail.is_some() {
        let ids: Vec<NodeId> = sim.nodes.iter().map(|n| n.id).collect();
        for id in ids {
            sim.start_mail(id);
        }
        // Copies wait for every node's lease under the new settings.
        for _ in 0..100 {
            tokio::time::sleep(Duration::from_millis(STEP_MS)).await;
            if sim.mail_configured() {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
    sim.event(format!("START {nodes} nodes, seed {}, faults {:?}", config.seed, config.faults));

    for step in 0..config.steps {
        tokio::time::sleep(Duration::from_millis(STEP_MS)).await;
        let due: Vec<NodeId> = sim.down_until.iter().filter(|(_, s)| **s <= step).map(|(id, _)| *id).collect();
        for id in due {
            sim.restart(id).await;
        }
        if sim.heal_at.is_some_and(|h| h <= step) {
            sim.heal_network().await;
        }
        sim.spring_traps(step).await;
        sim.retire_removed().await;
        let roll = sim.rng.gen_range(0..100);
        if roll < 60 {
            sim.submit();
        } else if roll < 68 {
            sim.inject_fault(step, config.faults).await;
        } else if roll < 69 && config.faults.membership {
            sim.change_membership().await;
        }
        if sim.mail.is_some() {
            if sim.rng.gen_range(0..100) < 40 {
                sim.accept_message();
            }
            sim.deliver_due();
        }
        sim.check();
        sim.check_logs().await;
    }

    // Faults stop: heal, disarm, bring everyone back, let the writes in flight finish.
    sim.heal_network().await;
    for node in &sim.nodes {
        node.faults.take_armed();
        node.faults.trapped.store(false, Ordering::Relaxed);
    }
    let down: Vec<NodeId> = sim.down_until.keys().copied().collect();
    for id in down {
        sim.restart(id).await;
    }
    sim.event("FAULTS STOP".into());
    let converged = sim.converge().await;
    if let Some(ms) = converged {
        sim.event(format!("CONVERGED after {ms} ms"));
    }
    sim.drain_mail().await;
    sim.final_checks();
    sim.mail_checks();
    for node in sim.nodes.iter_mut() {
        if let Some(raft) = node.raft.take() {
            let _ = raft.shutdown().await;
        }
    }

    let ledger = lock(&sim.ledger);
    let mut events = ledger.events.clone();
    events.sort_by_key(|(t, _)| *t);
    let timeline: Vec<String> = events.iter().map(|(t, e)| format!("t={t:>6}ms {e}")).collect();
    let mut hasher = Sha256::new();
    for line in &timeline {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    SimReport {
        seed: config.seed,
        timeline,
        trace_hash: hex::encode(hasher.finalize()),
        violations: sim.violations.clone(),
        writes_acknowledged: ledger.writes,
        leaders: sim.leaders.clone(),
        converged_after_ms: converged,
        snapshots_installed: sim.nodes.iter().map(|n| n.snapshots.installed.load(Ordering::Relaxed)).sum(),
        install_crashes: sim.install_crashes,
        nodes_joined: ledger.events.iter().filter(|(_, e)| e.starts_with("JOINED")).count() as u32,
        nodes_removed: sim.removed.len() as u32,
        mail_accepted: sim.mail.as_ref().map_or(0, |m| mail::lock(&m.ledger).accepted.len()),
        mail_delivered: sim.mail.as_ref().map_or(0, |m| {
            let l = mail::lock(&m.ledger);
            l.accepted.keys().filter(|id| l.deliveries.contains_key(*id)).count()
        }),
        mail_duplicates: sim.mail.as_ref().map_or(0, |m| mail::lock(&m.ledger).duplicates_documented),
        mail_lost: sim.mail.as_ref().map_or(0, |m| mail::lock(&m.ledger).lost_documented),
        quota_charged: ledger.charged.len(),
        quota_refused: ledger.quota_refused,
        quota_highest: sim.quota_highest,
    }
}
