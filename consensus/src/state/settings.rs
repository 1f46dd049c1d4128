//! Cluster-wide settings: a fixed table of known keys, each with a type, a
//! default and a sentence of documentation. Only values an operator set are
//! stored; reads fall back to the default, so adding a key in a later release
//! needs no migration.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

use crate::command::ApplyError;

/// The type of a setting's value, with its bounds.
#[derive(Debug, Clone, Copy)]
pub enum SettingKind {
    Bool,
    Integer {
        min: i64,
        max: i64,
    },
    Text {
        bytes_max: usize,
    },
    Hostname,
    /// A comma-separated list of networks: CIDR (`10.0.0.0/8`) or single addresses.
    Networks,
    /// Several lines of text (a notification template): newlines and tabs
    /// allowed, other control characters not.
    Template {
        bytes_max: usize,
    },
    /// `HH:MM` (UTC), or empty for never.
    TimeOfDay,
    /// An `https://`, `http://` or `file://` URL, or empty for none.
    Url,
    /// DNS list zones with scores: `zone=score,zone=score`, or empty.
    ZoneScores,
    /// A spam score: a decimal number with up to two decimals.
    Score {
        min: f64,
        max: f64,
    },
    /// One word out of a fixed set.
    Choice {
        options: &'static [&'static str],
    },
}

/// One known setting.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    pub key: &'static str,
    pub kind: SettingKind,
    pub default: &'static str,
    pub doc: &'static str,
}

/// What a dangerous-content check does when it matches.
pub const CONTENT_ACTIONS: &[&str] = &["off", "tag", "quarantine", "reject"];

/// The default virus notice.
pub const DEFAULT_VIRUS_NOTICE: &str = "Subject: Virus found in a message to you\n\nA message from {sender} to {recipient} with the subject \"{subject}\",\nreceived {date} (queue id {queue_id}), carried the virus {virus}.\nIt was {action}.\n";

