//! The SMTP session core: a state machine with no IO and no clock.
//!
//! The shell (the screening actor) feeds it what the client sent with
//! `receive`, answers its questions (`recipient_verdict`, `stored`), tells it
//! the time, and carries out the actions it returns from `poll_action`: bytes
//! to send, a recipient to check, a message to store, close. While a question
//! is open the core reads no further input, so pipelined commands (RFC 2920)
//! are answered strictly in order. Standards: RFC 5321, 1870 (SIZE),
//! 2920 (PIPELINING), 6152 (8BITMIME), 6531 (SMTPUTF8), 2034 and 3463
//! (enhanced status codes).

use smtp_proto::{Error as ParseError, Request};
use std::collections::VecDeque;
use std::sync::Arc;

use super::auth::{self, AuthDialog, AuthStep};
use super::bdat::BdatReader;
use super::data::DataReader;
use super::input::InputBuffer;
use super::limits::SmtpLimits;
use super::line::{Line, LineBuffer};
use crate::message::{AcceptedRecipient, InboundMessage, PeerInfo, Reply};

/// What a session needs to know about the server.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Fully qualified name in the greeting and the EHLO reply.
    pub hostname: String,
    /// Text after the host name in the 220 greeting.
    pub banner: String,
    pub limits: SmtpLimits,
    /// STARTTLS is offered (a certificate is configured and TLS is not yet on).
    pub tls_available: bool,
    /// The connection is encrypted from the start (implicit TLS, port 465).
    pub tls_active: bool,
    /// AUTH is offered; only ever once TLS is on (RFC 4954 §4 advice; DESIGN).
    pub auth_available: bool,
    /// MAIL needs a successful AUTH first (submission ports).
    pub require_auth: bool,
    /// An authenticated client may only use its own address as sender.
    pub sender_must_match_login: bool,
    /// Refuse a client that talked before the greeting (postscreen's pregreet test).
    pub reject_pregreet: bool,
    /// Refuse a client that sends commands ahead without PIPELINING, or data
    /// before the 354 (Postfix `reject_unauth_pipelining`).
    pub reject_unauth_pipelining: bool,
    /// NOOP, VRFY, ETRN and RSET allowed outside a successful transaction; 0: no limit.
    pub junk_commands_max: u32,
}

impl SessionConfig {
    /// A plain MX listener configuration with no TLS and no AUTH.
    pub fn plain(hostname: &str, banner: &str, limits: SmtpLimits) -> Self {
        Self {
            hostname: hostname.to_string(),
            banner: banner.to_string(),
            limits,
            tls_available: false,
            tls_active: false,
            auth_available: false,
            require_auth: false,
            sender_must_match_login: false,
            reject_pregreet: false,
            reject_unauth_pipelining: false,
            junk_commands_max: 0,
        }
    }
}

/// What the shell must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Send(Vec<u8>),
    /// Flush what was sent, then run the TLS handshake; answer with `tls_started`.
    StartTls,
    /// Check a login; answer with `auth_result`.
    Authenticate {
        username: String,
        password: String,
    },
    /// Decide whether to accept this recipient; answer with `recipient_verdict`.
    /// `authenticated` is the login, when the client authenticated.
    CheckRecipient {
        address: String,
        /// The transaction's reverse path (empty for `<>`), for sender rules.
        mail_from: String,
        authenticated: Option<String>,
        /// The HELO/EHLO name, for HELO rules (checked at RCPT, as Postfix does).
        helo: String,
        /// Counts MAIL commands in this session: tells transactions apart.
        transaction: u64,
    },
    /// Wait this long before reading further input (junk-command tarpit);
    /// answer with `resume`.
    Pause {
        ms: u64,
    },
    /// Store this message durably; answer with `stored`.
    Store(Box<InboundMessage>),
    Close,
}

/// The answer to `Action::CheckRecipient`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientVerdict {
    /// Accepted; `deliver_to` holds the local mailboxes or remote addresses
    /// it expands to (aliases and groups resolved).
    Accept {
        deliver_to: Vec<String>,
    },
    Reject(Reply),
}

