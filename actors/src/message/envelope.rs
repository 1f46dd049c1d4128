//! The message as the session hands it to the pipeline.

use std::net::IpAddr;

use super::SkipChecks;

/// Who is on the other end (after the PROXY protocol, when there is one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    pub ip: IpAddr,
    pub port: u16,
}

/// A recipient the session accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedRecipient {
    pub address: String,
    pub deliver_to: Vec<String>,
}

/// A complete message, as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundMessage {
    pub peer: PeerInfo,
    /// The EHLO/HELO argument, and whether it was EHLO.
    pub helo: String,
    pub esmtp: bool,
    /// The reverse path; empty for the null sender `<>`.
    pub mail_from: String,
    pub recipients: Vec<AcceptedRecipient>,
    /// The message with dot-stuffing undone, lines ending in CRLF.
    pub body: Vec<u8>,
    pub smtputf8: bool,
    /// The login of an authenticated client.
    pub authenticated: Option<String>,
    /// Whether the message came over TLS.
    pub tls: bool,
    /// When the end of data arrived (ms since the epoch, from the shell).
    pub received_ms: u64,
    /// Checks this message skips (whitelist matches, trusted network); set
    /// by the shell, read by the authentication, content and spam stages.
    pub skip: SkipChecks,
    /// Deliver to the recipients' Junk folder (DKIM failure, DMARC quarantine).
    pub junk: bool,
    /// Spam symbols the earlier checks found (SPF softfail/fail), with their
    /// scores, for the spam stage's sum.
    pub spam_symbols: Vec<(&'static str, i32)>,
}

impl InboundMessage {
    /// A message from a file or an API request (`spam check`, `spam learn`,
    /// the corpus tools) as the session would hand it on: bare LF line ends
    /// become CRLF; no envelope.
    pub fn from_file(raw: &[u8]) -> Self {
        let mut body = Vec::with_capacity(raw.len() + raw.len() / 40);
        for (i, b) in raw.iter().enumerate() {
            if *b == b'\n' && (i == 0 || raw[i - 1] != b'\r') {
                body.push(b'\r');
            }
            body.push(*b);
        }
        InboundMessage {
            peer: PeerInfo { ip: std::net::Ipv4Addr::LOCALHOST.into(), port: 0 },
            helo: String::new(),
            esmtp: true,
            mail_from: String::new(),
            recipients: vec![],
            body,
            smtputf8: false,
            authenticated: None,
            tls: false,
            received_ms: 0,
            skip: Default::default(),
            junk: false,
            spam_symbols: Vec::new(),
        }
    }
}