/// Every setting the cluster knows. docs/configuration.md lists the same table.
pub const SETTING_SPECS: &[SettingSpec] = &[
    SettingSpec {
        key: "smtp.hostname",
        kind: SettingKind::Hostname,
        default: "mail.gatehouse.invalid",
        doc: "Fully qualified host name announced in the banner, EHLO reply and Received headers.",
    },
    SettingSpec {
        key: "smtp.banner",
        kind: SettingKind::Text { bytes_max: 200 },
        default: "ESMTP Gatehouse",
        doc: "Text after the host name in the 220 greeting.",
    },
    SettingSpec {
        key: "smtp.primary_domain",
        kind: SettingKind::Text { bytes_max: 255 },
        default: "",
        doc: "Domain used for unqualified addresses; empty means none.",
    },
    SettingSpec {
        key: "smtp.sender_must_match_login",
        kind: SettingKind::Bool,
        default: "true",
        doc: "An authenticated client may only send with its own address as envelope sender.",
    },
    SettingSpec {
        key: "smtp.trusted_networks",
        kind: SettingKind::Networks,
        default: "",
        doc: "Clients in these networks may relay without AUTH (Postfix mynetworks). Empty by default: behind a load balancer every client can look local.",
    },
    SettingSpec {
        key: "smtp.skip_auth_local_network",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Clients in smtp.trusted_networks may send on the submission ports without logging in (MailPlus: skip authentication for the local network).",
    },
    SettingSpec {
        key: "queue.lifetime_s",
        kind: SettingKind::Integer { min: 60, max: 30 * 24 * 3600 },
        default: "432000",
        doc: "How long a message may stay queued before it is bounced as undeliverable (5 days, Postfix maximal_queue_lifetime).",
    },
    SettingSpec {
        key: "queue.min_backoff_s",
        kind: SettingKind::Integer { min: 1, max: 24 * 3600 },
        default: "300",
        doc: "Wait before the first retry of a deferred message; doubles per attempt.",
    },
    SettingSpec {
        key: "queue.max_backoff_s",
        kind: SettingKind::Integer { min: 1, max: 24 * 3600 },
        default: "4000",
        doc: "Longest wait between two delivery attempts.",
    },
    SettingSpec {
        key: "queue.active_messages_max",
        kind: SettingKind::Integer { min: 1, max: 1_000_000 },
        default: "1000",
        doc: "Messages in a delivery attempt at once on each node (their bodies are in memory meanwhile); the rest wait their turn in the spool (Postfix qmgr_message_active_limit).",
    },
    SettingSpec {
        key: "queue.bounce_size_limit",
        kind: SettingKind::Integer { min: 0, max: 10 * 1024 * 1024 },
        default: "50000",
        doc: "A bounce carries the whole original message up to this many bytes, else only its headers.",
    },
    SettingSpec {
        key: "relay.smarthost",
        kind: SettingKind::Text { bytes_max: 255 },
        default: "",
        doc: "Send all remote mail to this host[:port] instead of looking up MX records (Postfix relayhost); empty means MX delivery.",
    },
    SettingSpec {
        key: "relay.port",
        kind: SettingKind::Integer { min: 1, max: 65535 },
        default: "25",
        doc: "TCP port of the MX hosts remote mail is delivered to.",
    },
    SettingSpec {
        key: "relay.connect_timeout_s",
        kind: SettingKind::Integer { min: 1, max: 600 },
        default: "30",
        doc: "How long to wait for a remote server to accept the TCP connection.",
    },
    SettingSpec {
        key: "relay.command_timeout_s",
        kind: SettingKind::Integer { min: 1, max: 3600 },
        default: "300",
        doc: "How long to wait for each reply of a remote server (greeting, EHLO, MAIL, RCPT, DATA).",
    },
    SettingSpec {
        key: "relay.destination_concurrency_max",
        kind: SettingKind::Integer { min: 1, max: 1000 },
        default: "20",
        doc: "Deliveries to one destination domain (or to the smarthost) at once on each node, within smtp.relay_connections_max (Postfix default_destination_concurrency_limit).",
    },
    SettingSpec {
        key: "cluster.join_token_ttl_s",
        kind: SettingKind::Integer { min: 60, max: 7 * 24 * 3600 },
        default: "3600",
        doc: "How long a join token printed by `cluster add-node` stays valid.",
    },
    SettingSpec {
        key: "greylist.delay_s",
        kind: SettingKind::Integer { min: 0, max: 24 * 3600 },
        default: "300",
        doc: "How long a new greylist triplet must wait before a retry passes.",
    },
    SettingSpec {
        key: "greylist.retry_window_s",
        kind: SettingKind::Integer { min: 60, max: 7 * 24 * 3600 },
        default: "86400",
        doc: "How long after the first attempt a retry may come and still pass.",
    },
    SettingSpec {
        key: "greylist.pass_ttl_s",
        kind: SettingKind::Integer { min: 3600, max: 365 * 24 * 3600 },
        default: "3110400",
        doc: "How long a passed triplet stays whitelisted (36 days).",
    },
    SettingSpec {
        key: "greylist.default_action",
        kind: SettingKind::Choice { options: &["never", "greylist"] },
        default: "never",
        doc: "Whether clients no greylist rule names are greylisted. Off by default, as in MailPlus and Kerio: greylisting delays first mail by minutes.",
    },
    SettingSpec {
        key: "greylist.auto_whitelist_passes",
        kind: SettingKind::Integer { min: 0, max: 1000 },
        default: "5",
        doc: "After this many passed triplets, a client network's new triplets pass at once (postgrey --auto-whitelist-clients); 0 turns the auto-whitelist off.",
    },
    SettingSpec {
        key: "smtp.proxy_peers",
        kind: SettingKind::Networks,
        default: "",
        doc: "Load balancers allowed to send a PROXY protocol v1/v2 header; a connection from them must start with one, and screening sees the client address it names. Empty: no PROXY protocol.",
    },
    SettingSpec {
        key: "dnsbl.threshold",
        kind: SettingKind::Integer { min: 1, max: 1000 },
        default: "1",
        doc: "A client whose DNSBL scores sum to this or more is refused at connect (postscreen_dnsbl_threshold).",
    },
    SettingSpec {
        key: "dnsbl.timeout_ms",
        kind: SettingKind::Integer { min: 100, max: 30000 },
        default: "2000",
        doc: "How long the DNSBL queries of one connection may take; lists that have not answered count as not listed.",
    },
    SettingSpec {
        key: "sender.reject_non_fqdn",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Refuse MAIL FROM addresses whose domain is not fully qualified (Postfix reject_non_fqdn_sender).",
    },
    SettingSpec {
        key: "sender.reject_unknown_domain",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Refuse MAIL FROM addresses whose domain has no MX, A or AAAA record (Postfix reject_unknown_sender_domain); a DNS failure gives 450, not 550.",
    },
    SettingSpec {
        key: "connection.reject_unknown_client",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Refuse clients whose address has no PTR record (Postfix reject_unknown_reverse_client_hostname).",
    },
    SettingSpec {
        key: "connection.require_forward_confirmed",
        kind: SettingKind::Bool,
        default: "false",
        doc: "With connection.reject_unknown_client: the PTR name must also resolve back to the client's address (Postfix reject_unknown_client_hostname).",
    },
    SettingSpec {
        key: "connection.per_ip_max",
        kind: SettingKind::Integer { min: 0, max: 100000 },
        default: "50",
        doc: "Simultaneous connections one client IP may hold on this node (Postfix smtpd_client_connection_count_limit); 0 means no limit.",
    },
    SettingSpec {
        key: "connection.connections_per_minute_max",
        kind: SettingKind::Integer { min: 0, max: 1000000 },
        default: "0",
        doc: "New connections one client IP may open per minute on this node; past it, refused until the minute ends (smtpd_client_connection_rate_limit); 0 means no limit.",
    },
    SettingSpec {
        key: "connection.messages_per_minute_max",
        kind: SettingKind::Integer { min: 0, max: 1000000 },
        default: "0",
        doc: "Messages one client IP may send per minute on this node (smtpd_client_message_rate_limit); 0 means no limit.",
    },
    SettingSpec {
        key: "smtp.reject_unauth_pipelining",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Refuse and disconnect clients that send commands ahead without PIPELINING (after HELO or before EHLO) or send data before the 354 (Postfix reject_unauth_pipelining).",
    },
    SettingSpec {
        key: "smtp.greet_wait_ms",
        kind: SettingKind::Integer { min: 0, max: 30000 },
        default: "0",
        doc: "Hold the 220 greeting this long and refuse clients that talk first (postscreen's pregreet test); 0 sends the greeting at once.",
    },
    SettingSpec {
        key: "helo.reject_non_fqdn",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Refuse HELO/EHLO names that are not fully qualified domain names or address literals (Postfix reject_non_fqdn_helo_hostname).",
    },
    SettingSpec {
        key: "helo.reject_unknown",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Refuse HELO/EHLO names with no A or AAAA record (Postfix reject_unknown_helo_hostname); a DNS failure gives 450.",
    },
    SettingSpec {
        key: "smtp.junk_commands_max",
        kind: SettingKind::Integer { min: 0, max: 100000 },
        default: "100",
        doc: "NOOP, VRFY, ETRN and RSET allowed before a transaction; every 10th is answered a second late, and past the limit the client is disconnected (smtpd_junk_command_limit); 0 means no limit.",
    },
    SettingSpec {
        key: "intrusion.unknown_recipients_max",
        kind: SettingKind::Integer { min: 0, max: 100000 },
        default: "0",
        doc: "Block a client IP on every node after this many recipients that do not exist within intrusion.window_s (a dictionary attack; Kerio intrusion prevention); 0 turns it off.",
    },
    SettingSpec {
        key: "intrusion.window_s",
        kind: SettingKind::Integer { min: 60, max: 604800 },
        default: "3600",
        doc: "The window in which unknown recipients and failed logins are counted.",
    },
    SettingSpec {
        key: "intrusion.block_s",
        kind: SettingKind::Integer { min: 60, max: 2592000 },
        default: "86400",
        doc: "How long a blocked IP stays blocked (a day).",
    },
    SettingSpec {
        key: "intrusion.block_all_sessions",
        kind: SettingKind::Bool,
        default: "true",
        doc: "A blocked IP is refused on every listener; when false, only on the MX listener (port 25), so its users can still log in on the submission ports.",
    },
    SettingSpec {
        key: "spf.verify",
        kind: SettingKind::Bool,
        default: "true",
        doc: "Check SPF (RFC 7208) for mail from clients that are neither authenticated nor trusted: MAIL FROM, or HELO for the null sender.",
    },
    SettingSpec {
        key: "spf.reject_fail",
        kind: SettingKind::Bool,
        default: "true",
        doc: "Refuse an SPF fail with 550 5.7.23 at RCPT; when false, a fail adds spf.fail_score to the spam score.",
    },
    SettingSpec {
        key: "spf.reject_softfail",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Refuse an SPF softfail with 550 5.7.23 too (MailPlus: reject SPF softfail); otherwise it adds spf.softfail_score.",
    },
    SettingSpec {
        key: "spf.fail_score",
        kind: SettingKind::Integer { min: 0, max: 100 },
        default: "5",
        doc: "Spam score an SPF fail adds when it is not refused.",
    },
    SettingSpec {
        key: "spf.softfail_score",
        kind: SettingKind::Integer { min: 0, max: 100 },
        default: "2",
        doc: "Spam score an SPF softfail adds when it is not refused.",
    },
    SettingSpec {
        key: "dkim.verify",
        kind: SettingKind::Bool,
        default: "true",
        doc: "Verify DKIM signatures (RFC 6376) of inbound mail.",
    },
    SettingSpec {
        key: "dkim.min_key_bits",
        kind: SettingKind::Integer { min: 512, max: 4096 },
        default: "1024",
        doc: "Signatures made with shorter RSA keys count as failed (RFC 8301 sets 1024).",
    },
    SettingSpec {
        key: "dkim.fail_to_junk",
        kind: SettingKind::Bool,
        default: "true",
        doc: "A message whose DKIM signatures all fail goes to the recipients' Junk folder with a warning header.",
    },
    SettingSpec {
        key: "dkim.sign_networks",
        kind: SettingKind::Networks,
        default: "",
        doc: "Hosts and subnets whose mail is DKIM-signed although they do not log in (MailPlus DKIM whitelist); they must also be in smtp.trusted_networks to relay.",
    },
    SettingSpec {
        key: "dmarc.verify",
        kind: SettingKind::Bool,
        default: "true",
        doc: "Apply the DMARC policy (RFC 7489) of the From domain: reject gives 550 5.7.1, quarantine the Junk folder.",
    },
    SettingSpec {
        key: "arc.trusted_sealers",
        kind: SettingKind::Text { bytes_max: 1000 },
        default: "",
        doc: "Comma-separated domains whose valid ARC seal (RFC 8617) overrides a DMARC failure, for mailing lists and forwarders you trust.",
    },
    SettingSpec {
        key: "content.scan_outbound",
        kind: SettingKind::Bool,
        default: "true",
        doc: "Mail from authenticated and trusted senders goes through the content stage (attachment filter, dangerous content, antivirus) too.",
    },
    SettingSpec {
        key: "content.attachment_size_max",
        kind: SettingKind::Integer { min: 0, max: 1 << 31 },
        default: "0",
        doc: "Largest single attachment in bytes (decoded); a message with a larger one is refused 552 5.3.4 naming it. 0: no limit.",
    },
    SettingSpec {
        key: "content.mime_depth_max",
        kind: SettingKind::Integer { min: 1, max: 100 },
        default: "20",
        doc: "Deepest nesting of multiparts and attached messages; deeper is malformed MIME.",
    },
    SettingSpec {
        key: "content.mime_parts_max",
        kind: SettingKind::Integer { min: 1, max: 100000 },
        default: "1000",
        doc: "Most MIME parts in one message (attached messages included), and most files listed from the archives of one attachment.",
    },
    SettingSpec {
        key: "content.header_bytes_max",
        kind: SettingKind::Integer { min: 1024, max: 16777216 },
        default: "262144",
        doc: "Largest top-level header block in bytes; larger is refused 552 5.3.4.",
    },
    SettingSpec {
        key: "content.archive_depth_max",
        kind: SettingKind::Integer { min: 0, max: 10 },
        default: "2",
        doc: "How many archives deep (zip, tar, gzip) the attachment filter and dangerous-content checks look; 0: the attachment only.",
    },
    SettingSpec {
        key: "content.archive_bytes_max",
        kind: SettingKind::Integer { min: 0, max: 1 << 30 },
        default: "52428800",
        doc: "Decompressed bytes read from the archives of one attachment; what lies beyond is not inspected (an archive bomb costs no more).",
    },
    SettingSpec {
        key: "content.message_partial",
        kind: SettingKind::Choice { options: CONTENT_ACTIONS },
        default: "reject",
        doc: "message/partial and message/external-body parts (they reassemble or fetch content past every scanner).",
    },
    SettingSpec {
        key: "content.double_extension",
        kind: SettingKind::Choice { options: CONTENT_ACTIONS },
        default: "reject",
        doc: "An executable behind a double extension (a.pdf.exe).",
    },
    SettingSpec {
        key: "content.extension_mismatch",
        kind: SettingKind::Choice { options: CONTENT_ACTIONS },
        default: "tag",
        doc: "A program whose name claims another type (invoice.pdf whose bytes are a PE executable).",
    },
    SettingSpec {
        key: "content.encrypted_archive",
        kind: SettingKind::Choice { options: CONTENT_ACTIONS },
        default: "tag",
        doc: "A password-protected archive member (nothing can scan inside it).",
    },
    SettingSpec {
        key: "content.html_active",
        kind: SettingKind::Choice { options: CONTENT_ACTIONS },
        default: "tag",
        doc: "HTML with <form>, <script>, <iframe>, <object> or <embed>.",
    },
    SettingSpec {
        key: "content.phishing_links",
        kind: SettingKind::Choice { options: CONTENT_ACTIONS },
        default: "tag",
        doc: "A link whose visible text is a URL on another host than the link's target.",
    },
    SettingSpec {
        key: "content.malformed_mime",
        kind: SettingKind::Choice { options: CONTENT_ACTIONS },
        default: "tag",
        doc: "A multipart whose closing boundary never comes, nesting past content.mime_depth_max, a header line over 998 bytes.",
    },
    SettingSpec {
        key: "antivirus.enabled",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Scan every message with clamd (the node file's antivirus.clamd).",
    },
    SettingSpec {
        key: "antivirus.action",
        kind: SettingKind::Choice { options: &["reject", "delete", "quarantine", "tag"] },
        default: "reject",
        doc: "What happens to an infected message: refused at DATA (554 5.7.1), accepted and deleted, quarantined, or delivered with antivirus.subject_prefix.",
    },
    SettingSpec {
        key: "antivirus.subject_prefix",
        kind: SettingKind::Text { bytes_max: 64 },
        default: "[VIRUS]",
        doc: "Put before the subject of an infected message delivered under antivirus.action = tag.",
    },
    SettingSpec {
        key: "antivirus.on_error",
        kind: SettingKind::Choice { options: &["tempfail", "accept"] },
        default: "tempfail",
        doc: "clamd down or too slow: answer 451 4.7.0 so the sender retries, or accept with an X-Gatehouse-Virus-Scan: unscanned header.",
    },
    SettingSpec {
        key: "antivirus.notify",
        kind: SettingKind::Choice { options: &["none", "recipients", "admin", "both"] },
        default: "none",
        doc: "Who gets a notice built from antivirus.notify_template when a message is deleted or quarantined for a virus (admins: notify.admin_addresses).",
    },
    SettingSpec {
        key: "antivirus.notify_template",
        kind: SettingKind::Template { bytes_max: 4000 },
        default: DEFAULT_VIRUS_NOTICE,
        doc: "The notice: first line `Subject: ...`, then the text; {virus}, {sender}, {recipient}, {subject}, {date}, {queue_id} and {action} are filled in.",
    },
    SettingSpec {
        key: "antivirus.update_at",
        kind: SettingKind::TimeOfDay,
        default: "",
        doc: "When (HH:MM UTC) the daily definition update runs; one node runs it, every node's clamd reloads. Empty: never.",
    },
    SettingSpec {
        key: "notify.admin_addresses",
        kind: SettingKind::Text { bytes_max: 1000 },
        default: "",
        doc: "Comma-separated addresses that get administrator notices (virus notices under antivirus.notify = admin or both).",
    },
    SettingSpec {
        key: "smtp.message_bytes_max",
        kind: SettingKind::Integer { min: 1024, max: 1 << 30 },
        default: "26214400",
        doc: "Largest message in bytes, advertised in SIZE; larger is refused 552 5.3.4 (MailPlus 'maximum message size', Postfix message_size_limit).",
    },
    SettingSpec {
        key: "smtp.recipients_max",
        kind: SettingKind::Integer { min: 1, max: 100000 },
        default: "100",
        doc: "Recipients per message; more get 452 4.5.3 (Postfix smtpd_recipient_limit).",
    },
    SettingSpec {
        key: "smtp.hops_max",
        kind: SettingKind::Integer { min: 1, max: 1000 },
        default: "50",
        doc: "Received headers before a message is refused as a mail loop (554 5.4.6; Postfix hopcount_limit).",
    },
    SettingSpec {
        key: "spam.enabled",
        kind: SettingKind::Bool,
        default: "true",
        doc: "Score every message (the spam stage); off: no X-Spam headers, no spam actions.",
    },
    SettingSpec {
        key: "spam.scan_outbound",
        kind: SettingKind::Bool,
        default: "true",
        doc: "Score mail from logged-in users too (it catches stolen accounts); it is only tagged and logged, never refused, moved or held.",
    },
    SettingSpec {
        key: "spam.tag_score",
        kind: SettingKind::Score { min: -100.0, max: 1000.0 },
        default: "5",
        doc: "From this score on a message is spam: X-Spam-Flag: YES, X-Spam-Status: Yes, and the spam.action.",
    },
    SettingSpec {
        key: "spam.action",
        kind: SettingKind::Choice { options: &["tag", "subject", "junk", "quarantine", "encapsulate"] },
        default: "junk",
        doc: "What happens to spam (score >= spam.tag_score) below spam.reject_score: headers only, headers and spam.subject_prefix, the recipients' Junk folder, quarantine, or a new message with the original attached.",
    },
    SettingSpec {
        key: "spam.subject_prefix",
        kind: SettingKind::Text { bytes_max: 64 },
        default: "[SPAM]",
        doc: "Put before the subject of spam under spam.action = subject.",
    },
    SettingSpec {
        key: "spam.reject_score",
        kind: SettingKind::Score { min: -100.0, max: 1000.0 },
        default: "15",
        doc: "From this score a message is refused at DATA with 550 5.7.1 (no backscatter).",
    },
    SettingSpec {
        key: "spam.bayes_min_learns",
        kind: SettingKind::Integer { min: 1, max: 1000000 },
        default: "200",
        doc: "Spam and ham messages each that Bayes must have learned before it votes (SpamAssassin bayes_min_spam_num/ham_num).",
    },
    SettingSpec {
        key: "spam.bayes_tokens_max",
        kind: SettingKind::Integer { min: 10000, max: 100000000 },
        default: "1000000",
        doc: "Tokens the cluster's Bayes model keeps; past it the least recently learned are dropped (SpamAssassin bayes_expiry_max_db_size).",
    },
    SettingSpec {
        key: "spam.auto_whitelist",
        kind: SettingKind::Bool,
        default: "true",
        doc: "Mail from an external address a local user has written to gets AUTO_WHITELIST (MailPlus' auto-whitelist).",
    },
    SettingSpec {
        key: "spam.auto_whitelist_score",
        kind: SettingKind::Score { min: 0.0, max: 100.0 },
        default: "4",
        doc: "What AUTO_WHITELIST takes off the score.",
    },
    SettingSpec {
        key: "spam.auto_whitelist_days",
        kind: SettingKind::Integer { min: 1, max: 3650 },
        default: "60",
        doc: "How long after a user's last message to an address its mail stays auto-whitelisted.",
    },
    SettingSpec {
        key: "spam.junk_retention_days",
        kind: SettingKind::Integer { min: 0, max: 3650 },
        default: "30",
        doc: "Messages in the Junk folders older than this are deleted, and so are spam-quarantined ones (MailPlus' delete spam after N days); 0: kept.",
    },
    SettingSpec {
        key: "spam.autolearn",
        kind: SettingKind::Bool,
        default: "true",
        doc: "Learn inbound messages whose score without Bayes is clearly spam or clearly ham (SpamAssassin's autolearn).",
    },
    SettingSpec {
        key: "spam.autolearn_spam",
        kind: SettingKind::Score { min: -100.0, max: 1000.0 },
        default: "12",
        doc: "Learned as spam from this score (Bayes left out).",
    },
    SettingSpec {
        key: "spam.autolearn_ham",
        kind: SettingKind::Score { min: -100.0, max: 1000.0 },
        default: "-3",
        doc: "Learned as ham at or under this score (Bayes left out); negative, so only mail with evidence for it (auto-whitelist, not-spam list) is learned.",
    },
    SettingSpec {
        key: "spam.encapsulate_plain_text",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Under spam.action = encapsulate, attach the original as plain text (nothing in it is rendered or run) instead of as a message.",
    },
    SettingSpec {
        key: "spam.reports_per_user_max",
        kind: SettingKind::Integer { min: 1, max: 100000 },
        default: "100",
        doc: "Reports one user may have waiting for review; more are refused until some are approved or discarded.",
    },
    SettingSpec {
        key: "spam.learn_reports_at",
        kind: SettingKind::TimeOfDay,
        default: "",
        doc: "When (HH:MM UTC) the reports still waiting for review are learned each day (MailPlus); empty: only when approved.",
    },
    SettingSpec {
        key: "quarantine.retention_days",
        kind: SettingKind::Integer { min: 1, max: 3650 },
        default: "30",
        doc: "Quarantined messages older than this are deleted by the node that holds them.",
    },
    SettingSpec {
        key: "spam.rules_url",
        kind: SettingKind::Url,
        default: "",
        doc: "Where the spam rule pack (one SpamAssassin .cf file) is fetched from: https://, http:// or file:///. Empty: no pack.",
    },
    SettingSpec {
        key: "spam.update_at",
        kind: SettingKind::TimeOfDay,
        default: "",
        doc: "When (HH:MM UTC) one node fetches the rule pack from spam.rules_url each day; a pack that does not compile whole is refused. Empty: only by `spam update`.",
    },
    SettingSpec {
        key: "spam.received_rbl_zones",
        kind: SettingKind::ZoneScores,
        default: "",
        doc: "DNS blocklists asked about the public IPs in the Received headers (Kerio): ZONE=SCORE, comma-separated (zen.spamhaus.org=3). Empty: none.",
    },
    SettingSpec {
        key: "spam.uribl_zones",
        kind: SettingKind::ZoneScores,
        default: "",
        doc: "URI blocklists asked about the registered domains of the message's links: ZONE=SCORE, comma-separated (multi.surbl.org=4). Empty: none.",
    },
    SettingSpec {
        key: "spam.received_ips_max",
        kind: SettingKind::Integer { min: 1, max: 20 },
        default: "5",
        doc: "Public IPs from Received headers asked about, newest first.",
    },
    SettingSpec {
        key: "spam.uri_domains_max",
        kind: SettingKind::Integer { min: 1, max: 100 },
        default: "20",
        doc: "Link domains asked about per message, in the order they appear.",
    },
    SettingSpec {
        key: "spam.dns_timeout_ms",
        kind: SettingKind::Integer { min: 100, max: 30000 },
        default: "2000",
        doc: "How long the spam stage waits for its blocklist answers; a zone that has not answered counts as not listing.",
    },
    SettingSpec {
        key: "quota.daily_messages_max",
        kind: SettingKind::Integer { min: 0, max: 100_000_000 },
        default: "0",
        doc: "Messages each authenticated user may send to external recipients per UTC day, each external recipient counting one (MailPlus Daily Quota); 0 means no limit. A domain's or user's limit overrides it.",
    },
    SettingSpec {
        key: "quota.daily_bytes_max",
        kind: SettingKind::Integer { min: 0, max: 1_000_000_000_000_000 },
        default: "0",
        doc: "Bytes each authenticated user may send to external recipients per UTC day, a message's size counted once per external recipient; 0 means no limit. A domain's or user's limit overrides it.",
    },
    SettingSpec {
        key: "hijack.messages_max",
        kind: SettingKind::Integer { min: 0, max: 1_000_000 },
        default: "500",
        doc: "Account hijack detection (MDaemon): messages one authenticated account may send in hijack.window_s, counted on all nodes together; the next is refused with 550 5.7.1, the administrators (notify.admin_addresses) are told, and with hijack.freeze the account is frozen everywhere. 0 turns detection off.",
    },
    SettingSpec {
        key: "hijack.window_s",
        kind: SettingKind::Integer { min: 60, max: 86_400 },
        default: "3600",
        doc: "The window hijack.messages_max counts over; it starts at the account's first message after the previous one ended.",
    },
    SettingSpec {
        key: "hijack.freeze",
        kind: SettingKind::Bool,
        default: "true",
        doc: "Freeze an account that reaches hijack.messages_max (it may not log in or send until unfrozen by `user unfreeze` or an administrator's reply to the notice); false only refuses messages until the window ends.",
    },
    SettingSpec {
        key: "hijack.unfreeze_token_ttl_s",
        kind: SettingKind::Integer { min: 600, max: 2_592_000 },
        default: "604800",
        doc: "How long the unfreeze token in the hijack notice stays valid (single use).",
    },
    SettingSpec {
        key: "intrusion.failed_logins_max",
        kind: SettingKind::Integer { min: 0, max: 100000 },
        default: "0",
        doc: "Block a client IP on every node after this many failed AUTH logins within intrusion.window_s (password guessing); 0 turns it off. Clients in smtp.trusted_networks are not counted.",
    },
    SettingSpec {
        key: "notify.failed_logins",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Mail notify.admin_addresses a digest of failed logins: per account, at most one notice per notify.failed_logins_interval_s from each node, listing time, client IP, listener and account (never the password).",
    },
    SettingSpec {
        key: "notify.failed_logins_interval_s",
        kind: SettingKind::Integer { min: 10, max: 604800 },
        default: "3600",
        doc: "How often each node sends its failed-login digests (and so the most it sends per account).",
    },
    SettingSpec {
        key: "smtp.block_auto_forwarding",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Refuse (550 5.7.1) mail from authenticated or trusted clients that is an automatic forward to an external address (MailPlus \"disable auto-forwarding\"): Auto-Submitted: auto-forwarded, any other Auto-Submitted value with Resent-* headers, Exchange inbox-rule and Gmail forwarding headers.",
    },
    SettingSpec {
        key: "postmaster.addresses",
        kind: SettingKind::Text { bytes_max: 1000 },
        default: "",
        doc: "Comma-separated addresses that get mail to postmaster@ and mailer-daemon@ of every local domain that has no user, group or alias of that name (MailPlus external postmaster); empty: notify.admin_addresses.",
    },
    SettingSpec {
        key: "relay.smarthost_tls",
        kind: SettingKind::Choice { options: &["may", "require"] },
        default: "may",
        doc: "TLS towards relay.smarthost: may uses STARTTLS when offered, any certificate, plain text otherwise; require (MailPlus \"always use TLS\") needs STARTTLS and a certificate valid for the smarthost's name (system roots, or relay.smarthost_ca), and defers the mail otherwise, never sending it in plain text.",
    },
    SettingSpec {
        key: "relay.smarthost_ca",
        kind: SettingKind::Template { bytes_max: 65536 },
        default: "",
        doc: "PEM certificates the smarthost's certificate must chain to under relay.smarthost_tls = require, instead of the system's roots.",
    },
    SettingSpec {
        key: "relay.smarthost_username",
        kind: SettingKind::Text { bytes_max: 255 },
        default: "",
        doc: "Log in to the smarthost with this name (AUTH PLAIN/LOGIN) and relay.smarthost_password; empty: no login. The password is only ever sent over TLS.",
    },
    SettingSpec {
        key: "relay.smarthost_password",
        kind: SettingKind::Text { bytes_max: 255 },
        default: "",
        doc: "The smarthost password: a secret, shown as (set) by config get, left out of export unless --secrets, never logged.",
    },
    SettingSpec {
        key: "hijack.on_unavailable",
        kind: SettingKind::Choice { options: QUOTA_UNAVAILABLE_ACTIONS },
        default: "accept",
        doc: "When the cluster cannot count a message for hijack detection (no quorum): accept lets it through uncounted (a heuristic should not stop all mail from logged-in users while the cluster heals); tempfail answers 451 4.7.1.",
    },
    SettingSpec {
        key: "quota.on_unavailable",
        kind: SettingKind::Choice { options: QUOTA_UNAVAILABLE_ACTIONS },
        default: "tempfail",
        doc: "When the cluster cannot count a charge (no quorum): tempfail answers 451 4.7.1 so the client retries; accept lets the message out uncounted.",
    },
    SettingSpec {
        key: "attachment_links.bytes_min",
        kind: SettingKind::Integer { min: 0, max: 1 << 40 },
        default: "0",
        doc: "Attachment linking (MDaemon): in mail sent by an authenticated user, attachments of at least this many bytes are stored by the cluster and replaced by a download link (attachment_links.base_url). A domain's and a user's own limits (`domain limits`, `user limits --attachment-link-bytes-min`) win; 0 turns it off.",
    },
    SettingSpec {
        key: "attachment_links.ttl_s",
        kind: SettingKind::Integer { min: 1, max: 31_536_000 },
        default: "1209600",
        doc: "How long a link works (and its file is kept) after the message was sent.",
    },
    SettingSpec {
        key: "attachment_links.base_url",
        kind: SettingKind::Url,
        default: "",
        doc: "The address recipients fetch links from, e.g. https://files.example.com: the load balancer in front of every node's attachment_links.listen. Links are {base_url}/a/{token}. Empty (or not http/https): attachments are never linked.",
    },
    SettingSpec {
        key: "queue.replicas",
        kind: SettingKind::Integer { min: 1, max: 2 },
        default: "1",
        doc: "Copies of each accepted message before the 250: 1 keeps it on the accepting node only; 2 also fsyncs it on one other member, which delivers it if the accepting node is removed or gone longer than queue.takeover_after_s.",
    },
    SettingSpec {
        key: "queue.replicas_required",
        kind: SettingKind::Integer { min: 1, max: 2 },
        default: "2",
        doc: "With queue.replicas = 2 and no member able to take the copy in time: 2 answers 451 4.3.0 (the client retries; nothing is accepted with one copy); 1 accepts the message with one copy.",
    },
    SettingSpec {
        key: "queue.takeover_after_s",
        kind: SettingKind::Integer { min: 2, max: 604_800 },
        default: "600",
        doc: "A member whose delivery lease is older than this (it has not reached the cluster for so long) has its replicated messages delivered by the members holding their copies; a removed member's after three quarters of it.",
    },
    SettingSpec {
        key: "queue.replica_timeout_ms",
        kind: SettingKind::Integer { min: 100, max: 60_000 },
        default: "2000",
        doc: "How long the accepting node waits for a member to store a copy before it tries the next.",
    },
];

/// Settings that hold secrets.
pub const SECRET_SETTINGS: &[&str] = &["relay.smarthost_password"];

/// What the quota stage does when a charge cannot be committed.
pub const QUOTA_UNAVAILABLE_ACTIONS: &[&str] = &["tempfail", "accept"];

/// `zone=score,zone=score` (scores with up to two decimals, −100 to 100;
/// at most 20 zones); empty gives none.
pub fn parse_zone_scores(value: &str) -> Result<Vec<(String, f64)>, String> {
    let mut out = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (zone, score) = item.split_once('=').ok_or_else(|| format!("{item:?}: expected ZONE=SCORE"))?;
        let zone = zone.trim().trim_end_matches('.').to_ascii_lowercase();
        let zone_ok = zone.contains('.')
            && zone.len() <= 200
            && zone.split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            });
        if !zone_ok {
            return Err(format!("{zone:?} is not a DNS zone"));
        }
        let score: f64 = score.trim().parse().map_err(|_| format!("{item:?}: the score must be a number"))?;
        if !(-100.0..=100.0).contains(&score) || !score.is_finite() {
            return Err(format!("{item:?}: the score must be between -100 and 100"));
        }
        out.push((zone, (score * 100.0).round() / 100.0));
    }
    if out.len() > 20 {
        return Err("at most 20 zones".into());
    }
    Ok(out)
}

