//! Operator control of the queue, like postqueue and postsuper: list, show,
//! flush, hold, release, delete. Changes are durable before they are
//! answered; a message in the middle of an attempt is held or deleted when
//! the attempt ends.

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use super::spool::{RecipientState, SpooledMessage};
use super::{now_ms, AfterAttempt, DeliveryQueue, Waiting};

/// One recipient as `queue list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueRecipient {
    pub address: String,
    pub original: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub status: Option<String>,
    pub diagnostic: Option<String>,
}

/// One message as `queue list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QueueEntry {
    pub queue_id: String,
    pub size: usize,
    pub received_ms: u64,
    pub sender: String,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub held: bool,
    /// An attempt runs right now.
    pub active: bool,
    pub recipients: Vec<QueueRecipient>,
}

impl QueueEntry {
    fn of(m: &SpooledMessage, active: bool) -> Self {
        Self {
            queue_id: m.queue_id.clone(),
            size: m.size as usize,
            received_ms: m.received_ms,
            sender: m.mail_from.clone(),
            attempts: m.attempts,
            next_attempt_ms: m.next_attempt_ms,
            held: m.held,
            active,
            recipients: m
                .recipients
                .iter()
                .map(|r| QueueRecipient {
                    address: r.deliver_to.clone(),
                    original: r.original.clone(),
                    state: match r.state {
                        RecipientState::Pending => "pending",
                        RecipientState::Delivered => "delivered",
                        RecipientState::Failed => "failed",
                    }
                    .into(),
                    status: r.last_failure.as_ref().map(|f| f.status.clone()),
                    diagnostic: r.last_failure.as_ref().map(|f| f.diagnostic.clone()),
                })
                .collect(),
        }
    }
}

/// Every queued message, oldest first.
#[derive(Message)]
#[rtype(result = "Result<Vec<QueueEntry>, String>")]
pub struct ListQueue;

/// One message with its content.
#[derive(Message)]
#[rtype(result = "Result<Option<(QueueEntry, Vec<u8>)>, String>")]
pub struct ShowMessage(pub String);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueAction {
    /// Attempt now, whatever the backoff says (postqueue -f / -i).
    Flush,
    /// No attempts until released (postsuper -h).
    Hold,
    /// Back to the queue, attempted now (postsuper -H).
    Release,
    /// Remove without delivery or bounce (postsuper -d).
    Delete,
}

/// Applies an action to one message, or to all with the id `ALL`. Answers how many it touched.
#[derive(Message)]
#[rtype(result = "Result<usize, String>")]
pub struct ControlQueue {
    pub action: QueueAction,
    pub target: String,
}

impl Handler<ListQueue> for DeliveryQueue {
    type Result = ResponseActFuture<Self, Result<Vec<QueueEntry>, String>>;

    fn handle(&mut self, _: ListQueue, _: &mut Context<Self>) -> Self::Result {
        let spool = self.spool.clone();
        let load = tokio::task::spawn_blocking(move || spool.envelopes());
        Box::pin(load.into_actor(self).map(|loaded, act, _| {
            let mut all = loaded.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            all.sort_by(|a, b| (a.received_ms, &a.queue_id).cmp(&(b.received_ms, &b.queue_id)));
            Ok(all.iter().map(|m| QueueEntry::of(m, act.busy.contains(&m.queue_id))).collect())
        }))
    }
}

impl Handler<ShowMessage> for DeliveryQueue {
    type Result = ResponseActFuture<Self, Result<Option<(QueueEntry, Vec<u8>)>, String>>;

    fn handle(&mut self, msg: ShowMessage, _: &mut Context<Self>) -> Self::Result {
        let spool = self.spool.clone();
        let id = msg.0;
        let load = tokio::task::spawn_blocking(move || spool.get(&id));
        Box::pin(load.into_actor(self).map(|loaded, act, _| {
            let found = loaded.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            Ok(found.map(|mut m| {
                let entry = QueueEntry::of(&m, act.busy.contains(&m.queue_id));
                (entry, std::mem::take(&mut m.data))
            }))
        }))
    }
}

impl Handler<ControlQueue> for DeliveryQueue {
    type Result = ResponseActFuture<Self, Result<usize, String>>;

    fn handle(&mut self, msg: ControlQueue, ctx: &mut Context<Self>) -> Self::Result {
        let all = msg.target == "ALL";
        let waiting: Vec<String> = if all {
            self.waiting.keys().cloned().collect()
        } else {
            self.waiting.get_key_value(&msg.target).map(|(k, _)| k.clone()).into_iter().collect()
        };
        let busy: Vec<String> = if all {
            self.busy.iter().cloned().collect()
        } else {
            self.busy.get(&msg.target).cloned().into_iter().collect()
        };
        if !all && waiting.is_empty() && busy.is_empty() {
            let reply = Err(format!("queue_id: no message {:?} in the queue", msg.target));
            return Box::pin(actix::fut::ready(reply));
        }
        match msg.action {
            QueueAction::Flush => {
                let mut count = busy.len();
                for id in &waiting {
                    if let Some(w) = self.waiting.get_mut(id) {
                        if !w.held {
                            w.next_attempt_ms = 0;
                            count += 1;
                        }
                    }
                }
                self.start_due(ctx);
                Box::pin(actix::fut::ready(Ok(count)))
            }
            QueueAction::Hold | QueueAction::Delete => {
                let after = if msg.action == QueueAction::Hold { AfterAttempt::Hold } else { AfterAttempt::Delete };
                for id in &busy {
                    self.after_attempt.insert(id.clone(), after);
                }
                self.change_waiting(waiting, busy.len(), msg.action)
            }
            QueueAction::Release => {
                let held: Vec<String> =
                    waiting.into_iter().filter(|id| self.waiting.get(id).is_some_and(|w| w.held)).collect();
                for id in &busy {
                    if self.after_attempt.get(id) == Some(&AfterAttempt::Hold) {
                        self.after_attempt.remove(id);
                    }
                }
                self.change_waiting(held, 0, msg.action)
            }
        }
    }
}

impl DeliveryQueue {
    /// Makes a hold, release or delete of waiting messages durable, then updates the schedule.
    fn change_waiting(
        &mut self,
        ids: Vec<String>,
        already: usize,
        action: QueueAction,
    ) -> ResponseActFuture<Self, Result<usize, String>> {
        for id in &ids {
            self.waiting.remove(id);
            self.busy.insert(id.clone());
        }
        let spool = self.spool.clone();
        let work = tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .map(|id| {
                    let result = match action {
                        QueueAction::Delete => spool.remove(&id).map(|_| None),
                        _ => spool.set_held(&id, action == QueueAction::Hold),
                    };
                    (id, result)
                })
                .collect::<Vec<_>>()
        });
        Box::pin(work.into_actor(self).map(move |joined, act, ctx| {
            let results = joined.map_err(|e| e.to_string())?;
            let mut count = already;
            let mut first_error = None;
            for (id, result) in results {
                act.busy.remove(&id);
                match result {
                    Ok(Some(m)) => {
                        count += 1;
                        let next = if m.held { m.next_attempt_ms } else { 0 };
                        act.waiting.insert(id, Waiting { next_attempt_ms: next, held: m.held });
                    }
                    Ok(None) => count += usize::from(action == QueueAction::Delete),
                    Err(e) => {
                        act.waiting.insert(id, Waiting { next_attempt_ms: now_ms(), held: false });
                        first_error.get_or_insert(e.to_string());
                    }
                }
            }
            act.start_due(ctx);
            match first_error {
                Some(e) => Err(e),
                None => Ok(count),
            }
        }))
    }
}
