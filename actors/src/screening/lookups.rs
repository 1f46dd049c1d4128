//! The DNS questions screening asks: DNSBL listings, the client's reverse
//! name, whether a HELO name or a sender domain exists, on the thread's
//! resolver (`crate::dns`), whose cache keeps every answer for its TTL: a
//! client that connects twice within a DNSBL record's TTL costs one query.

use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::policy::dnsbl::{query_name, DnsblQuery};
use crate::policy::names::{DnsExistence, ReverseDns};

/// Every zone asked at once; a zone that has not answered within `timeout`
/// counts as not listing the client (postscreen does the same).
pub async fn dnsbl_answers(resolver: &TokioResolver, queries: &[DnsblQuery], timeout: Duration) -> Vec<Vec<Ipv4Addr>> {
    let asks = queries.iter().map(|q| async move {
        match tokio::time::timeout(timeout, resolver.ipv4_lookup(q.name.as_str())).await {
            Ok(Ok(lookup)) => lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::A(a) => Some(a.0),
                    _ => None,
                })
                .collect(),
            Ok(Err(e)) => {
                if !e.is_nx_domain() && !e.is_no_records_found() {
                    tracing::debug!(zone = %q.zone, error = %e, "DNSBL lookup failed");
                }
                Vec::new()
            }
            Err(_) => {
                tracing::debug!(zone = %q.zone, "DNSBL lookup timed out");
                Vec::new()
            }
        }
    });
    futures::future::join_all(asks).await
}

fn existence<T>(result: Result<T, hickory_resolver::net::NetError>, found: impl Fn(&T) -> bool) -> DnsExistence {
    match result {
        Ok(answer) if found(&answer) => DnsExistence::Found,
        Ok(_) => DnsExistence::NotFound,
        Err(e) if e.is_nx_domain() || e.is_no_records_found() => DnsExistence::NotFound,
        Err(_) => DnsExistence::Failed,
    }
}

/// Does `name` have an A or AAAA record?
pub async fn host_exists(resolver: &TokioResolver, name: &str, timeout: Duration) -> DnsExistence {
    let fqdn = format!("{}.", name.trim_end_matches('.'));
    match tokio::time::timeout(timeout, resolver.lookup_ip(fqdn.as_str())).await {
        Ok(result) => existence(result, |ips| ips.iter().next().is_some()),
        Err(_) => DnsExistence::Failed,
    }
}

/// Does `domain` have an MX, A or AAAA record (mail can reach it)?
pub async fn mail_domain_exists(resolver: &TokioResolver, domain: &str, timeout: Duration) -> DnsExistence {
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    let mx = match tokio::time::timeout(timeout, resolver.mx_lookup(fqdn.as_str())).await {
        Ok(result) => existence(result, |l| !l.answers().is_empty()),
        Err(_) => DnsExistence::Failed,
    };
    match mx {
        DnsExistence::Found => DnsExistence::Found,
        DnsExistence::NotFound | DnsExistence::Failed => match host_exists(resolver, domain, timeout).await {
            DnsExistence::NotFound if mx == DnsExistence::Failed => DnsExistence::Failed,
            other => other,
        },
    }
}

/// The client's PTR names, each checked forward (does it resolve back to `ip`?).
pub async fn reverse_dns(resolver: &TokioResolver, ip: IpAddr, timeout: Duration) -> ReverseDns {
    let zone = if ip.is_ipv4() { "in-addr.arpa" } else { "ip6.arpa" };
    let name = query_name(ip, zone);
    let names: Vec<String> = match tokio::time::timeout(timeout, resolver.reverse_lookup(name.as_str())).await {
        Ok(Ok(lookup)) => lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::PTR(ptr) => Some(ptr.0.to_ascii().trim_end_matches('.').to_string()),
                _ => None,
            })
            .collect(),
        Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => return ReverseDns::NotFound,
        Ok(Err(_)) | Err(_) => return ReverseDns::Failed,
    };
    if names.is_empty() {
        return ReverseDns::NotFound;
    }
    let mut out = Vec::new();
    for n in names.into_iter().take(5) {
        let confirmed = match tokio::time::timeout(timeout, resolver.lookup_ip(format!("{n}."))).await {
            Ok(Ok(ips)) => ips.iter().any(|a| a == ip),
            _ => false,
        };
        out.push((n, confirmed));
    }
    ReverseDns::Names(out)
}
