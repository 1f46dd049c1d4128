//! Every limit of an SMTP session, named, with its default. Past a limit the
//! client gets a reply with an enhanced status code, never an unbounded
//! allocation or a crash.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpLimits {
    /// Longest command line, CRLF excluded (RFC 5321 §4.5.3.1.4 says 512
    /// with room for extensions; Postfix allows 2048).
    pub command_line_bytes_max: usize,
    /// Longest line inside DATA, CRLF excluded (RFC 5321 §4.5.3.1.6: 998).
    /// Generous by default: real mail breaks the RFC limit often.
    pub data_line_bytes_max: usize,
    /// Recipients per message (RFC 5321 §4.5.3.1.8 asks for at least 100).
    pub recipients_max: usize,
    /// Largest message accepted, advertised in SIZE (RFC 1870).
    pub message_bytes_max: usize,
    /// Most Received headers before a message is refused as looping.
    pub hops_max: u32,
    /// Protocol errors (bad commands, refused recipients) before the server hangs up.
    pub errors_max: u32,
    /// Idle time allowed between commands (RFC 5321 §4.5.3.2.7: 5 minutes).
    pub command_timeout_ms: u64,
    /// Idle time allowed inside DATA (RFC 5321 §4.5.3.2.6: 3 minutes per block).
    pub data_timeout_ms: u64,
    /// Longest a whole session may last.
    pub session_ms_max: u64,
    /// Input a client may send ahead of our replies (pipelined commands and
    /// DATA bytes waiting for a verdict) before the session stops reading.
    pub pending_input_bytes_max: usize,
}

impl Default for SmtpLimits {
    fn default() -> Self {
        Self {
            command_line_bytes_max: 2048,
            data_line_bytes_max: 65_536,
            recipients_max: 100,
            message_bytes_max: 25 * 1024 * 1024,
            hops_max: 50,
            errors_max: 10,
            command_timeout_ms: 300_000,
            data_timeout_ms: 180_000,
            session_ms_max: 1_800_000,
            pending_input_bytes_max: 1024 * 1024,
        }
    }
}
