//! BDAT chunks (RFC 3030 CHUNKING): the message arrives as counted chunks
//! with no dot-stuffing, so there is no end-of-data marker to smuggle
//! around. The same rules as DATA still apply — CRLF line ends only, size,
//! line length and hop limits — checked across chunk boundaries. Bytes past
//! the size limit are counted and dropped, never kept.

use super::data::{is_received_header, MessageFlaws};
use super::limits::SmtpLimits;
use crate::message::Reply;

#[derive(Debug, Default)]
pub struct BdatReader {
    body: Vec<u8>,
    /// The last byte seen was CR: the next must be LF.
    pending_cr: bool,
    /// Length of the line being received so far.
    line_bytes: usize,
    flaws: MessageFlaws,
}

impl BdatReader {
    /// Takes chunk bytes (the caller counts how many the chunk has left).
    pub fn take(&mut self, bytes: &[u8], limits: &SmtpLimits) {
        for &b in bytes {
            if self.pending_cr && b != b'\n' {
                self.flaws.bare_newline = true;
            }
            if b == b'\n' && !self.pending_cr {
                self.flaws.bare_newline = true;
            }
            self.pending_cr = b == b'\r';
            if b == b'\n' {
                self.line_bytes = 0;
            } else if !self.pending_cr {
                self.line_bytes += 1;
                if self.line_bytes > limits.data_line_bytes_max {
                    self.flaws.line_too_long = true;
                }
            }
        }
        if self.body.len() + bytes.len() > limits.message_bytes_max {
            self.flaws.oversize = true;
        } else {
            self.body.extend_from_slice(bytes);
        }
    }

    /// True once the message is already refused; the session still reads the chunks.
    pub fn oversize(&self) -> bool {
        self.flaws.oversize
    }

    /// After the LAST chunk: the message, or the reply that refuses it.
    pub fn finish(mut self, limits: &SmtpLimits) -> Result<Vec<u8>, Reply> {
        if self.pending_cr {
            self.flaws.bare_newline = true;
        }
        if !self.body.is_empty() && !self.body.ends_with(b"\r\n") {
            // A message must end with a line end; BDAT does not add one.
            self.flaws.bare_newline = true;
        }
        let headers = self.body.split(|&b| b == b'\n').take_while(|l| *l != b"\r" && !l.is_empty());
        self.flaws.received_headers = headers.filter(|l| is_received_header(l)).count() as u32;
        self.flaws.verdict(limits)?;
        Ok(self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: &[&[u8]], limits: &SmtpLimits) -> Result<Vec<u8>, Reply> {
        let mut r = BdatReader::default();
        for c in chunks {
            r.take(c, limits);
        }
        r.finish(limits)
    }

    #[test]
    fn chunks_join_and_rules_hold_across_boundaries() {
        let l = SmtpLimits::default();
        assert_eq!(read(&[b"Subject: a\r", b"\n\r\n.body\r\n"], &l).unwrap(), b"Subject: a\r\n\r\n.body\r\n");
        assert_eq!(read(&[b"a\nb\r\n"], &l).unwrap_err().enhanced, "5.5.2");
        assert_eq!(read(&[b"a\r", b"b\r\n"], &l).unwrap_err().enhanced, "5.5.2");
        assert_eq!(read(&[b"no line end"], &l).unwrap_err().enhanced, "5.5.2");
        let small = SmtpLimits { message_bytes_max: 8, hops_max: 1, ..Default::default() };
        assert_eq!(read(&[b"12345\r\n", b"678\r\n"], &small).unwrap_err().enhanced, "5.3.4");
        let hops = SmtpLimits { hops_max: 1, ..Default::default() };
        assert_eq!(read(&[b"Received: a\r\nReceived: b\r\n\r\nx\r\n"], &hops).unwrap_err().enhanced, "5.4.6");
        assert!(read(&[b"Received: a\r\n\r\nReceived: b\r\n"], &hops).is_ok());
    }
}
