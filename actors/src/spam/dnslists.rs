//! DNS lists the spam stage asks: RBLs about the public IPs in the
//! Received headers (Kerio's "RBL checks on Received"; the connecting
//! client is screening's DNSBL), and URI blocklists about the registered
//! domains of the message's links (SURBL, Spamhaus DBL). What to ask and
//! what the answers mean are pure functions; `lookup` asks them all at
//! once on the thread's resolver, with one time bound.

use consensus::state::settings::{key, parse_zone_scores};
use consensus::AppliedState;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::Symbol;
use crate::content::mime::ParsedMessage;
use crate::message::headers::{fields, header_block};
use crate::policy::dnsbl::query_name;

/// One question: the name to look up and what a listing adds.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    pub name: String,
    pub zone: String,
    /// The IP or domain asked about.
    pub subject: String,
    pub score: f64,
    pub uri: bool,
}

/// The public IPs of the Received headers, newest first, each once.
pub fn received_ips(raw: &[u8], max: usize) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for (name, value) in fields(&header_block(raw)) {
        if name != "received" {
            continue;
        }
        let value = value.replace("IPv6:", "");
        for token in value.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
            let Ok(ip) = token.parse::<IpAddr>() else { continue };
            if is_public(ip) && !out.contains(&ip) {
                out.push(ip);
            }
        }
        if out.len() >= max {
            break;
        }
    }
    out.truncate(max);
    out
}

/// An address a message could have come from on the Internet: not private,
/// loopback, link-local, multicast, documentation or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let documentation = v4.octets()[0] == 192 && v4.octets()[1] == 0 && v4.octets()[2] == 2;
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || documentation
                || v4.octets()[0] == 0)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s & 0xfe00) == 0xfc00
                || (s & 0xffc0) == 0xfe80)
        }
    }
}

/// The registered domains (public suffix + one label) of the links, each once.
pub fn uri_domains(parsed: &ParsedMessage, max: usize) -> Vec<String> {
    // The same URIs the `uri` rules read.
    let hosts =
        super::rules::input::message_uris(parsed).into_iter().filter_map(|u| crate::content::html::url_host(&u));
    let mut out: Vec<String> = Vec::new();
    for host in hosts {
        if host.parse::<IpAddr>().is_ok() {
            continue;
        }
        let Some(domain) = psl::domain_str(&host) else { continue };
        let domain = domain.to_string();
        if !out.contains(&domain) {
            out.push(domain);
        }
        if out.len() >= max {
            break;
        }
    }
    out
}

/// Every question for this message under the settings.
pub fn queries(state: &AppliedState, raw: &[u8], parsed: &ParsedMessage) -> Vec<ListQuery> {
    let s = &state.state.settings;
    let rbls = parse_zone_scores(&s.text(key::SPAM_RECEIVED_RBL_ZONES)).unwrap_or_default();
    let uribls = parse_zone_scores(&s.text(key::SPAM_URIBL_ZONES)).unwrap_or_default();
    let mut out = Vec::new();
    if !rbls.is_empty() {
        for ip in received_ips(raw, s.uint(key::SPAM_RECEIVED_IPS_MAX) as usize) {
            for (zone, score) in &rbls {
                let name = query_name(ip, zone);
                out.push(ListQuery { name, zone: zone.clone(), subject: ip.to_string(), score: *score, uri: false });
            }
        }
    }
    if !uribls.is_empty() {
        for domain in uri_domains(parsed, s.uint(key::SPAM_URI_DOMAINS_MAX) as usize) {
            for (zone, score) in &uribls {
                let name = format!("{domain}.{zone}.");
                out.push(ListQuery { name, zone: zone.clone(), subject: domain.clone(), score: *score, uri: true });
            }
        }
    }
    out
}

