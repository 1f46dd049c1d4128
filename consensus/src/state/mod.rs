//! The replicated cluster state: what every node agrees on.
//!
//! `ClusterState` is a plain value. It changes only through
//! `ClusterState::apply` (see `crate::apply`), which is deterministic, so every
//! node that applied the same log holds the same value. Readers get it through
//! `crate::ReadHandle` as an immutable snapshot.

pub mod antivirus;
pub mod attachment_links;
pub mod bayes;
pub mod content;
pub mod counters;
pub mod directory;
pub mod dkim;
pub mod quarantine;
pub mod rule_index;
pub mod rules;
pub mod settings;
pub mod spam;
pub mod spool_owners;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use antivirus::{AntivirusNodeStatus, AntivirusState};
pub use attachment_links::{AttachmentLink, AttachmentLinks};
pub use content::{AttachmentAction, AttachmentMatch, AttachmentRule, ContentFilters};
pub use counters::{
    BlockedIp, Counters, DailyQuota, GreylistClient, GreylistTriplet, HijackCounter, UnfreezeToken, UnknownRecipients,
};
pub use directory::{Alias, Directory, Domain, DomainLimits, Group, RelayDomain, User, UserOverrides};
pub use dkim::{DkimAlgorithm, DkimKey, DkimKeys};
pub use quarantine::{QuarantineEntry, QuarantineIndex, QuarantineReason, QuarantineState};
pub use rule_index::RuleIndex;
pub use rules::{ListName, ListRule, RuleAction, RuleKind, RuleSets};
pub use settings::{SettingSpec, Settings, SETTING_SPECS};
pub use spam::{SpamClass, SpamState};

/// A join token waiting to be redeemed. Only its SHA-256 is stored, so a copy
/// of the state (a snapshot, an export) cannot be used to join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingJoin {
    pub expires_ms: u64,
}

/// A node that joined through a token, with the addresses it announced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub raft_addr: String,
    pub admin_addr: String,
    pub joined_ms: u64,
}

/// Cluster bookkeeping that is not mail configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRecords {
    /// Token hash (hex SHA-256) → pending join.
    pub join_tokens: BTreeMap<String, PendingJoin>,
    /// The id the next joining node gets; ids are never reused.
    pub next_node_id: u64,
    /// Nodes that joined by token (the first node is not listed here).
    pub nodes: BTreeMap<u64, NodeRecord>,
}

impl Default for ClusterRecords {
    fn default() -> Self {
        Self { join_tokens: BTreeMap::new(), next_node_id: 2, nodes: BTreeMap::new() }
    }
}

/// Everything Raft replicates.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub settings: Settings,
    pub directory: Directory,
    pub rules: RuleSets,
    /// DKIM signing keys by domain and selector.
    #[serde(default)]
    pub dkim: DkimKeys,
    /// Attachment filter rules.
    #[serde(default)]
    pub content: ContentFilters,
    /// Where every quarantined message is held, and what was asked for it.
    #[serde(default)]
    pub quarantine: QuarantineIndex,
    /// Definition update requests and each node's clamd status.
    #[serde(default)]
    pub antivirus: AntivirusState,
    /// The spam engine's learned model.
    #[serde(default)]
    pub spam: SpamState,
    /// Linked attachments: where each file is, until when.
    #[serde(default)]
    pub attachment_links: AttachmentLinks,
    /// Spool replication: owners' delivery leases and takeovers.
    #[serde(default)]
    pub spool_owners: spool_owners::SpoolOwners,
    pub counters: Counters,
    pub cluster: ClusterRecords,
    /// Commands applied so far (successful or not): a cheap way for tests and
    /// operators to compare two nodes.
    pub commands_applied: u64,
}

/// The operator-owned part of the state as one document, for
/// `gatehouse export` and `gatehouse import`. Counters and cluster bookkeeping
/// are runtime data and are not part of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigDocument {
    /// Format version, so later releases can read older exports.
    pub version: u32,
    pub settings: Settings,
    pub directory: Directory,
    pub rules: RuleSets,
    /// DKIM keys, private halves included: an export restores signing.
    #[serde(default)]
    pub dkim: DkimKeys,
    #[serde(default)]
    pub content: ContentFilters,
}

pub const CONFIG_DOCUMENT_VERSION: u32 = 1;

impl ClusterState {
    pub fn export(&self) -> ConfigDocument {
        ConfigDocument {
            version: CONFIG_DOCUMENT_VERSION,
            settings: self.settings.clone(),
            directory: self.directory.clone(),
            // The version is this node's change counter, not configuration.
            rules: RuleSets { version: 0, ..self.rules.clone() },
            dkim: self.dkim.clone(),
            content: self.content.clone(),
        }
    }
}
