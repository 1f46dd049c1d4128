//! Spool replication (`queue.replicas = 2`): before the 250, each group
//! commit's messages are stored on one other member too (the holder), over
//! the cluster's mTLS port (`spool.replica` service). The holder's copy is
//! passive. Later changes (recipients delivered, the message finished, a
//! bounce) reach the holder through the owner's outbox, written in the same
//! transaction as the change. The owner delivers replicated messages only
//! while its lease is fresh (`consensus::state::spool_owners`); a holder
//! takes over when the lease has run out or the owner was removed.

use consensus::state::settings::key;
use consensus::{ClusterNode, Command, Outcome, PeerService};
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::spool::{
    decode, encode, err, Spool, SpoolError, SpooledMessage, BODIES, ENVELOPES, OUTBOX, REPLICATED_TO, REPLICA_BODIES,
    REPLICA_ENVELOPES,
};

/// The peer service that stores and updates replicas.
pub const REPLICA_SERVICE: &str = "spool.replica";
/// Outbox entries sent per round.
const OUTBOX_BATCH: usize = 500;

/// An owner's change waiting for its holder: queue id, holder, the change,
/// and the entry's stored bytes.
pub type OutboxEntry = (String, u64, ReplicaUpdate, Vec<u8>);

/// A change the owner tells a holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaUpdate {
    /// A whole message (envelope and body).
    Store(SpooledMessage),
    /// The envelope as it now is (recipients' states, held); the body stays.
    Envelope(SpooledMessage),
    /// Delivered, bounced or deleted: the copy goes.
    Remove,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ReplicaRequest {
    pub owner: u64,
    pub updates: Vec<(String, ReplicaUpdate)>,
}

fn wire<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    encode(value).map_err(|e| e.to_string())
}

