//! The checks behind one RCPT, in order: black and white lists, blocked
//! client, HELO and sender policy, the recipient itself (unknown ones feed
//! intrusion prevention), the message rate, greylisting. Each verdict is a
//! pure policy function; this shell only fetches DNS answers and counters.

use consensus::address::MailAddress;
use consensus::state::settings::{key, Key};
use consensus::Command;
use std::sync::Arc;
use std::time::Duration;

use super::{lookups, ClientFacts, ScreeningServices};
use crate::auth::policy::{spf_decision, AuthSettings, SpfDecision};
use crate::auth::verify::{check_spf as check_spf_lookup, spf_of};
use crate::message::SkipChecks;
use crate::policy::connection::blocked;
use crate::policy::greylist::{self, GreylistDecision, GreylistRequest, GreylistSettings};
use crate::policy::lists::{check_envelope, EnvelopeListVerdict};
use crate::policy::names::{self, DnsExistence};
use crate::queue::now_ms;
use crate::recipient::resolve_recipient;
use crate::smtp::{RecipientVerdict, Reply};
use mail_auth::SpfOutput;

pub(super) struct RecipientRequest {
    pub services: Arc<ScreeningServices>,
    pub client: ClientFacts,
    pub address: String,
    pub mail_from: String,
    pub authenticated: Option<String>,
    pub helo: String,
    /// The first RCPT of its MAIL transaction: counts one message.
    pub first_of_transaction: bool,
    /// SPF as an earlier RCPT of this transaction found it.
    pub spf: Option<SpfOutput>,
}

pub(super) struct RecipientOutcome {
    pub verdict: RecipientVerdict,
    /// Checks the message skips because of a whitelisted envelope.
    pub skip: SkipChecks,
    /// The transaction's SPF result, once checked.
    pub spf: Option<SpfOutput>,
}

/// DNS lookups at RCPT share the DNSBL timeout: one knob for "how long may
/// DNS hold a client".
const DNS_TIMEOUT_KEY: Key<i64> = key::DNSBL_TIMEOUT_MS;

pub(super) async fn check(r: RecipientRequest) -> RecipientOutcome {
    let mut spf = r.spf.clone();
    let mut outcome = decide(&r, &mut spf).await;
    outcome.spf = spf;
    outcome
}

fn reject(reply: Reply) -> RecipientOutcome {
    RecipientOutcome { verdict: RecipientVerdict::Reject(reply), skip: SkipChecks::default(), spf: None }
}

async fn decide(r: &RecipientRequest, spf: &mut Option<SpfOutput>) -> RecipientOutcome {
    let state = r.services.read.load();
    let settings = &state.state.settings;
    let now = now_ms();
    let ip = r.client.ip;

    // Frozen while logged in (an administrator, later hijack detection):
    // nothing more leaves through this session.
    if let Some(login) = &r.authenticated {
        let key = MailAddress::parse(login).map(|a| a.key());
        if key.is_ok_and(|k| state.state.directory.users.get(&k).is_some_and(|u| u.frozen)) {
            tracing::warn!(client = %ip, user = %login, to = %r.address, "refused: account frozen");
            return reject(crate::login::frozen());
        }
    }

    let lists = check_envelope(&state.state.rules, &state.rules, ip, &r.mail_from, &r.address);
    let (whitelisted, skip, discard) = match &lists {
        EnvelopeListVerdict::Reject { rule, reply } => {
            tracing::info!(client = %ip, from = %r.mail_from, to = %r.address, rule, "refused by blacklist");
            return reject(reply.clone());
        }
        EnvelopeListVerdict::Whitelisted { skip, .. } => (true, *skip, false),
        EnvelopeListVerdict::Discard { .. } => (false, SkipChecks::default(), true),
        EnvelopeListVerdict::Unlisted => (false, SkipChecks::default(), false),
    };
    let whitelisted = whitelisted || r.client.whitelisted;
    let authenticated = r.authenticated.is_some();
    // Clients we know (logged in, trusted network, whitelisted) skip the
    // policies meant for strangers.
    let stranger = !authenticated && !r.client.trusted && !whitelisted;

    if stranger {
        if let Some(reply) = blocked(&state.state.counters, ip, now) {
            return reject(reply);
        }
        if let Err(reply) = helo_and_sender(r, settings).await {
            tracing::info!(client = %ip, helo = %r.helo, from = %r.mail_from, reply = %reply.text, "refused by HELO/sender policy");
            return reject(reply);
        }
        let auth = AuthSettings::from_settings(settings);
        if auth.spf_verify && !r.client.skip.spf && !skip.spf {
            if spf.is_none() {
                *spf = check_spf(r, settings).await;
            }
            if let Some(out) = spf.as_ref() {
                if let SpfDecision::Reject(reply) = spf_decision(spf_of(out.result()), out.domain(), ip, &auth) {
                    tracing::info!(client = %ip, from = %r.mail_from, to = %r.address, "refused by SPF");
                    return reject(reply);
                }
            }
        }
    }

    let primary = settings.text(key::SMTP_PRIMARY_DOMAIN);
    let relay_allowed = authenticated || r.client.trusted;
    let postmaster = crate::recipient::postmaster_targets(&state);
    let verdict = resolve_recipient(&state.state.directory, &primary, &postmaster, &r.address, relay_allowed);
    if let RecipientVerdict::Reject(reply) = &verdict {
        let threshold = settings.uint32(key::INTRUSION_UNKNOWN_RECIPIENTS_MAX);
        if stranger && reply.enhanced == "5.1.1" && threshold > 0 {
            let (window_ms, block_ms) = super::intrusion_window(settings);
            let command = Command::RecordUnknownRecipient { ip: ip.to_string(), threshold, window_ms, block_ms };
            r.services.propose_in_background(command, ip);
        }
        return RecipientOutcome { verdict, skip, spf: None };
    }

    if r.first_of_transaction && !authenticated && !r.client.trusted {
        let limits = ScreeningServices::client_limits(&state);
        let counted = r.services.anvil.lock().map(|mut a| a.message(ip, now, &limits)).unwrap_or(Ok(()));
        if let Err(reply) = counted {
            tracing::info!(client = %ip, "refused: message rate limit");
            return reject(reply);
        }
    }

    if r.client.mx && !authenticated && !r.client.trusted {
        let request = GreylistRequest {
            ip,
            sender: &r.mail_from,
            recipient: &r.address,
            whitelisted: whitelisted && (skip.greylist || r.client.skip.greylist),
            now_ms: now,
        };
        let config = GreylistSettings::from_settings(settings);
        match greylist::decide(&state.state.rules, &state.rules, &state.state.counters, &config, &request) {
            GreylistDecision::Skip => {}
            GreylistDecision::Pass { record } => {
                if let Some(command) = record {
                    r.services.propose_in_background(command, ip);
                }
            }
            GreylistDecision::Defer { reply, record } => {
                tracing::info!(client = %ip, from = %r.mail_from, to = %r.address, "greylisted");
                r.services.propose_in_background(record, ip);
                return reject(reply);
            }
        }
    }

    match verdict {
        RecipientVerdict::Accept { .. } if discard => {
            tracing::info!(client = %ip, from = %r.mail_from, to = %r.address, "recipient discarded by blacklist");
            RecipientOutcome { verdict: RecipientVerdict::Accept { deliver_to: Vec::new() }, skip, spf: None }
        }
        verdict => RecipientOutcome { verdict, skip, spf: None },
    }
}

