//! The cluster-wide index of linked attachments (MDaemon's "attachment
//! linking"). The file stays on the node that accepted the message; the index
//! says which node that is, so any node behind the load balancer can serve
//! the link (fetching the bytes from the owner over the cluster's mTLS port).
//! Entries are keyed by the SHA-256 of the link's token, so a copy of the
//! state (a snapshot, a log) holds no working link.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Bytes of the free-text fields an entry keeps.
pub const LINK_NAME_BYTES_MAX: usize = 255;
/// Links the index holds at once; more are refused until some expire.
pub const LINKS_MAX: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentLink {
    /// The node whose disk holds the file.
    pub node_id: u64,
    /// The account that sent it.
    pub user: String,
    pub file_name: String,
    pub content_type: String,
    pub size: u64,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// Downloads served so far, and when the last one was.
    pub downloads: u64,
    pub last_download_ms: Option<u64>,
}

/// Links by the SHA-256 (hex) of their token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentLinks {
    pub links: BTreeMap<String, AttachmentLink>,
}

impl AttachmentLinks {
    /// Drops links past their time; returns how many went.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.links.len();
        self.links.retain(|_, l| l.expires_ms > now_ms);
        before - self.links.len()
    }

    /// The live link for a token's hash at `now_ms`.
    pub fn live(&self, token_sha256: &str, now_ms: u64) -> Option<&AttachmentLink> {
        self.links.get(token_sha256).filter(|l| l.expires_ms > now_ms)
    }
}

/// `s` cut to at most `max` bytes on a character boundary, control characters dropped.
pub fn bounded_text(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}
