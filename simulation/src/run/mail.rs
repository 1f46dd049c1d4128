//! The mail path in a run (faults `takeover` and `disk-loss`): messages
//! accepted on the nodes through the real group commit (copy on another
//! member first), delivered by their owner under its lease, taken over by
//! the holder of their copy when the owner is cut off long enough or its
//! disk is lost for good. The checks: every acknowledged message is
//! delivered; a message delivered twice only in the documented case (its
//! owner delivered it, then the holder took it over before hearing so);
//! never twice by one node; never by the owner after the takeover.

use actors::queue::replica::{commit, run_rounds, ReplicaCluster, Replicator};
use actors::queue::spool::{RecipientState, Spool, SpooledMessage, SpooledRecipient};
use consensus::command::{ClusterRequest, Command};
use consensus::raft::NodeId;
use consensus::state::settings::key;
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{Sim, EPOCH_MS, STEP_MS};
use crate::disk::SimDisk;
use crate::mail::{SimCluster, SpoolRegistry};

/// The lease's length in the runs: short, so takeovers happen inside one.
pub const TAKEOVER_AFTER_S: u64 = 3;

/// What happened to the messages, for the checks.
#[derive(Default)]
pub struct MailLedger {
    /// Acknowledged messages: owner and the holder of the copy.
    pub accepted: BTreeMap<String, (NodeId, Option<NodeId>)>,
    pub accepted_at: BTreeMap<String, (u64, u64)>,
    /// The nodes holding a message now (owner and holder; the holder alone once it took over).
    pub copies: BTreeMap<String, BTreeSet<NodeId>>,
    /// When a holder took a message over.
    pub promoted: BTreeMap<String, (NodeId, u64)>,
    /// When an owner dropped its copy (its holder took it over).
    pub dropped: BTreeMap<String, (NodeId, u64)>,
    /// Every delivery: node and time.
    pub deliveries: BTreeMap<String, Vec<(NodeId, u64)>>,
    /// When a node's removal (its queue handed to the holders) was committed.
    pub removed_at: BTreeMap<NodeId, u64>,
    pub duplicates_documented: usize,
    pub lost_documented: usize,
}

pub fn lock(ledger: &Mutex<MailLedger>) -> std::sync::MutexGuard<'_, MailLedger> {
    ledger.lock().unwrap_or_else(|p| p.into_inner())
}

/// One node's mail system while it is up.
struct NodeMail {
    replicator: Arc<Replicator>,
    spool: Arc<Spool>,
    rounds: tokio::task::JoinHandle<()>,
    /// What the node's queue schedules: its spool as found at start, its
    /// acknowledged commits, what it took over (never a commit in flight).
    known: Arc<Mutex<BTreeSet<String>>>,
}

pub struct MailWorld {
    spools: SpoolRegistry,
    disks: BTreeMap<NodeId, SimDisk>,
    up: BTreeMap<NodeId, NodeMail>,
    pub ledger: Arc<Mutex<MailLedger>>,
    next: u64,
    /// Test-only: holders take over without recording it through Raft.
    broken_unrecorded_takeover: bool,
    /// Disks lost so far (at most one per run: one node lost is the promise).
    pub disks_lost: u32,
}

impl MailWorld {
    pub fn new(broken_unrecorded_takeover: bool) -> Self {
        Self {
            spools: Default::default(),
            disks: BTreeMap::new(),
            up: BTreeMap::new(),
            ledger: Default::default(),
            next: 0,
            broken_unrecorded_takeover,
            disks_lost: 0,
        }
    }
}

fn virtual_clock(start: tokio::time::Instant) -> Arc<dyn Fn() -> u64 + Send + Sync> {
    Arc::new(move || EPOCH_MS + start.elapsed().as_millis() as u64)
}

impl Sim {
    /// The settings of the mail path, committed before any fault.
    pub(super) fn mail_settings() -> Vec<Command> {
        [("queue.replicas", "2".to_string()), ("queue.takeover_after_s", TAKEOVER_AFTER_S.to_string())]
            .into_iter()
            .map(|(k, v)| Command::SetSetting { key: k.into(), value: v })
            .collect()
    }

