//! Encapsulation (MailPlus, SpamAssassin's `report_safe`): spam is delivered
//! as a new message that explains the verdict, with the original attached —
//! as `message/rfc822`, or as `text/plain` so no client renders or runs it.

use super::SpamVerdict;
use crate::message::headers::header_block;

/// Header fields the wrapper copies from the original.
const COPIED: &[&str] = &["from", "to", "cc", "subject", "date", "message-id", "reply-to"];

pub fn encapsulate(original: &[u8], verdict: &SpamVerdict, plain_text: bool, hostname: &str) -> Vec<u8> {
    let headers = header_block(original);
    let boundary = format!("----------=_{:016X}", verdict.digest);
    let mut out = String::new();
    let mut copying = false;
    for line in headers.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.starts_with([' ', '\t']) {
            let name = line.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
            copying = COPIED.contains(&name.as_str());
        }
        if copying {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("MIME-Version: 1.0\r\n");
    out.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"));
    out.push_str("This is a multi-part message in MIME format.\r\n\r\n");
    out.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ));
    out.push_str(&format!(
        "The mail server {hostname} identified this message as spam (score {:.2}, required {:.2}).\r\n\
         The original message is attached {}. If it is not spam, tell your administrator.\r\n\r\n",
        verdict.score,
        verdict.required_score,
        if plain_text { "as plain text, so it can be read safely" } else { "unchanged" }
    ));
    for s in &verdict.symbols {
        out.push_str(&format!("  {:>7.2} {}\r\n", s.score, s.name));
    }
    out.push_str(&format!("\r\n--{boundary}\r\n"));
    if plain_text {
        out.push_str("Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    } else {
        out.push_str("Content-Type: message/rfc822; x-spam-type=original\r\nContent-Disposition: inline\r\nContent-Transfer-Encoding: 8bit\r\n\r\n");
    }
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(original);
    if !original.ends_with(b"\r\n") {
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::mime::ParsedMessage;

    #[test]
    fn the_wrapper_keeps_the_original_whole_and_parses() {
        let original = b"From: a@promo.example\r\nTo: alice@example.com\r\nSubject: offer\r\nX-Other: 1\r\n\r\n<html>buy</html>\r\n";
        let verdict = SpamVerdict {
            score: 7.5,
            required_score: 5.0,
            reject_score: 15.0,
            action: super::super::SpamAction::Junk,
            subject_prefix: String::new(),
            encapsulate_plain: false,
            hostname: String::new(),
            symbols: vec![],
            bayes: None,
            tokens: vec![],
            digest: 42,
        };
        for plain in [false, true] {
            let wrapped = encapsulate(original, &verdict, plain, "mx.example.com");
            let text = String::from_utf8_lossy(&wrapped);
            assert!(
                text.starts_with("From: a@promo.example\r\nTo: alice@example.com\r\nSubject: offer\r\nMIME-Version"),
                "{text}"
            );
            assert!(!text[..text.find("\r\n\r\n").unwrap()].contains("X-Other"));
            assert!(wrapped.windows(original.len()).any(|w| w == original), "the original inside, byte for byte");
            let parsed = ParsedMessage::parse(&wrapped);
            assert!(parsed.shape.unclosed_boundaries == 0, "well-formed");
            assert_eq!(parsed.subject, "offer");
        }
    }
}
