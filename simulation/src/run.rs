//! One simulated run: a workload shaped like mail traffic, faults drawn from
//! the seed, and the invariants checked as it runs and at the end.

use consensus::command::{ClusterRequest, Command, Outcome};
use consensus::raft::{Entry, LogId, NodeId, Raft};
use consensus::state::counters::DAY_MS;
use consensus::state::{ListName, ListRule, RuleKind};
use openraft::error::{ClientWriteError, RaftError};
use openraft::RaftLogReader;
use openraft::ServerState;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::net::{NetState, SimNet};
use crate::storage::InstallTrap;
use crate::world::{initialise, SimNode};

/// Which faults a run may inject.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    pub crash: bool,
    pub partition: bool,
    pub loss: bool,
    /// Proposers' clocks disagree by up to a few seconds.
    pub skew: bool,
    /// A node's disk takes 20–200 ms per write until the network heals.
    pub slow_disk: bool,
    /// A node is crashed in the middle of its next snapshot install.
    pub snapshot_crash: bool,
    /// Not a fault but an operator's hand: nodes join and leave.
    pub membership: bool,
}

impl Faults {
    pub fn all() -> Self {
        Faults {
            crash: true,
            partition: true,
            loss: true,
            skew: true,
            slow_disk: true,
            snapshot_crash: true,
            membership: true,
        }
    }

    /// `crash,partition,loss,skew,slow-disk,snapshot-crash,membership` (or `all`, or `none`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut f = Faults::default();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match word {
                "crash" => f.crash = true,
                "partition" => f.partition = true,
                "loss" => f.loss = true,
                "skew" => f.skew = true,
                "slow-disk" => f.slow_disk = true,
                "snapshot-crash" => f.snapshot_crash = true,
                "membership" => f.membership = true,
                "all" => f = Faults::all(),
                "none" => {}
                other => {
                    return Err(format!("faults: unknown fault {other:?} (crash, partition, loss, skew, slow-disk, snapshot-crash, membership, all, none)"))
                }
            }
        }
        Ok(f)
    }
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub steps: u32,
    pub faults: Faults,
    /// Test-only: fsync does nothing, so crashes lose acknowledged writes.
    /// The invariants must catch it.
    pub broken_skip_fsync: bool,
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
}

/// Virtual ms between two steps.
const STEP_MS: u64 = 50;
/// Once faults stop, the cluster must agree within this much virtual time.
pub const CONVERGENCE_BOUND_MS: u64 = 20_000;
/// The daily quota the workload charges against; the state machine must never pass it.
const QUOTA_MESSAGES_MAX: u32 = 12;
/// The proposers' clocks start here: a fixed instant a second before
/// midnight UTC, so skewed clocks straddle the day change.
const EPOCH_MS: u64 = 20_000 * DAY_MS - 1_000;

#[derive(Default)]
struct Ledger {
    /// Greylist triplets whose attempt was acknowledged as committed.
    triplets: BTreeSet<String>,
    /// Quota charges acknowledged as charged: (user, proposer's clock).
    charged: Vec<(String, u64)>,
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

