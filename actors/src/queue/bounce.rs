//! Delivery status notifications (RFC 3464): the bounce a sender gets when
//! recipients fail for good or the queue lifetime runs out.
//!
//! Written by hand rather than with a MIME builder because the returned
//! message must travel unaltered: a message/rfc822 part may not be given a
//! transfer encoding (RFC 2046 §5.2.1), and the report's field layout is fixed.
//! A bounce goes out from the null sender, so it can never cause another.

use mail_builder::headers::date::Date;

use super::spool::{SpooledMessage, SpooledRecipient};

/// Everything a bounce needs besides the failed message.
pub struct BounceContext<'a> {
    pub hostname: &'a str,
    /// The queue id the bounce itself gets.
    pub bounce_queue_id: String,
    pub now_ms: u64,
    /// Return the whole message up to this size, else only its headers.
    pub size_limit: usize,
}

/// The bounce for `failed` recipients of `message`, or `None` when there is
/// nobody to tell (null sender: never bounce a bounce) or nothing failed.
pub fn bounce_for(message: &SpooledMessage, failed: &[usize], ctx: &BounceContext<'_>) -> Option<SpooledMessage> {
    if message.mail_from.is_empty() || failed.is_empty() {
        return None;
    }
    let failed: Vec<&SpooledRecipient> = failed.iter().filter_map(|i| message.recipients.get(*i)).collect();
    let data = dsn_text(message, &failed, ctx);
    let recipient = SpooledRecipient::new(&message.mail_from, &message.mail_from);
    Some(SpooledMessage::new(ctx.bounce_queue_id.clone(), String::new(), vec![recipient], data, ctx.now_ms))
}

