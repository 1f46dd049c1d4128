//! The cluster's certificates and the rustls configurations built from them.
//!
//! `cluster init` makes a cluster CA (ECDSA P-256) and the first node's
//! certificate. Every member keeps the CA key, so any member can admit a
//! new node: a joining node receives the CA over a TLS channel it
//! authenticated by the CA fingerprint carried in its join token, then signs
//! its own certificate. Raft RPCs require a client certificate from the
//! cluster CA; only the join request may arrive without one.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// The DNS name every node certificate carries and every client checks.
pub const CLUSTER_SERVER_NAME: &str = "cluster.gatehouse.internal";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{0}: no PEM certificate or key found")]
    BadPem(String),
}

/// The PEM files of one node: the cluster CA (cert and key) and its own pair.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub ca_cert_pem: String,
    pub ca_key_pem: String,
    pub node_cert_pem: String,
    pub node_key_pem: String,
}

fn ca_params(cluster_id: &str) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Gatehouse");
    dn.push(DnType::CommonName, format!("Gatehouse cluster CA {cluster_id}"));
    params.distinguished_name = dn;
    Ok(params)
}

/// Makes a new cluster CA; returns (cert PEM, key PEM).
pub fn generate_ca(cluster_id: &str) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(cluster_id)?.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Signs a certificate for `node_id` with the cluster CA; returns (cert PEM, key PEM).
pub fn issue_node_cert(cluster_id: &str, ca_key_pem: &str, node_id: u64) -> Result<(String, String), TlsError> {
    let ca_key = KeyPair::from_pem(ca_key_pem)?;
    // rcgen needs the issuer as a certificate object; rebuilding it from the
    // same parameters and key yields the same subject and key identifier as
    // the stored CA certificate, which is all that chain building uses.
    let ca_cert = ca_params(cluster_id)?.self_signed(&ca_key)?;
    let mut params = CertificateParams::new(vec![CLUSTER_SERVER_NAME.to_string()])?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Gatehouse");
    dn.push(DnType::CommonName, format!("gatehouse node {node_id} of cluster {cluster_id}"));
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

const FILES: [&str; 4] = ["ca.pem", "ca.key", "node.pem", "node.key"];

impl TlsMaterial {
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| TlsError::Io { path: path.display().to_string(), source })
        };
        Ok(Self {
            ca_cert_pem: read(FILES[0])?,
            ca_key_pem: read(FILES[1])?,
            node_cert_pem: read(FILES[2])?,
            node_key_pem: read(FILES[3])?,
        })
    }

    /// Writes the four files; keys are readable by the owner only.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        let io = |path: &Path, source| TlsError::Io { path: path.display().to_string(), source };
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let contents = [&self.ca_cert_pem, &self.ca_key_pem, &self.node_cert_pem, &self.node_key_pem];
        for (name, text) in FILES.iter().zip(contents) {
            let path = dir.join(name);
            write_private(&path, text.as_bytes()).map_err(|e| io(&path, e))?;
        }
        Ok(())
    }

    pub fn exists(dir: &Path) -> bool {
        FILES.iter().all(|f| dir.join(f).exists())
    }

    /// SHA-256 of the CA certificate (DER): what a join token pins.
    pub fn ca_fingerprint(&self) -> Result<[u8; 32], TlsError> {
        let der = first_cert(&self.ca_cert_pem)?;
        Ok(Sha256::digest(der.as_ref()).into())
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(first_cert(&self.ca_cert_pem)?)?;
        Ok(roots)
    }

    fn chain_and_key(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
        // The CA travels in the chain so a joining node can pin it by fingerprint.
        let chain = vec![first_cert(&self.node_cert_pem)?, first_cert(&self.ca_cert_pem)?];
        let key = KeyPair::from_pem(&self.node_key_pem)?;
        Ok((chain, PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))))
    }

    /// Server side of the Raft port: client certificates from our CA are
    /// verified; a client without one is let through the handshake and may
    /// only send a join request.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider())
            .allow_unauthenticated()
            .build()?;
        let (chain, key) = self.chain_and_key()?;
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)?;
        Ok(Arc::new(config))
    }

    /// Client side for Raft RPCs: presents our certificate, trusts only our CA.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let (chain, key) = self.chain_and_key()?;
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(chain, key)?;
        Ok(Arc::new(config))
    }
}

/// Client side for a join request: no certificate yet; the server must prove
/// it holds a certificate issued by the CA whose fingerprint the token carries.
pub fn join_client_config(ca_fingerprint: [u8; 32]) -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCaVerifier { ca_fingerprint }))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn first_cert(pem: &str) -> Result<CertificateDer<'static>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .and_then(|c| c.ok())
        .ok_or_else(|| TlsError::BadPem("certificate".into()))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Accepts a server whose chain contains the pinned CA and whose leaf that
/// CA signed for `CLUSTER_SERVER_NAME`.
#[derive(Debug)]
struct PinnedCaVerifier {
    ca_fingerprint: [u8; 32],
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.ca_fingerprint)
            .ok_or(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &provider().signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider().signature_verification_algorithms.supported_schemes()
    }
}