impl Spool {
    /// Holder: applies an owner's updates in one transaction (durable before the answer).
    pub fn apply_replica_updates(&self, owner: u64, updates: &[(String, ReplicaUpdate)]) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut envelopes = txn.open_table(REPLICA_ENVELOPES).map_err(err)?;
            let mut bodies = txn.open_table(REPLICA_BODIES).map_err(err)?;
            for (id, update) in updates {
                match update {
                    ReplicaUpdate::Store(m) => {
                        envelopes.insert(id.as_str(), encode(&(owner, m.clone_envelope()))?.as_slice()).map_err(err)?;
                        bodies.insert(id.as_str(), m.data.as_slice()).map_err(err)?;
                    }
                    ReplicaUpdate::Envelope(m) => {
                        let known = envelopes.get(id.as_str()).map_err(err)?.is_some();
                        if known {
                            envelopes
                                .insert(id.as_str(), encode(&(owner, m.clone_envelope()))?.as_slice())
                                .map_err(err)?;
                        }
                    }
                    ReplicaUpdate::Remove => {
                        envelopes.remove(id.as_str()).map_err(err)?;
                        bodies.remove(id.as_str()).map_err(err)?;
                    }
                }
            }
        }
        txn.commit().map_err(err)
    }

    /// Holder: how many replicas it keeps of each owner.
    pub fn replica_owners(&self) -> Result<BTreeMap<u64, usize>, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(REPLICA_ENVELOPES).map_err(err)?;
        let mut owners = BTreeMap::new();
        for item in table.iter().map_err(err)? {
            let (_, v) = item.map_err(err)?;
            let (owner, _): (u64, SpooledMessage) = decode(v.value())?;
            *owners.entry(owner).or_insert(0) += 1;
        }
        Ok(owners)
    }

    /// Holder: moves every replica of `owner` into its own queue, in one
    /// transaction; returns their envelopes (to schedule).
    pub fn promote_replicas(&self, owner: u64) -> Result<Vec<SpooledMessage>, SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        let mut moved = Vec::new();
        {
            let mut replica_envelopes = txn.open_table(REPLICA_ENVELOPES).map_err(err)?;
            let mut replica_bodies = txn.open_table(REPLICA_BODIES).map_err(err)?;
            let mut envelopes = txn.open_table(ENVELOPES).map_err(err)?;
            let mut bodies = txn.open_table(BODIES).map_err(err)?;
            let mut ids = Vec::new();
            for item in replica_envelopes.iter().map_err(err)? {
                let (k, v) = item.map_err(err)?;
                let (from, envelope): (u64, SpooledMessage) = decode(v.value())?;
                if from == owner {
                    ids.push((k.value().to_string(), envelope));
                }
            }
            for (id, envelope) in ids {
                let body = replica_bodies.remove(id.as_str()).map_err(err)?.map(|b| b.value().to_vec());
                replica_envelopes.remove(id.as_str()).map_err(err)?;
                let Some(body) = body else { continue };
                envelopes.insert(id.as_str(), encode(&envelope)?.as_slice()).map_err(err)?;
                bodies.insert(id.as_str(), body.as_slice()).map_err(err)?;
                moved.push(envelope);
            }
        }
        txn.commit().map_err(err)?;
        Ok(moved)
    }

    /// Owner: drops its copies of the messages replicated to `holder` (which
    /// took them over); returns their queue ids.
    pub fn drop_replicated_to(&self, holder: u64) -> Result<Vec<String>, SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        let mut dropped = Vec::new();
        {
            let mut to = txn.open_table(REPLICATED_TO).map_err(err)?;
            let mut outbox = txn.open_table(OUTBOX).map_err(err)?;
            let mut envelopes = txn.open_table(ENVELOPES).map_err(err)?;
            let mut bodies = txn.open_table(BODIES).map_err(err)?;
            for item in to.iter().map_err(err)? {
                let (k, v) = item.map_err(err)?;
                if v.value() == holder {
                    dropped.push(k.value().to_string());
                }
            }
            for id in &dropped {
                to.remove(id.as_str()).map_err(err)?;
                outbox.remove(id.as_str()).map_err(err)?;
                envelopes.remove(id.as_str()).map_err(err)?;
                bodies.remove(id.as_str()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)?;
        Ok(dropped)
    }

    /// Owner: forgets messages whose 250 was never sent (their copies could
    /// not be made): envelope, body and replication records, nobody told.
    pub fn discard(&self, queue_ids: &[String]) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut to = txn.open_table(REPLICATED_TO).map_err(err)?;
            let mut outbox = txn.open_table(OUTBOX).map_err(err)?;
            let mut envelopes = txn.open_table(ENVELOPES).map_err(err)?;
            let mut bodies = txn.open_table(BODIES).map_err(err)?;
            for id in queue_ids {
                to.remove(id.as_str()).map_err(err)?;
                outbox.remove(id.as_str()).map_err(err)?;
                envelopes.remove(id.as_str()).map_err(err)?;
                bodies.remove(id.as_str()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }

    /// Owner: the member holding this message's copy, if it has one.
    pub fn holder_of(&self, queue_id: &str) -> Result<Option<u64>, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(REPLICATED_TO).map_err(err)?;
        let found = table.get(queue_id).map_err(err)?.map(|v| v.value());
        Ok(found)
    }

    /// Owner: records that these messages' copies went to `holder` after all
    /// (the first choice failed), or that they have none.
    pub fn set_holder(&self, queue_ids: &[String], holder: Option<u64>) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut to = txn.open_table(REPLICATED_TO).map_err(err)?;
            for id in queue_ids {
                match holder {
                    Some(h) => to.insert(id.as_str(), h).map_err(err)?,
                    None => to.remove(id.as_str()).map_err(err)?,
                };
            }
        }
        txn.commit().map_err(err)
    }

    /// Owner: up to `max` changes not yet told, each with its stored bytes
    /// (so `outbox_sent` removes only what did not change since).
    pub fn outbox(&self, max: usize) -> Result<Vec<OutboxEntry>, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(OUTBOX).map_err(err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(err)?.take(max) {
            let (k, v) = item.map_err(err)?;
            let (holder, update): (u64, ReplicaUpdate) = decode(v.value())?;
            out.push((k.value().to_string(), holder, update, v.value().to_vec()));
        }
        Ok(out)
    }

    /// Owner: forgets the outbox entries that were told (unless changed since).
    pub fn outbox_sent(&self, sent: &[(String, Vec<u8>)]) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(OUTBOX).map_err(err)?;
            for (id, bytes) in sent {
                let same = table.get(id.as_str()).map_err(err)?.is_some_and(|v| v.value() == bytes.as_slice());
                if same {
                    table.remove(id.as_str()).map_err(err)?;
                }
            }
        }
        txn.commit().map_err(err)
    }
}

