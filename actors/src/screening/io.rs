//! The connection's IO task: owns the socket (plain or TLS, and the
//! STARTTLS upgrade between them), writes what the actor sends and reads
//! what the client sends.

use actix::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::{IoCommand, IoEvent, Screening};

/// Bytes the IO task reads per call; bounds one event's size.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// The socket, before or after TLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.write_all(bytes).await,
            Conn::Tls(s) => s.write_all(bytes).await,
        }
    }

    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
        };
    }
}

/// Owns the socket: writes what the actor sends, reads what the client
/// sends, upgrades to TLS on request. Commands take priority over reads, so
/// the STARTTLS reply is written and the handshake begins before any further
/// client bytes are read as plaintext.
pub(super) async fn connection_io(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    implicit_tls: bool,
    mut commands: mpsc::UnboundedReceiver<IoCommand>,
    actor: Addr<Screening>,
) {
    let mut conn = Conn::Plain(stream);
    if implicit_tls {
        conn = match upgrade(conn, tls.as_ref()).await {
            Some(c) => c,
            None => return actor.do_send(IoEvent::Closed),
        };
    }
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(IoCommand::Write(bytes)) => {
                    if conn.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(IoCommand::StartTls) => match upgrade(conn, tls.as_ref()).await {
                    Some(c) => {
                        conn = c;
                        actor.do_send(IoEvent::TlsStarted);
                    }
                    None => return actor.do_send(IoEvent::Closed),
                },
                Some(IoCommand::Close) | None => {
                    conn.shutdown().await;
                    break;
                }
            },
            read = conn.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => actor.do_send(IoEvent::Received(buf[..n].to_vec())),
            },
        }
    }
    actor.do_send(IoEvent::Closed);
}

async fn upgrade(conn: Conn, tls: Option<&TlsAcceptor>) -> Option<Conn> {
    let (Conn::Plain(tcp), Some(acceptor)) = (conn, tls) else { return None };
    match acceptor.accept(tcp).await {
        Ok(s) => Some(Conn::Tls(Box::new(s))),
        Err(e) => {
            tracing::info!(error = %e, "TLS handshake failed");
            None
        }
    }
}
