//! Where an accepted message goes after the pipeline: the queue, the queue
//! on hold (quarantine, recorded in the replicated index), or nowhere
//! (deleted by antivirus), with the virus notices `antivirus.notify` asks for.

use actix::Addr;
use consensus::state::counters::DAY_MS;
use consensus::state::settings::key;
use consensus::state::spam::correspondent_key;
use consensus::{AppliedState, Command};

use super::ScreeningServices;
use crate::message::Reply;
use crate::notice::VirusFacts;
use crate::pipeline::Disposition;
use crate::queue::{now_ms, DeliveryQueue, Enqueue, EnqueueHeld};

/// Carries out the pipeline's disposition; the queue id answers the client.
pub async fn store(
    services: &ScreeningServices,
    state: &AppliedState,
    disposition: Disposition,
) -> Result<String, Reply> {
    let queue = services.queue.addr();
    let unavailable = |_| Err(Reply::new(451, "4.3.0", "Queue unavailable; try again later"));
    match disposition {
        Disposition::Deliver(m) => {
            let correspondents = auto_whitelist_pairs(state, &m);
            let client = m.peer.ip;
            let id = queue.send(Enqueue(m)).await.unwrap_or_else(unavailable)?;
            if let Some(command) = correspondents {
                services.propose_in_background(command, client);
            }
            Ok(id)
        }
        Disposition::Quarantine { message: m, reason, detail, virus } => {
            let (client, from) = (m.peer.ip, m.mail_from.clone());
            let entry = crate::quarantine::entry_for(&m, services.node_id, reason, &detail);
            let facts = virus.map(|v| VirusFacts::of(&m, &v, "quarantined", state));
            let id = queue.send(EnqueueHeld(m)).await.unwrap_or_else(unavailable)?;
            tracing::info!(%client, %from, queue_id = %id, reason, detail = %detail, "message quarantined (held)");
            // Not awaited: the keeper re-announces what the index lacks.
            services.propose_in_background(Command::QuarantineAdd { id: id.clone(), entry }, client);
            if let Some(facts) = facts {
                send_virus_notices(&queue, state, &facts, &id).await;
            }
            Ok(id)
        }
        Disposition::Delete { message: m, detail, virus } => {
            let id = format!("{:011X}X", m.received_ms);
            tracing::info!(client = %m.peer.ip, from = %m.mail_from, queue_id = %id, detail = %detail, "message deleted by antivirus");
            if let Some(v) = virus {
                let facts = VirusFacts::of(&m, &v, "deleted", state);
                send_virus_notices(&queue, state, &facts, &id).await;
            }
            Ok(id)
        }
    }
}

/// Queues the virus notices `antivirus.notify` asks for. A notice that
/// cannot be queued is logged, never a reason to refuse the message.
async fn send_virus_notices(queue: &Addr<DeliveryQueue>, state: &AppliedState, facts: &VirusFacts, queue_id: &str) {
    for notice in crate::notice::virus_notices(state, facts, queue_id, now_ms()) {
        crate::notice::queue_notice(queue, notice, "virus", queue_id).await;
    }
}

/// A logged-in user's message to external addresses puts those addresses on
/// the user's auto-whitelist (MailPlus): their replies score lower.
fn auto_whitelist_pairs(state: &AppliedState, m: &crate::message::InboundMessage) -> Option<Command> {
    let settings = &state.state.settings;
    if m.authenticated.is_none() || m.mail_from.is_empty() || !settings.flag(key::SPAM_AUTO_WHITELIST) {
        return None;
    }
    let local = |address: &str| {
        let domain = address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
        state.state.directory.is_local_domain(&domain)
    };
    let pairs: Vec<u64> = m
        .recipients
        .iter()
        .filter(|r| !local(&r.address))
        .map(|r| correspondent_key(&m.mail_from, &r.address))
        .collect();
    if pairs.is_empty() {
        return None;
    }
    let days = settings.uint(key::SPAM_AUTO_WHITELIST_DAYS);
    let expires_ms = now_ms().saturating_add(days.saturating_mul(DAY_MS));
    Some(Command::RecordCorrespondents { pairs, expires_ms })
}
