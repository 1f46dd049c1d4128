//! Black and white lists (MailPlus "Security > Black and white list", Kerio
//! "Spam filter > Black/white lists"): rules by client IP, IP network,
//! sender, recipient or (whitelist only) sender domain. Values are
//! normalised on the way in, so one rule can never exist in two spellings.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::address::{DomainName, MailAddress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListName {
    Black,
    White,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    Ip,
    Subnet,
    Sender,
    Recipient,
    SenderDomain,
}

/// What a blacklist match does; whitelist rules carry `Reject` and ignore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlackAction {
    #[default]
    Reject,
    /// Accept and drop silently (logged).
    Discard,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRule {
    pub list: ListName,
    pub kind: RuleKind,
    /// Canonical value: an IP, a CIDR network, a mailbox key or a domain.
    pub value: String,
    #[serde(default)]
    pub action: BlackAction,
    #[serde(default)]
    pub comment: String,
}

/// The rule sets that screening, authentication and content stages read.
/// Each stage adds its own typed table here, so that it replicates and
/// exports with the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSets {
    /// Black and white list rules by id.
    #[serde(default)]
    pub lists: BTreeMap<u64, ListRule>,
    /// The id the next rule gets (ids are never reused).
    #[serde(default)]
    pub next_rule_id: u64,
}

/// Why a rule was refused: the field at fault and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub field: &'static str,
    pub reason: String,
}

/// Parses `a.b.c.d/len`, `a.b.c.d/m.m.m.m` (address/mask) or an IPv6 CIDR.
pub fn parse_subnet(text: &str) -> Result<ipnet::IpNet, String> {
    let (addr, mask) = text.split_once('/').ok_or_else(|| format!("{text:?} has no /prefix or /mask"))?;
    let net = if mask.contains('.') {
        let addr: std::net::Ipv4Addr = addr.parse().map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let mask: std::net::Ipv4Addr = mask.parse().map_err(|_| format!("{mask:?} is not a netmask"))?;
        ipnet::Ipv4Net::with_netmask(addr, mask)
            .map(ipnet::IpNet::V4)
            .map_err(|_| format!("{mask} is not a contiguous netmask"))?
    } else {
        text.parse::<ipnet::IpNet>().map_err(|_| format!("{text:?} is not a network"))?
    };
    Ok(net.trunc())
}

impl ListRule {
    /// Checks and normalises a rule as an operator wrote it.
    pub fn normalised(mut self) -> Result<Self, RuleError> {
        let bad = |field, reason: String| RuleError { field, reason };
        let raw = self.value.trim().to_string();
        self.value = match self.kind {
            RuleKind::Ip => {
                raw.parse::<IpAddr>().map_err(|_| bad("value", format!("{raw:?} is not an IP address")))?.to_string()
            }
            RuleKind::Subnet => parse_subnet(&raw).map_err(|e| bad("value", e))?.to_string(),
            RuleKind::Sender | RuleKind::Recipient => {
                MailAddress::parse(&raw).map_err(|e| bad("value", e.to_string()))?.key()
            }
            RuleKind::SenderDomain => DomainName::parse(&raw).map_err(|e| bad("value", e.to_string()))?.to_string(),
        };
        if self.kind == RuleKind::SenderDomain && self.list == ListName::Black {
            return Err(bad("kind", "sender-domain rules exist only in the whitelist".into()));
        }
        if self.list == ListName::White {
            self.action = BlackAction::Reject;
        }
        if self.comment.len() > 200 || self.comment.chars().any(char::is_control) {
            return Err(bad("comment", "at most 200 bytes, no control characters".into()));
        }
        Ok(self)
    }

    /// True if this IP or network rule covers `ip`.
    pub fn matches_ip(&self, ip: IpAddr) -> bool {
        match self.kind {
            RuleKind::Ip => self.value.parse::<IpAddr>().is_ok_and(|v| v == ip),
            RuleKind::Subnet => self.value.parse::<ipnet::IpNet>().is_ok_and(|n| n.contains(&ip)),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(list: ListName, kind: RuleKind, value: &str) -> ListRule {
        ListRule { list, kind, value: value.into(), action: BlackAction::Reject, comment: String::new() }
    }

    #[test]
    fn rules_are_normalised_or_refused_with_the_field() {
        use ListName::*;
        use RuleKind::*;
        let ok: &[(ListName, RuleKind, &str, &str)] = &[
            (Black, Ip, " 192.0.2.7 ", "192.0.2.7"),
            (Black, Ip, "2001:DB8::1", "2001:db8::1"),
            (Black, Subnet, "192.0.2.9/24", "192.0.2.0/24"),
            (White, Subnet, "10.1.2.3/255.255.0.0", "10.1.0.0/16"),
            (Black, Sender, "Spam@Bad.Example", "spam@bad.example"),
            (White, Recipient, "postmaster@example.com", "postmaster@example.com"),
            (White, SenderDomain, "Partner.EXAMPLE.", "partner.example"),
        ];
        for (list, kind, raw, want) in ok {
            assert_eq!(rule(*list, *kind, raw).normalised().unwrap().value, *want, "{raw}");
        }
        let bad: &[(ListName, RuleKind, &str, &str)] = &[
            (Black, Ip, "192.0.2.0/24", "value"),
            (Black, Subnet, "192.0.2.7", "value"),
            (Black, Subnet, "10.0.0.0/255.0.255.0", "value"),
            (Black, Sender, "not-an-address", "value"),
            (Black, SenderDomain, "bad.example", "kind"),
        ];
        for (list, kind, raw, field) in bad {
            assert_eq!(rule(*list, *kind, raw).normalised().unwrap_err().field, *field, "{raw}");
        }
    }

    #[test]
    fn ip_matching() {
        let net = rule(ListName::Black, RuleKind::Subnet, "192.0.2.0/24").normalised().unwrap();
        assert!(net.matches_ip("192.0.2.200".parse().unwrap()));
        assert!(!net.matches_ip("192.0.3.1".parse().unwrap()));
        let one = rule(ListName::Black, RuleKind::Ip, "::1").normalised().unwrap();
        assert!(one.matches_ip("::1".parse().unwrap()));
        assert!(!one.matches_ip("127.0.0.1".parse().unwrap()));
    }
}
