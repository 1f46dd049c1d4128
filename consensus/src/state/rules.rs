//! Screening rules, one table with one id space: black and white lists
//! (MailPlus "Security > Black and white list", Kerio "Spam filter >
//! Black/white lists"), greylisting rules and DNSBL zones. Each rule names
//! its list, its kind and a value; `normalised` checks that the combination
//! makes sense and puts the value in canonical form, so one rule can never
//! exist in two spellings.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use crate::address::{DomainName, MailAddress};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListName {
    Black,
    White,
    /// Greylisting rules: which clients are greylisted, never, or always.
    Greylist,
    /// DNS blocklist zones with their scores.
    Dnsbl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuleKind {
    Ip,
    Subnet,
    Sender,
    Recipient,
    SenderDomain,
    /// A DNSBL zone (`zen.example.org`).
    Zone,
}

/// What a match does. `Default` is what an operator leaves out; it is
/// replaced by the list's default when the rule is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    #[default]
    Default,
    /// Blacklist: refuse (the blacklist default).
    Reject,
    /// Blacklist: accept and drop silently (logged).
    Discard,
    /// Whitelist: accept and skip later checks.
    Accept,
    /// Greylist rule: greylist these clients (the greylist default).
    Greylist,
    /// Greylist rule: never greylist these clients.
    Never,
    /// Greylist rule: greylist even clients that a whitelist or the
    /// auto-whitelist would let through.
    Always,
    /// DNSBL zone: a listing adds the zone's score.
    Score,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListRule {
    pub list: ListName,
    pub kind: RuleKind,
    /// Canonical value: an IP, a CIDR network, a mailbox key, a domain or a zone.
    pub value: String,
    #[serde(default)]
    pub action: RuleAction,
    /// DNSBL only: what a listing adds to the client's score (default 1).
    #[serde(default)]
    pub score: u32,
    /// DNSBL only: the answers that count, `127.0.0.2` or `127.0.0.2-127.0.0.11`;
    /// empty means any answer.
    #[serde(default)]
    pub reply: String,
    #[serde(default)]
    pub comment: String,
}

/// The rule table that screening, authentication and content stages read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleSets {
    /// Every rule by id.
    #[serde(default)]
    pub lists: BTreeMap<u64, ListRule>,
    /// The id the next rule gets (ids are never reused).
    #[serde(default)]
    pub next_rule_id: u64,
    /// Bumped by every change to the rules, so readers can tell when an index
    /// built from them is stale.
    #[serde(default)]
    pub version: u64,
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
    /// A rule with the list's default action and no DNSBL fields.
    pub fn new(list: ListName, kind: RuleKind, value: &str) -> Self {
        Self {
            list,
            kind,
            value: value.into(),
            action: RuleAction::Default,
            score: 0,
            reply: String::new(),
            comment: String::new(),
        }
    }

    /// Checks and normalises a rule as an operator wrote it.
    pub fn normalised(mut self) -> Result<Self, RuleError> {
        use ListName::*;
        use RuleAction as A;
        let bad = |field, reason: String| RuleError { field, reason };
        let kinds: &[RuleKind] = match self.list {
            Black => &[RuleKind::Ip, RuleKind::Subnet, RuleKind::Sender, RuleKind::Recipient],
            White => &[RuleKind::Ip, RuleKind::Subnet, RuleKind::Sender, RuleKind::Recipient, RuleKind::SenderDomain],
            Greylist => &[RuleKind::Ip, RuleKind::Subnet, RuleKind::SenderDomain],
            Dnsbl => &[RuleKind::Zone],
        };
        if !kinds.contains(&self.kind) {
            let names: Vec<String> = kinds.iter().map(|k| kind_name(*k)).collect();
            return Err(bad("kind", format!("the {} list takes {}", list_name(self.list), names.join(", "))));
        }
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
            // Zones are queried in ASCII: keep the A-label form.
            RuleKind::Zone => DomainName::parse(&raw).map_err(|e| bad("value", e.to_string()))?.ascii(),
        };
        let allowed: &[RuleAction] = match self.list {
            Black => &[A::Reject, A::Discard],
            White => &[A::Accept],
            Greylist => &[A::Greylist, A::Never, A::Always],
            Dnsbl => &[A::Score],
        };
        if self.action == A::Default {
            self.action = allowed[0];
        }
        if !allowed.contains(&self.action) {
            let names: Vec<String> = allowed.iter().map(|a| action_name(*a)).collect();
            return Err(bad("action", format!("the {} list takes {}", list_name(self.list), names.join(", "))));
        }
        if self.list == Dnsbl {
            if self.score == 0 {
                self.score = 1;
            }
            if self.score > 1000 {
                return Err(bad("score", format!("{} is above 1000", self.score)));
            }
            self.reply = match parse_reply_filter(self.reply.trim()).map_err(|e| bad("reply", e))? {
                None => String::new(),
                Some((a, b)) if a == b => a.to_string(),
                Some((a, b)) => format!("{a}-{b}"),
            };
        } else if self.score != 0 || !self.reply.is_empty() {
            let field = if self.score != 0 { "score" } else { "reply" };
            return Err(bad(field, "only DNSBL zones have a score and a reply filter".into()));
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

    /// For a DNSBL zone: the range of answers that count, `None` for any.
    pub fn reply_filter(&self) -> Option<(Ipv4Addr, Ipv4Addr)> {
        parse_reply_filter(&self.reply).ok().flatten()
    }

    /// True when two rules are the same rule (whatever their comments).
    pub fn same_as(&self, other: &ListRule) -> bool {
        self.list == other.list && self.kind == other.kind && self.value == other.value
    }
}

/// `127.0.0.2` or `127.0.0.2-127.0.0.11`; empty is no filter.
pub fn parse_reply_filter(text: &str) -> Result<Option<(Ipv4Addr, Ipv4Addr)>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let parse = |t: &str| t.trim().parse::<Ipv4Addr>().map_err(|_| format!("{t:?} is not an IPv4 address"));
    let (a, b) = (parse(a)?, parse(b)?);
    if a > b {
        return Err(format!("{a} is above {b}"));
    }
    Ok(Some((a, b)))
}

pub fn list_name(list: ListName) -> String {
    serde_json::to_value(list).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

pub fn kind_name(kind: RuleKind) -> String {
    serde_json::to_value(kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

pub fn action_name(action: RuleAction) -> String {
    serde_json::to_value(action).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default()
}

impl RuleSets {
    /// Adds a normalised rule under the next id; refuses a duplicate.
    pub fn add(&mut self, rule: ListRule) -> Result<u64, AddRuleError> {
        let rule = rule.normalised().map_err(AddRuleError::Bad)?;
        if let Some((id, _)) = self.lists.iter().find(|(_, r)| r.same_as(&rule)) {
            return Err(AddRuleError::Exists(*id));
        }
        let id = self.next_rule_id.max(1);
        self.next_rule_id = id + 1;
        self.lists.insert(id, rule);
        self.version += 1;
        Ok(id)
    }

    pub fn remove(&mut self, id: u64) -> Option<ListRule> {
        let removed = self.lists.remove(&id)?;
        self.version += 1;
        Some(removed)
    }
}

/// Why `RuleSets::add` refused a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddRuleError {
    Bad(RuleError),
    Exists(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(list: ListName, kind: RuleKind, value: &str) -> ListRule {
        ListRule::new(list, kind, value)
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
