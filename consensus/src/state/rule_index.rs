//! Lookup tables over the rules, built once per rules version when the state
//! is published, so a screening decision costs a few hash lookups whatever
//! the number of rules (the screening benchmark runs 10,000).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use super::rules::{ListName, RuleKind, RuleSets};

#[derive(Debug, Default)]
pub struct RuleIndex {
    /// The `RuleSets::version` this index was built from.
    pub version: u64,
    /// `ip` rules and `subnet` rules, by network; a lookup truncates the
    /// client address to each prefix length in use.
    networks: HashMap<ipnet::IpNet, Vec<u64>>,
    prefixes_v4: BTreeSet<u8>,
    prefixes_v6: BTreeSet<u8>,
    senders: HashMap<String, Vec<u64>>,
    recipients: HashMap<String, Vec<u64>>,
    sender_domains: HashMap<String, Vec<u64>>,
    /// DNSBL zone rule ids, in id order.
    pub dnsbl: Vec<u64>,
}

impl RuleIndex {
    pub fn build(rules: &RuleSets) -> Self {
        let mut index = RuleIndex { version: rules.version, ..Default::default() };
        for (id, rule) in &rules.lists {
            let id = *id;
            match rule.kind {
                RuleKind::Ip | RuleKind::Subnet => {
                    let net = match rule.kind {
                        RuleKind::Ip => rule.value.parse::<IpAddr>().ok().map(ipnet::IpNet::from),
                        _ => rule.value.parse::<ipnet::IpNet>().ok(),
                    };
                    let Some(net) = net else { continue };
                    match net {
                        ipnet::IpNet::V4(n) => index.prefixes_v4.insert(n.prefix_len()),
                        ipnet::IpNet::V6(n) => index.prefixes_v6.insert(n.prefix_len()),
                    };
                    index.networks.entry(net).or_default().push(id);
                }
                RuleKind::Sender => index.senders.entry(rule.value.clone()).or_default().push(id),
                RuleKind::Recipient => index.recipients.entry(rule.value.clone()).or_default().push(id),
                RuleKind::SenderDomain => index.sender_domains.entry(rule.value.clone()).or_default().push(id),
                RuleKind::Zone if rule.list == ListName::Dnsbl => index.dnsbl.push(id),
                RuleKind::Zone => {}
            }
        }
        index
    }

    /// Ids of the ip and subnet rules (any list) covering `ip`.
    pub fn by_ip(&self, ip: IpAddr) -> Vec<u64> {
        let mut out = Vec::new();
        let prefixes = match ip {
            IpAddr::V4(_) => &self.prefixes_v4,
            IpAddr::V6(_) => &self.prefixes_v6,
        };
        for len in prefixes {
            if let Ok(net) = ipnet::IpNet::new(ip, *len) {
                if let Some(ids) = self.networks.get(&net.trunc()) {
                    out.extend_from_slice(ids);
                }
            }
        }
        out
    }

    /// Ids of the sender rules for this mailbox key.
    pub fn by_sender(&self, key: &str) -> &[u64] {
        self.senders.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn by_recipient(&self, key: &str) -> &[u64] {
        self.recipients.get(key).map_or(&[], Vec::as_slice)
    }

    pub fn by_sender_domain(&self, domain: &str) -> &[u64] {
        self.sender_domains.get(domain).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::rules::ListRule;

    #[test]
    fn index_finds_what_a_scan_finds() {
        let mut rules = RuleSets::default();
        let add = |rules: &mut RuleSets, list, kind, value: &str| rules.add(ListRule::new(list, kind, value)).unwrap();
        let a = add(&mut rules, ListName::Black, RuleKind::Subnet, "192.0.2.0/24");
        let b = add(&mut rules, ListName::White, RuleKind::Ip, "192.0.2.7");
        let c = add(&mut rules, ListName::Greylist, RuleKind::Subnet, "192.0.0.0/16");
        let d = add(&mut rules, ListName::Black, RuleKind::Subnet, "2001:db8::/32");
        let e = add(&mut rules, ListName::Black, RuleKind::Sender, "Spam@Bad.example");
        let index = RuleIndex::build(&rules);
        let mut hits = index.by_ip("192.0.2.7".parse().unwrap());
        hits.sort();
        assert_eq!(hits, vec![a, b, c]);
        assert_eq!(index.by_ip("192.0.3.1".parse().unwrap()), vec![c]);
        assert_eq!(index.by_ip("2001:db8:1::5".parse().unwrap()), vec![d]);
        assert!(index.by_ip("10.0.0.1".parse().unwrap()).is_empty());
        assert_eq!(index.by_sender("spam@bad.example"), &[e]);
        for ip in ["192.0.2.7", "192.0.3.1", "2001:db8::1", "10.1.1.1", "::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut scan: Vec<u64> = rules.lists.iter().filter(|(_, r)| r.matches_ip(ip)).map(|(id, _)| *id).collect();
            let mut indexed = index.by_ip(ip);
            scan.sort();
            indexed.sort();
            assert_eq!(scan, indexed, "{ip}");
        }
    }
}
