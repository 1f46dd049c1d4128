//! The node's configuration file (TOML). Every key has a default, so
//! `gatehouse serve` runs with no file at all; unknown keys are refused with
//! their name, so a typo never passes silently. docs/configuration.md lists
//! every key.

use anyhow::Context;
use consensus::ClusterConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Where this node keeps its identity, certificates, Raft log and admin token.
    pub data_dir: PathBuf,
    pub admin: AdminConfig,
    /// The `[cluster]` table; `data_dir` and `admin_advertise` come from the top level.
    pub cluster: ClusterConfig,
    pub log: LogConfig,
    pub smtp: SmtpConfig,
    pub dns: DnsConfig,
    pub antivirus: AntivirusConfig,
    pub attachment_links: AttachmentLinksConfig,
}

/// This node's side of attachment linking; whether and what is linked are
/// the replicated `attachment_links.*` settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AttachmentLinksConfig {
    /// The download listener (`GET /a/{token}`), plain HTTP for the load
    /// balancer to front with TLS; empty: this node serves no downloads
    /// (it still stores files and serves them to the other nodes).
    pub listen: String,
    /// How often files whose link expired or was revoked are deleted.
    pub sweep_interval_ms: u64,
}

impl Default for AttachmentLinksConfig {
    fn default() -> Self {
        Self { listen: String::new(), sweep_interval_ms: 600_000 }
    }
}

/// This node's clamd. Whether messages are scanned is the replicated
/// setting `antivirus.enabled`; where the scanner runs is per node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AntivirusConfig {
    /// `unix:/path` or `host:port`; empty: no scanner on this node.
    pub clamd: String,
    /// One scan (connect, send, answer) may take this long.
    pub timeout_ms: u64,
    /// Scans running at once on this node.
    pub connections_max: usize,
    /// clamd's `StreamMaxLength`: longer messages are scanned attachment by attachment.
    pub stream_bytes_max: usize,
    /// Run by `antivirus update` and at `antivirus.update_at`, before clamd's RELOAD.
    pub update_command: String,
    /// The update command may run this long; then it is killed.
    pub update_timeout_ms: u64,
}

