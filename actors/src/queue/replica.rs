//! Spool replication (`queue.replicas = 2`): before the 250, each group
//! commit's messages are stored on one other member too (the holder), over
//! the cluster's mTLS port (`spool.replica` service). The holder's copy is
//! passive. Later changes (recipients delivered, the message finished, a
//! bounce) reach the holder through the owner's outbox, written in the same
//! transaction as the change. The owner delivers replicated messages only
//! while its lease is fresh (`consensus::state::spool_owners`); a holder
//! takes over when the lease has run out or the owner was removed.

use consensus::state::settings::key;
use consensus::{AppliedState, ClusterNode, Command, Outcome, PeerService};
use futures::future::BoxFuture;
use redb::ReadableTable;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

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

    /// Holder: the queue ids of the replicas it keeps of `owner`.
    pub fn replica_ids(&self, owner: u64) -> Result<Vec<String>, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(REPLICA_ENVELOPES).map_err(err)?;
        let mut ids = Vec::new();
        for item in table.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            let (from, _): (u64, SpooledMessage) = decode(v.value())?;
            if from == owner {
                ids.push(k.value().to_string());
            }
        }
        Ok(ids)
    }

    /// Holder: moves the replicas of `owner` into its own queue, in one
    /// transaction — all, or those in `granted` (the rest were claimed by
    /// another holder and are deleted); returns the moved envelopes.
    pub fn promote_replicas(
        &self,
        owner: u64,
        granted: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<Vec<SpooledMessage>, SpoolError> {
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
                if granted.is_some_and(|g| !g.contains(&id)) {
                    continue;
                }
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
        for item in txn.open_table(REPLICATED_TO).map_err(err)?.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            if v.value() == holder {
                dropped.push(k.value().to_string());
            }
        }
        forget_owned(&txn, &dropped)?;
        txn.commit().map_err(err)?;
        Ok(dropped)
    }

    /// Owner: forgets messages whose 250 was never sent (their copies could
    /// not be made): envelope, body and replication records, nobody told.
    pub fn discard(&self, queue_ids: &[String]) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        forget_owned(&txn, queue_ids)?;
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

/// Applies one `spool.replica` request (an owner's copies or changes).
pub fn serve_request(spool: &Spool, body: &[u8]) -> Result<(), String> {
    let request: ReplicaRequest = decode(body).map_err(|e| e.to_string())?;
    spool.apply_replica_updates(request.owner, &request.updates).map_err(|e| e.to_string())
}

/// Removes an owner's messages with their replication records (holder and
/// outbox entry) in `txn`, telling no holder.
fn forget_owned(txn: &redb::WriteTransaction, queue_ids: &[String]) -> Result<(), SpoolError> {
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
    Ok(())
}

/// Stores and updates the replicas other members send (off the async threads).
pub struct ReplicaService(pub Arc<Spool>);

impl PeerService for ReplicaService {
    fn call(&self, body: Vec<u8>) -> futures::future::BoxFuture<'static, Result<Vec<u8>, String>> {
        let spool = self.0.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || serve_request(&spool, &body)).await.map_err(|e| e.to_string())??;
            Ok(Vec::new())
        })
    }
}

/// What replication needs of the cluster: this node's id, the members, the
/// applied state, the replicated clock, proposals and calls of the
/// `spool.replica` service on another member. A running node is one
/// (`ClusterNode`); the deterministic simulator provides its own.
pub trait ReplicaCluster: Send + Sync {
    fn id(&self) -> u64;
    fn members(&self) -> Vec<u64>;
    fn state(&self) -> Arc<AppliedState>;
    /// Milliseconds since the epoch, as this node's proposer stamps them.
    fn now_ms(&self) -> u64;
    fn propose(&self, command: Command) -> BoxFuture<'_, Result<Outcome, String>>;
    fn call_replica(&self, node: u64, body: Vec<u8>, timeout: Duration) -> BoxFuture<'_, Result<Vec<u8>, String>>;
    /// Run spool IO on the calling task instead of the blocking pool: the
    /// simulator's single thread and virtual clock need every step in order.
    fn inline_io(&self) -> bool {
        false
    }
}

/// Runs `f` on the blocking pool, or right here when `inline`.
pub async fn spool_io<T: Send + 'static>(inline: bool, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    if inline {
        Ok(f())
    } else {
        tokio::task::spawn_blocking(f).await.map_err(|e| e.to_string())
    }
}

