//! The screening actor: one per SMTP connection, a thin shell around the
//! sans-IO `Session`. A small IO task (`io`) owns the socket; the actor owns
//! the session, runs the connection checks before the greeting, answers the
//! session's questions (the recipient checks, logins off-thread, storage
//! through the delivery queue) and drives its timers. The decisions are the
//! pure functions of `crate::policy`; this module only gathers their inputs
//! (state snapshot, DNS answers, counters) and carries their outcomes out.
//! docs/operations/screening.md lists the order of the checks.

mod io;
pub mod lookups;
pub mod proxy;
mod recipient;
mod store;

use actix::prelude::*;
use consensus::state::settings::key;
use consensus::{AppliedState, Command, Outcome, Proposer, ReadHandle};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use crate::login::verify_login;
use crate::message::SkipChecks;
use crate::policy::connection::{blocked, Anvil, ClientLimits};
use crate::policy::dnsbl::{self, DnsblVerdict};
use crate::policy::lists::{check_client, ClientListVerdict};
use crate::policy::names::client_reverse;
use crate::queue::{now_ms, DeliveryQueue};
use crate::smtp::{Action, PeerInfo, Reply, Session, SessionConfig, SmtpLimits};

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

impl ListenerRole {
    /// The MX port: where unauthenticated mail from the Internet arrives,
    /// and where DNSBL, reverse-DNS and greylisting apply.
    pub fn is_mx(&self) -> bool {
        !self.require_auth
    }
}

/// What every connection of a node shares.
pub struct ScreeningServices {
    pub read: ReadHandle,
    pub proposer: Proposer,
    pub queue: crate::supervise::SupervisedAddr<DeliveryQueue>,
    /// DNS servers for DNSBL, reverse and sender checks (empty: the system's).
    pub nameservers: Vec<SocketAddr>,
    /// Per-client connection and message counts on this node.
    pub anvil: Mutex<Anvil>,
    /// Open SMTP connections on this node, against `connections_max`.
    pub open_connections: Arc<AtomicUsize>,
    /// The stages after the end of DATA (auth, content, spam, rewrite, sign).
    pub pipeline: crate::pipeline::Pipeline,
    /// Password checks running at once (`smtp.login_checks_max`).
    pub login_slots: Arc<tokio::sync::Semaphore>,
    /// This node's id: the owner recorded for the messages it quarantines.
    pub node_id: u64,
    /// Failed logins on this node since the last digest (`notify.failed_logins`).
    pub failed_logins: crate::login_failures::SharedDigest,
}

/// One open SMTP connection, counted while it lives.
struct OpenConnection {
    gauge: Arc<AtomicUsize>,
}