impl Default for AntivirusConfig {
    fn default() -> Self {
        Self {
            clamd: "unix:/run/clamav/clamd.ctl".into(),
            timeout_ms: 30_000,
            connections_max: 8,
            stream_bytes_max: 25 * 1024 * 1024,
            update_command: "freshclam".into(),
            update_timeout_ms: 600_000,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// DNS servers as "ip:port" (e.g. "127.0.0.1:53"); empty means /etc/resolv.conf.
    pub nameservers: Vec<String>,
}

impl DnsConfig {
    pub fn socket_addrs(&self) -> anyhow::Result<Vec<std::net::SocketAddr>> {
        self.nameservers
            .iter()
            .map(|s| s.parse().with_context(|| format!("dns.nameservers: {s:?} is not ip:port")))
            .collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The MX listener (port 25 in production; unprivileged by default):
    /// STARTTLS offered, AUTH offered once TLS is on.
    pub listen: String,
    /// Submission (port 587): STARTTLS, and AUTH before MAIL. Empty disables it.
    pub submission_listen: String,
    /// Submission over implicit TLS (port 465, RFC 8314). Empty disables it.
    pub smtps_listen: String,
    /// PEM certificate chain for TLS; empty: a self-signed one in `<data_dir>/smtp-tls/`.
    pub tls_cert_file: String,
    /// PEM private key for `tls_cert_file`.
    pub tls_key_file: String,
    /// Root of the Maildirs; empty means `<data_dir>/mail`.
    pub mail_root: String,
    /// Threads running SMTP sessions (actix arbiters).
    pub session_threads: usize,
    /// Threads writing Maildirs (each delivery ends in fsync).
    pub delivery_threads: usize,
    /// Password checks (argon2: ~19 MiB and tens of ms each) running at once;
    /// more AUTH attempts wait their turn.
    pub login_checks_max: usize,
    /// Threads of the message stage (DKIM/ARC/DMARC checks, DKIM signing):
    /// its CPU work never runs on the session threads.
    pub auth_threads: usize,
    /// Threads of the content stage (MIME parse, attachment and dangerous-content checks, clamd).
    pub content_threads: usize,
    /// Threads of each of the spam, rewrite and sign stages.
    pub stage_threads: usize,
    /// Messages queued or in work at each stage; the next end of DATA waits.
    pub stage_mailbox_max: usize,
    /// How often old spam is deleted from the Junk folders (`spam.junk_retention_days`).
    pub junk_cleanup_interval_ms: u64,
    /// Outbound SMTP connections open at once (relay to other domains).
    pub relay_connections_max: usize,
    /// Deliver local mail over LMTP to this server ("host:port" or "unix:/path")
    /// instead of writing Maildirs; empty means Maildir.
    pub lmtp_server: String,
    /// How long to wait for each reply of the LMTP server.
    pub lmtp_timeout_ms: u64,
    pub limits: actors::smtp::SmtpLimits,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2525".into(),
            submission_listen: "127.0.0.1:2587".into(),
            smtps_listen: "127.0.0.1:2465".into(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            mail_root: String::new(),
            session_threads: 2,
            delivery_threads: 2,
            auth_threads: 2,
            content_threads: 2,
            stage_threads: 1,
            stage_mailbox_max: 64,
            junk_cleanup_interval_ms: 3_600_000,
            login_checks_max: 4,
            relay_connections_max: 50,
            lmtp_server: String::new(),
            lmtp_timeout_ms: 60_000,
            limits: actors::smtp::SmtpLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// The admin API's address; loopback by default, as it grants full control.
    pub listen: String,
    /// Largest request body the admin API accepts (an import document).
    pub body_bytes_max: usize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self { listen: "127.0.0.1:8025".into(), body_bytes_max: 16 * 1024 * 1024 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. "info" or "gatehouse=debug,openraft=warn".
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { filter: "info,openraft=warn".into() }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("gatehouse-data"),
            admin: AdminConfig::default(),
            cluster: ClusterConfig::default(),
            log: LogConfig::default(),
            smtp: SmtpConfig::default(),
            dns: DnsConfig::default(),
            antivirus: AntivirusConfig::default(),
            attachment_links: AttachmentLinksConfig::default(),
        }
    }
}

/// Keys that became replicated settings: named with where they went, so an
/// old file fails with directions instead of "unknown field".
fn moved_to_settings(text: &str) -> anyhow::Result<()> {
    let Ok(table) = toml::from_str::<toml::Table>(text) else { return Ok(()) };
    let limits = table.get("smtp").and_then(|s| s.get("limits")).and_then(|l| l.as_table());
    for key in ["message_bytes_max", "recipients_max", "hops_max"] {
        if limits.is_some_and(|l| l.contains_key(key)) {
            anyhow::bail!(
                "smtp.limits.{key} is now the cluster setting smtp.{key}: remove it from this file and run \
                 `gatehouse config set smtp.{key} VALUE` once for the whole cluster"
            );
        }
    }
    Ok(())
}

impl NodeConfig {
    /// Reads the file if given, else the embedded defaults.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        moved_to_settings(&text).with_context(|| format!("config {}", path.display()))?;
        let config: Self = toml::from_str(&text).with_context(|| format!("config {}", path.display()))?;
        config.validate().with_context(|| format!("config {}", path.display()))?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let c = &self.cluster;
        anyhow::ensure!(c.heartbeat_ms > 0, "cluster.heartbeat_ms must be > 0");
        anyhow::ensure!(
            c.election_timeout_min_ms > c.heartbeat_ms && c.election_timeout_max_ms > c.election_timeout_min_ms,
            "cluster.election_timeout_min_ms must exceed heartbeat_ms and be below election_timeout_max_ms"
        );
        anyhow::ensure!(c.snapshot_logs_since_last > 0, "cluster.snapshot_logs_since_last must be > 0");
        anyhow::ensure!(c.proposer.batch_commands_max > 0, "cluster.proposer.batch_commands_max must be > 0");
        anyhow::ensure!(c.frame_bytes_max >= 1024 * 1024, "cluster.frame_bytes_max must be at least 1 MiB");
        self.dns.socket_addrs()?;
        anyhow::ensure!(self.smtp.relay_connections_max > 0, "smtp.relay_connections_max must be > 0");
        if !self.smtp.lmtp_server.is_empty() {
            actors::delivery::lmtp::LmtpTarget::parse(&self.smtp.lmtp_server)
                .map_err(|e| anyhow::anyhow!("smtp.lmtp_server: {e}"))?;
        }
        anyhow::ensure!(self.smtp.lmtp_timeout_ms > 0, "smtp.lmtp_timeout_ms must be > 0");
        anyhow::ensure!(
            self.attachment_links.sweep_interval_ms >= 1000,
            "attachment_links.sweep_interval_ms must be at least 1000"
        );
        Ok(())
    }

    pub fn cluster_config(&self) -> ClusterConfig {
        ClusterConfig {
            data_dir: self.data_dir.clone(),
            admin_advertise: self.admin.listen.clone(),
            ..self.cluster.clone()
        }
    }

    pub fn mail_root(&self) -> PathBuf {
        if self.smtp.mail_root.is_empty() {
            self.data_dir.join("mail")
        } else {
            PathBuf::from(&self.smtp.mail_root)
        }
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<NodeConfig>("[cluster]\nheartbeat = 5\n").unwrap_err().to_string();
        assert!(err.contains("heartbeat"), "{err}");
    }

    #[test]
    fn defaults_round_trip() {
        let text = toml::to_string(&NodeConfig::default()).unwrap();
        let back: NodeConfig = toml::from_str(&text).unwrap();
        assert_eq!(back.cluster.raft_listen, "127.0.0.1:7025");
        back.validate().unwrap();
    }
}

#[cfg(test)]
mod docs_tests {
    use super::*;

    fn keys(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
        for (k, v) in table {
            let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            match v {
                toml::Value::Table(t) => keys(&key, t, out),
                _ => out.push(key),
            }
        }
    }

    /// docs/configuration.md must name every config key and every replicated setting.
    #[test]
    fn configuration_reference_lists_every_key() {
        let doc = include_str!("../../docs/configuration.md");
        let table: toml::Table = toml::from_str(&toml::to_string(&NodeConfig::default()).unwrap()).unwrap();
        let mut all = Vec::new();
        keys("", &table, &mut all);
        all.extend(consensus::state::SETTING_SPECS.iter().map(|s| s.key.to_string()));
        let missing: Vec<_> = all.iter().filter(|k| !doc.contains(&format!("`{k}`"))).collect();
        assert!(missing.is_empty(), "docs/configuration.md does not list {missing:?}");
    }
}
