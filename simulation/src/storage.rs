//! Storage faults the disk image alone cannot cause: a slow disk (each
//! write waits virtual time before it starts) and a crash in the middle of
//! a snapshot install. The real `LogStore` and `StateMachineStore` do the
//! work; these wrappers only delay and trap, so the code under test is the
//! production code.

use consensus::command::ClusterResponse;
use consensus::raft::log_store::LogStore;
use consensus::raft::state_machine::{SnapshotBuilder, StateMachineStore};
use consensus::raft::{Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote};
use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine};
use openraft::RaftLogReader;
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::RangeBounds;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a trapped snapshot install stops for the crash to land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallTrap {
    /// The snapshot arrived but the state machine has not taken it.
    BeforeApply,
    /// The state machine took it and stored it; openraft has not yet heard,
    /// so the log is not yet purged or truncated to match.
    AfterApply,
}

/// One node's storage faults; shared by the sim and the node's wrappers,
/// and kept across the node's restarts like the disk itself.
#[derive(Debug, Default)]
pub struct StorageFaults {
    /// Virtual ms each write waits before it starts; 0 for a healthy disk.
    pub slow_ms: AtomicU64,
    armed: Mutex<Option<InstallTrap>>,
    /// Set when an install reached its trap: the sim crashes the node.
    pub trapped: AtomicBool,
}

/// How long a trapped install holds still: two steps, so the sim's next
/// step sees it and crashes the node inside the window.
const TRAP_HOLD: Duration = Duration::from_millis(100);

impl StorageFaults {
    pub fn arm(&self, trap: InstallTrap) {
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = Some(trap);
    }

    /// Disarms the trap, returning what was armed.
    pub fn take_armed(&self) -> Option<InstallTrap> {
        self.armed.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    async fn delay(&self) {
        let ms = self.slow_ms.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }

    async fn hold(&self) {
        self.trapped.store(true, Ordering::Relaxed);
        tokio::time::sleep(TRAP_HOLD).await;
    }
}

pub struct FaultyLog {
    pub inner: LogStore,
    pub faults: Arc<StorageFaults>,
}

impl RaftLogReader<TypeConfig> for FaultyLog {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.inner.try_get_log_entries(range).await
    }

    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, StorageError> {
        self.inner.limited_get_log_entries(start, end).await
    }
}

impl RaftLogStorage<TypeConfig> for FaultyLog {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        self.inner.get_log_state().await
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.inner.get_log_reader().await
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.faults.delay().await;
        self.inner.save_vote(vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        self.inner.read_vote().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.inner.save_committed(committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        self.inner.read_committed().await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.faults.delay().await;
        self.inner.append(entries, callback).await
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.faults.delay().await;
        self.inner.truncate(log_id).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.faults.delay().await;
        self.inner.purge(log_id).await
    }
}

pub struct FaultyStateMachine {
    pub inner: StateMachineStore,
    pub faults: Arc<StorageFaults>,
}

impl RaftStateMachine<TypeConfig> for FaultyStateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        self.inner.applied_state().await
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ClusterResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        self.inner.apply(entries).await
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.inner.get_snapshot_builder().await
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        self.inner.begin_receiving_snapshot().await
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let trap = self.faults.take_armed();
        if trap == Some(InstallTrap::BeforeApply) {
            self.faults.hold().await;
        }
        self.faults.delay().await;
        self.inner.install_snapshot(meta, snapshot).await?;
        if trap == Some(InstallTrap::AfterApply) {
            self.faults.hold().await;
        }
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        self.inner.get_current_snapshot().await
    }
}
