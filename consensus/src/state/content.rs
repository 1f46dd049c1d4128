//! Attachment filter rules (MailPlus "Attachment Filter", Kerio's
//! attachment filter, Proxmox Mail Gateway's "what" objects): a file type
//! named by its extension or by what its content is, and what to do with a
//! message that carries one. The content stage checks the attachment and
//! every file inside its archives against them.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use super::rules::RuleError;

/// What a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentMatch {
    /// The extension of the file's name (`exe`, `js`).
    Extension,
    /// What the file's first bytes say it is (`exe`, `elf`, `zip`), whatever
    /// its name; `executable` matches every program format.
    Type,
}

/// What a match does to the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AttachmentAction {
    /// Refuse at the end of DATA: `554 5.7.1` naming the type and file.
    #[default]
    Reject,
    /// Accept and hold in quarantine.
    Quarantine,
    /// Deliver without the attachment, with a note in its place.
    Remove,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentRule {
    #[serde(rename = "match")]
    pub matches: AttachmentMatch,
    /// An extension without the dot, or a type name; lower case.
    pub value: String,
    #[serde(default)]
    pub action: AttachmentAction,
    #[serde(default)]
    pub comment: String,
}

impl AttachmentRule {
    /// Checks and normalises a rule as an operator wrote it.
    pub fn normalised(mut self) -> Result<Self, RuleError> {
        let value = self.value.trim().trim_start_matches('.').to_ascii_lowercase();
        if value.is_empty() || value.len() > 32 {
            return Err(RuleError { field: "value", reason: "an extension or type of 1 to 32 characters".into() });
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            return Err(RuleError {
                field: "value",
                reason: format!("{value:?}: letters, digits, '-', '_' and '.' only"),
            });
        }
        if self.comment.len() > 200 {
            return Err(RuleError { field: "comment", reason: "at most 200 bytes".into() });
        }
        self.value = value;
        Ok(self)
    }
}

/// The attachment rules, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentFilters {
    #[serde(default)]
    pub attachments: BTreeMap<u64, AttachmentRule>,
    #[serde(default)]
    pub next_id: u64,
}

/// Why a rule could not be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddAttachmentRuleError {
    Bad(RuleError),
    Exists(u64),
}

impl ContentFilters {
    pub fn add(&mut self, rule: AttachmentRule) -> Result<u64, AddAttachmentRuleError> {
        let rule = rule.normalised().map_err(AddAttachmentRuleError::Bad)?;
        if let Some((id, _)) = self.attachments.iter().find(|(_, r)| r.matches == rule.matches && r.value == rule.value)
        {
            return Err(AddAttachmentRuleError::Exists(*id));
        }
        self.next_id += 1;
        self.attachments.insert(self.next_id, rule);
        Ok(self.next_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(m: AttachmentMatch, v: &str) -> AttachmentRule {
        AttachmentRule { matches: m, value: v.into(), action: AttachmentAction::Reject, comment: String::new() }
    }

    #[test]
    fn normalises_and_refuses_duplicates() {
        let mut f = ContentFilters::default();
        assert_eq!(f.add(rule(AttachmentMatch::Extension, ".EXE")), Ok(1));
        assert_eq!(f.attachments[&1].value, "exe");
        assert_eq!(f.add(rule(AttachmentMatch::Extension, "exe")), Err(AddAttachmentRuleError::Exists(1)));
        assert_eq!(f.add(rule(AttachmentMatch::Type, "exe")), Ok(2));
        assert!(matches!(f.add(rule(AttachmentMatch::Type, "e x")), Err(AddAttachmentRuleError::Bad(_))));
        assert!(matches!(f.add(rule(AttachmentMatch::Type, "")), Err(AddAttachmentRuleError::Bad(_))));
    }
}
