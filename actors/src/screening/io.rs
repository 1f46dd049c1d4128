//! The connection's IO task: owns the socket (plain or TLS, and the
//! STARTTLS upgrade between them), writes what the actor sends and reads
//! what the client sends — and never waits without a deadline.
//!
//! Deadlines: the TLS handshake (`tls_handshake_timeout_ms`), every write
//! (`write_timeout_ms`), and the whole connection (`session_ms_max` plus one
//! write and one handshake deadline, a backstop behind the session's own
//! timers). Reads need none here: the actor's session times out idle
//! clients and asks for Close, which this task carries out under the write
//! deadline. Back-pressure: the task reads only as much as the session has
//! room for (`Session::input_room`, which the actor publishes on a watch
//! channel), so a client that floods without reading its replies fills its
//! own buffers, not ours.

use actix::prelude::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use super::{IoCommand, IoEvent, Received, Screening};
use crate::smtp::SmtpLimits;

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

/// The deadlines the task enforces, from the session's limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct IoDeadlines {
    pub handshake: Duration,
    pub write: Duration,
    pub connection: Duration,
}

impl IoDeadlines {
    pub fn from_limits(limits: &SmtpLimits) -> Self {
        let handshake = Duration::from_millis(limits.tls_handshake_timeout_ms.max(1));
        let write = Duration::from_millis(limits.write_timeout_ms.max(1));
        let connection = Duration::from_millis(limits.session_ms_max) + handshake + write;
        Self { handshake, write, connection }
    }
}

/// The connection, everything included, under the backstop deadline; the
/// actor hears `Closed` whichever way it ends.
pub(super) async fn connection_io(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    implicit_tls: bool,
    deadlines: IoDeadlines,
    commands: mpsc::UnboundedReceiver<IoCommand>,
    room: watch::Receiver<usize>,
    actor: Addr<Screening>,
) {
    let peer = stream.peer_addr().ok();
    let run = serve(stream, tls, implicit_tls, deadlines, commands, room, actor.clone());
    if timeout(deadlines.connection, run).await.is_err() {
        tracing::info!(?peer, "connection dropped: session_ms_max passed");
    }
    actor.do_send(IoEvent::Closed);
}

/// Writes what the actor sends, reads what the client sends, upgrades to TLS
/// on request. Commands take priority over reads, so the STARTTLS reply is
/// written and the handshake begins before any further client bytes are read
/// as plaintext.
async fn serve(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    implicit_tls: bool,
    deadlines: IoDeadlines,
    mut commands: mpsc::UnboundedReceiver<IoCommand>,
    mut room: watch::Receiver<usize>,
    actor: Addr<Screening>,
) {
    let mut conn = Conn::Plain(stream);
    if implicit_tls {
        match upgrade(conn, tls.as_ref(), deadlines.handshake).await {
            Some(c) => conn = c,
            None => return,
        }
    }
    let mut buf = vec![0u8; READ_CHUNK_BYTES];
    loop {
        let budget = (*room.borrow_and_update()).min(READ_CHUNK_BYTES);
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(IoCommand::Write(bytes)) => {
                    if !matches!(timeout(deadlines.write, conn.write_all(&bytes)).await, Ok(Ok(()))) {
                        tracing::debug!("write failed or timed out: connection dropped");
                        return;
                    }
                    actor.do_send(IoEvent::Written(bytes.len()));
                }
                Some(IoCommand::StartTls) => match upgrade(conn, tls.as_ref(), deadlines.handshake).await {
                    Some(c) => {
                        conn = c;
                        actor.do_send(IoEvent::TlsStarted);
                    }
                    None => return,
                },
                Some(IoCommand::Close) | None => {
                    let _ = timeout(deadlines.write, conn.shutdown()).await;
                    return;
                }
            },
            // The session's room grew: read again.
            changed = room.changed(), if budget == 0 => {
                if changed.is_err() {
                    return;
                }
            }
            read = conn.read(&mut buf[..budget]), if budget > 0 => match read {
                Ok(0) | Err(_) => return,
                // Waiting for the actor keeps `room` current before the next read.
                Ok(n) => {
                    if actor.send(Received(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            },
        }
    }
}

async fn upgrade(conn: Conn, tls: Option<&TlsAcceptor>, deadline: Duration) -> Option<Conn> {
    let (Conn::Plain(tcp), Some(acceptor)) = (conn, tls) else { return None };
    match timeout(deadline, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => Some(Conn::Tls(Box::new(s))),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(deadline_ms = deadline.as_millis() as u64, "TLS handshake timed out");
            None
        }
    }
}
