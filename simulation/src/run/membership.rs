//! Operators' hands: nodes join and leave through the leader.

use consensus::raft::NodeId;
use rand::Rng;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use super::{lock, Ledger, Sim};
use crate::world::SimNode;

impl Sim {
    /// Nodes still in the cluster, up or down.
    pub(super) fn members(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).filter(|id| !self.removed.contains(id)).collect()
    }

    /// An operator adds a node (a fresh disk, caught up as a learner, then
    /// promoted) or removes one, through the leader, as `cluster add` and
    /// `cluster remove` do; between 3 and 7 members.
    pub(super) async fn change_membership(&mut self) {
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
            self.start_mail(id);
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
    pub(super) async fn retire_removed(&mut self) {
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
            self.stop_mail(id, false);
            // As `cluster remove-node` does: its queue goes to the holders of its copies.
            if self.mail.is_some() {
                let request = consensus::command::ClusterRequest {
                    at_ms: super::EPOCH_MS + self.start.elapsed().as_millis() as u64,
                    commands: vec![consensus::command::Command::SpoolOwnerRemoved { node_id: id }],
                };
                let leader_raft = raft.clone();
                let mail_ledger = self.mail.as_ref().map(|m| m.ledger.clone());
                let start = self.start;
                tokio::spawn(async move {
                    for _ in 0..20 {
                        if leader_raft.client_write(request.clone()).await.is_ok() {
                            if let Some(m) = &mail_ledger {
                                super::mail::lock(m).removed_at.insert(id, start.elapsed().as_millis() as u64);
                            }
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                });
            }
            self.removed.insert(id);
            self.down_until.remove(&id);
            self.event(format!("STOP node {id}: no longer a member"));
        }
    }
}
