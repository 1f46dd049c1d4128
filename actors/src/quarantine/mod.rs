//! The quarantine keeper: one actor per node that keeps the replicated
//! quarantine index and this node's held messages in step. Quarantined
//! messages stay held in the queue of the node that accepted them; the index
//! (`consensus::state::QuarantineIndex`) lists them for the whole cluster and
//! carries operators' requests. Each tick the keeper carries out the requests
//! for the messages this node holds (release, delete, retention) and forgets
//! them; now and then it reconciles: held messages the index lacks (a lost
//! proposal, a restart) are announced again, entries whose message is gone
//! (released or deleted with `queue` commands, bounced) are forgotten.

pub mod entry;

pub use entry::{entry_for, entry_from_spooled};

use actix::prelude::*;
use consensus::state::counters::DAY_MS;
use consensus::state::settings::key;
use consensus::state::{QuarantineReason, QuarantineState};
use consensus::{Command, Proposer, ReadHandle};
use std::collections::BTreeSet;
use std::time::Duration;

use crate::queue::control::{ControlQueue, ListQueue, QueueAction, ShowMessage};
use crate::queue::{now_ms, DeliveryQueue};
use crate::supervise::SupervisedAddr;

/// How often requests are looked for; a release waits at most this long.
const TICK: Duration = Duration::from_millis(500);
/// Reconcile every this many ticks (and at start).
const RECONCILE_TICKS: u32 = 120;

pub struct QuarantineKeeper {
    pub read: ReadHandle,
    pub proposer: Proposer,
    pub queue: SupervisedAddr<DeliveryQueue>,
    pub node_id: u64,
    busy: bool,
    ticks: u32,
}

impl QuarantineKeeper {
    pub fn new(read: ReadHandle, proposer: Proposer, queue: SupervisedAddr<DeliveryQueue>, node_id: u64) -> Self {
        Self { read, proposer, queue, node_id, busy: false, ticks: 0 }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        self.busy = true;
        let reconcile = self.ticks.is_multiple_of(RECONCILE_TICKS);
        self.ticks = self.ticks.wrapping_add(1);
        let work = Work {
            read: self.read.clone(),
            proposer: self.proposer.clone(),
            queue: self.queue.clone(),
            node_id: self.node_id,
        };
        let run = async move {
            work.carry_out_requests().await;
            if reconcile {
                work.reconcile().await;
            }
        };
        ctx.spawn(run.into_actor(self).map(|(), act, _| act.busy = false));
    }
}

impl Actor for QuarantineKeeper {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

struct Work {
    read: ReadHandle,
    proposer: Proposer,
    queue: SupervisedAddr<DeliveryQueue>,
    node_id: u64,
}

impl Work {
    async fn carry_out_requests(&self) {
        let applied = self.read.load();
        let settings = &applied.state.settings;
        let retention_ms = settings.uint(key::QUARANTINE_RETENTION_DAYS).saturating_mul(DAY_MS);
        // Spam goes sooner when spam.junk_retention_days says so (0: the general retention).
        let spam_days = settings.uint(key::SPAM_JUNK_RETENTION_DAYS);
        let spam_retention_ms =
            if spam_days == 0 { retention_ms } else { retention_ms.min(spam_days.saturating_mul(DAY_MS)) };
        let now = now_ms();
        let due: Vec<(String, QueueAction, &'static str)> = applied
            .state
            .quarantine
            .entries
            .iter()
            .filter(|(_, e)| e.node_id == self.node_id)
            .filter_map(|(id, e)| match e.state {
                QuarantineState::Releasing => Some((id.clone(), QueueAction::Release, "released")),
                QuarantineState::Deleting => Some((id.clone(), QueueAction::Delete, "deleted")),
                QuarantineState::Held
                    if now.saturating_sub(e.received_ms)
                        > if e.reason == QuarantineReason::Spam { spam_retention_ms } else { retention_ms } =>
                {
                    Some((id.clone(), QueueAction::Delete, "deleted after its retention"))
                }
                QuarantineState::Held => None,
            })
            .collect();
        for (id, action, done) in due {
            let result = self.queue.addr().send(ControlQueue { action, target: id.clone() }).await;
            match result {
                // Touched, or no longer there: either way the request is done.
                Ok(Ok(_)) => tracing::info!(queue_id = %id, "quarantined message {done}"),
                Ok(Err(e)) if e.contains("no message") => {}
                Ok(Err(e)) => {
                    tracing::warn!(queue_id = %id, error = %e, "quarantine request not carried out; will retry");
                    continue;
                }
                Err(e) => {
                    tracing::warn!(queue_id = %id, error = %e, "queue unavailable; will retry");
                    continue;
                }
            }
            self.forget(id).await;
        }
    }

    async fn reconcile(&self) {
        let Ok(Ok(queued)) = self.queue.addr().send(ListQueue).await else { return };
        let held: BTreeSet<&str> = queued.iter().filter(|e| e.held).map(|e| e.queue_id.as_str()).collect();
        let all: BTreeSet<&str> = queued.iter().map(|e| e.queue_id.as_str()).collect();
        let applied = self.read.load();
        let index = &applied.state.quarantine.entries;
        for (id, entry) in index.iter().filter(|(_, e)| e.node_id == self.node_id) {
            if entry.state == QuarantineState::Held && !held.contains(id.as_str()) {
                // Released or deleted with `queue` commands, or bounced: nothing is held any more.
                let gone = if all.contains(id.as_str()) { "no longer held" } else { "no longer queued" };
                tracing::info!(queue_id = %id, "quarantined message {gone}; forgotten");
                self.forget(id.clone()).await;
            }
        }
        for id in held.iter().filter(|id| !index.contains_key(**id)) {
            let Ok(Ok(Some((spooled, data)))) = self.queue.addr().send(ShowMessage(id.to_string())).await else {
                continue;
            };
            if let Some(entry) = entry_from_spooled(&spooled, &data, self.node_id) {
                tracing::info!(queue_id = %id, "announcing a quarantined message the index lacks");
                let command = Command::QuarantineAdd { id: id.to_string(), entry };
                if let Err(e) = self.proposer.propose(command).await {
                    tracing::debug!(queue_id = %id, error = %e, "quarantine index write not committed");
                }
            }
        }
    }

    async fn forget(&self, id: String) {
        if let Err(e) = self.proposer.propose(Command::QuarantineForget { id: id.clone() }).await {
            tracing::debug!(queue_id = %id, error = %e, "quarantine index write not committed; will retry");
        }
    }
}
