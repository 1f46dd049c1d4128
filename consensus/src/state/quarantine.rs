//! The cluster-wide quarantine index. A quarantined message's body stays in
//! the queue of the node that accepted it (bodies are not replicated); the
//! index says where each one is, what it is, and what an operator asked for.
//! The owning node carries the request out (release or delete in its queue)
//! and then forgets the entry, so a release asked on any node happens once,
//! on the node that holds the bytes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most recipients, header bytes and detail bytes one entry keeps.
pub const ENTRY_RECIPIENTS_MAX: usize = 1000;
pub const ENTRY_HEADERS_BYTES_MAX: usize = 16 * 1024;
pub const ENTRY_TEXT_BYTES_MAX: usize = 1000;

/// Which check held the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineReason {
    Virus,
    Attachment,
    Content,
    Spam,
}

impl QuarantineReason {
    pub fn name(self) -> &'static str {
        match self {
            Self::Virus => "virus",
            Self::Attachment => "attachment",
            Self::Content => "content",
            Self::Spam => "spam",
        }
    }

    pub fn parse(word: &str) -> Option<Self> {
        [Self::Virus, Self::Attachment, Self::Content, Self::Spam].into_iter().find(|r| r.name() == word)
    }
}

/// What an operator asked for; the owning node carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum QuarantineState {
    #[default]
    Held,
    /// Deliver to the original recipients, without the check that held it.
    Releasing,
    /// Drop without delivery or bounce.
    Deleting,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineEntry {
    /// The node whose queue holds the message.
    pub node_id: u64,
    pub received_ms: u64,
    pub sender: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub reason: QuarantineReason,
    /// What was found (the virus name, the file, the check).
    pub detail: String,
    pub size: u64,
    /// The message's header block (cut at `ENTRY_HEADERS_BYTES_MAX`), for `show` on any node.
    pub headers: String,
    #[serde(default)]
    pub state: QuarantineState,
}

impl QuarantineEntry {
    /// Cuts the free-text fields to their limits (on a character boundary).
    pub fn bounded(mut self) -> Self {
        cut(&mut self.sender, ENTRY_TEXT_BYTES_MAX);
        cut(&mut self.subject, ENTRY_TEXT_BYTES_MAX);
        cut(&mut self.detail, ENTRY_TEXT_BYTES_MAX);
        cut(&mut self.headers, ENTRY_HEADERS_BYTES_MAX);
        self.recipients.truncate(ENTRY_RECIPIENTS_MAX);
        for r in &mut self.recipients {
            cut(r, ENTRY_TEXT_BYTES_MAX);
        }
        self
    }
}

fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Quarantined messages by queue id (queue ids carry the node id, so they
/// are unique in the cluster).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineIndex {
    pub entries: BTreeMap<String, QuarantineEntry>,
}

impl QuarantineIndex {
    /// Records a held message; adding the same id again changes nothing
    /// (the owning node re-announces what it holds after a restart).
    pub fn add(&mut self, id: &str, entry: QuarantineEntry) {
        self.entries.entry(id.to_string()).or_insert_with(|| entry.bounded());
    }

    /// Asks the owning node to release or delete; false if there is no such entry.
    pub fn request(&mut self, id: &str, state: QuarantineState) -> bool {
        match self.entries.get_mut(id) {
            Some(e) => {
                // A delete asked after a release (or the reverse) wins: the
                // owner has not acted yet, and the last word is the operator's.
                e.state = state;
                true
            }
            None => false,
        }
    }

    pub fn forget(&mut self, id: &str) -> bool {
        self.entries.remove(id).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node_id: u64) -> QuarantineEntry {
        QuarantineEntry {
            node_id,
            received_ms: 1,
            sender: "a@example.org".into(),
            recipients: vec!["b@example.com".into()],
            subject: "é".repeat(600),
            reason: QuarantineReason::Virus,
            detail: "Eicar".into(),
            size: 10,
            headers: String::new(),
            state: QuarantineState::Held,
        }
    }

    #[test]
    fn add_is_idempotent_and_bounded() {
        let mut q = QuarantineIndex::default();
        q.add("A", entry(1));
        q.request("A", QuarantineState::Releasing);
        q.add("A", entry(2));
        assert_eq!(q.entries["A"].node_id, 1, "a re-announce does not overwrite");
        assert_eq!(q.entries["A"].state, QuarantineState::Releasing);
        assert!(q.entries["A"].subject.len() <= ENTRY_TEXT_BYTES_MAX);
        assert!(!q.request("B", QuarantineState::Deleting));
        assert!(q.forget("A"));
        assert!(!q.forget("A"));
    }

    #[test]
    fn reasons_round_trip() {
        for r in
            [QuarantineReason::Virus, QuarantineReason::Attachment, QuarantineReason::Content, QuarantineReason::Spam]
        {
            assert_eq!(QuarantineReason::parse(r.name()), Some(r));
        }
        assert_eq!(QuarantineReason::parse("other"), None);
    }
}
