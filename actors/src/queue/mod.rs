//! The delivery queue (Postfix's cleanup + qmgr): gives each message a queue
//! id and a Received header, stores it durably with group commit, answers
//! the session only after the commit, then hands each recipient to local
//! delivery or to the relay, records the outcome, retries what was deferred
//! with backoff, and bounces what failed for good.
//!
//! Group commit: messages that arrive while a commit runs wait for the next
//! one, so N concurrent sessions cost about one fsync per round, not N.
//! Recovery: at start every message left in the spool is scheduled again;
//! Maildir delivery skips copies that already arrived before the crash.
//! A message is never worked on twice at once: while an attempt (or an
//! operator's change) runs it is `busy`, and operator requests that find it
//! busy take effect when the attempt ends.

pub mod bounce;
pub mod control;
pub mod received;
pub mod replica;
pub mod schedule;
pub mod spool;
mod spool_v1;

use actix::prelude::*;
use consensus::state::settings::key;
use consensus::ReadHandle;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

use crate::delivery::lmtp::{DeliverLmtp, LmtpDelivery};
use crate::delivery::{DeliverLocal, LocalDelivery};
use crate::message::{for_all, DeliveryOutcome, Failure};
use crate::relay::{Relay, RelayDomain};
use crate::smtp::{InboundMessage, Reply};
use crate::supervise::SupervisedAddr;
use replica::CommitError;
use schedule::{settle_attempt, RetryPolicy};
use spool::{RecipientState, Spool, SpooledMessage, SpooledRecipient};

/// Store a message; answers with its queue id once it is on disk.
#[derive(Message)]
#[rtype(result = "Result<String, Reply>")]
pub struct Enqueue(pub Box<InboundMessage>);

/// Queue a message on hold (quarantined): kept durably, never attempted
/// until an operator releases it (`gatehouse queue release ID`).
#[derive(Message)]
#[rtype(result = "Result<String, Reply>")]
pub struct EnqueueHeld(pub Box<InboundMessage>);

type Waiter = oneshot::Sender<Result<String, Reply>>;

/// How often the queue looks for deferred messages whose time has come.
const SCAN_INTERVAL: Duration = Duration::from_secs(1);
/// Messages started per scan, so a flush of a large queue does not load it all at once.
const DUE_PER_SCAN: usize = 200;

/// A queued message between attempts.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    next_attempt_ms: u64,
    held: bool,
}

/// An operator request that found its message in the middle of an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterAttempt {
    Hold,
    Delete,
}

/// Where mail for local users goes.
#[derive(Clone)]
pub enum LocalRoute {
    /// Our own Maildirs.
    Maildir(SupervisedAddr<LocalDelivery>),
    /// An external mailbox server over LMTP (Dovecot).
    Lmtp(SupervisedAddr<LmtpDelivery>),
}

