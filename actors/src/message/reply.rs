//! SMTP replies with enhanced status codes (RFC 5321 §4.2, RFC 3463, RFC 2034).

use std::fmt::Write;

/// One reply; `text` may hold several lines (joined with '\n'), each sent
/// with the same code and enhanced code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The enhanced status code, e.g. "5.1.1"; empty for 220/221 greetings
    /// where RFC 2034 does not use one.
    pub enhanced: &'static str,
    pub text: String,
}

impl Reply {
    pub fn new(code: u16, enhanced: &'static str, text: &str) -> Self {
        Self { code, enhanced, text: text.to_string() }
    }

    /// A 4xx reply: the client should try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    /// The bytes on the wire: "250-first\r\n250 last\r\n".
    pub fn render(&self) -> Vec<u8> {
        let mut out = String::new();
        let lines: Vec<&str> = self.text.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            let _ = write!(out, "{}{}", self.code, sep);
            if !self.enhanced.is_empty() {
                let _ = write!(out, "{} ", self.enhanced);
            }
            let _ = write!(out, "{line}\r\n");
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_single_and_multi_line() {
        assert_eq!(Reply::new(250, "2.0.0", "Ok").render(), b"250 2.0.0 Ok\r\n");
        assert_eq!(Reply::new(220, "", "mx ESMTP").render(), b"220 mx ESMTP\r\n");
        assert_eq!(
            Reply::new(250, "", "mx\nSIZE 10\nPIPELINING").render(),
            b"250-mx\r\n250-SIZE 10\r\n250 PIPELINING\r\n"
        );
    }
}
