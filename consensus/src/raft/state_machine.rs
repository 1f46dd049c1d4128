//! The Raft state machine: applies committed entries to `ClusterState`,
//! builds and installs snapshots, and publishes each applied version to the
//! `ReadHandle`.
//!
//! The state lives in memory and is persisted as snapshots in the node's redb
//! database. After a restart the node loads the last snapshot and openraft
//! re-applies the committed log entries after it (the log store persists the
//! committed pointer), so nothing committed is lost while `apply` stays free
//! of IO. Logs are purged only up to a snapshot that is already on disk.

use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, SnapshotMeta as RaftSnapshotMeta};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::frame::{decode, encode};
use super::{storage_io, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig};
use crate::command::ClusterResponse;
use crate::read_handle::ReadHandle;
use crate::state::ClusterState;

const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
const KEY_CURRENT: &str = "current";
/// The stored snapshot's last log id alone, so the log store can ask how far
/// it may purge without decoding the whole snapshot.
const KEY_CURRENT_LAST: &str = "current_last";

/// How far the stored snapshot reaches: `None` when there is none.
pub(crate) fn stored_snapshot_last(db: &Database) -> Result<Option<LogId>, StorageError> {
    let txn = db.begin_read().map_err(|e| snap_err(ErrorVerb::Read, e))?;
    match txn.open_table(SNAPSHOT) {
        Ok(table) => snapshot_last_in(&table),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(snap_err(ErrorVerb::Read, e)),
    }
}

/// The stored snapshot's last log id, from its own key; a database written
/// before that key existed has only the whole snapshot to decode.
fn snapshot_last_in(table: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Option<LogId>, StorageError> {
    if let Some(v) = table.get(KEY_CURRENT_LAST).map_err(|e| snap_err(ErrorVerb::Read, e))? {
        return decode(v.value()).map_err(|e| snap_err(ErrorVerb::Read, e));
    }
    match table.get(KEY_CURRENT).map_err(|e| snap_err(ErrorVerb::Read, e))? {
        Some(v) => {
            let stored: StoredSnapshot = decode(v.value()).map_err(|e| snap_err(ErrorVerb::Read, e))?;
            Ok(stored.meta.last_log_id)
        }
        None => Ok(None),
    }
}

/// Snapshot counters shown by `cluster status`; tests read them to prove that
/// a node caught up by installing a snapshot.
#[derive(Debug, Default)]
pub struct SnapshotStats {
    pub built: AtomicU64,
    pub installed: AtomicU64,
}

/// The bytes of a snapshot: the whole state plus where it stands in the log.
#[derive(Serialize, Deserialize)]
struct SnapshotBody {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
}

/// A snapshot as kept on disk.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

pub struct StateMachineStore {
    db: Arc<Database>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    state: ClusterState,
    read: ReadHandle,
    stats: Arc<SnapshotStats>,
    /// Makes snapshot ids unique within this process's lifetime.
    snapshot_seq: u64,
}

fn sm_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    storage_io(ErrorSubject::StateMachine, verb, e)
}

fn snap_err(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    storage_io(ErrorSubject::Snapshot(None), verb, e)
}

impl StateMachineStore {
    /// Opens the state machine, restoring the last snapshot if there is one.
    pub fn open(db: Arc<Database>, read: ReadHandle, stats: Arc<SnapshotStats>) -> Result<Self, StorageError> {
        let txn = db.begin_write().map_err(|e| snap_err(ErrorVerb::Write, e))?;
        txn.open_table(SNAPSHOT).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        txn.commit().map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let mut sm = Self {
            db,
            last_applied: None,
            membership: StoredMembership::default(),
            state: ClusterState::default(),
            read,
            stats,
            snapshot_seq: 0,
        };
        if let Some(stored) = sm.load_stored()? {
            sm.restore(&stored.data)?;
        }
        sm.publish();
        Ok(sm)
    }

