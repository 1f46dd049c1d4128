//! The rewrite stage: what the earlier stages asked for, applied to the
//! bytes before anything signs them — attachments cut out (a note in their
//! place), a subject prefix, result headers — and the message's destination.

use super::Disposition;
use crate::content::ContentFindings;
use crate::message::InboundMessage;
use crate::quarantine::entry::QUARANTINE_HEADER;
use crate::spam::{SpamAction, SpamVerdict};

pub fn apply(
    mut message: Box<InboundMessage>,
    findings: Option<crate::content::ContentFindings>,
    spam: Option<SpamVerdict>,
    own_mail: bool,
) -> Disposition {
    let ContentFindings { verdict, mut headers, mut subject_prefix, delete, mut quarantine, virus } =
        findings.unwrap_or_default();
    let mut encapsulate = false;
    if let Some(spam) = &spam {
        // Whatever X-Spam-* the sender wrote is not our verdict.
        remove_fields(&mut message.body, b"x-spam-");
        headers.extend(spam.headers());
        // Own mail that looks like spam is only tagged: moving or holding it
        // would hide the problem (a stolen account) from its sender.
        match spam.action {
            SpamAction::RewriteSubject if subject_prefix.is_none() => {
                subject_prefix = Some(spam.subject_prefix.clone());
            }
            SpamAction::Junk if !own_mail => message.junk = true,
            SpamAction::Encapsulate if !own_mail => encapsulate = true,
            SpamAction::Quarantine if !own_mail && quarantine.is_none() => {
                let names: Vec<&str> = spam.symbols.iter().map(|s| s.name.as_ref()).collect();
                quarantine = Some(("spam", format!("score {:.2}: {}", spam.score, names.join(","))));
            }
            _ => {}
        }
    }
    if delete {
        let detail = virus.as_ref().map(|v| format!("virus {v}")).unwrap_or_default();
        return Disposition::Delete { message, detail, virus };
    }
    let mut removals = verdict.remove;
    removals.sort_by_key(|r| std::cmp::Reverse(r.0 .0));
    for ((from, to), name) in removals {
        if from < to && to <= message.body.len() {
            let note = format!(
                "Content-Type: text/plain; charset=utf-8\r\n\r\nThe attachment \"{}\" was removed by the mail server's attachment filter.\r\n",
                name.replace(['"', '\r', '\n'], "")
            );
            message.body.splice(from..to, note.into_bytes());
        }
    }
    if let Some(prefix) = subject_prefix {
        prefix_subject(&mut message.body, &prefix);
    }
    // Last of the body changes: the attachment removals above point into the original.
    if let (true, Some(spam)) = (encapsulate, &spam) {
        message.body =
            crate::spam::encapsulate::encapsulate(&message.body, spam, spam.encapsulate_plain, &spam.hostname);
    }
    let mut top: Vec<u8> = Vec::new();
    if let Some((reason, detail)) = &quarantine {
        top.extend_from_slice(format!("{QUARANTINE_HEADER}: {reason}: {detail}\r\n").as_bytes());
    }
    for h in headers {
        top.extend_from_slice(h.as_bytes());
        top.extend_from_slice(b"\r\n");
    }
    if !top.is_empty() {
        top.extend_from_slice(&message.body);
        message.body = top;
    }
    match quarantine {
        Some((reason, detail)) => {
            let virus = if reason == "virus" { virus } else { None };
            Disposition::Quarantine { message, reason, detail, virus }
        }
        None => Disposition::Deliver(message),
    }
}

/// Removes the top-level header fields whose names start with `prefix`
/// (lower case), continuation lines included.
fn remove_fields(body: &mut Vec<u8>, prefix: &[u8]) {
    let end = body.windows(4).position(|w| w == b"\r\n\r\n").map_or(body.len(), |p| p + 2);
    let mut kept = Vec::with_capacity(body.len());
    let mut at = 0;
    let mut dropping = false;
    while at < end {
        let line_end = body[at..end].windows(2).position(|w| w == b"\r\n").map_or(end, |p| at + p + 2);
        let line = &body[at..line_end];
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            dropping = line.len() >= prefix.len() && line[..prefix.len()].eq_ignore_ascii_case(prefix);
        }
        if !dropping {
            kept.extend_from_slice(line);
        }
        at = line_end;
    }
    kept.extend_from_slice(&body[end..]);
    *body = kept;
}

/// Puts `prefix` before the value of the first top-level Subject header, or
/// adds a Subject when there is none.
fn prefix_subject(body: &mut Vec<u8>, prefix: &str) {
    let end = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(body.len());
    let mut at = 0;
    while at < end {
        let line_end = body[at..].windows(2).position(|w| w == b"\r\n").map(|p| at + p).unwrap_or(end);
        if body[at..line_end].len() >= 8 && body[at..at + 8].eq_ignore_ascii_case(b"subject:") {
            let mut value = at + 8;
            while body.get(value) == Some(&b' ') {
                value += 1;
            }
            body.splice(value..value, format!("{prefix} ").into_bytes());
            return;
        }
        at = line_end + 2;
    }
    let mut out = format!("Subject: {prefix}\r\n").into_bytes();
    out.extend_from_slice(body);
    *body = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_spam_headers_are_removed() {
        let mut body = b"X-Spam-Flag: NO\r\nSubject: hi\r\nx-spam-status: No,\r\n tests=none\r\nTo: a\r\n\r\nX-Spam-Flag: body\r\n".to_vec();
        remove_fields(&mut body, b"x-spam-");
        assert_eq!(body, b"Subject: hi\r\nTo: a\r\n\r\nX-Spam-Flag: body\r\n");
    }

    #[test]
    fn subject_prefix_table() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"From: a\r\nSubject: hi\r\n\r\nbody", b"From: a\r\nSubject: [VIRUS] hi\r\n\r\nbody"),
            (b"SUBJECT:hi\r\n\r\nSubject: not this", b"SUBJECT:[VIRUS] hi\r\n\r\nSubject: not this"),
            (b"From: a\r\n\r\nSubject: body", b"Subject: [VIRUS]\r\nFrom: a\r\n\r\nSubject: body"),
        ];
        for (input, want) in cases {
            let mut b = input.to_vec();
            prefix_subject(&mut b, "[VIRUS]");
            assert_eq!(String::from_utf8_lossy(&b), String::from_utf8_lossy(want));
        }
    }
}
