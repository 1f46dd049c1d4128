//! Spool format 1 (builds up to 2026-12-02): one table of whole messages,
//! envelope and body in one record. Read only to migrate to format 2.

use redb::{ReadableTable, TableDefinition, TableHandle, WriteTransaction};
use serde::Deserialize;

use super::spool::{put, SpoolError, SpooledMessage, SpooledRecipient, BODIES, ENVELOPES};

const MESSAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("messages");

/// A format-1 record, field for field.
#[derive(Deserialize)]
struct MessageV1 {
    queue_id: String,
    mail_from: String,
    recipients: Vec<SpooledRecipient>,
    data: Vec<u8>,
    received_ms: u64,
    attempts: u32,
    next_attempt_ms: u64,
    held: bool,
    junk: bool,
}

fn fail(e: impl std::fmt::Display) -> SpoolError {
    SpoolError::new(format!("migrating the spool from format 1: {e}"))
}

/// Moves every format-1 message into the envelope and body tables and drops
/// the old table, inside the caller's transaction (all or nothing). Returns
/// how many messages moved.
pub(super) fn migrate(txn: &WriteTransaction) -> Result<usize, SpoolError> {
    let exists = txn.list_tables().map_err(fail)?.any(|t| t.name() == MESSAGES.name());
    if !exists {
        return Ok(0);
    }
    let mut moved = 0;
    {
        let old = txn.open_table(MESSAGES).map_err(fail)?;
        let mut tables = (txn.open_table(ENVELOPES).map_err(fail)?, txn.open_table(BODIES).map_err(fail)?);
        for item in old.iter().map_err(fail)? {
            let (key, value) = item.map_err(fail)?;
            let id = key.value();
            let (v1, _): (MessageV1, _) = bincode::serde::decode_from_slice(value.value(), bincode::config::standard())
                .map_err(|e| fail(format!("message {id}: {e}")))?;
            let message = SpooledMessage {
                attempts: v1.attempts,
                next_attempt_ms: v1.next_attempt_ms,
                held: v1.held,
                junk: v1.junk,
                ..SpooledMessage::new(v1.queue_id, v1.mail_from, v1.recipients, v1.data, v1.received_ms)
            };
            put(&mut tables, &message).map_err(|e| fail(format!("message {id}: {e}")))?;
            moved += 1;
        }
    }
    txn.delete_table(MESSAGES).map_err(fail)?;
    Ok(moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::spool::{RecipientState, Spool};
    use serde::Serialize;

    #[derive(Serialize)]
    struct WriteV1<'a> {
        queue_id: &'a str,
        mail_from: &'a str,
        recipients: Vec<SpooledRecipient>,
        data: &'a [u8],
        received_ms: u64,
        attempts: u32,
        next_attempt_ms: u64,
        held: bool,
        junk: bool,
    }

    #[test]
    fn a_format_1_spool_is_migrated_with_every_message() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(MESSAGES).unwrap();
                for (id, held) in [("A", false), ("B", true)] {
                    let mut r = SpooledRecipient::new("x@example.com", "x@remote.example");
                    r.state = RecipientState::Pending;
                    let m = WriteV1 {
                        queue_id: id,
                        mail_from: "a@b.org",
                        recipients: vec![r],
                        data: b"Subject: old\r\n\r\nbody\r\n",
                        received_ms: 7,
                        attempts: 3,
                        next_attempt_ms: 99,
                        held,
                        junk: false,
                    };
                    let bytes = bincode::serde::encode_to_vec(&m, bincode::config::standard()).unwrap();
                    t.insert(id, bytes.as_slice()).unwrap();
                }
            }
            txn.commit().unwrap();
        }
        let spool = Spool::open(&path).unwrap();
        let envelopes = spool.envelopes().unwrap();
        assert_eq!(envelopes.len(), 2);
        assert_eq!((envelopes[1].held, envelopes[1].attempts, envelopes[1].size), (true, 3, 22));
        let a = spool.get("A").unwrap().unwrap();
        assert_eq!(a.data, b"Subject: old\r\n\r\nbody\r\n");
        assert_eq!(a.next_attempt_ms, 99);
        drop(spool);
        assert_eq!(Spool::open(&path).unwrap().envelopes().unwrap().len(), 2, "a second open changes nothing");
    }
}
