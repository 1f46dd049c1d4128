//! The commands that change the cluster state, their outcomes and their errors.
//!
//! A log entry carries a `ClusterRequest`: the proposer's clock reading and a
//! batch of commands. Each command succeeds or fails on its own; a failed
//! command changes nothing.

use serde::{Deserialize, Serialize};

use crate::address::AddressError;
use crate::state::spam::{AddressRule, KeywordRule, LearnEffect, RulePack, SpamReport};
use crate::state::{
    AntivirusNodeStatus, AttachmentLink, AttachmentRule, ConfigDocument, DkimKey, DomainLimits, ListRule,
    QuarantineEntry, SpamClass, UserOverrides,
};

/// One change to the cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    SetSetting {
        key: String,
        value: String,
    },
    ResetSetting {
        key: String,
    },

    AddDomain {
        name: String,
    },
    RemoveDomain {
        name: String,
    },
    AddDomainAlias {
        alias: String,
        target: String,
    },
    /// Accept mail for `domain` and relay it to its own MX; with
    /// `recipients`, only those addresses (all of them in `domain`).
    SetRelayDomain {
        domain: String,
        recipients: Vec<String>,
    },
    RemoveRelayDomain {
        domain: String,
    },
    RemoveDomainAlias {
        alias: String,
    },

    AddUser {
        address: String,
        display_name: String,
        password_hash: String,
    },
    SetPassword {
        address: String,
        password_hash: String,
    },
    SetUserEnabled {
        address: String,
        enabled: bool,
    },
    SetUserFrozen {
        address: String,
        frozen: bool,
    },
    /// A domain's defaults for its users' daily quota.
    SetDomainLimits {
        domain: String,
        limits: DomainLimits,
    },
    SetUserOverrides {
        address: String,
        overrides: UserOverrides,
    },
    RemoveUser {
        address: String,
    },

    AddGroup {
        address: String,
    },
    RemoveGroup {
        address: String,
    },
    AddGroupMember {
        group: String,
        member: String,
    },
    RemoveGroupMember {
        group: String,
        member: String,
    },

    AddAlias {
        address: String,
        targets: Vec<String>,
    },
    RemoveAlias {
        address: String,
    },

    /// Adds a rule (black, white, greylist or DNSBL); it gets the next rule id.
    AddListRule {
        rule: ListRule,
    },
    RemoveListRule {
        id: u64,
    },
    /// Adds many rules at once, all or nothing: every rule is checked first.
    /// Without `replace`, rules already present are skipped; with it, the
    /// imported rules replace all others (they get new ids).
    ImportRules {
        rules: Vec<ListRule>,
        replace: bool,
    },

    /// Adds an attachment filter rule; it gets the next attachment rule id.
    AddAttachmentRule {
        rule: AttachmentRule,
    },
    RemoveAttachmentRule {
        id: u64,
    },
    /// Adds many attachment rules, all or nothing, like `ImportRules`.
    ImportAttachmentRules {
        rules: Vec<AttachmentRule>,
        replace: bool,
    },

    /// Adds a DKIM key for a local domain. The first key of a domain (or one
    /// added with `activate`) becomes the active one.
    AddDkimKey {
        domain: String,
        selector: String,
        key: DkimKey,
    },
    /// Makes this selector the domain's signing key.
    ActivateDkimKey {
        domain: String,
        selector: String,
    },
    RemoveDkimKey {
        domain: String,
        selector: String,
    },

    /// Replaces settings, directory and rules with the document's, all or nothing.
    ImportConfig {
        document: Box<ConfigDocument>,
    },

    /// A delivery attempt for a greylist triplet (`network sender recipient`).
    /// When the triplet passes for the first time, its client network's
    /// pass count grows (the auto-whitelist).
    RecordGreylistAttempt {
        triplet: String,
        delay_ms: u64,
        retry_window_ms: u64,
        pass_ttl_ms: u64,
    },
    /// An operator lets a pending triplet pass now.
    AuthorizeGreylist {
        triplet: String,
        pass_ttl_ms: u64,
    },
    /// One recipient that does not exist, from `ip`. At `threshold` inside
    /// `window_ms`, the IP is blocked for `block_ms` and its count restarts.
    RecordUnknownRecipient {
        ip: String,
        threshold: u32,
        window_ms: u64,
        block_ms: u64,
    },
    /// One failed AUTH from `ip`. At `threshold` inside `window_ms`, the IP
    /// is blocked for `block_ms` on every node and its count restarts.
    RecordFailedLogin {
        ip: String,
        threshold: u32,
        window_ms: u64,
        block_ms: u64,
    },
    /// Charges an outbound message against a user's daily quota: `messages`
    /// is its external recipients, `bytes` its size times them. The limits
    /// are the committed ones (the user's, else the domain's, else
    /// `quota.*`), so they hold exactly; refused, with nothing charged, when
    /// the message would pass one.
    ChargeDailyQuota {
        user: String,
        messages: u32,
        bytes: u64,
    },
    /// Counts one message of an authenticated account for hijack detection
    /// (`hijack.*`, read here so the limit is the committed one): past
    /// `hijack.messages_max` in the window it is refused and, with
    /// `hijack.freeze`, the account is frozen on every node. `client` is
    /// `IP protocol`, remembered for the administrators' notice.
    IncrementHijack {
        user: String,
        client: String,
    },
    /// Records the token the administrators' notice carries (its SHA-256).
    IssueUnfreezeToken {
        user: String,
        token_sha256: String,
        expires_ms: u64,
    },
    /// Unfreezes the token's account and spends the token.
    RedeemUnfreezeToken {
        token_sha256: String,
    },
    BlockIp {
        ip: String,
        until_ms: u64,
        reason: String,
    },
    UnblockIp {
        ip: String,
    },
    /// Removes expired counters, as of the request's `at_ms`.
    ExpireCounters,

    /// Records a join token's hash, valid until `expires_ms`.
    IssueJoinToken {
        token_sha256: String,
        expires_ms: u64,
    },
    /// Consumes a join token and allocates the joining node's id.
    RedeemJoinToken {
        token_sha256: String,
        raft_addr: String,
        admin_addr: String,
    },
    /// Forgets a removed node's record.
    ForgetNode {
        node_id: u64,
    },
    /// Records a message held in quarantine on `entry.node_id` (idempotent).
    QuarantineAdd {
        id: String,
        entry: QuarantineEntry,
    },
    /// Asks the owning node to deliver the message to its recipients.
    QuarantineRelease {
        id: String,
    },
    /// Asks the owning node to drop the message.
    QuarantineDelete {
        id: String,
    },
    /// The owning node carried out the request (or no longer holds the message).
    QuarantineForget {
        id: String,
    },
    /// Every node runs its update command and reloads clamd (`antivirus update`).
    RequestAntivirusUpdate,
    /// The daily schedule's request for `day` (days since the epoch); only
    /// the first proposal of a day counts, whichever node makes it.
    ScheduleAntivirusUpdate {
        day: u64,
    },
    /// A node's clamd version and last update.
    ReportAntivirusStatus {
        node_id: u64,
        status: AntivirusNodeStatus,
    },
    /// Teaches the Bayes model one message: its digest (so it counts once)
    /// and its distinct token hashes, computed by the node that got it.
    LearnSpam {
        digest: u64,
        class: SpamClass,
        tokens: Vec<u64>,
    },
    /// Adds an address filter rule (spam / not spam by sender or recipient).
    AddSpamAddress {
        rule: AddressRule,
    },
    RemoveSpamAddress {
        id: u64,
    },
    /// Adds a keyword filter rule.
    AddSpamKeyword {
        rule: KeywordRule,
    },
    RemoveSpamKeyword {
        id: u64,
    },
    /// Local users wrote to these external addresses (auto-whitelist pairs,
    /// `spam::correspondent_key`); they stay until `expires_ms`.
    RecordCorrespondents {
        pairs: Vec<u64>,
        expires_ms: u64,
    },
    /// A user reports a message as spam or not spam; it waits for review.
    ReportSpam {
        report: SpamReport,
    },
    /// Approves reports: each is learned, then removed from the list.
    ApproveSpamReports {
        ids: Vec<u64>,
    },
    /// Discards a report without learning it.
    DiscardSpamReport {
        id: u64,
    },
    /// The daily schedule (`spam.learn_reports_at`) learns every pending
    /// report; only the first proposal of a day counts, whichever node makes it.
    LearnPendingReports {
        day: u64,
    },
    /// Stores SpamAssassin rule files (name, Latin-1 text), checked by the
    /// proposing node; `replace` drops the files imported before.
    ImportSpamRules {
        files: Vec<(String, String)>,
        replace: bool,
    },
    RemoveSpamRules {
        name: String,
    },
    /// Installs a rule pack fetched from `spam.rules_url` (validated whole by
    /// the fetching node); the same version again changes nothing.
    InstallSpamRulePack {
        pack: RulePack,
    },
    /// The daily rule update (`spam.update_at`): the first claim of a day wins,
    /// and only its node fetches.
    ClaimSpamRuleUpdate {
        day: u64,
    },
    /// Adds address and keyword filter rules, all or nothing (`spam filters import`).
    ImportSpamFilters {
        addresses: Vec<AddressRule>,
        keywords: Vec<KeywordRule>,
        replace: bool,
    },
    /// Indexes a linked attachment whose file `node_id` has stored; the
    /// link's token is known only by its SHA-256. Expired links go as the
    /// request's `at_ms` passes their time (and on `ExpireCounters`).
    AddAttachmentLink {
        token_sha256: String,
        link: AttachmentLink,
    },
    /// Withdraws a link before its time (`attachment-link revoke`).
    RemoveAttachmentLink {
        token_sha256: String,
    },
    /// Counts one download of a link (the download log's total).
    RecordAttachmentDownload {
        token_sha256: String,
    },
    /// A member left the cluster (`cluster remove-node`): it may not renew,
    /// and the copies of its queued messages may be taken over three
    /// quarters of `queue.takeover_after_s` after its last renewal.
    SpoolOwnerRemoved {
        node_id: u64,
    },
    /// The owner's delivery lease on its replicated messages, renewed at the
    /// request's time; the answer lists the holders that took over.
    RenewSpoolLease {
        node_id: u64,
    },
    /// `by` takes over the replicas it holds of `owner` (`queue_ids`, at
    /// most `TAKEOVER_IDS_MAX`): refused while the owner's lease is younger
    /// than `queue.takeover_after_s` (¾ of it for a removed owner), unless
    /// this takeover is already under way. Each message is granted to the first
    /// holder that claims it, so two never deliver one (a copy whose
    /// answer was lost, then sent to another member, is such a pair).
    TakeOverSpool {
        owner: u64,
        by: u64,
        queue_ids: Vec<String>,
    },
    /// One side of a takeover has done its part: the holder moved the
    /// replicas into its queue (`promoted`), or the owner dropped its copies.
    SettleSpoolTakeover {
        owner: u64,
        holder: u64,
        promoted: bool,
        acked: bool,
    },
}

