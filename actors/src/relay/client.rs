//! One SMTP client transaction against one remote address (mail-send does
//! the wire work): greeting, EHLO (HELO when EHLO is refused), STARTTLS when
//! offered, MAIL, one RCPT per recipient, DATA, QUIT. The result says, per
//! recipient, delivered / deferred / failed, or that the next address should
//! be tried because this one never got as far as a transaction.

use mail_send::{Credentials, SmtpClient};
use smtp_proto::{EXT_8BIT_MIME, EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use crate::message::Failure;
use crate::message::{failure_from, for_all, outcome_of, DeliveryOutcome};

/// One message for one remote domain.
pub struct Envelope<'a> {
    pub helo: &'a str,
    pub mail_from: &'a str,
    /// (recipient index in the queued message, address)
    pub recipients: &'a [(usize, String)],
    pub data: &'a [u8],
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
}

/// What the smarthost demands (MX hops demand nothing: opportunistic TLS).
#[derive(Debug, Clone, Default)]
pub struct HopPolicy {
    /// STARTTLS with a verified certificate, or no delivery (the connector
    /// passed then verifies).
    pub require_tls: bool,
    /// Log in as (user, password) after TLS; never over plain text.
    pub credentials: Option<(String, String)>,
}

/// How an attempt at one address ended.
#[derive(Debug)]
pub enum HopResult {
    /// The server took part in a transaction: an outcome per recipient.
    Done(Vec<(usize, DeliveryOutcome)>),
    /// No transaction happened here (no connection, refused greeting): try the next address.
    TryNext(Failure),
    /// The TLS handshake failed after STARTTLS: try this address again in plain text.
    TlsFailed(Failure),
}

/// Delivers to one address. `tls` is the connector for STARTTLS, or `None` to stay in plain text.
pub async fn deliver_to(
    addr: SocketAddr,
    host: &str,
    env: &Envelope<'_>,
    tls: Option<&TlsConnector>,
    policy: &HopPolicy,
) -> HopResult {
    let remote = host;
    let mut client = match SmtpClient::connect(addr, env.connect_timeout).await {
        Ok(c) => c,
        Err(e) => {
            return HopResult::TryNext(Failure::local("4.4.1", format!("connect to {host}[{addr}]: {e}")).at(remote))
        }
    };
    client.timeout = env.command_timeout;
    let greeting = match tokio::time::timeout(env.command_timeout, client.read()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return HopResult::TryNext(Failure::local("4.4.2", format!("{host}[{addr}] greeting: {e}")).at(remote))
        }
        Err(_) => {
            return HopResult::TryNext(Failure::local("4.4.2", format!("{host}[{addr}] greeting timed out")).at(remote))
        }
    };
    if greeting.code / 100 != 2 {
        return HopResult::TryNext(failure_from(&greeting, remote));
    }
    let (capabilities, _) = match hello(&mut client, env.helo, remote).await {
        Ok(c) => c,
        Err(f) => return HopResult::TryNext(f),
    };
    let deferred = |status: &'static str, why: String| {
        HopResult::Done(for_all(env.recipients, &DeliveryOutcome::Deferred(Failure::local(status, why).at(remote))))
    };
    if let (Some(connector), true) = (tls, capabilities & EXT_START_TLS != 0) {
        let mut secured = match client.start_tls(connector, host).await {
            Ok(c) => c,
            Err(e) if policy.require_tls => {
                tracing::warn!(%host, %addr, error = %e, "smarthost TLS failed; mail deferred (relay.smarthost_tls = require)");
                return deferred(
                    "4.7.5",
                    format!("TLS with {host}[{addr}] failed and relay.smarthost_tls = require: {e}"),
                );
            }
            Err(e) => {
                return HopResult::TlsFailed(
                    Failure::local("4.7.5", format!("TLS with {host}[{addr}]: {e}")).at(remote),
                )
            }
        };
        let (capabilities, ehlo) = match hello(&mut secured, env.helo, remote).await {
            Ok(c) => c,
            Err(f) => return HopResult::TryNext(f),
        };
        tracing::debug!(%host, %addr, "relay over TLS");
        if let Some((user, password)) = &policy.credentials {
            let Some(ehlo) = ehlo else {
                return deferred("4.7.0", format!("{host} answered HELO: no AUTH to log in with"));
            };
            let credentials = Credentials::new(user.as_str(), password.as_str());
            if let Err(e) = secured.authenticate(&credentials, &ehlo).await {
                // The error names the server's reply, never the password.
                tracing::warn!(%host, %addr, %user, error = %e, "smarthost login failed; mail deferred");
                return deferred("4.7.8", format!("login to {host} as {user} failed: {e}"));
            }
        }
        return HopResult::Done(transaction(&mut secured, capabilities, env, remote).await);
    }
    if policy.require_tls {
        return deferred("4.7.4", format!("{host} does not offer STARTTLS and relay.smarthost_tls = require"));
    }
    if policy.credentials.is_some() {
        return deferred("4.7.0", format!("{host} does not offer STARTTLS: the password is never sent in plain text"));
    }
    HopResult::Done(transaction(&mut client, capabilities, env, remote).await)
}

