//! The relay actor (Postfix's smtp(8)): delivers one queued message to the
//! recipients of one remote domain. It finds the hops (MX or smarthost),
//! tries each address in turn until one takes part in a transaction, uses
//! STARTTLS whenever offered (opportunistic: any certificate, as Postfix's
//! `smtp_tls_security_level = may`; a failed handshake is retried in plain
//! text) and answers with an outcome per recipient. Retries, expiry and
//! bounces are the queue's business.

pub mod client;
pub mod route;

use actix::prelude::*;
use consensus::state::settings::key;
use consensus::ReadHandle;
use hickory_resolver::TokioResolver;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;

use crate::message::Failure;
use crate::message::{for_all, DeliveryOutcome};
use client::{deliver_to, Envelope, HopPolicy, HopResult};

/// Deliver `data` to these recipients, all in `domain`.
#[derive(Message)]
#[rtype(result = "Vec<(usize, DeliveryOutcome)>")]
pub struct RelayDomain {
    pub queue_id: String,
    pub mail_from: String,
    pub domain: String,
    /// (recipient index in the queued message, address)
    pub recipients: Vec<(usize, String)>,
    pub data: Arc<Vec<u8>>,
}

/// Node-local relay configuration (the rest comes from replicated settings).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// DNS servers as ip:port; empty means the system's resolv.conf.
    pub nameservers: Vec<SocketAddr>,
    /// Outbound SMTP connections open at once, over all domains.
    pub connections_max: usize,
}

pub struct Relay {
    read: ReadHandle,
    config: RelayConfig,
    /// Built when the actor starts, on the thread whose runtime will drive its sockets.
    resolver: Result<Arc<TokioResolver>, String>,
    tls: TlsConnector,
    slots: Arc<Semaphore>,
    /// Deliveries in progress per destination (domain, or the smarthost),
    /// against `relay.destination_concurrency_max`.
    destinations: HashMap<String, Arc<Semaphore>>,
    /// The verifying connector of `relay.smarthost_tls = require`, with the
    /// `relay.smarthost_ca` text it was built from: built once per change,
    /// not per message (the system's roots are read from disk).
    verified: Option<(String, TlsConnector)>,
}

impl Relay {
    /// The TLS client configuration every relay incarnation shares.
    pub fn tls_connector() -> Result<TlsConnector, String> {
        mail_send::smtp::tls::build_tls_connector(true)
    }

    /// A connector that verifies the server's certificate for its name:
    /// against `ca_pem` when given, else the system's roots.
    pub fn verified_connector(ca_pem: &str) -> Result<TlsConnector, String> {
        if ca_pem.trim().is_empty() {
            return mail_send::smtp::tls::build_tls_connector(false);
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
            let cert = cert.map_err(|e| format!("relay.smarthost_ca: {e}"))?;
            roots.add(cert).map_err(|e| format!("relay.smarthost_ca: {e}"))?;
        }
        if roots.is_empty() {
            return Err("relay.smarthost_ca: no PEM certificate in it".into());
        }
        let config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        Ok(TlsConnector::from(Arc::new(config)))
    }

    pub fn new(read: ReadHandle, config: RelayConfig, tls: TlsConnector) -> Self {
        let slots = Arc::new(Semaphore::new(config.connections_max.max(1)));
        Self {
            read,
            config,
            resolver: Err("not started".into()),
            tls,
            slots,
            destinations: HashMap::new(),
            verified: None,
        }
    }

    /// The verifying connector for `ca_pem`, built when the text changed.
    fn verified(&mut self, ca_pem: &str) -> Result<TlsConnector, String> {
        match &self.verified {
            Some((text, connector)) if text == ca_pem => Ok(connector.clone()),
            _ => {
                let connector = Self::verified_connector(ca_pem)?;
                self.verified = Some((ca_pem.to_string(), connector.clone()));
                Ok(connector)
            }
        }
    }