    /// Opens the node's spool from its disk and starts its replication rounds.
    pub(super) fn start_mail(&mut self, id: NodeId) {
        let start = self.start;
        let Some(mail) = self.mail.as_mut() else { return };
        let Some(node) = self.nodes.iter().find(|n| n.id == id) else { return };
        let disk = mail.disks.entry(id).or_insert_with(|| SimDisk::new(false)).clone();
        let spool = match Spool::open_backend(disk.backend(), Path::new(&format!("sim-{id}/queue.redb"))) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.violations.push(format!("node {id}: its spool did not open: {e}"));
                return;
            }
        };
        let cluster = SimCluster {
            id,
            net: self.net.clone(),
            read: node.read.clone(),
            spools: mail.spools.clone(),
            clock: virtual_clock(start),
        };
        let cluster: Arc<dyn ReplicaCluster> = Arc::new(cluster);
        let replicator = Arc::new(Replicator::new(cluster, spool.clone()));
        let ledger = mail.ledger.clone();
        let found = spool.envelopes().map(|e| e.into_iter().map(|m| m.queue_id).collect()).unwrap_or_default();
        let known: Arc<Mutex<BTreeSet<String>>> = Arc::new(Mutex::new(found));
        let adopted = known.clone();
        let rounds = if mail.broken_unrecorded_takeover {
            tokio::spawn(broken_rounds(replicator.clone(), ledger, start, adopted))
        } else {
            let adopt = async move |messages: Vec<SpooledMessage>| {
                record_promotion(&ledger, &adopted, id, messages, start);
            };
            let dropped_ledger = mail.ledger.clone();
            let forget = async move |ids: Vec<String>| {
                let t = start.elapsed().as_millis() as u64;
                let mut l = lock(&dropped_ledger);
                for i in ids {
                    l.dropped.insert(i, (id, t));
                }
            };
            tokio::spawn(run_rounds(replicator.clone(), forget, adopt))
        };
        mail.spools.lock().unwrap_or_else(|p| p.into_inner()).insert(id, spool.clone());
        mail.up.insert(id, NodeMail { replicator, spool, rounds, known });
    }

    /// The node's mail system stops with it; unsynced spool writes are lost.
    /// With `lose_disk`, the spool's disk is gone for good.
    pub(super) fn stop_mail(&mut self, id: NodeId, lose_disk: bool) {
        let Some(mail) = self.mail.as_mut() else { return };
        if let Some(m) = mail.up.remove(&id) {
            m.rounds.abort();
        }
        mail.spools.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        if let Some(disk) = mail.disks.get(&id) {
            disk.crash();
        }
        if lose_disk {
            mail.disks.remove(&id);
        }
    }

    /// A client hands a message to a random live node; it is acknowledged
    /// once stored there and (queue.replicas = 2) copied to another member.
    pub(super) fn accept_message(&mut self) {
        let Some(mail) = self.mail.as_mut() else { return };
        let live: Vec<NodeId> = mail.up.keys().copied().collect();
        if live.is_empty() {
            return;
        }
        let owner = live[self.rng.gen_range(0..live.len())];
        let Some(node) = mail.up.get(&owner) else { return };
        mail.next += 1;
        let id = format!("M{owner}-{}", mail.next);
        let now = EPOCH_MS + self.start.elapsed().as_millis() as u64;
        // The remote server takes it a little later (the time a takeover needs to matter).
        let due = now + self.rng.gen_range(0..6_000);
        let to = vec![SpooledRecipient::new("r@remote.example", "r@remote.example")];
        let message = SpooledMessage {
            next_attempt_ms: due,
            ..SpooledMessage::new(
                id.clone(),
                "s@example.com".into(),
                to,
                format!("Subject: {id}\r\n\r\n.\r\n").into_bytes(),
                now,
            )
        };
        let (replicator, spool, ledger) = (node.replicator.clone(), node.spool.clone(), mail.ledger.clone());
        let known = node.known.clone();
        let start = self.start;
        tokio::spawn(async move {
            let began = start.elapsed().as_millis() as u64;
            let (_, holder, result) = commit(Some(&replicator), &spool, vec![message]).await;
            if result.is_ok() {
                known.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone());
                let mut l = lock(&ledger);
                l.accepted_at.insert(id.clone(), (began, start.elapsed().as_millis() as u64));
                l.accepted.insert(id.clone(), (owner, holder));
                l.copies.insert(id, [Some(owner), holder].into_iter().flatten().collect());
            }
        });
    }

    /// Each live node delivers its due messages: those with a copy elsewhere
    /// only under a fresh lease (the queue's rule).
    pub(super) fn deliver_due(&mut self) {
        let Some(mail) = self.mail.as_mut() else { return };
        let now = EPOCH_MS + self.start.elapsed().as_millis() as u64;
        let t = self.start.elapsed().as_millis() as u64;
        let takeover_after = Duration::from_secs(TAKEOVER_AFTER_S);
        for (id, node) in &mail.up {
            let Ok(envelopes) = node.spool.envelopes() else { continue };
            for m in envelopes.into_iter().filter(|m| !m.finished() && m.next_attempt_ms <= now) {
                let Ok(holder) = node.spool.holder_of(&m.queue_id) else { continue };
                let known = node.known.lock().unwrap_or_else(|p| p.into_inner()).contains(&m.queue_id);
                if !known || !node.replicator.lease.may_deliver(&m.queue_id, holder, takeover_after) {
                    continue;
                }
                let mut done = m.clone();
                done.recipients.iter_mut().for_each(|r| r.state = RecipientState::Delivered);
                if node.spool.update(&done, None).is_ok() {
                    lock(&mail.ledger).deliveries.entry(m.queue_id).or_default().push((*id, t));
                }
            }
        }
    }

    /// Fault `takeover`: a node is down longer than the lease, so the holders
    /// of its copies take over; then it comes back.
    pub(super) async fn crash_past_the_lease(&mut self, step: u32) {
        let live = self.live();
        if live.is_empty() {
            return;
        }
        let id = live[self.rng.gen_range(0..live.len())];
        let lease_steps = (TAKEOVER_AFTER_S * 1000 / STEP_MS) as u32;
        let steps = self.rng.gen_range(lease_steps + 20..lease_steps * 2 + 40);
        self.crash_for(id, step, steps, " past its lease").await;
    }

    /// Fault `disk-loss`: a node's machine is gone for good; the operator
    /// removes it (at most once a run: one lost node is what is promised).
    pub(super) async fn lose_a_disk(&mut self) {
        let members = self.members();
        let can = self.mail.as_ref().is_some_and(|m| m.disks_lost == 0);
        if !can || members.len() < 3 {
            return;
        }
        let Some(leader) = self.leader() else { return };
        let candidates: Vec<NodeId> = members.iter().copied().filter(|id| *id != leader).collect();
        if candidates.is_empty() {
            return;
        }
        let id = candidates[self.rng.gen_range(0..candidates.len())];
        if let Some(node) = self.nodes.iter_mut().find(|n| n.id == id) {
            node.crash(&self.net).await;
        }
        self.stop_mail(id, true);
        if let Some(m) = self.mail.as_mut() {
            m.disks_lost += 1;
        }
        self.down_until.remove(&id);
        self.removed.insert(id);
        self.event(format!("DISK LOST node {id}; the operator removes it"));
        let net = self.net.clone();
        let ledger = self.ledger.clone();
        let mail_ledger = self.mail.as_ref().map(|m| m.ledger.clone());
        let start = self.start;
        // The operator retries until the cluster has a leader again.
        tokio::spawn(async move {
            let leader = || {
                let rafts: Vec<_> = net.state().nodes.values().cloned().collect();
                rafts.into_iter().find(|r| r.metrics().borrow().state == openraft::ServerState::Leader)
            };
            let change = openraft::ChangeMembers::RemoveVoters(BTreeSet::from([id]));
            let mut removed = false;
            for _ in 0..60 {
                if let Some(raft) = leader() {
                    let asked =
                        tokio::time::timeout(Duration::from_secs(5), raft.change_membership(change.clone(), false));
                    if let Ok(Ok(_)) = asked.await {
                        removed = true;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if !removed {
                return;
            }
            for _ in 0..60 {
                let at_ms = EPOCH_MS + start.elapsed().as_millis() as u64;
                let request = ClusterRequest { at_ms, commands: vec![Command::SpoolOwnerRemoved { node_id: id }] };
                if let Some(raft) = leader() {
                    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), raft.client_write(request)).await {
                        let t = start.elapsed().as_millis() as u64;
                        super::lock(&ledger)
                            .events
                            .push((t, format!("REMOVED node {id}: its queue goes to the holders")));
                        if let Some(m) = &mail_ledger {
                            lock(m).removed_at.insert(id, t);
                        }
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    /// After the faults: delivery goes on until every acknowledged message
    /// is out, or 60 s of virtual time.
    pub(super) async fn drain_mail(&mut self) {
        if self.mail.is_none() {
            return;
        }
        for _ in 0..(60_000 / STEP_MS) {
            tokio::time::sleep(Duration::from_millis(STEP_MS)).await;
            self.retire_removed().await;
            self.deliver_due();
            let Some(mail) = &self.mail else { return };
            let l = lock(&mail.ledger);
            let removed = &self.removed;
            let waiting = l.accepted.keys().any(|id| {
                !l.deliveries.contains_key(id)
                    && !l.copies.get(id).is_some_and(|c| c.iter().all(|n| removed.contains(n)))
            });
            if !waiting {
                return;
            }
        }
    }

    /// The mail invariants, at the end.
    pub(super) fn mail_checks(&mut self) {
        let Some(mail) = &self.mail else { return };
        let mut found = Vec::new();
        let removed_in_state: BTreeSet<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.is_up())
            .flat_map(|n| {
                let state = n.read.load();
                state.state.spool_owners.owners.iter().filter(|(_, o)| o.removed).map(|(id, _)| *id).collect::<Vec<_>>()
            })
            .collect();
        let mut l = lock(&mail.ledger);
        let (mut duplicates, mut lost) = (0, 0);
        for (id, (owner, holder)) in &l.accepted {
            let deliveries = l.deliveries.get(id).cloned().unwrap_or_default();
            if deliveries.is_empty() {
                let gone = l.copies.get(id).is_some_and(|c| c.iter().all(|n| self.removed.contains(n)));
                if gone {
                    lost += 1;
                } else {
                    let lease = mail.up.get(owner).map(|m| m.replicator.lease.describe());
                    let spool =
                        self.nodes.iter().find(|n| n.id == *owner).map(|n| n.read.load().state.spool_owners.clone());
                    let on_owner = mail.up.get(owner).map(|m| {
                        (
                            m.spool.get(id).ok().flatten().is_some(),
                            m.known.lock().map(|k| k.contains(id)).unwrap_or(false),
                        )
                    });
                    let on_holder = holder
                        .and_then(|h| mail.up.get(&h))
                        .map(|m| m.spool.replica_ids(*owner).map(|ids| ids.contains(id)).unwrap_or(false));
                    found.push(format!(
                        "message {id} (owner {owner}, copy on {holder:?}) acknowledged, never delivered; copies {:?}, \
                         owner's lease {lease:?}, in owner's spool/known {on_owner:?}, replica on holder {on_holder:?}, \
                         takeovers {:?}, dropped {:?}, accepted at about {:?}",
                        l.copies.get(id),
                        l.dropped.get(id),
                        l.accepted_at.get(id),
                        spool.map(|s| s.takeovers)
                    ));
                }
                continue;
            }
            let nodes: BTreeSet<NodeId> = deliveries.iter().map(|(n, _)| *n).collect();
            if nodes.len() < deliveries.len() {
                found.push(format!("message {id} delivered twice by one node: {deliveries:?}"));
                continue;
            }
            if deliveries.len() == 1 {
                continue;
            }
            // Two nodes, in the documented cases only: the owner first, then
            // the holder that took it over after that delivery (it had not
            // heard yet); or the holder first, then the owner once the
            // holder was removed (its takeover ended with it).
            let promoted = l.promoted.get(id).copied();
            let (first, second) = (deliveries[0], deliveries.get(1).copied().unwrap_or(deliveries[0]));
            let owner_then_holder =
                first.0 == *owner && promoted.is_some_and(|(by, at)| by == second.0 && first.1 <= at);
            // The removal's write may commit after its proposer gave up on an
            // answer (a leader crashing): the final state says it happened.
            let holder_removed =
                |h: NodeId| l.removed_at.get(&h).is_some_and(|at| *at <= second.1) || removed_in_state.contains(&h);
            let holder_then_owner =
                second.0 == *owner && promoted.is_some_and(|(by, _)| by == first.0) && holder_removed(first.0);
            let documented = deliveries.len() == 2 && (owner_then_holder || holder_then_owner);
            if documented {
                duplicates += 1;
            } else {
                found.push(format!(
                    "message {id} (owner {owner}) delivered by two nodes outside the documented case: {deliveries:?}, takeover {promoted:?}"
                ));
            }
        }
        l.duplicates_documented = duplicates;
        l.lost_documented = lost;
        drop(l);
        for v in found.into_iter().take(5) {
            self.violation(v);
        }
    }

    /// The mail settings reached every node's state.
    pub(super) fn mail_configured(&self) -> bool {
        self.nodes.iter().filter(|n| n.is_up()).all(|n| n.read.load().state.settings.uint(key::QUEUE_REPLICAS) == 2)
    }
}

/// Node `holder` took these messages over: its queue schedules them, and
/// it alone holds them now.
fn record_promotion(
    ledger: &Mutex<MailLedger>,
    known: &Mutex<BTreeSet<String>>,
    holder: NodeId,
    messages: Vec<SpooledMessage>,
    start: tokio::time::Instant,
) {
    let t = start.elapsed().as_millis() as u64;
    let mut l = lock(ledger);
    let mut k = known.lock().unwrap_or_else(|p| p.into_inner());
    for m in messages {
        k.insert(m.queue_id.clone());
        l.copies.insert(m.queue_id.clone(), BTreeSet::from([holder]));
        l.promoted.insert(m.queue_id, (holder, t));
    }
}

/// The broken variant's rounds: lease and outbox as usual, but a holder
/// takes over an owner whose lease looks run out without recording it
/// through Raft — the owner, back, never hears of it and delivers its own
/// copies too. The checks must catch it.
async fn broken_rounds(
    replicator: Arc<Replicator>,
    ledger: Arc<Mutex<MailLedger>>,
    start: tokio::time::Instant,
    known: Arc<Mutex<BTreeSet<String>>>,
) {
    let me = replicator.node.id();
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        tick += 1;
        let _ = replicator.renew(async |_: Vec<String>| {}).await;
        let _ = replicator.flush_outbox().await;
        if !tick.is_multiple_of(4) {
            continue;
        }
        let state = replicator.node.state();
        let after_ms = TAKEOVER_AFTER_S * 1000;
        let now = replicator.node.now_ms();
        let Ok(owners) = replicator.spool.replica_owners() else { continue };
        for owner in owners.keys() {
            if *owner == me || !state.state.spool_owners.may_take_over(*owner, now, after_ms) {
                continue;
            }
            let Ok(moved) = replicator.spool.promote_replicas(*owner, None) else { continue };
            record_promotion(&ledger, &known, me, moved, start);
        }
    }
}
