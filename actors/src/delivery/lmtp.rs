//! LMTP delivery (RFC 2033) to an external mailbox server such as Dovecot,
//! the alternative to writing Maildirs ourselves (Postfix's lmtp(8)). One
//! transaction per message carries all its local recipients; after DATA the
//! server answers once per accepted recipient, so each gets its own outcome:
//! 2xx delivered, 4xx retried by the queue, 5xx bounced.

use actix::prelude::*;
use mail_send::SmtpClient;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::message::outcome_of;
use crate::message::Failure;
use crate::message::{for_all, DeliveryOutcome};

/// Where the LMTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LmtpTarget {
    Tcp(String),
    Unix(PathBuf),
}

impl LmtpTarget {
    /// `host:port`, or `unix:/path/to/socket`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Ok(Self::Unix(PathBuf::from(path))),
            Some(_) => Err(format!("{text:?}: empty socket path")),
            None if text.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) => {
                Ok(Self::Tcp(text.to_string()))
            }
            None => Err(format!("{text:?} is neither host:port nor unix:/path")),
        }
    }

    fn name(&self) -> String {
        match self {
            Self::Tcp(a) => a.clone(),
            Self::Unix(p) => format!("unix:{}", p.display()),
        }
    }
}

/// Deliver one message to these local recipients over LMTP.
#[derive(Message)]
#[rtype(result = "Vec<(usize, DeliveryOutcome)>")]
pub struct DeliverLmtp {
    pub queue_id: String,
    pub mail_from: String,
    /// (recipient index in the queued message, mailbox address)
    pub recipients: Vec<(usize, String)>,
    pub data: Arc<Vec<u8>>,
}

#[derive(Clone)]
pub struct LmtpDelivery {
    pub target: LmtpTarget,
    /// Our name in LHLO.
    pub hostname: String,
    pub timeout: Duration,
}

impl Actor for LmtpDelivery {
    type Context = Context<Self>;
}

impl Handler<DeliverLmtp> for LmtpDelivery {
    type Result = ResponseFuture<Vec<(usize, DeliveryOutcome)>>;

    fn handle(&mut self, msg: DeliverLmtp, _: &mut Context<Self>) -> Self::Result {
        let target = self.target.clone();
        let hostname = self.hostname.clone();
        let timeout = self.timeout;
        Box::pin(async move {
            let server = target.name();
            let connect_failed = |e: String| {
                let f = Failure::local("4.4.1", format!("LMTP server {server}: {e}")).at(&server);
                for_all(&msg.recipients, &DeliveryOutcome::Deferred(f))
            };
            let outcomes = match &target {
                LmtpTarget::Tcp(addr) => {
                    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr)).await {
                        Ok(Ok(stream)) => transaction(SmtpClient { stream, timeout }, &hostname, &msg, &server).await,
                        Ok(Err(e)) => connect_failed(e.to_string()),
                        Err(_) => connect_failed("connect timed out".into()),
                    }
                }
                LmtpTarget::Unix(path) => {
                    match tokio::time::timeout(timeout, tokio::net::UnixStream::connect(path)).await {
                        Ok(Ok(stream)) => transaction(SmtpClient { stream, timeout }, &hostname, &msg, &server).await,
                        Ok(Err(e)) => connect_failed(e.to_string()),
                        Err(_) => connect_failed("connect timed out".into()),
                    }
                }
            };
            let delivered = outcomes.iter().filter(|(_, o)| *o == DeliveryOutcome::Delivered).count();
            tracing::info!(queue_id = %msg.queue_id, %server, delivered, recipients = outcomes.len(), "lmtp delivery");
            outcomes
        })
    }
}

async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    mut client: SmtpClient<S>,
    hostname: &str,
    msg: &DeliverLmtp,
    server: &str,
) -> Vec<(usize, DeliveryOutcome)> {
    let all = |o: DeliveryOutcome| for_all(&msg.recipients, &o);
    let lost = |stage: &str, e: String| {
        DeliveryOutcome::Deferred(Failure::local("4.4.2", format!("LMTP {server} during {stage}: {e}")).at(server))
    };
    match tokio::time::timeout(client.timeout, client.read()).await {
        Ok(Ok(r)) if r.code / 100 == 2 => {}
        Ok(Ok(r)) => return all(outcome_of(&r, server)),
        Ok(Err(e)) => return all(lost("greeting", e.to_string())),
        Err(_) => return all(lost("greeting", "timed out".into())),
    }
    if let Err(e) = client.lhlo(hostname).await {
        return all(lost("LHLO", e.to_string()));
    }
    match client.cmd(format!("MAIL FROM:<{}>\r\n", msg.mail_from)).await {
        Ok(r) if r.code / 100 == 2 => {}
        Ok(r) => return all(outcome_of(&r, server)),
        Err(e) => return all(lost("MAIL FROM", e.to_string())),
    }
    let mut outcomes = Vec::new();
    let mut accepted = Vec::new();
    for (index, address) in &msg.recipients {
        match client.cmd(format!("RCPT TO:<{address}>\r\n")).await {
            Ok(r) if r.code / 100 == 2 => accepted.push(*index),
            Ok(r) => outcomes.push((*index, outcome_of(&r, server))),
            Err(e) => return all(lost("RCPT TO", e.to_string())),
        }
    }
    if accepted.is_empty() {
        let _ = client.cmd(b"QUIT\r\n").await;
        return outcomes;
    }
    match client.cmd(b"DATA\r\n").await {
        Ok(r) if r.code == 354 => {}
        Ok(r) => {
            outcomes.extend(accepted.iter().map(|i| (*i, outcome_of(&r, server))));
            return outcomes;
        }
        Err(e) => return all(lost("DATA", e.to_string())),
    }
    let body = msg.data.strip_suffix(b"\r\n").unwrap_or(&msg.data);
    if let Err(e) = client.write_message(body).await {
        return all(lost("DATA", e.to_string()));
    }
    // RFC 2033 §4.2: one reply per accepted recipient, in RCPT order.
    match tokio::time::timeout(client.timeout, client.read_many(accepted.len())).await {
        Ok(Ok(replies)) => {
            outcomes.extend(accepted.iter().zip(replies.iter()).map(|(i, r)| (*i, outcome_of(r, server))));
            // A reply the server never sent leaves its recipient for the next attempt.
            outcomes.extend(accepted.iter().skip(replies.len()).map(|i| (*i, lost("DATA", "missing reply".into()))));
        }
        Ok(Err(e)) => return all(lost("DATA", e.to_string())),
        Err(_) => return all(lost("DATA", "timed out".into())),
    }
    let _ = client.cmd(b"QUIT\r\n").await;
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_table() {
        assert_eq!(LmtpTarget::parse("127.0.0.1:24"), Ok(LmtpTarget::Tcp("127.0.0.1:24".into())));
        assert_eq!(LmtpTarget::parse("unix:/run/dovecot/lmtp"), Ok(LmtpTarget::Unix("/run/dovecot/lmtp".into())));
        for bad in ["", "unix:", "dovecot", "host:port", ":24"] {
            assert!(LmtpTarget::parse(bad).is_err(), "{bad}");
        }
    }
}