/// What a successful command reports back to its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    Greylist(GreylistVerdict),
    /// The day's totals after the charge.
    QuotaCharged {
        messages: u32,
        bytes: u64,
    },
    /// The day's totals, unchanged, and the limits (0: none) in force.
    QuotaExceeded {
        messages: u32,
        bytes: u64,
        messages_max: u32,
        bytes_max: u64,
        /// The UTC day counted (days since the epoch).
        day: u64,
    },
    /// Counted, within the limit (0 when detection is off).
    HijackCount {
        count: u32,
    },
    /// Past the limit: the message is refused. `first` is true once per
    /// window (send the notice then); `frozen` whether the account is now.
    HijackDetected {
        count: u32,
        window_ms: u64,
        frozen: bool,
        first: bool,
        clients: Vec<String>,
    },
    Unfrozen {
        user: String,
    },
    Expired {
        removed: u64,
    },
    NodeAdmitted {
        node_id: u64,
    },
    RuleAdded {
        id: u64,
    },
    RulesImported {
        added: u64,
        skipped: u64,
    },
    /// `count` unknown recipients from the IP so far; `blocked` when this one
    /// reached the threshold and the IP is now blocked.
    FailedLoginCounted {
        count: u32,
        blocked: bool,
    },
    UnknownRecipientCounted {
        count: u32,
        blocked: bool,
    },
    /// The update generation now requested (none: already scheduled today).
    AntivirusUpdate {
        generation: Option<u64>,
    },
    Learned {
        effect: LearnEffect,
    },
    ReportsLearned {
        learned: u64,
    },
    /// Whether this node's claim of the day's rule update won.
    Claimed {
        claimed: bool,
    },
    /// The messages of a takeover this holder may deliver.
    SpoolClaims {
        granted: Vec<String>,
    },
    /// `taken_over_by`: holders that took over the owner's replicas and
    /// moved them into their queues (the owner drops its copies of them);
    /// `waiting_for`: holders that took over and have not moved them yet
    /// (the owner keeps its copies of them, and does not deliver them).
    SpoolLease {
        taken_over_by: Vec<u64>,
        waiting_for: Vec<u64>,
        /// (holder, queue id): what those holders claimed, whatever the
        /// owner thinks holds the message's copy (a copy whose answer was
        /// lost may sit on another member than the one recorded).
        claimed: Vec<(u64, String)>,
    },
}