    /// The permits of one destination. Idle destinations are forgotten, so
    /// the map holds only those with deliveries in flight (and a changed
    /// limit takes effect once a destination goes idle).
    fn destination(&mut self, key: &str, limit: usize) -> Arc<Semaphore> {
        self.destinations.retain(|k, sem| k == key || Arc::strong_count(sem) > 1);
        self.destinations.entry(key.to_string()).or_insert_with(|| Arc::new(Semaphore::new(limit.max(1)))).clone()
    }
}

impl Actor for Relay {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        self.resolver = crate::dns::build_resolver(&self.config.nameservers).map(Arc::new);
        if let Err(e) = &self.resolver {
            tracing::error!(error = %e, "no DNS resolver: remote mail stays queued");
        }
    }
}

/// The settings one delivery needs, read once per message.
struct RelaySettings {
    hostname: String,
    smarthost: String,
    port: u16,
    connect_timeout: Duration,
    command_timeout: Duration,
    destination_concurrency_max: usize,
    /// What the smarthost demands, when there is one.
    smarthost_policy: Option<HopPolicy>,
    smarthost_ca: String,
}

/// The settings for a delivery to `domain` (lower case). Inbound relay
/// domains go to their own MX, never to the smarthost.
fn settings(read: &ReadHandle, domain: &str) -> RelaySettings {
    let state = read.load();
    let s = &state.state.settings;
    let secs = |key| Duration::from_secs(s.uint(key).max(1));
    let smarthost =
        if state.state.directory.relay_domain(domain).is_some() { String::new() } else { s.text(key::RELAY_SMARTHOST) };
    RelaySettings {
        hostname: s.text(key::SMTP_HOSTNAME),
        port: s.int(key::RELAY_PORT).clamp(1, 65535) as u16,
        connect_timeout: secs(key::RELAY_CONNECT_TIMEOUT_S),
        command_timeout: secs(key::RELAY_COMMAND_TIMEOUT_S),
        destination_concurrency_max: s.uint(key::RELAY_DESTINATION_CONCURRENCY_MAX).max(1) as usize,
        smarthost_policy: (!smarthost.is_empty()).then(|| HopPolicy {
            require_tls: s.text(key::RELAY_SMARTHOST_TLS) == "require",
            credentials: Some((s.text(key::RELAY_SMARTHOST_USERNAME), s.text(key::RELAY_SMARTHOST_PASSWORD)))
                .filter(|(user, _)| !user.is_empty()),
        }),
        smarthost_ca: s.text(key::RELAY_SMARTHOST_CA),
        smarthost,
    }
}

/// `local@domain` with the domain in A-label form (unchanged if it cannot be converted).
pub fn ascii_domain(address: &str) -> String {
    match address.rsplit_once('@') {
        Some((local, domain)) if !domain.is_ascii() => match idna::domain_to_ascii(domain) {
            Ok(ascii) => format!("{local}@{ascii}"),
            Err(_) => address.to_string(),
        },
        _ => address.to_string(),
    }
}

impl Handler<RelayDomain> for Relay {
    type Result = ResponseFuture<Vec<(usize, DeliveryOutcome)>>;

