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
    if entry.executable && entry.detected.is_some() && !outer_runs && !entry.extension.is_empty() {
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