/// The greylist decision for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GreylistVerdict {
    /// Try again after this instant (ms since the epoch).
    Deferred {
        retry_after_ms: u64,
    },
    Passed,
}

/// Why a command was refused. Every variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ApplyError {
    #[error("{field}: {source}")]
    BadAddress { field: String, source: AddressError },
    #[error("domain: {0} already exists")]
    DomainExists(String),
    #[error("domain: {0} is not a local domain")]
    UnknownDomain(String),
    #[error("domain: {0} still has users, groups, aliases or domain aliases")]
    DomainInUse(String),
    #[error("address: {0} is already used by a user, group or alias")]
    AddressInUse(String),
    #[error("address: no user {0}")]
    UnknownUser(String),
    #[error("group: no group {0}")]
    UnknownGroup(String),
    #[error("address: no alias {0}")]
    UnknownAlias(String),
    #[error("member: {0} is not a member")]
    NotAMember(String),
    #[error("targets: an alias needs at least one target")]
    NoTargets,
    #[error("password_hash: not an argon2id PHC string")]
    BadPasswordHash,
    #[error("display_name: longer than 200 bytes or has control characters")]
    BadDisplayName,
    #[error("key: unknown setting {0:?}")]
    UnknownSetting(String),
    #[error("{key}: {reason}")]
    InvalidSetting { key: String, reason: String },
    #[error("ip: {0:?} is not an IP address")]
    BadIp(String),
    #[error("triplet: empty")]
    EmptyTriplet,
    #[error("triplet: no pending triplet {0:?}")]
    UnknownTriplet(String),
    #[error("rules[{index}].{field}: {reason}")]
    BadImportedRule { index: usize, field: String, reason: String },
    #[error("version: import document version {0} is not supported")]
    UnsupportedDocument(u32),
    #[error("token: unknown, used or expired join token")]
    BadJoinToken,
    #[error("token: unknown, used or expired unfreeze token")]
    BadUnfreezeToken,
    #[error("node_id: no node {0}")]
    UnknownNode(u64),
    #[error("{field}: {reason}")]
    BadRule { field: String, reason: String },
    #[error("value: the same rule already exists as rule {0}")]
    RuleExists(u64),
    #[error("id: no rule {0}")]
    UnknownRule(u64),
    #[error("selector: {0:?} is not a DNS label (letters, digits, hyphens; dots between labels)")]
    BadSelector(String),
    #[error("selector: {domain} already has a key with selector {selector}")]
    SelectorExists { domain: String, selector: String },
    #[error("selector: {domain} has no key with selector {selector}")]
    UnknownSelector { domain: String, selector: String },
    #[error("key: {0}")]
    BadDkimKey(String),
    #[error("id: no quarantined message {0}")]
    UnknownQuarantined(String),
    #[error("id: no attachment link {0}")]
    UnknownAttachmentLink(String),
    #[error("attachment_links: the cluster holds {0} links, the most it keeps; wait for some to expire")]
    TooManyAttachmentLinks(usize),
    #[error("node_id: node {0} was removed from the cluster")]
    NodeRemoved(u64),
    #[error("owner: node {0} still holds its delivery lease")]
    SpoolOwnerAlive(u64),
    #[error("owner: no takeover of node {owner}'s replicas by node {holder}")]
    UnknownTakeover { owner: u64, holder: u64 },
}

