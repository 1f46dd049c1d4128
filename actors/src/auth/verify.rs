//! The lookups behind sender authentication, through mail-auth on this
//! worker's resolver: SPF at the first RCPT, DKIM, ARC and DMARC at the end
//! of DATA. Results are reduced to the plain findings of `policy` and to the
//! Authentication-Results header (RFC 8601).

use mail_auth::common::crypto::CryptoError;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MessageAuthenticator, SpfOutput, SpfResult,
};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::policy::{ArcFinding, DkimFinding, DkimStatus, DmarcFinding, DmarcPolicy, MessageFindings, Spf};
use crate::message::SkipChecks;

/// mail-auth on this thread's resolver (same cache as the other lookups).
pub fn authenticator(nameservers: &[SocketAddr]) -> Result<MessageAuthenticator, String> {
    crate::dns::resolver(nameservers).map(|r| MessageAuthenticator((*r).clone()))
}

pub fn spf_of(result: SpfResult) -> Spf {
    match result {
        SpfResult::Pass => Spf::Pass,
        SpfResult::Fail => Spf::Fail,
        SpfResult::SoftFail => Spf::SoftFail,
        SpfResult::Neutral => Spf::Neutral,
        SpfResult::None => Spf::None,
        SpfResult::TempError => Spf::TempError,
        SpfResult::PermError => Spf::PermError,
    }
}

/// SPF of the MAIL FROM identity, or of the HELO identity for `<>` (RFC 7208 §2.3).
pub async fn check_spf(
    auth: &MessageAuthenticator,
    ip: IpAddr,
    helo: &str,
    sender: &str,
    hostname: &str,
    timeout: Duration,
) -> SpfOutput {
    let params = if sender.is_empty() {
        SpfParameters::verify_ehlo(ip, helo, hostname)
    } else {
        SpfParameters::verify_mail_from(ip, helo, hostname, sender)
    };
    let domain = if sender.is_empty() { helo } else { sender.rsplit_once('@').map_or(helo, |(_, d)| d) };
    // RFC 7208 §4.5/§4.6 checks mail-auth skips; the lookup lands in the
    // resolver's cache, where mail-auth's own finds it.
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    if let Ok(Ok(lookup)) = tokio::time::timeout(timeout, auth.0.txt_lookup(fqdn.as_str())).await {
        let txt: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                hickory_resolver::proto::rr::RData::TXT(t) => {
                    Some(t.txt_data.iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect::<String>())
                }
                _ => None,
            })
            .collect();
        if let Some(why) = super::spf_record::permerror(&txt) {
            tracing::debug!(%domain, %why, "SPF permerror");
            return SpfOutput::new(domain.to_string()).with_result(SpfResult::PermError);
        }
    }
    match tokio::time::timeout(timeout, auth.verify_spf(params)).await {
        Ok(output) => output,
        Err(_) => SpfOutput::new(domain.to_string()).with_result(SpfResult::TempError),
    }
}

/// What the SMTP session knows about a message, for its checks.
pub struct MessageContext<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    pub mail_from: &'a str,
    pub hostname: &'a str,
    /// SPF as checked at RCPT; `None` when SPF was skipped.
    pub spf: Option<&'a SpfOutput>,
    pub skip: SkipChecks,
    pub min_key_bits: usize,
}

