//! On-disk format versions. Each redb file of a node (`raft.redb`: the Raft
//! log, its metadata and the state snapshot; `queue.redb`: the spool) carries
//! the version of the format its records are written in, in a table of its
//! own. At open, a file of the current version is used as is, an older one
//! is migrated by its owner (the spool: format 1 to 2), and a newer one —
//! written by a later build — is refused with the file, both versions and
//! what to do: never read with the wrong layout, never silently dropped.
//!
//! Builds before versioning wrote format 1 without the stamp; such a file is
//! read as format 1 (`stored_version` says `None`).

use redb::{Database, TableDefinition};
use std::path::Path;

const FORMAT: TableDefinition<&str, u32> = TableDefinition::new("format");
const VERSION_KEY: &str = "version";

/// The format of `raft.redb` this build writes (log entries, vote and
/// membership metadata, snapshots).
pub const RAFT_FORMAT: u32 = 1;
/// The format of `queue.redb` this build writes (spooled messages).
/// 2: envelopes and bodies in separate tables (1: whole messages in one).
pub const SPOOL_FORMAT: u32 = 2;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    #[error(
        "{file}: written in format {found} by a newer Gatehouse; this build reads format {supported} and older. \
         Run the newer build, or restore this file from a backup taken with this one"
    )]
    TooNew { file: String, found: u32, supported: u32 },
    #[error("{file}: reading the format version: {why}")]
    Unreadable { file: String, why: String },
}

/// The file's stamped version (`None`: unstamped, from before versioning);
/// a version newer than `supported` is an error.
pub fn stored_version(db: &Database, file: &Path, supported: u32) -> Result<Option<u32>, FormatError> {
    let unreadable =
        |e: &dyn std::fmt::Display| FormatError::Unreadable { file: file.display().to_string(), why: e.to_string() };
    let txn = db.begin_read().map_err(|e| unreadable(&e))?;
    let found = match txn.open_table(FORMAT) {
        Ok(table) => table.get(VERSION_KEY).map_err(|e| unreadable(&e))?.map(|v| v.value()),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(unreadable(&e)),
    };
    match found {
        Some(v) if v > supported => Err(FormatError::TooNew { file: file.display().to_string(), found: v, supported }),
        found => Ok(found),
    }
}

/// Checks `db`'s format against `supported` and stamps a file that has none.
/// Returns the version the file had (0: unstamped, from before versioning).
pub fn check_or_stamp(db: &Database, file: &Path, supported: u32) -> Result<u32, FormatError> {
    match stored_version(db, file, supported)? {
        Some(v) => Ok(v),
        None => {
            stamp(db, supported)
                .map_err(|e| FormatError::Unreadable { file: file.display().to_string(), why: e.to_string() })?;
            Ok(0)
        }
    }
}

/// Sets the stamp (tests make "newer build" files with it).
pub fn stamp(db: &Database, version: u32) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(FORMAT)?.insert(VERSION_KEY, version)?;
    txn.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unstamped_is_stamped_newer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        let db = Database::create(&path).unwrap();
        assert_eq!(check_or_stamp(&db, &path, 1), Ok(0));
        assert_eq!(check_or_stamp(&db, &path, 1), Ok(1));
        stamp(&db, 7).unwrap();
        let err = check_or_stamp(&db, &path, 1).unwrap_err();
        assert_eq!(err, FormatError::TooNew { file: path.display().to_string(), found: 7, supported: 1 });
        let text = err.to_string();
        assert!(text.contains("x.redb") && text.contains("format 7") && text.contains("format 1"), "{text}");
    }
}
