//! Sender authentication (SPF, DKIM, DMARC, ARC) and DKIM signing: the stage
//! between the end of DATA and the queue. The screening actor waits for it
//! before it answers the end of DATA, so a DMARC reject is a 550 to the
//! client, never a bounce. Decisions are the pure functions of `policy`; the
//! lookups are mail-auth's (`verify`).

pub mod headers;
pub mod policy;
pub mod sign;
pub mod spf_record;
pub mod verify;

use consensus::state::settings::key;
use consensus::AppliedState;
use mail_auth::SpfOutput;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::smtp::{InboundMessage, Reply};
use policy::{message_decision, spf_decision, AuthSettings, MessageDecision, SpfDecision};

/// What the stage needs besides the message.
pub struct AuthContext {
    pub state: Arc<AppliedState>,
    pub nameservers: Vec<SocketAddr>,
    pub client: IpAddr,
    /// The client may relay: trusted network or authenticated. Its mail is
    /// not verified (it is ours) and may be signed.
    pub own_mail: bool,
    /// SPF as checked at RCPT, when it was.
    pub spf: Option<SpfOutput>,
    /// Uniform in 0..100: DMARC `pct` applies the policy when it is below
    /// `pct`. Drawn by the caller, so tests choose it.
    pub dmarc_roll: u8,
}

/// The threads the message stage runs on: DKIM body hashes and RSA over
/// messages of up to 25 MiB, and the DNS waits between them. A tokio runtime
/// of its own (`smtp.auth_threads` workers), so a few large messages can
/// never stall the session threads that serve every other connection.
#[derive(Clone)]
pub struct AuthPool {
    handle: tokio::runtime::Handle,
}

impl AuthPool {
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        Self { handle }
    }

    /// `run` on the pool; a stage that panicked is a temporary failure (the
    /// client retries), never a lost message.
    pub async fn run(&self, ctx: AuthContext, message: Box<InboundMessage>) -> Result<Box<InboundMessage>, Reply> {
        match self.handle.spawn(run(ctx, message)).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "message authentication stage failed");
                Err(Reply::new(451, "4.3.0", "Temporary failure checking the message; try again later"))
            }
        }
    }
}

/// Verifies inbound mail and signs outbound mail. Returns the message with
/// its new headers, or the reply that refuses it.
pub async fn run(ctx: AuthContext, mut message: Box<InboundMessage>) -> Result<Box<InboundMessage>, Reply> {
    let settings = &ctx.state.state.settings;
    let hostname = settings.text(key::SMTP_HOSTNAME);
    let signs = ctx.own_mail
        && (message.authenticated.is_some()
            || settings.networks(key::DKIM_SIGN_NETWORKS).iter().any(|n| n.contains(&ctx.client)));
    if signs {
        sign_message(&ctx.state, &mut message);
    }
    if ctx.own_mail {
        return Ok(message);
    }
    let auth = AuthSettings::from_settings(settings);
    let timeout = Duration::from_millis(settings.uint(key::DNSBL_TIMEOUT_MS).max(1));
    let body = headers::strip_forged_results(&message.body, &hostname);
    let authenticator = match verify::authenticator(&ctx.nameservers) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "no DNS resolver: DKIM/DMARC not checked");
            message.body = body;
            return Ok(message);
        }
    };
    let check = verify::MessageContext {
        ip: ctx.client,
        helo: &message.helo,
        mail_from: &message.mail_from,
        hostname: &hostname,
        spf: ctx.spf.as_ref(),
        skip: message.skip,
        min_key_bits: auth.dkim_min_key_bits,
    };
    let (findings, results) = if auth.dkim_verify || auth.dmarc_verify {
        verify::check_message(&authenticator, &body, &check, timeout, ctx.dmarc_roll).await
    } else {
        (policy::MessageFindings { dkim: vec![], dmarc: None, arc: Default::default(), pct_roll: 0 }, String::new())
    };
    if let Some(spf) = &ctx.spf {
        if let SpfDecision::Accept { score } =
            spf_decision(verify::spf_of(spf.result()), spf.domain(), ctx.client, &auth)
        {
            message.spam_score += score;
        }
    }
    match message_decision(&findings, &message.skip, &auth) {
        MessageDecision::Reject(reply) => {
            tracing::info!(client = %ctx.client, from = %message.mail_from, reply = %reply.text, "refused by DMARC");
            Err(reply)
        }
        MessageDecision::Deliver { junk, warning } => {
            let mut out = results.into_bytes();
            if let Some(w) = &warning {
                tracing::info!(client = %ctx.client, from = %message.mail_from, junk, warning = %w, "authentication warning");
                out.extend_from_slice(format!("X-Gatehouse-Warning: {w}\r\n").as_bytes());
            }
            out.extend_from_slice(&body);
            message.body = out;
            message.junk |= junk;
            Ok(message)
        }
    }
}

/// Adds a DKIM-Signature with the active key of the From domain, if it has one.
fn sign_message(state: &AppliedState, message: &mut InboundMessage) {
    let Some(parsed) = mail_auth::AuthenticatedMessage::parse(&message.body) else { return };
    let Some(domain) = parsed.from.first().and_then(|f| f.rsplit_once('@')).map(|(_, d)| d.to_lowercase()) else {
        return;
    };
    let Ok(name) = consensus::address::DomainName::parse(&domain) else { return };
    let Some((selector, key)) = state.state.dkim.active(name.as_str()) else { return };
    match sign::sign(&message.body, &name.ascii(), selector, key) {
        Ok(header) => {
            let mut body = header.into_bytes();
            body.extend_from_slice(&message.body);
            message.body = body;
        }
        Err(e) => tracing::warn!(domain = %name, selector, error = %e, "DKIM signing failed; sent unsigned"),
    }
}