/// A setting's name with the type its value reads as. The constants in
/// `key` are the only way to read a setting, so a name that is not in
/// `SETTING_SPECS` cannot be read (it read as 0 when any string could be);
/// `every_spec_has_a_key_of_its_kind` checks names and kinds against the table.
pub struct Key<T> {
    index: usize,
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> Clone for Key<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Key<T> {}

impl<T> Key<T> {
    const fn new(index: usize, name: &'static str) -> Self {
        Self { index, name, _type: PhantomData }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }
}

/// `HH:MM` as hours and minutes.
pub fn parse_time_of_day(text: &str) -> Option<(u32, u32)> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// The parsed value of a `Networks` setting.
pub type Networks = Vec<ipnet::IpNet>;

macro_rules! setting_keys {
    ($($name:ident: $ty:ty = $index:literal, $key:literal;)*) => {
        /// Every setting, typed: `settings.flag(key::SPF_VERIFY)`. The
        /// index is the key's place in `SETTING_SPECS`.
        pub mod key {
            use super::{Key, Networks};
            $(pub const $name: Key<$ty> = Key::new($index, $key);)*
        }

        #[cfg(test)]
        const ALL_KEYS: &[(&str, &str)] = &[$(($key, stringify!($ty))),*];
        #[cfg(test)]
        const ALL_INDICES: &[usize] = &[$($index),*];
    };
}

setting_keys! {
    SMTP_HOSTNAME: String = 0, "smtp.hostname";
    SMTP_BANNER: String = 1, "smtp.banner";
    SMTP_PRIMARY_DOMAIN: String = 2, "smtp.primary_domain";
    SMTP_SENDER_MUST_MATCH_LOGIN: bool = 3, "smtp.sender_must_match_login";
    SMTP_TRUSTED_NETWORKS: Networks = 4, "smtp.trusted_networks";
    SMTP_SKIP_AUTH_LOCAL_NETWORK: bool = 5, "smtp.skip_auth_local_network";
    QUEUE_LIFETIME_S: i64 = 6, "queue.lifetime_s";
    QUEUE_MIN_BACKOFF_S: i64 = 7, "queue.min_backoff_s";
    QUEUE_MAX_BACKOFF_S: i64 = 8, "queue.max_backoff_s";
    QUEUE_ACTIVE_MESSAGES_MAX: i64 = 9, "queue.active_messages_max";
    QUEUE_BOUNCE_SIZE_LIMIT: i64 = 10, "queue.bounce_size_limit";
    RELAY_SMARTHOST: String = 11, "relay.smarthost";
    RELAY_PORT: i64 = 12, "relay.port";
    RELAY_CONNECT_TIMEOUT_S: i64 = 13, "relay.connect_timeout_s";
    RELAY_COMMAND_TIMEOUT_S: i64 = 14, "relay.command_timeout_s";
    RELAY_DESTINATION_CONCURRENCY_MAX: i64 = 15, "relay.destination_concurrency_max";
    CLUSTER_JOIN_TOKEN_TTL_S: i64 = 16, "cluster.join_token_ttl_s";
    GREYLIST_DELAY_S: i64 = 17, "greylist.delay_s";
    GREYLIST_RETRY_WINDOW_S: i64 = 18, "greylist.retry_window_s";
    GREYLIST_PASS_TTL_S: i64 = 19, "greylist.pass_ttl_s";
    GREYLIST_DEFAULT_ACTION: String = 20, "greylist.default_action";
    GREYLIST_AUTO_WHITELIST_PASSES: i64 = 21, "greylist.auto_whitelist_passes";
    SMTP_PROXY_PEERS: Networks = 22, "smtp.proxy_peers";
    DNSBL_THRESHOLD: i64 = 23, "dnsbl.threshold";
    DNSBL_TIMEOUT_MS: i64 = 24, "dnsbl.timeout_ms";
    SENDER_REJECT_NON_FQDN: bool = 25, "sender.reject_non_fqdn";
    SENDER_REJECT_UNKNOWN_DOMAIN: bool = 26, "sender.reject_unknown_domain";
    CONNECTION_REJECT_UNKNOWN_CLIENT: bool = 27, "connection.reject_unknown_client";
    CONNECTION_REQUIRE_FORWARD_CONFIRMED: bool = 28, "connection.require_forward_confirmed";
    CONNECTION_PER_IP_MAX: i64 = 29, "connection.per_ip_max";
    CONNECTION_CONNECTIONS_PER_MINUTE_MAX: i64 = 30, "connection.connections_per_minute_max";
    CONNECTION_MESSAGES_PER_MINUTE_MAX: i64 = 31, "connection.messages_per_minute_max";
    SMTP_REJECT_UNAUTH_PIPELINING: bool = 32, "smtp.reject_unauth_pipelining";
    SMTP_GREET_WAIT_MS: i64 = 33, "smtp.greet_wait_ms";
    HELO_REJECT_NON_FQDN: bool = 34, "helo.reject_non_fqdn";
    HELO_REJECT_UNKNOWN: bool = 35, "helo.reject_unknown";
    SMTP_JUNK_COMMANDS_MAX: i64 = 36, "smtp.junk_commands_max";
    INTRUSION_UNKNOWN_RECIPIENTS_MAX: i64 = 37, "intrusion.unknown_recipients_max";
    INTRUSION_WINDOW_S: i64 = 38, "intrusion.window_s";
    INTRUSION_BLOCK_S: i64 = 39, "intrusion.block_s";
    INTRUSION_BLOCK_ALL_SESSIONS: bool = 40, "intrusion.block_all_sessions";
    SPF_VERIFY: bool = 41, "spf.verify";
    SPF_REJECT_FAIL: bool = 42, "spf.reject_fail";
    SPF_REJECT_SOFTFAIL: bool = 43, "spf.reject_softfail";
    SPF_FAIL_SCORE: i64 = 44, "spf.fail_score";
    SPF_SOFTFAIL_SCORE: i64 = 45, "spf.softfail_score";
    DKIM_VERIFY: bool = 46, "dkim.verify";
    DKIM_MIN_KEY_BITS: i64 = 47, "dkim.min_key_bits";
    DKIM_FAIL_TO_JUNK: bool = 48, "dkim.fail_to_junk";
    DKIM_SIGN_NETWORKS: Networks = 49, "dkim.sign_networks";
    DMARC_VERIFY: bool = 50, "dmarc.verify";
    ARC_TRUSTED_SEALERS: String = 51, "arc.trusted_sealers";
    CONTENT_SCAN_OUTBOUND: bool = 52, "content.scan_outbound";
    CONTENT_ATTACHMENT_SIZE_MAX: i64 = 53, "content.attachment_size_max";
    CONTENT_MIME_DEPTH_MAX: i64 = 54, "content.mime_depth_max";
    CONTENT_MIME_PARTS_MAX: i64 = 55, "content.mime_parts_max";
    CONTENT_HEADER_BYTES_MAX: i64 = 56, "content.header_bytes_max";
    CONTENT_ARCHIVE_DEPTH_MAX: i64 = 57, "content.archive_depth_max";
    CONTENT_ARCHIVE_BYTES_MAX: i64 = 58, "content.archive_bytes_max";
    CONTENT_MESSAGE_PARTIAL: String = 59, "content.message_partial";
    CONTENT_DOUBLE_EXTENSION: String = 60, "content.double_extension";
    CONTENT_EXTENSION_MISMATCH: String = 61, "content.extension_mismatch";
    CONTENT_ENCRYPTED_ARCHIVE: String = 62, "content.encrypted_archive";
    CONTENT_HTML_ACTIVE: String = 63, "content.html_active";
    CONTENT_PHISHING_LINKS: String = 64, "content.phishing_links";
    CONTENT_MALFORMED_MIME: String = 65, "content.malformed_mime";
    ANTIVIRUS_ENABLED: bool = 66, "antivirus.enabled";
    ANTIVIRUS_ACTION: String = 67, "antivirus.action";
    ANTIVIRUS_SUBJECT_PREFIX: String = 68, "antivirus.subject_prefix";
    ANTIVIRUS_ON_ERROR: String = 69, "antivirus.on_error";
    ANTIVIRUS_NOTIFY: String = 70, "antivirus.notify";
    ANTIVIRUS_NOTIFY_TEMPLATE: String = 71, "antivirus.notify_template";
    ANTIVIRUS_UPDATE_AT: String = 72, "antivirus.update_at";
    NOTIFY_ADMIN_ADDRESSES: String = 73, "notify.admin_addresses";
    SMTP_MESSAGE_BYTES_MAX: i64 = 74, "smtp.message_bytes_max";
    SMTP_RECIPIENTS_MAX: i64 = 75, "smtp.recipients_max";
    SMTP_HOPS_MAX: i64 = 76, "smtp.hops_max";
    SPAM_ENABLED: bool = 77, "spam.enabled";
    SPAM_SCAN_OUTBOUND: bool = 78, "spam.scan_outbound";
    SPAM_TAG_SCORE: f64 = 79, "spam.tag_score";
    SPAM_ACTION: String = 80, "spam.action";
    SPAM_SUBJECT_PREFIX: String = 81, "spam.subject_prefix";
    SPAM_REJECT_SCORE: f64 = 82, "spam.reject_score";
    SPAM_BAYES_MIN_LEARNS: i64 = 83, "spam.bayes_min_learns";
    SPAM_BAYES_TOKENS_MAX: i64 = 84, "spam.bayes_tokens_max";
    SPAM_AUTO_WHITELIST: bool = 85, "spam.auto_whitelist";
    SPAM_AUTO_WHITELIST_SCORE: f64 = 86, "spam.auto_whitelist_score";
    SPAM_AUTO_WHITELIST_DAYS: i64 = 87, "spam.auto_whitelist_days";
    SPAM_JUNK_RETENTION_DAYS: i64 = 88, "spam.junk_retention_days";
    SPAM_AUTOLEARN: bool = 89, "spam.autolearn";
    SPAM_AUTOLEARN_SPAM: f64 = 90, "spam.autolearn_spam";
    SPAM_AUTOLEARN_HAM: f64 = 91, "spam.autolearn_ham";
    SPAM_ENCAPSULATE_PLAIN_TEXT: bool = 92, "spam.encapsulate_plain_text";
    SPAM_REPORTS_PER_USER_MAX: i64 = 93, "spam.reports_per_user_max";
    SPAM_LEARN_REPORTS_AT: String = 94, "spam.learn_reports_at";
    QUARANTINE_RETENTION_DAYS: i64 = 95, "quarantine.retention_days";
    SPAM_RULES_URL: String = 96, "spam.rules_url";
    SPAM_UPDATE_AT: String = 97, "spam.update_at";
    SPAM_RECEIVED_RBL_ZONES: String = 98, "spam.received_rbl_zones";
    SPAM_URIBL_ZONES: String = 99, "spam.uribl_zones";
    SPAM_RECEIVED_IPS_MAX: i64 = 100, "spam.received_ips_max";
    SPAM_URI_DOMAINS_MAX: i64 = 101, "spam.uri_domains_max";
    SPAM_DNS_TIMEOUT_MS: i64 = 102, "spam.dns_timeout_ms";
    QUOTA_DAILY_MESSAGES_MAX: i64 = 103, "quota.daily_messages_max";
    QUOTA_DAILY_BYTES_MAX: i64 = 104, "quota.daily_bytes_max";
    HIJACK_MESSAGES_MAX: i64 = 105, "hijack.messages_max";
    HIJACK_WINDOW_S: i64 = 106, "hijack.window_s";
    HIJACK_FREEZE: bool = 107, "hijack.freeze";
    HIJACK_UNFREEZE_TOKEN_TTL_S: i64 = 108, "hijack.unfreeze_token_ttl_s";
    INTRUSION_FAILED_LOGINS_MAX: i64 = 109, "intrusion.failed_logins_max";
    NOTIFY_FAILED_LOGINS: bool = 110, "notify.failed_logins";
    NOTIFY_FAILED_LOGINS_INTERVAL_S: i64 = 111, "notify.failed_logins_interval_s";
    SMTP_BLOCK_AUTO_FORWARDING: bool = 112, "smtp.block_auto_forwarding";
    POSTMASTER_ADDRESSES: String = 113, "postmaster.addresses";
    RELAY_SMARTHOST_TLS: String = 114, "relay.smarthost_tls";
    RELAY_SMARTHOST_CA: String = 115, "relay.smarthost_ca";
    RELAY_SMARTHOST_USERNAME: String = 116, "relay.smarthost_username";
    RELAY_SMARTHOST_PASSWORD: String = 117, "relay.smarthost_password";
    HIJACK_ON_UNAVAILABLE: String = 118, "hijack.on_unavailable";
    QUOTA_ON_UNAVAILABLE: String = 119, "quota.on_unavailable";
    ATTACHMENT_LINKS_BYTES_MIN: i64 = 120, "attachment_links.bytes_min";
    ATTACHMENT_LINKS_TTL_S: i64 = 121, "attachment_links.ttl_s";
    ATTACHMENT_LINKS_BASE_URL: String = 122, "attachment_links.base_url";
    QUEUE_REPLICAS: i64 = 123, "queue.replicas";
    QUEUE_REPLICAS_REQUIRED: i64 = 124, "queue.replicas_required";
    QUEUE_TAKEOVER_AFTER_S: i64 = 125, "queue.takeover_after_s";
    QUEUE_REPLICA_TIMEOUT_MS: i64 = 126, "queue.replica_timeout_ms";
}

/// A settings value after validation.
pub type SettingValue = String;

/// The settings an operator changed from their defaults.
#[derive(Clone, Default, Serialize, Deserialize)]
pub struct Settings {
    /// Only keys listed in `SETTING_SPECS`, each validated against its kind.
    values: BTreeMap<String, SettingValue>,
    /// Every setting parsed to its type, once per change (on the first read
    /// after it): the hot path reads typed values, never text.
    #[serde(skip)]
    parsed: OnceLock<Arc<[Parsed]>>,
}

impl PartialEq for Settings {
    fn eq(&self, other: &Self) -> bool {
        self.values == other.values
    }
}

impl Eq for Settings {}

/// The values only: whether the cache was filled yet is no part of the state
/// (the simulator compares states by their debug text).
impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings").field("values", &self.values).finish()
    }
}