impl OpenConnection {
    /// Counts a new connection, or `None` when the node is at `max`.
    fn open(gauge: &Arc<AtomicUsize>, max: usize) -> Option<(Self, usize)> {
        let before = gauge.fetch_add(1, Ordering::AcqRel);
        let counted = Self { gauge: gauge.clone() };
        (before < max).then_some((counted, before + 1))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ScreeningServices {
    /// Sends a write to the cluster without waiting for it: inbound mail
    /// never waits for a commit (greylist attempts, unknown-recipient counts).
    fn propose_in_background(&self, command: Command, client: IpAddr) {
        let proposer = self.proposer.clone();
        actix::spawn(async move {
            match proposer.propose(command).await {
                Ok(Outcome::UnknownRecipientCounted { count, blocked: true }) => {
                    tracing::warn!(%client, count, "client blocked on every node: too many unknown recipients");
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(%client, error = %e, "screening write not committed"),
            }
        });
    }

    fn client_limits(state: &AppliedState) -> ClientLimits {
        let s = &state.state.settings;
        ClientLimits {
            connections_max: s.uint32(key::CONNECTION_PER_IP_MAX),
            connections_per_minute_max: s.uint32(key::CONNECTION_CONNECTIONS_PER_MINUTE_MAX),
            messages_per_minute_max: s.uint32(key::CONNECTION_MESSAGES_PER_MINUTE_MAX),
        }
    }
}

/// Intrusion prevention's counting window and block length, in ms.
pub(crate) fn intrusion_window(settings: &consensus::state::Settings) -> (u64, u64) {
    (settings.uint(key::INTRUSION_WINDOW_S) * 1000, settings.uint(key::INTRUSION_BLOCK_S) * 1000)
}

enum IoCommand {
    Write(Vec<u8>),
    StartTls,
    Close,
}

/// Bytes from the client; the IO task waits for it to be handled, so the
/// session's room is current before it reads again.
#[derive(Message)]
#[rtype(result = "()")]
struct Received(Vec<u8>);

#[derive(Message)]
#[rtype(result = "()")]
enum IoEvent {
    /// This many reply bytes reached the socket.
    Written(usize),
    TlsStarted,
    Closed,
}

/// What the connection checks established about the client.
#[derive(Debug, Clone)]
struct ClientFacts {
    ip: IpAddr,
    /// In `smtp.trusted_networks`: may relay without AUTH, skips spam
    /// scoring, greylisting and the rate limits.
    trusted: bool,
    /// Whitelisted by an ip or subnet rule.
    whitelisted: bool,
    /// A blacklist rule with the discard action matched: every message is dropped.
    discard_rule: Option<u64>,
    /// Checks this client's messages skip.
    skip: SkipChecks,
    mx: bool,
    /// The listener's name (`smtp`, `submission`, `smtps`), for the logs
    /// and the hijack notice.
    listener: &'static str,
}

pub struct Screening {
    session: Session,
    io: mpsc::UnboundedSender<IoCommand>,
    /// How many bytes the session takes now; the IO task reads no more.
    room: watch::Sender<usize>,
    _open: OpenConnection,
    services: Arc<ScreeningServices>,
    client: ClientFacts,
    /// Why the connection is refused before any lookup (lists, blocks, rates).
    refusal: Option<Reply>,
    /// This connection counts against the client's open connections.
    counted_open: bool,
    /// The MAIL transaction whose message rate was counted.
    counted_transaction: u64,
    /// Checks the current transaction skips, from whitelisted envelopes.
    envelope_skip: SkipChecks,
    /// The current transaction's SPF result, once a RCPT checked it.
    transaction_spf: Option<mail_auth::SpfOutput>,
}

impl Screening {
    /// Takes an accepted connection: reads its PROXY header first when it
    /// comes from a configured load balancer, then starts the actor.
    pub fn accept(mut stream: TcpStream, tcp_peer: PeerInfo, services: Arc<ScreeningServices>, mut role: ListenerRole) {
        let Some((open, count)) = OpenConnection::open(&services.open_connections, role.limits.connections_max) else {
            tracing::warn!(peer = %tcp_peer.ip, max = role.limits.connections_max, "refused: connections_max reached");
            return Self::turn_away(stream, &services, &role);
        };
        if role.limits.stressed(count) {
            tracing::debug!(open = count, "node under stress: short deadlines for this session");
            role.limits = role.limits.under_stress();
        }
        {
            // The MailPlus "General" limits are cluster settings, read at each session's start.
            let state = services.read.load();
            let s = &state.state.settings;
            role.limits.message_bytes_max = usize::try_from(s.uint(key::SMTP_MESSAGE_BYTES_MAX)).unwrap_or(usize::MAX);
            role.limits.recipients_max = usize::try_from(s.uint(key::SMTP_RECIPIENTS_MAX)).unwrap_or(usize::MAX);
            role.limits.hops_max = u32::try_from(s.uint(key::SMTP_HOPS_MAX)).unwrap_or(u32::MAX);
        }
        let proxied = services
            .read
            .load()
            .state
            .settings
            .networks(key::SMTP_PROXY_PEERS)
            .iter()
            .any(|n| n.contains(&tcp_peer.ip));
        if !proxied {
            return Self::begin(stream, tcp_peer, Vec::new(), services, role, open);
        }
        actix::spawn(async move {
            match proxy::read_header(&mut stream, Duration::from_secs(10)).await {
                Ok((client, early)) => Self::begin(stream, client.unwrap_or(tcp_peer), early, services, role, open),
                Err(e) => tracing::info!(peer = %tcp_peer.ip, error = %e, "PROXY protocol: connection dropped"),
            }
        });
    }

    /// Past `connections_max`: a 421 on the plain ports (best effort, under
    /// a short deadline), a bare close on the implicit-TLS port.
    fn turn_away(mut stream: TcpStream, services: &ScreeningServices, role: &ListenerRole) {
        if role.implicit_tls {
            return;
        }
        let host = services.read.load().state.settings.text(key::SMTP_HOSTNAME);
        let reply = Reply::new(421, "4.7.0", &format!("{host} Too many connections; try again later")).render();
        actix::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&reply)).await;
        });
    }

    fn begin(
        stream: TcpStream,
        peer: PeerInfo,
        early: Vec<u8>,
        services: Arc<ScreeningServices>,
        role: ListenerRole,
        open: OpenConnection,
    ) {
        Screening::create(move |ctx| {
            let (io, commands) = mpsc::unbounded_channel();
            let (room, room_rx) = watch::channel(role.limits.pending_input_bytes_max);
            let deadlines = io::IoDeadlines::from_limits(&role.limits);
            actix::spawn(io::connection_io(
                stream,
                role.tls.clone(),
                role.implicit_tls,
                deadlines,
                commands,
                room_rx,
                ctx.address(),
            ));
            let state = services.read.load();
            let settings = &state.state.settings;
            let trusted = settings.networks(key::SMTP_TRUSTED_NETWORKS).iter().any(|n| n.contains(&peer.ip));
            let skip_auth = trusted && settings.flag(key::SMTP_SKIP_AUTH_LOCAL_NETWORK);
            let config = SessionConfig {
                hostname: settings.text(key::SMTP_HOSTNAME),
                banner: settings.text(key::SMTP_BANNER),
                limits: role.limits.clone(),
                tls_available: role.tls.is_some() && !role.implicit_tls,
                tls_active: role.implicit_tls,
                auth_available: role.auth,
                require_auth: role.require_auth && !skip_auth,
                sender_must_match_login: settings.flag(key::SMTP_SENDER_MUST_MATCH_LOGIN),
                reject_pregreet: role.is_mx() && settings.uint(key::SMTP_GREET_WAIT_MS) > 0,
                reject_unauth_pipelining: settings.flag(key::SMTP_REJECT_UNAUTH_PIPELINING),
                junk_commands_max: settings.uint32(key::SMTP_JUNK_COMMANDS_MAX),
            };
            let now = now_ms();
            let mut session = Session::before_greeting(Arc::new(config), peer.clone(), now);
            if !early.is_empty() {
                session.receive(&early, now);
            }
            let client = ClientFacts {
                ip: peer.ip,
                trusted,
                whitelisted: false,
                discard_rule: None,
                skip: if trusted { SkipChecks::trusted_network() } else { SkipChecks::default() },
                mx: role.is_mx(),
                listener: role.name,
            };
            let mut screening = Screening {
                session,
                io,
                room,
                _open: open,
                services: services.clone(),
                client,
                refusal: None,
                counted_open: false,
                counted_transaction: 0,
                envelope_skip: SkipChecks::default(),
                transaction_spf: None,
            };
            // Lists first: a whitelisted client skips the blocks and the limits.
            match check_client(&state.state.rules, &state.rules, peer.ip) {
                ClientListVerdict::Refuse { rule, reply } => {
                    tracing::info!(client = %peer.ip, rule, "refused by blacklist");
                    screening.refusal = Some(reply);
                    return screening;
                }
                ClientListVerdict::Discard { rule } => screening.client.discard_rule = Some(rule),
                ClientListVerdict::Whitelisted { skip, .. } => {
                    screening.client.whitelisted = true;
                    screening.client.skip = screening.client.skip.union(skip);
                    return screening;
                }
                ClientListVerdict::Unlisted => {}
            }
            let block_all = settings.flag(key::INTRUSION_BLOCK_ALL_SESSIONS);
            let mx = screening.client.mx;
            if let Some(reply) = blocked(&state.state.counters, peer.ip, now).filter(|_| block_all || mx) {
                tracing::info!(client = %peer.ip, "refused: blocked IP");
                screening.refusal = Some(reply);
                return screening;
            }
            if !trusted {
                let limits = ScreeningServices::client_limits(&state);
                let counted = match services.anvil.lock() {
                    Ok(mut anvil) => anvil.connect(peer.ip, now, &limits),
                    Err(_) => Ok(()),
                };
                match counted {
                    Ok(()) => screening.counted_open = true,
                    Err(reply) => {
                        tracing::info!(client = %peer.ip, reply = %reply.text, "refused: connection limit");
                        screening.refusal = Some(reply);
                    }
                }
            }
            screening
        });
    }

    /// DNSBL and reverse DNS (MX port only), and the pregreet wait, all at
    /// once; then the greeting or the refusal.
    fn connection_lookups(&mut self, ctx: &mut Context<Self>) {
        let state = self.services.read.load();
        let settings = &state.state.settings;
        let c = &self.client;
        let lookups_apply = c.mx && !c.trusted && !c.whitelisted;
        let queries = if lookups_apply && !c.skip.dnsbl {
            dnsbl::queries(&state.state.rules, &state.rules, c.ip)
        } else {
            Vec::new()
        };
        let threshold = settings.uint32(key::DNSBL_THRESHOLD);
        let timeout = Duration::from_millis(settings.uint(key::DNSBL_TIMEOUT_MS).max(1));
        let reverse = (lookups_apply && settings.flag(key::CONNECTION_REJECT_UNKNOWN_CLIENT))
            .then(|| settings.flag(key::CONNECTION_REQUIRE_FORWARD_CONFIRMED));
        let greet_wait = Duration::from_millis(if c.mx { settings.uint(key::SMTP_GREET_WAIT_MS) } else { 0 });
        let ip = c.ip;
        if queries.is_empty() && reverse.is_none() && greet_wait.is_zero() {
            self.session.greet(now_ms());
            return;
        }
        let resolver = crate::dns::resolver(&self.services.nameservers);
        let checks = async move {
            let resolver = match resolver {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "no DNS resolver: DNSBL and reverse checks skipped");
                    tokio::time::sleep(greet_wait).await;
                    return None;
                }
            };
            let dnsbl = async {
                if queries.is_empty() {
                    return None;
                }
                let answers = lookups::dnsbl_answers(&resolver, &queries, timeout).await;
                match dnsbl::score(ip, &queries, &answers, threshold) {
                    DnsblVerdict::Refuse { score, reply } => {
                        tracing::info!(client = %ip, score, "refused by DNSBL");
                        Some(reply)
                    }
                    DnsblVerdict::Pass { score, listed } => {
                        if !listed.is_empty() {
                            tracing::info!(client = %ip, score, ?listed, "DNSBL score below the threshold");
                        }
                        None
                    }
                }
            };
            let reverse_check = async {
                let forward_confirmed = reverse?;
                let answer = lookups::reverse_dns(&resolver, ip, timeout).await;
                client_reverse(ip, &answer, forward_confirmed).err()
            };
            let (_, listed, unknown) = futures::join!(tokio::time::sleep(greet_wait), dnsbl, reverse_check);
            listed.or(unknown)
        };
        ctx.spawn(checks.into_actor(self).map(|refusal, act, ctx| {
            match refusal {
                Some(reply) => act.session.refuse(reply),
                None => {
                    if act.session.pregreeted() {
                        tracing::info!(client = %act.client.ip, "pregreet: client talked before the greeting");
                    }
                    act.session.greet(now_ms())
                }
            }
            act.drain(ctx);
        }));
    }

    /// A wrong account or password: logged, gathered for the digest, and
    /// counted toward blocking the client IP (trusted networks excepted).
    fn failed_login(&self, account: &str) {
        let s = &self.services;
        let exempt = self.client.trusted || self.client.whitelisted;
        let state = s.read.load();
        crate::login_failures::record(
            &s.failed_logins,
            &s.proposer,
            &state,
            self.client.ip,
            self.client.listener,
            account,
            exempt,
        );
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
                Action::Pause { ms } => {
                    ctx.run_later(Duration::from_millis(ms), |act, ctx| {
                        act.session.resume(now_ms());
                        act.drain(ctx);
                    });
                }
                Action::Authenticate { username, password } => {
                    let account = crate::login_failures::printable_account(&username);
                    let read = self.services.read.clone();
                    let slots = self.services.login_slots.clone();
                    // argon2 takes ~19 MiB and tens of ms per check: a bounded
                    // number at once, so a flood of AUTH waits instead of
                    // growing threads and memory.
                    let check = async move {
                        let _slot = slots.acquire_owned().await.map_err(|_| ())?;
                        tokio::task::spawn_blocking(move || {
                            verify_login(&read.load().state.directory, &username, &password)
                        })
                        .await
                        .map_err(|_| ())
                    };
                    ctx.spawn(check.into_actor(self).map(move |joined, act, ctx| {
                        let result = joined
                            .unwrap_or_else(|_| Err(Reply::new(454, "4.7.0", "Temporary authentication failure")));
                        if let Err(reply) = &result {
                            if reply.code == 535 {
                                act.failed_login(&account);
                            }
                        }
                        act.session.auth_result(result, now_ms());
                        act.drain(ctx);
                    }));
                }
                Action::CheckRecipient { address, mail_from, authenticated, helo, transaction } => {
                    if transaction != self.counted_transaction {
                        self.envelope_skip = SkipChecks::default();
                        self.transaction_spf = None;
                    }
                    let first_of_transaction =
                        std::mem::replace(&mut self.counted_transaction, transaction) != transaction;
                    let request = recipient::RecipientRequest {
                        services: self.services.clone(),
                        client: self.client.clone(),
                        address,
                        mail_from,
                        authenticated,
                        helo,
                        first_of_transaction,
                        spf: self.transaction_spf.clone(),
                    };
                    ctx.spawn(recipient::check(request).into_actor(self).map(|outcome, act, ctx| {
                        act.envelope_skip = act.envelope_skip.union(outcome.skip);
                        if outcome.spf.is_some() {
                            act.transaction_spf = outcome.spf;
                        }
                        act.session.recipient_verdict(outcome.verdict, now_ms());
                        act.drain(ctx);
                    }));
                }
                Action::Store(message)
                    if {
                        let state = self.services.read.load();
                        message.recipients.iter().any(|r| crate::hijack::is_unfreeze_address(&state, &r.address))
                    } =>
                {
                    // A reply to a hijack notice: a request, never delivered.
                    let services = self.services.clone();
                    let request = async move {
                        let state = services.read.load();
                        crate::hijack::unfreeze_request(&services.proposer, &state, &message).await?;
                        Ok(format!("{:011X}U", message.received_ms))
                    };
                    ctx.spawn(request.into_actor(self).map(|result, act, ctx| {
                        act.session.stored(result, now_ms());
                        act.drain(ctx);
                    }));
                }
                Action::Store(message)
                    if self.client.discard_rule.is_some()
                        || message.recipients.iter().all(|r| r.deliver_to.is_empty()) =>
                {
                    // Blacklist "discard": the client sees a normal acceptance.
                    let id = format!("{:011X}D", message.received_ms);
                    tracing::info!(client = %message.peer.ip, from = %message.mail_from, rule = ?self.client.discard_rule, queue_id = %id, "message discarded by blacklist");
                    self.session.stored(Ok(id), now_ms());
                }
                Action::Store(mut message) => {
                    message.skip = self.client.skip.union(std::mem::take(&mut self.envelope_skip));
                    if message.skip != SkipChecks::default() {
                        tracing::debug!(client = %message.peer.ip, skip = ?message.skip.names(), "message skips checks");
                    }
                    let context = crate::pipeline::MessageContext {
                        state: self.services.read.load(),
                        nameservers: self.services.nameservers.clone(),
                        client: self.client.ip,
                        own_mail: message.authenticated.is_some() || self.client.trusted,
                        spf: self.transaction_spf.take(),
                        dmarc_roll: rand::Rng::gen_range(&mut rand::thread_rng(), 0..100),
                    };
                    let services = self.services.clone();
                    let listener = self.client.listener;
                    let own_mail = context.own_mail;
                    // Every stage first (any may refuse), then hijack detection and the
                    // sender's daily quota, then the queue: the 250 waits for all.
                    let stored = async move {
                        let state = context.state.clone();
                        let disposition = services.pipeline.process(context, message).await?;
                        if let crate::pipeline::Disposition::Deliver(m) = &disposition {
                            if own_mail {
                                crate::policy::forwarding::refuse_auto_forward(&state, m)?;
                            }
                            let queue = services.queue.addr();
                            crate::hijack::count(&services.proposer, &queue, &state, m, listener).await?;
                            crate::quota::charge(&services.proposer, &state, m).await?;
                        }
                        store::store(&services, &state, disposition).await
                    };
                    ctx.spawn(stored.into_actor(self).map(|result, act, ctx| {
                        act.session.stored(result, now_ms());
                        act.drain(ctx);
                    }));
                }
                Action::Close => {
                    let _ = self.io.send(IoCommand::Close);
                }
            }
        }
        let room = self.session.input_room();
        self.room.send_if_modified(|r| std::mem::replace(r, room) != room);
    }
}

impl Actor for Screening {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        match self.refusal.take() {
            Some(reply) => self.session.refuse(reply),
            None => self.connection_lookups(ctx),
        }
        self.drain(ctx);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.session.timeout(now_ms());
            act.drain(ctx);
        });
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if self.counted_open {
            if let Ok(mut anvil) = self.services.anvil.lock() {
                anvil.disconnect(self.client.ip);
                anvil.sweep(now_ms());
            }
        }
    }
}

impl Handler<IoEvent> for Screening {
    type Result = ();

    fn handle(&mut self, event: IoEvent, ctx: &mut Context<Self>) {
        match event {
            IoEvent::Written(n) => self.session.written(n, now_ms()),
            IoEvent::TlsStarted => self.session.tls_started(now_ms()),
            IoEvent::Closed => return ctx.stop(),
        }
        self.drain(ctx);
    }
}

impl Handler<Received> for Screening {
    type Result = ();

    fn handle(&mut self, Received(bytes): Received, ctx: &mut Context<Self>) {
        self.session.receive(&bytes, now_ms());
        self.drain(ctx);
    }
}
