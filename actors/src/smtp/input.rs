//! The session's input buffer: bytes received and not yet processed.
//!
//! Processing consumes from the front one line or chunk at a time; moving
//! the rest down after every line would cost the square of the input (a
//! megabyte of pipelined `EHLO a` is 130,000 lines). The buffer keeps a read
//! position instead and compacts only when new bytes arrive, so each byte is
//! moved at most once.

#[derive(Debug, Default)]
pub struct InputBuffer {
    bytes: Vec<u8>,
    start: usize,
}

impl InputBuffer {
    /// The bytes not yet consumed.
    pub fn pending(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    pub fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Marks `n` pending bytes as processed.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.bytes.len());
        if self.start == self.bytes.len() {
            self.clear();
        }
    }

    pub fn push(&mut self, more: &[u8]) {
        if self.start > 0 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(more);
    }

    /// Drops everything pending and gives the memory back.
    pub fn clear(&mut self) {
        self.bytes = Vec::new();
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_then_push_keeps_order() {
        let mut b = InputBuffer::default();
        b.push(b"abcdef");
        b.consume(2);
        assert_eq!(b.pending(), b"cdef");
        b.push(b"gh");
        assert_eq!(b.pending(), b"cdefgh");
        b.consume(100);
        assert!(b.is_empty());
        assert_eq!(b.pending(), b"");
    }
}
