//! On-disk formats carry a version: a data directory from before versioning
//! is read (and stamped), one written by a newer build is refused at start
//! with a message naming the file and both versions — nothing is dropped.

mod common;

use common::*;
use redb::{Database, TableDefinition};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const FORMAT: TableDefinition<&str, u32> = TableDefinition::new("format");

fn version(file: &Path) -> Option<u32> {
    let db = Database::create(file).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(FORMAT).ok()?;
    let v = table.get("version").unwrap().map(|v| v.value());
    v
}

/// What builds before versioning left: the same records, no stamp.
fn unstamp(file: &Path) {
    let db = Database::create(file).unwrap();
    let txn = db.begin_write().unwrap();
    txn.delete_table(FORMAT).unwrap();
    txn.commit().unwrap();
}

/// Starts `serve` expecting it to fail; returns what it printed.
fn serve_fails(n: &Node) -> String {
    let mut child = Command::new(binary())
        .args(["-c", n.config.to_str().unwrap(), "serve"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let exited = wait_for(Duration::from_secs(20), || child.try_wait().unwrap());
    if exited.is_none() {
        let _ = child.kill();
        panic!("serve started on a data directory it should refuse");
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unversioned_data_directory_is_read_and_a_newer_one_refused() {
    let root = tempfile::tempdir().unwrap();
    let (mut n, _) = smtp_node(root.path());
    let data = n.dir.join("data");
    let (raft, queue) = (data.join("raft.redb"), data.join("queue.redb"));
    n.kill9();
    assert_eq!(version(&raft), Some(consensus::format::RAFT_FORMAT));
    assert_eq!(version(&queue), Some(consensus::format::SPOOL_FORMAT));

    // As the previous build left it: read, stamped, nothing lost.
    unstamp(&raft);
    unstamp(&queue);
    assert_eq!(version(&raft), None);
    n.serve();
    let users = n.ok(&["user", "list"]);
    assert!(users.to_string().contains("alice@example.com"), "{users}");
    n.kill9();
    assert_eq!(version(&raft), Some(consensus::format::RAFT_FORMAT));
    assert_eq!(version(&queue), Some(consensus::format::SPOOL_FORMAT));

    // Written by a newer build: refused, naming the file and both versions.
    consensus::format::stamp(&Database::create(&raft).unwrap(), 99).unwrap();
    let err = serve_fails(&n);
    assert!(err.contains("raft.redb") && err.contains("format 99") && err.contains("reads format 1"), "{err}");
    consensus::format::stamp(&Database::create(&raft).unwrap(), consensus::format::RAFT_FORMAT).unwrap();
    consensus::format::stamp(&Database::create(&queue).unwrap(), 99).unwrap();
    let err = serve_fails(&n);
    assert!(err.contains("queue.redb") && err.contains("format 99") && err.contains("reads format 2"), "{err}");
    // Refusing changed nothing: back at the current format, the node starts with its data.
    consensus::format::stamp(&Database::create(&queue).unwrap(), consensus::format::SPOOL_FORMAT).unwrap();
    n.serve();
    assert!(n.ok(&["user", "list"]).to_string().contains("alice@example.com"));
}