/// SPF for this transaction; `None` when there is no resolver.
async fn check_spf(r: &RecipientRequest, settings: &consensus::state::Settings) -> Option<SpfOutput> {
    let authenticator = match crate::auth::verify::authenticator(&r.services.nameservers) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "no DNS resolver: SPF not checked");
            return None;
        }
    };
    let hostname = settings.text(key::SMTP_HOSTNAME);
    let timeout = Duration::from_millis(settings.uint(DNS_TIMEOUT_KEY).max(1));
    let out = check_spf_lookup(&authenticator, r.client.ip, &r.helo, &r.mail_from, &hostname, timeout).await;
    tracing::debug!(client = %r.client.ip, from = %r.mail_from, result = ?out.result(), "SPF");
    Some(out)
}

/// The HELO and sender rules that are switched on, syntax first, then DNS.
async fn helo_and_sender(r: &RecipientRequest, settings: &consensus::state::Settings) -> Result<(), Reply> {
    let reject_helo_syntax = settings.flag(key::HELO_REJECT_NON_FQDN);
    let reject_helo_unknown = settings.flag(key::HELO_REJECT_UNKNOWN);
    let reject_sender_syntax = settings.flag(key::SENDER_REJECT_NON_FQDN);
    let reject_sender_unknown = settings.flag(key::SENDER_REJECT_UNKNOWN_DOMAIN);
    if reject_helo_syntax {
        names::helo_fqdn(&r.helo)?;
    }
    if reject_sender_syntax {
        names::sender_fqdn(&r.mail_from)?;
    }
    let helo_lookup = reject_helo_unknown && !names::is_address_literal(&r.helo);
    let sender_domain = MailAddress::parse(&r.mail_from).ok().map(|a| a.domain().ascii());
    let sender_lookup = reject_sender_unknown && sender_domain.is_some();
    if !helo_lookup && !sender_lookup {
        return Ok(());
    }
    let resolver = match crate::dns::resolver(&r.services.nameservers) {
        Ok(resolver) => resolver,
        Err(e) => {
            tracing::warn!(error = %e, "no DNS resolver: HELO and sender domain checks answer 450");
            return Err(Reply::new(450, "4.4.3", "Temporary DNS failure; try again later"));
        }
    };
    let timeout = Duration::from_millis(settings.uint(DNS_TIMEOUT_KEY).max(1));
    if helo_lookup {
        let answer = match consensus::address::DomainName::parse(&r.helo) {
            Ok(name) => lookups::host_exists(&resolver, &name.ascii(), timeout).await,
            Err(_) => DnsExistence::NotFound,
        };
        names::helo_known(&r.helo, answer)?;
    }
    if let (true, Some(domain)) = (sender_lookup, sender_domain) {
        let answer = lookups::mail_domain_exists(&resolver, &domain, timeout).await;
        names::sender_domain_known(&r.mail_from, answer)?;
    }
    Ok(())
}
