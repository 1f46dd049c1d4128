//! Throughput of the content stage over a directory of messages (the
//! SpamAssassin corpus in ../shared/corpus): the one parse, the attachment
//! filter with a typical rule set, every dangerous-content check, and — when
//! a clamd address is given — the antivirus scan, `CONCURRENCY` messages at
//! a time as the node's content threads would run them. Prints messages per
//! second and the mean time per message. bench/content-stage runs it beside
//! clamdscan on the same files.
//!
//!   cargo run --release -p gatehouse-actors --example content_stage -- DIR [CLAMD] [CONCURRENCY]

use consensus::state::{AttachmentAction, AttachmentMatch, AttachmentRule, ClusterState};
use consensus::AppliedState;
use gatehouse_actors::content::clamd::{Clamd, ClamdConfig};
use gatehouse_actors::message::InboundMessage;

#[path = "shared/corpus.rs"]
mod corpus;
use corpus::{message, walk};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).ok_or("usage: content_stage DIR [CLAMD] [CONCURRENCY]")?;
    let clamd_address = args.get(2).filter(|a| !a.is_empty() && *a != "-").cloned();
    let concurrency: usize = args.get(3).map(|c| c.parse()).transpose()?.unwrap_or(2);

    let mut files: Vec<_> = walk(std::path::Path::new(dir))?;
    files.sort();
    let bodies: Vec<Vec<u8>> = files.iter().map(std::fs::read).collect::<Result<_, _>>()?;
    let bytes: usize = bodies.iter().map(Vec::len).sum();

    let mut state = ClusterState::default();
    state.settings.set("antivirus.enabled", if clamd_address.is_some() { "true" } else { "false" })?;
    for (m, v) in
        [(AttachmentMatch::Extension, "exe"), (AttachmentMatch::Extension, "js"), (AttachmentMatch::Type, "executable")]
    {
        let rule =
            AttachmentRule { matches: m, value: v.into(), action: AttachmentAction::Reject, comment: String::new() };
        state.content.add(rule).map_err(|e| format!("{e:?}"))?;
    }
    let applied = Arc::new(AppliedState { applied_index: 1, state, rules: Default::default() });
    let clamd = clamd_address.map(|address| {
        Clamd::new(ClamdConfig {
            address,
            timeout: Duration::from_secs(30),
            connections_max: concurrency,
            stream_bytes_max: 25 * 1024 * 1024,
        })
    });

    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(concurrency.max(1)).enable_all().build()?;
    let messages: Vec<Arc<InboundMessage>> = bodies.into_iter().map(|b| Arc::new(message(b))).collect();
    let started = Instant::now();
    let (refused, infected) = runtime.block_on(async {
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..concurrency.max(1) {
            let (next, messages, applied, clamd) = (next.clone(), messages.clone(), applied.clone(), clamd.clone());
            tasks.push(tokio::spawn(async move {
                let (mut refused, mut infected) = (0usize, 0usize);
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(m) = messages.get(i) else { break };
                    match gatehouse_actors::content::run(&applied, clamd.as_ref(), m).await {
                        Ok((_, found)) => infected += usize::from(found.virus.is_some()),
                        Err(reply) => {
                            refused += 1;
                            if std::env::var_os("SHOW_REFUSED").is_some() {
                                eprintln!("{i}: {} {} {}", reply.code, reply.enhanced, reply.text);
                            }
                        }
                    }
                }
                (refused, infected)
            }));
        }
        let mut totals = (0, 0);
        for t in tasks {
            let (r, i) = t.await.unwrap_or_default();
            totals = (totals.0 + r, totals.1 + i);
        }
        totals
    });
    let elapsed = started.elapsed().as_secs_f64();
    let n = messages.len();
    println!(
        "{n} messages, {:.1} MB, concurrency {concurrency}, clamd {}: {:.2} s, {:.0} msg/s, {:.3} ms/message; refused {refused}, infected {infected}",
        bytes as f64 / 1e6,
        if clamd.is_some() { "on" } else { "off" },
        elapsed,
        n as f64 / elapsed,
        elapsed * 1000.0 / n as f64,
    );
    Ok(())
}
