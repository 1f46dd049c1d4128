//! Command-line framing: splits received bytes into CRLF-terminated lines.
//!
//! RFC 5321 §2.3.8: lines end in CRLF only. A bare LF or a bare CR is
//! reported rather than treated as a line end, so a client and a later hop can
//! never disagree on where a command (or the end of DATA) is — the root of
//! SMTP smuggling. A line longer than the limit is reported once its end
//! arrives, and its bytes are not kept, so memory stays bounded.

/// One framed line, without its terminator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A well-formed line ending in CRLF.
    Complete(Vec<u8>),
    /// A line that contained a bare CR or ended in a bare LF.
    BareNewline,
    /// A line longer than the limit (its bytes were dropped).
    TooLong,
}

/// Accumulates bytes until a full line is there.
#[derive(Debug, Default)]
pub struct LineBuffer {
    current: Vec<u8>,
    /// The current line already broke a rule; keep discarding until its LF.
    spoiled: Option<Line>,
    /// The last byte seen was CR (it must be followed by LF).
    pending_cr: bool,
}

impl LineBuffer {
    /// Feeds bytes from `input` until one line completes; returns it and the
    /// number of bytes consumed. `None` means all of `input` was consumed and
    /// no line is complete yet.
    pub fn take_line(&mut self, input: &[u8], line_bytes_max: usize) -> (Option<Line>, usize) {
        for (i, &b) in input.iter().enumerate() {
            if self.pending_cr {
                self.pending_cr = false;
                if b == b'\n' {
                    let line = self.spoiled.take().unwrap_or_else(|| Line::Complete(std::mem::take(&mut self.current)));
                    self.current.clear();
                    return (Some(line), i + 1);
                }
                // CR not followed by LF: a bare CR.
                self.spoil(Line::BareNewline);
            }
            match b {
                b'\r' => self.pending_cr = true,
                b'\n' => {
                    // A bare LF ends the line for recovery, but the line is refused.
                    self.current.clear();
                    self.spoiled = None;
                    return (Some(Line::BareNewline), i + 1);
                }
                _ if self.spoiled.is_some() => {}
                _ if self.current.len() >= line_bytes_max => self.spoil(Line::TooLong),
                _ => self.current.push(b),
            }
        }
        (None, input.len())
    }

    fn spoil(&mut self, why: Line) {
        if self.spoiled.is_none() || why == Line::BareNewline {
            self.spoiled = Some(why);
        }
        self.current.clear();
    }

    /// True when nothing of a line is buffered (used for the pregreet and
    /// STARTTLS checks: input must not run ahead).
    pub fn is_empty(&self) -> bool {
        self.current.is_empty() && self.spoiled.is_none() && !self.pending_cr
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Line> {
        let mut buf = LineBuffer::default();
        let mut out = Vec::new();
        let mut rest = input;
        loop {
            let (line, used) = buf.take_line(rest, max);
            rest = &rest[used..];
            match line {
                Some(l) => out.push(l),
                None => return out,
            }
        }
    }

    #[test]
    fn framing_table() {
        let c = |s: &str| Line::Complete(s.as_bytes().to_vec());
        let table: Vec<(&[u8], Vec<Line>)> = vec![
            (b"NOOP\r\n", vec![c("NOOP")]),
            (b"NOOP\r\nQUIT\r\n", vec![c("NOOP"), c("QUIT")]),
            (b"NOOP\nQUIT\r\n", vec![Line::BareNewline, c("QUIT")]),
            (b"NO\rOP\r\nQUIT\r\n", vec![Line::BareNewline, c("QUIT")]),
            (b"NOOP\r\r\n", vec![Line::BareNewline]),
            (b"0123456789AB\r\nOK\r\n", vec![Line::TooLong, c("OK")]),
            (b"0123456789\r\n", vec![c("0123456789")]),
            (b"partial", vec![]),
        ];
        for (input, want) in table {
            assert_eq!(lines(input, 10), want, "input {:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn lines_split_across_reads() {
        let mut buf = LineBuffer::default();
        assert_eq!(buf.take_line(b"NO", 100), (None, 2));
        assert_eq!(buf.take_line(b"OP\r", 100), (None, 3));
        assert!(!buf.is_empty());
        assert_eq!(buf.take_line(b"\nX", 100), (Some(Line::Complete(b"NOOP".to_vec())), 1));
    }
}
