//! The durable spool: accepted messages until every recipient is delivered.
//!
//! One redb database (`<data_dir>/queue.redb`). `put_batch` writes many
//! messages in one transaction, whose commit is one fsync: the group commit
//! that lets concurrent sessions share the cost of durability. A message is
//! acknowledged with 250 only after its batch committed.

use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;

const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");

#[derive(Debug, thiserror::Error)]
#[error("spool: {0}")]
pub struct SpoolError(String);

fn err(e: impl std::fmt::Display) -> SpoolError {
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

/// Why a delivery attempt failed, in the terms a DSN reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// RFC 3463 status code, e.g. `5.1.1`.
    pub status: String,
    /// RFC 3464 Diagnostic-Code, e.g. `smtp; 550 5.1.1 No such user`.
    pub diagnostic: String,
    /// The server that answered, when one did.
    pub remote_mta: Option<String>,
}

impl Failure {
    /// A failure Gatehouse diagnosed itself (no SMTP reply to quote).
    pub fn local(status: &str, text: impl std::fmt::Display) -> Self {
        Self { status: status.into(), diagnostic: format!("x-gatehouse; {text}"), remote_mta: None }
    }

    /// The same failure, naming the server it concerns.
    pub fn at(mut self, remote: &str) -> Self {
        self.remote_mta = Some(remote.to_string());
        self
    }
}

/// A message as kept in the spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledMessage {
    pub queue_id: String,
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
    #[serde(default)]
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
    db: Database,
}

fn encode(m: &SpooledMessage) -> Result<Vec<u8>, SpoolError> {
    bincode::serde::encode_to_vec(m, bincode::config::standard()).map_err(err)
}

fn decode(bytes: &[u8]) -> Result<SpooledMessage, SpoolError> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard()).map(|(m, _)| m).map_err(err)
}

impl Spool {
    pub fn open(path: &Path) -> Result<Self, SpoolError> {
        let db = Database::create(path).map_err(|e| SpoolError(format!("{}: {e}", path.display())))?;
        consensus::format::check_or_stamp(&db, path, consensus::format::SPOOL_FORMAT).map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        txn.open_table(MESSAGES).map_err(err)?;
        txn.commit().map_err(err)?;
        Ok(Self { db })
    }

    /// Stores every message durably, or none.
    pub fn put_batch(&self, messages: &[SpooledMessage]) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(MESSAGES).map_err(err)?;
            for m in messages {
                table.insert(m.queue_id.as_str(), encode(m)?.as_slice()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }

    /// Records progress: the message with its recipients' new state, or its
    /// removal once no recipient is pending. A bounce for it is stored in the
    /// same transaction, so a crash can neither lose nor repeat it.
    pub fn update(&self, message: &SpooledMessage, bounce: Option<&SpooledMessage>) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(MESSAGES).map_err(err)?;
            if message.finished() {
                table.remove(message.queue_id.as_str()).map_err(err)?;
            } else {
                table.insert(message.queue_id.as_str(), encode(message)?.as_slice()).map_err(err)?;
            }
            if let Some(b) = bounce {
                table.insert(b.queue_id.as_str(), encode(b)?.as_slice()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)
    }

    /// One message, if it is still queued.
    pub fn get(&self, queue_id: &str) -> Result<Option<SpooledMessage>, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(MESSAGES).map_err(err)?;
        let found = table.get(queue_id).map_err(err)?;
        found.map(|v| decode(v.value())).transpose()
    }

    /// Puts a message on hold or releases it; the message as it now is, if it exists.
    pub fn set_held(&self, queue_id: &str, held: bool) -> Result<Option<SpooledMessage>, SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        let changed = {
            let mut table = txn.open_table(MESSAGES).map_err(err)?;
            let found = table.get(queue_id).map_err(err)?.map(|v| decode(v.value())).transpose()?;
            match found {
                Some(mut m) => {
                    m.held = held;
                    table.insert(queue_id, encode(&m)?.as_slice()).map_err(err)?;
                    Some(m)
                }
                None => None,
            }
        };
        txn.commit().map_err(err)?;
        Ok(changed)
    }

    /// Removes a message without delivering it (operator's delete). True if it was there.
    pub fn remove(&self, queue_id: &str) -> Result<bool, SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        let existed = {
            let mut table = txn.open_table(MESSAGES).map_err(err)?;
            let removed = table.remove(queue_id).map_err(err)?;
            removed.is_some()
        };
        txn.commit().map_err(err)?;
        Ok(existed)
    }

    /// Every message still queued (at start-up: what a crash left behind).
    pub fn all(&self) -> Result<Vec<SpooledMessage>, SpoolError> {
        let txn = self.db.begin_read().map_err(err)?;
        let table = txn.open_table(MESSAGES).map_err(err)?;
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
            spool.put_batch(&[message("A"), message("B")]).unwrap();
            let mut a = message("A");
            a.recipients[0].state = RecipientState::Delivered;
            spool.update(&a, None).unwrap();
            let mut b = message("B");
            b.recipients[0].state = RecipientState::Delivered;
            b.recipients[1].state = RecipientState::Failed;
            spool.update(&b, Some(&message("BOUNCE"))).unwrap();
        }
        let spool = Spool::open(&path).unwrap();
        let left = spool.all().unwrap();
        let ids: Vec<_> = left.iter().map(|m| m.queue_id.as_str()).collect();
        assert_eq!(ids, ["A", "BOUNCE"]);
        assert_eq!(left[0].recipients[0].state, RecipientState::Delivered);
        assert_eq!(left[0].recipients[1].state, RecipientState::Pending);
        assert!(spool.get("B").unwrap().is_none());
        assert!(spool.remove("A").unwrap());
        assert!(!spool.remove("A").unwrap());
    }
}
