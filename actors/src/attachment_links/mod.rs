//! Attachment linking (MDaemon): in mail an authenticated user sends,
//! attachments at or above the user's threshold are stored by the cluster
//! and replaced by a short text part with a download link. The file stays on
//! this node (`store`); a Raft entry (`AddAttachmentLink`) says which node
//! holds it and until when, so any node behind the load balancer can serve
//! the link, fetching the bytes from the owner over the cluster's mTLS port.
//!
//! The step runs after the rewrite stage and before DKIM signing, so the
//! signature covers the message the recipients get. When the link cannot be
//! recorded (no quorum), the attachment stays in the message: linking saves
//! bandwidth, it must not stop mail.

pub mod store;

use base64::Engine;
use consensus::state::settings::key;
use consensus::state::AttachmentLink;
use consensus::{AppliedState, Command, Proposer};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::content::mime::ParsedMessage;
use crate::message::InboundMessage;
use store::LinkStore;

/// Characters of a link token: 32 random bytes, base64url without padding.
pub const TOKEN_CHARS: usize = 43;

/// What one message's linking needs from the settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkPolicy {
    pub user: String,
    pub bytes_min: u64,
    pub base_url: String,
    pub ttl_ms: u64,
}

/// Whether `message` has its attachments linked, and how: only mail from a
/// logged-in user whose threshold is set, with a usable `base_url`.
pub fn policy_for(state: &AppliedState, message: &InboundMessage) -> Option<LinkPolicy> {
    let user = message.authenticated.as_ref()?;
    let s = &state.state;
    let bytes_min = s.attachment_link_threshold(&user.to_ascii_lowercase());
    let base_url = s.settings.text(key::ATTACHMENT_LINKS_BASE_URL);
    let web = base_url.starts_with("https://") || base_url.starts_with("http://");
    if bytes_min == 0 || !web {
        return None;
    }
    let ttl_ms = s.settings.uint(key::ATTACHMENT_LINKS_TTL_S).saturating_mul(1000);
    Some(LinkPolicy { user: user.clone(), bytes_min, base_url: base_url.trim_end_matches('/').to_string(), ttl_ms })
}

/// An attachment to replace: the whole part's byte range in the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub range: (usize, usize),
    pub name: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// The attachments of `body` at least `bytes_min` long (decoded), last
/// first so splicing one leaves the others' ranges valid. Only parts of the
/// top-level multipart: never the message itself, never a part inside an
/// attached message.
pub fn candidates(body: &[u8], bytes_min: u64) -> Vec<Candidate> {
    let parsed = ParsedMessage::parse(body);
    let mut found: Vec<Candidate> = parsed
        .attachments
        .into_iter()
        .filter(|a| a.part != 0 && a.path.is_empty() && a.data.len() as u64 >= bytes_min)
        .filter_map(|a| {
            let (from, to) = a.raw_range?;
            (from > 0 && from < to && to <= body.len()).then_some(Candidate {
                range: (from, to),
                name: a.name,
                content_type: a.declared_type,
                data: a.data,
            })
        })
        .collect();
    found.sort_by_key(|c| std::cmp::Reverse(c.range.0));
    found.dedup_by_key(|c| c.range);
    found
}

/// A new token and the SHA-256 (hex) the cluster knows it by.
pub fn new_token() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut raw);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let hash = token_sha256(&token);
    (token, hash)
}

pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A token could be one of ours (length and alphabet); anything else is
/// refused before a lookup.
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_CHARS && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub fn link_url(base_url: &str, token: &str) -> String {
    format!("{}/a/{token}", base_url.trim_end_matches('/'))
}

/// `1234567` → `1.2 MB` (decimal units, as mail clients show sizes).
fn human_size(bytes: u64) -> String {
    match bytes {
        0..=999 => format!("{bytes} bytes"),
        1_000..=999_999 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.1} GB", bytes as f64 / 1e9),
    }
}

/// The text part that takes the attachment's place.
pub fn replacement_part(name: &str, size: u64, url: &str, expires_ms: u64) -> Vec<u8> {
    let name: String = name.chars().filter(|c| !c.is_control() && *c != '"').collect();
    let name = if name.is_empty() { "attachment".to_string() } else { name };
    let until = mail_builder::headers::date::Date::new((expires_ms / 1000) as i64).to_rfc822();
    let text = format!(
        "The attachment \"{name}\" ({}) was sent as a link.\r\nDownload it until {until}:\r\n\r\n{url}\r\n",
        human_size(size)
    );
    let mut part = b"Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline\r\n".to_vec();
    if text.is_ascii() {
        part.extend_from_slice(b"Content-Transfer-Encoding: 7bit\r\n\r\n");
        part.extend_from_slice(text.as_bytes());
    } else {
        part.extend_from_slice(b"Content-Transfer-Encoding: base64\r\n\r\n");
        let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
        for line in encoded.as_bytes().chunks(76) {
            part.extend_from_slice(line);
            part.extend_from_slice(b"\r\n");
        }
    }
    part
}

