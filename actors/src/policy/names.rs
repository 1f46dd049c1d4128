//! HELO and sender-domain policy (Postfix's reject_non_fqdn_helo_hostname,
//! reject_unknown_helo_hostname, reject_non_fqdn_sender,
//! reject_unknown_sender_domain, and the reverse-DNS client checks). The
//! DNS answers come from the shell; these functions only judge them. A DNS
//! failure is never a permanent refusal: the client is told to try again.

use consensus::address::{DomainName, MailAddress};
use std::net::IpAddr;

use crate::smtp::Reply;

/// What DNS said about a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsExistence {
    Found,
    /// NXDOMAIN, or no records of the types asked for.
    NotFound,
    /// Timeout or server failure.
    Failed,
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]`.
pub fn is_address_literal(helo: &str) -> bool {
    let Some(inner) = helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) else { return false };
    let inner = inner.strip_prefix("IPv6:").or_else(|| inner.strip_prefix("ipv6:")).unwrap_or(inner);
    inner.parse::<IpAddr>().is_ok()
}

/// The HELO name must be a fully qualified domain name or an address literal.
pub fn helo_fqdn(helo: &str) -> Result<(), Reply> {
    if is_address_literal(helo) || DomainName::parse(helo).is_ok() {
        return Ok(());
    }
    let text = format!("<{helo}>: Helo command rejected: need fully-qualified hostname");
    Err(Reply::new(504, "5.5.2", &text))
}

/// The HELO name must resolve (A or AAAA); literals need no lookup.
pub fn helo_known(helo: &str, answer: DnsExistence) -> Result<(), Reply> {
    match answer {
        DnsExistence::Found => Ok(()),
        DnsExistence::NotFound => {
            Err(Reply::new(550, "5.7.1", &format!("<{helo}>: Helo command rejected: Host not found")))
        }
        DnsExistence::Failed => {
            Err(Reply::new(450, "4.7.1", &format!("<{helo}>: Helo command rejected: Host not found (DNS failure)")))
        }
    }
}

/// The sender's domain must be fully qualified; `<>` always passes.
pub fn sender_fqdn(sender: &str) -> Result<(), Reply> {
    if sender.is_empty() || MailAddress::parse(sender).is_ok() {
        return Ok(());
    }
    let text = format!("<{sender}>: Sender address rejected: need fully-qualified address");
    Err(Reply::new(504, "5.5.2", &text))
}

/// The sender's domain must have an MX, A or AAAA record.
pub fn sender_domain_known(sender: &str, answer: DnsExistence) -> Result<(), Reply> {
    match answer {
        DnsExistence::Found => Ok(()),
        DnsExistence::NotFound => {
            Err(Reply::new(550, "5.1.8", &format!("<{sender}>: Sender address rejected: Domain not found")))
        }
        DnsExistence::Failed => Err(Reply::new(
            450,
            "4.1.8",
            &format!("<{sender}>: Sender address rejected: Domain not found (DNS failure)"),
        )),
    }
}

/// What reverse DNS said about the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReverseDns {
    /// PTR names, each with whether it resolves back to the client address.
    Names(Vec<(String, bool)>),
    NotFound,
    Failed,
}

/// The client needs a PTR record, and with `forward_confirmed` one whose
/// name resolves back to its address.
pub fn client_reverse(ip: IpAddr, answer: &ReverseDns, forward_confirmed: bool) -> Result<(), Reply> {
    let ok = match answer {
        ReverseDns::Names(names) => !forward_confirmed || names.iter().any(|(_, confirmed)| *confirmed),
        ReverseDns::NotFound => false,
        ReverseDns::Failed => {
            let text = format!("Client host rejected: cannot find your reverse hostname, [{ip}] (DNS failure)");
            return Err(Reply::new(450, "4.7.25", &text));
        }
    };
    if ok {
        return Ok(());
    }
    let text = format!("Client host rejected: cannot find your reverse hostname, [{ip}]");
    Err(Reply::new(550, "5.7.25", &text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helo_table() {
        let table: &[(&str, Option<u16>)] = &[
            ("mail.example.com", None),
            ("[192.0.2.1]", None),
            ("[IPv6:2001:db8::1]", None),
            ("localhost", Some(504)),
            ("foo_bar", Some(504)),
            ("[999.1.1.1]", Some(504)),
            ("mail.example.com.", None),
        ];
        for (helo, want) in table {
            assert_eq!(helo_fqdn(helo).err().map(|r| r.code), *want, "{helo}");
        }
        assert!(helo_known("a.example", DnsExistence::Found).is_ok());
        assert_eq!(helo_known("a.example", DnsExistence::NotFound).unwrap_err().enhanced, "5.7.1");
        assert_eq!(helo_known("a.example", DnsExistence::Failed).unwrap_err().code, 450);
    }

    #[test]
    fn sender_table() {
        let table: &[(&str, Option<u16>)] =
            &[("", None), ("a@example.com", None), ("a@localhost", Some(504)), ("a@b", Some(504))];
        for (sender, want) in table {
            assert_eq!(sender_fqdn(sender).err().map(|r| r.code), *want, "{sender}");
        }
        assert!(sender_domain_known("a@example.com", DnsExistence::Found).is_ok());
        let r = sender_domain_known("a@nx.example", DnsExistence::NotFound).unwrap_err();
        assert_eq!((r.code, r.enhanced), (550, "5.1.8"));
        assert_eq!(sender_domain_known("a@nx.example", DnsExistence::Failed).unwrap_err().code, 450);
    }

    #[test]
    fn reverse_table() {
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let named = ReverseDns::Names(vec![("mx.example".into(), false)]);
        let confirmed = ReverseDns::Names(vec![("mx.example".into(), true)]);
        let table: &[(&ReverseDns, bool, Option<u16>)] = &[
            (&named, false, None),
            (&named, true, Some(550)),
            (&confirmed, true, None),
            (&ReverseDns::NotFound, false, Some(550)),
            (&ReverseDns::Failed, false, Some(450)),
        ];
        for (answer, fcrdns, want) in table {
            assert_eq!(client_reverse(ip, answer, *fcrdns).err().map(|r| r.code), *want, "{answer:?} {fcrdns}");
        }
    }
}
