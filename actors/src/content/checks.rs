//! The content decisions, pure: the parsed message and the policy in, a
//! verdict out. Limits first (they refuse with 552), then the attachment
//! filter, then the dangerous-content checks, each with its own action.
//! The strongest action wins: reject, then quarantine, then remove/tag.

use consensus::state::settings::key;
use consensus::state::{AttachmentAction, AttachmentMatch, AttachmentRule, Settings};

use super::files::{extension_of, inspect, ArchiveLimits, FileEntry};
use super::html::{active_tags, phishing_links};
use super::mime::{MimeLimits, ParsedMessage};
use crate::message::Reply;

/// What a dangerous-content check does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckAction {
    Off,
    Tag,
    Quarantine,
    Reject,
}

impl CheckAction {
    pub fn parse(word: &str) -> Self {
        match word {
            "tag" => Self::Tag,
            "quarantine" => Self::Quarantine,
            "reject" => Self::Reject,
            _ => Self::Off,
        }
    }
}

/// Everything the content decisions read, from the replicated settings and rules.
#[derive(Debug, Clone)]
pub struct ContentPolicy {
    pub attachment_size_max: usize,
    pub mime: MimeLimits,
    pub archives: ArchiveLimits,
    pub message_partial: CheckAction,
    pub double_extension: CheckAction,
    pub extension_mismatch: CheckAction,
    pub encrypted_archive: CheckAction,
    pub html_active: CheckAction,
    pub phishing_links: CheckAction,
    pub malformed_mime: CheckAction,
    pub rules: Vec<(u64, AttachmentRule)>,
}

impl ContentPolicy {
    pub fn from_state(settings: &Settings, rules: &consensus::state::ContentFilters) -> Self {
        let action = |k| CheckAction::parse(&settings.text(k));
        Self {
            attachment_size_max: settings.uint(key::CONTENT_ATTACHMENT_SIZE_MAX) as usize,
            mime: MimeLimits {
                depth_max: settings.uint(key::CONTENT_MIME_DEPTH_MAX) as usize,
                parts_max: settings.uint(key::CONTENT_MIME_PARTS_MAX) as usize,
                header_bytes_max: settings.uint(key::CONTENT_HEADER_BYTES_MAX) as usize,
            },
            archives: ArchiveLimits {
                depth_max: settings.uint(key::CONTENT_ARCHIVE_DEPTH_MAX) as usize,
                bytes_max: settings.uint(key::CONTENT_ARCHIVE_BYTES_MAX) as usize,
                entries_max: settings.uint(key::CONTENT_MIME_PARTS_MAX) as usize,
            },
            message_partial: action(key::CONTENT_MESSAGE_PARTIAL),
            double_extension: action(key::CONTENT_DOUBLE_EXTENSION),
            extension_mismatch: action(key::CONTENT_EXTENSION_MISMATCH),
            encrypted_archive: action(key::CONTENT_ENCRYPTED_ARCHIVE),
            html_active: action(key::CONTENT_HTML_ACTIVE),
            phishing_links: action(key::CONTENT_PHISHING_LINKS),
            malformed_mime: action(key::CONTENT_MALFORMED_MIME),
            rules: rules.attachments.iter().map(|(id, r)| (*id, r.clone())).collect(),
        }
    }
}

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The check: `attachment-filter`, `double-extension`, `html-active`…
    pub check: &'static str,
    pub detail: String,
    pub action: CheckAction,
}

/// The content stage's decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentVerdict {
    /// Refuse at the end of DATA.
    pub reject: Option<Reply>,
    /// Everything found, in the order found (for headers, logs, quarantine).
    pub findings: Vec<Finding>,
    /// Top-level attachments to cut out: byte ranges in the parsed body, with the file name.
    pub remove: Vec<((usize, usize), String)>,
}

impl ContentVerdict {
    pub fn quarantine(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.action == CheckAction::Quarantine)
    }

    pub fn tags(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.action == CheckAction::Tag)
    }
}

/// Extensions that run when opened (Windows and common script hosts).
const EXECUTABLE_EXTENSIONS: &[&str] = &[
    "exe", "com", "scr", "pif", "bat", "cmd", "msi", "dll", "cpl", "js", "jse", "vbs", "vbe", "wsf", "wsh", "hta",
    "jar", "ps1", "lnk", "reg", "sh", "app", "elf", "bin", "run", "apk", "msc", "gadget", "iso", "img",
];

