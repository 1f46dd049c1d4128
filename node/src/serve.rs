//! `gatehouse serve`, `gatehouse join` and `gatehouse cluster init`: bring
//! up this node's cluster member and its admin API, and stop them cleanly on
//! SIGINT or SIGTERM.

use anyhow::Context;
use consensus::{wall_clock, ClusterNode};
use rand::RngCore;
use std::sync::Arc;
use tracing::info;

use crate::admin::{self, AdminState};
use crate::config::NodeConfig;

/// How to obtain the cluster member when the data directory is new.
pub enum Bootstrap {
    /// Start a new single-node cluster (what `serve` does on an empty directory).
    NewCluster,
    /// Join an existing cluster with a token, through a seed member.
    Join { token: String, seed: String },
}

/// Starts the member (creating or joining a cluster if the directory is new).
async fn start_member(config: &NodeConfig, bootstrap: Bootstrap) -> anyhow::Result<Arc<ClusterNode>> {
    let cluster = config.cluster_config();
    let initialised = ClusterNode::is_initialised(&config.data_dir);
    let node = match bootstrap {
        Bootstrap::Join { .. } if initialised => {
            anyhow::bail!("{}: already a cluster member; use `gatehouse serve`", config.data_dir.display())
        }
        Bootstrap::Join { token, seed } => {
            let node = ClusterNode::join(cluster, wall_clock(), &token, &seed).await?;
            info!(node_id = node.id, cluster_id = %node.cluster_id, %seed, "joined cluster");
            node
        }
        Bootstrap::NewCluster if initialised => ClusterNode::start(cluster, wall_clock()).await?,
        Bootstrap::NewCluster => {
            let node = ClusterNode::init(cluster, wall_clock()).await?;
            info!(cluster_id = %node.cluster_id, "initialised a new single-node cluster");
            node
        }
    };
    Ok(node)
}

/// Reads the admin token, creating it (owner-only) on first start.
pub fn ensure_admin_token(config: &NodeConfig) -> anyhow::Result<String> {
    let path = config.admin_token_path();
    if let Ok(text) = std::fs::read_to_string(&path) {
        let token = text.trim().to_string();
        anyhow::ensure!(token.len() >= 32, "{}: admin token is too short", path.display());
        return Ok(token);
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("creating {}", config.data_dir.display()))?;
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    let mut file = options.open(&path).with_context(|| format!("creating {}", path.display()))?;
    file.write_all(token.as_bytes())?;
    file.sync_all()?;
    Ok(token)
}

/// The umask and the modes of what is already on disk, before the node
/// opens anything (docs/operations/security.md).
fn secure_files(config: &NodeConfig) -> anyhow::Result<()> {
    crate::file_modes::restrict_new_files();
    crate::file_modes::secure(&config.data_dir, &config.mail_root())?;
    Ok(())
}

/// Runs the node until a signal.
pub async fn run(config: NodeConfig, bootstrap: Bootstrap) -> anyhow::Result<()> {
    secure_files(&config)?;
    let node = start_member(&config, bootstrap).await?;
    let token = ensure_admin_token(&config)?;
    let mail = crate::mail::start(&config, &node)?;
    info!(mail_root = %config.mail_root().display(), "mail system running");
    info!(
        node_id = node.id,
        raft = %config.cluster.raft_listen,
        admin = %config.admin.listen,
        data_dir = %config.data_dir.display(),
        "gatehouse node running"
    );
    let state = AdminState {
        node: node.clone(),
        queue: mail.queue.clone(),
        clamd: mail.clamd.clone(),
        failed_logins: mail.failed_logins.clone(),
    };
    if config.smtp.lmtp_server.is_empty() {
        tokio::spawn(warn_local_maildirs(node.clone(), config.mail_root()));
    }
    if let Some(store) = mail.links.clone() {
        let interval = std::time::Duration::from_millis(config.attachment_links.sweep_interval_ms);
        tokio::spawn(crate::attachment_links::sweep(node.clone(), store, interval));
    }
    let links_listen = config.attachment_links.listen.clone();
    let downloads = async {
        if links_listen.is_empty() {
            std::future::pending::<anyhow::Result<()>>().await
        } else {
            info!(listen = %links_listen, "attachment link downloads served");
            crate::attachment_links::run(node.clone(), links_listen.clone()).await
        }
    };
    tokio::select! {
        result = admin::run(state, &config.admin.listen, token, config.admin.body_bytes_max) => {
            result.with_context(|| format!("admin API on {}", config.admin.listen))?;
        }
        result = downloads => {
            result.with_context(|| format!("attachment_links.listen {}", config.attachment_links.listen))?;
        }
        _ = shutdown_signal() => info!("shutting down"),
    }
    tokio::task::spawn_blocking(move || mail.stop()).await?;
    let _ = node.raft.shutdown().await;
    Ok(())
}

/// Per-node Maildirs scatter a user's mail over the nodes that accepted it:
/// said once, at start or when the cluster first has a second member, for
/// a node that delivers to Maildirs rather than over LMTP.
async fn warn_local_maildirs(node: Arc<ClusterNode>, mail_root: std::path::PathBuf) {
    loop {
        let members = node.member_ids().len();
        if members > 1 {
            tracing::warn!(
                members,
                mail_root = %mail_root.display(),
                "this node writes Maildirs under its own mail_root: in a cluster each user's mail is spread over the \
                 nodes that accepted it. Deliver over LMTP to a mailbox server (smtp.lmtp_server), or give every node \
                 the same shared mail_root (docs/operations/cluster.md, \"Where mailboxes live\")"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
    }
}

/// `cluster init`: creates the cluster, waits until this node leads, stops.
pub async fn init_only(config: NodeConfig) -> anyhow::Result<String> {
    secure_files(&config)?;
    let node = ClusterNode::init(config.cluster_config(), wall_clock()).await?;
    ensure_admin_token(&config)?;
    node.raft
        .wait(Some(std::time::Duration::from_secs(10)))
        .current_leader(node.id, "this node leads the new cluster")
        .await
        .context("waiting for the new cluster to elect this node")?;
    let cluster_id = node.cluster_id.clone();
    let _ = node.raft.shutdown().await;
    Ok(cluster_id)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