/// Stores and links the message's large attachments; returns how many were
/// linked. The files are stored durably first (one blocking task), then
/// their links are proposed together (the proposer batches them into one
/// Raft entry), then the committed ones are cut out; an attachment whose
/// file or link failed stays in the message.
pub async fn link(
    store: &Arc<LinkStore>,
    proposer: &Proposer,
    policy: &LinkPolicy,
    message: &mut InboundMessage,
    now_ms: u64,
) -> usize {
    let found = candidates(&message.body, policy.bytes_min);
    if found.is_empty() {
        return 0;
    }
    let tokens: Vec<(String, String)> = found.iter().map(|_| new_token()).collect();
    let files: Vec<(String, Vec<u8>)> =
        found.iter().zip(&tokens).map(|(c, (_, hash))| (hash.clone(), c.data.clone())).collect();
    let s = store.clone();
    let saved: Vec<bool> = match tokio::task::spawn_blocking(move || {
        files
            .iter()
            .map(|(hash, data)| {
                s.save(hash, data)
                    .map_err(|e| tracing::error!(error = %e, "attachment link: storing the file failed"))
                    .is_ok()
            })
            .collect()
    })
    .await
    {
        Ok(saved) => saved,
        Err(e) => {
            tracing::error!(error = %e, "attachment link: storing the files failed; attachments kept");
            return 0;
        }
    };
    let expires_ms = now_ms.saturating_add(policy.ttl_ms);
    let proposals = found.iter().zip(&tokens).zip(&saved).map(|((c, (_, hash)), saved)| {
        let entry = AttachmentLink {
            node_id: store.node_id,
            user: policy.user.clone(),
            file_name: c.name.clone(),
            content_type: c.content_type.clone(),
            size: c.data.len() as u64,
            created_ms: now_ms,
            expires_ms,
            downloads: 0,
            last_download_ms: None,
        };
        let command = Command::AddAttachmentLink { token_sha256: hash.clone(), link: entry };
        async move {
            if !*saved {
                return false;
            }
            match proposer.propose(command).await {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "attachment link not recorded; attachment kept");
                    false
                }
            }
        }
    });
    let recorded: Vec<bool> = futures::future::join_all(proposals).await;
    let mut linked = 0;
    // `found` is last part first, so each splice leaves the earlier ranges valid.
    for ((candidate, (token, hash)), recorded) in found.iter().zip(&tokens).zip(recorded) {
        if !recorded {
            let _ = store.remove(hash);
            continue;
        }
        let size = candidate.data.len() as u64;
        let part = replacement_part(&candidate.name, size, &link_url(&policy.base_url, token), expires_ms);
        message.body.splice(candidate.range.0..candidate.range.1, part);
        tracing::info!(user = %policy.user, id = &hash[..16], file = %candidate.name, size, "attachment linked");
        linked += 1;
    }
    linked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(attachment: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(attachment);
        format!(
            "From: a@example.com\r\nTo: b@example.net\r\nSubject: files\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\
             see attached\r\n--b1\r\nContent-Type: application/pdf; name=\"big.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"big.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
             {encoded}\r\n--b1--\r\n"
        )
        .into_bytes()
    }

    #[test]
    fn candidates_respect_the_threshold_and_spare_the_text() {
        let body = message(&[7u8; 3000]);
        assert!(candidates(&body, 3001).is_empty());
        let found = candidates(&body, 3000);
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].name.as_str(), found[0].data.len()), ("big.pdf", 3000));
        let (from, to) = found[0].range;
        assert!(body[from..to].starts_with(b"Content-Type: application/pdf"));
        // A single-part message is never cut out whole (its headers would go).
        let single = b"From: a\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=x.pdf\r\n\r\nJVBERi0x\r\n";
        assert!(candidates(single, 1).is_empty());
    }

    #[test]
    fn replacement_keeps_the_mime_structure() {
        let mut body = message(&[7u8; 3000]);
        let c = &candidates(&body, 1)[0];
        let url = link_url("https://files.example.com/", "t".repeat(43).as_str());
        body.splice(c.range.0..c.range.1, replacement_part("big.pdf", 3000, &url, 1_700_000_000_000));
        let parsed = ParsedMessage::parse(&body);
        assert!(parsed.attachments.is_empty(), "{:?}", parsed.attachments);
        assert!(
            parsed.text.iter().any(|t| t.contains(&url) && t.contains("\"big.pdf\" (3.0 kB)")),
            "{:?}",
            parsed.text
        );
        assert_eq!(parsed.shape.unclosed_boundaries, 0);
    }

    #[test]
    fn non_ascii_names_are_base64_and_tokens_are_checked() {
        let part = replacement_part("Übersicht.pdf", 5, "https://x/a/t", 0);
        assert!(String::from_utf8_lossy(&part).contains("Content-Transfer-Encoding: base64"));
        let (token, hash) = new_token();
        assert!(well_formed(&token) && hash.len() == 64 && token_sha256(&token) == hash);
        assert!(!well_formed(&token[1..]) && !well_formed(&format!("{}/", &token[1..])));
        assert_eq!(human_size(1_234_567), "1.2 MB");
    }
}