pub fn evaluate(parsed: &ParsedMessage, policy: &ContentPolicy) -> ContentVerdict {
    let mut v = ContentVerdict::default();
    if let Some(over) = parsed.over_limits(&MimeLimits { depth_max: usize::MAX, ..policy.mime }) {
        v.reject = Some(Reply::new(552, "5.3.4", &format!("Message refused: {}", over.describe())));
        return v;
    }
    if policy.attachment_size_max > 0 {
        if let Some(a) = parsed.attachments.iter().find(|a| a.data.len() > policy.attachment_size_max) {
            let text = format!(
                "Attachment \"{}\" is {} bytes, over the limit of {} bytes",
                printable(&a.name),
                a.data.len(),
                policy.attachment_size_max
            );
            v.reject = Some(Reply::new(552, "5.3.4", &text));
            return v;
        }
    }
    malformed(parsed, policy, &mut v);
    for p in &parsed.shape.partial_or_external {
        push(&mut v, "message-partial", format!("a {p} part"), policy.message_partial);
    }
    for attachment in &parsed.attachments {
        let entries = inspect(&attachment.name, &attachment.data, &policy.archives);
        for entry in &entries {
            attachment_rules(entry, attachment.raw_range, policy, &mut v);
            dangerous_file(entry, policy, &mut v);
        }
    }
    for html in &parsed.html {
        if let Some(tag) = active_tags(html).first() {
            push(&mut v, "html-active", format!("HTML with <{tag}>"), policy.html_active);
        }
        if let Some((shown, target)) = phishing_links(html).first() {
            push(&mut v, "phishing-link", format!("link shows {shown} but goes to {target}"), policy.phishing_links);
        }
    }
    if v.reject.is_none() {
        v.reject = v.findings.iter().find(|f| f.action == CheckAction::Reject).map(refusal);
    }
    v
}

fn malformed(parsed: &ParsedMessage, policy: &ContentPolicy, v: &mut ContentVerdict) {
    let s = &parsed.shape;
    if s.depth > policy.mime.depth_max {
        let detail = format!("MIME nesting depth {} over the limit of {}", s.depth, policy.mime.depth_max);
        push(v, "malformed-mime", detail, policy.malformed_mime);
    }
    if s.unclosed_boundaries > 0 {
        push(v, "malformed-mime", "a multipart boundary is never closed".into(), policy.malformed_mime);
    }
    if s.header_line_max > 998 {
        let detail = format!("a header line of {} bytes (RFC 5322 allows 998)", s.header_line_max);
        push(v, "malformed-mime", detail, policy.malformed_mime);
    }
}

fn attachment_rules(entry: &FileEntry, range: Option<(usize, usize)>, policy: &ContentPolicy, v: &mut ContentVerdict) {
    for (id, rule) in &policy.rules {
        let hit = match rule.matches {
            AttachmentMatch::Extension => entry.extension == rule.value,
            AttachmentMatch::Type => {
                entry.detected == Some(rule.value.as_str()) || (rule.value == "executable" && entry.executable)
            }
        };
        if !hit {
            continue;
        }
        let what = match rule.matches {
            AttachmentMatch::Extension => format!("file type .{}", rule.value),
            AttachmentMatch::Type => format!("file type {}", rule.value),
        };
        let detail = format!("{what} (rule {id}): {}", printable(&entry.path));
        match (rule.action, range) {
            (AttachmentAction::Reject, _) | (AttachmentAction::Remove, None) => {
                push(v, "attachment-filter", detail, CheckAction::Reject)
            }
            (AttachmentAction::Quarantine, _) => push(v, "attachment-filter", detail, CheckAction::Quarantine),
            (AttachmentAction::Remove, Some(range)) => {
                if !v.remove.iter().any(|(r, _)| *r == range) {
                    let top = entry.path.split('/').next().unwrap_or_default().to_string();
                    v.remove.push((range, top));
                }
                push(v, "attachment-filter", format!("{detail}, removed"), CheckAction::Tag);
            }
        }
        return;
    }
}

