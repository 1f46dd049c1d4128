//! What rules read, rendered as SpamAssassin renders it: header values
//! (decoded, or `:raw`, `:addr`, `:name`), the pseudo-headers (`ALL`,
//! `ToCc`, `MESSAGEID`, `EnvelopeFrom`, `X-Spam-Relays-*`), the body as
//! text (subject first, HTML stripped, one line per paragraph), the raw
//! body parts, the URIs and the whole message. Each is built once per
//! message, when a rule first asks for it.

use super::parse::HeaderModifier;
use super::Target;
use crate::content::mime::ParsedMessage;
use crate::message::headers::{fields, header_block};

/// Bytes of each body part the `body` rules read (SpamAssassin's `body_part_scan_size`).
pub const BODY_PART_SCAN_MAX: usize = 50_000;
/// Bytes of each part the `rawbody` rules read (`rawbody_part_scan_size`).
pub const RAWBODY_PART_SCAN_MAX: usize = 500_000;
/// Bytes of the message the `full` rules read.
pub const FULL_SCAN_MAX: usize = 1 << 20;
/// URIs the `uri` rules read.
const URIS_MAX: usize = 500;

pub struct RuleInput<'a> {
    raw: &'a [u8],
    parsed: &'a ParsedMessage,
    envelope_from: &'a str,
    header_block: String,
    fields: Vec<(String, String)>,
    scratch: Vec<u8>,
    body: Option<Vec<u8>>,
    rawbody: Option<Vec<u8>>,
    uris: Option<Vec<u8>>,
    full: Option<Vec<u8>>,
}

impl<'a> RuleInput<'a> {
    pub fn new(raw: &'a [u8], parsed: &'a ParsedMessage, envelope_from: &'a str) -> Self {
        let header_block = header_block(raw);
        let fields = fields(&header_block).collect();
        Self {
            raw,
            parsed,
            envelope_from,
            header_block,
            fields,
            scratch: Vec::new(),
            body: None,
            rawbody: None,
            uris: None,
            full: None,
        }
    }

    pub fn has_header(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, _)| n == name)
    }

    pub fn text(&mut self, target: &Target) -> &[u8] {
        match target {
            Target::Full => self.full.get_or_insert_with(|| {
                let raw = &self.raw[..self.raw.len().min(FULL_SCAN_MAX)];
                // Lines end in LF, as in the files SpamAssassin reads.
                let mut out = Vec::with_capacity(raw.len());
                for line in raw.split_inclusive(|b| *b == b'\n') {
                    match line.strip_suffix(b"\r\n") {
                        Some(l) => {
                            out.extend_from_slice(l);
                            out.push(b'\n');
                        }
                        None => out.extend_from_slice(line),
                    }
                }
                out
            }),
            Target::Body => self.body.get_or_insert_with(|| body_text(self.parsed)),
            Target::Rawbody => self.rawbody.get_or_insert_with(|| raw_body(self.parsed)),
            Target::Uri => self.uris.get_or_insert_with(|| uris(self.parsed)),
            Target::Header(field, if_unset) => {
                let value = self.header(&field.name, field.modifier);
                self.scratch = value.unwrap_or_else(|| if_unset.clone()).into_bytes();
                &self.scratch
            }
        }
    }

    /// A header's value(s), one line per field; `None` when absent.
    fn header(&self, name: &str, modifier: HeaderModifier) -> Option<String> {
        let fields = &self.fields;
        let values = |n: &'static str| fields.iter().filter(move |(f, _)| f == n).map(|(_, v)| v.as_str());
        let joined = match name {
            "all" => return Some(self.header_block.replace("\r\n", "\n")),
            "envelopefrom" => return Some(self.envelope_from.to_string()),
            "tocc" => values("to").chain(values("cc")).collect::<Vec<_>>().join(", "),
            "messageid" => values("message-id")
                .chain(values("resent-message-id"))
                .chain(values("x-message-id"))
                .collect::<Vec<_>>()
                .join("\n"),
            "x-spam-relays-external" | "x-spam-relays-untrusted" => relays(values("received")),
            "x-spam-relays-trusted" | "x-spam-relays-internal" => String::new(),
            "subject" if modifier == HeaderModifier::None && self.has_header("subject") => {
                return Some(self.parsed.subject.clone())
            }
            _ => {
                let list: Vec<&str> = fields.iter().filter(|(f, _)| f == name).map(|(_, v)| v.as_str()).collect();
                if list.is_empty() {
                    return None;
                }
                list.join("\n")
            }
        };
        Some(match modifier {
            HeaderModifier::Raw | HeaderModifier::None => joined,
            HeaderModifier::Addr => first_address(&joined),
            HeaderModifier::Name => display_name(&joined),
        })
    }
}

