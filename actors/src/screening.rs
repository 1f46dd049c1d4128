//! The screening actor: one per SMTP connection, a thin shell around the
//! sans-IO `Session`. A small IO task owns the socket (plain or TLS, and the
//! STARTTLS upgrade between them); the actor owns the session, answers its
//! questions (recipient policy from the local read handle, logins off-thread,
//! storage through the delivery queue) and drives its timers. Connection
//! checks (lists, DNSBL, rates) will run here before the greeting.

use actix::prelude::*;
use consensus::ReadHandle;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::login::verify_login;
use crate::policy::lists::{check_client, check_envelope, ClientListVerdict, EnvelopeListVerdict};
use crate::queue::{now_ms, DeliveryQueue, Enqueue};
use crate::recipient::resolve_recipient;
use crate::smtp::{Action, PeerInfo, RecipientVerdict, Reply, Session, SessionConfig, SmtpLimits};

/// What kind of port a connection arrived on.
#[derive(Clone)]
pub struct ListenerRole {
    pub name: &'static str,
    pub limits: SmtpLimits,
    /// The certificate for STARTTLS or implicit TLS; `None` disables both.
    pub tls: Option<TlsAcceptor>,
    /// TLS from the first byte (port 465).
    pub implicit_tls: bool,
    /// AUTH is offered (after TLS).
    pub auth: bool,
    /// MAIL needs AUTH first (submission).
    pub require_auth: bool,
}

/// Bytes the IO task reads per call; bounds one event's size.
const READ_CHUNK_BYTES: usize = 16 * 1024;

enum IoCommand {
    Write(Vec<u8>),
    StartTls,
    Close,
}

#[derive(Message)]
#[rtype(result = "()")]
enum IoEvent {
    Received(Vec<u8>),
    TlsStarted,
    Closed,
}

pub struct Screening {
    session: Session,
    io: mpsc::UnboundedSender<IoCommand>,
    read: ReadHandle,
    queue: Addr<DeliveryQueue>,
    /// The client is in `smtp.trusted_networks`: it may relay without AUTH.
    trusted_client: bool,
    /// A blacklist rule with the discard action matched the client: its
    /// messages get a 250 and are dropped.
    discard_rule: Option<u64>,
    peer_ip: std::net::IpAddr,
}

impl Screening {
    /// Starts the actor and its IO task for an accepted connection.
    pub fn start(stream: TcpStream, peer: PeerInfo, read: ReadHandle, queue: Addr<DeliveryQueue>, role: ListenerRole) {
        Screening::create(move |ctx| {
            let (io, commands) = mpsc::unbounded_channel();
            actix::spawn(connection_io(stream, role.tls.clone(), role.implicit_tls, commands, ctx.address()));
            let state = read.load();
            let settings = &state.state.settings;
            let trusted_client = settings
                .get_networks("smtp.trusted_networks")
                .is_ok_and(|nets| nets.iter().any(|n| n.contains(&peer.ip)));
            let skip_auth = trusted_client && settings.get("smtp.skip_auth_local_network").is_ok_and(|v| v == "true");
            let config = SessionConfig {
                hostname: settings.get("smtp.hostname").unwrap_or_else(|_| "localhost".into()),
                banner: settings.get("smtp.banner").unwrap_or_default(),
                limits: role.limits.clone(),
                tls_available: role.tls.is_some() && !role.implicit_tls,
                tls_active: role.implicit_tls,
                auth_available: role.auth,
                require_auth: role.require_auth && !skip_auth,
                sender_must_match_login: settings.get("smtp.sender_must_match_login").is_ok_and(|v| v == "true"),
            };
            let peer_ip = peer.ip;
            let verdict = check_client(&state.state.rules, peer.ip);
            let mut discard_rule = None;
            let session = match verdict {
                ClientListVerdict::Refuse { rule, reply } => {
                    tracing::info!(client = %peer.ip, rule, "refused by blacklist");
                    Session::refused(Arc::new(config), peer, now_ms(), reply)
                }
                ClientListVerdict::Discard { rule } => {
                    discard_rule = Some(rule);
                    Session::new(Arc::new(config), peer, now_ms())
                }
                ClientListVerdict::Whitelisted(_) | ClientListVerdict::Unlisted => {
                    Session::new(Arc::new(config), peer, now_ms())
                }
            };
            Screening { session, io, read, queue, trusted_client, discard_rule, peer_ip }
        });
    }

