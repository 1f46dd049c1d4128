//! A disk with crash semantics for redb: writes land in a volatile image,
//! `sync_data` makes them durable, and a crash throws away everything not
//! yet synced. The broken variant skips the sync, which the invariants must
//! catch.

use std::io;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
enum Change {
    Write(usize, Vec<u8>),
    /// Resizing matters in order: a write, a shrink over it and a regrow
    /// leave zeros, not the write.
    SetLen(usize),
}

#[derive(Debug, Default)]
struct Images {
    durable: Vec<u8>,
    volatile: Vec<u8>,
    /// Changes since the last sync, replayed in order onto `durable` by the
    /// next sync: cheaper than copying the image at every commit.
    unsynced: Vec<Change>,
    /// Bumped by every crash: backends of an earlier incarnation fail all IO,
    /// so a node's leftover tasks can never write after its crash.
    generation: u64,
}

/// One node's disk; clones share it.
#[derive(Debug, Clone, Default)]
pub struct SimDisk {
    images: Arc<Mutex<Images>>,
    /// Test-only fault: fsync does nothing, so a crash loses acknowledged writes.
    skip_fsync: bool,
}

fn lock(images: &Mutex<Images>) -> std::sync::MutexGuard<'_, Images> {
    images.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimDisk {
    pub fn new(skip_fsync: bool) -> Self {
        Self { images: Default::default(), skip_fsync }
    }

    /// The power goes: unsynced writes are lost, and the running
    /// incarnation's backends fail from now on.
    pub fn crash(&self) {
        let mut i = lock(&self.images);
        i.volatile = i.durable.clone();
        i.unsynced.clear();
        i.generation += 1;
    }

    /// A backend for one redb database on this disk, for the current incarnation.
    pub fn backend(&self) -> SimBackend {
        let generation = lock(&self.images).generation;
        SimBackend { disk: self.clone(), generation }
    }

    /// Bytes on the disk (durable image), for the timeline.
    pub fn durable_len(&self) -> usize {
        lock(&self.images).durable.len()
    }
}

#[derive(Debug)]
pub struct SimBackend {
    disk: SimDisk,
    generation: u64,
}

fn down() -> io::Error {
    io::Error::other("simulated disk is down (node crashed)")
}

impl redb::StorageBackend for SimBackend {
    fn len(&self) -> Result<u64, io::Error> {
        let i = lock(&self.disk.images);
        if i.generation != self.generation {
            return Err(down());
        }
        Ok(i.volatile.len() as u64)
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        let i = lock(&self.disk.images);
        if i.generation != self.generation {
            return Err(down());
        }
        let start = offset as usize;
        let end = start.checked_add(len).filter(|e| *e <= i.volatile.len());
        match end {
            Some(end) => Ok(i.volatile[start..end].to_vec()),
            None => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end")),
        }
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut i = lock(&self.disk.images);
        if i.generation != self.generation {
            return Err(down());
        }
        i.volatile.resize(len as usize, 0);
        i.unsynced.push(Change::SetLen(len as usize));
        Ok(())
    }

    fn sync_data(&self, _eventual: bool) -> Result<(), io::Error> {
        let mut i = lock(&self.disk.images);
        if i.generation != self.generation {
            return Err(down());
        }
        if self.disk.skip_fsync {
            return Ok(());
        }
        let changes = std::mem::take(&mut i.unsynced);
        for change in changes {
            match change {
                Change::SetLen(len) => i.durable.resize(len, 0),
                Change::Write(offset, bytes) => {
                    let end = offset + bytes.len();
                    if i.durable.len() < end {
                        i.durable.resize(end, 0);
                    }
                    i.durable[offset..end].copy_from_slice(&bytes);
                }
            }
        }
        debug_assert!(i.durable == i.volatile, "a sync must make the durable image what was written");
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut i = lock(&self.disk.images);
        if i.generation != self.generation {
            return Err(down());
        }
        let end = offset as usize + data.len();
        if i.volatile.len() < end {
            i.volatile.resize(end, 0);
        }
        i.volatile[offset as usize..end].copy_from_slice(data);
        i.unsynced.push(Change::Write(offset as usize, data.to_vec()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::{ReadableTable, TableDefinition};

    const T: TableDefinition<u64, u64> = TableDefinition::new("t");

    /// redb on this disk keeps exactly the committed prefix across crashes,
    /// including deletes (the log store's truncate and purge).
    #[test]
    fn redb_survives_crashes_with_exactly_what_it_committed() {
        let disk = SimDisk::new(false);
        let mut expected: std::collections::BTreeSet<u64> = Default::default();
        let mut next = 1u64;
        for round in 0..30u64 {
            let db = redb::Database::builder().create_with_backend(disk.backend()).expect("open");
            {
                let txn = db.begin_read().expect("read");
                let have: std::collections::BTreeSet<u64> = match txn.open_table(T) {
                    Ok(t) => t.iter().expect("iter").map(|e| e.expect("entry").0.value()).collect(),
                    Err(_) => Default::default(),
                };
                assert_eq!(have, expected, "round {round}");
            }
            for i in 0..(5 + round % 7) {
                let txn = db.begin_write().expect("write");
                {
                    let mut t = txn.open_table(T).expect("table");
                    if i % 4 == 3 {
                        // Delete the tail, like a log truncate.
                        let cut = next.saturating_sub(3);
                        t.retain_in(cut.., |_, _| false).expect("retain");
                        expected.retain(|k| *k < cut);
                        next = cut;
                    } else {
                        for _ in 0..3 {
                            t.insert(next, next * 10).expect("insert");
                            expected.insert(next);
                            next += 1;
                        }
                    }
                }
                txn.commit().expect("commit");
            }
            // Writes that never commit are lost with the crash.
            let txn = db.begin_write().expect("write");
            txn.open_table(T).expect("table").insert(u64::MAX, 0).expect("insert");
            disk.crash();
            drop(txn);
            drop(db);
        }
    }
}
