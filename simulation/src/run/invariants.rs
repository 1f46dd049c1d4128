//! The invariants, checked at every step and once the faults stop.

use consensus::raft::{Entry, NodeId};
use consensus::state::counters::DAY_MS;
use openraft::{RaftLogReader, ServerState};
use sha2::{Digest, Sha256};
use std::time::Duration;

use super::{lock, Sim, CONVERGENCE_BOUND_MS, QUOTA_MESSAGES_MAX, STEP_MS};

impl Sim {
    /// Records a violation once, however often a check sees it.
    pub(super) fn violation(&mut self, text: String) {
        if !self.violations.contains(&text) {
            self.violations.push(text);
        }
    }

    /// The invariants checked at every step.
    pub(super) fn check(&mut self) {
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
            let highest = applied.state.counters.daily_quota.values().map(|q| q.messages).max().unwrap_or(0);
            self.quota_highest = self.quota_highest.max(highest);
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
    pub(super) async fn check_logs(&mut self) {
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
    pub(super) async fn converge(&mut self) -> Option<u64> {
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

    pub(super) fn final_checks(&mut self) {
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
