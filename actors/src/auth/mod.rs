//! Sender authentication (SPF, DKIM, DMARC, ARC) and DKIM signing: the
//! first and last stages of the message pipeline (`crate::pipeline`). The screening actor waits for it
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
use std::time::Duration;

use crate::message::{InboundMessage, Reply};
use crate::pipeline::MessageContext;
use policy::{message_decision, spf_decision, AuthSettings, MessageDecision, SpfDecision};

/// Verifies inbound mail (the pipeline's first stage; own mail passes).
/// Returns the message with its result headers, or the reply that refuses it.
pub async fn verify(ctx: &MessageContext, mut message: Box<InboundMessage>) -> Result<Box<InboundMessage>, Reply> {
    let settings = &ctx.state.state.settings;
    let hostname = settings.text(key::SMTP_HOSTNAME);
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
        let result = verify::spf_of(spf.result());
        if let SpfDecision::Accept { score } = spf_decision(result, spf.domain(), ctx.client, &auth) {
            let name = match result {
                policy::Spf::Fail => "SPF_FAIL",
                _ => "SPF_SOFTFAIL",
            };
            if score != 0 {
                message.spam_symbols.push((name, score));
            }
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

/// Adds a DKIM-Signature with the active key of the From domain, if it has
/// one: the pipeline's last stage, so nothing changes the body after it.
pub fn sign_message(state: &AppliedState, message: &mut InboundMessage) {
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