    fn load_stored(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let txn = self.db.begin_read().map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let table = txn.open_table(SNAPSHOT).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        let value = table.get(KEY_CURRENT).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        match value {
            Some(v) => Ok(Some(decode(v.value()).map_err(|e| snap_err(ErrorVerb::Read, e))?)),
            None => Ok(None),
        }
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), StorageError> {
        let body: SnapshotBody = decode(data).map_err(|e| snap_err(ErrorVerb::Read, e))?;
        self.last_applied = body.last_applied;
        self.membership = body.membership;
        self.state = body.state;
        Ok(())
    }

    fn publish(&self) {
        let applied_index = self.last_applied.map(|l| l.index).unwrap_or(0);
        self.read.publish(applied_index, self.state.clone());
    }
}

/// Makes `stored` the current snapshot, durably (the commit fsyncs) —
/// unless the stored one is newer. Building runs beside the state machine:
/// a snapshot built from index 20 can finish after one of index 40 was
/// installed from the leader, and openraft may by then have purged the logs
/// up to 40; letting the older one win would leave a restart with a gap
/// between snapshot and log.
fn write_snapshot(db: &Database, stored: &StoredSnapshot) -> Result<(), StorageError> {
    let bytes = encode(stored).map_err(|e| snap_err(ErrorVerb::Write, e))?;
    let txn = db.begin_write().map_err(|e| snap_err(ErrorVerb::Write, e))?;
    {
        let mut table = txn.open_table(SNAPSHOT).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        let newer_stored = snapshot_last_in(&table)?.is_some_and(|last| Some(last) > stored.meta.last_log_id);
        if newer_stored {
            tracing::debug!(snapshot = %stored.meta.snapshot_id, "older snapshot not stored over a newer one");
        } else {
            table.insert(KEY_CURRENT, bytes.as_slice()).map_err(|e| snap_err(ErrorVerb::Write, e))?;
            let last = encode(&stored.meta.last_log_id).map_err(|e| snap_err(ErrorVerb::Write, e))?;
            table.insert(KEY_CURRENT_LAST, last.as_slice()).map_err(|e| snap_err(ErrorVerb::Write, e))?;
        }
    }
    txn.commit().map_err(|e| snap_err(ErrorVerb::Write, e))
}

/// Builds a snapshot from a copy of the state taken when openraft asked.
pub struct SnapshotBuilder {
    db: Arc<Database>,
    body: SnapshotBody,
    snapshot_id: String,
    stats: Arc<SnapshotStats>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let data = encode(&self.body).map_err(|e| sm_err(ErrorVerb::Read, e))?;
        let meta = RaftSnapshotMeta {
            last_log_id: self.body.last_applied,
            last_membership: self.body.membership.clone(),
            snapshot_id: self.snapshot_id.clone(),
        };
        write_snapshot(&self.db, &StoredSnapshot { meta: meta.clone(), data: data.clone() })?;
        self.stats.built.fetch_add(1, Ordering::Relaxed);
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ClusterResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let response = match entry.payload {
                EntryPayload::Blank => ClusterResponse::default(),
                EntryPayload::Normal(ref request) => self.state.apply_request(request),
                EntryPayload::Membership(ref m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    ClusterResponse::default()
                }
            };
            responses.push(response);
        }
        self.publish();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        let last = self.last_applied.map(|l| format!("{}-{}", l.leader_id, l.index)).unwrap_or_else(|| "0".into());
        SnapshotBuilder {
            db: self.db.clone(),
            body: SnapshotBody {
                last_applied: self.last_applied,
                membership: self.membership.clone(),
                state: self.state.clone(),
            },
            snapshot_id: format!("{last}-{}", self.snapshot_seq),
            stats: self.stats.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        self.restore(&data)?;
        write_snapshot(&self.db, &StoredSnapshot { meta: meta.clone(), data })?;
        self.stats.installed.fetch_add(1, Ordering::Relaxed);
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        Ok(self.load_stored()?.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
