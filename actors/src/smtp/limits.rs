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
    /// Not a node-file key: set from the replicated setting of the same name (`smtp.*`) per session.
    #[serde(skip)]
    pub recipients_max: usize,
    /// Largest message accepted, advertised in SIZE (RFC 1870).
    /// Not a node-file key: set from the replicated setting of the same name (`smtp.*`) per session.
    #[serde(skip)]
    pub message_bytes_max: usize,
    /// Most Received headers before a message is refused as looping.
    /// Not a node-file key: set from the replicated setting of the same name (`smtp.*`) per session.
    #[serde(skip)]
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
    /// Reply bytes written to the connection and not yet taken by the client
    /// before the session stops reading its input (the client must read).
    pub output_bytes_max: usize,
    /// Commands per session; past it `421 4.7.0` and the connection closes. 0: no limit.
    pub commands_max: u64,
    /// Longest a TLS handshake may take (port 465 and after STARTTLS).
    pub tls_handshake_timeout_ms: u64,
    /// Longest one write to the client may wait (a client that stops reading).
    pub write_timeout_ms: u64,
    /// Open SMTP connections on this node, all listeners together; past it a
    /// new connection gets `421 4.7.0` and is closed.
    pub connections_max: usize,
    /// Above this share of `connections_max` (percent) the node is under
    /// stress: new sessions get `stress_timeout_ms` for every wait and
    /// `stress_errors_max` errors (Postfix's stress-dependent timeouts).
    pub stress_connections_percent: u8,
    /// The one deadline (idle, DATA, handshake, write) of a session started under stress.
    pub stress_timeout_ms: u64,
    /// Protocol errors allowed to a session started under stress.
    pub stress_errors_max: u32,
}

impl SmtpLimits {
    /// True when `open` connections put the node under stress.
    pub fn stressed(&self, open: usize) -> bool {
        open.saturating_mul(100) >= self.connections_max.saturating_mul(self.stress_connections_percent as usize)
    }

    /// The limits of a session started under stress: every wait shortened,
    /// fewer errors forgiven; never longer or looser than the normal ones.
    pub fn under_stress(&self) -> Self {
        let t = self.stress_timeout_ms;
        Self {
            command_timeout_ms: self.command_timeout_ms.min(t),
            data_timeout_ms: self.data_timeout_ms.min(t),
            tls_handshake_timeout_ms: self.tls_handshake_timeout_ms.min(t),
            write_timeout_ms: self.write_timeout_ms.min(t),
            errors_max: self.errors_max.min(self.stress_errors_max),
            ..self.clone()
        }
    }
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
            output_bytes_max: 64 * 1024,
            commands_max: 10_000,
            tls_handshake_timeout_ms: 60_000,
            write_timeout_ms: 300_000,
            connections_max: 16_000,
            stress_connections_percent: 75,
            stress_timeout_ms: 10_000,
            stress_errors_max: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stress_starts_at_its_share_and_only_shortens() {
        let l = SmtpLimits { connections_max: 100, stress_connections_percent: 75, ..Default::default() };
        let table = [(0, false), (74, false), (75, true), (100, true), (5000, true)];
        for (open, stressed) in table {
            assert_eq!(l.stressed(open), stressed, "{open} open");
        }
        let s = l.under_stress();
        assert_eq!(
            (s.command_timeout_ms, s.data_timeout_ms, s.tls_handshake_timeout_ms, s.write_timeout_ms),
            (10_000, 10_000, 10_000, 10_000)
        );
        assert_eq!(s.errors_max, 1);
        let short = SmtpLimits { command_timeout_ms: 500, errors_max: 0, ..l.clone() }.under_stress();
        assert_eq!((short.command_timeout_ms, short.errors_max), (500, 0), "never longer or looser");
        assert_eq!(s.message_bytes_max, l.message_bytes_max, "sizes are not stress-dependent");
    }
}
