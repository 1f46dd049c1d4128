//! The Received header this node prepends (RFC 5321 §4.4, RFC 5322 §3.6.7).

use mail_builder::headers::date::Date;

use crate::smtp::InboundMessage;

/// `Received: from HELO ([IP]) by HOST (Gatehouse) with ESMTP id ID for <RCPT>; DATE`.
/// The `for` clause appears only with a single recipient, so one copy does
/// not reveal the other recipients (Postfix does the same).
pub fn received_header(message: &InboundMessage, hostname: &str, queue_id: &str) -> String {
    // RFC 3848: ESMTP, plus S for TLS and A for an authenticated client.
    let base = match (message.smtputf8, message.esmtp) {
        (true, _) => "UTF8SMTP",
        (false, true) => "ESMTP",
        (false, false) => "SMTP",
    };
    let tls = if message.tls && message.esmtp { "S" } else { "" };
    let auth = if message.authenticated.is_some() && message.esmtp { "A" } else { "" };
    let protocol = format!("{base}{tls}{auth}");
    let helo: String = message.helo.chars().filter(|c| !c.is_control()).take(255).collect();
    let date = Date::new((message.received_ms / 1000) as i64).to_rfc822();
    let mut header = format!(
        "Received: from {helo} ([{}])\r\n\tby {hostname} (Gatehouse) with {protocol} id {queue_id}",
        message.peer.ip
    );
    if let [only] = message.recipients.as_slice() {
        header.push_str(&format!("\r\n\tfor <{}>", only.address));
    }
    header.push_str(&format!(";\r\n\t{date}\r\n"));
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::{AcceptedRecipient, PeerInfo};

    #[test]
    fn header_shape() {
        let message = InboundMessage {
            skip: Default::default(),
            junk: false,
            spam_symbols: Vec::new(),
            peer: PeerInfo { ip: "192.0.2.9".parse().unwrap(), port: 1 },
            helo: "client.example.org".into(),
            esmtp: true,
            mail_from: "a@b.org".into(),
            recipients: vec![AcceptedRecipient { address: "x@example.com".into(), deliver_to: vec![] }],
            body: vec![],
            smtputf8: false,
            authenticated: None,
            tls: false,
            received_ms: 1_795_000_000_000,
        };
        let h = received_header(&message, "mx.example.com", "ABC123");
        let secured = InboundMessage { tls: true, authenticated: Some("x@example.com".into()), ..message.clone() };
        assert!(received_header(&secured, "mx", "A").contains(" with ESMTPSA id A"));
        assert!(h.starts_with("Received: from client.example.org ([192.0.2.9])\r\n\tby mx.example.com (Gatehouse) with ESMTP id ABC123\r\n\tfor <x@example.com>;\r\n\t"), "{h}");
        assert!(h.ends_with(" +0000\r\n"), "{h}");
    }
}