/// Stores and updates the replicas other members send (off the async threads).
pub struct ReplicaService(pub Arc<Spool>);

impl PeerService for ReplicaService {
    fn call(&self, body: Vec<u8>) -> futures::future::BoxFuture<'static, Result<Vec<u8>, String>> {
        let spool = self.0.clone();
        Box::pin(async move {
            let request: ReplicaRequest = decode(&body).map_err(|e| e.to_string())?;
            tokio::task::spawn_blocking(move || spool.apply_replica_updates(request.owner, &request.updates))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            Ok(Vec::new())
        })
    }
}

/// The owner's delivery lease as this node knows it: when its last
/// renewal (that reported no takeover left to settle) was proposed.
#[derive(Default)]
pub struct Lease {
    renewed: Mutex<Option<Instant>>,
}

impl Lease {
    /// Fresh for half of `queue.takeover_after_s` after the renewal was
    /// proposed: a holder may take over only after the whole of it, by the
    /// leader's clock, so the two never deliver at once.
    pub fn fresh(&self, takeover_after: Duration) -> bool {
        let renewed = self.renewed.lock().map(|r| *r).unwrap_or(None);
        renewed.is_some_and(|at| at.elapsed() < takeover_after / 2)
    }

    fn renewed_at(&self, at: Instant) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = Some(at);
        }
    }
}

/// The owner's side: sends copies, keeps the lease, tells holders of changes.
pub struct Replicator {
    pub node: Arc<ClusterNode>,
    pub spool: Arc<Spool>,
    pub lease: Lease,
    next: AtomicUsize,
}

impl Replicator {
    pub fn new(node: Arc<ClusterNode>, spool: Arc<Spool>) -> Self {
        Self { node, spool, lease: Lease::default(), next: AtomicUsize::new(0) }
    }

    fn settings(&self) -> (bool, bool, Duration, Duration) {
        let state = self.node.read.load();
        let s = &state.state.settings;
        (
            s.uint(key::QUEUE_REPLICAS) >= 2,
            s.uint(key::QUEUE_REPLICAS_REQUIRED) >= 2,
            Duration::from_secs(s.uint(key::QUEUE_TAKEOVER_AFTER_S)),
            Duration::from_millis(s.uint(key::QUEUE_REPLICA_TIMEOUT_MS)),
        )
    }

    pub fn takeover_after(&self) -> Duration {
        self.settings().2
    }

    /// Whether a message that lacks its copy may still be accepted.
    pub fn one_copy_allowed(&self) -> bool {
        !self.settings().1
    }

    /// Members that may hold copies, the next in turn first: every other
    /// member but those still settling a takeover of this node's messages.
    fn candidates(&self) -> Vec<u64> {
        let state = self.node.read.load();
        let busy = state.state.spool_owners.taken_over_from(self.node.id);
        let mut members: Vec<u64> =
            self.node.member_ids().into_iter().filter(|id| *id != self.node.id && !busy.contains(id)).collect();
        if !members.is_empty() {
            let start = self.next.fetch_add(1, Ordering::Relaxed) % members.len();
            members.rotate_left(start);
        }
        members
    }

    /// The members to try for a group commit's copies, best first; `None`
    /// when no copy is wanted (`queue.replicas = 1`). Empty while this
    /// node's lease is stale: it could not deliver them, and may be taken
    /// over already.
    pub fn plan(&self) -> Option<Vec<u64>> {
        let (wanted, _, takeover_after, _) = self.settings();
        if !wanted {
            return None;
        }
        if !self.lease.fresh(takeover_after) {
            tracing::warn!("no copy made: this node's delivery lease is not fresh (cut off from the cluster?)");
            return Some(Vec::new());
        }
        Some(self.candidates())
    }

