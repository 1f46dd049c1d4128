//! Argument definitions (clap). docs/cli.md describes the same commands.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about = "Gatehouse clustered mail server")]
pub struct Cli {
    /// Configuration file (TOML); embedded defaults when absent.
    #[arg(long, short = 'c', global = true, env = "GATEHOUSE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory; overrides `data_dir` from the configuration.
    #[arg(long, global = true, env = "GATEHOUSE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Read the admin token from this file instead of `<data_dir>/admin.token`
    /// (for scripts that run as another user, such as a Dovecot sieve pipe).
    #[arg(long, global = true, env = "GATEHOUSE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node; on an empty data directory, first create a single-node cluster.
    Serve,
    /// Join an existing cluster with a token from `cluster add-node`, then run.
    Join {
        /// The token `cluster add-node` printed.
        #[arg(long)]
        token: String,
        /// Raft address (host:port) of any current member.
        #[arg(long)]
        seed: String,
    },
    /// Cluster membership: create, status, add and remove nodes.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Local domains and domain aliases (replicated).
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Mail accounts: passwords, enable/disable, freeze, limits (replicated).
    #[command(subcommand)]
    User(UserCmd),
    /// Distribution groups: an address that delivers to its members (replicated).
    #[command(subcommand)]
    Group(GroupCmd),
    /// Address aliases: an address that forwards to other addresses (replicated).
    #[command(subcommand)]
    Alias(AliasCmd),
    /// Cluster-wide settings (replicated): show, set, reset to default.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Black and white lists (replicated: in force on every node).
    #[command(subcommand)]
    Rules(RulesCmd),
    /// The content stage: attachment filter rules (replicated).
    #[command(subcommand)]
    Content(ContentCmd),
    /// Antivirus: the virus notice template (replicated), this node's clamd.
    #[command(subcommand)]
    Antivirus(AntivirusCmd),
    /// The spam engine: check messages, teach the cluster's model, its status.
    #[command(subcommand)]
    Spam(SpamCmd),
    /// Quarantined messages of the whole cluster: list, show, release, delete.
    #[command(subcommand)]
    Quarantine(QuarantineCmd),
    /// This node's delivery queue (postqueue/postsuper).
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Greylist triplets: list them, let a pending one pass.
    #[command(subcommand)]
    Greylist(GreylistCmd),
    /// Client IPs blocked on every node (intrusion prevention).
    #[command(subcommand)]
    Blocked(BlockedCmd),
    /// The daily outbound quota: today's use per user (MailPlus "Outbound Usage").
    #[command(subcommand)]
    Quota(QuotaCmd),
    /// Linked attachments of outbound mail: list them with their downloads, revoke one.
    #[command(subcommand)]
    AttachmentLink(AttachmentLinkCmd),
    /// Inbound relay domains: mail accepted for other servers and relayed to their MX (replicated).
    #[command(subcommand)]
    RelayDomain(RelayDomainCmd),
    /// DKIM signing keys of the local domains (replicated: every node signs).
    #[command(subcommand)]
    Dkim(DkimCmd),
    /// DMARC helpers.
    #[command(subcommand)]
    Dmarc(DmarcCmd),
    /// Dovecot's checkpassword program: checks the login on fd 3 against the
    /// cluster's accounts, then runs REPLY (Dovecot's checkpassword-reply).
    /// Exit 1: wrong login, disabled or frozen; 111: node unreachable.
    DovecotCheckpassword {
        /// The program Dovecot passes (checkpassword-reply) and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        reply: Vec<String>,
    },
    /// Rehearse failures on a simulated cluster (deterministic: a seed replays exactly).
    Simulate {
        /// The run to replay or explore.
        #[arg(long, default_value_t = 1, conflicts_with = "seeds")]
        seed: u64,
        /// A sweep instead of one run: `A..B` (B excluded). Prints one line per failing seed.
        #[arg(long)]
        seeds: Option<String>,
        /// Cluster size, 3 to 7.
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(3..=7))]
        nodes: u64,
        /// Faults to inject: crash, partition, loss, skew, slow-disk, snapshot-crash, membership, takeover, disk-loss, all, none (comma-separated).
        #[arg(long, default_value = "crash,partition,loss")]
        faults: String,
        /// Steps of 50 ms of virtual time before the faults stop.
        #[arg(long, default_value_t = 200)]
        steps: u32,
    },
    /// Print the whole configuration (settings, directory, rules) as one JSON document.
    Export {
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Include secret settings (relay.smarthost_password); left out otherwise.
        #[arg(long)]
        secrets: bool,
    },
    /// Replace the whole configuration with a document from `export`, all or nothing.
    Import { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Create a new cluster in the data directory (CA, certificate, first node) and stop.
    Init,
    /// Members, roles, leader, term, applied index and lag per node.
    Status,
    /// Print a one-time join token for a new node.
    AddNode,
    /// Remove a member; removing the leader makes it step down first.
    RemoveNode {
        /// The member's id, as `cluster status` shows it.
        node_id: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    /// Accept mail for NAME from now on.
    Add { name: String },
    /// Every local domain and domain alias.
    List,
    /// Stop accepting mail for NAME (refused while users, groups or aliases remain in it).
    Remove { name: String },
    /// Make ALIAS a domain alias of the local domain TARGET.
    AliasAdd { alias: String, target: String },
    /// Remove the domain alias ALIAS.
    AliasRemove { alias: String },
    /// Set the daily quota of the domain's users (over `quota.*`; a user's own
    /// limit wins); a limit not given returns to the cluster default, 0 is none.
    Limits {
        name: String,
        /// Messages per UTC day to external recipients, each recipient counting one.
        #[arg(long)]
        daily_messages_max: Option<u32>,
        /// Bytes per UTC day to external recipients, a message's size once per recipient.
        #[arg(long)]
        daily_bytes_max: Option<u64>,
        /// Link attachments of at least this many bytes in the users' outbound mail (0: never).
        #[arg(long)]
        attachment_link_bytes_min: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum RelayDomainCmd {
    /// Accept mail for DOMAIN from anyone and relay it to DOMAIN's own MX
    /// (looked up through dns.nameservers); again to change its recipient list.
    Add {
        domain: String,
        /// Only these addresses (comma-separated, all in DOMAIN); the rest get 550 5.1.1.
        #[arg(long, value_delimiter = ',')]
        recipients: Vec<String>,
    },
    /// Every relay domain with its recipient list (empty: any address).
    List,
    /// Stop accepting mail for DOMAIN.
    Remove { domain: String },
}

#[derive(Debug, Subcommand)]
pub enum AttachmentLinkCmd {
    /// Live links, newest first: id, sender, file, size, owning node, expiry, downloads.
    List {
        /// Only links this user made.
        #[arg(long)]
        user: Option<String>,
    },
    /// Withdraw a link at once (ID: its first characters from `list`, at least 8).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum QuotaCmd {
    /// Today's messages and bytes to external recipients per user, with their limits and the reset time.
    Usage {
        /// Only this user (shown even with nothing sent).
        user: Option<String>,
        /// Order: messages or bytes (most first), or user.
        #[arg(long, default_value = "messages", value_parser = ["messages", "bytes", "user"])]
        sort: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create an account: ADDRESS in a local domain, with a password.
    Add {
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Every account: address, name, enabled, frozen, own limits.
    List,
    /// Change an account's password.
    Passwd {
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// The account can no longer log in and receives no mail (unknown recipient).
    Disable { address: String },
    /// Undo `disable`.
    Enable { address: String },
    /// The account may not log in (AUTH gets 525 5.7.13) nor send; it still receives.
    Freeze { address: String },
    /// Let a frozen account log in and send again.
    Unfreeze { address: String },
    /// Set the user's own limits; a limit not given returns to the cluster default.
    Limits {
        address: String,
        #[arg(long)]
        mailbox_bytes_max: Option<u64>,
        /// Messages per UTC day to external recipients, each recipient counting one (0: none).
        #[arg(long)]
        daily_messages_max: Option<u32>,
        /// Bytes per UTC day to external recipients, a message's size once per recipient (0: none).
        #[arg(long)]
        daily_bytes_max: Option<u64>,
        /// Link attachments of at least this many bytes in the user's outbound mail (0: never).
        #[arg(long)]
        attachment_link_bytes_min: Option<u64>,
    },
    /// Delete the account (its Maildir stays on disk).
    Remove { address: String },
}

#[derive(Debug, clap::Args)]
pub struct PasswordArgs {
    /// The password (visible in the process list; prefer --password-stdin).
    #[arg(long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Create an empty group at ADDRESS (a local domain).
    Add { address: String },
    /// Every group with its members.
    List,
    /// Delete a group.
    Remove { address: String },
    /// Mail to GROUP also goes to MEMBER.
    AddMember { group: String, member: String },
    /// MEMBER no longer gets GROUP's mail.
    RemoveMember { group: String, member: String },
}

#[derive(Debug, Subcommand)]
pub enum AliasCmd {
    /// Mail to ADDRESS goes to every TARGET.
    Add {
        address: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Every alias with its targets.
    List,
    /// Delete an alias.
    Remove { address: String },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Show one setting, or all with their defaults.
    Get { key: Option<String> },
    /// Set KEY to VALUE on every node (checked against the key's type first).
    Set {
        key: String,
        /// May be negative (`spam.tag_score -1`).
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Return a setting to its default.
    Reset { key: String },
}

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Every queued message with its recipients' state (postqueue -p).
    List,
    /// The copies this node keeps of other members' queued messages, by owner (queue.replicas = 2).
    Replicas,
    /// One message: envelope, state and content (postcat -q).
    Show { queue_id: String },
    /// Attempt delivery now: one message, or all when no id is given (postqueue -f / -i).
    Flush { queue_id: Option<String> },
    /// Stop delivery attempts; ALL for every message (postsuper -h).
    Hold { queue_id: String },
    /// Resume delivery of held messages; ALL for every message (postsuper -H).
    Release { queue_id: String },
    /// Remove without delivering or bouncing; ALL for every message (postsuper -d).
    Delete { queue_id: String },
}

#[derive(Debug, Subcommand)]
pub enum RulesCmd {
    /// Every rule (black, white, greylist, DNSBL) with its id.
    List,
    /// Add a rule, e.g. `rules add --list black --kind subnet 192.0.2.0/24`,
    /// `rules add --list greylist --kind sender-domain partner.example --action never`,
    /// `rules add --list dnsbl zen.example.org --score 2 --reply 127.0.0.2-127.0.0.11`.
    Add {
        #[arg(long, value_parser = ["black", "white", "greylist", "dnsbl"])]
        list: String,
        /// Required except for DNSBL zones.
        #[arg(long, value_parser = ["ip", "subnet", "sender", "recipient", "sender-domain", "zone"])]
        kind: Option<String>,
        /// The IP, network (CIDR or address/mask), address, domain or DNSBL zone.
        value: String,
        /// black: reject (default) or discard; greylist: greylist (default), never or always.
        #[arg(long, value_parser = ["reject", "discard", "greylist", "never", "always"])]
        action: Option<String>,
        /// DNSBL: what a listing adds to the client's score (default 1).
        #[arg(long)]
        score: Option<u32>,
        /// DNSBL: the answers that count, `127.0.0.2` or `127.0.0.2-127.0.0.11` (default: any).
        #[arg(long)]
        reply: Option<String>,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Remove the rule with this id.
    Remove { id: u64 },
    /// Print every rule as a JSON array, the format `rules import` reads.
    Export(ExportRules),
    /// Add the rules of a JSON array (from `rules export`), all or nothing;
    /// rules already present are skipped.
    Import(ImportRules),
}

/// Where `... export` writes a rule list.
#[derive(Debug, clap::Args)]
pub struct ExportRules {
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o')]
    pub output: Option<PathBuf>,
}

/// What `... import` reads.
#[derive(Debug, clap::Args)]
pub struct ImportRules {
    pub file: PathBuf,
    /// Replace every existing rule with the file's.
    #[arg(long)]
    pub replace: bool,
}

#[derive(Debug, Subcommand)]
pub enum ContentCmd {
    /// Attachment filter rules: file types by extension or by content.
    #[command(subcommand)]
    Filter(FilterCmd),
}

#[derive(Debug, Subcommand)]
pub enum FilterCmd {
    /// Every attachment rule with its id.
    List,
    /// Add a rule, e.g. `content filter add --match extension exe`,
    /// `content filter add --match type executable --action quarantine`.
    Add {
        /// `extension`: the file name's extension; `type`: what the file's bytes
        /// are (`exe`, `elf`, `zip`, `pdf`..., or `executable` for any program).
        #[arg(long = "match", value_parser = ["extension", "type"])]
        matches: String,
        /// The extension (without the dot) or the type.
        value: String,
        /// reject: refuse with 554 5.7.1; quarantine: hold; remove: deliver without the file.
        #[arg(long, value_parser = ["reject", "quarantine", "remove"], default_value = "reject")]
        action: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Remove the rule with this id.
    Remove { id: u64 },
    /// Print every rule as a JSON array, the format `content filter import` reads.
    Export(ExportRules),
    /// Add the rules of a JSON array (from `export`), all or nothing; rules
    /// already present are skipped.
    Import(ImportRules),
}

#[derive(Debug, Subcommand)]
pub enum AntivirusCmd {
    /// The notice sent about a virus (antivirus.notify_template).
    #[command(subcommand)]
    Template(TemplateCmd),
    /// Every node's clamd: engine and signature versions, last update.
    Status,
    /// Every node runs its update command (node file `antivirus.update_command`) and reloads clamd now.
    Update,
}

#[derive(Debug, Subcommand)]
pub enum TemplateCmd {
    /// Print the template.
    Get,
    /// Replace the template with a file's text (`-`: standard input). First
    /// line `Subject: ...`; {virus}, {sender}, {recipient}, {subject}, {date},
    /// {queue_id} and {action} are filled in.
    Set { file: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum SpamCmd {
    /// Score messages with the live model (like rspamc): files, directories
    /// (Maildirs) and mbox files; standard input when none is given.
    Check { paths: Vec<PathBuf> },
    /// Teach the cluster's Bayes model (like sa-learn); every node learns it.
    Learn {
        #[arg(long, conflicts_with = "ham", required_unless_present = "ham")]
        spam: bool,
        #[arg(long)]
        ham: bool,
        paths: Vec<PathBuf>,
    },
    /// The model (messages learned, tokens, whether Bayes votes yet), the
    /// imported rule files and the rule pack's version.
    Status,
    /// Report messages as spam or not spam for USER; they wait for review (`spam reports`).
    Report {
        #[arg(long, conflicts_with = "ham", required_unless_present = "ham")]
        spam: bool,
        #[arg(long)]
        ham: bool,
        /// The local user who reports.
        #[arg(long)]
        user: String,
        paths: Vec<PathBuf>,
    },
    /// Users' reports waiting for review: list, approve (learn), discard.
    #[command(subcommand)]
    Reports(SpamReportsCmd),
    /// The address filter: spam / not spam by sender or recipient (not spam wins).
    #[command(subcommand)]
    Addresses(SpamAddressCmd),
    /// Both filters (addresses and keywords) as one JSON document: export, import.
    #[command(subcommand)]
    Filters(SpamFiltersCmd),
    /// The keyword filter: scored words and phrases; a blacklisted one refuses the message.
    #[command(subcommand)]
    Keywords(SpamKeywordCmd),
    /// SpamAssassin rule files (.cf): the compiled rules, import, export, remove.
    #[command(subcommand)]
    Rules(SpamRulesCmd),
    /// Fetch the rule pack from spam.rules_url now; every node installs it.
    Update,
}

#[derive(Debug, Subcommand)]
pub enum SpamRulesCmd {
    /// Every compiled rule (name, kind, score, file, description), then every
    /// rule that did not compile, with why.
    List {
        /// Also the `__` sub-rules, which only feed meta rules.
        #[arg(long)]
        all: bool,
    },
    /// Import SpamAssassin rule files (`/usr/share/spamassassin/*.cf`); a file
    /// of the same name is replaced; rules that cannot be compiled are listed.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Drop every file imported before.
        #[arg(long)]
        replace: bool,
    },
    /// Print the imported files as they were imported (all, or one with --name).
    Export {
        #[arg(long)]
        name: Option<String>,
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Remove an imported rule file by its name.
    Remove { name: String },
}

#[derive(Debug, Subcommand)]
pub enum SpamReportsCmd {
    /// Every report waiting: id, user, spam or ham, sender, subject.
    List,
    /// Learn these reports (or all with --all) into the cluster's model.
    Approve {
        ids: Vec<u64>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Drop a report without learning it.
    Discard { id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum SpamFiltersCmd {
    /// Print the address and keyword rules as one JSON document (the format `import` reads).
    Export(ExportRules),
    /// Add the document's rules, all or nothing; rules already present are skipped.
    Import(ImportRules),
}

#[derive(Debug, Subcommand)]
pub enum SpamAddressCmd {
    /// Every address rule with its id.
    List,
    /// `spam addresses add --sender @promo.example --spam`, `... --recipient ceo@example.com --not-spam`.
    Add {
        #[arg(long, conflicts_with = "recipient", required_unless_present = "recipient")]
        sender: Option<String>,
        #[arg(long)]
        recipient: Option<String>,
        #[arg(long, conflicts_with = "not_spam", required_unless_present = "not_spam")]
        spam: bool,
        #[arg(long)]
        not_spam: bool,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Remove the address rule with this id.
    Remove { id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum SpamKeywordCmd {
    /// Every keyword rule with its id.
    List,
    /// `spam keywords add "cheap pills" --score 3`, `... "wire transfer" --blacklisted`.
    Add {
        phrase: String,
        /// Added per message that contains it (negative lowers the score).
        #[arg(long, default_value_t = 0.0, allow_hyphen_values = true)]
        score: f64,
        /// Refuse every message that contains it.
        #[arg(long)]
        blacklisted: bool,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Remove the keyword rule with this id.
    Remove { id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCmd {
    /// Every quarantined message in the cluster, whichever node holds it.
    List {
        /// Only messages for this recipient.
        #[arg(long)]
        recipient: Option<String>,
        /// Only messages held for this reason.
        #[arg(long, value_parser = ["virus", "attachment", "content", "spam"])]
        reason: Option<String>,
    },
    /// One message: its record and headers; the whole text on the node that holds it.
    Show { id: String },
    /// Deliver it to its original recipients, without the check that held it.
    Release { id: String },
    /// Drop it, without delivery or bounce.
    Delete { id: String },
}

#[derive(Debug, Subcommand)]
pub enum GreylistCmd {
    /// Triplets still waiting for their retry.
    Pending,
    /// Every triplet, pending and passed.
    List,
    /// Let a pending triplet pass now: `greylist authorize 192.0.2.0/24 from@example.org to@example.com`.
    Authorize {
        /// The triplet as `list` prints it: network, sender, recipient.
        #[arg(num_args = 1..=3, required = true)]
        triplet: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum BlockedCmd {
    /// Blocked IPs, until when and why.
    List,
    /// Block an IP on every node.
    Add {
        ip: String,
        /// For how long, in seconds (default: `intrusion.block_s`).
        #[arg(long)]
        seconds: Option<u64>,
        #[arg(long, default_value = "blocked by the operator")]
        reason: String,
    },
    /// Lift a block.
    Remove { ip: String },
}

#[derive(Debug, Subcommand)]
pub enum DkimCmd {
    /// Make a key pair for DOMAIN and print the TXT record to publish.
    Generate {
        domain: String,
        /// Default: the first free of gh1, gh2, ...
        #[arg(long)]
        selector: Option<String>,
        #[arg(long, default_value = "rsa-2048", value_parser = ["rsa-2048", "ed25519"])]
        algorithm: String,
        /// Sign with the new key at once (the first key of a domain always is active).
        #[arg(long)]
        activate: bool,
    },
    /// Every key: domain, selector, algorithm, active, and its DNS record.
    List,
    /// Sign DOMAIN's mail with SELECTOR from now on (publish its record first).
    Activate { domain: String, selector: String },
    /// Delete a key (after rotation; keep its DNS record until mail signed with it has arrived).
    Remove { domain: String, selector: String },
}

#[derive(Debug, Subcommand)]
pub enum DmarcCmd {
    /// Print a suggested DMARC TXT record for DOMAIN (computed here; nothing is sent).
    Record {
        domain: String,
        #[arg(long, default_value = "none", value_parser = ["none", "quarantine", "reject"])]
        policy: String,
        /// Where aggregate reports go (default: mailto:dmarc-reports@DOMAIN).
        #[arg(long)]
        rua: Option<String>,
        /// Share of failing mail the policy applies to.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
        pct: u8,
    },
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every command and subcommand has a one-line help (`gatehouse user --help`
    /// lists them with it).
    #[test]
    fn every_command_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let path = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() {
                    missing.push(path.clone());
                }
                walk(sub, &path, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "gatehouse", &mut missing);
        assert!(missing.is_empty(), "commands without help: {missing:?}");
        Cli::command().debug_assert();
    }
}
