//! The durable spool: accepted messages until every recipient is delivered.
//!
//! One redb database (`<data_dir>/queue.redb`) with two tables: envelopes
//! (sender, recipients and their state, schedule: small, rewritten after
//! each attempt) and bodies (written once, read for an attempt, removed with
//! the envelope). Start-up, `queue list` and the scheduler read envelopes
//! only, so 50,000 queued messages cost their envelopes in memory, not their
//! bodies. `put_batch` writes many messages in one transaction, whose commit
//! is one fsync: the group commit that lets concurrent sessions share the
//! cost of durability. A message is acknowledged with 250 only after its
//! batch committed. Format 2 (`consensus::format::SPOOL_FORMAT`); a format-1
//! spool (one table of whole messages) is migrated at open.

use super::replica::ReplicaUpdate;
use crate::message::Failure;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;

pub(super) const ENVELOPES: TableDefinition<&str, &[u8]> = TableDefinition::new("envelopes");
pub(super) const BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("bodies");
/// On the owner: which member holds the copy of each replicated message.
pub(super) const REPLICATED_TO: TableDefinition<&str, u64> = TableDefinition::new("replicated_to");
/// On the owner: changes its replica holders have not been told yet
/// (queue id → holder and the change), written in the same transaction
/// as the change itself, so a crash never loses one.
pub(super) const OUTBOX: TableDefinition<&str, &[u8]> = TableDefinition::new("replica_outbox");
/// On a holder: other members' messages, passive until a takeover
/// (queue id → owner and envelope; body).
pub(super) const REPLICA_ENVELOPES: TableDefinition<&str, &[u8]> = TableDefinition::new("replica_envelopes");
pub(super) const REPLICA_BODIES: TableDefinition<&str, &[u8]> = TableDefinition::new("replica_bodies");

#[derive(Debug, thiserror::Error)]
#[error("spool: {0}")]
pub struct SpoolError(String);

impl SpoolError {
    pub(super) fn new(why: String) -> Self {
        Self(why)
    }
}

pub(super) fn err(e: impl std::fmt::Display) -> SpoolError {
    SpoolError(e.to_string())
}

/// Where one recipient stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecipientState {
    /// Not yet delivered: due for (another) attempt.
    Pending,
    Delivered,
    /// Given up: refused for good, or the queue lifetime ran out. Bounced to the sender.
    Failed,
}

/// One final destination of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledRecipient {
    /// The RCPT TO address as the client gave it.
    pub original: String,
    /// The mailbox or remote address it resolved to.
    pub deliver_to: String,
    pub state: RecipientState,
    /// Why the last attempt did not deliver it (RFC 3464 fields), if it did not.
    pub last_failure: Option<Failure>,
}

impl SpooledRecipient {
    pub fn new(original: &str, deliver_to: &str) -> Self {
        Self {
            original: original.to_string(),
            deliver_to: deliver_to.to_string(),
            state: RecipientState::Pending,
            last_failure: None,
        }
    }
}

/// A message as kept in the spool. `data` is the body; in an envelope read
/// without it (`Spool::envelopes`) it is empty and `size` still tells its length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledMessage {
    pub queue_id: String,
    /// Length of the body in bytes.
    pub size: u64,
    /// The reverse path; empty for the null sender (bounces), which is never bounced to.
    pub mail_from: String,
    pub recipients: Vec<SpooledRecipient>,
    /// The message as it will be delivered (our Received header first).
    pub data: Vec<u8>,
    pub received_ms: u64,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Earliest time of the next attempt (ms since the epoch); 0 means now.
    pub next_attempt_ms: u64,
    /// Put on hold by an operator: no attempts until released.
    pub held: bool,
    /// Local copies go to the Junk folder (authentication verdict).
    pub junk: bool,
}

