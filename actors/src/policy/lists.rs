//! Black and white lists at connection time, by client address.
//!
//! A whitelist match wins over any blacklist match (MailPlus and Kerio both
//! let the whitelist override). A blacklisted client is refused before the
//! greeting with 554 5.7.1, or, with the discard action, served normally and
//! its messages dropped after the 250.

use consensus::state::{BlackAction, ListName, RuleSets};
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
}
