//! The mail directory: domains, domain aliases, users, groups and aliases.
//!
//! One address names at most one thing: a user, a group or an alias. Keys are
//! the normalised forms from `crate::address`.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A local domain: mail to it is delivered here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub name: String,
    /// When the domain was added, from the proposer's clock.
    pub created_ms: u64,
    /// Defaults for its users, over the cluster's `quota.*`.
    #[serde(default)]
    pub limits: DomainLimits,
}

/// A domain's defaults for its users' daily quota; `None` keeps the
/// cluster default, 0 means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainLimits {
    pub daily_messages_max: Option<u32>,
    pub daily_bytes_max: Option<u64>,
    /// Attachments of at least this many bytes in the users' outbound mail
    /// are replaced by a link (0: never).
    #[serde(default)]
    pub attachment_link_bytes_min: Option<u64>,
}

/// Per-user limits that override the cluster defaults; `None` keeps the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserOverrides {
    /// Mailbox size limit in bytes.
    pub mailbox_bytes_max: Option<u64>,
    /// Messages the user may send per day, each external recipient
    /// counting one (outbound quota; 0: no limit).
    pub daily_messages_max: Option<u32>,
    /// Bytes the user may send per day, a message's size counted once per
    /// external recipient (0: no limit).
    pub daily_bytes_max: Option<u64>,
    /// Attachments of at least this many bytes in the user's outbound mail
    /// are replaced by a link (0: never).
    #[serde(default)]
    pub attachment_link_bytes_min: Option<u64>,
}

/// A mailbox owner who can log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub address: String,
    pub display_name: String,
    /// PHC string of an argon2id hash; hashing happens before the command is
    /// proposed, because `apply` must not draw a random salt.
    pub password_hash: String,
    /// An administrator can disable an account: no login, no delivery.
    pub enabled: bool,
    /// Set by hijack detection: the account may receive but not send.
    pub frozen: bool,
    pub overrides: UserOverrides,
    pub created_ms: u64,
}

/// A distribution group: mail to its address goes to every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub address: String,
    pub members: BTreeSet<String>,
}

/// An alias: mail to its address goes to its targets, local or remote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    pub address: String,
    pub targets: BTreeSet<String>,
}

/// All directory tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Directory {
    pub domains: BTreeMap<String, Domain>,
    /// Alias domain → the local domain it stands for.
    pub domain_aliases: BTreeMap<String, String>,
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    pub aliases: BTreeMap<String, Alias>,
    /// Inbound relay domains (MailPlus Relay Control): mail for them is
    /// accepted from anyone and relayed to the domain's own MX.
    #[serde(default)]
    pub relay_domains: BTreeMap<String, RelayDomain>,
}

/// A domain we accept mail for on behalf of another server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayDomain {
    /// When not empty, only these addresses (lower case) are accepted.
    pub recipients: BTreeSet<String>,
}

impl Directory {
    /// True when the domain (or a domain alias) is served here.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(domain) || self.domain_aliases.contains_key(domain)
    }

    /// The relay domain `domain` is, if it is one.
    pub fn relay_domain(&self, domain: &str) -> Option<&RelayDomain> {
        self.relay_domains.get(domain)
    }

    /// True when any table already uses this address.
    pub fn address_in_use(&self, key: &str) -> bool {
        self.users.contains_key(key) || self.groups.contains_key(key) || self.aliases.contains_key(key)
    }

    /// True when anything still lives in the domain, so removing it would orphan records.
    pub fn domain_in_use(&self, domain: &str) -> bool {
        let suffix = format!("@{domain}");
        self.users.keys().chain(self.groups.keys()).chain(self.aliases.keys()).any(|k| k.ends_with(&suffix))
            || self.domain_aliases.values().any(|t| t == domain)
    }
}