impl ReplicaCluster for ClusterNode {
    fn id(&self) -> u64 {
        self.id
    }

    fn members(&self) -> Vec<u64> {
        self.member_ids()
    }

    fn state(&self) -> Arc<AppliedState> {
        self.read.load()
    }

    fn now_ms(&self) -> u64 {
        (self.clock)()
    }

    fn propose(&self, command: Command) -> BoxFuture<'_, Result<Outcome, String>> {
        Box::pin(async move { self.proposer.propose(command).await.map_err(|e| e.to_string()) })
    }

    fn call_replica(&self, node: u64, body: Vec<u8>, timeout: Duration) -> BoxFuture<'_, Result<Vec<u8>, String>> {
        Box::pin(async move { self.call_member(node, REPLICA_SERVICE, body, timeout).await.map_err(|e| e.to_string()) })
    }
}

/// The owner's delivery lease as this node knows it: when its last
/// renewal (that reported no takeover left to settle) was proposed.
#[derive(Default)]
pub struct Lease {
    renewed: Mutex<Option<Instant>>,
    /// Holders that took over this node's copies and have not moved them
    /// yet: what was replicated to them is theirs to deliver, not ours.
    blocked: Mutex<std::collections::BTreeSet<u64>>,
    /// Messages such a holder claimed (wherever their copy is recorded).
    blocked_ids: Mutex<std::collections::BTreeSet<String>>,
}

impl Lease {
    /// Fresh for half of `queue.takeover_after_s` after the renewal was
    /// proposed: a holder may take over only after the whole of it, by the
    /// leader's clock, so the two never deliver at once.
    pub fn fresh(&self, takeover_after: Duration) -> bool {
        let renewed = self.renewed.lock().map(|r| *r).unwrap_or(None);
        renewed.is_some_and(|at| at.elapsed() < takeover_after / 2)
    }

    /// Whether message `queue_id`, whose copy is on `holder` (if any), may
    /// be delivered here now.
    pub fn may_deliver(&self, queue_id: &str, holder: Option<u64>, takeover_after: Duration) -> bool {
        if self.blocked_ids.lock().map(|b| b.contains(queue_id)).unwrap_or(true) {
            return false;
        }
        let Some(holder) = holder else { return true };
        let blocked = self.blocked.lock().map(|b| b.contains(&holder)).unwrap_or(true);
        !blocked && self.fresh(takeover_after)
    }

    /// For diagnostics: the age of the last renewal and the blocked holders.
    pub fn describe(&self) -> String {
        let renewed = self.renewed.lock().map(|r| *r).unwrap_or(None);
        let blocked = self.blocked.lock().map(|b| format!("{b:?}")).unwrap_or_default();
        format!("renewed {:?} ago, blocked holders {blocked}", renewed.map(|r| r.elapsed()))
    }

    fn renewed_at(&self, at: Instant) {
        if let Ok(mut r) = self.renewed.lock() {
            *r = Some(at);
        }
    }
}

/// The owner's side: sends copies, keeps the lease, tells holders of changes.
pub struct Replicator {
    pub node: Arc<dyn ReplicaCluster>,
    pub spool: Arc<Spool>,
    pub lease: Lease,
    next: AtomicUsize,
    /// Held (shared) by every group commit while it runs; a renewal that
    /// must drop taken-over copies waits for them (exclusive), so a commit
    /// whose first holder took over is never dropped half-done.
    commits: tokio::sync::RwLock<()>,
}

impl Replicator {
    pub fn new(node: Arc<dyn ReplicaCluster>, spool: Arc<Spool>) -> Self {
        Self { node, spool, lease: Lease::default(), next: AtomicUsize::new(0), commits: Default::default() }
    }

