//! Black and white lists, by client address at connect and by envelope at
//! each RCPT.
//!
//! A whitelist match wins over any blacklist match (MailPlus and Kerio both
//! let the whitelist override). A blacklisted client is refused before the
//! greeting with 554 5.7.1, or, with the discard action, served normally and
//! its messages dropped after the 250. Lookups go through the `RuleIndex`, so
//! their cost does not grow with the number of rules.

use consensus::address::MailAddress;
use consensus::state::{ListName, ListRule, RuleAction, RuleIndex, RuleKind, RuleSets};
use std::net::IpAddr;

use crate::message::{Reply, SkipChecks};

/// What the lists say about a client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientListVerdict {
    /// No rule matched.
    Unlisted,
    /// Whitelisted by this rule; the message skips these checks.
    Whitelisted { rule: u64, skip: SkipChecks },
    /// Refuse the connection with this reply.
    Refuse { rule: u64, reply: Reply },
    /// Accept, then drop every message silently.
    Discard { rule: u64 },
}

/// The strongest blacklist match so far: reject beats discard, then the lowest id.
fn stronger<'a>(best: Option<(u64, &'a ListRule)>, id: u64, rule: &'a ListRule) -> Option<(u64, &'a ListRule)> {
    match best {
        Some((_, b)) if b.action == RuleAction::Reject || rule.action != RuleAction::Reject => best,
        _ => Some((id, rule)),
    }
}

/// What the matching rules add up to, before a verdict is worded.
enum ListMatch<'a> {
    None,
    /// The lowest-numbered whitelist rule: a whitelist match wins.
    White {
        rule: u64,
        skip: SkipChecks,
    },
    /// The strongest blacklist rule.
    Black {
        rule: u64,
        r: &'a ListRule,
    },
}

fn first_match(rules: &RuleSets, mut ids: Vec<u64>) -> ListMatch<'_> {
    ids.sort_unstable();
    let mut black = None;
    for id in ids {
        let Some(rule) = rules.lists.get(&id) else { continue };
        match rule.list {
            ListName::White => return ListMatch::White { rule: id, skip: SkipChecks::for_whitelist(rule.kind) },
            ListName::Black => black = stronger(black, id, rule),
            ListName::Greylist | ListName::Dnsbl => {}
        }
    }
    black.map_or(ListMatch::None, |(rule, r)| ListMatch::Black { rule, r })
}

pub fn check_client(rules: &RuleSets, index: &RuleIndex, ip: IpAddr) -> ClientListVerdict {
    match first_match(rules, index.by_ip(ip)) {
        ListMatch::None => ClientListVerdict::Unlisted,
        ListMatch::White { rule, skip } => ClientListVerdict::Whitelisted { rule, skip },
        ListMatch::Black { rule, r } if r.action == RuleAction::Discard => ClientListVerdict::Discard { rule },
        ListMatch::Black { rule, .. } => {
            let text = format!("Client host [{ip}] blocked by blacklist rule {rule}");
            ClientListVerdict::Refuse { rule, reply: Reply::new(554, "5.7.1", &text) }
        }
    }
}

/// What the lists say about one recipient of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeListVerdict {
    Unlisted,
    Whitelisted {
        rule: u64,
        skip: SkipChecks,
    },
    /// Refuse this recipient with this reply (sender rules are applied at
    /// RCPT, like Postfix's `smtpd_delay_reject`).
    Reject {
        rule: u64,
        reply: Reply,
    },
    /// Accept this recipient and deliver it nowhere.
    Discard {
        rule: u64,
    },
}

