//! The certificate SMTP presents for STARTTLS and implicit TLS: the files
//! named in `smtp.tls_cert_file`/`smtp.tls_key_file`, or else a self-signed
//! one for `smtp.hostname`, made at first start and kept in
//! `<data_dir>/smtp-tls/` (as Postfix's Debian package does with its snakeoil
//! certificate). Public MX peers accept self-signed certificates for
//! opportunistic TLS; clients of the submission ports need a real one.

use anyhow::Context;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::NodeConfig;

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Returns (certificate chain PEM, key PEM), generating them if needed.
fn load_or_generate(config: &NodeConfig, hostname: &str) -> anyhow::Result<(String, String)> {
    let smtp = &config.smtp;
    if !smtp.tls_cert_file.is_empty() || !smtp.tls_key_file.is_empty() {
        anyhow::ensure!(
            !smtp.tls_cert_file.is_empty() && !smtp.tls_key_file.is_empty(),
            "smtp.tls_cert_file and smtp.tls_key_file must be set together"
        );
        return Ok((read(Path::new(&smtp.tls_cert_file))?, read(Path::new(&smtp.tls_key_file))?));
    }
    let dir: PathBuf = config.data_dir.join("smtp-tls");
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert_path.exists() && key_path.exists() {
        return Ok((read(&cert_path)?, read(&key_path)?));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec![hostname.to_string()])?.self_signed(&key)?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    std::fs::write(&cert_path, &cert_pem).with_context(|| format!("writing {}", cert_path.display()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write;
    options.open(&key_path)?.write_all(key_pem.as_bytes())?;
    tracing::info!(path = %cert_path.display(), %hostname, "generated a self-signed SMTP certificate");
    Ok((cert_pem, key_pem))
}

/// The acceptor all SMTP listeners share.
pub fn acceptor(config: &NodeConfig, hostname: &str) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    let (cert_pem, key_pem) = load_or_generate(config, hostname)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("smtp.tls_cert_file: not a PEM certificate chain")?;
    anyhow::ensure!(!certs.is_empty(), "smtp.tls_cert_file: no certificate found");
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .context("smtp.tls_key_file: not a PEM private key")?
        .context("smtp.tls_key_file: no private key found")?;
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("smtp TLS certificate and key do not match")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))
}