impl SpooledMessage {
    pub fn new(
        queue_id: String,
        mail_from: String,
        recipients: Vec<SpooledRecipient>,
        data: Vec<u8>,
        received_ms: u64,
    ) -> Self {
        Self {
            queue_id,
            size: data.len() as u64,
            mail_from,
            recipients,
            data,
            received_ms,
            attempts: 0,
            next_attempt_ms: 0,
            held: false,
            junk: false,
        }
    }

    /// True once no recipient waits for an attempt.
    pub fn finished(&self) -> bool {
        self.recipients.iter().all(|r| r.state != RecipientState::Pending)
    }
}

pub struct Spool {
    pub(super) db: Database,
}

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, SpoolError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(err)
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, SpoolError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(m, _)| m).map_err(err)
}

/// The envelope record: the message without its body.
fn encode_envelope(m: &SpooledMessage) -> Result<Vec<u8>, SpoolError> {
    encode(&m.clone_envelope())
}

impl SpooledMessage {
    /// Everything but the body (cheap: the body is not copied).
    pub fn clone_envelope(&self) -> Self {
        Self {
            queue_id: self.queue_id.clone(),
            size: self.size,
            mail_from: self.mail_from.clone(),
            recipients: self.recipients.clone(),
            data: Vec::new(),
            received_ms: self.received_ms,
            attempts: self.attempts,
            next_attempt_ms: self.next_attempt_ms,
            held: self.held,
            junk: self.junk,
        }
    }
}

/// The owner's replication tables, open in the same write transaction.
pub(super) struct Replication<'t> {
    pub to: redb::Table<'t, &'static str, u64>,
    pub outbox: redb::Table<'t, &'static str, &'static [u8]>,
}

impl Replication<'_> {
    fn holder(&self, queue_id: &str) -> Result<Option<u64>, SpoolError> {
        Ok(self.to.get(queue_id).map_err(err)?.map(|v| v.value()))
    }

    /// Queues `update` for the holder; a later change of the same message
    /// replaces it (a copy not sent yet keeps its body under the new envelope).
    fn tell(&mut self, queue_id: &str, holder: u64, update: &ReplicaUpdate) -> Result<(), SpoolError> {
        let waiting = self.outbox.get(queue_id).map_err(err)?.map(|v| decode::<(u64, ReplicaUpdate)>(v.value()));
        let update = match (waiting.transpose()?, update) {
            (Some((_, ReplicaUpdate::Store(copy))), ReplicaUpdate::Envelope(envelope)) => {
                ReplicaUpdate::Store(SpooledMessage { data: copy.data, ..envelope.clone() })
            }
            _ => update.clone(),
        };
        self.outbox.insert(queue_id, encode(&(holder, &update))?.as_slice()).map_err(err)?;
        Ok(())
    }
}

/// The envelope and body tables, open in one write transaction.
pub(super) type Tables<'t> =
    (redb::Table<'t, &'static str, &'static [u8]>, redb::Table<'t, &'static str, &'static [u8]>);

/// Writes a whole message: its envelope and its body.
pub(super) fn put(tables: &mut Tables<'_>, m: &SpooledMessage) -> Result<(), SpoolError> {
    tables.0.insert(m.queue_id.as_str(), encode_envelope(m)?.as_slice()).map_err(err)?;
    tables.1.insert(m.queue_id.as_str(), m.data.as_slice()).map_err(err)?;
    Ok(())
}

fn remove(tables: &mut Tables<'_>, queue_id: &str) -> Result<bool, SpoolError> {
    let existed = tables.0.remove(queue_id).map_err(err)?.is_some();
    tables.1.remove(queue_id).map_err(err)?;
    Ok(existed)
}

impl Spool {
    pub fn open(path: &Path) -> Result<Self, SpoolError> {
        let db = Database::create(path).map_err(|e| SpoolError(format!("{}: {e}", path.display())))?;
        Self::from_db(db, path)
    }

    /// A spool on another storage (the simulator's disk with crash semantics).
    pub fn open_backend(backend: impl redb::StorageBackend, name: &Path) -> Result<Self, SpoolError> {
        let db = Database::builder()
            .create_with_backend(backend)
            .map_err(|e| SpoolError(format!("{}: {e}", name.display())))?;
        Self::from_db(db, name)
    }

