//! Notices the mail system writes itself (a virus was found, an account
//! was stopped by hijack detection), the virus one from an operator's
//! template. Notices go out with the null sender and
//! `Auto-Submitted: auto-generated` (RFC 3834), so nothing answers them and
//! they can never loop.

use consensus::state::settings::key;
use consensus::AppliedState;
use mail_builder::headers::date::Date;

use crate::message::headers::{header_block, header_value};
use crate::message::{AcceptedRecipient, InboundMessage, PeerInfo};

/// What a virus notice tells about the message it concerns.
#[derive(Debug, Clone)]
pub struct VirusFacts {
    pub virus: String,
    pub sender: String,
    pub subject: String,
    pub received_ms: u64,
    /// Local recipients, each with where their mail goes.
    pub recipients: Vec<AcceptedRecipient>,
    /// `deleted` or `quarantined`.
    pub action: &'static str,
}

impl VirusFacts {
    pub fn of(message: &InboundMessage, virus: &str, action: &'static str, state: &AppliedState) -> Self {
        let local = |address: &str| {
            let domain = address.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();
            // Alias domains are local too: their recipients get the notice.
            state.state.directory.is_local_domain(&domain)
        };
        Self {
            virus: virus.to_string(),
            sender: message.mail_from.clone(),
            subject: subject_of(&message.body),
            received_ms: message.received_ms,
            recipients: message.recipients.iter().filter(|r| local(&r.address)).cloned().collect(),
            action,
        }
    }
}

/// Fills `{virus}`, `{sender}`, `{recipient}`, `{subject}`, `{date}`,
/// `{queue_id}` and `{action}` in the template and splits it into the
/// subject (its first line, `Subject: ...`) and the text. Values lose their
/// control characters, so none can add a header.
pub fn fill(template: &str, facts: &VirusFacts, recipient: &str, queue_id: &str) -> (String, String) {
    let date = Date::new((facts.received_ms / 1000) as i64).to_rfc822();
    let values = [
        ("{virus}", facts.virus.as_str()),
        ("{sender}", if facts.sender.is_empty() { "<>" } else { facts.sender.as_str() }),
        ("{recipient}", recipient),
        ("{subject}", facts.subject.as_str()),
        ("{date}", date.as_str()),
        ("{queue_id}", queue_id),
        ("{action}", facts.action),
    ];
    let template = template.replace("\r\n", "\n");
    let (first, rest) = template.split_once('\n').unwrap_or((template.as_str(), ""));
    let (subject, text) = match first.strip_prefix("Subject:") {
        Some(s) => (s.trim().to_string(), rest.trim_start_matches('\n').to_string()),
        None => ("Virus found in a message to you".to_string(), template.clone()),
    };
    let substitute =
        |s: &str| values.iter().fold(s.to_string(), |acc, (name, value)| acc.replace(name, &printable(value)));
    (substitute(&subject), substitute(&text))
}

/// The notices `antivirus.notify` asks for: one per local recipient and/or
/// one per admin address, as messages ready for the queue.
pub fn virus_notices(state: &AppliedState, facts: &VirusFacts, queue_id: &str, now_ms: u64) -> Vec<InboundMessage> {
    let settings = &state.state.settings;
    let who = settings.text(key::ANTIVIRUS_NOTIFY);
    let template = settings.text(key::ANTIVIRUS_NOTIFY_TEMPLATE);
    let hostname = settings.text(key::SMTP_HOSTNAME);
    let mut targets: Vec<(String, Vec<String>)> = Vec::new();
    if who == "recipients" || who == "both" {
        targets.extend(facts.recipients.iter().map(|r| (r.address.clone(), r.deliver_to.clone())));
    }
    if who == "admin" || who == "both" {
        targets.extend(admin_addresses(state).into_iter().map(|a| (a.clone(), vec![a])));
    }
    targets
        .into_iter()
        .map(|(to, deliver_to)| {
            let (subject, text) = fill(&template, facts, &to, queue_id);
            let notice = Notice { hostname: &hostname, subject: &subject, text: &text, reply_to: None };
            let id = format!("{queue_id}.{now_ms}.virus-notice");
            notice.to(to, deliver_to, &id, now_ms)
        })
        .collect()
}

/// A plain-text message from the mail system.
pub struct Notice<'a> {
    pub hostname: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    /// Where replies go, when they mean something (the hijack notice).
    pub reply_to: Option<&'a str>,
}

