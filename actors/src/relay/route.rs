//! Where mail for a domain goes: MX lookup (RFC 5321 §5.1), with the
//! implicit MX (the domain's own A/AAAA) when there is none, RFC 7505's null
//! MX, and a smarthost that replaces all of it. The ordering rules are pure
//! functions; the lookups are thin calls into hickory.

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use rand::seq::SliceRandom;
use std::net::{IpAddr, SocketAddr};

use crate::message::Failure;

/// A host to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub host: String,
    pub port: u16,
}

/// What the MX lookup said, before ordering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MxAnswer {
    Records(Vec<(u16, String)>),
    /// NOERROR with no MX records: use the domain itself.
    NoRecords,
    /// NXDOMAIN.
    NoDomain,
}

/// Orders MX hosts by preference, shuffling equal preferences (RFC 5321
/// §5.1) so load spreads; a lone "." is a null MX (RFC 7505): no mail.
pub fn order_hops(domain: &str, answer: MxAnswer, port: u16, shuffle: bool) -> Result<Vec<Hop>, Failure> {
    let mut records = match answer {
        MxAnswer::NoDomain => return Err(Failure::local("5.1.2", format!("host or domain name not found: {domain}"))),
        MxAnswer::NoRecords => return Ok(vec![Hop { host: domain.to_string(), port }]),
        MxAnswer::Records(r) => r,
    };
    if records.iter().any(|(_, host)| host.is_empty() || host == ".") {
        return Err(Failure::local("5.1.10", format!("{domain} accepts no mail (null MX)")));
    }
    if shuffle {
        records.shuffle(&mut rand::thread_rng());
    }
    records.sort_by_key(|(preference, _)| *preference);
    let mut hops: Vec<Hop> = Vec::new();
    for (_, host) in records {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if !hops.iter().any(|h| h.host == host) {
            hops.push(Hop { host, port });
        }
    }
    Ok(hops)
}

/// Splits `host`, `host:port`, `[host]:port` or `[ipv6]:port` (Postfix relayhost spelling).
pub fn parse_smarthost(text: &str, default_port: u16) -> Result<Hop, String> {
    let text = text.trim();
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(|| format!("{text:?}: missing ']'"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("{text:?}: bad port"))?,
            None if after.is_empty() => default_port,
            None => return Err(format!("{text:?}: unexpected text after ']'")),
        };
        (inside.to_string(), port)
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_string(), p.parse().map_err(|_| format!("{text:?}: bad port"))?),
            _ => (text.to_string(), default_port),
        }
    };
    if host.is_empty() {
        return Err(format!("{text:?}: empty host"));
    }
    Ok(Hop { host, port })
}

/// The hops for `domain` (A-label form), in the order to try them.
pub async fn hops_for(resolver: &TokioResolver, domain: &str, smarthost: &str, port: u16) -> Result<Vec<Hop>, Failure> {
    if !smarthost.is_empty() {
        return parse_smarthost(smarthost, port)
            .map(|hop| vec![hop])
            .map_err(|e| Failure::local("4.3.5", format!("relay.smarthost: {e}")));
    }
    let answer = match resolver.mx_lookup(format!("{domain}.")).await {
        Ok(lookup) => MxAnswer::Records(
            lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect(),
        ),
        Err(e) if e.is_nx_domain() => MxAnswer::NoDomain,
        Err(e) if e.is_no_records_found() => MxAnswer::NoRecords,
        Err(e) => return Err(Failure::local("4.4.3", format!("MX lookup for {domain} failed: {e}"))),
    };
    let answer = match answer {
        MxAnswer::Records(r) if r.is_empty() => MxAnswer::NoRecords,
        other => other,
    };
    order_hops(domain, answer, port, true)
}

/// The addresses of one hop (an IP literal stands for itself).
pub async fn addresses(resolver: &TokioResolver, hop: &Hop) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = hop.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, hop.port)]);
    }
    let lookup = resolver.lookup_ip(format!("{}.", hop.host)).await.map_err(|e| format!("{}: {e}", hop.host))?;
    Ok(lookup.iter().map(|ip| SocketAddr::new(ip, hop.port)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(r: Result<Vec<Hop>, Failure>) -> Vec<String> {
        r.unwrap().into_iter().map(|h| h.host).collect()
    }

    #[test]
    fn mx_ordering_table() {
        let recs = |v: &[(u16, &str)]| MxAnswer::Records(v.iter().map(|(p, h)| (*p, h.to_string())).collect());
        assert_eq!(
            hosts(order_hops("b.org", recs(&[(20, "mx2.b.org."), (10, "MX1.b.org."), (30, "mx1.b.org.")]), 25, false)),
            ["mx1.b.org", "mx2.b.org"]
        );
        assert_eq!(hosts(order_hops("b.org", MxAnswer::NoRecords, 25, false)), ["b.org"]);
        assert_eq!(order_hops("b.org", MxAnswer::NoDomain, 25, false).unwrap_err().status, "5.1.2");
        assert_eq!(order_hops("b.org", recs(&[(0, ".")]), 25, false).unwrap_err().status, "5.1.10");
        // Shuffling never breaks preference order.
        for _ in 0..50 {
            let got = hosts(order_hops("b.org", recs(&[(10, "a."), (10, "b."), (5, "c."), (20, "d.")]), 25, true));
            assert_eq!(got[0], "c");
            assert_eq!(got[3], "d");
        }
    }

    #[test]
    fn smarthost_table() {
        let ok = |t: &str| parse_smarthost(t, 25).map(|h| (h.host, h.port));
        assert_eq!(ok("relay.isp.net"), Ok(("relay.isp.net".into(), 25)));
        assert_eq!(ok("relay.isp.net:587"), Ok(("relay.isp.net".into(), 587)));
        assert_eq!(ok("[relay.isp.net]:2525"), Ok(("relay.isp.net".into(), 2525)));
        assert_eq!(ok("[2001:db8::1]:26"), Ok(("2001:db8::1".into(), 26)));
        assert_eq!(ok("2001:db8::1"), Ok(("2001:db8::1".into(), 25)));
        assert!(ok("relay:port").is_err());
        assert!(ok("[relay").is_err());
        assert!(ok("").is_err());
    }
}