    fn from_db(db: Database, path: &Path) -> Result<Self, SpoolError> {
        use consensus::format::{stamp, stored_version, SPOOL_FORMAT};
        let found = stored_version(&db, path, SPOOL_FORMAT).map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(ENVELOPES).map_err(err)?;
        txn.open_table(BODIES).map_err(err)?;
        txn.open_table(REPLICATED_TO).map_err(err)?;
        txn.open_table(OUTBOX).map_err(err)?;
        txn.open_table(REPLICA_ENVELOPES).map_err(err)?;
        txn.open_table(REPLICA_BODIES).map_err(err)?;
        // Unstamped files were written by builds before versioning: format 1.
        if found.unwrap_or(1) < 2 {
            let moved = super::spool_v1::migrate(&txn)?;
            if moved > 0 {
                tracing::info!(file = %path.display(), messages = moved, "spool migrated from format 1 to 2");
            }
        }
        txn.commit().map_err(err)?;
        if found != Some(SPOOL_FORMAT) {
            stamp(&db, SPOOL_FORMAT).map_err(err)?;
        }
        Ok(Self { db })
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&mut Tables<'_>, &mut Replication<'_>) -> Result<T, SpoolError>,
    ) -> Result<T, SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        let out = {
            let mut tables = (txn.open_table(ENVELOPES).map_err(err)?, txn.open_table(BODIES).map_err(err)?);
            let mut replication = Replication {
                to: txn.open_table(REPLICATED_TO).map_err(err)?,
                outbox: txn.open_table(OUTBOX).map_err(err)?,
            };
            f(&mut tables, &mut replication)?
        };
        txn.commit().map_err(err)?;
        Ok(out)
    }

    /// Stores every message durably, or none; `replicated_to` records the
    /// member holding their copies.
    pub fn put_batch(&self, messages: &[SpooledMessage], replicated_to: Option<u64>) -> Result<(), SpoolError> {
        self.write(|t, r| {
            for m in messages {
                put(t, m)?;
                if let Some(holder) = replicated_to {
                    r.to.insert(m.queue_id.as_str(), holder).map_err(err)?;
                }
            }
            Ok(())
        })
    }

    /// Records progress: the message's envelope with its recipients' new
    /// state (the body stays as written), or its removal once no recipient
    /// is pending. A bounce for it is stored in the same transaction, so a
    /// crash can neither lose nor repeat it.
    /// The message's holder, if it was replicated, hears of the change
    /// (and gets the bounce's copy) through the outbox.
    pub fn update(&self, message: &SpooledMessage, bounce: Option<&SpooledMessage>) -> Result<(), SpoolError> {
        self.write(|t, r| {
            // Taken over (and dropped here) during its attempt: nothing to record.
            if t.0.get(message.queue_id.as_str()).map_err(err)?.is_none() {
                return Ok(());
            }
            let holder = r.holder(&message.queue_id)?;
            if message.finished() {
                remove(t, &message.queue_id)?;
                if let Some(holder) = holder {
                    r.to.remove(message.queue_id.as_str()).map_err(err)?;
                    r.tell(&message.queue_id, holder, &ReplicaUpdate::Remove)?;
                }
            } else {
                t.0.insert(message.queue_id.as_str(), encode_envelope(message)?.as_slice()).map_err(err)?;
                if let Some(holder) = holder {
                    r.tell(&message.queue_id, holder, &ReplicaUpdate::Envelope(message.clone_envelope()))?;
                }
            }
            let Some(b) = bounce else { return Ok(()) };
            put(t, b)?;
            if let Some(holder) = holder {
                r.to.insert(b.queue_id.as_str(), holder).map_err(err)?;
                r.tell(&b.queue_id, holder, &ReplicaUpdate::Store(b.clone()))?;
            }
            Ok(())
        })
    }

    /// One message with its body, if it is still queued.
    pub fn get(&self, queue_id: &str) -> Result<Option<SpooledMessage>, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let envelopes = txn.open_table(ENVELOPES).map_err(err)?;
        let Some(found) = envelopes.get(queue_id).map_err(err)? else { return Ok(None) };
        let mut message: SpooledMessage = decode(found.value())?;
        let bodies = txn.open_table(BODIES).map_err(err)?;
        let body = bodies.get(queue_id).map_err(err)?;
        let body = body.ok_or_else(|| SpoolError(format!("{queue_id}: envelope without a body")))?;
        message.data = body.value().to_vec();
        Ok(Some(message))
    }

    /// Puts a message on hold or releases it; its envelope as it now is, if it exists.
    pub fn set_held(&self, queue_id: &str, held: bool) -> Result<Option<SpooledMessage>, SpoolError> {
        self.write(|t, r| {
            let found = t.0.get(queue_id).map_err(err)?.map(|v| decode::<SpooledMessage>(v.value())).transpose()?;
            let Some(mut m) = found else { return Ok(None) };
            m.held = held;
            t.0.insert(queue_id, encode_envelope(&m)?.as_slice()).map_err(err)?;
            if let Some(holder) = r.holder(queue_id)? {
                r.tell(queue_id, holder, &ReplicaUpdate::Envelope(m.clone_envelope()))?;
            }
            Ok(Some(m))
        })
    }

    /// Removes a message without delivering it (operator's delete). True if it was there.
    pub fn remove(&self, queue_id: &str) -> Result<bool, SpoolError> {
        self.write(|t, r| {
            if let Some(holder) = r.holder(queue_id)? {
                r.to.remove(queue_id).map_err(err)?;
                r.tell(queue_id, holder, &ReplicaUpdate::Remove)?;
            }
            remove(t, queue_id)
        })
    }

    /// Every queued message's envelope, bodies left on disk (at start-up:
    /// what a crash left behind; `queue list`).
    pub fn envelopes(&self) -> Result<Vec<SpooledMessage>, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(ENVELOPES).map_err(err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(err)? {
            let (_, v) = item.map_err(err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str) -> SpooledMessage {
        SpooledMessage {
            queue_id: id.into(),
            size: 20,
            mail_from: "a@b.org".into(),
            recipients: vec![
                SpooledRecipient::new("x@example.com", "x@example.com"),
                SpooledRecipient::new("y@example.com", "y@example.com"),
            ],
            data: b"Subject: t\r\n\r\nbody\r\n".to_vec(),
            received_ms: 5,
            attempts: 0,
            next_attempt_ms: 0,
            held: false,
            junk: false,
        }
    }

    #[test]
    fn batches_persist_and_finished_messages_leave() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        {
            let spool = Spool::open(&path).unwrap();
            spool.put_batch(&[message("A"), message("B")], None).unwrap();
            let mut a = message("A");
            a.recipients[0].state = RecipientState::Delivered;
            spool.update(&a, None).unwrap();
            let mut b = message("B");
            b.recipients[0].state = RecipientState::Delivered;
            b.recipients[1].state = RecipientState::Failed;
            spool.update(&b, Some(&message("BOUNCE"))).unwrap();
        }
        let spool = Spool::open(&path).unwrap();
        let left = spool.envelopes().unwrap();
        let ids: Vec<_> = left.iter().map(|m| m.queue_id.as_str()).collect();
        assert_eq!(ids, ["A", "BOUNCE"]);
        assert_eq!(left[0].recipients[0].state, RecipientState::Delivered);
        assert_eq!(left[0].recipients[1].state, RecipientState::Pending);
        assert!(spool.get("B").unwrap().is_none());
        assert!(left.iter().all(|m| m.data.is_empty() && m.size == 20), "envelopes come without bodies");
        assert_eq!(spool.get("A").unwrap().unwrap().data, message("A").data, "the body survives envelope updates");
        assert!(spool.remove("A").unwrap());
        assert!(!spool.remove("A").unwrap());
    }
}
