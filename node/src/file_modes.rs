//! Who may read what the node keeps on disk: only its own user. The data
//! directory holds password hashes and DKIM private keys (`raft.redb`),
//! message bodies (`queue.redb`), the admin token and TLS keys; the mail
//! root holds every mailbox. Postfix and Dovecot keep theirs the same way.
//!
//! The process umask is 077, so everything it creates is 0700 (directories)
//! or 0600 (files). At start, anything it finds looser — a directory made by
//! hand, files from a build before this rule — is tightened, and each change
//! is logged with the path and both modes.

use anyhow::Context;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Nothing the process creates from now on is readable by others.
pub fn restrict_new_files() {
    // SAFETY: umask only swaps the process's file-creation mask.
    unsafe {
        libc::umask(0o077);
    }
}

/// Tightens the data directory (all of it) and the mail root (the directory
/// itself: 0700 there closes every mailbox beneath it), creating them if
/// missing. Returns the paths it changed.
pub fn secure(data_dir: &Path, mail_root: &Path) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    for dir in [data_dir, mail_root] {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    tighten_tree(data_dir, mail_root, &mut changed)?;
    tighten(mail_root, DIR_MODE, &mut changed)?;
    Ok(changed)
}

fn tighten_tree(dir: &Path, skip: &Path, changed: &mut Vec<String>) -> anyhow::Result<()> {
    tighten(dir, DIR_MODE, changed)?;
    let entries = fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        let meta = fs::symlink_metadata(&path).with_context(|| format!("reading {}", path.display()))?;
        if meta.is_dir() && path != skip {
            tighten_tree(&path, skip, changed)?;
        } else if meta.is_file() {
            tighten(&path, FILE_MODE, changed)?;
        }
    }
    Ok(())
}

fn tighten(path: &Path, allowed: u32, changed: &mut Vec<String>) -> anyhow::Result<()> {
    let mode = fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.permissions().mode() & 0o7777;
    let tight = mode & allowed;
    if tight != mode {
        fs::set_permissions(path, fs::Permissions::from_mode(tight))
            .with_context(|| format!("{}: mode {mode:04o} is too open and could not be changed", path.display()))?;
        tracing::warn!(path = %path.display(), from = format!("{mode:04o}"), to = format!("{tight:04o}"), "file mode tightened: readable by other users");
        changed.push(format!("{} {mode:04o} -> {tight:04o}", path.display()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn loose_modes_are_tightened_and_reported() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("data");
        let mail = data.join("mail");
        fs::create_dir_all(mail.join("example.com/alice/new")).unwrap();
        fs::write(data.join("raft.redb"), b"x").unwrap();
        fs::write(mail.join("example.com/alice/new/1"), b"x").unwrap();
        for (p, m) in [(&data, 0o755), (&mail, 0o755)] {
            fs::set_permissions(p, fs::Permissions::from_mode(m)).unwrap();
        }
        fs::set_permissions(data.join("raft.redb"), fs::Permissions::from_mode(0o644)).unwrap();
        let changed = secure(&data, &mail).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&mail), 0o700);
        assert_eq!(mode(&data.join("raft.redb")), 0o600);
        assert!(changed.iter().any(|c| c.ends_with("raft.redb 0644 -> 0600")), "{changed:?}");
        // The mailboxes themselves are not walked (the closed mail root guards them).
        assert!(!changed.iter().any(|c| c.contains("alice")), "{changed:?}");
        assert!(secure(&data, &mail).unwrap().is_empty(), "a second start changes nothing");
    }
}
