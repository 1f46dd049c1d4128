//! Index entries made from a message: at quarantine time from the message
//! in the pipeline, at reconcile time from the held copy in the spool.

use consensus::state::{QuarantineEntry, QuarantineReason, QuarantineState};

use crate::message::headers::{header_block, header_value};
use crate::message::InboundMessage;
use crate::queue::control::QueueEntry;

/// The header naming why a message was held (added by the rewrite stage).
pub const QUARANTINE_HEADER: &str = "X-Gatehouse-Quarantine";

/// The entry for a message the pipeline quarantined.
pub fn entry_for(message: &InboundMessage, node_id: u64, reason: &str, detail: &str) -> QuarantineEntry {
    let headers = header_block(&message.body);
    QuarantineEntry {
        node_id,
        received_ms: message.received_ms,
        sender: message.mail_from.clone(),
        recipients: message.recipients.iter().map(|r| r.address.clone()).collect(),
        subject: header_value(&headers, "subject").unwrap_or_default(),
        reason: QuarantineReason::parse(reason).unwrap_or(QuarantineReason::Content),
        detail: detail.to_string(),
        size: message.body.len() as u64,
        headers,
        state: QuarantineState::Held,
    }
    .bounded()
}

/// The entry for a held message in the spool, if it was held by quarantine
/// (it carries our header) rather than by an operator's `queue hold`.
pub fn entry_from_spooled(queued: &QueueEntry, data: &[u8], node_id: u64) -> Option<QuarantineEntry> {
    let headers = header_block(data);
    let why = header_value(&headers, &QUARANTINE_HEADER.to_ascii_lowercase())?;
    let (reason, detail) = why.split_once(':').unwrap_or((why.as_str(), ""));
    Some(
        QuarantineEntry {
            node_id,
            received_ms: queued.received_ms,
            sender: queued.sender.clone(),
            recipients: queued.recipients.iter().map(|r| r.original.clone()).collect::<Vec<_>>(),
            subject: header_value(&headers, "subject").unwrap_or_default(),
            reason: QuarantineReason::parse(reason.trim()).unwrap_or(QuarantineReason::Content),
            detail: detail.trim().to_string(),
            size: data.len() as u64,
            headers,
            state: QuarantineState::Held,
        }
        .bounded(),
    )
}