    fn settings(&self) -> (bool, bool, Duration, Duration) {
        let state = self.node.state();
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
        let state = self.node.state();
        let mut busy = state.state.spool_owners.taken_over_from(self.node.id());
        busy.extend(self.lease.blocked.lock().map(|b| b.iter().copied().collect::<Vec<_>>()).unwrap_or_default());
        let mut members: Vec<u64> =
            self.node.members().into_iter().filter(|id| *id != self.node.id() && !busy.contains(id)).collect();
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
        let body = wire(&ReplicaRequest { owner: self.node.id(), updates }).ok()?;
        for holder in plan {
            match self.node.call_replica(*holder, body.clone(), timeout).await {
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
        if let Ok(body) = wire(&ReplicaRequest { owner: self.node.id(), updates }) {
            let _ = self.node.call_replica(holder, body, timeout).await;
        }
    }

    /// One round of the outbox: tells each holder its changes; a holder no
    /// longer in the cluster has nothing to be told.
    pub async fn flush_outbox(&self) -> Result<usize, SpoolError> {
        let spool = self.spool.clone();
        let entries = spool_io(self.node.inline_io(), move || spool.outbox(OUTBOX_BATCH)).await.map_err(err)??;
        if entries.is_empty() {
            return Ok(0);
        }
        let members = self.node.members();
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
            let Ok(body) = wire(&ReplicaRequest { owner: self.node.id(), updates }) else { continue };
            match self.node.call_replica(holder, body, timeout).await {
                Ok(_) => sent.extend(done),
                Err(e) => tracing::debug!(holder, error = %e, "replica changes not told yet"),
            }
        }
        let count = sent.len();
        let spool = self.spool.clone();
        spool_io(self.node.inline_io(), move || spool.outbox_sent(&sent)).await.map_err(err)??;
        Ok(count)
    }

    /// Renews the lease. Before it counts as fresh, the copies of messages
    /// that holders took over and moved are dropped (`drop`: the queue
    /// forgets them) and each such takeover is acknowledged; messages
    /// replicated to a holder that took over but has not moved them yet are
    /// kept (it may be lost before it does) and not delivered.
    pub async fn renew(&self, drop: impl AsyncFn(Vec<String>)) -> Result<(), String> {
        let asked = Instant::now();
        let outcome = self.node.propose(Command::RenewSpoolLease { node_id: self.node.id() }).await;
        let (taken_over_by, waiting_for, claimed) = match outcome {
            Ok(Outcome::SpoolLease { taken_over_by, waiting_for, claimed }) => (taken_over_by, waiting_for, claimed),
            Ok(other) => return Err(format!("unexpected answer {other:?}")),
            Err(e) => return Err(e.to_string()),
        };
        // No new copies go to a holder in a takeover of this node (and none of
        // what it holds is delivered here) until the takeover has ended; a
        // commit in flight towards one fails its final check from now on.
        if let Ok(mut blocked) = self.lease.blocked.lock() {
            *blocked = waiting_for.iter().chain(&taken_over_by).copied().collect();
        }
        if let Ok(mut blocked) = self.lease.blocked_ids.lock() {
            *blocked = claimed.iter().map(|(_, id)| id.clone()).collect();
        }
        let _no_commits = if taken_over_by.is_empty() { None } else { Some(self.commits.write().await) };
        for holder in taken_over_by {
            let spool = self.spool.clone();
            let theirs: Vec<String> = claimed.iter().filter(|(h, _)| *h == holder).map(|(_, id)| id.clone()).collect();
            let dropped = spool_io(self.node.inline_io(), move || {
                let mut dropped = spool.drop_replicated_to(holder)?;
                // Claimed though recorded elsewhere: the recorded holder is told to drop its copy.
                for id in theirs {
                    if spool.remove(&id)? {
                        dropped.push(id);
                    }
                }
                Ok::<_, SpoolError>(dropped)
            })
            .await?;
            let dropped = dropped.map_err(|e| e.to_string())?;
            tracing::warn!(
                holder,
                messages = dropped.len(),
                "messages taken over by their holder; this node's copies dropped"
            );
            drop(dropped).await;
            let settle = Command::SettleSpoolTakeover { owner: self.node.id(), holder, promoted: false, acked: true };
            self.node.propose(settle).await?;
        }
        self.lease.renewed_at(asked);
        Ok(())
    }
}

/// The holder's side, one round: takes over the owners whose lease ran out
/// (or who were removed), and finishes takeovers under way: claims their
/// messages through Raft (each goes to the first holder that claims it),
/// moves the granted ones into this node's queue (`adopt` schedules them)
/// and deletes the others.
pub async fn take_over_round(
    node: &dyn ReplicaCluster,
    spool: &Arc<Spool>,
    adopt: impl AsyncFn(Vec<SpooledMessage>),
) -> Result<(), String> {
    use consensus::state::spool_owners::TAKEOVER_IDS_MAX;
    let inline = node.inline_io();
    let s = spool.clone();
    let held = spool_io(inline, move || s.replica_owners()).await?.map_err(|e| e.to_string())?;
    let state = node.state();
    let after_ms = state.state.settings.uint(key::QUEUE_TAKEOVER_AFTER_S).saturating_mul(1000);
    let now = node.now_ms();
    let me = node.id();
    let mut owners: std::collections::BTreeSet<u64> = held
        .keys()
        .copied()
        .filter(|o| *o != me && state.state.spool_owners.may_take_over(*o, now, after_ms))
        .collect();
    owners.extend(state.state.spool_owners.to_promote(me));
    'owners: for owner in owners {
        let s = spool.clone();
        let ids = spool_io(inline, move || s.replica_ids(owner)).await?.map_err(|e| e.to_string())?;
        let mut granted = std::collections::BTreeSet::new();
        let chunks: Vec<Vec<String>> = if ids.is_empty() {
            vec![Vec::new()]
        } else {
            ids.chunks(TAKEOVER_IDS_MAX).map(<[String]>::to_vec).collect()
        };
        for queue_ids in chunks {
            match node.propose(Command::TakeOverSpool { owner, by: me, queue_ids }).await {
                Ok(Outcome::SpoolClaims { granted: g }) => granted.extend(g),
                Ok(other) => return Err(format!("unexpected answer to a takeover: {other:?}")),
                Err(e) => {
                    tracing::debug!(owner, error = %e, "takeover not granted");
                    continue 'owners;
                }
            }
        }
        let s = spool.clone();
        let claimed = granted.clone();
        let moved = spool_io(inline, move || s.promote_replicas(owner, Some(&claimed))).await?;
        let moved = moved.map_err(|e| e.to_string())?;
        tracing::warn!(
            owner,
            messages = moved.len(),
            held = ids.len(),
            "took over queued messages of an unreachable or removed member"
        );
        adopt(moved).await;
        let settle = Command::SettleSpoolTakeover { owner, holder: me, promoted: true, acked: false };
        node.propose(settle).await?;
    }
    Ok(())
}

