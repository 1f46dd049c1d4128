//! Wires the mail actors (listener, screening, queue, local delivery) into an
//! actix system on its own threads, beside the tokio runtime that runs Raft
//! and the admin API. The two worlds meet only through the read handle (lock
//! free) and, later, the proposer (a channel).

use anyhow::Context;
use consensus::state::settings::key;
use consensus::ClusterNode;
use std::sync::Arc;

use crate::config::NodeConfig;
use ::actors::screening::ListenerRole;
use ::actors::supervise::SupervisedAddr;

/// Stops the mail system when told to (or when dropped).
pub struct MailSystem {
    system: actix::System,
    /// The delivery queue, for the admin API's queue commands.
    pub queue: SupervisedAddr<::actors::queue::DeliveryQueue>,
    /// This node's clamd (for `antivirus status`), when one is configured.
    pub clamd: Option<::actors::content::clamd::Clamd>,
    /// Failed logins since the last digest, for the admin API's login check.
    pub failed_logins: ::actors::login_failures::SharedDigest,
    /// This node's linked attachments, for the sweeper.
    pub links: Option<Arc<::actors::attachment_links::store::LinkStore>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The pipeline stages' threads, one runtime per stage.
    stage_runtimes: Vec<tokio::runtime::Runtime>,
}

