//! DKIM signing of outbound mail with the domain's active replicated key.

use consensus::state::{DkimAlgorithm, DkimKey};
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256, SigningKey};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};

/// The headers we sign, when present (RFC 6376 §5.4.1's list, trimmed to
/// what mail carries). `From` twice: a second From added later breaks it.
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// A `DKIM-Signature:` header (CRLF-terminated) for `message`, signed as
/// `domain` (A-label form) with `selector`.
pub fn sign(message: &[u8], domain: &str, selector: &str, key: &DkimKey) -> Result<String, String> {
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD.decode(&key.private_key).map_err(|e| e.to_string())?;
    let signature = match key.algorithm {
        DkimAlgorithm::RsaSha256 => {
            let pk = RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)))
                .map_err(|e| e.to_string())?;
            sign_with(pk, message, domain, selector)
        }
        DkimAlgorithm::Ed25519Sha256 => {
            let pk = Ed25519Key::from_pkcs8_der(&der).map_err(|e| e.to_string())?;
            sign_with(pk, message, domain, selector)
        }
    };
    signature.map(|s| s.to_header()).map_err(|e| e.to_string())
}

fn sign_with<K: SigningKey>(
    key: K,
    message: &[u8],
    domain: &str,
    selector: &str,
) -> mail_auth::Result<mail_auth::dkim::Signature> {
    DkimSigner::from_key(key)
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
        .sign(message)
}

/// A new key pair as the state stores it (base64 DER halves).
pub fn generate(algorithm: DkimAlgorithm, now_ms: u64) -> Result<DkimKey, String> {
    use base64::Engine;
    let pair = match algorithm {
        DkimAlgorithm::RsaSha256 => mail_auth::dkim::generate::DkimKeyPair::generate_rsa(2048),
        DkimAlgorithm::Ed25519Sha256 => mail_auth::dkim::generate::DkimKeyPair::generate_ed25519(),
    }
    .map_err(|e| e.to_string())?;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(DkimKey {
        algorithm,
        private_key: b64(pair.private_key()),
        public_key: b64(pair.public_key()),
        created_ms: now_ms,
        active: false,
    })
}