/// One setting's value, parsed.
#[derive(Debug)]
enum Parsed {
    Text(String),
    Flag(bool),
    Int(i64),
    Score(f64),
    Networks(Networks),
}

impl Parsed {
    fn of(spec: &SettingSpec, text: &str) -> Self {
        match spec.kind {
            SettingKind::Bool => Parsed::Flag(text == "true"),
            SettingKind::Integer { .. } => Parsed::Int(text.parse().unwrap_or(0)),
            SettingKind::Score { .. } => Parsed::Score(text.parse().unwrap_or(0.0)),
            SettingKind::Networks => Parsed::Networks(parse_networks(text).unwrap_or_default()),
            SettingKind::Text { .. }
            | SettingKind::Template { .. }
            | SettingKind::TimeOfDay
            | SettingKind::Url
            | SettingKind::ZoneScores
            | SettingKind::Hostname
            | SettingKind::Choice { .. } => Parsed::Text(text.to_string()),
        }
    }
}

impl Settings {
    pub fn spec(key: &str) -> Result<&'static SettingSpec, ApplyError> {
        SETTING_SPECS.iter().find(|s| s.key == key).ok_or_else(|| ApplyError::UnknownSetting(key.to_string()))
    }

    /// Checks a value against its key's kind and returns it in canonical form.
    pub fn validate(key: &str, value: &str) -> Result<String, ApplyError> {
        let spec = Self::spec(key)?;
        let bad = |reason: String| ApplyError::InvalidSetting { key: key.to_string(), reason };
        match spec.kind {
            SettingKind::Bool => match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok("true".into()),
                "false" | "no" | "off" | "0" => Ok("false".into()),
                _ => Err(bad(format!("{value:?} is not a boolean (true/false)"))),
            },
            SettingKind::Integer { min, max } => {
                let n: i64 = value.trim().parse().map_err(|_| bad(format!("{value:?} is not an integer")))?;
                if n < min || n > max {
                    return Err(bad(format!("{n} is outside {min}..={max}")));
                }
                Ok(n.to_string())
            }
            SettingKind::Score { min, max } => {
                let n: f64 = value.trim().parse().map_err(|_| bad(format!("{value:?} is not a number")))?;
                if !n.is_finite() || n < min || n > max {
                    return Err(bad(format!("{value} is outside {min}..={max}")));
                }
                // Two decimals, so every node reads back the same number.
                Ok(format!("{}", (n * 100.0).round() / 100.0))
            }
            SettingKind::Text { bytes_max } => {
                if value.len() > bytes_max || value.chars().any(|c| c.is_control()) {
                    return Err(bad(format!("must be at most {bytes_max} bytes with no control characters")));
                }
                Ok(value.to_string())
            }
            SettingKind::Template { bytes_max } => {
                let value = value.replace("\r\n", "\n");
                let allowed = |c: char| !c.is_control() || c == '\n' || c == '\t';
                if value.len() > bytes_max || !value.chars().all(allowed) {
                    return Err(bad(format!(
                        "must be at most {bytes_max} bytes with no control characters but newlines"
                    )));
                }
                Ok(value)
            }
            SettingKind::ZoneScores => match parse_zone_scores(value) {
                Ok(list) => Ok(list.iter().map(|(z, s)| format!("{z}={s}")).collect::<Vec<_>>().join(",")),
                Err(reason) => Err(bad(reason)),
            },
            SettingKind::Url => {
                let v = value.trim();
                let scheme_ok = ["https://", "http://", "file:///"].iter().any(|s| v.starts_with(s));
                if v.is_empty()
                    || (scheme_ok && v.len() <= 2000 && !v.chars().any(|c| c.is_whitespace() || c.is_control()))
                {
                    Ok(v.to_string())
                } else {
                    Err(bad(format!(
                        "{value:?} is not an https://, http:// or file:/// URL (at most 2000 bytes), or empty"
                    )))
                }
            }
            SettingKind::TimeOfDay => {
                let v = value.trim();
                if v.is_empty() {
                    return Ok(String::new());
                }
                match parse_time_of_day(v) {
                    Some((h, m)) => Ok(format!("{h:02}:{m:02}")),
                    None => Err(bad(format!("{value:?} is not a time HH:MM (00:00 to 23:59), or empty"))),
                }
            }
            SettingKind::Hostname => {
                crate::address::DomainName::parse(value).map(|d| d.to_string()).map_err(|e| bad(e.to_string()))
            }
            SettingKind::Networks => parse_networks(value).map(|nets| join_networks(&nets)).map_err(bad),
            SettingKind::Choice { options } => {
                let word = value.trim().to_ascii_lowercase();
                if options.contains(&word.as_str()) {
                    Ok(word)
                } else {
                    Err(bad(format!("{value:?} is not one of {}", options.join(", "))))
                }
            }
        }
    }

    /// Sets a key after checking the value against its kind.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ApplyError> {
        let value = Self::validate(key, value)?;
        self.values.insert(key.to_string(), value);
        self.parsed = OnceLock::new();
        Ok(())
    }

    /// Returns a key to its default.
    pub fn reset(&mut self, key: &str) -> Result<(), ApplyError> {
        Self::spec(key)?;
        self.values.remove(key);
        self.parsed = OnceLock::new();
        Ok(())
    }

    /// Whether `key` holds a secret (shown as `(set)`, left out of exports
    /// unless asked for, never logged).
    pub fn is_secret(key: &str) -> bool {
        SECRET_SETTINGS.contains(&key)
    }

    /// These settings without their secrets.
    pub fn without_secrets(&self) -> Settings {
        let mut out = self.clone();
        for key in SECRET_SETTINGS {
            out.values.remove(*key);
        }
        out.parsed = OnceLock::new();
        out
    }

    /// The values an operator set (validated), by key.
    pub fn values(&self) -> &BTreeMap<String, SettingValue> {
        &self.values
    }

    fn parsed<T>(&self, key: Key<T>) -> &Parsed {
        let all = self.parsed.get_or_init(|| {
            SETTING_SPECS
                .iter()
                .map(|spec| Parsed::of(spec, self.values.get(spec.key).map_or(spec.default, String::as_str)))
                .collect()
        });
        &all[key.index]
    }

    /// A text, host name or choice setting.
    pub fn text(&self, key: Key<String>) -> String {
        match self.parsed(key) {
            Parsed::Text(t) => t.clone(),
            _ => String::new(),
        }
    }

    pub fn flag(&self, key: Key<bool>) -> bool {
        matches!(self.parsed(key), Parsed::Flag(true))
    }

    /// An integer setting (validated on write, so it parses).
    pub fn int(&self, key: Key<i64>) -> i64 {
        match self.parsed(key) {
            Parsed::Int(n) => *n,
            _ => 0,
        }
    }

    /// A score setting.
    pub fn score(&self, key: Key<f64>) -> f64 {
        match self.parsed(key) {
            Parsed::Score(n) => *n,
            _ => 0.0,
        }
    }

    /// An integer setting as u64 (negative values read as 0).
    pub fn uint(&self, key: Key<i64>) -> u64 {
        self.int(key).max(0) as u64
    }

    /// An integer setting as u32, saturating.
    pub fn uint32(&self, key: Key<i64>) -> u32 {
        self.uint(key).min(u32::MAX as u64) as u32
    }

    /// A networks setting (validated on write, so it parses).
    pub fn networks(&self, key: Key<Networks>) -> &[ipnet::IpNet] {
        match self.parsed(key) {
            Parsed::Networks(n) => n,
            _ => &[],
        }
    }
}

