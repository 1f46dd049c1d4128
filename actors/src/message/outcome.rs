//! How a delivery attempt ended, in the terms the queue, local delivery,
//! LMTP and relay share.

use serde::{Deserialize, Serialize};
use smtp_proto::Response;

/// Why a delivery attempt failed, in the terms a DSN reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// RFC 3463 status code, e.g. `5.1.1`.
    pub status: String,
    /// RFC 3464 Diagnostic-Code, e.g. `smtp; 550 5.1.1 No such user`.
    pub diagnostic: String,
    /// The server that answered, when one did.
    pub remote_mta: Option<String>,
}

impl Failure {
    /// A failure Gatehouse diagnosed itself (no SMTP reply to quote).
    pub fn local(status: &str, text: impl std::fmt::Display) -> Self {
        Self { status: status.into(), diagnostic: format!("x-gatehouse; {text}"), remote_mta: None }
    }

    /// The same failure, naming the server it concerns.
    pub fn at(mut self, remote: &str) -> Self {
        self.remote_mta = Some(remote.to_string());
        self
    }
}

/// How one recipient fared in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    Delivered,
    /// A temporary failure (4xx, no connection, DNS trouble): retry later.
    Deferred(Failure),
    /// A permanent failure (5xx, no such domain): bounce.
    Failed(Failure),
}

/// The same outcome for every recipient of a request.
pub fn for_all(recipients: &[(usize, String)], outcome: &DeliveryOutcome) -> Vec<(usize, DeliveryOutcome)> {
    recipients.iter().map(|(i, _)| (*i, outcome.clone())).collect()
}

pub fn failure_from(response: &Response<String>, remote: &str) -> Failure {
    let [a, b, c] = response.esc;
    let status = if a != 0 { format!("{a}.{b}.{c}") } else { format!("{}.0.0", response.code / 100) };
    let text: String = response.message.chars().map(|ch| if ch.is_control() { ' ' } else { ch }).collect();
    let esc = if a != 0 { format!(" {a}.{b}.{c}") } else { String::new() };
    Failure { status, diagnostic: format!("smtp; {}{esc} {text}", response.code), remote_mta: Some(remote.to_string()) }
}

/// Deferred for 4xx, failed for 5xx, delivered for 2xx/3xx.
pub fn outcome_of(response: &Response<String>, remote: &str) -> DeliveryOutcome {
    match response.code / 100 {
        2 | 3 => DeliveryOutcome::Delivered,
        4 => DeliveryOutcome::Deferred(failure_from(response, remote)),
        _ => DeliveryOutcome::Failed(failure_from(response, remote)),
    }
}
