//! Where an accepted message goes after the pipeline: the queue, the queue
//! on hold (quarantine, recorded in the replicated index), or nowhere
//! (deleted by antivirus), with the virus notices `antivirus.notify` asks for.

use actix::Addr;
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
        Disposition::Deliver(m) => queue.send(Enqueue(m)).await.unwrap_or_else(unavailable),
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
        let to = notice.recipients.first().map(|r| r.address.clone()).unwrap_or_default();
        match queue.send(Enqueue(Box::new(notice))).await {
            Ok(Ok(id)) => tracing::info!(%to, notice_id = %id, about = %queue_id, "virus notice queued"),
            Ok(Err(reply)) => tracing::warn!(%to, reply = %reply.text, "virus notice not queued"),
            Err(e) => tracing::warn!(%to, error = %e, "virus notice not queued: queue unavailable"),
        }
    }
}