/// The symbols the answers make: `RBL_RECEIVED` and `URIBL`, each zone's
/// score counted once however many of the message's IPs or domains it
/// lists (options name them). An answer outside 127.0.0.0/8 is a list's
/// error or a wildcard, not a listing.
pub fn symbols(queries: &[ListQuery], answers: &[Vec<Ipv4Addr>]) -> Vec<Symbol> {
    let mut out = Vec::new();
    for (uri, name) in [(false, "RBL_RECEIVED"), (true, "URIBL")] {
        let mut zones: Vec<&str> = Vec::new();
        let mut score = 0.0;
        let mut options = Vec::new();
        for (q, a) in queries.iter().zip(answers) {
            let listed =
                q.uri == uri && a.iter().any(|ip| ip.octets()[0] == 127 && *ip != Ipv4Addr::new(127, 255, 255, 254));
            if listed {
                options.push(format!("{} in {}", q.subject, q.zone));
                if !zones.contains(&q.zone.as_str()) {
                    zones.push(&q.zone);
                    score += q.score;
                }
            }
        }
        if !options.is_empty() {
            out.push(Symbol { name: name.into(), score: (score * 100.0).round() / 100.0, options });
        }
    }
    out
}

/// Asks every question at once; what has not answered within
/// `spam.dns_timeout_ms` counts as not listed.
pub async fn lookup(
    state: &AppliedState,
    nameservers: &[SocketAddr],
    raw: &[u8],
    parsed: &ParsedMessage,
) -> Vec<Symbol> {
    let queries = queries(state, raw, parsed);
    if queries.is_empty() {
        return Vec::new();
    }
    // The resolver itself (shared inside), not the thread's Rc: the stage's future moves between threads.
    let resolver = match crate::dns::resolver(nameservers) {
        Ok(r) => (*r).clone(),
        Err(e) => {
            tracing::warn!(error = %e, "spam DNS lists skipped");
            return Vec::new();
        }
    };
    let timeout = Duration::from_millis(state.state.settings.uint(key::SPAM_DNS_TIMEOUT_MS));
    let asks: Vec<crate::policy::dnsbl::DnsblQuery> = queries
        .iter()
        .map(|q| crate::policy::dnsbl::DnsblQuery {
            rule: 0,
            zone: q.zone.clone(),
            name: q.name.clone(),
            score: 0,
            filter: None,
        })
        .collect();
    let answers = crate::screening::lookups::dnsbl_answers(&resolver, &asks, timeout).await;
    symbols(&queries, &answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_ips_are_public_and_newest_first() {
        let raw = b"Received: from a (a.example [198.51.100.7]) by mx\r\nReceived: from b ([10.1.2.3]) by a\r\nReceived: from c (c [203.0.113.9] [2001:db8::1]) by b\r\nReceived: from d ([198.51.100.7])\r\n\r\nbody";
        assert_eq!(
            received_ips(raw, 5),
            ["198.51.100.7".parse::<IpAddr>().unwrap(), "203.0.113.9".parse().unwrap(), "2001:db8::1".parse().unwrap()]
        );
        assert_eq!(received_ips(raw, 1).len(), 1);
    }

    #[test]
    fn link_domains_are_registered_domains() {
        let raw = b"Content-Type: text/html\r\n\r\n<a href=\"http://www.shop.example.co.uk/x\">x</a> http://click.bad.example/y http://198.51.100.1/z https://bad.example/";
        let parsed = ParsedMessage::parse(raw);
        assert_eq!(uri_domains(&parsed, 10), ["example.co.uk", "bad.example"]);
    }

    #[test]
    fn each_listing_zone_counts_once() {
        let q = |subject: &str, zone: &str, score: f64, uri: bool| ListQuery {
            name: String::new(),
            zone: zone.into(),
            subject: subject.into(),
            score,
            uri,
        };
        let queries = [
            q("1.2.3.4", "a.test", 2.0, false),
            q("5.6.7.8", "a.test", 2.0, false),
            q("bad.example", "u.test", 4.0, true),
            q("ok.example", "u.test", 4.0, true),
        ];
        let hit = vec![Ipv4Addr::new(127, 0, 0, 2)];
        let answers = [hit.clone(), hit.clone(), hit, vec![Ipv4Addr::new(127, 255, 255, 254)]];
        let got = symbols(&queries, &answers);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].name.as_ref(), got[0].score, got[0].options.len()), ("RBL_RECEIVED", 2.0, 2));
        assert_eq!((got[1].name.as_ref(), got[1].score), ("URIBL", 4.0));
        assert_eq!(got[1].options, ["bad.example in u.test"]);
    }
}