    /// Sends the copies to the planned members in turn, each given
    /// `queue.replica_timeout_ms`; the one that stored them.
    pub async fn copy(&self, plan: &[u64], messages: &[SpooledMessage]) -> Option<u64> {
        let timeout = self.settings().3;
        let updates: Vec<(String, ReplicaUpdate)> =
            messages.iter().map(|m| (m.queue_id.clone(), ReplicaUpdate::Store(m.clone()))).collect();
        let body = wire(&ReplicaRequest { owner: self.node.id, updates }).ok()?;
        for holder in plan {
            match self.node.call_member(*holder, REPLICA_SERVICE, body.clone(), timeout).await {
                Ok(_) => return Some(*holder),
                Err(e) => tracing::warn!(holder, error = %e, "a member could not take the copies; trying the next"),
            }
        }
        None
    }

    /// Takes back copies the owner could not keep (its own write failed).
    pub async fn withdraw(&self, holder: u64, queue_ids: Vec<String>) {
        let updates = queue_ids.into_iter().map(|id| (id, ReplicaUpdate::Remove)).collect();
        let timeout = self.settings().3;
        if let Ok(body) = wire(&ReplicaRequest { owner: self.node.id, updates }) {
            let _ = self.node.call_member(holder, REPLICA_SERVICE, body, timeout).await;
        }
    }

    /// One round of the outbox: tells each holder its changes; a holder no
    /// longer in the cluster has nothing to be told.
    pub async fn flush_outbox(&self) -> Result<usize, SpoolError> {
        let spool = self.spool.clone();
        let entries = tokio::task::spawn_blocking(move || spool.outbox(OUTBOX_BATCH)).await.map_err(err)??;
        if entries.is_empty() {
            return Ok(0);
        }
        let members = self.node.member_ids();
        let timeout = self.settings().3;
        let mut by_holder: BTreeMap<u64, Vec<(String, ReplicaUpdate, Vec<u8>)>> = BTreeMap::new();
        for (id, holder, update, bytes) in entries {
            by_holder.entry(holder).or_default().push((id, update, bytes));
        }
        let mut sent = Vec::new();
        for (holder, items) in by_holder {
            let done: Vec<(String, Vec<u8>)> = items.iter().map(|(id, _, b)| (id.clone(), b.clone())).collect();
            if !members.contains(&holder) {
                sent.extend(done);
                continue;
            }
            let updates = items.into_iter().map(|(id, u, _)| (id, u)).collect();
            let Ok(body) = wire(&ReplicaRequest { owner: self.node.id, updates }) else { continue };
            match self.node.call_member(holder, REPLICA_SERVICE, body, timeout).await {
                Ok(_) => sent.extend(done),
                Err(e) => tracing::debug!(holder, error = %e, "replica changes not told yet"),
            }
        }
        let count = sent.len();
        let spool = self.spool.clone();
        tokio::task::spawn_blocking(move || spool.outbox_sent(&sent)).await.map_err(err)??;
        Ok(count)
    }

