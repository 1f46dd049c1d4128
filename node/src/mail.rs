//! Wires the mail actors (listener, screening, queue, local delivery) into an
//! actix system on its own threads, beside the tokio runtime that runs Raft
//! and the admin API. The two worlds meet only through the read handle (lock
//! free) and, later, the proposer (a channel).

use anyhow::Context;
use consensus::ClusterNode;
use std::sync::Arc;

use crate::config::NodeConfig;

/// Stops the mail system when told to (or when dropped).
pub struct MailSystem {
    system: actix::System,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MailSystem {
    pub fn stop(mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Binds the SMTP listener and starts the actors; returns once listening.
pub fn start(config: &NodeConfig, node: &Arc<ClusterNode>) -> anyhow::Result<MailSystem> {
    let smtp = config.smtp.clone();
    let mail_root = config.mail_root();
    let spool_path = config.data_dir.join("queue.redb");
    let read = node.read.clone();
    let node_id = node.id;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name("mail".into()).spawn(move || {
        let system = actix::System::new();
        let started = system.block_on(async move {
            use actix::prelude::*;
            let spool = Arc::new(::actors::queue::spool::Spool::open(&spool_path)?);
            let hostname = read.load().state.settings.get("smtp.hostname").unwrap_or_else(|_| "localhost".into());
            let local = SyncArbiter::start(smtp.delivery_threads.max(1), move || ::actors::delivery::LocalDelivery {
                mail_root: mail_root.clone(),
                hostname: hostname.clone(),
            });
            let queue = ::actors::queue::DeliveryQueue::new(spool, read.clone(), local, node_id).start();
            let listener = tokio::net::TcpListener::bind(&smtp.listen)
                .await
                .with_context(|| format!("binding smtp.listen {}", smtp.listen))?;
            let workers = (0..smtp.session_threads).map(|_| Arbiter::new().handle()).collect();
            ::actors::listener::SmtpListener::new(listener, read, queue, smtp.limits.clone(), workers).start();
            anyhow::Ok(actix::System::current())
        });
        let ok = started.is_ok();
        let _ = ready_tx.send(started);
        if ok {
            let _ = system.run();
        }
    })?;
    let system = ready_rx.recv().context("mail system thread ended before starting")??;
    Ok(MailSystem { system, thread: Some(thread) })
}
