//! The faults a run injects: crashes, partitions, lossy links, clock
//! skew, slow disks, and crashes inside a snapshot install.

use consensus::raft::NodeId;
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Sim, STEP_MS};
use crate::storage::InstallTrap;

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
    /// The mail path runs, and a node is down longer than its delivery
    /// lease, so the holders of its copies take over.
    pub takeover: bool,
    /// The mail path runs, and a node's disk is lost for good (once a run);
    /// the operator removes it.
    pub disk_loss: bool,
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
            takeover: true,
            disk_loss: true,
        }
    }

    /// `crash,partition,loss,skew,slow-disk,snapshot-crash,membership,takeover,disk-loss`
    /// (or `all`, or `none`).
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
                "takeover" => f.takeover = true,
                "disk-loss" => f.disk_loss = true,
                "all" => f = Faults::all(),
                "none" => {}
                other => {
                    return Err(format!("faults: unknown fault {other:?} (crash, partition, loss, skew, slow-disk, snapshot-crash, membership, takeover, disk-loss, all, none)"))
                }
            }
        }
        Ok(f)
    }
}

impl Sim {
    pub(super) async fn inject_fault(&mut self, step: u32, faults: Faults) {
        let kind = self.rng.gen_range(0..8);
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
                    self.crash_for_a_while(id, step, "").await;
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
            6 if faults.takeover => self.crash_past_the_lease(step).await,
            7 if faults.disk_loss => self.lose_a_disk().await,
            _ => {}
        }
    }

    pub(super) async fn heal_network(&mut self) {
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
    pub(super) async fn spring_traps(&mut self, step: u32) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].faults.trapped.swap(false, Ordering::Relaxed) || !self.nodes[i].is_up() {
                continue;
            }
            self.install_crashes += 1;
            self.crash_for_a_while(self.nodes[i].id, step, " inside a snapshot install").await;
        }
    }

    /// Power loss on one node; it comes back 5 to 40 steps later.
    async fn crash_for_a_while(&mut self, id: NodeId, step: u32, how: &str) {
        let steps = self.rng.gen_range(5..40);
        self.crash_for(id, step, steps, how).await;
    }

    /// Power loss on one node for `steps` steps.
    pub(super) async fn crash_for(&mut self, id: NodeId, step: u32, steps: u32, how: &str) {
        if let Some(node) = self.nodes.iter_mut().find(|n| n.id == id) {
            node.crash(&self.net).await;
        }
        self.stop_mail(id, false);
        let back = step + steps;
        self.down_until.insert(id, back);
        self.event(format!("CRASH node {id}{how} (back at step {back})"));
    }

    pub(super) async fn restart(&mut self, id: NodeId) {
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
                self.event(format!("RESTART node {id}"));
                self.start_mail(id);
            }
            Err(e) => self.violations.push(format!("node {id} could not restart from its disk: {e}")),
        }
        self.down_until.remove(&id);
    }
}
