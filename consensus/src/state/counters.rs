//! Counter tables that the SMTP path writes through the batching proposer:
//! greylist triplets, daily quotas, hijack counters and blocked IPs. Every
//! record carries the time it stops mattering; `Command::ExpireCounters`, proposed
//! by the leader with its clock, removes what has expired.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One greylist triplet (client network, sender, recipient).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreylistTriplet {
    pub first_seen_ms: u64,
    /// Set when a retry came after the delay: the triplet now passes.
    pub passed_ms: Option<u64>,
    /// A pending triplet expires at the end of its retry window; a passed one
    /// after the pass lifetime since its last use.
    pub expires_ms: u64,
    /// Attempts seen, for the operator's pending list.
    pub attempts: u32,
}

/// A client network whose triplets passed greylisting often enough that
/// its new triplets pass at once (postgrey's auto-whitelist of clients).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreylistClient {
    /// Triplets from this network that passed.
    pub passes: u32,
    /// The record is forgotten after the pass lifetime since the last pass.
    pub expires_ms: u64,
}

/// Recipients that do not exist, counted per client IP for intrusion
/// prevention (a dictionary attack).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownRecipients {
    pub window_start_ms: u64,
    pub count: u32,
    pub expires_ms: u64,
}

/// A user's outbound use for one UTC day: each external recipient of a
/// message counts one message and the message's size in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DailyQuota {
    /// Days since the Unix epoch (UTC).
    pub day: u64,
    pub messages: u32,
    pub bytes: u64,
}

/// An authenticated account's messages in the current hijack-detection
/// window (`hijack.*`), and where they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HijackCounter {
    pub window_start_ms: u64,
    /// When this window ends (its start plus `hijack.window_s`).
    pub expires_ms: u64,
    pub count: u32,
    /// `IP protocol` of the sessions counted, at most `HIJACK_CLIENTS_MAX`.
    pub clients: std::collections::BTreeSet<String>,
    /// The limit was reached in this window (the notice went out once).
    pub detected: bool,
}

/// Distinct clients an account's hijack counter remembers for the notice.
pub const HIJACK_CLIENTS_MAX: usize = 16;

/// A single-use token that unfreezes an account frozen by hijack detection,
/// sent to the administrators in the notice; stored as its SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnfreezeToken {
    pub user: String,
    pub expires_ms: u64,
}

/// An IP address refused by every node until `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockedIp {
    pub until_ms: u64,
    pub reason: String,
}

/// All counter tables.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub greylist: BTreeMap<String, GreylistTriplet>,
    pub daily_quota: BTreeMap<String, DailyQuota>,
    pub hijack: BTreeMap<String, HijackCounter>,
    pub blocked_ips: BTreeMap<String, BlockedIp>,
    #[serde(default)]
    pub greylist_clients: BTreeMap<String, GreylistClient>,
    #[serde(default)]
    pub unknown_recipients: BTreeMap<String, UnknownRecipients>,
    /// Failed AUTH per client IP (same record as unknown recipients).
    #[serde(default)]
    pub failed_logins: BTreeMap<String, UnknownRecipients>,
    /// Unfreeze tokens by their SHA-256 (hex).
    #[serde(default)]
    pub unfreeze_tokens: BTreeMap<String, UnfreezeToken>,
}

pub const DAY_MS: u64 = 24 * 3600 * 1000;

/// The daily jobs' rule: the first proposal for a day wins, whichever node
/// makes it; true when `day` is later than the one done (which it records).
pub fn first_of_day(done_day: &mut u64, day: u64) -> bool {
    let first = day > *done_day;
    if first {
        *done_day = day;
    }
    first
}

impl Counters {
    /// Drops every record whose time is up; returns how many went.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let before = self.len();
        self.greylist.retain(|_, t| t.expires_ms > now_ms);
        let today = now_ms / DAY_MS;
        self.daily_quota.retain(|_, q| q.day >= today);
        self.blocked_ips.retain(|_, b| b.until_ms > now_ms);
        self.greylist_clients.retain(|_, c| c.expires_ms > now_ms);
        self.unknown_recipients.retain(|_, c| c.expires_ms > now_ms);
        self.hijack.retain(|_, c| c.expires_ms > now_ms);
        self.failed_logins.retain(|_, c| c.expires_ms > now_ms);
        self.unfreeze_tokens.retain(|_, t| t.expires_ms > now_ms);
        before - self.len()
    }

    pub fn len(&self) -> usize {
        self.greylist.len()
            + self.daily_quota.len()
            + self.hijack.len()
            + self.blocked_ips.len()
            + self.greylist_clients.len()
            + self.unknown_recipients.len()
            + self.unfreeze_tokens.len()
            + self.failed_logins.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