impl ApplyError {
    /// The name of the input field at fault, for API and CLI messages.
    pub fn field(&self) -> String {
        use ApplyError::*;
        match self {
            BadAddress { field, .. } => field.clone(),
            DomainExists(_) | UnknownDomain(_) | DomainInUse(_) => "domain".into(),
            AddressInUse(_) | UnknownUser(_) | UnknownAlias(_) => "address".into(),
            UnknownGroup(_) => "group".into(),
            NotAMember(_) => "member".into(),
            NoTargets => "targets".into(),
            BadPasswordHash => "password".into(),
            BadDisplayName => "display_name".into(),
            UnknownSetting(_) => "key".into(),
            InvalidSetting { key, .. } => key.clone(),
            BadIp(_) => "ip".into(),
            EmptyTriplet | UnknownTriplet(_) => "triplet".into(),
            BadImportedRule { index, field, .. } => format!("rules[{index}].{field}"),
            UnsupportedDocument(_) => "version".into(),
            BadJoinToken | BadUnfreezeToken => "token".into(),
            UnknownNode(_) => "node_id".into(),
            BadRule { field, .. } => field.clone(),
            RuleExists(_) => "value".into(),
            UnknownRule(_) => "id".into(),
            BadSelector(_) | SelectorExists { .. } | UnknownSelector { .. } => "selector".into(),
            BadDkimKey(_) => "key".into(),
            UnknownQuarantined(_) | UnknownAttachmentLink(_) => "id".into(),
            TooManyAttachmentLinks(_) => "attachment_links".into(),
            NodeRemoved(_) => "node_id".into(),
            SpoolOwnerAlive(_) | UnknownTakeover { .. } => "owner".into(),
        }
    }

