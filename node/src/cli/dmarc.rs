//! `gatehouse dmarc record`: a suggested DMARC record, computed locally.

use anyhow::Context;

/// The record for `domain` with the given policy: relaxed alignment, reports
/// to `rua` (default `mailto:dmarc-reports@DOMAIN`), `pct` only when under 100.
pub fn record(domain: &str, policy: &str, rua: Option<&str>, pct: u8) -> anyhow::Result<(String, String)> {
    let domain = consensus::address::DomainName::parse(domain).map_err(|e| anyhow::anyhow!("domain: {e}"))?;
    let ascii = domain.ascii();
    let rua = match rua {
        Some(r) if r.starts_with("mailto:") => r.to_string(),
        Some(r) => anyhow::bail!("rua: {r:?} must be a mailto: URI"),
        None => format!("mailto:dmarc-reports@{ascii}"),
    };
    let mut text = format!("v=DMARC1; p={policy}; rua={rua}; adkim=r; aspf=r");
    if pct < 100 {
        text.push_str(&format!("; pct={pct}"));
    }
    Ok((format!("_dmarc.{ascii}."), text))
}

pub fn print_record(domain: &str, policy: &str, rua: Option<&str>, pct: u8, json: bool) -> anyhow::Result<()> {
    let (name, text) = record(domain, policy, rua, pct).context("dmarc record")?;
    if json {
        println!("{}", serde_json::json!({ "record_name": name, "record": text }));
        return Ok(());
    }
    println!("{name} IN TXT \"{text}\"");
    if policy == "none" {
        println!("\n; p=none only collects reports. Once they show all your mail passing SPF or DKIM,");
        println!("; move to p=quarantine (perhaps with pct=25 first), then p=reject.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn records() {
        let (name, text) = super::record("Example.ORG", "reject", None, 100).unwrap();
        assert_eq!(name, "_dmarc.example.org.");
        assert_eq!(text, "v=DMARC1; p=reject; rua=mailto:dmarc-reports@example.org; adkim=r; aspf=r");
        let (_, text) = super::record("bücher.example", "quarantine", Some("mailto:d@x.example"), 25).unwrap();
        assert_eq!(text, "v=DMARC1; p=quarantine; rua=mailto:d@x.example; adkim=r; aspf=r; pct=25");
        assert!(super::record("not a domain", "none", None, 100).unwrap_err().to_string().contains("domain"));
        assert!(format!("{:#}", super::record("a.example", "none", Some("http://x"), 100).unwrap_err()).contains("rua"));
    }
}