fn header_safe(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn dsn_text(message: &SpooledMessage, failed: &[&SpooledRecipient], ctx: &BounceContext<'_>) -> Vec<u8> {
    let host = ctx.hostname;
    let now = Date::new((ctx.now_ms / 1000) as i64).to_rfc822();
    let arrival = Date::new((message.received_ms / 1000) as i64).to_rfc822();
    let boundary = format!("{}.bounce/{host}", ctx.bounce_queue_id);
    let sender = header_safe(&message.mail_from);
    let mut out = String::new();
    out.push_str(&format!("From: Mail Delivery System <MAILER-DAEMON@{host}>\r\n"));
    out.push_str(&format!("To: <{sender}>\r\n"));
    out.push_str("Subject: Undelivered Mail Returned to Sender\r\n");
    out.push_str(&format!("Date: {now}\r\n"));
    out.push_str(&format!("Message-ID: <{}@{host}>\r\n", ctx.bounce_queue_id));
    out.push_str("Auto-Submitted: auto-replied\r\n");
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    out.push_str("This is a MIME-encapsulated message.\r\n\r\n");

    out.push_str(&format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"));
    out.push_str(&format!("This is the mail system at host {host}.\r\n\r\n"));
    out.push_str("Your message could not be delivered to one or more recipients.\r\n");
    out.push_str("It is attached below; the reasons follow.\r\n\r\n");
    for r in failed {
        let why = r.last_failure.as_ref().map_or("unknown", |f| f.diagnostic.as_str());
        out.push_str(&format!("<{}>: {}\r\n", header_safe(&r.deliver_to), header_safe(why)));
    }
    out.push_str("\r\n");

    out.push_str(&format!("--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"));
    out.push_str(&format!("Reporting-MTA: dns; {host}\r\n"));
    out.push_str(&format!("X-Gatehouse-Queue-ID: {}\r\n", message.queue_id));
    out.push_str(&format!("Arrival-Date: {arrival}\r\n"));
    for r in failed {
        out.push_str("\r\n");
        if !r.original.eq_ignore_ascii_case(&r.deliver_to) {
            out.push_str(&format!("Original-Recipient: rfc822; {}\r\n", header_safe(&r.original)));
        }
        out.push_str(&format!("Final-Recipient: rfc822; {}\r\n", header_safe(&r.deliver_to)));
        out.push_str("Action: failed\r\n");
        let (status, diagnostic, mta) = match &r.last_failure {
            Some(f) => (f.status.as_str(), f.diagnostic.as_str(), f.remote_mta.as_deref()),
            None => ("5.0.0", "x-gatehouse; unknown", None),
        };
        // A DSN reports failure with a 5.x.x class even when the last try was temporary (expiry).
        let status = match status.strip_prefix('4') {
            Some(rest) => format!("5{rest}"),
            None => status.to_string(),
        };
        out.push_str(&format!("Status: {status}\r\n"));
        if let Some(mta) = mta {
            out.push_str(&format!("Remote-MTA: dns; {}\r\n", header_safe(mta)));
        }
        out.push_str(&format!("Diagnostic-Code: {}\r\n", header_safe(diagnostic)));
        out.push_str(&format!("Last-Attempt-Date: {now}\r\n"));
    }
    out.push_str("\r\n");

    let whole = message.data.len() <= ctx.size_limit;
    let kind = if whole { "message/rfc822" } else { "text/rfc822-headers" };
    out.push_str(&format!("--{boundary}\r\nContent-Description: Undelivered Message\r\nContent-Type: {kind}\r\n\r\n"));
    let mut bytes = out.into_bytes();
    let returned = if whole { &message.data[..] } else { headers_of(&message.data) };
    bytes.extend_from_slice(returned);
    if !returned.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

/// The header section, up to and including the blank line.
fn headers_of(data: &[u8]) -> &[u8] {
    match data.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(end) => &data[..end + 4],
        None => data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Failure;
    use crate::queue::spool::RecipientState;

    fn failed_message(from: &str) -> SpooledMessage {
        let mut r = SpooledRecipient::new("Sales@b.org", "bob@b.org");
        r.state = RecipientState::Failed;
        r.last_failure = Some(Failure {
            status: "5.1.1".into(),
            diagnostic: "smtp; 550 5.1.1 <bob@b.org>: user unknown".into(),
            remote_mta: Some("mx.b.org".into()),
        });
        let data = b"Subject: hello\r\nFrom: a@a.org\r\n\r\nbody line\r\n".to_vec();
        SpooledMessage::new("Q1".into(), from.into(), vec![r], data, 1_795_000_000_000)
    }

    fn ctx(size_limit: usize) -> BounceContext<'static> {
        BounceContext { hostname: "mx.a.org", bounce_queue_id: "B1".into(), now_ms: 1_795_000_100_000, size_limit }
    }

    #[test]
    fn a_bounce_reports_each_failed_recipient_to_the_sender() {
        let b = bounce_for(&failed_message("a@a.org"), &[0], &ctx(50_000)).unwrap();
        assert_eq!(b.mail_from, "", "bounces come from the null sender");
        assert_eq!(b.recipients[0].deliver_to, "a@a.org");
        let text = String::from_utf8(b.data).unwrap();
        for needle in [
            "Content-Type: multipart/report; report-type=delivery-status;",
            "Reporting-MTA: dns; mx.a.org\r\n",
            "Original-Recipient: rfc822; Sales@b.org\r\n",
            "Final-Recipient: rfc822; bob@b.org\r\nAction: failed\r\nStatus: 5.1.1\r\n",
            "Remote-MTA: dns; mx.b.org\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 <bob@b.org>: user unknown\r\n",
            "Content-Type: message/rfc822\r\n\r\nSubject: hello\r\nFrom: a@a.org\r\n\r\nbody line\r\n",
            "--B1.bounce/mx.a.org--\r\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!text.split("\r\n").any(|l| l.contains('\n') || l.contains('\r')), "lines end in CRLF only");
    }

    #[test]
    fn large_messages_return_only_their_headers() {
        let b = bounce_for(&failed_message("a@a.org"), &[0], &ctx(10)).unwrap();
        let text = String::from_utf8(b.data).unwrap();
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nSubject: hello\r\nFrom: a@a.org\r\n\r\n"));
        assert!(!text.contains("body line"));
    }

    #[test]
    fn never_a_bounce_to_the_null_sender_or_for_nothing() {
        assert!(bounce_for(&failed_message(""), &[0], &ctx(50_000)).is_none());
        assert!(bounce_for(&failed_message("a@a.org"), &[], &ctx(50_000)).is_none());
    }

    #[test]
    fn expiry_is_reported_as_a_permanent_status() {
        let mut m = failed_message("a@a.org");
        m.recipients[0].last_failure.as_mut().unwrap().status = "4.4.7".into();
        let text = String::from_utf8(bounce_for(&m, &[0], &ctx(50_000)).unwrap().data).unwrap();
        assert!(text.contains("Status: 5.4.7\r\n"), "{text}");
    }
}
