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
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the node; on an empty data directory, first create a single-node cluster.
    Serve,
    /// Join an existing cluster with a token from `cluster add-node`, then run.
    Join {
        #[arg(long)]
        token: String,
        /// Raft address (host:port) of any current member.
        #[arg(long)]
        seed: String,
    },
    #[command(subcommand)]
    Cluster(ClusterCmd),
    #[command(subcommand)]
    Domain(DomainCmd),
    #[command(subcommand)]
    User(UserCmd),
    #[command(subcommand)]
    Group(GroupCmd),
    #[command(subcommand)]
    Alias(AliasCmd),
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Black and white lists (replicated: in force on every node).
    #[command(subcommand)]
    Rules(RulesCmd),
    /// This node's delivery queue (postqueue/postsuper).
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Print the whole configuration (settings, directory, rules) as one JSON document.
    Export {
        /// Write to this file instead of standard output.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
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
    RemoveNode { node_id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum DomainCmd {
    Add {
        name: String,
    },
    List,
    Remove {
        name: String,
    },
    /// Make ALIAS a domain alias of the local domain TARGET.
    AliasAdd {
        alias: String,
        target: String,
    },
    AliasRemove {
        alias: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    Add {
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
        #[arg(long, default_value = "")]
        name: String,
    },
    List,
    Passwd {
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    Disable {
        address: String,
    },
    Enable {
        address: String,
    },
    /// Stop the account from sending (what hijack detection does on its own).
    Freeze {
        address: String,
    },
    /// Let a frozen account send again.
    Unfreeze {
        address: String,
    },
    /// Set the user's own limits; a limit not given returns to the cluster default.
    Limits {
        address: String,
        #[arg(long)]
        mailbox_bytes_max: Option<u64>,
        #[arg(long)]
        daily_messages_max: Option<u32>,
        #[arg(long)]
        daily_recipients_max: Option<u32>,
    },
    Remove {
        address: String,
    },
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
    Add { address: String },
    List,
    Remove { address: String },
    AddMember { group: String, member: String },
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
    List,
    Remove {
        address: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Show one setting, or all with their defaults.
    Get {
        key: Option<String>,
    },
    Set {
        key: String,
        value: String,
    },
    /// Return a setting to its default.
    Reset {
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Every queued message with its recipients' state (postqueue -p).
    List,
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
    /// Every black and white list rule with its id.
    List,
    /// Add a rule, e.g. `rules add --list black --kind subnet 192.0.2.0/24`.
    Add {
        #[arg(long, value_parser = ["black", "white"])]
        list: String,
        #[arg(long, value_parser = ["ip", "subnet", "sender", "recipient", "sender-domain"])]
        kind: String,
        /// The IP, network (CIDR or address/mask), address or domain.
        value: String,
        /// What a blacklist match does.
        #[arg(long, default_value = "reject", value_parser = ["reject", "discard"])]
        action: String,
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Remove the rule with this id.
    Remove { id: u64 },
}