/// EHLO, or HELO when EHLO is refused; the server's extensions, and its
/// EHLO answer (none after HELO).
async fn hello<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    helo: &str,
    remote: &str,
) -> Result<(u32, Option<smtp_proto::EhloResponse<String>>), Failure> {
    match client.ehlo(helo).await {
        Ok(r) => Ok((r.capabilities, Some(r))),
        Err(mail_send::Error::UnexpectedReply(r)) if r.code / 100 == 5 => {
            match client.cmd(format!("HELO {helo}\r\n")).await {
                Ok(r) if r.code / 100 == 2 => Ok((0, None)),
                Ok(r) => Err(failure_from(&r, remote)),
                Err(e) => Err(Failure::local("4.4.2", format!("{remote} HELO: {e}")).at(remote)),
            }
        }
        Err(mail_send::Error::UnexpectedReply(r)) => Err(failure_from(&r, remote)),
        Err(e) => Err(Failure::local("4.4.2", format!("{remote} EHLO: {e}")).at(remote)),
    }
}

async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    client: &mut SmtpClient<S>,
    capabilities: u32,
    env: &Envelope<'_>,
    remote: &str,
) -> Vec<(usize, DeliveryOutcome)> {
    let lost = |stage: &str, e: mail_send::Error| {
        DeliveryOutcome::Deferred(
            Failure::local("4.4.2", format!("lost connection with {remote} during {stage}: {e}")).at(remote),
        )
    };
    let needs_utf8 = !env.mail_from.is_ascii() || env.recipients.iter().any(|(_, r)| !r.is_ascii());
    if needs_utf8 && capabilities & EXT_SMTP_UTF8 == 0 {
        let f =
            Failure::local("5.6.7", format!("{remote} does not offer SMTPUTF8, needed for these addresses")).at(remote);
        return for_all(env.recipients, &DeliveryOutcome::Failed(f));
    }
    let mut params = String::new();
    if needs_utf8 {
        params.push_str(" SMTPUTF8");
    }
    if capabilities & EXT_8BIT_MIME != 0 && !env.data.is_ascii() {
        params.push_str(" BODY=8BITMIME");
    }
    if capabilities & EXT_SIZE != 0 {
        params.push_str(&format!(" SIZE={}", env.data.len()));
    }
    match client.cmd(format!("MAIL FROM:<{}>{params}\r\n", env.mail_from)).await {
        Ok(r) if r.code / 100 == 2 => {}
        Ok(r) => return for_all(env.recipients, &outcome_of(&r, remote)),
        Err(e) => return for_all(env.recipients, &lost("MAIL FROM", e)),
    }
    let mut outcomes = Vec::new();
    let mut accepted = Vec::new();
    for (index, address) in env.recipients {
        match client.cmd(format!("RCPT TO:<{address}>\r\n")).await {
            Ok(r) if r.code / 100 == 2 => accepted.push(*index),
            Ok(r) => outcomes.push((*index, outcome_of(&r, remote))),
            Err(e) => {
                // Everyone without a final answer (accepted ones included: no DATA happened) is deferred.
                let decided: Vec<usize> = outcomes.iter().map(|(i, _)| *i).collect();
                let outcome = lost("RCPT TO", e);
                let rest = env.recipients.iter().filter(|(i, _)| !decided.contains(i));
                outcomes.extend(rest.map(|(i, _)| (*i, outcome.clone())));
                return outcomes;
            }
        }
    }
    if accepted.is_empty() {
        let _ = client.cmd(b"QUIT\r\n").await;
        return outcomes;
    }
    // mail-send ends the data with CRLF.CRLF itself; the message's own final CRLF is that first CRLF.
    let body = env.data.strip_suffix(b"\r\n").unwrap_or(env.data);
    let result = match client.data(body).await {
        Ok(_) => DeliveryOutcome::Delivered,
        Err(mail_send::Error::UnexpectedReply(r)) => outcome_of(&r, remote),
        Err(e) => lost("DATA", e),
    };
    outcomes.extend(accepted.into_iter().map(|i| (i, result.clone())));
    let _ = client.cmd(b"QUIT\r\n").await;
    outcomes
}