/// SpamAssassin's body: the subject, then each text part and each HTML
/// part's text, one line per paragraph, whitespace collapsed.
fn body_text(parsed: &ParsedMessage) -> Vec<u8> {
    let mut out = String::with_capacity(4096);
    out.push_str(&parsed.subject);
    out.push('\n');
    let html: Vec<String> =
        parsed.html.iter().map(|h| crate::spam::tokens::strip_html(bounded(h, BODY_PART_SCAN_MAX))).collect();
    for part in parsed.text.iter().map(|t| bounded(t, BODY_PART_SCAN_MAX)).chain(html.iter().map(String::as_str)) {
        for paragraph in part.replace("\r\n", "\n").split("\n\n") {
            let mut words = paragraph.split_whitespace().peekable();
            if words.peek().is_none() {
                continue;
            }
            for (i, w) in words.enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(w);
            }
            out.push('\n');
        }
    }
    out.into_bytes()
}

fn raw_body(parsed: &ParsedMessage) -> Vec<u8> {
    let mut out = Vec::new();
    for part in parsed.text.iter().chain(&parsed.html) {
        out.extend_from_slice(bounded(part, RAWBODY_PART_SCAN_MAX).as_bytes());
        out.push(b'\n');
    }
    out
}

/// The URIs, one per line (the `uri` rules' input).
fn uris(parsed: &ParsedMessage) -> Vec<u8> {
    message_uris(parsed).join("\n").into_bytes()
}

/// Every URI of the message: the HTML parts' link targets and the URLs
/// written in the text (`www.` ones also with `http://` in front, as
/// SpamAssassin canonicalises them).
pub fn message_uris(parsed: &ParsedMessage) -> Vec<String> {
    let mut list: Vec<String> = Vec::new();
    for html in &parsed.html {
        list.extend(crate::content::html::link_targets(bounded(html, RAWBODY_PART_SCAN_MAX)));
    }
    for text in parsed.text.iter().chain(&parsed.html) {
        let text = bounded(text, RAWBODY_PART_SCAN_MAX);
        let lower = text.to_ascii_lowercase();
        for scheme in ["http://", "https://", "www.", "mailto:"] {
            for (at, _) in lower.match_indices(scheme) {
                let prev_ok = at == 0 || !lower.as_bytes()[at - 1].is_ascii_alphanumeric();
                if !prev_ok || (scheme == "www." && lower[..at].ends_with("//")) {
                    continue;
                }
                let end = text[at..]
                    .find(|c: char| c.is_whitespace() || "\"'<>()[]{}".contains(c))
                    .map_or(text.len(), |e| at + e);
                let uri = text[at..end].trim_end_matches(['.', ',', ';', ':', '!', '?']);
                list.push(if scheme == "www." { format!("http://{uri}") } else { uri.to_string() });
            }
        }
        if list.len() > URIS_MAX {
            break;
        }
    }
    list.truncate(URIS_MAX);
    list
}

/// `s` cut at most `max` bytes in, on a char boundary.
fn bounded(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// SpamAssassin's relay lines (`[ ip=… rdns=… helo=… by=… ident= envfrom= intl=0 id=… auth= msa=0 ]`)
/// from the Received fields, newest first; fields with no IP are skipped.
fn relays<'v>(received: impl Iterator<Item = &'v str>) -> String {
    let mut out = Vec::new();
    for value in received {
        let word_after = |key: &str| -> String {
            let lower = value.to_ascii_lowercase();
            lower
                .find(key)
                .map(|p| {
                    value[p + key.len()..]
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches(';')
                        .to_string()
                })
                .unwrap_or_default()
        };
        let Some(ip) = bracketed_ip(value) else { continue };
        // Hops inside private or loopback networks are the receiving site's
        // own (SpamAssassin's inferred trusted networks), not relays to judge.
        if ip.parse().is_ok_and(|a| !crate::spam::dnslists::is_public(a)) {
            continue;
        }
        let helo = if value.to_ascii_lowercase().starts_with("from ") { word_after("from ") } else { String::new() };
        let rdns = value
            .find('(')
            .and_then(|o| value[o + 1..].split_whitespace().next())
            .filter(|w| w.contains('.') && !w.starts_with('['))
            .unwrap_or_default();
        let by = word_after(" by ");
        let id = word_after(" id ");
        let auth = if value.contains("ESMTPA") || value.contains("ESMTPSA") { "ESMTPA" } else { "" };
        out.push(format!(
            "[ ip={ip} rdns={rdns} helo={helo} by={by} ident= envfrom= intl=0 id={id} auth={auth} msa=0 ]"
        ));
    }
    out.join(" ")
}

