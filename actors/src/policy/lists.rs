//! Black and white lists at connection time, by client address.
//!
//! A whitelist match wins over any blacklist match (MailPlus and Kerio both
//! let the whitelist override). A blacklisted client is refused before the
//! greeting with 554 5.7.1, or, with the discard action, served normally and
//! its messages dropped after the 250.

use consensus::address::MailAddress;
use consensus::state::{BlackAction, ListName, ListRule, RuleKind, RuleSets};
use std::net::IpAddr;

use crate::smtp::Reply;

/// What the lists say about a client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientListVerdict {
    /// No rule matched.
    Unlisted,
    /// Whitelisted by the rule with this id.
    Whitelisted(u64),
    /// Refuse the connection with this reply.
    Refuse { rule: u64, reply: Reply },
    /// Accept, then drop every message silently.
    Discard { rule: u64 },
}

pub fn check_client(rules: &RuleSets, ip: IpAddr) -> ClientListVerdict {
    let mut black = None;
    for (id, rule) in &rules.lists {
        if !rule.matches_ip(ip) {
            continue;
        }
        match rule.list {
            ListName::White => return ClientListVerdict::Whitelisted(*id),
            ListName::Black => {
                // Reject beats discard when both match.
                let stronger = match black {
                    None => true,
                    Some((_, BlackAction::Discard)) => rule.action == BlackAction::Reject,
                    Some((_, BlackAction::Reject)) => false,
                };
                if stronger {
                    black = Some((*id, rule.action));
                }
            }
        }
    }
    match black {
        None => ClientListVerdict::Unlisted,
        Some((rule, BlackAction::Reject)) => {
            let text = format!("Client host [{ip}] blocked by blacklist rule {rule}");
            ClientListVerdict::Refuse { rule, reply: Reply::new(554, "5.7.1", &text) }
        }
        Some((rule, BlackAction::Discard)) => ClientListVerdict::Discard { rule },
    }
}

/// What the lists say about one recipient of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvelopeListVerdict {
    Unlisted,
    Whitelisted(u64),
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

/// The parts of an envelope rules can match, parsed once.
struct Envelope {
    ip: IpAddr,
    sender: Option<MailAddress>,
    recipient: Option<MailAddress>,
}

fn matches(rule: &ListRule, e: &Envelope) -> bool {
    match rule.kind {
        RuleKind::Ip | RuleKind::Subnet => rule.matches_ip(e.ip),
        RuleKind::Sender => e.sender.as_ref().is_some_and(|a| a.key() == rule.value),
        RuleKind::Recipient => e.recipient.as_ref().is_some_and(|a| a.key() == rule.value),
        RuleKind::SenderDomain => e.sender.as_ref().is_some_and(|a| a.domain().as_str() == rule.value),
    }
}

/// Checks client, sender and recipient against every rule: any whitelist
/// match wins; among blacklist matches reject beats discard.
pub fn check_envelope(rules: &RuleSets, ip: IpAddr, sender: &str, recipient: &str) -> EnvelopeListVerdict {
    let e = Envelope { ip, sender: MailAddress::parse(sender).ok(), recipient: MailAddress::parse(recipient).ok() };
    let mut black: Option<(u64, &ListRule)> = None;
    for (id, rule) in rules.lists.iter().filter(|(_, r)| matches(r, &e)) {
        match rule.list {
            ListName::White => return EnvelopeListVerdict::Whitelisted(*id),
            ListName::Black => {
                let stronger =
                    black.is_none_or(|(_, b)| b.action == BlackAction::Discard && rule.action == BlackAction::Reject);
                if stronger {
                    black = Some((*id, rule));
                }
            }
        }
    }
    match black {
        None => EnvelopeListVerdict::Unlisted,
        Some((rule, r)) if r.action == BlackAction::Discard => EnvelopeListVerdict::Discard { rule },
        Some((rule, r)) => {
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
    use consensus::state::{ClusterState, ListRule, RuleKind};

    fn state(rules: &[(ListName, RuleKind, &str, BlackAction)]) -> ClusterState {
        let mut s = ClusterState::default();
        for (list, kind, value, action) in rules {
            let rule = ListRule {
                list: *list,
                kind: *kind,
                value: value.to_string(),
                action: *action,
                comment: String::new(),
            };
            s.apply(&Command::AddListRule { rule }, 0).unwrap();
        }
        s
    }

    #[test]
    fn client_table() {
        use BlackAction::*;
        use ListName::*;
        use RuleKind::*;
        let s = state(&[
            (Black, Subnet, "192.0.2.0/24", Reject),    // 1
            (White, Ip, "192.0.2.10", Reject),          // 2
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
            ("192.0.2.10", ClientListVerdict::Whitelisted(2)),
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
            assert_eq!(&check_client(&s.rules, ip.parse().unwrap()), want, "{ip}");
        }
    }

    #[test]
    fn envelope_table() {
        use BlackAction::*;
        use ListName::*;
        use RuleKind::*;
        let s = state(&[
            (Black, Sender, "spam@bad.example", Reject),          // 1
            (Black, Recipient, "old@example.com", Reject),        // 2
            (Black, Sender, "noise@bad.example", Discard),        // 3
            (White, SenderDomain, "partner.example", Reject),     // 4
            (Black, Sender, "boss@partner.example", Reject),      // 5 (whitelisted domain wins)
            (White, Recipient, "postmaster@example.com", Reject), // 6
            (Black, Recipient, "trap@example.com", Discard),      // 7
        ]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let reject = |rule, text: &str| EnvelopeListVerdict::Reject { rule, reply: Reply::new(554, "5.7.1", text) };
        let table: Vec<(&str, &str, EnvelopeListVerdict)> = vec![
            (
                "Spam@Bad.Example",
                "a@example.com",
                reject(1, "<Spam@Bad.Example>: Sender address rejected: blacklisted"),
            ),
            ("x@y.org", "OLD@example.com", reject(2, "<OLD@example.com>: Recipient address rejected: blacklisted")),
            ("noise@bad.example", "a@example.com", EnvelopeListVerdict::Discard { rule: 3 }),
            ("boss@partner.example", "a@example.com", EnvelopeListVerdict::Whitelisted(4)),
            ("spam@bad.example", "postmaster@example.com", EnvelopeListVerdict::Whitelisted(6)),
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
            assert_eq!(check_envelope(&s.rules, ip, sender, rcpt), want, "{sender} -> {rcpt}");
        }
    }
}
