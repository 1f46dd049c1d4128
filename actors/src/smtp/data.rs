//! The DATA phase: reads the message until CRLF "." CRLF, undoes dot-stuffing
//! (RFC 5321 §4.5.2) and checks the message against the limits.
//!
//! Only CRLF "." CRLF ends the data. A line with a bare CR or bare LF marks
//! the message as refused but does not end it, so `<LF>.<LF>` and its cousins
//! can never cut a message short and smuggle a second one in. Memory stays
//! bounded: one line (`data_line_bytes_max`) plus the body up to
//! `message_bytes_max`; bytes past the limit are counted, not kept.

use super::limits::SmtpLimits;
use super::line::{Line, LineBuffer};
use crate::message::Reply;

/// What the checks found in a message; DATA and BDAT share the verdict.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MessageFlaws {
    /// Received headers seen: the hop count (RFC 5321 §6.3).
    pub received_headers: u32,
    pub bare_newline: bool,
    pub line_too_long: bool,
    pub oversize: bool,
}

impl MessageFlaws {
    /// `Ok` when the message may be accepted, else the reply that refuses it.
    pub fn verdict(&self, limits: &SmtpLimits) -> Result<(), Reply> {
        if self.bare_newline {
            let text = "Message refused: bare <CR> or <LF> in data (lines must end in CRLF)";
            return Err(Reply::new(550, "5.5.2", text));
        }
        if self.oversize {
            let text = format!("Message exceeds the size limit of {} bytes", limits.message_bytes_max);
            return Err(Reply::new(552, "5.3.4", &text));
        }
        if self.line_too_long {
            let text = format!("Message refused: a line is longer than {} bytes", limits.data_line_bytes_max);
            return Err(Reply::new(550, "5.6.0", &text));
        }
        if self.received_headers > limits.hops_max {
            let text = format!("Too many hops ({} Received headers, limit {})", self.received_headers, limits.hops_max);
            return Err(Reply::new(554, "5.4.6", &text));
        }
        Ok(())
    }
}

/// True for a header line that starts a Received field.
pub fn is_received_header(line: &[u8]) -> bool {
    line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"received:")
}

#[derive(Debug, Default)]
pub struct DataReader {
    line: LineBuffer,
    body: Vec<u8>,
    /// Still in the header section (before the first empty line).
    in_headers: bool,
    /// The previous line ended in a bare LF, so the next line does not start
    /// after a CRLF and a "." there is not the end of data.
    after_bare_lf: bool,
    flaws: MessageFlaws,
}

impl DataReader {
    pub fn new() -> Self {
        Self { in_headers: true, ..Default::default() }
    }

    /// Consumes bytes; returns `(true, used)` once the terminating "." line
    /// has been read, with `used` the bytes consumed up to and including it.
    pub fn feed(&mut self, input: &[u8], limits: &SmtpLimits) -> (bool, usize) {
        let mut used = 0;
        while used < input.len() {
            let (line, n) = self.line.take_line(&input[used..], limits.data_line_bytes_max);
            used += n;
            let Some(line) = line else { break };
            let after_bare_lf = std::mem::replace(&mut self.after_bare_lf, false);
            match line {
                Line::Complete(content) if content == b"." && !after_bare_lf => return (true, used),
                Line::Complete(content) => self.add_line(&content, limits),
                Line::BareNewline => {
                    self.flaws.bare_newline = true;
                    self.after_bare_lf = true;
                }
                Line::TooLong => self.flaws.line_too_long = true,
            }
        }
        (false, used)
    }

    fn add_line(&mut self, content: &[u8], limits: &SmtpLimits) {
        let unstuffed = content.strip_prefix(b".").unwrap_or(content);
        if self.in_headers {
            if unstuffed.is_empty() {
                self.in_headers = false;
            } else if is_received_header(unstuffed) {
                self.flaws.received_headers += 1;
            }
        }
        if self.body.len() + unstuffed.len() + 2 > limits.message_bytes_max {
            self.flaws.oversize = true;
            return;
        }
        self.body.extend_from_slice(unstuffed);
        self.body.extend_from_slice(b"\r\n");
    }

    /// The message, or the reply that refuses it.
    pub fn finish(self, limits: &SmtpLimits) -> Result<Vec<u8>, Reply> {
        self.flaws.verdict(limits)?;
        Ok(self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(input: &[u8], limits: &SmtpLimits) -> (bool, usize, Result<Vec<u8>, Reply>) {
        let mut r = DataReader::new();
        let (done, used) = r.feed(input, limits);
        (done, used, r.finish(limits))
    }

    #[test]
    fn dot_stuffing_and_end_marker() {
        let l = SmtpLimits::default();
        let (done, used, body) = read(b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n", &l);
        assert!(done);
        assert_eq!(used, 32);
        assert_eq!(body.unwrap(), b"Subject: x\r\n\r\n.leading dot\r\n");
        let (done, _, body) = read(b".\r\n", &l);
        assert!(done);
        assert_eq!(body.unwrap(), b"");
    }

    #[test]
    fn smuggling_sequences_neither_end_data_nor_pass() {
        let l = SmtpLimits::default();
        for marker in [&b"\n.\n"[..], b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r"] {
            let mut input = b"Subject: a\r\n\r\nbody".to_vec();
            input.extend_from_slice(marker);
            input.extend_from_slice(b"MAIL FROM:<x@y.org>\r\nRCPT TO:<a@b.org>\r\nDATA\r\nsmuggled\r\n.\r\n");
            let (done, used, body) = read(&input, &l);
            assert!(done, "marker {marker:?}");
            assert_eq!(used, input.len(), "data must end only at the final CRLF.CRLF for {marker:?}");
            assert_eq!(body.unwrap_err().code, 550, "marker {marker:?}");
        }
    }

    #[test]
    fn limits_refuse_with_their_codes() {
        let l = SmtpLimits { message_bytes_max: 20, data_line_bytes_max: 30, hops_max: 1, ..Default::default() };
        assert_eq!(read(b"0123456789\r\n0123456789\r\n.\r\n", &l).2.unwrap_err().enhanced, "5.3.4");
        assert_eq!(read(&[b"x".repeat(40), b"\r\n.\r\n".to_vec()].concat(), &l).2.unwrap_err().enhanced, "5.6.0");
        let hops = SmtpLimits { hops_max: 1, ..Default::default() };
        assert_eq!(read(b"Received: a\r\nreceived: b\r\n\r\n.\r\n", &hops).2.unwrap_err().enhanced, "5.4.6");
        // Received lines in the body do not count.
        assert!(read(b"Received: a\r\n\r\nReceived: b\r\n.\r\n", &SmtpLimits { hops_max: 1, ..Default::default() })
            .2
            .is_ok());
    }
}
