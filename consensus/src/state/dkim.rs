//! DKIM signing keys, per local domain and selector. The key pair is made by
//! the admin API (apply draws no randomness) and replicated, so every node
//! signs with the same key; one selector per domain is active, which is how a
//! key is rotated: add the second selector, publish it, activate it, remove
//! the first.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DkimAlgorithm {
    /// RSA with SHA-256; the private key is PKCS#1 DER.
    RsaSha256,
    /// Ed25519 with SHA-256 (RFC 8463); the private key is PKCS#8 DER.
    Ed25519Sha256,
}

impl DkimAlgorithm {
    /// The `k=` tag of the DNS record.
    pub fn key_type(self) -> &'static str {
        match self {
            DkimAlgorithm::RsaSha256 => "rsa",
            DkimAlgorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKey {
    pub algorithm: DkimAlgorithm,
    /// Base64 of the private key DER.
    pub private_key: String,
    /// Base64 of the public key, as the `p=` tag publishes it.
    pub public_key: String,
    pub created_ms: u64,
    /// The key new mail of the domain is signed with.
    pub active: bool,
}

impl DkimKey {
    /// The TXT record to publish at `<selector>._domainkey.<domain>`.
    pub fn dns_record(&self) -> String {
        format!("v=DKIM1; k={}; p={}", self.algorithm.key_type(), self.public_key)
    }
}

/// Domain (Unicode form) → selector → key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DkimKeys {
    pub domains: BTreeMap<String, BTreeMap<String, DkimKey>>,
}

impl DkimKeys {
    /// The active key of a domain, with its selector.
    pub fn active(&self, domain: &str) -> Option<(&str, &DkimKey)> {
        self.domains.get(domain)?.iter().find(|(_, k)| k.active).map(|(s, k)| (s.as_str(), k))
    }
}

/// A selector is one or more DNS labels (RFC 6376 §3.1).
pub fn valid_selector(selector: &str) -> bool {
    !selector.is_empty()
        && selector.len() <= 63
        && selector.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}
