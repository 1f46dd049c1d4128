//! Deletes spam after `spam.junk_retention_days` (MailPlus "delete spam
//! after N days"): the messages in every local mailbox's Junk folder
//! (`<mail_root>/<domain>/<user>/.Junk/{cur,new}`) whose file is older than
//! that. One actor per node (each node has its own Maildirs); with LMTP
//! delivery the mailbox server owns the Junk folders and this finds none.

use actix::prelude::*;
use consensus::state::settings::key;
use consensus::ReadHandle;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub struct JunkCleanup {
    pub read: ReadHandle,
    pub mail_root: PathBuf,
    pub interval: Duration,
}

impl Actor for JunkCleanup {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.sweep(ctx);
        ctx.run_interval(self.interval, |act, ctx| act.sweep(ctx));
    }
}

impl JunkCleanup {
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        let days = self.read.load().state.settings.uint(key::SPAM_JUNK_RETENTION_DAYS);
        if days == 0 {
            return;
        }
        let root = self.mail_root.clone();
        let max_age = Duration::from_secs(days.saturating_mul(86_400));
        let work = tokio::task::spawn_blocking(move || sweep(&root, max_age, SystemTime::now()));
        ctx.spawn(work.into_actor(self).map(|result, _, _| match result {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "deleted old spam from Junk folders (spam.junk_retention_days)"),
            Err(e) => tracing::warn!(error = %e, "Junk cleanup did not run"),
        }));
    }
}

/// Deletes Junk messages older than `max_age` at `now`; returns how many.
pub fn sweep(mail_root: &Path, max_age: Duration, now: SystemTime) -> usize {
    let mut deleted = 0;
    let dirs = |p: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(p).map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect()).unwrap_or_default()
    };
    for domain in dirs(mail_root) {
        for mailbox in dirs(&domain) {
            for sub in ["cur", "new"] {
                let Ok(files) = std::fs::read_dir(mailbox.join(".Junk").join(sub)) else { continue };
                for file in files.flatten() {
                    let old = file
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|modified| now.duration_since(modified).ok())
                        .is_some_and(|age| age > max_age);
                    if old && std::fs::remove_file(file.path()).is_ok() {
                        deleted += 1;
                    }
                }
            }
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_old_junk_goes() {
        let root = tempfile::tempdir().unwrap();
        let junk = root.path().join("example.com/alice/.Junk/cur");
        let inbox = root.path().join("example.com/alice/cur");
        std::fs::create_dir_all(&junk).unwrap();
        std::fs::create_dir_all(&inbox).unwrap();
        std::fs::write(junk.join("old"), "x").unwrap();
        std::fs::write(inbox.join("old"), "x").unwrap();
        let later = SystemTime::now() + Duration::from_secs(40 * 86_400);
        assert_eq!(sweep(root.path(), Duration::from_secs(30 * 86_400), SystemTime::now()), 0);
        assert_eq!(sweep(root.path(), Duration::from_secs(30 * 86_400), later), 1);
        assert!(!junk.join("old").exists() && inbox.join("old").exists(), "only the Junk folder is cleaned");
    }
}
