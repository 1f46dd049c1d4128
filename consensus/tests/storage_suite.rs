//! openraft's own storage test suite against our redb log store and state machine.
#![allow(clippy::result_large_err)]

use gatehouse_consensus::raft::log_store::LogStore;
use gatehouse_consensus::raft::state_machine::{SnapshotStats, StateMachineStore};
use gatehouse_consensus::raft::{StorageError, TypeConfig};
use gatehouse_consensus::ReadHandle;
use openraft::testing::{StoreBuilder, Suite};
use std::sync::Arc;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(redb::Database::create(dir.path().join("raft.redb")).expect("redb"));
        let log = LogStore::open(db.clone())?;
        let sm = StateMachineStore::open(db, ReadHandle::default(), Arc::new(SnapshotStats::default()))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite_passes() -> Result<(), StorageError> {
    Suite::test_all(RedbBuilder)
}
