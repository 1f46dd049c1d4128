//! The Raft log and vote on redb.
//!
//! One redb database per node (`raft.redb` in the data directory) holds the
//! log, the vote, the committed pointer and the current snapshot. Every write
//! transaction commits with redb's default durability (fsync) before openraft
//! is told the IO completed, so an acknowledged vote or entry survives kill -9.

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, RaftLogReader};
use redb::{Database, ReadableTable, TableDefinition};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::frame::{decode, encode};
use super::{storage_io, Entry, LogId, StorageError, TypeConfig, Vote};

pub(crate) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("raft_log");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("raft_meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";

/// How often a waiting purge looks again.
const PURGE_POLL: Duration = Duration::from_millis(5);

/// Log storage; cloning it gives a reader over the same database.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
    /// How long a purge waits for a stored snapshot that covers it (see
    /// `purge_after_snapshot`) before it fails, and openraft stops the node,
    /// rather than delete entries nothing else holds; `None`: no wait.
    purge_wait: Option<Duration>,
    /// Bumped by every truncation; shared by the store and its readers.
    truncations: Arc<AtomicU64>,
    /// For a reader handed to a replication stream: the truncation count
    /// when it was made. `None` for the store itself.
    reader_epoch: Option<u64>,
}

fn read_err(e: impl std::error::Error + 'static) -> StorageError {
    storage_io(ErrorSubject::Logs, ErrorVerb::Read, e)
}

fn write_err(e: impl std::error::Error + 'static) -> StorageError {
    storage_io(ErrorSubject::Logs, ErrorVerb::Write, e)
}

impl LogStore {
    /// Opens the log tables, creating them on first use.
    pub fn open(db: Arc<Database>) -> Result<Self, StorageError> {
        let txn = db.begin_write().map_err(write_err)?;
        txn.open_table(LOGS).map_err(write_err)?;
        txn.open_table(META).map_err(write_err)?;
        txn.commit().map_err(write_err)?;
        Ok(Self { db, purge_wait: None, truncations: Arc::default(), reader_epoch: None })
    }

    /// Makes every purge wait until the state machine's stored snapshot (in
    /// the same database) reaches the purge point. openraft 0.9 purges the
    /// log as soon as it hands a leader's snapshot to the state machine, not
    /// once the state machine has stored it; a crash in between left a node
    /// with neither the entries nor the snapshot, unable to restart (the
    /// simulator's snapshot-crash fault found it). Waiting also holds back
    /// the appends and commit-pointer saves openraft would make meanwhile,
    /// so no hole can open in the log. Every node sets this; openraft's
    /// storage suite tests the log store alone, without a state machine.
    pub fn purge_after_snapshot(mut self, wait_max: Duration) -> Self {
        self.purge_wait = Some(wait_max);
        self
    }

    async fn wait_for_snapshot_covering(&self, log_id: &LogId, wait_max: Duration) -> Result<(), StorageError> {
        let started = tokio::time::Instant::now();
        loop {
            let stored = super::state_machine::stored_snapshot_last(&self.db)?;
            if stored.is_some_and(|s| s.index >= log_id.index) {
                return Ok(());
            }
            if started.elapsed() >= wait_max {
                return Err(write_err(std::io::Error::other(format!(
                    "purge up to {log_id}: no stored snapshot covers it after {} ms (stored: {stored:?})",
                    wait_max.as_millis()
                ))));
            }
            tokio::time::sleep(PURGE_POLL).await;
        }
    }

    fn get_meta<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(META).map_err(read_err)?;
        match table.get(key).map_err(read_err)? {
            Some(v) => Ok(Some(decode(v.value()).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    fn put_meta<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StorageError> {
        let bytes = encode(value).map_err(write_err)?;
        let txn = self.db.begin_write().map_err(write_err)?;
        txn.open_table(META).map_err(write_err)?.insert(key, bytes.as_slice()).map_err(write_err)?;
        txn.commit().map_err(write_err)
    }

    fn last_entry_id(&self) -> Result<Option<LogId>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOGS).map_err(read_err)?;
        let last = table.last().map_err(read_err)?;
        let entry: Option<Entry> = match last {
            Some((_, v)) => Some(decode(v.value()).map_err(read_err)?),
            None => None,
        };
        Ok(entry.map(|e| e.log_id))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let txn = self.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOGS).map_err(read_err)?;
        let mut out = Vec::new();
        for item in table.range::<u64>(range).map_err(read_err)? {
            let (_, v) = item.map_err(read_err)?;
            out.push(decode(v.value()).map_err(read_err)?);
        }
        Ok(out)
    }

    /// What replication sends: only the run of entries that starts exactly
    /// at `start`, or nothing; and nothing at all once the log was truncated
    /// after this reader was made. A deposed leader's replication task keeps
    /// sending the batch in hand with the `prev_log_id` it had as leader.
    /// If the node, now a follower, purged up to an installed snapshot, a
    /// plain range read handed it the entries behind the purge point as if
    /// they followed `start - 1`; if it truncated its old tail and took the
    /// new leader's entries, it sent those after its own stale `prev_log_id`,
    /// and a follower that still held the same stale entry appended them
    /// behind it — a log no leader ever had (the simulator's seed 1813).
    /// Nothing makes openraft send a heartbeat instead and let the stream
    /// close. A leader never truncates its own log, so a current stream's
    /// reader is never cut off.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        if self.reader_epoch.is_some_and(|epoch| epoch != self.truncations.load(Ordering::Acquire)) {
            return Ok(Vec::new());
        }
        let entries = self.try_get_log_entries(start..end).await?;
        Ok(contiguous_from(start, entries))
    }
}