fn dangerous_file(entry: &FileEntry, policy: &ContentPolicy, v: &mut ContentVerdict) {
    let name = entry.path.rsplit('/').next().unwrap_or_default();
    let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or_default();
    let inner = extension_of(stem.trim_end());
    let outer_runs = EXECUTABLE_EXTENSIONS.contains(&entry.extension.as_str());
    if outer_runs && !inner.is_empty() && inner.len() <= 5 && inner.chars().all(|c| c.is_ascii_alphanumeric()) {
        let detail = format!("executable behind a double extension: {}", printable(&entry.path));
        push(v, "double-extension", detail, policy.double_extension);
    }
    // A name with no extension claims nothing, and a `#!` script is text:
    // only a binary program under a harmless-looking extension contradicts it.
    if entry.executable && !entry.script && !outer_runs && !entry.extension.is_empty() {
        let detail = format!(
            "{} is named .{} but is a program ({})",
            printable(&entry.path),
            entry.extension,
            entry.detected.unwrap_or("script")
        );
        push(v, "extension-mismatch", detail, policy.extension_mismatch);
    }
    if entry.encrypted {
        push(
            v,
            "encrypted-archive",
            format!("password-protected: {}", printable(&entry.path)),
            policy.encrypted_archive,
        );
    }
}

fn push(v: &mut ContentVerdict, check: &'static str, detail: String, action: CheckAction) {
    if action != CheckAction::Off {
        v.findings.push(Finding { check, detail, action });
    }
}

fn refusal(f: &Finding) -> Reply {
    match f.check {
        "malformed-mime" => Reply::new(554, "5.6.0", &format!("Message refused: malformed MIME: {}", f.detail)),
        "attachment-filter" => Reply::new(554, "5.7.1", &format!("Message refused: attachment {}", f.detail)),
        _ => Reply::new(554, "5.7.1", &format!("Message refused: dangerous content: {}", f.detail)),
    }
}