    /// Renews the lease. Before it counts as fresh, the copies of messages
    /// that holders took over are dropped (`drop`: the queue forgets them)
    /// and each takeover is acknowledged.
    pub async fn renew(&self, drop: impl AsyncFn(Vec<String>)) -> Result<(), String> {
        let asked = Instant::now();
        let outcome = self.node.proposer.propose(Command::RenewSpoolLease { node_id: self.node.id }).await;
        let taken_over_by = match outcome {
            Ok(Outcome::SpoolLease { taken_over_by }) => taken_over_by,
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        for holder in taken_over_by {
            let spool = self.spool.clone();
            let dropped = tokio::task::spawn_blocking(move || spool.drop_replicated_to(holder))
                .await
                .map_err(|e| e.to_string())?;
            let dropped = dropped.map_err(|e| e.to_string())?;
            tracing::warn!(
                holder,
                messages = dropped.len(),
                "messages taken over by their holder; this node's copies dropped"
            );
            drop(dropped).await;
            let settle = Command::SettleSpoolTakeover { owner: self.node.id, holder, promoted: false, acked: true };
            self.node.proposer.propose(settle).await.map_err(|e| e.to_string())?;
        }
        self.lease.renewed_at(asked);
        Ok(())
    }
}

/// The holder's side, one round: takes over the owners whose lease ran out
/// (or who were removed) and moves their replicas into this node's queue
/// (`adopt` schedules them).
pub async fn take_over_round(
    node: &ClusterNode,
    spool: &Arc<Spool>,
    adopt: impl AsyncFn(Vec<SpooledMessage>),
) -> Result<(), String> {
    let s = spool.clone();
    let held = tokio::task::spawn_blocking(move || s.replica_owners()).await.map_err(|e| e.to_string())?;
    let held = held.map_err(|e| e.to_string())?;
    let state = node.read.load();
    let after_ms = state.state.settings.uint(key::QUEUE_TAKEOVER_AFTER_S).saturating_mul(1000);
    let now = (node.clock)();
    for (owner, count) in held {
        if owner == node.id || !state.state.spool_owners.may_take_over(owner, now, after_ms) {
            continue;
        }
        match node.proposer.propose(Command::TakeOverSpool { owner, by: node.id }).await {
            Ok(_) => {
                tracing::warn!(owner, messages = count, "taking over the messages of an unreachable or removed member")
            }
            Err(e) => tracing::debug!(owner, error = %e, "takeover not granted"),
        }
    }
    let state = node.read.load();
    for owner in state.state.spool_owners.to_promote(node.id) {
        let s = spool.clone();
        let moved = tokio::task::spawn_blocking(move || s.promote_replicas(owner)).await.map_err(|e| e.to_string())?;
        let moved = moved.map_err(|e| e.to_string())?;
        tracing::warn!(owner, messages = moved.len(), "took over queued messages");
        adopt(moved).await;
        let settle = Command::SettleSpoolTakeover { owner, holder: node.id, promoted: true, acked: false };
        node.proposer.propose(settle).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs the owner's and the holder's rounds for as long as the node runs:
/// the lease (every sixth of `queue.takeover_after_s`, between 1 and 10 s),
/// the outbox (every 500 ms) and takeovers (every 2 s).
pub async fn run(replicator: Arc<Replicator>, queue: crate::supervise::SupervisedAddr<super::DeliveryQueue>) {
    let lease = {
        let (r, queue) = (replicator.clone(), queue.clone());
        async move {
            // Checked every second against the setting as it is now, so a
            // shorter queue.takeover_after_s takes effect at once.
            let mut last: Option<Instant> = None;
            loop {
                let every = (r.takeover_after() / 6).clamp(Duration::from_secs(1), Duration::from_secs(10));
                if last.is_none_or(|at| at.elapsed() >= every) {
                    last = Some(Instant::now());
                    let forget = |ids: Vec<String>| {
                        let queue = queue.clone();
                        async move {
                            let _ = queue.addr().send(super::Forget(ids)).await;
                        }
                    };
                    if let Err(e) = r.renew(forget).await {
                        tracing::debug!(error = %e, "delivery lease not renewed");
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    };
    let outbox = {
        let r = replicator.clone();
        async move {
            loop {
                match r.flush_outbox().await {
                    Ok(n) if n >= OUTBOX_BATCH => continue,
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "reading the replica outbox failed"),
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let takeover = {
        let r = replicator.clone();
        async move {
            loop {
                let adopt = |messages: Vec<SpooledMessage>| {
                    let queue = queue.clone();
                    async move {
                        let _ = queue.addr().send(super::Adopt(messages)).await;
                    }
                };
                if let Err(e) = take_over_round(&r.node, &r.spool, adopt).await {
                    tracing::warn!(error = %e, "takeover round failed");
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    futures::join!(lease, outbox, takeover);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::spool::{RecipientState, SpooledRecipient};

    fn message(id: &str) -> SpooledMessage {
        let to = vec![SpooledRecipient::new("x@remote.test", "x@remote.test")];
        SpooledMessage::new(id.into(), "a@b.org".into(), to, b"Subject: t\r\n\r\nbody\r\n".to_vec(), 5)
    }

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("queue.redb")).unwrap();
        (dir, spool)
    }

    #[test]
    fn the_owners_changes_reach_the_outbox_and_a_promotion_moves_copies() {
        let (_d, owner) = spool();
        owner.put_batch(&[message("A"), message("B"), message("C")], Some(7)).unwrap();
        owner.put_batch(&[message("D")], None).unwrap();
        // A finished message tells its holder to drop the copy; an unfinished one its new envelope.
        let mut a = message("A");
        a.recipients[0].state = RecipientState::Delivered;
        owner.update(&a, Some(&message("BOUNCE"))).unwrap();
        let mut b = message("B");
        b.attempts = 3;
        owner.update(&b, None).unwrap();
        owner.update(&message("D"), None).unwrap();
        let outbox = owner.outbox(100).unwrap();
        let told: Vec<(&str, u64, &str)> = outbox
            .iter()
            .map(|(id, h, u, _)| {
                let kind = match u {
                    ReplicaUpdate::Store(_) => "store",
                    ReplicaUpdate::Envelope(_) => "envelope",
                    ReplicaUpdate::Remove => "remove",
                };
                (id.as_str(), *h, kind)
            })
            .collect();
        assert_eq!(told, [("A", 7, "remove"), ("B", 7, "envelope"), ("BOUNCE", 7, "store")], "D has no copy");
        assert_eq!(owner.holder_of("BOUNCE").unwrap(), Some(7), "the bounce's copy goes to the same holder");
        // A change made after the read stays queued; the rest leave.
        let sent: Vec<(String, Vec<u8>)> = outbox.iter().map(|(id, _, _, bytes)| (id.clone(), bytes.clone())).collect();
        b.attempts = 4;
        owner.update(&b, None).unwrap();
        owner.outbox_sent(&sent).unwrap();
        assert_eq!(owner.outbox(100).unwrap().iter().map(|e| e.0.as_str()).collect::<Vec<_>>(), ["B"]);

        // The holder: copies stored, updated, removed; then promoted into its own queue.
        let (_h, holder) = spool();
        let stores: Vec<(String, ReplicaUpdate)> =
            ["A", "B", "C"].iter().map(|id| (id.to_string(), ReplicaUpdate::Store(message(id)))).collect();
        holder.apply_replica_updates(3, &stores).unwrap();
        holder.apply_replica_updates(4, &[("E".into(), ReplicaUpdate::Store(message("E")))]).unwrap();
        holder
            .apply_replica_updates(
                3,
                &[("A".into(), ReplicaUpdate::Remove), ("B".into(), ReplicaUpdate::Envelope(b.clone()))],
            )
            .unwrap();
        assert_eq!(holder.replica_owners().unwrap(), BTreeMap::from([(3, 2), (4, 1)]));
        let moved = holder.promote_replicas(3).unwrap();
        assert_eq!(moved.iter().map(|m| m.queue_id.as_str()).collect::<Vec<_>>(), ["B", "C"]);
        assert_eq!(moved[0].attempts, 4, "the envelope as last told");
        assert_eq!(holder.get("C").unwrap().unwrap().data, message("C").data, "bodies move with them");
        assert_eq!(holder.replica_owners().unwrap(), BTreeMap::from([(4, 1)]));
        assert!(holder.promote_replicas(3).unwrap().is_empty(), "a second promotion moves nothing");

        // The owner, back: its copies of what holder 7 took over go, the rest stay.
        let dropped = owner.drop_replicated_to(7).unwrap();
        assert_eq!(dropped, ["B", "BOUNCE", "C"]);
        assert!(owner.get("C").unwrap().is_none() && owner.get("D").unwrap().is_some());
        assert!(owner.outbox(100).unwrap().is_empty());
        // An attempt that ends after the drop records nothing.
        owner.update(&b, None).unwrap();
        assert!(owner.get("B").unwrap().is_none());
    }
}