    /// True when the thing named does not exist (HTTP 404), as opposed to bad input.
    pub fn is_not_found(&self) -> bool {
        use ApplyError::*;
        matches!(
            self,
            UnknownDomain(_)
                | UnknownUser(_)
                | UnknownGroup(_)
                | UnknownAlias(_)
                | NotAMember(_)
                | UnknownNode(_)
                | UnknownRule(_)
                | UnknownTriplet(_)
                | UnknownSelector { .. }
                | UnknownQuarantined(_)
                | UnknownAttachmentLink(_)
        )
    }

    /// True when the input conflicts with existing state (HTTP 409).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            ApplyError::DomainExists(_)
                | ApplyError::AddressInUse(_)
                | ApplyError::DomainInUse(_)
                | ApplyError::RuleExists(_)
                | ApplyError::SelectorExists { .. }
        )
    }
}

/// The payload of one Raft log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterRequest {
    /// The proposer's wall clock when it sealed the batch (ms since the epoch):
    /// the only clock `apply` ever sees.
    pub at_ms: u64,
    pub commands: Vec<Command>,
}

/// What applying one log entry produced: one result per command, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterResponse {
    pub results: Vec<Result<Outcome, ApplyError>>,
}

impl std::fmt::Display for ClusterRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} command(s) at {}", self.commands.len(), self.at_ms)
    }
}