    /// Carries out everything the session asked for.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Send(bytes) => {
                    let _ = self.io.send(IoCommand::Write(bytes));
                }
                Action::StartTls => {
                    let _ = self.io.send(IoCommand::StartTls);
                }
                Action::Authenticate { username, password } => {
                    let read = self.read.clone();
                    let check = tokio::task::spawn_blocking(move || {
                        verify_login(&read.load().state.directory, &username, &password)
                    });
                    ctx.spawn(check.into_actor(self).map(|joined, act, ctx| {
                        let result = joined
                            .unwrap_or_else(|_| Err(Reply::new(454, "4.7.0", "Temporary authentication failure")));
                        act.session.auth_result(result, now_ms());
                        act.drain(ctx);
                    }));
                }
                Action::CheckRecipient { address, mail_from, authenticated } => {
                    let state = self.read.load();
                    let primary = state.state.settings.get("smtp.primary_domain").unwrap_or_default();
                    let relay_allowed = authenticated.is_some() || self.trusted_client;
                    let lists = check_envelope(&state.state.rules, self.peer_ip, &mail_from, &address);
                    let verdict = match lists {
                        EnvelopeListVerdict::Reject { rule, reply } => {
                            tracing::info!(client = %self.peer_ip, from = %mail_from, to = %address, rule, "refused by blacklist");
                            RecipientVerdict::Reject(reply)
                        }
                        verdict => match resolve_recipient(&state.state.directory, &primary, &address, relay_allowed) {
                            // Discard: accepted, delivered nowhere; a message with no destination left is dropped at Store.
                            RecipientVerdict::Accept { .. }
                                if matches!(verdict, EnvelopeListVerdict::Discard { .. }) =>
                            {
                                tracing::info!(client = %self.peer_ip, from = %mail_from, to = %address, "recipient discarded by blacklist");
                                RecipientVerdict::Accept { deliver_to: Vec::new() }
                            }
                            other => other,
                        },
                    };
                    self.session.recipient_verdict(verdict, now_ms());
                }
                Action::Store(message)
                    if self.discard_rule.is_some() || message.recipients.iter().all(|r| r.deliver_to.is_empty()) =>
                {
                    // Blacklist "discard": the client sees a normal acceptance.
                    let id = format!("{:011X}D", message.received_ms);
                    tracing::info!(client = %message.peer.ip, from = %message.mail_from, rule = ?self.discard_rule, queue_id = %id, "message discarded by blacklist");
                    self.session.stored(Ok(id), now_ms());
                }
                Action::Store(message) => {
                    let stored = self.queue.send(Enqueue(message));
                    ctx.spawn(stored.into_actor(self).map(|result, act, ctx| {
                        let result = result
                            .unwrap_or_else(|_| Err(Reply::new(451, "4.3.0", "Queue unavailable; try again later")));
                        act.session.stored(result, now_ms());
                        act.drain(ctx);
                    }));
                }
                Action::Close => {
                    let _ = self.io.send(IoCommand::Close);
                }
            }
        }
    }
}

impl Actor for Screening {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.drain(ctx);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.session.timeout(now_ms());
            act.drain(ctx);
        });
    }
}

impl Handler<IoEvent> for Screening {
    type Result = ();

    fn handle(&mut self, event: IoEvent, ctx: &mut Context<Self>) {
        match event {
            IoEvent::Received(bytes) => self.session.receive(&bytes, now_ms()),
            IoEvent::TlsStarted => self.session.tls_started(now_ms()),
            IoEvent::Closed => return ctx.stop(),
        }
        self.drain(ctx);
    }
}

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
async fn connection_io(
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
