//! Everything the node keeps on disk is its user's alone: the data directory
//! and every directory under it 0700, every file 0600, mailboxes included —
//! and a looser directory found at start is tightened and logged.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn loose(dir: &Path, found: &mut Vec<(PathBuf, u32)>, walked: &mut usize) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.metadata().unwrap();
        let mode = meta.permissions().mode() & 0o777;
        *walked += 1;
        if mode & 0o077 != 0 {
            found.push((entry.path(), mode));
        }
        if meta.is_dir() {
            loose(&entry.path(), found, walked);
        }
    }
}

#[test]
fn everything_the_node_creates_is_owner_only() {
    let root = tempfile::tempdir().unwrap();
    let (n, p) = smtp_node(root.path());
    let out = converse(p.smtp, "127.0.0.1", "x@elsewhere.org", &["alice@example.com"]);
    assert!(out.contains("DATA 250"), "{out}");
    assert!(wait_for(Duration::from_secs(10), || (!maildir_files(&n, "alice").is_empty()).then_some(())).is_some());
    let data = n.dir.join("data");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data directory");
    let (mut found, mut walked) = (Vec::new(), 0);
    loose(&data, &mut found, &mut walked);
    assert!(walked > 10, "walked only {walked} entries");
    assert!(found.is_empty(), "readable by others: {found:?}");
    for must in ["raft.redb", "queue.redb", "admin.token", "mail/example.com/alice/new"] {
        assert!(data.join(must).exists(), "{must} was walked");
    }
}

#[test]
fn a_loose_data_directory_is_tightened_at_start() {
    let root = tempfile::tempdir().unwrap();
    let mut n = Node::new(root.path(), "n1", "");
    let data = n.dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(data.join("notes.txt"), "left by an operator").unwrap();
    std::fs::set_permissions(data.join("notes.txt"), std::fs::Permissions::from_mode(0o644)).unwrap();
    n.serve();
    assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(data.join("notes.txt")).unwrap().permissions().mode() & 0o777, 0o600);
    let log = n.log_text();
    assert!(log.contains("file mode tightened") && log.contains("0755") && log.contains("0700"), "{log}");
}
