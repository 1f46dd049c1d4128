//! The antivirus updater: one actor per node. It carries out the cluster's
//! definition update requests on this node (run the node's update command,
//! then clamd's `RELOAD`) and reports this node's clamd version to the
//! replicated state so `antivirus status` shows every node. The daily
//! request at `antivirus.update_at` comes from `crate::schedule`.

use actix::prelude::*;
use consensus::state::AntivirusNodeStatus;
use consensus::{Command, Proposer, ReadHandle};
use std::time::Duration;

use super::clamd::Clamd;
use crate::queue::now_ms;

const TICK: Duration = Duration::from_secs(1);
/// How often clamd's version is checked (and reported when it changed).
const VERSION_CHECK_TICKS: u32 = 60;

/// How this node updates its definitions (node file `[antivirus]`).
#[derive(Debug, Clone)]
pub struct UpdateConfig {
    /// Run with `sh -c`; empty: only reload (signatures shared or updated elsewhere).
    pub command: String,
    pub timeout: Duration,
}

pub struct AntivirusUpdater {
    read: ReadHandle,
    proposer: Proposer,
    clamd: Option<Clamd>,
    config: UpdateConfig,
    node_id: u64,
    /// The last status reported (or found in the state at start).
    reported: Option<AntivirusNodeStatus>,
    busy: bool,
    ticks: u32,
}

impl AntivirusUpdater {
    pub fn new(read: ReadHandle, proposer: Proposer, clamd: Option<Clamd>, config: UpdateConfig, node_id: u64) -> Self {
        let reported = read.load().state.antivirus.nodes.get(&node_id).cloned();
        Self { read, proposer, clamd, config, node_id, reported, busy: false, ticks: 0 }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.busy {
            return;
        }
        let applied = self.read.load();
        let done = self.reported.as_ref().map_or(0, |s| s.generation_done);
        let wanted = applied.state.antivirus.generation;
        let check_version = self.ticks.is_multiple_of(VERSION_CHECK_TICKS);
        self.ticks = self.ticks.wrapping_add(1);
        if wanted <= done && !check_version {
            return;
        }
        self.busy = true;
        let (clamd, config, previous) = (self.clamd.clone(), self.config.clone(), self.reported.clone());
        let work = async move {
            let mut status = previous.clone().unwrap_or_default();
            if wanted > done {
                status.update_result = update(&config, clamd.as_ref()).await;
                status.generation_done = wanted;
                status.updated_ms = now_ms();
            }
            match clamd.as_ref() {
                Some(c) => match c.version().await {
                    Ok(v) => (status.version, status.error) = (v, String::new()),
                    Err(e) => (status.version, status.error) = (String::new(), e.to_string()),
                },
                None => (status.version, status.error) = (String::new(), "no clamd configured".into()),
            }
            status
        };
        ctx.spawn(work.into_actor(self).map(|mut status, act, _| {
            act.busy = false;
            let changed = act.reported.as_ref().is_none_or(|r| {
                (&r.version, &r.error, r.generation_done) != (&status.version, &status.error, status.generation_done)
            });
            if changed {
                status.reported_ms = now_ms();
                act.reported = Some(status.clone());
                let (proposer, node_id) = (act.proposer.clone(), act.node_id);
                actix::spawn(async move {
                    if let Err(e) = proposer.propose(Command::ReportAntivirusStatus { node_id, status }).await {
                        tracing::debug!(error = %e, "antivirus status not reported");
                    }
                });
            }
        }));
    }
}

impl Actor for AntivirusUpdater {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
    }
}

/// Runs the update command, then reloads clamd; says how it went.
async fn update(config: &UpdateConfig, clamd: Option<&Clamd>) -> String {
    let mut result = Vec::new();
    if !config.command.is_empty() {
        let run = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(&config.command)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(config.timeout, run).await {
            Ok(Ok(out)) if out.status.success() => result.push("update command succeeded".to_string()),
            Ok(Ok(out)) => {
                let stderr = String::from_utf8_lossy(&out.stderr);
                let last = stderr.lines().last().unwrap_or_default();
                result.push(format!("update command failed ({}): {last}", out.status));
            }
            Ok(Err(e)) => result.push(format!("update command could not run: {e}")),
            Err(_) => result.push(format!("update command timed out after {} s", config.timeout.as_secs())),
        }
    }
    match clamd {
        Some(c) => match c.reload().await {
            Ok(answer) => result.push(format!("clamd: {answer}")),
            Err(e) => result.push(format!("clamd reload failed: {e}")),
        },
        None => result.push("no clamd to reload".into()),
    }
    let text = result.join("; ");
    tracing::info!(result = %text, "antivirus definitions updated");
    text
}
