//! The delivery queue (Postfix's cleanup + qmgr for now): gives each message
//! a queue id and a Received header, stores it durably with group commit,
//! answers the session only after the commit, then hands each recipient to
//! delivery and records progress until the message leaves the spool.
//!
//! Group commit: messages that arrive while a commit runs wait for the next
//! one, so N concurrent sessions cost about one fsync per round, not N.
//! Recovery: at start every message left in the spool is delivered again;
//! Maildir delivery skips copies that already arrived before the crash.
//! Remote recipients (alias targets outside our domains) stay queued until the
//! relay actor exists.

pub mod received;
pub mod spool;

use actix::prelude::*;
use consensus::ReadHandle;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

use crate::delivery::{DeliverLocal, LocalDelivery};
use crate::smtp::{InboundMessage, Reply};
use spool::{Spool, SpooledMessage, SpooledRecipient};

/// Store a message; answers with its queue id once it is on disk.
#[derive(Message)]
#[rtype(result = "Result<String, Reply>")]
pub struct Enqueue(pub Box<InboundMessage>);

type Waiter = oneshot::Sender<Result<String, Reply>>;

pub struct DeliveryQueue {
    spool: Arc<Spool>,
    read: ReadHandle,
    local: Addr<LocalDelivery>,
    /// Node id, part of every queue id so ids are unique across the cluster.
    node_id: u64,
    sequence: Arc<AtomicU64>,
    /// Messages waiting for the next commit.
    pending: Vec<(SpooledMessage, Waiter)>,
    committing: bool,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl DeliveryQueue {
    pub fn new(spool: Arc<Spool>, read: ReadHandle, local: Addr<LocalDelivery>, node_id: u64) -> Self {
        Self {
            spool,
            read,
            local,
            node_id,
            sequence: Arc::new(AtomicU64::new(0)),
            pending: Vec::new(),
            committing: false,
        }
    }

    fn hostname(&self) -> String {
        self.read.load().state.settings.get("smtp.hostname").unwrap_or_else(|_| "localhost".into())
    }

    /// Postfix-style queue id: time, node and a sequence, in upper-case hex.
    fn next_queue_id(&self, at_ms: u64) -> String {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        format!("{at_ms:011X}{:02X}{:04X}", self.node_id & 0xff, seq & 0xffff)
    }

    fn spooled(&self, message: InboundMessage) -> SpooledMessage {
        let queue_id = self.next_queue_id(message.received_ms);
        let header = received::received_header(&message, &self.hostname(), &queue_id);
        let mut data = Vec::with_capacity(header.len() + message.body.len());
        data.extend_from_slice(header.as_bytes());
        data.extend_from_slice(&message.body);
        let recipients = message
            .recipients
            .iter()
            .flat_map(|r| {
                r.deliver_to.iter().map(|to| SpooledRecipient {
                    original: r.address.clone(),
                    deliver_to: to.clone(),
                    delivered: false,
                })
            })
            .collect();
        SpooledMessage { queue_id, mail_from: message.mail_from, recipients, data, received_ms: message.received_ms }
    }

    fn commit_pending(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.pending.is_empty() {
            return;
        }
        self.committing = true;
        let (messages, waiters): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending).into_iter().unzip();
        let spool = self.spool.clone();
        let work = tokio::task::spawn_blocking(move || {
            let result = spool.put_batch(&messages);
            (messages, result)
        });
        ctx.spawn(work.into_actor(self).map(move |joined, act, ctx| {
            act.committing = false;
            match joined {
                Ok((messages, Ok(()))) => {
                    for (message, waiter) in messages.into_iter().zip(waiters) {
                        let _ = waiter.send(Ok(message.queue_id.clone()));
                        act.deliver(message, false, ctx);
                    }
                }
                Ok((_, Err(e))) => fail_all(waiters, &e.to_string()),
                Err(e) => fail_all(waiters, &e.to_string()),
            }
            act.commit_pending(ctx);
        }));
    }

    /// Hands every undelivered local recipient to local delivery, then records the progress.
    fn deliver(&mut self, mut message: SpooledMessage, recovering: bool, ctx: &mut Context<Self>) {
        let state = self.read.load();
        let data = Arc::new(std::mem::take(&mut message.data));
        let now_s = now_ms() / 1000;
        let mut sends = Vec::new();
        for (index, r) in message.recipients.iter().enumerate() {
            if r.delivered {
                continue;
            }
            if !state.state.directory.users.contains_key(&r.deliver_to) {
                tracing::warn!(queue_id = %message.queue_id, to = %r.deliver_to, "not a local mailbox; kept queued until relaying exists");
                continue;
            }
            let request = DeliverLocal {
                queue_id: message.queue_id.clone(),
                index,
                mailbox: r.deliver_to.clone(),
                data: data.clone(),
                recovering,
                now_s,
            };
            sends.push((index, self.local.send(request)));
        }
        if sends.is_empty() {
            return;
        }
        let spool = self.spool.clone();
        let work = async move {
            for (index, send) in sends {
                match send.await {
                    Ok(Ok(())) => message.recipients[index].delivered = true,
                    Ok(Err(e)) => tracing::warn!(queue_id = %message.queue_id, error = %e, "local delivery deferred"),
                    Err(e) => tracing::warn!(queue_id = %message.queue_id, error = %e, "local delivery unavailable"),
                }
            }
            message.data = Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone());
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = spool.update(&message) {
                    tracing::error!(queue_id = %message.queue_id, error = %e, "recording delivery failed");
                }
            })
            .await;
        };
        ctx.spawn(work.into_actor(self));
    }
}

fn fail_all(waiters: Vec<Waiter>, error: &str) {
    tracing::error!(%error, "queue commit failed");
    for waiter in waiters {
        let _ = waiter.send(Err(Reply::new(451, "4.3.0", "Queue write failed; try again later")));
    }
}

impl Actor for DeliveryQueue {
    type Context = Context<Self>;

    /// Delivers what a previous run left in the spool.
    fn started(&mut self, ctx: &mut Context<Self>) {
        match self.spool.all() {
            Ok(left) => {
                if !left.is_empty() {
                    tracing::info!(messages = left.len(), "resuming delivery of queued messages");
                }
                for message in left {
                    self.deliver(message, true, ctx);
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the spool failed"),
        }
    }
}

impl Handler<Enqueue> for DeliveryQueue {
    type Result = ResponseFuture<Result<String, Reply>>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        let message = self.spooled(*msg.0);
        self.pending.push((message, tx));
        self.commit_pending(ctx);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| Err(Reply::new(451, "4.3.0", "Queue unavailable; try again later")))
        })
    }
}
