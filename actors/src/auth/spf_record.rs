//! Checks of the published SPF record that mail-auth 0.13 does not make:
//! RFC 7208 §4.5 (more than one record is a permerror) and §4.6 (a term
//! that is not a known mechanism or a `name=value` modifier, or a malformed
//! ip4/ip6 network, is a permerror). mail-auth takes the first record that
//! parses and skips terms it cannot read; these checks run first, on the
//! top-level record only (included and redirected records are mail-auth's).

use std::net::{Ipv4Addr, Ipv6Addr};

/// The SPF records among a name's TXT records (each TXT's strings joined).
pub fn spf_records(txt: &[String]) -> Vec<&str> {
    txt.iter()
        .map(String::as_str)
        .filter(|t| {
            let t = t.trim_start();
            t.len() >= 6 && t[..6].eq_ignore_ascii_case("v=spf1") && t[6..].chars().next().is_none_or(|c| c == ' ')
        })
        .collect()
}

/// Why the record set is a permerror, if it is.
pub fn permerror(txt: &[String]) -> Option<String> {
    let records = spf_records(txt);
    if records.len() > 1 {
        return Some(format!("{} SPF records published; exactly one is allowed", records.len()));
    }
    let record = records.first()?;
    record
        .split(' ')
        .skip(1)
        .filter(|t| !t.is_empty())
        .find_map(|term| bad_term(term).map(|why| format!("{term:?}: {why}")))
}

fn bad_term(term: &str) -> Option<&'static str> {
    // A modifier: name=value, name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ).
    if let Some((name, _)) = term.split_once('=') {
        let ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        return (!ok).then_some("not a valid modifier name");
    }
    let body = term.strip_prefix(['+', '-', '~', '?']).unwrap_or(term);
    let (name, arg) = match body.find([':', '/']) {
        Some(i) => (&body[..i], Some(&body[i..])),
        None => (body, None),
    };
    match name.to_ascii_lowercase().as_str() {
        "all" => arg.is_some().then_some("all takes no argument"),
        "include" | "exists" => arg.is_none_or(|a| !a.starts_with(':')).then_some("needs a domain"),
        "a" | "mx" | "ptr" => None,
        "ip4" => {
            let net = arg.and_then(|a| a.strip_prefix(':'))?;
            let (addr, len) = net.split_once('/').unwrap_or((net, "32"));
            let ok = addr.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32);
            (!ok).then_some("not an IPv4 network")
        }
        "ip6" => {
            let net = arg.and_then(|a| a.strip_prefix(':'))?;
            let (addr, len) = net.split_once('/').unwrap_or((net, "128"));
            let ok = addr.parse::<Ipv6Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 128);
            (!ok).then_some("not an IPv6 network")
        }
        _ => Some("unknown mechanism"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(records: &[&str]) -> Vec<String> {
        records.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn table() {
        let ok: &[&[&str]] = &[
            &[],
            &["google-site-verification=abc"],
            &["v=spf1 -all"],
            &["V=SPF1 ip4:192.0.2.0/24 ip6:2001:db8::/32 a mx:mail.example.org/24 include:x.example ~all"],
            &["v=spf1 exists:%{i}.bl.example redirect=other.example exp=why.example moo=cow"],
            &["v=spf10 +all", "v=spf1 -all"],
        ];
        for records in ok {
            assert_eq!(permerror(&txt(records)), None, "{records:?}");
        }
        let bad: &[(&[&str], &str)] = &[
            (&["v=spf1 -all", "v=spf1 +all"], "2 SPF records"),
            (&["v=spf1 foo -all"], "unknown mechanism"),
            (&["v=spf1 ip4:300.1.1.1 -all"], "not an IPv4 network"),
            (&["v=spf1 ip4:192.0.2.0/33"], "not an IPv4 network"),
            (&["v=spf1 ip6:2001:db8::/129"], "not an IPv6 network"),
            (&["v=spf1 include -all"], "needs a domain"),
            (&["v=spf1 all:x"], "no argument"),
            (&["v=spf1 1bad=x"], "modifier"),
        ];
        for (records, says) in bad {
            let why = permerror(&txt(records)).unwrap_or_default();
            assert!(why.contains(says), "{records:?}: {why}");
        }
    }
}