impl MailSystem {
    pub fn stop(mut self) {
        self.system.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MailSystem {
    fn drop(&mut self) {
        // Never a blocking drop: this may run inside the admin API's runtime.
        for rt in self.stage_runtimes.drain(..) {
            rt.shutdown_background();
        }
    }
}

/// Binds the SMTP listener and starts the actors; returns once listening.
pub fn start(config: &NodeConfig, node: &Arc<ClusterNode>) -> anyhow::Result<MailSystem> {
    let smtp = config.smtp.clone();
    let mail_root = config.mail_root();
    let mail_root_for_cleanup = mail_root.clone();
    let spool_path = config.data_dir.join("queue.redb");
    let read = node.read.clone();
    let failed_logins: ::actors::login_failures::SharedDigest = Default::default();
    let failed_logins_for_services = failed_logins.clone();
    let node_id = node.id;
    let hostname = read.load().state.settings.text(key::SMTP_HOSTNAME);
    let tls = crate::smtp_tls::acceptor(config, &hostname)?;
    let relay_config = ::actors::relay::RelayConfig {
        nameservers: config.dns.socket_addrs()?,
        connections_max: smtp.relay_connections_max,
    };
    let nameservers = relay_config.nameservers.clone();
    let proposer = node.proposer.clone();
    let proposer_for_keeper = node.proposer.clone();
    let proposer_for_updater = node.proposer.clone();
    let proposer_for_schedule = node.proposer.clone();
    let (update_command, update_timeout_ms) =
        (config.antivirus.update_command.clone(), config.antivirus.update_timeout_ms);
    let (pipeline, stage_runtimes) = pipeline(config, node)?;
    let node_for_queue = node.clone();
    let links = pipeline.links.clone();
    let clamd = pipeline.clamd.clone();
    let clamd_for_updater = pipeline.clamd.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new().name("mail".into()).spawn(move || {
        let system = actix::System::new();
        let started = system.block_on(async move {
            use actix::prelude::*;
            let spool = Arc::new(::actors::queue::spool::Spool::open(&spool_path)?);
            let hostname = read.load().state.settings.text(key::SMTP_HOSTNAME);
            // Every long-lived actor is supervised (actors/src/supervise.rs):
            // a panic restarts that actor from the same recipe.
            let local = if smtp.lmtp_server.is_empty() {
                let threads = smtp.delivery_threads.max(1);
                ::actors::queue::LocalRoute::Maildir(SupervisedAddr::start("delivery", move || {
                    let (mail_root, hostname) = (mail_root.clone(), hostname.clone());
                    SyncArbiter::start(threads, move || ::actors::delivery::LocalDelivery {
                        mail_root: mail_root.clone(),
                        hostname: hostname.clone(),
                    })
                }))
            } else {
                let target =
                    ::actors::delivery::lmtp::LmtpTarget::parse(&smtp.lmtp_server).map_err(anyhow::Error::msg)?;
                let lmtp = ::actors::delivery::lmtp::LmtpDelivery {
                    target,
                    hostname: hostname.clone(),
                    timeout: std::time::Duration::from_millis(smtp.lmtp_timeout_ms),
                };
                ::actors::queue::LocalRoute::Lmtp(SupervisedAddr::start("lmtp", move || lmtp.clone().start()))
            };
            // The relay gets its own thread: its DNS and SMTP waits never slow the queue.
            let relay_read = read.clone();
            let relay_tls = ::actors::relay::Relay::tls_connector().map_err(anyhow::Error::msg)?;
            let relay_thread = Arbiter::new().handle();
            let relay = SupervisedAddr::start("relay", move || {
                let relay = ::actors::relay::Relay::new(relay_read.clone(), relay_config.clone(), relay_tls.clone());
                ::actors::relay::Relay::start_in_arbiter(&relay_thread, move |_| relay)
            });
            let queue_read = read.clone();
            let replicator = Arc::new(::actors::queue::replica::Replicator::new(node_for_queue.clone(), spool.clone()));
            let replicas = ::actors::queue::replica::ReplicaService(spool.clone());
            node_for_queue.serve(::actors::queue::replica::REPLICA_SERVICE, Arc::new(replicas));
            let queue_replicator = replicator.clone();
            let queue = SupervisedAddr::start("queue", move || {
                let (spool, read, local, relay) = (spool.clone(), queue_read.clone(), local.clone(), relay.clone());
                ::actors::queue::DeliveryQueue::new(spool, read, local, relay, node_id)
                    .with_replicator(queue_replicator.clone())
                    .start()
            });
            actix::spawn(::actors::queue::replica::run(replicator, queue.clone()));
            let services = Arc::new(::actors::screening::ScreeningServices {
                read: read.clone(),
                proposer,
                queue: queue.clone(),
                nameservers,
                anvil: Default::default(),
                open_connections: Default::default(),
                pipeline,
                login_slots: Arc::new(tokio::sync::Semaphore::new(smtp.login_checks_max.max(1))),
                node_id,
                failed_logins: failed_logins_for_services.clone(),
            });
            actix::spawn(::actors::login_failures::run_notifier(services.clone()));
            let (keeper_read, keeper_proposer, keeper_queue) = (read.clone(), proposer_for_keeper, queue.clone());
            let (updater_read, updater_proposer, updater_clamd) =
                (read.clone(), proposer_for_updater, clamd_for_updater);
            let update = ::actors::content::updater::UpdateConfig {
                command: update_command,
                timeout: std::time::Duration::from_millis(update_timeout_ms.max(1000)),
            };
            SupervisedAddr::start("antivirus-updater", move || {
                let (read, proposer, clamd) = (updater_read.clone(), updater_proposer.clone(), updater_clamd.clone());
                ::actors::content::updater::AntivirusUpdater::new(read, proposer, clamd, update.clone(), node_id)
                    .start()
            });
            if smtp.lmtp_server.is_empty() {
                let (read, root) = (read.clone(), mail_root_for_cleanup.clone());
                let interval = std::time::Duration::from_millis(smtp.junk_cleanup_interval_ms.max(1000));
                SupervisedAddr::start("junk-cleanup", move || {
                    ::actors::delivery::junk_cleanup::JunkCleanup {
                        read: read.clone(),
                        mail_root: root.clone(),
                        interval,
                    }
                    .start()
                });
            }
            let (schedule_read, schedule_proposer) = (read.clone(), proposer_for_schedule);
            SupervisedAddr::start("daily-schedule", move || {
                ::actors::schedule::DailySchedule { read: schedule_read.clone(), proposer: schedule_proposer.clone() }
                    .start()
            });
            SupervisedAddr::start("quarantine", move || {
                let (read, proposer, queue) = (keeper_read.clone(), keeper_proposer.clone(), keeper_queue.clone());
                ::actors::quarantine::QuarantineKeeper::new(read, proposer, queue, node_id).start()
            });
            let workers: Vec<ArbiterHandle> = (0..smtp.session_threads).map(|_| Arbiter::new().handle()).collect();
            let role = |name, implicit_tls, require_auth| ListenerRole {
                name,
                limits: smtp.limits.clone(),
                tls: Some(tls.clone()),
                implicit_tls,
                auth: true,
                require_auth,
            };
            let listeners = [
                ("smtp.listen", &smtp.listen, role("smtp", false, false)),
                ("smtp.submission_listen", &smtp.submission_listen, role("submission", false, true)),
                ("smtp.smtps_listen", &smtp.smtps_listen, role("smtps", true, true)),
            ];
            for (key, addr, role) in listeners {
                if addr.is_empty() {
                    continue;
                }
                let socket = std::net::TcpListener::bind(addr)
                    .and_then(|s| s.set_nonblocking(true).map(|()| s))
                    .with_context(|| format!("binding {key} {addr}"))?;
                tracing::info!(listener = role.name, %addr, "smtp listening");
                let (socket, services, workers) = (Arc::new(socket), services.clone(), workers.clone());
                SupervisedAddr::start(role.name, move || {
                    let (socket, services, role, workers) =
                        (socket.clone(), services.clone(), role.clone(), workers.clone());
                    ::actors::listener::SmtpListener::new(socket, services, role, workers).start()
                });
            }
            anyhow::Ok((actix::System::current(), queue))
        });
        let ok = started.is_ok();
        let _ = ready_tx.send(started);
        if ok {
            let _ = system.run();
        }
    })?;
    let started = ready_rx.recv().context("mail system thread ended before starting").and_then(|r| r);
    let (system, queue) = match started {
        Ok(running) => running,
        Err(e) => {
            // Dropping a runtime inside the caller's async context panics.
            for rt in stage_runtimes {
                rt.shutdown_background();
            }
            return Err(e);
        }
    };
    Ok(MailSystem { system, queue, clamd, failed_logins, links, thread: Some(thread), stage_runtimes })
}

/// Where this node keeps linked attachments; its peers read them from here.
fn link_store(
    config: &NodeConfig,
    node: &Arc<ClusterNode>,
) -> anyhow::Result<Arc<::actors::attachment_links::store::LinkStore>> {
    let dir = config.data_dir.join("attachments");
    let store = ::actors::attachment_links::store::LinkStore::open(&dir, node.id)
        .with_context(|| format!("opening {}", dir.display()))?;
    let store = Arc::new(store);
    let service = ::actors::attachment_links::store::ReadService(store.clone());
    node.serve(::actors::attachment_links::store::READ_SERVICE, Arc::new(service));
    Ok(store)
}

/// The message pipeline's stages, each on runtime threads of its own.
fn pipeline(
    config: &NodeConfig,
    node: &Arc<ClusterNode>,
) -> anyhow::Result<(::actors::pipeline::Pipeline, Vec<tokio::runtime::Runtime>)> {
    use ::actors::pipeline::StageWorker;
    let smtp = &config.smtp;
    let mut runtimes = Vec::new();
    let mut stage = |name: &'static str, threads: usize| -> anyhow::Result<StageWorker> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name(name)
            .enable_all()
            .build()
            .with_context(|| format!("starting the {name} stage threads"))?;
        let worker = StageWorker::new(name, rt.handle().clone(), smtp.stage_mailbox_max);
        runtimes.push(rt);
        Ok(worker)
    };
    let av = &config.antivirus;
    let clamd = (!av.clamd.is_empty()).then(|| {
        ::actors::content::clamd::Clamd::new(::actors::content::clamd::ClamdConfig {
            address: av.clamd.clone(),
            timeout: std::time::Duration::from_millis(av.timeout_ms.max(1)),
            connections_max: av.connections_max,
            stream_bytes_max: av.stream_bytes_max,
        })
    });
    let pipeline = ::actors::pipeline::Pipeline {
        auth: stage("auth", smtp.auth_threads)?,
        content: stage("content", smtp.content_threads)?,
        spam: stage("spam", smtp.stage_threads)?,
        rewrite: stage("rewrite", smtp.stage_threads)?,
        sign: stage("sign", smtp.stage_threads)?,
        clamd,
        proposer: Some(node.proposer.clone()),
        links: Some(link_store(config, node)?),
    };
    Ok((pipeline, runtimes))
}