    /// Nodes still in the cluster, up or down.
    fn members(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).filter(|id| !self.removed.contains(id)).collect()
    }

    /// An operator adds a node (a fresh disk, caught up as a learner, then
    /// promoted) or removes one, through the leader, as `cluster add` and
    /// `cluster remove` do; between 3 and 7 members.
    async fn change_membership(&mut self) {
        let Some(leader) = self.leader() else { return };
        let Some(raft) = self.net.state().nodes.get(&leader).cloned() else { return };
        let members = self.members();
        let ledger = self.ledger.clone();
        let start = self.start;
        let note = move |ledger: &Mutex<Ledger>, text: String| {
            let t = start.elapsed().as_millis() as u64;
            lock(ledger).events.push((t, text));
        };
        if members.len() < 7 && (members.len() <= 3 || self.rng.gen_bool(0.5)) {
            let id = self.nodes.iter().map(|n| n.id).max().unwrap_or(0) + 1;
            let mut node = SimNode::new(id, self.skip_fsync);
            if let Err(e) = node.start(&self.net).await {
                self.violation(format!("new node {id} did not start: {e}"));
                return;
            }
            self.nodes.push(node);
            lock(&self.ledger).joining.insert(id);
            self.event(format!("JOIN node {id} through leader {leader}"));
            tokio::spawn(async move {
                let joined = async {
                    raft.add_learner(id, crate::world::info(id), true).await.map_err(|e| e.to_string())?;
                    raft.change_membership(openraft::ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                        .await
                        .map_err(|e| e.to_string())
                };
                match tokio::time::timeout(Duration::from_secs(10), joined).await {
                    Ok(Ok(_)) => note(&ledger, format!("JOINED node {id} as a voter")),
                    Ok(Err(e)) => note(&ledger, format!("JOIN node {id} failed ({e})")),
                    Err(_) => note(&ledger, format!("JOIN node {id}: no answer within 10 s")),
                }
                lock(&ledger).joining.remove(&id);
            });
        } else if members.len() > 3 {
            let victim = members[self.rng.gen_range(0..members.len())];
            self.event(format!("LEAVE node {victim} through leader {leader}"));
            tokio::spawn(async move {
                let change = openraft::ChangeMembers::RemoveVoters(BTreeSet::from([victim]));
                match tokio::time::timeout(Duration::from_secs(10), raft.change_membership(change, false)).await {
                    Ok(Ok(_)) => note(&ledger, format!("LEFT node {victim}")),
                    Ok(Err(e)) => note(&ledger, format!("LEAVE node {victim} failed ({e})")),
                    Err(_) => note(&ledger, format!("LEAVE node {victim}: no answer within 10 s")),
                }
            });
        }
    }

    /// Stops the nodes the committed membership no longer holds, as an
    /// operator stops the process after `cluster remove` (or after a join
    /// that never took). Read from the leader's membership once the leader
    /// has applied it, not from the change's answer, which a crash can lose.
    async fn retire_removed(&mut self) {
        let Some(leader) = self.leader() else { return };
        let Some(raft) = self.nodes.iter().find(|n| n.id == leader).and_then(|n| n.raft.clone()) else { return };
        let m = raft.metrics().borrow().clone();
        let membership = m.membership_config.clone();
        let committed = membership.log_id().map(|l| l.index) <= m.last_applied.map(|l| l.index);
        if !committed {
            return;
        }
        let joining = lock(&self.ledger).joining.clone();
        let gone: Vec<NodeId> = self
            .members()
            .into_iter()
            .filter(|id| !joining.contains(id) && membership.membership().get_node(id).is_none())
            .collect();
        for id in gone {
            if let Some(node) = self.nodes.iter_mut().find(|n| n.id == id) {
                node.crash(&self.net).await;
            }
            self.removed.insert(id);
            self.down_until.remove(&id);
            self.event(format!("STOP node {id}: no longer a member"));
        }
    }

    fn live(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|n| n.is_up()).map(|n| n.id).collect()
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter_map(|n| n.raft.as_ref().map(|r| (n.id, r)))
            .find_map(|(id, r)| (r.metrics().borrow().state == ServerState::Leader).then_some(id))
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
                recipients: 1,
                messages_max: QUOTA_MESSAGES_MAX,
                recipients_max: 1_000,
            },
            8 => Command::IncrementHijack {
                user: format!("u{}@example.com", self.rng.gen_range(0..3)),
                window_ms: 60_000,
                threshold: 1_000,
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

    async fn inject_fault(&mut self, step: u32, faults: Faults) {
        let kind = self.rng.gen_range(0..6);
        match kind {
            0 if faults.crash => {
                let live = self.live();
                // The leader is the interesting victim: crash it half the time.
                let victim = match self.leader() {
                    Some(l) if self.rng.gen_bool(0.5) => Some(l),
                    _ if !live.is_empty() => Some(live[self.rng.gen_range(0..live.len())]),
                    _ => None,
                };
                if let Some(id) = victim {
                    if let Some(node) = self.nodes.iter_mut().find(|n| n.id == id) {
                        node.crash(&self.net).await;
                    }
                    let back = step + self.rng.gen_range(5..40);
                    self.down_until.insert(id, back);
                    self.event(format!("CRASH node {id} (back at step {back})"));
                }
            }
            1 if faults.partition => {
                let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
                let side: BTreeSet<NodeId> = match (self.rng.gen_range(0..3), self.leader()) {
                    (0, Some(leader)) => BTreeSet::from([leader]),
                    (1, _) => ids.iter().copied().filter(|_| self.rng.gen_bool(0.3)).collect(),
                    _ => ids.iter().take(ids.len() / 2).copied().collect(),
                };
                let heal = step + self.rng.gen_range(5..40);
                self.event(format!("PARTITION {side:?} | rest (heals at step {heal})"));
                self.net.state().partition = Some(side);
                self.heal_at = Some(heal);
            }
            2 if faults.loss => {
                let loss = self.rng.gen_range(0.05..0.3);
                let heal = step + self.rng.gen_range(5..40);
                self.event(format!("LOSS {:.0}% of messages, 5% duplicated (heals at step {heal})", loss * 100.0));
                let mut s = self.net.state();
                s.loss = loss;
                s.duplication = 0.05;
                drop(s);
                self.heal_at = Some(heal);
            }
            3 if faults.skew => {
                let ids: Vec<NodeId> = self.nodes.iter().map(|n| n.id).collect();
                let id = ids[self.rng.gen_range(0..ids.len())];
                let skew = self.rng.gen_range(-5_000..=5_000);
                self.skew_ms.insert(id, skew);
                self.event(format!("SKEW node {id} clock by {skew} ms"));
            }
            4 if faults.slow_disk => {
                let id = self.nodes[self.rng.gen_range(0..self.nodes.len())].id;
                let ms = self.rng.gen_range(20..200);
                let heal = step + self.rng.gen_range(5..40);
                self.nodes.iter().filter(|n| n.id == id).for_each(|n| n.faults.slow_ms.store(ms, Ordering::Relaxed));
                self.event(format!("SLOW DISK node {id}: {ms} ms per write (heals at step {heal})"));
                self.heal_at = Some(heal);
            }
            5 if faults.snapshot_crash => {
                // A node that is behind is the one that will install: prefer a
                // node that is down or cut off over the leader.
                let leader = self.leader();
                let candidates: Vec<NodeId> =
                    self.nodes.iter().map(|n| n.id).filter(|id| Some(*id) != leader).collect();
                let id = candidates[self.rng.gen_range(0..candidates.len())];
                let trap = if self.rng.gen_bool(0.5) { InstallTrap::BeforeApply } else { InstallTrap::AfterApply };
                self.nodes.iter().filter(|n| n.id == id).for_each(|n| n.faults.arm(trap));
                self.event(format!("ARM node {id}: crash during its next snapshot install ({trap:?})"));
            }
            _ => {}
        }
    }

    async fn heal_network(&mut self) {
        let mut s = self.net.state();
        s.partition = None;
        s.loss = 0.0;
        s.duplication = 0.0;
        drop(s);
        for node in &self.nodes {
            node.faults.slow_ms.store(0, Ordering::Relaxed);
        }
        self.heal_at = None;
        self.event("HEAL network and disks".into());
    }

    /// Crashes the nodes whose snapshot install reached its trap.
    async fn spring_traps(&mut self, step: u32) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].faults.trapped.swap(false, Ordering::Relaxed) || !self.nodes[i].is_up() {
                continue;
            }
            let id = self.nodes[i].id;
            self.nodes[i].crash(&self.net).await;
            self.install_crashes += 1;
            let back = step + self.rng.gen_range(5..40);
            self.down_until.insert(id, back);
            self.event(format!("CRASH node {id} inside a snapshot install (back at step {back})"));
        }
    }

    async fn restart(&mut self, id: NodeId) {
        if self.removed.contains(&id) {
            self.down_until.remove(&id);
            return;
        }
        let net = self.net.clone();
        // Real processes do not share their timers' phase: without this, every
        // node's election tick lands on the same virtual instant, and equal
        // (tick-rounded) timeouts collide election after election.
        tokio::time::sleep(Duration::from_millis(self.rng.gen_range(0..STEP_MS))).await;
        let Some(node) = self.nodes.iter_mut().find(|n| n.id == id) else { return };
        match node.start(&net).await {
            Ok(()) => {
                self.log_checked.remove(&id);
                self.event(format!("RESTART node {id}"))
            }
            Err(e) => self.violations.push(format!("node {id} could not restart from its disk: {e}")),
        }
        self.down_until.remove(&id);
    }

    /// Records a violation once, however often a check sees it.
    fn violation(&mut self, text: String) {
        if !self.violations.contains(&text) {
            self.violations.push(text);
        }
    }

    /// The invariants checked at every step.
    fn check(&mut self) {
        let mut found = Vec::new();
        for node in &self.nodes {
            let Some(raft) = &node.raft else { continue };
            let m = raft.metrics().borrow().clone();
            if m.state == ServerState::Leader {
                match self.leaders.get(&m.current_term) {
                    Some(other) if *other != node.id => found.push(format!(
                        "two leaders in term {}: node {other} and node {} (its vote {}, leader {:?})",
                        m.current_term, node.id, m.vote, m.current_leader
                    )),
                    Some(_) => {}
                    None => {
                        self.leaders.insert(m.current_term, node.id);
                        self.event(format!("LEADER node {} in term {}", node.id, m.current_term));
                    }
                }
            }
            let applied = node.read.load();
            let hash = state_hash(&applied.state);
            match self.states.get(&applied.applied_index) {
                Some(h) if *h != hash && applied.applied_index > 0 => found.push(format!(
                    "node {} holds a different state at applied index {}",
                    node.id, applied.applied_index
                )),
                Some(_) => {}
                None => {
                    self.states.insert(applied.applied_index, hash);
                }
            }
            if let Some(q) = applied.state.counters.daily_quota.values().find(|q| q.messages > QUOTA_MESSAGES_MAX) {
                found.push(format!("node {}: a daily quota reached {} > {QUOTA_MESSAGES_MAX}", node.id, q.messages));
            }
        }
        for v in found {
            self.violation(v);
        }
    }

    /// The log invariants: each node's stored log runs without holes and
    /// its terms never go back; every entry a node has applied is the one
    /// every other node applied at that index; an acknowledged write sits at
    /// the index it was acknowledged at. Entries past a node's applied index
    /// may still be replaced (an old leader's tail), so they are not compared.
    async fn check_logs(&mut self) {
        let mut found = Vec::new();
        let acked = lock(&self.ledger).acked.clone();
        for node in self.nodes.iter_mut() {
            let (Some(raft), Some(log)) = (&node.raft, node.log.as_mut()) else { continue };
            let applied = raft.metrics().borrow().last_applied.map(|l| l.index).unwrap_or(0);
            let from = self.log_checked.get(&node.id).copied().unwrap_or(0);
            let Ok(entries) = log.try_get_log_entries(from..).await else { continue };
            self.log_checked.insert(node.id, applied.max(from));
            for pair in entries.windows(2) {
                let (a, b) = (&pair[0].log_id, &pair[1].log_id);
                if b.index != a.index + 1 {
                    found.push(format!("node {}: hole in the log between {} and {}", node.id, a.index, b.index));
                }
                if b.leader_id < a.leader_id {
                    found.push(format!("node {}: term goes back at index {} ({} after {})", node.id, b.index, b, a));
                }
            }
            for entry in entries.iter().filter(|e| e.log_id.index <= applied) {
                let seen = (entry.log_id, entry_digest(entry));
                match self.committed.get(&entry.log_id.index) {
                    Some(first) if *first != seen => found.push(format!(
                        "node {}: committed entry at index {} is {}, another node applied {}",
                        node.id, entry.log_id.index, entry.log_id, first.0
                    )),
                    Some(_) => {}
                    None => {
                        self.committed.insert(entry.log_id.index, seen);
                    }
                }
                if let Some((log_id, request)) = acked.get(&entry.log_id.index) {
                    let same = *log_id == entry.log_id
                        && matches!(&entry.payload, openraft::EntryPayload::Normal(r) if r == request);
                    if !same {
                        found.push(format!(
                            "node {}: acknowledged write {log_id} replaced by {} in the log",
                            node.id, entry.log_id
                        ));
                    }
                }
            }
        }
        for v in found {
            self.violation(v);
        }
    }

    /// After the faults stop: everyone up, same applied index and state,
    /// and every acknowledged write present on every node.
    async fn converge(&mut self) -> Option<u64> {
        let began = self.now_ms();
        loop {
            self.retire_removed().await;
            self.check();
            self.check_logs().await;
            let views: Vec<(u64, String)> = self
                .nodes
                .iter()
                .filter(|n| !self.removed.contains(&n.id))
                .map(|n| {
                    let a = n.read.load();
                    (a.applied_index, state_hash(&a.state))
                })
                .collect();
            if views.windows(2).all(|w| w[0] == w[1]) && views.first().is_some_and(|v| v.0 > 0) {
                return Some(self.now_ms() - began);
            }
            if self.now_ms() - began > CONVERGENCE_BOUND_MS {
                let registered: Vec<NodeId> = self.net.state().nodes.keys().copied().collect();
                let detail: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|n| !self.removed.contains(&n.id))
                    .map(|n| match &n.raft {
                        Some(_) if !registered.contains(&n.id) => format!("node {}: up but off the network", n.id),
                        None => format!("node {}: down", n.id),
                        Some(r) => {
                            let m = r.metrics().borrow().clone();
                            format!(
                                "node {}: {:?} term {} applied {:?} last log {:?} snapshot {:?} purged {:?}{}",
                                n.id,
                                m.state,
                                m.current_term,
                                m.last_applied.map(|l| l.index),
                                m.last_log_index,
                                m.snapshot.map(|l| l.index),
                                m.purged.map(|l| l.index),
                                m.running_state.as_ref().err().map(|e| format!(" STOPPED: {e}")).unwrap_or_default()
                            )
                        }
                    })
                    .collect();
                self.violations.push(format!(
                    "no convergence within {CONVERGENCE_BOUND_MS} ms after the faults stopped: {}",
                    detail.join("; ")
                ));
                return None;
            }
            tokio::time::sleep(Duration::from_millis(STEP_MS)).await;
        }
    }

    fn final_checks(&mut self) {
        let ledger = lock(&self.ledger);
        for node in self.nodes.iter().filter(|n| !self.removed.contains(&n.id)) {
            let applied = node.read.load();
            let state = &applied.state;
            if let Some(missing) = ledger.triplets.iter().find(|t| !state.counters.greylist.contains_key(*t)) {
                self.violations.push(format!("node {}: acknowledged greylist triplet {missing:?} is lost", node.id));
            }
            // Every acknowledged charge stamped on the final day is counted in it.
            for (user, quota) in &state.counters.daily_quota {
                let acked = ledger.charged.iter().filter(|(u, at)| u == user && at / DAY_MS == quota.day).count();
                if (quota.messages as usize) < acked {
                    self.violations.push(format!(
                        "node {}: {user} has {} charges on day {}, {acked} were acknowledged",
                        node.id, quota.messages, quota.day
                    ));
                }
            }
        }
    }
}

fn entry_digest(entry: &Entry) -> String {
    let bytes = bincode::serde::encode_to_vec(&entry.payload, bincode::config::standard()).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

fn state_hash(state: &consensus::ClusterState) -> String {
    let bytes = bincode::serde::encode_to_vec(state, bincode::config::standard()).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
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
        committed: BTreeMap::new(),
        log_checked: BTreeMap::new(),
        down_until: BTreeMap::new(),
        heal_at: None,
        install_crashes: 0,
        removed: BTreeSet::new(),
        skip_fsync: config.broken_skip_fsync,
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
    sim.final_checks();
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
    }
}