/// Parses `10.0.0.0/8, 192.168.1.7, ::1/128`; a bare address is a host network.
pub fn parse_networks(text: &str) -> Result<Vec<ipnet::IpNet>, String> {
    let mut out = Vec::new();
    for item in text.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        let net = if item.contains('/') {
            item.parse::<ipnet::IpNet>().map_err(|_| format!("{item:?} is not a network (CIDR like 10.0.0.0/8)"))?
        } else {
            let ip: std::net::IpAddr =
                item.parse().map_err(|_| format!("{item:?} is not an IP address or CIDR network"))?;
            ipnet::IpNet::from(ip)
        };
        if net.trunc() != net {
            return Err(format!("{item:?} has host bits set; did you mean {}?", net.trunc()));
        }
        out.push(net);
    }
    Ok(out)
}

fn join_networks(nets: &[ipnet::IpNet]) -> String {
    nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod network_tests {
    use super::*;

    #[test]
    fn every_spec_has_a_key_of_its_kind() {
        assert_eq!(ALL_KEYS.len(), SETTING_SPECS.len(), "one key per setting");
        for (i, (name, ty)) in ALL_KEYS.iter().enumerate() {
            assert_eq!(SETTING_SPECS[i].key, *name, "key {name} has the index of its spec");
            let spec = Settings::spec(name).unwrap_or_else(|_| panic!("key {name} is not in SETTING_SPECS"));
            let fits = matches!(
                (spec.kind, *ty),
                (SettingKind::Bool, "bool")
                    | (SettingKind::Integer { .. }, "i64")
                    | (SettingKind::Score { .. }, "f64")
                    | (SettingKind::Networks, "Networks")
                    | (
                        SettingKind::Text { .. }
                            | SettingKind::Template { .. }
                            | SettingKind::TimeOfDay
                            | SettingKind::Hostname
                            | SettingKind::Url
                            | SettingKind::ZoneScores
                            | SettingKind::Choice { .. },
                        "String"
                    )
            );
            assert!(fits, "{name}: key type {ty} does not fit {:?}", spec.kind);
            assert_eq!(Settings::validate(name, spec.default).as_deref(), Ok(spec.default), "{name}: default");
        }
        assert!(ALL_INDICES.iter().enumerate().all(|(i, n)| i == *n));
        assert_eq!(Settings::validate("antivirus.update_at", "3:05").as_deref(), Ok("03:05"));
        assert_eq!(Settings::validate("spam.rules_url", " file:///etc/pack.cf ").as_deref(), Ok("file:///etc/pack.cf"));
        for bad in ["ftp://x/pack.cf", "https://x/a b", "/etc/pack.cf", "file://relative"] {
            assert!(Settings::validate("spam.rules_url", bad).is_err(), "{bad}");
        }
        assert_eq!(
            Settings::validate("spam.uribl_zones", " Multi.SURBL.org.=4 , dbl.test=2.555").as_deref(),
            Ok("multi.surbl.org=4,dbl.test=2.56")
        );
        for bad in ["multi.surbl.org", "x=4", "a.test=lots", "a.test=1000", "a..test=1", "a.test=NaN"] {
            assert!(Settings::validate("spam.received_rbl_zones", bad).is_err(), "{bad}");
        }
        assert_eq!(Settings::validate("spam.tag_score", "4.555").as_deref(), Ok("4.56"));
        assert_eq!(Settings::validate("spam.tag_score", " -2 ").as_deref(), Ok("-2"));
        assert!(Settings::validate("spam.tag_score", "NaN").is_err());
        assert!(Settings::validate("spam.tag_score", "1e9").is_err());
        assert!(Settings::validate("antivirus.update_at", "24:00").is_err());
        assert!(Settings::validate("antivirus.notify_template", "a\u{7}b").is_err());
        assert_eq!(Settings::validate("antivirus.notify_template", "a\r\nb").as_deref(), Ok("a\nb"));
        let mut s = Settings::default();
        assert_eq!(s.text(key::SMTP_HOSTNAME), "mail.gatehouse.invalid");
        assert_eq!(s.uint(key::SMTP_JUNK_COMMANDS_MAX), 100);
        s.set("smtp.junk_commands_max", "7").unwrap();
        assert_eq!(s.uint(key::SMTP_JUNK_COMMANDS_MAX), 7, "a change is read, not the earlier parse");
        s.set("smtp.trusted_networks", "10.0.0.0/8").unwrap();
        assert_eq!(s.networks(key::SMTP_TRUSTED_NETWORKS).len(), 1);
        s.reset("smtp.junk_commands_max").unwrap();
        assert_eq!(s.uint(key::SMTP_JUNK_COMMANDS_MAX), 100);
    }

    #[test]
    fn networks_table() {
        let ok = |v: &str| Settings::validate("smtp.trusted_networks", v);
        assert_eq!(ok("").unwrap(), "");
        assert_eq!(ok("10.0.0.0/8,192.168.1.7 ::1").unwrap(), "10.0.0.0/8, 192.168.1.7/32, ::1/128");
        assert_eq!(ok(" 2001:db8::/32 , 127.0.0.0/8 ").unwrap(), "2001:db8::/32, 127.0.0.0/8");
        for (bad, says) in [
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("10.0.0.0/33", "not a network"),
            ("example.com", "not an IP address"),
        ] {
            let e = ok(bad).unwrap_err();
            assert_eq!(e.field(), "smtp.trusted_networks");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }
}
