//! Disabling auto-forwarding (MailPlus): with `smtp.block_auto_forwarding`,
//! mail from our own users (authenticated or trusted clients) that an
//! automatic rule forwards to an external address is refused, so a mailbox
//! rule cannot leak a user's mail out of the organisation.
//!
//! What counts as an automatic forward, by the headers it carries:
//! - `Auto-Submitted: auto-forwarded` (the value forwarding agents use);
//! - any other `Auto-Submitted` value but `no` together with a `Resent-From`
//!   or `Resent-Sender` header (Sieve `redirect`, procmail and Dovecot
//!   re-sends, RFC 5322 §3.6.6);
//! - `X-MS-Exchange-Inbox-Rules-Loop` (Exchange and Outlook inbox rules) or
//!   `X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent`;
//! - `X-Forwarded-To` (Gmail's automatic forwarding).
//!
//! A forward a person makes by hand (their client's "Forward") carries
//! none of these and is never refused.

use consensus::state::settings::key;
use consensus::AppliedState;

use crate::message::headers::{fields, header_block};
use crate::message::{InboundMessage, Reply};

/// `smtp.block_auto_forwarding`: refuses an automatic forward from our own
/// users (the caller checks that it is own mail) to an external address.
pub fn refuse_auto_forward(state: &AppliedState, m: &InboundMessage) -> Result<(), Reply> {
    if !state.state.settings.flag(key::SMTP_BLOCK_AUTO_FORWARDING) {
        return Ok(());
    }
    let external = !crate::recipient::external_destinations(&state.state.directory, m).is_empty();
    match auto_forward_marker(&m.body) {
        Some(marker) if external => {
            tracing::warn!(client = %m.peer.ip, from = %m.mail_from, user = ?m.authenticated, marker, "refused: automatic forward to an external address");
            Err(refusal(marker))
        }
        _ => Ok(()),
    }
}

/// The header that marks `message` as an automatic forward, if any.
pub fn auto_forward_marker(message: &[u8]) -> Option<&'static str> {
    let block = header_block(message);
    let (mut auto_submitted, mut resent) = (None, false);
    for (name, value) in fields(&block) {
        let value = value.to_ascii_lowercase();
        match name.as_str() {
            "auto-submitted" => auto_submitted = Some(value),
            "resent-from" | "resent-sender" => resent = true,
            "x-ms-exchange-inbox-rules-loop" => return Some("X-MS-Exchange-Inbox-Rules-Loop"),
            "x-ms-exchange-generated-message-source" if value.contains("mailbox rules agent") => {
                return Some("X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent")
            }
            "x-forwarded-to" => return Some("X-Forwarded-To"),
            _ => {}
        }
    }
    let kind = auto_submitted?;
    let kind = kind.split(';').next().unwrap_or("").trim();
    if kind == "auto-forwarded" {
        Some("Auto-Submitted: auto-forwarded")
    } else if kind != "no" && resent {
        Some("Auto-Submitted with Resent-* headers")
    } else {
        None
    }
}

/// The refusal of an automatic forward to an external address.
pub fn refusal(marker: &str) -> Reply {
    let text = format!("Automatic forwarding to external addresses is not allowed here ({marker})");
    Reply::new(550, "5.7.1", &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_table() {
        let table: &[(&str, Option<&str>)] = &[
            ("Auto-Submitted: auto-forwarded\r\n", Some("Auto-Submitted: auto-forwarded")),
            ("AUTO-SUBMITTED: Auto-Forwarded; owner-email=a@b\r\n", Some("Auto-Submitted: auto-forwarded")),
            (
                "Auto-Submitted: auto-generated\r\nResent-From: a@example.com\r\n",
                Some("Auto-Submitted with Resent-* headers"),
            ),
            (
                "Resent-Sender: a@example.com\r\nAuto-Submitted: auto-replied\r\n",
                Some("Auto-Submitted with Resent-* headers"),
            ),
            ("Auto-Submitted: auto-generated\r\n", None),
            ("Auto-Submitted: no\r\nResent-From: a@example.com\r\n", None),
            ("Resent-From: a@example.com\r\n", None),
            ("X-MS-Exchange-Inbox-Rules-Loop: alice@example.com\r\n", Some("X-MS-Exchange-Inbox-Rules-Loop")),
            (
                "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent\r\n",
                Some("X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent"),
            ),
            ("X-MS-Exchange-Generated-Message-Source: Transport\r\n", None),
            (
                "X-Forwarded-To: bob@remote.test\r\nX-Forwarded-For: alice@example.com bob@remote.test\r\n",
                Some("X-Forwarded-To"),
            ),
            ("Subject: Fwd: hello\r\n", None),
        ];
        for (headers, want) in table {
            let message = format!("From: a@example.com\r\n{headers}\r\nbody\r\nAuto-Submitted: auto-forwarded\r\n");
            assert_eq!(auto_forward_marker(message.as_bytes()), *want, "{headers:?}");
        }
    }
}