impl Notice<'_> {
    /// The notice to `to` (delivered to `deliver_to`), ready for the queue:
    /// null sender, `Auto-Submitted: auto-generated`; `id` is the
    /// Message-ID's local part.
    pub fn to(&self, to: String, deliver_to: Vec<String>, id: &str, now_ms: u64) -> InboundMessage {
        let body = self.message_text(&to, id, now_ms);
        InboundMessage {
            peer: PeerInfo { ip: std::net::Ipv4Addr::LOCALHOST.into(), port: 0 },
            helo: self.hostname.to_string(),
            esmtp: true,
            mail_from: String::new(),
            recipients: vec![AcceptedRecipient { address: to, deliver_to }],
            body,
            smtputf8: false,
            authenticated: None,
            tls: false,
            received_ms: now_ms,
            skip: Default::default(),
            junk: false,
            spam_symbols: Vec::new(),
        }
    }

    fn message_text(&self, to: &str, id: &str, now_ms: u64) -> Vec<u8> {
        let hostname = self.hostname;
        let date = Date::new((now_ms / 1000) as i64).to_rfc822();
        let mut out = String::new();
        out.push_str(&format!("From: Mail System <MAILER-DAEMON@{hostname}>\r\n"));
        out.push_str(&format!("To: <{}>\r\n", printable(to)));
        if let Some(reply_to) = self.reply_to {
            out.push_str(&format!("Reply-To: <{}>\r\n", printable(reply_to)));
        }
        out.push_str(&format!("Subject: {}\r\n", printable(self.subject)));
        out.push_str(&format!("Date: {date}\r\n"));
        out.push_str(&format!("Message-ID: <{id}@{hostname}>\r\n"));
        out.push_str("Auto-Submitted: auto-generated\r\n");
        out.push_str(
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
        for line in self.text.lines() {
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.into_bytes()
    }
}

/// Queues a notice; a failure is logged, never the caller's error (the
/// notice is a courtesy, not a reason to refuse mail). `kind` (`virus`,
/// `hijack`, `failed-login`) and `about` (what it concerns) go to the log.
pub async fn queue_notice(
    queue: &actix::Addr<crate::queue::DeliveryQueue>,
    notice: InboundMessage,
    kind: &str,
    about: &str,
) {
    let to = notice.recipients.first().map(|r| r.address.clone()).unwrap_or_default();
    match queue.send(crate::queue::Enqueue(Box::new(notice))).await {
        Ok(Ok(id)) => tracing::info!(kind, %to, notice_id = %id, about, "notice queued"),
        Ok(Err(reply)) => tracing::warn!(kind, %to, about, reply = %reply.text, "notice not queued"),
        Err(e) => tracing::warn!(kind, %to, about, error = %e, "notice not queued: queue unavailable"),
    }
}

/// `notify.admin_addresses`, split.
pub fn admin_addresses(state: &AppliedState) -> Vec<String> {
    let admins = state.state.settings.text(key::NOTIFY_ADMIN_ADDRESSES);
    admins.split(',').map(str::trim).filter(|a| a.contains('@')).map(str::to_string).collect()
}

fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// The unfolded Subject of a message, or empty.
fn subject_of(body: &[u8]) -> String {
    let subject = header_value(&header_block(body), "subject").unwrap_or_default();
    subject.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> VirusFacts {
        VirusFacts {
            virus: "Eicar-Test".into(),
            sender: "bad@example.org".into(),
            subject: "Invoice\r\nBcc: victim@example.com".into(),
            received_ms: 1_795_000_000_000,
            recipients: vec![],
            action: "quarantined",
        }
    }

    #[test]
    fn recipients_in_local_and_alias_domains_get_the_notice() {
        let mut state = consensus::state::ClusterState::default();
        for command in [
            consensus::Command::AddDomain { name: "example.com".into() },
            consensus::Command::AddDomainAlias { alias: "example.net".into(), target: "example.com".into() },
        ] {
            assert!(state.apply(&command, 1).is_ok(), "{command:?}");
        }
        let applied = AppliedState { applied_index: 1, state, rules: Default::default() };
        let mut message = InboundMessage::from_file(b"Subject: x\r\n\r\nbody");
        message.recipients = ["a@example.com", "b@EXAMPLE.NET", "c@elsewhere.example"]
            .iter()
            .map(|a| crate::message::AcceptedRecipient { address: a.to_string(), deliver_to: vec![] })
            .collect();
        let facts = VirusFacts::of(&message, "Eicar", "deleted", &applied);
        let got: Vec<&str> = facts.recipients.iter().map(|r| r.address.as_str()).collect();
        assert_eq!(got, ["a@example.com", "b@EXAMPLE.NET"]);
    }

    #[test]
    fn placeholders_are_filled_and_cannot_inject_headers() {
        let (subject, text) = fill(
            "Subject: {virus} in \"{subject}\"\n\nFrom {sender} to {recipient}, id {queue_id}, {action}.\n",
            &facts(),
            "alice@example.com",
            "Q1",
        );
        assert_eq!(subject, "Eicar-Test in \"Invoice  Bcc: victim@example.com\"");
        assert!(!subject.contains('\r') && !subject.contains('\n'));
        assert_eq!(text, "From bad@example.org to alice@example.com, id Q1, quarantined.\n");
    }

    #[test]
    fn a_template_without_a_subject_line_is_all_text() {
        let (subject, text) = fill("Virus {virus}.", &facts(), "a@b", "Q");
        assert_eq!(subject, "Virus found in a message to you");
        assert_eq!(text, "Virus Eicar-Test.");
    }

    #[test]
    fn the_subject_is_unfolded() {
        assert_eq!(subject_of(b"From: a\r\nSubject: one\r\n two\r\nTo: b\r\n\r\nbody"), "one two");
        assert_eq!(subject_of(b"From: a\r\n\r\nSubject: not a header"), "");
    }
}