#[derive(Debug)]
enum Phase {
    Command,
    Auth(AuthDialog),
    Data(DataReader),
    /// Inside a BDAT chunk: `remaining` bytes still to read. A chunk the
    /// session must refuse is still read in full (`refused`), as RFC 3030 asks.
    Bdat {
        size: usize,
        remaining: usize,
        last: bool,
        refused: Option<Reply>,
    },
    Closed,
}

#[derive(Debug, PartialEq, Eq)]
enum Waiting {
    Nothing,
    Recipient(String),
    Stored,
    /// STARTTLS accepted: everything received until the handshake is discarded.
    Tls,
    Auth,
    /// The shell has not sent the greeting yet (connection checks running).
    Greeting,
    /// Tarpit: no input is read until `resume`.
    Pause,
}

#[derive(Debug, Default)]
struct Transaction {
    mail_from: String,
    smtputf8: bool,
    recipients: Vec<AcceptedRecipient>,
    /// Chunks received so far when the message comes by BDAT.
    bdat: Option<BdatReader>,
}

pub struct Session {
    config: Arc<SessionConfig>,
    peer: PeerInfo,
    phase: Phase,
    waiting: Waiting,
    line: LineBuffer,
    /// Received bytes not yet processed: pipelined input waiting behind an
    /// open question, or behind replies the client has not read yet.
    input: InputBuffer,
    /// Reply bytes handed to the shell and not yet reported written (`written`).
    unsent_bytes: usize,
    /// Commands read so far, against `commands_max`.
    commands: u64,
    actions: VecDeque<Action>,
    helo: Option<(String, bool)>,
    transaction: Option<Transaction>,
    tls_active: bool,
    authenticated: Option<String>,
    errors: u32,
    /// Junk commands (NOOP, VRFY, ETRN, RSET) since the last stored message.
    junk: u32,
    /// The reply a tarpit pause holds back.
    paused_reply: Option<Reply>,
    /// MAIL commands accepted so far.
    transactions: u64,
    started_ms: u64,
    last_input_ms: u64,
}

fn ok(text: &str) -> Reply {
    Reply::new(250, "2.0.0", text)
}

impl Session {
    /// A new session; its first action is the 220 greeting.
    pub fn new(config: Arc<SessionConfig>, peer: PeerInfo, now_ms: u64) -> Self {
        let greeting = Reply::new(220, "", &format!("{} {}", config.hostname, config.banner));
        let mut session = Self::blank(config, peer, now_ms);
        session.send(greeting);
        session
    }

    /// A session whose greeting waits for the connection checks: input that
    /// arrives meanwhile is kept (and is a pregreet); the shell calls `greet`
    /// or `refuse`.
    pub fn before_greeting(config: Arc<SessionConfig>, peer: PeerInfo, now_ms: u64) -> Self {
        let mut session = Self::blank(config, peer, now_ms);
        session.waiting = Waiting::Greeting;
        session
    }

    /// Sends the 220 greeting, unless the client already talked and the
    /// pregreet test is on.
    pub fn greet(&mut self, now_ms: u64) {
        if self.waiting != Waiting::Greeting {
            return;
        }
        self.waiting = Waiting::Nothing;
        if self.config.reject_pregreet && !self.input.is_empty() {
            return self.close_with(Reply::new(554, "5.5.1", "Protocol error: talking before the greeting"));
        }
        let greeting = Reply::new(220, "", &format!("{} {}", self.config.hostname, self.config.banner));
        self.send(greeting);
        self.last_input_ms = now_ms;
        self.process(now_ms);
    }

    /// True once the client sent something before the greeting.
    pub fn pregreeted(&self) -> bool {
        self.waiting == Waiting::Greeting && !self.input.is_empty()
    }

    /// Refuses the connection instead of greeting (blacklist, DNSBL, rates).
    pub fn refuse(&mut self, reply: Reply) {
        self.waiting = Waiting::Nothing;
        self.close_with(reply);
    }

    /// The end of an `Action::Pause`.
    pub fn resume(&mut self, now_ms: u64) {
        if self.waiting == Waiting::Pause {
            self.waiting = Waiting::Nothing;
            if let Some(reply) = self.paused_reply.take() {
                self.send(reply);
            }
            self.process(now_ms);
        }
    }