/// Checks client, sender and recipient against the black and white lists:
/// any whitelist match wins; among blacklist matches reject beats discard.
pub fn check_envelope(
    rules: &RuleSets,
    index: &RuleIndex,
    ip: IpAddr,
    sender: &str,
    recipient: &str,
) -> EnvelopeListVerdict {
    let sender_address = MailAddress::parse(sender).ok();
    let mut ids = index.by_ip(ip);
    if let Some(a) = &sender_address {
        ids.extend_from_slice(index.by_sender(&a.key()));
        ids.extend_from_slice(index.by_sender_domain(a.domain().as_str()));
    }
    if let Ok(a) = MailAddress::parse(recipient) {
        ids.extend_from_slice(index.by_recipient(&a.key()));
    }
    match first_match(rules, ids) {
        ListMatch::None => EnvelopeListVerdict::Unlisted,
        ListMatch::White { rule, skip } => EnvelopeListVerdict::Whitelisted { rule, skip },
        ListMatch::Black { rule, r } if r.action == RuleAction::Discard => EnvelopeListVerdict::Discard { rule },
        ListMatch::Black { rule, r } => {
            let text = match r.kind {
                RuleKind::Recipient => format!("<{recipient}>: Recipient address rejected: blacklisted"),
                RuleKind::Sender => format!("<{sender}>: Sender address rejected: blacklisted"),
                _ => format!("Client host [{ip}] blocked by blacklist rule {rule}"),
            };
            EnvelopeListVerdict::Reject { rule, reply: Reply::new(554, "5.7.1", &text) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::command::Command;
    use consensus::state::ClusterState;

    fn state(rules: &[(ListName, RuleKind, &str, RuleAction)]) -> (ClusterState, RuleIndex) {
        let mut s = ClusterState::default();
        for (list, kind, value, action) in rules {
            let rule = ListRule { action: *action, ..ListRule::new(*list, *kind, value) };
            s.apply(&Command::AddListRule { rule }, 0).unwrap();
        }
        let index = RuleIndex::build(&s.rules);
        (s, index)
    }

    #[test]
    fn client_table() {
        use ListName::*;
        use RuleAction::*;
        use RuleKind::*;
        let (s, index) = state(&[
            (Black, Subnet, "192.0.2.0/24", Reject),    // 1
            (White, Ip, "192.0.2.10", Default),         // 2
            (Black, Ip, "198.51.100.7", Discard),       // 3
            (Black, Subnet, "198.51.100.0/28", Reject), // 4
            (Black, Subnet, "203.0.113.0/24", Discard), // 5
            (Black, Sender, "spam@bad.example", Reject),
        ]);
        let table: &[(&str, ClientListVerdict)] = &[
            (
                "192.0.2.99",
                ClientListVerdict::Refuse {
                    rule: 1,
                    reply: Reply::new(554, "5.7.1", "Client host [192.0.2.99] blocked by blacklist rule 1"),
                },
            ),
            ("192.0.2.10", ClientListVerdict::Whitelisted { rule: 2, skip: SkipChecks::for_whitelist(Ip) }),
            (
                "198.51.100.7",
                ClientListVerdict::Refuse {
                    rule: 4,
                    reply: Reply::new(554, "5.7.1", "Client host [198.51.100.7] blocked by blacklist rule 4"),
                },
            ),
            ("203.0.113.5", ClientListVerdict::Discard { rule: 5 }),
            ("127.0.0.1", ClientListVerdict::Unlisted),
            ("::1", ClientListVerdict::Unlisted),
        ];
        for (ip, want) in table {
            assert_eq!(&check_client(&s.rules, &index, ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn envelope_table() {
        use ListName::*;
        use RuleAction::*;
        use RuleKind::*;
        let (s, index) = state(&[
            (Black, Sender, "spam@bad.example", Reject),           // 1
            (Black, Recipient, "old@example.com", Reject),         // 2
            (Black, Sender, "noise@bad.example", Discard),         // 3
            (White, SenderDomain, "partner.example", Default),     // 4
            (Black, Sender, "boss@partner.example", Reject),       // 5 (whitelisted domain wins)
            (White, Recipient, "postmaster@example.com", Default), // 6
            (Black, Recipient, "trap@example.com", Discard),       // 7
        ]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let white = |rule, kind| EnvelopeListVerdict::Whitelisted { rule, skip: SkipChecks::for_whitelist(kind) };
        let reject = |rule, text: &str| EnvelopeListVerdict::Reject { rule, reply: Reply::new(554, "5.7.1", text) };
        let table: Vec<(&str, &str, EnvelopeListVerdict)> = vec![
            (
                "Spam@Bad.Example",
                "a@example.com",
                reject(1, "<Spam@Bad.Example>: Sender address rejected: blacklisted"),
            ),
            ("x@y.org", "OLD@example.com", reject(2, "<OLD@example.com>: Recipient address rejected: blacklisted")),
            ("noise@bad.example", "a@example.com", EnvelopeListVerdict::Discard { rule: 3 }),
            ("boss@partner.example", "a@example.com", white(4, SenderDomain)),
            ("spam@bad.example", "postmaster@example.com", white(6, Recipient)),
            ("x@y.org", "trap@example.com", EnvelopeListVerdict::Discard { rule: 7 }),
            (
                "noise@bad.example",
                "old@example.com",
                reject(2, "<old@example.com>: Recipient address rejected: blacklisted"),
            ),
            ("", "a@example.com", EnvelopeListVerdict::Unlisted),
            ("x@y.org", "a@example.com", EnvelopeListVerdict::Unlisted),
        ];
        for (sender, rcpt, want) in table {
            assert_eq!(check_envelope(&s.rules, &index, ip, sender, rcpt), want, "{sender} -> {rcpt}");
        }
    }

    #[test]
    fn whitelist_skip_matrix_is_mailplus() {
        use RuleKind::*;
        // (kind, dnsbl, spf, antivirus, dkim, dmarc)
        let table = [
            (Ip, true, true, true, true, true),
            (Subnet, true, true, false, true, true),
            (Sender, false, true, true, false, false),
            (Recipient, false, true, true, false, false),
            (SenderDomain, false, true, true, true, true),
        ];
        for (kind, dnsbl, spf, antivirus, dkim, dmarc) in table {
            let s = SkipChecks::for_whitelist(kind);
            assert_eq!(
                (s.dnsbl, s.spf, s.antivirus, s.dkim, s.dmarc),
                (dnsbl, spf, antivirus, dkim, dmarc),
                "{kind:?}"
            );
            assert!(s.greylist && !s.spam, "{kind:?}");
        }
        let t = SkipChecks::trusted_network();
        assert!(t.spam && !t.spf && !t.dnsbl);
        assert_eq!(
            t.union(SkipChecks::for_whitelist(Ip)).names(),
            ["dnsbl", "spf", "antivirus", "dkim", "dmarc", "spam", "greylist"]
        );
    }
}
