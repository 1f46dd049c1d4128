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

/// One final destination of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledRecipient {
    /// The RCPT TO address as the client gave it.
    pub original: String,
    /// The mailbox or remote address it resolved to.
    pub deliver_to: String,
    pub delivered: bool,
}

/// A message as kept in the spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpooledMessage {
    pub queue_id: String,
    pub mail_from: String,
    pub recipients: Vec<SpooledRecipient>,
    /// The message as it will be delivered (our Received header first).
    pub data: Vec<u8>,
    pub received_ms: u64,
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
    /// removal once every recipient is delivered.
    pub fn update(&self, message: &SpooledMessage) -> Result<(), SpoolError> {
        let txn = self.db.begin_write().map_err(err)?;
        {
            let mut table = txn.open_table(MESSAGES).map_err(err)?;
            if message.recipients.iter().all(|r| r.delivered) {
                table.remove(message.queue_id.as_str()).map_err(err)?;
            } else {
                table.insert(message.queue_id.as_str(), encode(message)?.as_slice()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)
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
                SpooledRecipient {
                    original: "x@example.com".into(),
                    deliver_to: "x@example.com".into(),
                    delivered: false,
                },
                SpooledRecipient {
                    original: "y@example.com".into(),
                    deliver_to: "y@example.com".into(),
                    delivered: false,
                },
            ],
            data: b"Subject: t\r\n\r\nbody\r\n".to_vec(),
            received_ms: 5,
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
            a.recipients[0].delivered = true;
            spool.update(&a).unwrap();
            let mut b = message("B");
            b.recipients.iter_mut().for_each(|r| r.delivered = true);
            spool.update(&b).unwrap();
        }
        let spool = Spool::open(&path).unwrap();
        let left = spool.all().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].queue_id, "A");
        assert!(left[0].recipients[0].delivered && !left[0].recipients[1].delivered);
    }
}
