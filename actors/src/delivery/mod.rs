//! Local delivery: the actor that writes Maildirs. It runs on a small pool of
//! threads (actix `SyncArbiter`) because every delivery ends in fsync.

pub mod junk_cleanup;
pub mod lmtp;
pub mod maildir;

use actix::prelude::*;
use std::path::PathBuf;
use std::sync::Arc;

/// Deliver one copy into a local user's Maildir.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct DeliverLocal {
    pub queue_id: String,
    /// The recipient's position in the message, part of the file name.
    pub index: usize,
    pub mailbox: String,
    pub data: Arc<Vec<u8>>,
    /// After a crash: skip if this copy already reached the Maildir.
    pub recovering: bool,
    /// Into the Junk folder (`.Junk`, Maildir++ as Dovecot reads it).
    pub junk: bool,
    pub now_s: u64,
}

pub struct LocalDelivery {
    /// Root of all Maildirs: `<mail_root>/<domain>/<local part>`.
    pub mail_root: PathBuf,
    pub hostname: String,
}

impl Actor for LocalDelivery {
    type Context = SyncContext<Self>;
}

impl Handler<DeliverLocal> for LocalDelivery {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: DeliverLocal, _: &mut SyncContext<Self>) -> Self::Result {
        let dir = maildir::mailbox_dir(&self.mail_root, &msg.mailbox).map_err(|e| e.to_string())?;
        if msg.recovering && maildir::already_delivered(&dir, &msg.queue_id, msg.index).map_err(|e| e.to_string())? {
            return Ok(());
        }
        maildir::deliver(&dir, msg.junk, &msg.queue_id, msg.index, &msg.data, msg.now_s, &self.hostname)
            .map(
                |path| tracing::info!(queue_id = %msg.queue_id, to = %msg.mailbox, path = %path.display(), "delivered"),
            )
            .map_err(|e| format!("{}: {e}", dir.display()))
    }
}