/// The prefix of `entries` whose indexes run `start, start + 1, …`.
fn contiguous_from(start: u64, mut entries: Vec<Entry>) -> Vec<Entry> {
    let run = entries.iter().zip(start..).take_while(|(e, want)| e.log_id.index == *want).count();
    entries.truncate(run);
    entries
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.get_meta::<Option<LogId>>(KEY_LAST_PURGED)?.flatten();
        let last_log_id = self.last_entry_id()?.or(last_purged_log_id);
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        let mut reader = self.clone();
        reader.reader_epoch = Some(self.truncations.load(Ordering::Acquire));
        reader
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote).map_err(|e| storage_io(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.get_meta(KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.put_meta(KEY_COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            let mut table = txn.open_table(LOGS).map_err(write_err)?;
            for entry in entries {
                let bytes = encode(&entry).map_err(write_err)?;
                table.insert(entry.log_id.index, bytes.as_slice()).map_err(write_err)?;
            }
        }
        // The commit fsyncs; only then is the append reported durable.
        let result = txn.commit().map_err(std::io::Error::other);
        let failed = result.as_ref().err().map(|e| e.to_string());
        callback.log_io_completed(result);
        match failed {
            Some(msg) => Err(write_err(std::io::Error::other(msg))),
            None => Ok(()),
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Before the entries go: a stale reader must not read the new ones.
        self.truncations.fetch_add(1, Ordering::AcqRel);
        let txn = self.db.begin_write().map_err(write_err)?;
        txn.open_table(LOGS).map_err(write_err)?.retain_in(log_id.index.., |_, _| false).map_err(write_err)?;
        txn.commit().map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if let Some(wait_max) = self.purge_wait {
            self.wait_for_snapshot_covering(&log_id, wait_max).await?;
        }
        let bytes = encode(&Some(log_id)).map_err(write_err)?;
        let txn = self.db.begin_write().map_err(write_err)?;
        {
            txn.open_table(META).map_err(write_err)?.insert(KEY_LAST_PURGED, bytes.as_slice()).map_err(write_err)?;
            txn.open_table(LOGS).map_err(write_err)?.retain_in(..=log_id.index, |_, _| false).map_err(write_err)?;
        }
        txn.commit().map_err(write_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entries(indexes: &[u64]) -> Vec<Entry> {
        indexes
            .iter()
            .map(|&i| Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), i), payload: EntryPayload::Blank })
            .collect()
    }

    fn indexes(entries: &[Entry]) -> Vec<u64> {
        entries.iter().map(|e| e.log_id.index).collect()
    }

    fn store_with(indexes: &[u64]) -> LogStore {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new());
        let store = LogStore::open(Arc::new(db.unwrap_or_else(|e| panic!("in-memory redb: {e}"))))
            .unwrap_or_else(|e| panic!("open: {e}"));
        let txn = store.db.begin_write().unwrap_or_else(|e| panic!("{e}"));
        {
            let mut table = txn.open_table(LOGS).unwrap_or_else(|e| panic!("{e}"));
            for entry in entries(indexes) {
                let bytes = encode(&entry).unwrap_or_else(|e| panic!("{e}"));
                table.insert(entry.log_id.index, bytes.as_slice()).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        txn.commit().unwrap_or_else(|e| panic!("{e}"));
        store
    }

    #[tokio::test]
    async fn a_replication_reader_made_before_a_truncation_reads_nothing_after_it() {
        let mut store = store_with(&[1, 2, 3, 4, 5]);
        let stale = store.get_log_reader().await;
        let read = |r: &LogStore| {
            let mut r = r.clone();
            async move { indexes(&r.limited_get_log_entries(1, 6).await.unwrap_or_default()) }
        };
        assert_eq!(read(&stale).await, vec![1, 2, 3, 4, 5]);
        store.truncate(LogId::new(CommittedLeaderId::new(1, 1), 3)).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read(&stale).await, Vec::<u64>::new(), "a deposed leader's stream must not read the new tail");
        let fresh = store.get_log_reader().await;
        assert_eq!(read(&fresh).await, vec![1, 2]);
        // The store itself (startup re-apply, openraft's own reads) is never cut off.
        assert_eq!(indexes(&store.try_get_log_entries(1..6).await.unwrap_or_default()), vec![1, 2]);
    }

    #[test]
    fn replication_reads_only_the_run_that_starts_at_the_start() {
        let cases: &[(u64, &[u64], &[u64])] = &[
            (8, &[8, 9, 10], &[8, 9, 10]),
            (8, &[36, 37, 38], &[]), // start purged: entries behind the hole are not "next"
            (8, &[8, 9, 12, 13], &[8, 9]),
            (8, &[], &[]),
            (0, &[0, 1], &[0, 1]),
        ];
        for (start, stored, want) in cases {
            assert_eq!(indexes(&contiguous_from(*start, entries(stored))), *want, "start {start}, stored {stored:?}");
        }
    }
}