    /// A connection refused before the greeting (blacklist, DNSBL): the reply
    /// goes out instead of the 220 and the connection closes.
    pub fn refused(config: Arc<SessionConfig>, peer: PeerInfo, now_ms: u64, reply: Reply) -> Self {
        let mut session = Self::blank(config, peer, now_ms);
        session.close_with(reply);
        session
    }

    fn blank(config: Arc<SessionConfig>, peer: PeerInfo, now_ms: u64) -> Self {
        let tls_active = config.tls_active;
        Self {
            config,
            peer,
            phase: Phase::Command,
            waiting: Waiting::Nothing,
            line: LineBuffer::default(),
            input: InputBuffer::default(),
            unsent_bytes: 0,
            commands: 0,
            actions: VecDeque::new(),
            helo: None,
            transaction: None,
            tls_active,
            authenticated: None,
            errors: 0,
            junk: 0,
            paused_reply: None,
            transactions: 0,
            started_ms: now_ms,
            last_input_ms: now_ms,
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Bytes from the client.
    pub fn receive(&mut self, bytes: &[u8], now_ms: u64) {
        if self.is_closed() {
            return;
        }
        self.last_input_ms = now_ms;
        if self.waiting == Waiting::Tls {
            // RFC 3207 §4.2 / CVE-2011-0411: nothing sent before the handshake counts.
            return;
        }
        if self.input.len() + bytes.len() > self.config.limits.pending_input_bytes_max {
            self.close_with(Reply::new(421, "4.7.0", "Too much pipelined input; closing connection"));
            return;
        }
        self.input.push(bytes);
        self.process(now_ms);
    }

    /// The shell wrote `bytes` of the replies to the socket: input held back
    /// behind unread replies may be processed again.
    pub fn written(&mut self, bytes: usize, now_ms: u64) {
        self.unsent_bytes = self.unsent_bytes.saturating_sub(bytes);
        self.process(now_ms);
    }

    /// How many more bytes the session takes now. Zero while the client has
    /// not read our replies (`output_bytes_max`) or once closed: the shell
    /// stops reading the socket, so a flood waits in the client's buffers,
    /// not in ours (Postfix does the same).
    pub fn input_room(&self) -> usize {
        if self.is_closed() || self.output_blocked() {
            return 0;
        }
        self.config.limits.pending_input_bytes_max.saturating_sub(self.input.len())
    }

    /// Received bytes waiting to be processed (bounded by `pending_input_bytes_max`).
    pub fn buffered_input(&self) -> usize {
        self.input.len()
    }

    fn output_blocked(&self) -> bool {
        let max = self.config.limits.output_bytes_max;
        max > 0 && self.unsent_bytes >= max
    }

    /// When `timeout` should be called, if the client stays silent.
    pub fn deadline_ms(&self) -> Option<u64> {
        let idle = match self.phase {
            Phase::Command | Phase::Auth(_) => self.config.limits.command_timeout_ms,
            Phase::Data(_) | Phase::Bdat { .. } => self.config.limits.data_timeout_ms,
            Phase::Closed => return None,
        };
        let session_end = self.started_ms.saturating_add(self.config.limits.session_ms_max);
        Some(self.last_input_ms.saturating_add(idle).min(session_end))
    }

    pub fn timeout(&mut self, now_ms: u64) {
        if self.deadline_ms().is_some_and(|d| now_ms >= d) {
            self.close_with(Reply::new(421, "4.4.2", "Timeout exceeded; closing connection"));
        }
    }

    /// The answer to `Action::CheckRecipient`.
    pub fn recipient_verdict(&mut self, verdict: RecipientVerdict, now_ms: u64) {
        let Waiting::Recipient(address) = std::mem::replace(&mut self.waiting, Waiting::Nothing) else {
            debug_assert!(false, "recipient verdict without a question");
            return;
        };
        match (verdict, self.transaction.as_mut()) {
            (RecipientVerdict::Accept { deliver_to }, Some(tx)) => {
                tx.recipients.push(AcceptedRecipient { address, deliver_to });
                self.send(Reply::new(250, "2.1.5", "Ok"));
            }
            (RecipientVerdict::Accept { .. }, None) => self.send(Reply::new(503, "5.5.1", "No transaction")),
            (RecipientVerdict::Reject(reply), _) => self.error(reply),
        }
        self.process(now_ms);
    }

    /// The TLS handshake finished: the session starts over (RFC 3207 §4.2).
    pub fn tls_started(&mut self, now_ms: u64) {
        debug_assert_eq!(self.waiting, Waiting::Tls);
        self.waiting = Waiting::Nothing;
        self.tls_active = true;
        self.helo = None;
        self.transaction = None;
        self.input.clear();
        self.line.clear();
        self.last_input_ms = now_ms;
    }

    /// The answer to `Action::Authenticate`: the login, or the refusal.
    pub fn auth_result(&mut self, result: Result<String, Reply>, now_ms: u64) {
        debug_assert_eq!(self.waiting, Waiting::Auth);
        self.waiting = Waiting::Nothing;
        match result {
            Ok(login) => {
                self.authenticated = Some(login);
                self.send(Reply::new(235, "2.7.0", "Authentication successful"));
            }
            Err(reply) => self.error(reply),
        }
        self.process(now_ms);
    }

    /// The answer to `Action::Store`: the queue id, or why it failed.
    pub fn stored(&mut self, result: Result<String, Reply>, now_ms: u64) {
        debug_assert_eq!(self.waiting, Waiting::Stored);
        self.waiting = Waiting::Nothing;
        self.transaction = None;
        match result {
            Ok(queue_id) => {
                self.junk = 0;
                self.send(ok(&format!("Ok: queued as {queue_id}")))
            }
            Err(reply) => self.send(reply),
        }
        self.process(now_ms);
    }

    fn send(&mut self, reply: Reply) {
        let bytes = reply.render();
        self.unsent_bytes += bytes.len();
        self.actions.push_back(Action::Send(bytes));
    }

    fn close_with(&mut self, reply: Reply) {
        self.send(reply);
        self.actions.push_back(Action::Close);
        self.phase = Phase::Closed;
        self.input.clear();
    }

    /// A refusal that counts against `errors_max`.
    fn error(&mut self, reply: Reply) {
        self.errors += 1;
        self.send(reply);
        if self.errors >= self.config.limits.errors_max {
            self.close_with(Reply::new(421, "4.7.0", "Too many errors; closing connection"));
        }
    }

    fn process(&mut self, now_ms: u64) {
        while self.waiting == Waiting::Nothing && !self.input.is_empty() && !self.output_blocked() {
            match &mut self.phase {
                Phase::Closed => return,
                Phase::Command => {
                    let (line, used) =
                        self.line.take_line(self.input.pending(), self.config.limits.command_line_bytes_max);
                    self.input.consume(used);
                    let Some(line) = line else { return };
                    self.commands += 1;
                    let max = self.config.limits.commands_max;
                    if max > 0 && self.commands > max {
                        return self.close_with(Reply::new(421, "4.7.0", "Too many commands; closing connection"));
                    }
                    let ahead = !self.input.is_empty();
                    let was_data = matches!(&line, Line::Complete(b) if b.eq_ignore_ascii_case(b"DATA"));
                    // RFC 2920: only an EHLO client may send ahead, and never past DATA.
                    let esmtp = self.helo.as_ref().is_some_and(|(_, esmtp)| *esmtp);
                    if self.config.reject_unauth_pipelining && ahead && (!esmtp || was_data) {
                        self.close_with(Reply::new(554, "5.5.1", "Error: improper use of SMTP command pipelining"));
                        return;
                    }
                    self.command_line(line, now_ms);
                }
                Phase::Auth(_) => {
                    let (line, used) =
                        self.line.take_line(self.input.pending(), self.config.limits.command_line_bytes_max);
                    self.input.consume(used);
                    let Some(line) = line else { return };
                    let Phase::Auth(dialog) = std::mem::replace(&mut self.phase, Phase::Command) else { return };
                    match line {
                        Line::Complete(bytes) => self.auth_step(auth::next(dialog, &bytes)),
                        _ => self.error(Reply::new(501, "5.5.2", "Cannot decode the authentication response")),
                    }
                }
                Phase::Bdat { remaining, refused, .. } => {
                    let n = (*remaining).min(self.input.len());
                    *remaining -= n;
                    let chunk_done = *remaining == 0;
                    if refused.is_none() {
                        if let Some(reader) = self.transaction.as_mut().and_then(|t| t.bdat.as_mut()) {
                            reader.take(&self.input.pending()[..n], &self.config.limits);
                        }
                    }
                    self.input.consume(n);
                    if chunk_done {
                        self.end_of_chunk(now_ms);
                    }
                }
                Phase::Data(reader) => {
                    let (done, used) = reader.feed(self.input.pending(), &self.config.limits);
                    self.input.consume(used);
                    if done {
                        self.end_of_data(now_ms);
                    }
                }
            }
        }
    }

    fn command_line(&mut self, line: Line, now_ms: u64) {
        let mut bytes = match line {
            Line::Complete(bytes) => bytes,
            Line::BareNewline => {
                return self.error(Reply::new(500, "5.5.2", "Syntax error: bare <CR> or <LF> received"));
            }
            Line::TooLong => return self.error(Reply::new(500, "5.5.6", "Command line too long")),
        };
        bytes.extend_from_slice(b"\r\n");
        let request = Request::parse(&mut bytes.iter()).map(Request::into_owned);
        match request {
            Ok(request) => self.command(request, now_ms),
            Err(e) => self.error(parse_error_reply(e)),
        }
    }

    fn command(&mut self, request: Request<String>, now_ms: u64) {
        match request {
            Request::Ehlo { host } => self.hello(host, true),
            Request::Helo { host } => self.hello(host, false),
            Request::Mail { from } => self.mail(from),
            Request::Rcpt { to } => self.rcpt(to.address),
            Request::Data => self.data(),
            Request::Rset => {
                self.transaction = None;
                self.junk_command(ok("Ok"));
            }
            Request::Noop { .. } => self.junk_command(ok("Ok")),
            Request::Quit => self.close_with(Reply::new(221, "2.0.0", "Bye")),
            Request::Help { .. } => self.send(Reply::new(
                214,
                "2.0.0",
                "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY",
            )),
            Request::Vrfy { .. } => self.junk_command(Reply::new(
                252,
                "2.5.0",
                "Cannot VRFY user, but will accept message and attempt delivery",
            )),
            Request::Etrn { .. } => self.junk_command(Reply::new(502, "5.5.1", "Command not implemented")),
            Request::Expn { .. } => self.error(Reply::new(502, "5.5.1", "EXPN not available")),
            Request::StartTls => self.start_tls(),
            Request::Auth { mechanism, initial_response } => self.auth(mechanism, &initial_response),
            Request::Bdat { chunk_size, is_last } => self.bdat(chunk_size, is_last, now_ms),
            Request::Burl { .. } | Request::Atrn { .. } | Request::Lhlo { .. } => {
                self.error(Reply::new(502, "5.5.1", "Command not implemented"))
            }
        }
    }

    /// NOOP, VRFY, ETRN, RSET: answered, counted; every tenth answered a
    /// second late (Postfix's tarpit), and past the limit the client goes.
    fn junk_command(&mut self, reply: Reply) {
        self.junk += 1;
        let max = self.config.junk_commands_max;
        if max > 0 && self.junk > max {
            return self.close_with(Reply::new(421, "4.7.0", "Too many junk commands; closing connection"));
        }
        if max > 0 && self.junk.is_multiple_of(10) {
            self.waiting = Waiting::Pause;
            self.paused_reply = Some(reply);
            return self.actions.push_back(Action::Pause { ms: 1000 });
        }
        self.send(reply);
    }

    fn hello(&mut self, host: String, esmtp: bool) {
        if host.is_empty() {
            return self.error(Reply::new(501, "5.5.4", "Syntax: EHLO hostname"));
        }
        self.transaction = None;
        self.helo = Some((host, esmtp));
        let name = self.config.hostname.clone();
        if !esmtp {
            return self.send(Reply::new(250, "", &name));
        }
        let limits = &self.config.limits;
        let mut lines = vec![name, "PIPELINING".into(), format!("SIZE {}", limits.message_bytes_max)];
        if self.config.tls_available && !self.tls_active {
            lines.push("STARTTLS".into());
        }
        if self.config.auth_available && self.tls_active && self.authenticated.is_none() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        lines.extend(["8BITMIME".into(), "SMTPUTF8".into(), "ENHANCEDSTATUSCODES".into(), "CHUNKING".into()]);
        self.send(Reply::new(250, "", &lines.join("\n")));
    }

    fn start_tls(&mut self) {
        if self.tls_active {
            return self.error(Reply::new(503, "5.5.1", "TLS already active"));
        }
        if !self.config.tls_available {
            return self.error(Reply::new(502, "5.5.1", "STARTTLS not available"));
        }
        self.send(Reply::new(220, "2.0.0", "Ready to start TLS"));
        self.actions.push_back(Action::StartTls);
        self.waiting = Waiting::Tls;
        // Pipelined input after STARTTLS is an injection attempt: drop it.
        self.input.clear();
        self.line.clear();
    }

    fn auth(&mut self, mechanism: u64, initial_response: &str) {
        if !self.config.auth_available {
            return self.error(Reply::new(502, "5.5.1", "AUTH not available on this port"));
        }
        if !self.tls_active {
            return self.error(Reply::new(538, "5.7.11", "Encryption required for requested authentication mechanism"));
        }
        if self.authenticated.is_some() {
            return self.error(Reply::new(503, "5.5.1", "Already authenticated"));
        }
        if self.transaction.is_some() {
            return self.error(Reply::new(503, "5.5.1", "AUTH not allowed during a mail transaction"));
        }
        self.auth_step(auth::start(mechanism, initial_response));
    }

    fn auth_step(&mut self, step: AuthStep) {
        match step {
            AuthStep::Challenge(dialog, reply) => {
                self.send(reply);
                self.phase = Phase::Auth(dialog);
            }
            AuthStep::Credentials { username, password } => {
                self.waiting = Waiting::Auth;
                self.actions.push_back(Action::Authenticate { username, password });
            }
            AuthStep::Failed(reply) => self.error(reply),
        }
    }

    fn mail(&mut self, from: smtp_proto::MailFrom<String>) {
        let Some((_, esmtp)) = &self.helo else {
            return self.error(Reply::new(503, "5.5.1", "Send EHLO or HELO first"));
        };
        if self.transaction.is_some() {
            return self.error(Reply::new(503, "5.5.1", "Nested MAIL command"));
        }
        if self.config.require_auth && self.authenticated.is_none() {
            return self.error(Reply::new(530, "5.7.0", "Authentication required"));
        }
        if let Some(login) = &self.authenticated {
            if self.config.sender_must_match_login && !from.address.eq_ignore_ascii_case(login) {
                let text = format!("Sender address rejected: not owned by user {login}");
                return self.error(Reply::new(553, "5.7.1", &text));
            }
        }
        if from.flags & smtp_proto::MAIL_BODY_BINARYMIME != 0 {
            return self.error(Reply::new(555, "5.5.4", "BODY=BINARYMIME not supported"));
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        if (smtputf8 || from.size > 0) && !esmtp {
            return self.error(Reply::new(555, "5.5.4", "Parameters need EHLO"));
        }
        if from.size > self.config.limits.message_bytes_max {
            let text = format!("Message size exceeds the limit of {} bytes", self.config.limits.message_bytes_max);
            return self.error(Reply::new(552, "5.3.4", &text));
        }
        if !smtputf8 && !from.address.is_ascii() {
            return self.error(Reply::new(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"));
        }
        self.transaction = Some(Transaction { mail_from: from.address, smtputf8, recipients: Vec::new(), bdat: None });
        self.transactions += 1;
        self.send(Reply::new(250, "2.1.0", "Ok"));
    }

    fn rcpt(&mut self, address: String) {
        let Some(tx) = &self.transaction else {
            return self.error(Reply::new(503, "5.5.1", "Need MAIL before RCPT"));
        };
        if tx.recipients.len() >= self.config.limits.recipients_max {
            let text = format!("Too many recipients (limit {})", self.config.limits.recipients_max);
            return self.send(Reply::new(452, "4.5.3", &text));
        }
        if !tx.smtputf8 && !address.is_ascii() {
            return self.error(Reply::new(553, "5.6.7", "Non-ASCII address needs SMTPUTF8"));
        }
        let mail_from = tx.mail_from.clone();
        self.waiting = Waiting::Recipient(address.clone());
        let authenticated = self.authenticated.clone();
        let helo = self.helo.as_ref().map(|(h, _)| h.clone()).unwrap_or_default();
        let transaction = self.transactions;
        self.actions.push_back(Action::CheckRecipient { address, mail_from, authenticated, helo, transaction });
    }

    fn data(&mut self) {
        match &self.transaction {
            None => self.error(Reply::new(503, "5.5.1", "Need MAIL command")),
            Some(tx) if tx.recipients.is_empty() => self.error(Reply::new(554, "5.5.1", "No valid recipients")),
            Some(tx) if tx.bdat.is_some() => self.error(Reply::new(503, "5.5.1", "DATA not allowed after BDAT")),
            Some(_) => {
                self.send(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
                self.phase = Phase::Data(DataReader::new());
            }
        }
    }

    fn bdat(&mut self, size: usize, last: bool, now_ms: u64) {
        let refused = match &mut self.transaction {
            None => Some(Reply::new(503, "5.5.1", "Need MAIL command")),
            Some(tx) if tx.recipients.is_empty() => Some(Reply::new(554, "5.5.1", "No valid recipients")),
            Some(tx) => {
                tx.bdat.get_or_insert_with(BdatReader::default);
                None
            }
        };
        self.phase = Phase::Bdat { size, remaining: size, last, refused };
        if size == 0 {
            self.end_of_chunk(now_ms);
        }
    }

    fn end_of_chunk(&mut self, now_ms: u64) {
        let Phase::Bdat { size, last, refused, .. } = std::mem::replace(&mut self.phase, Phase::Command) else {
            return;
        };
        if let Some(reply) = refused {
            return self.error(reply);
        }
        if !last {
            return self.send(ok(&format!("{size} octets received")));
        }
        let reader = self.transaction.as_mut().and_then(|t| t.bdat.take()).unwrap_or_default();
        match reader.finish(&self.config.limits) {
            Ok(body) => self.store(body, now_ms),
            Err(reply) => {
                self.transaction = None;
                self.send(reply);
            }
        }
    }

    fn end_of_data(&mut self, now_ms: u64) {
        let Phase::Data(reader) = std::mem::replace(&mut self.phase, Phase::Command) else { return };
        match reader.finish(&self.config.limits) {
            Ok(body) => self.store(body, now_ms),
            Err(reply) => {
                self.transaction = None;
                self.send(reply);
            }
        }
    }

    /// Hands a complete, checked message to the shell for storage.
    fn store(&mut self, body: Vec<u8>, now_ms: u64) {
        let (Some(tx), Some((helo, esmtp))) = (self.transaction.take(), self.helo.clone()) else {
            return self.send(Reply::new(503, "5.5.1", "No transaction"));
        };
        let message = InboundMessage {
            peer: self.peer.clone(),
            helo,
            esmtp,
            mail_from: tx.mail_from,
            recipients: tx.recipients,
            body,
            smtputf8: tx.smtputf8,
            authenticated: self.authenticated.clone(),
            tls: self.tls_active,
            received_ms: now_ms,
            skip: Default::default(),
            junk: false,
            spam_symbols: Vec::new(),
        };
        self.waiting = Waiting::Stored;
        self.actions.push_back(Action::Store(Box::new(message)));
    }
}

fn parse_error_reply(e: ParseError) -> Reply {
    match e {
        ParseError::UnknownCommand => Reply::new(500, "5.5.2", "Command not recognized"),
        ParseError::InvalidSenderAddress => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        ParseError::InvalidRecipientAddress => Reply::new(501, "5.1.3", "Bad recipient address syntax"),
        ParseError::SyntaxError { syntax } => Reply::new(501, "5.5.4", &format!("Syntax: {syntax}")),
        ParseError::InvalidParameter { param } => Reply::new(501, "5.5.4", &format!("Invalid parameter {param}")),
        ParseError::UnsupportedParameter { param } => {
            Reply::new(555, "5.5.4", &format!("Unsupported parameter {param}"))
        }
        _ => Reply::new(500, "5.5.2", "Syntax error"),
    }
}