pub struct DeliveryQueue {
    spool: Arc<Spool>,
    read: ReadHandle,
    local: LocalRoute,
    relay: SupervisedAddr<Relay>,
    /// Node id, part of every queue id so ids are unique across the cluster.
    node_id: u64,
    sequence: Arc<AtomicU64>,
    /// Messages waiting for the next commit.
    pending: Vec<(SpooledMessage, Waiter)>,
    committing: bool,
    /// Queued messages between attempts, by queue id.
    waiting: BTreeMap<String, Waiting>,
    /// Messages in an attempt or an operator change right now.
    busy: HashSet<String>,
    after_attempt: HashMap<String, AfterAttempt>,
    /// Copies on another member (`queue.replicas = 2`); `None` on a node
    /// started without a cluster (tests of the queue alone).
    replicator: Option<Arc<replica::Replicator>>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl DeliveryQueue {
    pub fn new(
        spool: Arc<Spool>,
        read: ReadHandle,
        local: LocalRoute,
        relay: SupervisedAddr<Relay>,
        node_id: u64,
    ) -> Self {
        Self {
            spool,
            read,
            local,
            relay,
            node_id,
            sequence: Arc::new(AtomicU64::new(0)),
            pending: Vec::new(),
            committing: false,
            waiting: BTreeMap::new(),
            busy: HashSet::new(),
            after_attempt: HashMap::new(),
            replicator: None,
        }
    }

    /// Keeps copies of accepted messages on other members as `queue.replicas` says.
    pub fn with_replicator(mut self, replicator: Arc<replica::Replicator>) -> Self {
        self.replicator = Some(replicator);
        self
    }

    /// A replicated message is delivered only under a fresh lease, and not
    /// while its holder is taking it over (see `replica`).
    fn may_deliver(&self, queue_id: &str, holder: Option<u64>) -> bool {
        match &self.replicator {
            Some(r) => r.lease.may_deliver(queue_id, holder, r.takeover_after()),
            None => true,
        }
    }

    fn hostname(&self) -> String {
        self.read.load().state.settings.text(key::SMTP_HOSTNAME)
    }

    fn retry_policy(&self) -> RetryPolicy {
        let state = self.read.load();
        let s = &state.state.settings;
        let ms = |key| s.uint(key) * 1000;
        RetryPolicy {
            lifetime_ms: ms(key::QUEUE_LIFETIME_S),
            min_backoff_ms: ms(key::QUEUE_MIN_BACKOFF_S),
            max_backoff_ms: ms(key::QUEUE_MAX_BACKOFF_S),
        }
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
            .flat_map(|r| r.deliver_to.iter().map(|to| SpooledRecipient::new(&r.address, to)))
            .collect();
        let junk = message.junk;
        SpooledMessage {
            junk,
            ..SpooledMessage::new(queue_id, message.mail_from, recipients, data, message.received_ms)
        }
    }

    fn commit_pending(&mut self, ctx: &mut Context<Self>) {
        if self.committing || self.pending.is_empty() {
            return;
        }
        self.committing = true;
        let (messages, waiters): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending).into_iter().unzip();
        let spool = self.spool.clone();
        let replicator = self.replicator.clone();
        let work = async move { replica::commit(replicator.as_ref(), &spool, messages).await };
        ctx.spawn(work.into_actor(self).map(move |(messages, holder, result), act, ctx| {
            act.committing = false;
            match result {
                Ok(()) => {
                    for (message, waiter) in messages.into_iter().zip(waiters) {
                        let _ = waiter.send(Ok(message.queue_id.clone()));
                        act.attempt_or_wait(message, holder, ctx);
                    }
                }
                Err(CommitError::NoCopy) => {
                    tracing::warn!(
                        messages = waiters.len(),
                        "no member took the copies in time; 451 (queue.replicas_required = 2)"
                    );
                    for waiter in waiters {
                        let reply =
                            Reply::new(451, "4.3.0", "Cannot store a second copy of the message now; try again later");
                        let _ = waiter.send(Err(reply));
                    }
                }
                Err(CommitError::Write(e)) => fail_all(waiters, &e),
            }
            act.commit_pending(ctx);
        }));
    }

    /// `queue.active_messages_max`: attempts (and operator changes) at once.
    fn active_max(&self) -> usize {
        self.read.load().state.settings.uint(key::QUEUE_ACTIVE_MESSAGES_MAX).max(1) as usize
    }

    /// Attempts a message now if fewer than `queue.active_messages_max` are
    /// in flight; else it waits, due now, for a free place. A held message
    /// (quarantined on arrival) only waits.
    fn attempt_or_wait(&mut self, message: SpooledMessage, holder: Option<u64>, ctx: &mut Context<Self>) {
        if !message.held && self.busy.len() < self.active_max() && self.may_deliver(&message.queue_id, holder) {
            self.busy.insert(message.queue_id.clone());
            self.attempt(message, false, ctx);
        } else {
            let waiting = Waiting { next_attempt_ms: 0, held: message.held };
            self.waiting.insert(message.queue_id, waiting);
        }
    }

