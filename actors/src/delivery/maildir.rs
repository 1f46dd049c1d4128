//! Maildir delivery (the maildir(5) format Dovecot and Courier read).
//!
//! A message is written to `tmp/`, fsync'd, renamed into `new/`, and the
//! `new/` directory is fsync'd, so after a crash it is either fully in `new/`
//! or not there at all. The file name carries the queue id and recipient
//! index (`G<queue id>_<index>`), which makes re-delivery after a crash
//! idempotent: `already_delivered` finds a copy that made it before the crash.
//! Layout: `<mail_root>/<domain>/<local part>/{tmp,new,cur}`, plus the
//! `.Junk` folder the spam work files into.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The Maildir of a user address `local@domain`.
pub fn mailbox_dir(mail_root: &Path, address: &str) -> io::Result<PathBuf> {
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("{address:?} is not an address")))?;
    // Addresses come validated from the directory; refuse anything that could leave the root anyway.
    let safe = |s: &str| !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0');
    if !safe(local) || !safe(domain) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{address:?} is not a safe mailbox name")));
    }
    Ok(mail_root.join(domain).join(local))
}

/// Creates the Maildir and its Junk folder if missing.
pub fn ensure_maildir(dir: &Path) -> io::Result<()> {
    for folder in [dir.to_path_buf(), dir.join(".Junk")] {
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir_all(folder.join(sub))?;
        }
    }
    Ok(())
}

fn tag(queue_id: &str, index: usize) -> String {
    format!("G{queue_id}_{index}")
}

/// True if this queue id and recipient index already has a file in `new/`
/// or `cur/`, of the inbox or of the Junk folder.
pub fn already_delivered(dir: &Path, queue_id: &str, index: usize) -> io::Result<bool> {
    let needle = format!(".{}.", tag(queue_id, index));
    let junk = dir.join(".Junk");
    for sub in [dir.join("new"), dir.join("cur"), junk.join("new"), junk.join("cur")] {
        let entries = match fs::read_dir(sub) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            if entry?.file_name().to_string_lossy().contains(&needle) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// Writes one message into `dir/new`, or `dir/.Junk/new` (creating the
/// Maildir if needed). `now_s` and `hostname` make the name unique in the
/// maildir(5) way.
pub fn deliver(
    mailbox: &Path,
    junk: bool,
    queue_id: &str,
    index: usize,
    data: &[u8],
    now_s: u64,
    hostname: &str,
) -> io::Result<PathBuf> {
    ensure_maildir(mailbox)?;
    let junk_dir = mailbox.join(".Junk");
    let dir = if junk { junk_dir.as_path() } else { mailbox };
    let host = hostname.replace(['/', ':'], "_");
    let name = format!("{now_s}.{}.{host},S={}", tag(queue_id, index), data.len());
    let tmp = dir.join("tmp").join(&name);
    let new = dir.join("new").join(&name);
    {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
    }
    fs::rename(&tmp, &new)?;
    File::open(dir.join("new"))?.sync_all()?;
    Ok(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_atomically_and_detects_redelivery() {
        let root = tempfile::tempdir().unwrap();
        let dir = mailbox_dir(root.path(), "alice@example.com").unwrap();
        assert!(!already_delivered(&dir, "Q1", 0).unwrap());
        let path = deliver(&dir, false, "Q1", 0, b"Subject: x\r\n\r\nhi\r\n", 1_700_000_000, "mx.example.com").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"Subject: x\r\n\r\nhi\r\n");
        assert!(path.starts_with(dir.join("new")));
        assert!(dir.join(".Junk/new").is_dir());
        assert_eq!(fs::read_dir(dir.join("tmp")).unwrap().count(), 0);
        assert!(already_delivered(&dir, "Q1", 0).unwrap());
        assert!(!already_delivered(&dir, "Q1", 1).unwrap());
        assert!(!already_delivered(&dir, "Q", 0).unwrap(), "ids must not match by prefix");
        let junk = deliver(&dir, true, "Q1", 1, b"Subject: y\r\n\r\nhi\r\n", 1_700_000_000, "mx.example.com").unwrap();
        assert!(junk.starts_with(dir.join(".Junk/new")), "{}", junk.display());
        assert!(already_delivered(&dir, "Q1", 1).unwrap(), "a copy in Junk counts as delivered");
        assert!(mailbox_dir(root.path(), "../x@example.com").is_err());
        assert!(mailbox_dir(root.path(), "a@..").is_err());
    }
}