/// A sender-chosen name, safe to put in a reply or a header.
pub fn printable(name: &str) -> String {
    name.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use consensus::state::ContentFilters;

    const PE: &[u8] = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00";

    fn with_attachment(name: &str, data: &[u8]) -> Vec<u8> {
        let b64 = base64::engine::general_purpose::STANDARD.encode(data);
        format!(
            "From: a@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\nContent-Type: application/octet-stream\r\n\
             Content-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
        )
        .into_bytes()
    }

    fn html(body: &str) -> Vec<u8> {
        format!("From: a@example.org\r\nSubject: t\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n{body}\r\n")
            .into_bytes()
    }

    fn encrypted_zip() -> Vec<u8> {
        let mut z = crate::content::files::tests::zip_of(&[("secret.txt", b"hi")]);
        for i in 0..z.len().saturating_sub(10) {
            if z[i..i + 4] == *b"PK\x03\x04" {
                z[i + 6] |= 1;
            } else if z[i..i + 4] == *b"PK\x01\x02" {
                z[i + 8] |= 1;
            }
        }
        z
    }

    /// Every check at `action`, no attachment rules.
    fn policy(action: CheckAction) -> ContentPolicy {
        let mut p = ContentPolicy::from_state(&Settings::default(), &ContentFilters::default());
        for a in [
            &mut p.message_partial,
            &mut p.double_extension,
            &mut p.extension_mismatch,
            &mut p.encrypted_archive,
            &mut p.html_active,
            &mut p.phishing_links,
            &mut p.malformed_mime,
        ] {
            *a = action;
        }
        p
    }

    fn checks_found(raw: &[u8], policy: &ContentPolicy) -> Vec<&'static str> {
        evaluate(&ParsedMessage::parse(raw), policy).findings.iter().map(|f| f.check).collect()
    }

    #[test]
    fn every_check_finds_its_case_and_nothing_else() {
        let deep = {
            let mut m = String::from(
                "From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"l0\"\r\n\r\n",
            );
            for i in 1..=25 {
                m.push_str(&format!("--l{}\r\nContent-Type: multipart/mixed; boundary=\"l{i}\"\r\n\r\n", i - 1));
            }
            m.push_str("--l25\r\nContent-Type: text/plain\r\n\r\nbottom\r\n");
            for i in (0..=25).rev() {
                m.push_str(&format!("--l{i}--\r\n"));
            }
            m.into_bytes()
        };
        let table: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
            ("plain text", b"From: a@example.org\r\nSubject: hi\r\n\r\nhello\r\n".to_vec(), vec![]),
            ("harmless attachment", with_attachment("notes.txt", b"just text"), vec![]),
            ("double extension", with_attachment("a.pdf.exe", b"data"), vec!["double-extension"]),
            ("PE under .pdf", with_attachment("invoice.pdf", PE), vec!["extension-mismatch"]),
            ("PE without extension", with_attachment("tool", PE), vec![]),
            ("script under .txt", with_attachment("run.txt", b"#!/bin/sh\necho hi\n"), vec![]),
            ("encrypted zip member", with_attachment("s.zip", &encrypted_zip()), vec!["encrypted-archive"]),
            (
                "message/partial",
                b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: message/partial; id=\"x\"; number=1\r\n\r\nhalf\r\n"
                    .to_vec(),
                vec!["message-partial"],
            ),
            ("html form", html("<form action=\"https://x.example/\"><input></form>"), vec!["html-active"]),
            ("html script", html("<p>hi</p><SCRIPT>alert(1)</SCRIPT>"), vec!["html-active"]),
            ("plain html", html("<p>hello <a href=\"https://a.example/\">https://a.example/</a></p>"), vec![]),
            (
                "phishing link",
                html("<a href=\"https://evil.example/\">https://bank.example/login</a>"),
                vec!["phishing-link"],
            ),
            (
                "unclosed boundary",
                b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"z\"\r\n\r\n--z\r\n\r\nx\r\n"
                    .to_vec(),
                vec!["malformed-mime"],
            ),
            (
                "header line over 998",
                format!("From: a@example.org\r\nSubject: {}\r\n\r\nx\r\n", "y".repeat(1000)).into_bytes(),
                vec!["malformed-mime"],
            ),
            ("nesting past the limit", deep, vec!["malformed-mime"]),
        ];
        let tag = policy(CheckAction::Tag);
        for (name, raw, expected) in &table {
            let mut found = checks_found(raw, &tag);
            found.dedup();
            assert_eq!(&found, expected, "{name}");
        }
        // Off finds nothing; reject turns each finding into a 554 refusal.
        let off = policy(CheckAction::Off);
        let reject = policy(CheckAction::Reject);
        for (name, raw, expected) in &table {
            assert!(checks_found(raw, &off).is_empty(), "{name} with every check off");
            let verdict = evaluate(&ParsedMessage::parse(raw), &reject);
            match verdict.reject {
                Some(reply) => {
                    assert!(!expected.is_empty(), "{name} refused for nothing: {}", reply.text);
                    assert_eq!(reply.code, 554, "{name}");
                    let status = if expected[0] == "malformed-mime" { "5.6.0" } else { "5.7.1" };
                    assert_eq!(reply.enhanced, status, "{name}");
                }
                None => assert!(expected.is_empty(), "{name} not refused"),
            }
        }
    }

    #[test]
    fn attachment_rules_match_by_extension_type_and_inside_archives_with_their_action() {
        let mut filters = ContentFilters::default();
        let mut add = |m, v: &str, action| {
            let rule = AttachmentRule { matches: m, value: v.into(), action, comment: String::new() };
            filters.add(rule).map_err(|e| format!("{e:?}"))
        };
        assert!(add(AttachmentMatch::Extension, "js", AttachmentAction::Reject).is_ok());
        assert!(add(AttachmentMatch::Type, "executable", AttachmentAction::Quarantine).is_ok());
        assert!(add(AttachmentMatch::Extension, "bat", AttachmentAction::Remove).is_ok());
        let p = ContentPolicy::from_state(&Settings::default(), &filters);
        let verdict = |raw: Vec<u8>| evaluate(&ParsedMessage::parse(&raw), &p);

        let js = verdict(with_attachment("x.JS", b"alert(1)"));
        let reply = js.reject.expect("refused");
        assert_eq!((reply.code, reply.enhanced), (554, "5.7.1"));
        assert!(reply.text.contains("file type .js (rule 1): x.JS"), "{}", reply.text);

        let inner = crate::content::files::tests::zip_of(&[("setup.bin", PE)]);
        let held = verdict(with_attachment("docs.zip", &inner));
        assert!(held.reject.is_none());
        let q = held.quarantine().expect("quarantined");
        assert!(q.detail.contains("docs.zip/setup.bin"), "{}", q.detail);

        let removed = verdict(with_attachment("run.bat", b"@echo off"));
        assert!(removed.reject.is_none() && removed.quarantine().is_none());
        assert_eq!(removed.remove.len(), 1);
        assert_eq!(removed.remove[0].1, "run.bat");
    }
}