    /// Starts attempts for waiting messages whose time has come, as many as
    /// `queue.active_messages_max` leaves room for.
    fn start_due(&mut self, ctx: &mut Context<Self>) {
        let now = now_ms();
        let room = self.active_max().saturating_sub(self.busy.len()).min(DUE_PER_SCAN);
        let due: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, w)| !w.held && w.next_attempt_ms <= now)
            .map(|(id, _)| id.clone())
            .take(room)
            .collect();
        for id in due {
            self.waiting.remove(&id);
            self.busy.insert(id.clone());
            let spool = self.spool.clone();
            let lookup = id.clone();
            let load = tokio::task::spawn_blocking(move || {
                let holder = spool.holder_of(&lookup)?;
                spool.get(&lookup).map(|m| m.map(|m| (m, holder)))
            });
            ctx.spawn(load.into_actor(self).map(move |loaded, act, ctx| match loaded {
                Ok(Ok(Some((message, holder)))) if !act.may_deliver(&id, holder) => {
                    tracing::debug!(queue_id = %id, "replicated message waits for this node's delivery lease");
                    act.busy.remove(&id);
                    let waiting = Waiting { next_attempt_ms: now_ms() + 5_000, held: message.held };
                    act.waiting.insert(id, waiting);
                }
                Ok(Ok(Some((message, _)))) => act.attempt(message, true, ctx),
                Ok(Ok(None)) => {
                    act.busy.remove(&id);
                }
                Ok(Err(e)) => {
                    tracing::error!(queue_id = %id, error = %e, "reading a queued message failed");
                    act.busy.remove(&id);
                    act.waiting.insert(id, Waiting { next_attempt_ms: now_ms() + 60_000, held: false });
                }
                Err(e) => {
                    tracing::error!(queue_id = %id, error = %e, "reading a queued message failed");
                    act.busy.remove(&id);
                }
            }));
        }
    }

    /// One delivery attempt for every pending recipient: local mailboxes
    /// through local delivery, other domains through the relay (one request
    /// per domain). `recovering` makes local delivery skip copies that an
    /// earlier, interrupted attempt already made.
    fn attempt(&mut self, mut message: SpooledMessage, recovering: bool, ctx: &mut Context<Self>) {
        let state = self.read.load();
        let directory = &state.state.directory;
        let data = Arc::new(std::mem::take(&mut message.data));
        let now_s = now_ms() / 1000;
        let mut immediate = Vec::new();
        let mut local = Vec::new();
        let mut lmtp = Vec::new();
        let mut remote: BTreeMap<String, Vec<(usize, String)>> = BTreeMap::new();
        for (index, r) in message.recipients.iter().enumerate() {
            if r.state != RecipientState::Pending {
                continue;
            }
            if directory.users.contains_key(&r.deliver_to) {
                let LocalRoute::Maildir(maildir) = &self.local else {
                    lmtp.push((index, r.deliver_to.clone()));
                    continue;
                };
                let request = DeliverLocal {
                    queue_id: message.queue_id.clone(),
                    index,
                    mailbox: r.deliver_to.clone(),
                    data: data.clone(),
                    recovering: recovering || message.attempts > 0,
                    junk: message.junk,
                    now_s,
                };
                local.push((index, maildir.addr().send(request)));
                continue;
            }
            let domain = r.deliver_to.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase());
            match domain {
                Some(d) if directory.domains.contains_key(&d) || directory.domain_aliases.contains_key(&d) => {
                    // Accepted while the mailbox existed; it has gone since.
                    let f = Failure::local("5.1.1", format!("mailbox {} no longer exists", r.deliver_to));
                    immediate.push((index, DeliveryOutcome::Failed(f)));
                }
                Some(d) => remote.entry(d).or_default().push((index, r.deliver_to.clone())),
                None => {
                    let f = Failure::local("5.1.3", format!("{:?} is not an address", r.deliver_to));
                    immediate.push((index, DeliveryOutcome::Failed(f)));
                }
            }
        }
        let relays: Vec<_> = remote
            .into_iter()
            .map(|(domain, recipients)| {
                let request = RelayDomain {
                    queue_id: message.queue_id.clone(),
                    mail_from: message.mail_from.clone(),
                    domain,
                    recipients: recipients.clone(),
                    data: data.clone(),
                };
                (recipients, self.relay.addr().send(request))
            })
            .collect();
        let lmtp = match (&self.local, lmtp.is_empty()) {
            (LocalRoute::Lmtp(server), false) => {
                let request = DeliverLmtp {
                    queue_id: message.queue_id.clone(),
                    mail_from: message.mail_from.clone(),
                    recipients: lmtp.clone(),
                    data: data.clone(),
                };
                Some((lmtp, server.addr().send(request)))
            }
            _ => None,
        };
        let queue_id = message.queue_id.clone();
        let work = async move {
            let mut outcomes = immediate;
            if let Some((recipients, send)) = lmtp {
                match send.await {
                    Ok(o) => outcomes.extend(o),
                    Err(e) => {
                        outcomes.extend(for_all(&recipients, &DeliveryOutcome::Deferred(Failure::local("4.3.0", e))))
                    }
                }
            }
            for (index, send) in local {
                let outcome = match send.await {
                    Ok(Ok(())) => DeliveryOutcome::Delivered,
                    Ok(Err(e)) => DeliveryOutcome::Deferred(Failure::local("4.3.0", e)),
                    Err(e) => DeliveryOutcome::Deferred(Failure::local("4.3.0", e)),
                };
                outcomes.push((index, outcome));
            }
            let relayed = futures::future::join_all(relays.into_iter().map(|(recipients, send)| async move {
                match send.await {
                    Ok(o) => o,
                    Err(e) => for_all(&recipients, &DeliveryOutcome::Deferred(Failure::local("4.3.0", e))),
                }
            }))
            .await;
            outcomes.extend(relayed.into_iter().flatten());
            message.data = Arc::try_unwrap(data).unwrap_or_else(|shared| (*shared).clone());
            (message, outcomes)
        };
        ctx.spawn(work.into_actor(self).map(move |(message, outcomes), act, ctx| {
            for (index, outcome) in &outcomes {
                let to = &message.recipients[*index].deliver_to;
                match outcome {
                    DeliveryOutcome::Delivered => {}
                    DeliveryOutcome::Deferred(f) => {
                        tracing::info!(%queue_id, %to, status = %f.status, reason = %f.diagnostic, "deferred")
                    }
                    DeliveryOutcome::Failed(f) => {
                        tracing::info!(%queue_id, %to, status = %f.status, reason = %f.diagnostic, "bounced")
                    }
                }
            }
            act.settle(message, outcomes, ctx);
        }));
    }

    /// Records an attempt: new recipient states, the next attempt time, a
    /// bounce for what failed (stored in the same transaction), and any
    /// operator request that waited for the attempt to end.
    fn settle(
        &mut self,
        mut message: SpooledMessage,
        outcomes: Vec<(usize, DeliveryOutcome)>,
        ctx: &mut Context<Self>,
    ) {
        let now = now_ms();
        let failed = settle_attempt(&mut message, &outcomes, now, &self.retry_policy());
        let bounce_ctx = bounce::BounceContext {
            hostname: &self.hostname(),
            bounce_queue_id: self.next_queue_id(now),
            now_ms: now,
            size_limit: self.read.load().state.settings.uint(key::QUEUE_BOUNCE_SIZE_LIMIT) as usize,
        };
        let bounce = bounce::bounce_for(&message, &failed, &bounce_ctx);
        if !failed.is_empty() && message.mail_from.is_empty() {
            tracing::warn!(queue_id = %message.queue_id, "a bounce could not be delivered; dropped (never bounce a bounce)");
        }
        let after = self.after_attempt.remove(&message.queue_id);
        if after == Some(AfterAttempt::Hold) {
            message.held = true;
        }
        let spool = self.spool.clone();
        let delete = after == Some(AfterAttempt::Delete);
        let work = tokio::task::spawn_blocking(move || {
            let result = if delete {
                spool.remove(&message.queue_id).map(|_| ())
            } else {
                spool.update(&message, bounce.as_ref())
            };
            (message, bounce, result)
        });
        ctx.spawn(work.into_actor(self).map(move |joined, act, ctx| {
            let Ok((message, bounce, result)) = joined else { return };
            act.busy.remove(&message.queue_id);
            if let Err(e) = result {
                // The spool still holds the previous state: try again later from there.
                tracing::error!(queue_id = %message.queue_id, error = %e, "recording a delivery attempt failed");
                act.waiting.insert(message.queue_id, Waiting { next_attempt_ms: now_ms() + 60_000, held: false });
                return;
            }
            if delete {
                tracing::info!(queue_id = %message.queue_id, "deleted by the operator");
                return;
            }
            if message.finished() {
                tracing::info!(queue_id = %message.queue_id, "removed from the queue");
            } else {
                act.waiting.insert(
                    message.queue_id.clone(),
                    Waiting { next_attempt_ms: message.next_attempt_ms, held: message.held },
                );
            }
            if let Some(b) = bounce {
                tracing::info!(queue_id = %message.queue_id, bounce = %b.queue_id, to = %b.recipients[0].deliver_to, "bounce queued");
                // A bounce of a replicated message is replicated through the outbox.
                act.attempt_or_wait(b, None, ctx);
            }
        }));
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

    /// Schedules what a previous run left in the spool, then scans for due messages.
    fn started(&mut self, ctx: &mut Context<Self>) {
        match self.spool.envelopes() {
            Ok(left) => {
                if !left.is_empty() {
                    tracing::info!(messages = left.len(), "resuming delivery of queued messages");
                }
                for m in left {
                    self.waiting.insert(m.queue_id, Waiting { next_attempt_ms: m.next_attempt_ms, held: m.held });
                }
            }
            Err(e) => tracing::error!(error = %e, "reading the spool failed"),
        }
        self.start_due(ctx);
        ctx.run_interval(SCAN_INTERVAL, |act, ctx| act.start_due(ctx));
    }
}