/// Runs the owner's and the holder's rounds for as long as the node runs:
/// the lease (every sixth of `queue.takeover_after_s`, between 1 and 10 s),
/// the outbox (every 500 ms) and takeovers (every 2 s). `forget` hears of
/// messages dropped because their holder took them over, `adopt` of
/// messages this node took over.
pub async fn run_rounds(
    replicator: Arc<Replicator>,
    forget: impl AsyncFn(Vec<String>) + Clone,
    adopt: impl AsyncFn(Vec<SpooledMessage>) + Clone,
) {
    let lease = {
        let r = replicator.clone();
        async move {
            // Checked often against the setting as it is now, so a shorter
            // queue.takeover_after_s takes effect at once.
            let mut last: Option<Instant> = None;
            loop {
                let every = (r.takeover_after() / 6).clamp(Duration::from_millis(500), Duration::from_secs(10));
                if last.is_none_or(|at| at.elapsed() >= every) {
                    last = Some(Instant::now());
                    if let Err(e) = r.renew(forget.clone()).await {
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
                if let Err(e) = take_over_round(r.node.as_ref(), &r.spool, adopt.clone()).await {
                    tracing::warn!(error = %e, "takeover round failed");
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    futures::join!(lease, outbox, takeover);
}

/// The rounds of a running node, telling its delivery queue.
pub async fn run(replicator: Arc<Replicator>, queue: crate::supervise::SupervisedAddr<super::DeliveryQueue>) {
    let q = queue.clone();
    let forget = async move |ids: Vec<String>| {
        let _ = q.addr().send(super::Forget(ids)).await;
    };
    let adopt = async move |messages: Vec<SpooledMessage>| {
        let _ = queue.addr().send(super::Adopt(messages)).await;
    };
    run_rounds(replicator, forget, adopt).await;
}

/// Why a group commit failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitError {
    /// `queue.replicas = 2` and no member took the copies.
    NoCopy,
    Write(String),
}

/// A group commit: the local write (recording the first choice of holder)
/// and the copy run at once; the 250 waits for both. Returns the messages,
/// the member holding their copies, and whether they are stored.
pub async fn commit(
    replicator: Option<&Arc<Replicator>>,
    spool: &Arc<Spool>,
    messages: Vec<SpooledMessage>,
) -> (Vec<SpooledMessage>, Option<u64>, Result<(), CommitError>) {
    let inline = replicator.is_some_and(|r| r.node.inline_io());
    let _commit = match replicator {
        Some(r) => Some(r.commits.read().await),
        None => None,
    };
    let plan = replicator.and_then(|r| r.plan());
    let first = plan.as_ref().and_then(|p| p.first().copied());
    let ids: Vec<String> = messages.iter().map(|m| m.queue_id.clone()).collect();
    let shared = Arc::new(messages);
    let copy = async {
        match (replicator, &plan) {
            (Some(r), Some(plan)) => r.copy(plan, &shared).await,
            _ => None,
        }
    };
    let (local_spool, local_messages) = (spool.clone(), shared.clone());
    let local = spool_io(inline, move || local_spool.put_batch(&local_messages, first));
    let (stored, mut holder) = futures::future::join(local, copy).await;
    let messages = Arc::try_unwrap(shared).unwrap_or_else(|still_shared| (*still_shared).clone());
    // A copy that took long (a member timed out first) may have arrived after
    // its holder claimed this node's messages in a takeover: it counts only
    // if the lease is still fresh now, for then no takeover was granted yet
    // and a later one finds the copy there.
    if let (Some(r), Some(h)) = (replicator, holder) {
        if !r.lease.may_deliver("", Some(h), r.takeover_after()) {
            tracing::warn!(holder = h, "copies made too late (this node's lease ran out meanwhile); taken back");
            r.withdraw(h, ids.clone()).await;
            holder = None;
        }
    }
    if let Err(e) = stored.and_then(|r| r.map_err(|e| e.to_string())) {
        if let (Some(r), Some(h)) = (replicator, holder) {
            r.withdraw(h, ids).await;
        }
        return (messages, None, Err(CommitError::Write(e)));
    }
    if plan.is_none() || holder == first {
        return (messages, holder, Ok(()));
    }
    let one_copy = replicator.is_some_and(|r| r.one_copy_allowed());
    let spool = spool.clone();
    if holder.is_none() && !one_copy {
        if let Ok(Err(e)) = spool_io(inline, move || spool.discard(&ids)).await {
            tracing::error!(error = %e, "dropping messages that lack their copy failed");
        }
        return (messages, None, Err(CommitError::NoCopy));
    }
    if holder.is_none() {
        tracing::warn!(messages = messages.len(), "accepted with one copy (queue.replicas_required = 1)");
    }
    // The copies went elsewhere than first planned, or nowhere.
    match spool_io(inline, move || spool.set_holder(&ids, holder)).await {
        Ok(Ok(())) => (messages, holder, Ok(())),
        Ok(Err(e)) => (messages, None, Err(CommitError::Write(e.to_string()))),
        Err(e) => (messages, None, Err(CommitError::Write(e))),
    }
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
        let moved = holder.promote_replicas(3, None).unwrap();
        assert_eq!(moved.iter().map(|m| m.queue_id.as_str()).collect::<Vec<_>>(), ["B", "C"]);
        assert_eq!(moved[0].attempts, 4, "the envelope as last told");
        assert_eq!(holder.get("C").unwrap().unwrap().data, message("C").data, "bodies move with them");
        assert_eq!(holder.replica_owners().unwrap(), BTreeMap::from([(4, 1)]));
        assert!(holder.promote_replicas(3, None).unwrap().is_empty(), "a second promotion moves nothing");
        // Only what Raft granted moves; the rest was another holder's.
        holder.apply_replica_updates(4, &[("F".into(), ReplicaUpdate::Store(message("F")))]).unwrap();
        assert_eq!(holder.replica_ids(4).unwrap(), ["E", "F"]);
        let granted = std::collections::BTreeSet::from(["F".to_string()]);
        let moved = holder.promote_replicas(4, Some(&granted)).unwrap();
        assert_eq!(moved.iter().map(|m| m.queue_id.as_str()).collect::<Vec<_>>(), ["F"]);
        assert!(holder.replica_owners().unwrap().is_empty() && holder.get("E").unwrap().is_none());

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
