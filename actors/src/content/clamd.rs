//! A clamd client (clamd(8)'s protocol, `z`-prefixed commands ending in
//! NUL): INSTREAM to scan, VERSION for the engine and signature versions,
//! RELOAD after a definition update. Over a Unix socket
//! (`unix:/run/clamav/clamd.ctl`, Debian's) or TCP (`host:port`). At most
//! `connections_max` scans run at once on a node; each one is bounded in
//! time, and a message longer than clamd's `StreamMaxLength` is never sent
//! whole (clamd would refuse it anyway).

use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

/// Where clamd listens and how it may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamdConfig {
    /// `unix:/path` or `host:port`.
    pub address: String,
    pub timeout: Duration,
    pub connections_max: usize,
    /// clamd's `StreamMaxLength` (Debian's default: 25 MiB).
    pub stream_bytes_max: usize,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ClamdError {
    #[error("clamd at {address}: {reason}")]
    Unreachable { address: String, reason: String },
    #[error("clamd did not answer within {0} ms")]
    Timeout(u128),
    #[error("clamd: {0}")]
    Refused(String),
    #[error("the message ({size} bytes) is longer than clamd's StreamMaxLength ({max} bytes)")]
    TooLong { size: usize, max: usize },
}

/// A scan's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanResult {
    Clean,
    /// The signature name clamd reported.
    Infected(String),
}

/// The scanner every content worker shares.
#[derive(Clone)]
pub struct Clamd {
    config: Arc<ClamdConfig>,
    slots: Arc<Semaphore>,
}

const CHUNK: usize = 64 * 1024;

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl Clamd {
    pub fn new(config: ClamdConfig) -> Self {
        let slots = Arc::new(Semaphore::new(config.connections_max.max(1)));
        Self { config: Arc::new(config), slots }
    }

    pub fn address(&self) -> &str {
        &self.config.address
    }

    /// How long one scan may take (`antivirus.timeout_ms`).
    pub fn timeout(&self) -> std::time::Duration {
        self.config.timeout
    }

    /// Scans `data` with INSTREAM.
    pub async fn scan(&self, data: &[u8]) -> Result<ScanResult, ClamdError> {
        if data.len() > self.config.stream_bytes_max {
            return Err(ClamdError::TooLong { size: data.len(), max: self.config.stream_bytes_max });
        }
        let _slot = self.slots.acquire().await.map_err(|_| ClamdError::Refused("scanner closed".into()))?;
        let answer = self
            .exchange(|mut s| async move {
                s.write_all(b"zINSTREAM\0").await?;
                for chunk in data.chunks(CHUNK) {
                    s.write_all(&(chunk.len() as u32).to_be_bytes()).await?;
                    s.write_all(chunk).await?;
                }
                s.write_all(&0u32.to_be_bytes()).await?;
                s.flush().await?;
                read_answer(&mut s).await
            })
            .await?;
        parse_scan_answer(&answer)
    }

    /// clamd's `VERSION`: `ClamAV 1.0.7/27123/Tue Dec 1 09:00:00 2026`.
    pub async fn version(&self) -> Result<String, ClamdError> {
        self.command(b"zVERSION\0").await
    }

    /// clamd's `RELOAD`: re-reads the signature databases.
    pub async fn reload(&self) -> Result<String, ClamdError> {
        self.command(b"zRELOAD\0").await
    }

    async fn command(&self, command: &'static [u8]) -> Result<String, ClamdError> {
        self.exchange(|mut s| async move {
            s.write_all(command).await?;
            s.flush().await?;
            read_answer(&mut s).await
        })
        .await
    }

    async fn exchange<F, Fut>(&self, talk: F) -> Result<String, ClamdError>
    where
        F: FnOnce(Box<dyn Stream>) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<String>>,
    {
        let timeout = self.config.timeout;
        let address = self.config.address.clone();
        let unreachable =
            |e: std::io::Error| ClamdError::Unreachable { address: address.clone(), reason: e.to_string() };
        let work = async {
            let stream: Box<dyn Stream> = match address.strip_prefix("unix:") {
                Some(path) => Box::new(tokio::net::UnixStream::connect(path).await.map_err(unreachable)?),
                None => Box::new(tokio::net::TcpStream::connect(address.as_str()).await.map_err(unreachable)?),
            };
            talk(stream).await.map_err(unreachable)
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(ClamdError::Timeout(timeout.as_millis())),
        }
    }
}

/// Reads up to the NUL that ends a `z` answer (or the end of the stream).
async fn read_answer(s: &mut (impl AsyncRead + Unpin)) -> std::io::Result<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.contains(&0) || out.len() > 64 * 1024 {
            break;
        }
    }
    let end = out.iter().position(|&b| b == 0).unwrap_or(out.len());
    Ok(String::from_utf8_lossy(&out[..end]).trim().to_string())
}

/// `stream: OK`, `stream: Eicar-Test-Signature FOUND`, `... ERROR`.
fn parse_scan_answer(answer: &str) -> Result<ScanResult, ClamdError> {
    let body = answer.strip_prefix("stream:").unwrap_or(answer).trim();
    if body == "OK" {
        return Ok(ScanResult::Clean);
    }
    if let Some(name) = body.strip_suffix(" FOUND") {
        return Ok(ScanResult::Infected(name.trim().to_string()));
    }
    Err(ClamdError::Refused(if answer.is_empty() { "no answer".into() } else { answer.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_table() {
        assert_eq!(parse_scan_answer("stream: OK"), Ok(ScanResult::Clean));
        assert_eq!(
            parse_scan_answer("stream: Eicar-Test-Signature FOUND"),
            Ok(ScanResult::Infected("Eicar-Test-Signature".into()))
        );
        assert!(matches!(parse_scan_answer("INSTREAM size limit exceeded. ERROR"), Err(ClamdError::Refused(_))));
        assert!(matches!(parse_scan_answer(""), Err(ClamdError::Refused(_))));
    }
}
