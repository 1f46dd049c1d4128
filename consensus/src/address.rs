//! Validation of the names the cluster state stores: domains, mailbox addresses,
//! group names.
//!
//! Everything that enters the state through a command is normalised here first
//! (domains lowercased, no trailing dot), so two spellings of one name can never
//! become two records. The rules follow RFC 5321 §4.5.3.1 for lengths and RFC 1035
//! for labels; non-ASCII letters are accepted in labels so that IDN domains in
//! U-label form can be stored (the SMTP layer maps them to A-labels when needed).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest domain name (RFC 5321 §4.5.3.1.2).
pub const DOMAIN_BYTES_MAX: usize = 255;
/// Longest label inside a domain name (RFC 1035 §2.3.4).
pub const LABEL_BYTES_MAX: usize = 63;
/// Longest local part (RFC 5321 §4.5.3.1.1).
pub const LOCAL_PART_BYTES_MAX: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AddressError {
    #[error("domain {0:?} is empty")]
    EmptyDomain(String),
    #[error("domain {0:?} is longer than {DOMAIN_BYTES_MAX} bytes")]
    DomainTooLong(String),
    #[error("domain {0:?} has an empty label or a label longer than {LABEL_BYTES_MAX} bytes")]
    BadLabel(String),
    #[error("domain {0:?} contains a character not allowed in a host name")]
    BadDomainChar(String),
    #[error("domain {0:?} must have at least two labels (a fully qualified name)")]
    NotQualified(String),
    #[error("address {0:?} has no '@'")]
    MissingAt(String),
    #[error("address {0:?} has an empty or over-long local part")]
    BadLocalPart(String),
    #[error("name {0:?} contains whitespace, a control character or one of <>()[],;:\\\"@")]
    BadLocalChar(String),
}

/// A normalised domain name: lowercase, no trailing dot, at least two labels.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DomainName(String);

impl DomainName {
    pub fn parse(raw: &str) -> Result<Self, AddressError> {
        let trimmed = raw.trim().trim_end_matches('.');
        // IDN: A-labels (xn--) are stored in their Unicode form, so
        // `bücher.example` and `xn--bcher-kva.example` are one domain.
        let lower = if trimmed.split('.').any(|l| l.len() > 4 && l[..4].eq_ignore_ascii_case("xn--")) {
            match idna::domain_to_unicode(trimmed) {
                (unicode, Ok(())) => unicode,
                (_, Err(_)) => return Err(AddressError::BadLabel(raw.to_string())),
            }
        } else {
            trimmed.to_lowercase()
        };
        if lower.is_empty() {
            return Err(AddressError::EmptyDomain(raw.to_string()));
        }
        if lower.len() > DOMAIN_BYTES_MAX {
            return Err(AddressError::DomainTooLong(raw.to_string()));
        }
        let mut labels = 0usize;
        for label in lower.split('.') {
            labels += 1;
            if label.is_empty() || label.len() > LABEL_BYTES_MAX {
                return Err(AddressError::BadLabel(raw.to_string()));
            }
            let ok =
                label.chars().all(|c| c == '-' || c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphanumeric()));
            if !ok || label.starts_with('-') || label.ends_with('-') {
                return Err(AddressError::BadDomainChar(raw.to_string()));
            }
        }
        if labels < 2 {
            return Err(AddressError::NotQualified(raw.to_string()));
        }
        Ok(Self(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The A-label (ASCII) form, as DNS queries and SMTP without SMTPUTF8 need it.
    pub fn ascii(&self) -> String {
        if self.0.is_ascii() {
            return self.0.clone();
        }
        idna::domain_to_ascii(&self.0).unwrap_or_else(|_| self.0.clone())
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A normalised mailbox address `local@domain`. The local part keeps its case
/// (RFC 5321 §2.4) but lookups compare it case-insensitively, as every mail
/// administrator expects; `key()` gives the comparison form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct MailAddress {
    local: String,
    domain: DomainName,
}

impl MailAddress {
    pub fn parse(raw: &str) -> Result<Self, AddressError> {
        let raw_trimmed = raw.trim();
        let (local, domain) = raw_trimmed.rsplit_once('@').ok_or_else(|| AddressError::MissingAt(raw.to_string()))?;
        validate_local_part(local).map_err(|_| AddressError::BadLocalPart(raw.to_string()))?;
        Ok(Self { local: local.to_lowercase(), domain: DomainName::parse(domain)? })
    }

    pub fn local(&self) -> &str {
        &self.local
    }

    pub fn domain(&self) -> &DomainName {
        &self.domain
    }

    /// The form used as a map key: lowercase local part and domain.
    pub fn key(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }
}

impl fmt::Display for MailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// Checks a local part or a bare name (group name) for the characters that
/// would need quoting in SMTP; quoted local parts are not stored as accounts.
pub fn validate_local_part(local: &str) -> Result<(), AddressError> {
    if local.is_empty() || local.len() > LOCAL_PART_BYTES_MAX {
        return Err(AddressError::BadLocalPart(local.to_string()));
    }
    let bad = local.chars().any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\\\"@".contains(c));
    if bad || local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(AddressError::BadLocalChar(local.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised_and_checked() {
        let table: &[(&str, Option<&str>)] = &[
            ("Example.COM", Some("example.com")),
            ("example.com.", Some("example.com")),
            ("mail.xn--bcher-kva.example", Some("mail.bücher.example")),
            ("MAIL.XN--BCHER-KVA.EXAMPLE.", Some("mail.bücher.example")),
            ("bücher.example", Some("bücher.example")),
            ("BÜCHER.Example", Some("bücher.example")),
            ("xn--zz-invalid.example", None),
            ("localhost", None),
            ("", None),
            ("a..b", None),
            ("-a.example", None),
            ("a_b.example", None),
            ("exa mple.com", None),
        ];
        for (raw, want) in table {
            let got = DomainName::parse(raw).ok().map(|d| d.to_string());
            assert_eq!(got.as_deref(), *want, "input {raw:?}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(DomainName::parse(&long_label).is_err());
    }

    #[test]
    fn addresses_are_normalised_and_checked() {
        let table: &[(&str, Option<&str>)] = &[
            ("Alice@Example.com", Some("alice@example.com")),
            ("alice@xn--bcher-kva.example", Some("alice@bücher.example")),
            ("jörg@bücher.example", Some("jörg@bücher.example")),
            ("a.b+tag@example.com", Some("a.b+tag@example.com")),
            ("alice", None),
            ("@example.com", None),
            ("a b@example.com", None),
            (".a@example.com", None),
            ("a..b@example.com", None),
            ("\"q\"@example.com", None),
            ("alice@localhost", None),
        ];
        for (raw, want) in table {
            let got = MailAddress::parse(raw).ok().map(|a| a.key());
            assert_eq!(got.as_deref(), *want, "input {raw:?}");
        }
        assert!(MailAddress::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
    }
}