    fn handle(&mut self, msg: RelayDomain, _: &mut Context<Self>) -> Self::Result {
        let resolver = match &self.resolver {
            Ok(r) => r.clone(),
            Err(e) => {
                let deferred = DeliveryOutcome::Deferred(Failure::local("4.4.3", e));
                return Box::pin(std::future::ready(for_all(&msg.recipients, &deferred)));
            }
        };
        let s = settings(&self.read, &msg.domain.to_ascii_lowercase());
        let policy = s.smarthost_policy.clone().unwrap_or_default();
        let tls = if policy.require_tls {
            match self.verified(&s.smarthost_ca) {
                Ok(c) => c,
                Err(e) => {
                    let deferred = DeliveryOutcome::Deferred(Failure::local("4.7.5", e));
                    return Box::pin(std::future::ready(for_all(&msg.recipients, &deferred)));
                }
            }
        } else {
            self.tls.clone()
        };
        let slots = self.slots.clone();
        let key = if s.smarthost.is_empty() { msg.domain.to_ascii_lowercase() } else { s.smarthost.clone() };
        let destination = self.destination(&key, s.destination_concurrency_max);
        Box::pin(async move {
            // The destination's turn first, so mail waiting for a busy domain holds no connection slot.
            let Ok(_turn) = destination.acquire_owned().await else {
                return for_all(&msg.recipients, &DeliveryOutcome::Deferred(Failure::local("4.3.0", "relay stopped")));
            };
            let Ok(_slot) = slots.acquire_owned().await else {
                return for_all(&msg.recipients, &DeliveryOutcome::Deferred(Failure::local("4.3.0", "relay stopped")));
            };
            // IDN: DNS and the remote's name go in A-label form.
            let domain = idna::domain_to_ascii(&msg.domain).unwrap_or_else(|_| msg.domain.clone());
            let hops = match route::hops_for(&resolver, &domain, &s.smarthost, s.port).await {
                Ok(h) => h,
                Err(f) if f.status.starts_with('5') => return for_all(&msg.recipients, &DeliveryOutcome::Failed(f)),
                Err(f) => return for_all(&msg.recipients, &DeliveryOutcome::Deferred(f)),
            };
            // RFC 6531 §3.2: an IDN domain can travel as A-labels, so only
            // a non-ASCII local part needs a server that offers SMTPUTF8.
            let mail_from = ascii_domain(&msg.mail_from);
            let recipients: Vec<(usize, String)> = msg.recipients.iter().map(|(i, a)| (*i, ascii_domain(a))).collect();
            let env = Envelope {
                helo: &s.hostname,
                mail_from: &mail_from,
                recipients: &recipients,
                data: &msg.data,
                connect_timeout: s.connect_timeout,
                command_timeout: s.command_timeout,
            };
            let mut last = Failure::local("4.4.3", format!("no address found for the mail exchangers of {domain}"));
            for hop in hops {
                let addrs = match route::addresses(&resolver, &hop).await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::debug!(queue_id = %msg.queue_id, host = %hop.host, error = %e, "no address");
                        last.diagnostic = format!("x-gatehouse; {e}");
                        continue;
                    }
                };
                for addr in addrs {
                    let mut result = deliver_to(addr, &hop.host, &env, Some(&tls), &policy).await;
                    if let HopResult::TlsFailed(f) = &result {
                        tracing::warn!(queue_id = %msg.queue_id, host = %hop.host, %addr, reason = %f.diagnostic, "TLS failed; retrying in plain text");
                        result = deliver_to(addr, &hop.host, &env, None, &policy).await;
                    }
                    match result {
                        HopResult::Done(outcomes) => {
                            tracing::info!(queue_id = %msg.queue_id, host = %hop.host, %addr, recipients = outcomes.len(), "relay attempt finished");
                            return outcomes;
                        }
                        HopResult::TryNext(f) | HopResult::TlsFailed(f) => {
                            tracing::info!(queue_id = %msg.queue_id, host = %hop.host, %addr, reason = %f.diagnostic, "trying the next address");
                            last = f;
                        }
                    }
                }
            }
            // Nobody answered: temporary, whatever the last host said (Postfix defers here too).
            if last.status.starts_with('5') {
                last.status.replace_range(0..1, "4");
            }
            for_all(&msg.recipients, &DeliveryOutcome::Deferred(last))
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn idn_domains_travel_as_a_labels() {
        assert_eq!(super::ascii_domain("alice@bücher.example"), "alice@xn--bcher-kva.example");
        assert_eq!(super::ascii_domain("jörg@bücher.example"), "jörg@xn--bcher-kva.example");
        assert_eq!(super::ascii_domain("bob@example.com"), "bob@example.com");
        assert_eq!(super::ascii_domain(""), "");
    }
}