/// DKIM, ARC and DMARC for one message; returns the findings and the
/// Authentication-Results header (CRLF-terminated).
pub async fn check_message(
    auth: &MessageAuthenticator,
    raw: &[u8],
    ctx: &MessageContext<'_>,
    timeout: Duration,
    pct_roll: u8,
) -> (MessageFindings, String) {
    let mut findings = MessageFindings { dkim: Vec::new(), dmarc: None, arc: ArcFinding::default(), pct_roll };
    let mut results = AuthenticationResults::new(ctx.hostname);
    let mail_from_domain = ctx.mail_from.rsplit_once('@').map_or(ctx.helo.to_string(), |(_, d)| d.to_ascii_lowercase());
    let spf_output = ctx.spf.cloned().unwrap_or_else(|| SpfOutput::new(mail_from_domain.clone()));
    if ctx.spf.is_some() {
        results = if ctx.mail_from.is_empty() {
            results.with_spf_ehlo_result(&spf_output, ctx.ip, ctx.helo)
        } else {
            results.with_spf_mailfrom_result(&spf_output, ctx.ip, ctx.mail_from, ctx.helo)
        };
    }
    let Some(message) = AuthenticatedMessage::parse(raw) else {
        tracing::info!(client = %ctx.ip, "message headers unreadable for DKIM/DMARC");
        return (findings, results.to_header());
    };
    let header_from = message.from.first().cloned().unwrap_or_default();
    let from_domain = header_from.rsplit_once('@').map(|(_, d)| d.to_ascii_lowercase()).unwrap_or_default();

    let dkim = if ctx.skip.dkim && ctx.skip.dmarc {
        Vec::new()
    } else {
        tokio::time::timeout(timeout, auth.verify_dkim(&message)).await.unwrap_or_default()
    };
    // One pass builds both the finding and the output the header and DMARC
    // see, so they stay paired: a signature whose key is too short is
    // reported as failed, as it is judged.
    let mut dkim_for_results = Vec::with_capacity(dkim.len());
    for output in &dkim {
        let result = match output.result() {
            DkimResult::Pass => Some(DkimStatus::Pass),
            DkimResult::Fail(_) => Some(DkimStatus::Fail),
            DkimResult::Neutral(_) => Some(DkimStatus::Neutral),
            DkimResult::TempError(_) => Some(DkimStatus::TempError),
            DkimResult::PermError(_) => Some(DkimStatus::PermError),
            DkimResult::None => None,
        };
        let (Some(sig), Some(result)) = (output.signature(), result) else {
            dkim_for_results.push(output.clone());
            continue;
        };
        let key_bits = match result {
            DkimStatus::Pass => key_bits(auth, &sig.s, &sig.d, timeout).await,
            _ => None,
        };
        let finding = DkimFinding { domain: sig.d.to_ascii_lowercase(), result, key_bits };
        if super::policy::key_too_short(&finding, ctx.min_key_bits) {
            let short = CryptoError::Library("key shorter than the minimum".into());
            dkim_for_results.push(mail_auth::DkimOutput::fail(mail_auth::Error::Crypto(short)).with_signature(sig));
        } else {
            dkim_for_results.push(output.clone());
        }
        findings.dkim.push(finding);
    }
    if !dkim.is_empty() {
        results = results.with_dkim_results(&dkim_for_results, &header_from);
    }

    if !message.as_headers.is_empty() {
        if let Ok(arc) = tokio::time::timeout(timeout, auth.verify_arc(&message)).await {
            findings.arc = ArcFinding {
                pass: *arc.result() == DkimResult::Pass,
                sealers: arc.sets().iter().map(|s| s.seal.header.d.to_ascii_lowercase()).collect(),
            };
            results = results.with_arc_result(&arc, ctx.ip);
        }
    }

    if !from_domain.is_empty() && !ctx.skip.dmarc {
        let params = DmarcParameters::new(&message, &dkim_for_results, &mail_from_domain, &spf_output);
        if let Ok(dmarc) = tokio::time::timeout(timeout, auth.verify_dmarc(params)).await {
            if let Some(record) = dmarc.dmarc_record() {
                let policy = match dmarc.policy() {
                    mail_auth::dmarc::Policy::Reject => DmarcPolicy::Reject,
                    mail_auth::dmarc::Policy::Quarantine => DmarcPolicy::Quarantine,
                    _ => DmarcPolicy::None,
                };
                let pass =
                    matches!(dmarc.spf_result(), DmarcResult::Pass) || matches!(dmarc.dkim_result(), DmarcResult::Pass);
                let pct = dmarc_pct(auth, dmarc.domain(), timeout).await;
                findings.dmarc =
                    Some(DmarcFinding { domain: dmarc.domain().to_string(), pass, policy, pct, testing: record.t });
            }
            results = results.with_dmarc_result(&dmarc);
        }
    }
    (findings, results.to_header())
}

/// The size of the key a passing signature used (cached by the resolver).
async fn key_bits(auth: &MessageAuthenticator, selector: &str, domain: &str, timeout: Duration) -> Option<usize> {
    let name = format!("{selector}._domainkey.{domain}.");
    let lookup = auth.txt_lookup::<mail_auth::common::verify::DomainKey>(
        name,
        None::<&mail_auth::common::cache::NoCache<Box<str>, mail_auth::Txt>>,
    );
    let key = tokio::time::timeout(timeout, lookup).await.ok()?.ok()?;
    Some(key.p.public_key_bits())
}

/// `pct=` of the domain's DMARC record (RFC 7489 §6.3; DMARCbis dropped it,
/// and mail-auth with it), default 100.
async fn dmarc_pct(auth: &MessageAuthenticator, domain: &str, timeout: Duration) -> u8 {
    let name = format!("_dmarc.{}.", domain.trim_end_matches('.'));
    let Ok(Ok(raw)) = tokio::time::timeout(timeout, auth.txt_raw_lookup(name)).await else { return 100 };
    parse_pct(&String::from_utf8_lossy(&raw))
}

/// The `pct` tag of a DMARC record; 100 when absent or unreadable.
pub fn parse_pct(record: &str) -> u8 {
    record
        .split(';')
        .filter_map(|tag| tag.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("pct"))
        .and_then(|(_, v)| v.trim().parse::<u8>().ok())
        .map_or(100, |p| p.min(100))
}

#[cfg(test)]
mod tests {
    #[test]
    fn pct_parsing() {
        assert_eq!(super::parse_pct("v=DMARC1; p=reject; pct=30"), 30);
        assert_eq!(super::parse_pct("v=DMARC1; p=reject"), 100);
        assert_eq!(super::parse_pct("v=DMARC1; p=reject; PCT = 0 ;"), 0);
        assert_eq!(super::parse_pct("v=DMARC1; pct=banana"), 100);
        assert_eq!(super::parse_pct("v=DMARC1; pct=250"), 100);
    }
}