/// Messages this node took over from a member that is gone (their copies,
/// now in this node's spool): scheduled like its own.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Adopt(pub Vec<SpooledMessage>);

impl Handler<Adopt> for DeliveryQueue {
    type Result = ();

    fn handle(&mut self, msg: Adopt, ctx: &mut Context<Self>) {
        for m in msg.0 {
            self.waiting.insert(m.queue_id, Waiting { next_attempt_ms: 0, held: m.held });
        }
        self.start_due(ctx);
    }
}

/// The copies this node holds for other members, counted by owner.
#[derive(Message)]
#[rtype(result = "Result<BTreeMap<u64, usize>, String>")]
pub struct CountReplicas;

impl Handler<CountReplicas> for DeliveryQueue {
    type Result = ResponseFuture<Result<BTreeMap<u64, usize>, String>>;

    fn handle(&mut self, _: CountReplicas, _: &mut Context<Self>) -> Self::Result {
        let spool = self.spool.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || spool.replica_owners())
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        })
    }
}

/// Messages another member took over while this one was cut off: their
/// copies here were dropped from the spool; the queue forgets them.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forget(pub Vec<String>);

impl Handler<Forget> for DeliveryQueue {
    type Result = ();

    fn handle(&mut self, msg: Forget, _: &mut Context<Self>) {
        for id in msg.0 {
            self.waiting.remove(&id);
        }
    }
}

impl Handler<EnqueueHeld> for DeliveryQueue {
    type Result = ResponseFuture<Result<String, Reply>>;

    fn handle(&mut self, msg: EnqueueHeld, ctx: &mut Context<Self>) -> Self::Result {
        let mut message = self.spooled(*msg.0);
        message.held = true;
        self.commit_one(message, ctx)
    }
}

impl Handler<Enqueue> for DeliveryQueue {
    type Result = ResponseFuture<Result<String, Reply>>;

    fn handle(&mut self, msg: Enqueue, ctx: &mut Context<Self>) -> Self::Result {
        let message = self.spooled(*msg.0);
        self.commit_one(message, ctx)
    }
}

impl DeliveryQueue {
    /// Adds a message to the next group commit; the answer is its queue id
    /// once the commit is durable.
    fn commit_one(
        &mut self,
        message: SpooledMessage,
        ctx: &mut Context<Self>,
    ) -> ResponseFuture<Result<String, Reply>> {
        let (tx, rx) = oneshot::channel();
        self.pending.push((message, tx));
        self.commit_pending(ctx);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| Err(Reply::new(451, "4.3.0", "Queue unavailable; try again later")))
        })
    }
}
