//! DNS blocklists, postscreen-style: each zone has a score and an optional
//! filter on the answer (127.0.0.2–127.0.0.11 for a list that also answers
//! 127.255.255.x for errors); the client is refused at connect when the
//! scores of the zones that list it reach the threshold. The lookups
//! themselves run in the screening actor (in parallel, with a timeout); this
//! module only says what to ask and what the answers mean.

use consensus::state::{RuleIndex, RuleSets};
use std::net::{IpAddr, Ipv4Addr};

use crate::smtp::Reply;

/// One zone to ask about one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsblQuery {
    pub rule: u64,
    pub zone: String,
    /// `4.3.2.1.zone.` for 1.2.3.4; nibbles for IPv6 (RFC 5782).
    pub name: String,
    pub score: u32,
    pub filter: Option<(Ipv4Addr, Ipv4Addr)>,
}

/// The name RFC 5782 asks for: the address reversed under the zone.
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}.", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut out = String::with_capacity(64 + zone.len() + 1);
            for byte in v6.octets().iter().rev() {
                out.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            out.push_str(zone);
            out.push('.');
            out
        }
    }
}

pub fn queries(rules: &RuleSets, index: &RuleIndex, ip: IpAddr) -> Vec<DnsblQuery> {
    index
        .dnsbl
        .iter()
        .filter_map(|id| rules.lists.get(id).map(|r| (*id, r)))
        .map(|(rule, r)| DnsblQuery {
            rule,
            zone: r.value.clone(),
            name: query_name(ip, &r.value),
            score: r.score,
            filter: r.reply_filter(),
        })
        .collect()
}

/// The sum of scores and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsblVerdict {
    /// Below the threshold; `listed` names the zones that did list the client.
    Pass {
        score: u32,
        listed: Vec<String>,
    },
    Refuse {
        score: u32,
        reply: Reply,
    },
}

/// Scores the answers: `answers[i]` holds the A records returned for
/// `queries[i]` (empty for NXDOMAIN, a timeout or an error).
pub fn score(ip: IpAddr, queries: &[DnsblQuery], answers: &[Vec<Ipv4Addr>], threshold: u32) -> DnsblVerdict {
    let mut total = 0u32;
    let mut listed = Vec::new();
    for (q, a) in queries.iter().zip(answers) {
        let counts = a.iter().any(|addr| q.filter.is_none_or(|(lo, hi)| *addr >= lo && *addr <= hi));
        if counts {
            total = total.saturating_add(q.score);
            listed.push(q.zone.clone());
        }
    }
    if threshold > 0 && total >= threshold && !listed.is_empty() {
        let text = format!("Service unavailable; client [{ip}] blocked using {}", listed.join(", "));
        return DnsblVerdict::Refuse { score: total, reply: Reply::new(554, "5.7.1", &text) };
    }
    DnsblVerdict::Pass { score: total, listed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(zone: &str, score: u32, filter: Option<(&str, &str)>) -> DnsblQuery {
        DnsblQuery {
            rule: 1,
            zone: zone.into(),
            name: String::new(),
            score,
            filter: filter.map(|(a, b)| (a.parse().unwrap(), b.parse().unwrap())),
        }
    }

    fn a(addrs: &[&str]) -> Vec<Ipv4Addr> {
        addrs.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn names() {
        assert_eq!(query_name("192.0.2.7".parse().unwrap(), "bl.example"), "7.2.0.192.bl.example.");
        let v6 = query_name("2001:db8::1".parse().unwrap(), "bl.example");
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.bl.example."), "{v6}");
        assert_eq!(v6.split('.').count(), 32 + 3);
    }

    #[test]
    fn scoring_table() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let qs = [q("one.example", 1, None), q("two.example", 2, Some(("127.0.0.2", "127.0.0.11")))];
        // (answers for one, for two, threshold, refused?, score)
        type Case<'a> = (&'a [&'a str], &'a [&'a str], u32, bool, u32);
        let table: &[Case] = &[
            (&[], &[], 2, false, 0),
            (&["127.0.0.2"], &[], 2, false, 1),            // below the threshold
            (&[], &["127.0.0.4"], 2, true, 2),             // at the threshold
            (&["127.0.0.2"], &["127.0.0.11"], 3, true, 3), // summed
            (&[], &["127.255.255.254"], 2, false, 0),      // outside the filter: an error code, not a listing
            (&["127.0.0.2"], &["127.0.0.12"], 2, false, 1),
            (&["127.0.0.2"], &[], 1, true, 1),
        ];
        for (one, two, threshold, refused, want) in table {
            let v = score(ip, &qs, &[a(one), a(two)], *threshold);
            match v {
                DnsblVerdict::Refuse { score, reply } => {
                    assert!(*refused, "{one:?} {two:?}");
                    assert_eq!(score, *want);
                    assert_eq!((reply.code, reply.enhanced), (554, "5.7.1"));
                    assert!(reply.text.contains("[192.0.2.7]"));
                }
                DnsblVerdict::Pass { score, .. } => {
                    assert!(!*refused, "{one:?} {two:?}");
                    assert_eq!(score, *want);
                }
            }
        }
    }
}