/// The first `[a.b.c.d]` or `[IPv6:…]` in a Received value.
fn bracketed_ip(value: &str) -> Option<String> {
    let mut rest = value;
    while let Some(open) = rest.find('[') {
        let close = rest[open..].find(']').map(|c| open + c)?;
        let inside = &rest[open + 1..close];
        let inside = inside.strip_prefix("IPv6:").unwrap_or(inside);
        if inside.parse::<std::net::IpAddr>().is_ok() {
            return Some(inside.to_string());
        }
        rest = &rest[close + 1..];
    }
    None
}

/// The first address: inside `<…>` if there is one, else the first word with an `@`.
fn first_address(value: &str) -> String {
    if let Some(open) = value.find('<') {
        if let Some(close) = value[open..].find('>') {
            return value[open + 1..open + close].trim().to_string();
        }
    }
    value.split(|c: char| c.is_whitespace() || c == ',').find(|w| w.contains('@')).unwrap_or_default().to_string()
}

/// The display name: what precedes `<…>`, unquoted; else a `(comment)` name.
fn display_name(value: &str) -> String {
    if let Some(open) = value.find('<') {
        return value[..open].trim().trim_matches('"').trim().to_string();
    }
    match (value.find('('), value.rfind(')')) {
        (Some(o), Some(c)) if c > o => value[o + 1..c].trim().to_string(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_lines_name_ip_rdns_helo_and_by() {
        let r = relays(
            [
                "from localhost (localhost [127.0.0.1]) by mx.example.org",
                "from helo.example (mail.example.net [203.0.113.9]) by mx.example.org (Postfix) with ESMTP id ABC123; Mon, 1 Jan 2024",
                "by localhost",
            ]
                .into_iter(),
        );
        assert_eq!(r, "[ ip=203.0.113.9 rdns=mail.example.net helo=helo.example by=mx.example.org ident= envfrom= intl=0 id=ABC123 auth= msa=0 ]");
    }

    #[test]
    fn address_and_name_modifiers() {
        assert_eq!(first_address("\"Ann\" <ann@example.org>"), "ann@example.org");
        assert_eq!(first_address("bob@example.org (Bob)"), "bob@example.org");
        assert_eq!(display_name("\"Ann Lee\" <ann@example.org>"), "Ann Lee");
        assert_eq!(display_name("bob@example.org (Bob)"), "Bob");
    }

    #[test]
    fn body_is_subject_then_one_line_per_paragraph() {
        let raw =
            b"Subject: Hello there\r\nContent-Type: text/plain\r\n\r\nfirst line\r\nsame   paragraph\r\n\r\nsecond\r\n";
        let parsed = ParsedMessage::parse(raw);
        assert_eq!(String::from_utf8(body_text(&parsed)).unwrap(), "Hello there\nfirst line same paragraph\nsecond\n");
        let mut input = RuleInput::new(raw, &parsed, "a@b.example");
        assert_eq!(
            input.text(&Target::Header(
                super::super::parse::HeaderField { name: "x-missing".into(), modifier: HeaderModifier::None },
                "unset".into()
            )),
            b"unset"
        );
    }

    #[test]
    fn uris_from_html_and_text() {
        let raw = b"Subject: x\r\nContent-Type: text/html\r\n\r\n<a href=\"http://a.example/x\">go</a> see www.b.example/y.\r\n";
        let parsed = ParsedMessage::parse(raw);
        let got = String::from_utf8(uris(&parsed)).unwrap();
        assert!(got.contains("http://a.example/x") && got.contains("http://www.b.example/y"), "{got}");
    }
}
