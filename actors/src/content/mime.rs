//! The message parsed once (mail-parser) and measured against the named
//! MIME limits. Every later check reads this: the attachment list with each
//! part's declared name and type and its decoded bytes, the nesting depth,
//! the part count, the longest header line and the multiparts whose closing
//! boundary never came.

use mail_parser::{MessageParser, MessagePart, MimeHeaders, PartType};

/// The `content.*` limits a parse is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MimeLimits {
    /// Multiparts and attached messages inside each other.
    pub depth_max: usize,
    /// Parts in the whole message, attached messages included.
    pub parts_max: usize,
    /// Bytes of the top-level header block.
    pub header_bytes_max: usize,
}

impl Default for MimeLimits {
    fn default() -> Self {
        Self { depth_max: 20, parts_max: 1000, header_bytes_max: 256 * 1024 }
    }
}

/// One leaf part a reader would call an attachment: it has a file name, or
/// it is not text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The part's index in `parsed.parts` of the message that holds it
    /// (the top-level message for `path.len() == 0`).
    pub part: usize,
    /// Indices of attached messages (`message/rfc822`) on the way down.
    pub path: Vec<usize>,
    /// The file name the sender gave, or empty.
    pub name: String,
    /// The declared `type/subtype`, lower case.
    pub declared_type: String,
    /// Byte range of the whole part (headers and body) in the raw message,
    /// for the top-level message; `None` inside an attached message.
    pub raw_range: Option<(usize, usize)>,
    /// The decoded content.
    pub data: Vec<u8>,
}

/// What the parse says about the message's shape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MimeShape {
    pub depth: usize,
    pub parts: usize,
    pub header_bytes: usize,
    /// The longest header line of any part, in bytes (RFC 5322: 998).
    pub header_line_max: usize,
    /// Multiparts whose `--boundary--` never came.
    pub unclosed_boundaries: usize,
    /// `message/partial` and `message/external-body` parts.
    pub partial_or_external: Vec<String>,
}

/// The parse every stage shares.
#[derive(Debug, Default)]
pub struct ParsedMessage {
    pub subject: String,
    pub from: String,
    pub shape: MimeShape,
    pub attachments: Vec<Attachment>,
    /// The HTML bodies, decoded.
    pub html: Vec<String>,
    /// The text bodies, decoded.
    pub text: Vec<String>,
}

/// A limit the message broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MimeLimitExceeded {
    Depth { depth: usize, max: usize },
    Parts { parts: usize, max: usize },
    HeaderBytes { bytes: usize, max: usize },
}

impl MimeLimitExceeded {
    pub fn describe(&self) -> String {
        match self {
            Self::Depth { depth, max } => format!("MIME nesting depth {depth} exceeds the limit of {max}"),
            Self::Parts { parts, max } => format!("{parts} MIME parts exceed the limit of {max}"),
            Self::HeaderBytes { bytes, max } => format!("{bytes} header bytes exceed the limit of {max}"),
        }
    }
}

impl ParsedMessage {
    /// Parses `raw`. A message mail-parser cannot read at all still gets a
    /// shape (no parts) so the limit checks decide about it.
    pub fn parse(raw: &[u8]) -> Self {
        let header_bytes = header_block_len(raw);
        let Some(message) = MessageParser::default().parse(raw) else {
            return Self { shape: MimeShape { header_bytes, ..Default::default() }, ..Default::default() };
        };
        let mut parsed = Self {
            subject: message.subject().unwrap_or_default().to_string(),
            from: message.from().and_then(|a| a.first()).and_then(|a| a.address()).unwrap_or_default().to_string(),
            ..Default::default()
        };
        parsed.shape.header_bytes = header_bytes;
        parsed.walk(&message, 0, 1, &mut Vec::new(), true);
        parsed
    }

    /// The first limit broken, if any.
    pub fn over_limits(&self, limits: &MimeLimits) -> Option<MimeLimitExceeded> {
        let s = &self.shape;
        if s.depth > limits.depth_max {
            return Some(MimeLimitExceeded::Depth { depth: s.depth, max: limits.depth_max });
        }
        if s.parts > limits.parts_max {
            return Some(MimeLimitExceeded::Parts { parts: s.parts, max: limits.parts_max });
        }
        if s.header_bytes > limits.header_bytes_max {
            return Some(MimeLimitExceeded::HeaderBytes { bytes: s.header_bytes, max: limits.header_bytes_max });
        }
        None
    }

    fn walk(&mut self, message: &mail_parser::Message<'_>, id: usize, depth: usize, path: &mut Vec<usize>, top: bool) {
        let Some(part) = message.parts.get(id) else { return };
        self.shape.parts += 1;
        self.shape.depth = self.shape.depth.max(depth);
        let raw = message.raw_message.as_ref();
        let header = slice(raw, part.offset_header as usize, part.offset_body as usize);
        self.shape.header_line_max = self.shape.header_line_max.max(longest_line(header));
        let declared = declared_type(part);
        if declared == "message/partial" || declared == "message/external-body" {
            self.shape.partial_or_external.push(declared.clone());
        }
        match &part.body {
            PartType::Multipart(children) => {
                if let Some(boundary) = part.content_type().and_then(|c| c.attribute("boundary")) {
                    let body = slice(raw, part.offset_body as usize, part.offset_end as usize);
                    let close = format!("--{boundary}--");
                    if !contains(body, close.as_bytes()) {
                        self.shape.unclosed_boundaries += 1;
                    }
                }
                for &child in children {
                    let child = child as usize;
                    // mail-parser lists parts flat; a child id never points back up.
                    if child > id {
                        self.walk(message, child, depth + 1, path, top);
                    }
                }
            }
            PartType::Message(inner) => {
                let name = part.attachment_name().unwrap_or_default().to_string();
                if !name.is_empty() {
                    self.push_attachment(part, id, path, top, name, declared);
                }
                path.push(id);
                self.walk(inner, 0, depth + 1, path, false);
                path.pop();
            }
            PartType::Html(html) => {
                if part.attachment_name().is_some() {
                    let name = part.attachment_name().unwrap_or_default().to_string();
                    self.push_attachment(part, id, path, top, name, declared);
                } else {
                    self.html.push(html.to_string());
                }
            }
            PartType::Text(text) => {
                if part.attachment_name().is_some() {
                    let name = part.attachment_name().unwrap_or_default().to_string();
                    self.push_attachment(part, id, path, top, name, declared);
                } else {
                    self.text.push(text.to_string());
                }
            }
            PartType::Binary(_) | PartType::InlineBinary(_) => {
                let name = part.attachment_name().unwrap_or_default().to_string();
                self.push_attachment(part, id, path, top, name, declared);
            }
        }
    }

    fn push_attachment(
        &mut self,
        part: &MessagePart<'_>,
        id: usize,
        path: &[usize],
        top: bool,
        name: String,
        declared_type: String,
    ) {
        self.attachments.push(Attachment {
            part: id,
            path: path.to_vec(),
            name,
            declared_type,
            raw_range: top.then_some((part.offset_header as usize, part.offset_end as usize)),
            data: part.contents().to_vec(),
        });
    }
}

fn declared_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => String::new(),
    }
}

fn slice(raw: &[u8], from: usize, to: usize) -> &[u8] {
    raw.get(from.min(to)..to.min(raw.len())).unwrap_or_default()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && memchr::memmem::find(haystack, needle).is_some()
}

fn longest_line(block: &[u8]) -> usize {
    block.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l).len()).max().unwrap_or(0)
}

/// Bytes up to and including the blank line that ends the top-level header.
fn header_block_len(raw: &[u8]) -> usize {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4).unwrap_or(raw.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"From: a@example.org\r\nSubject: hi\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"x.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b1--\r\n";

    #[test]
    fn finds_attachment_with_decoded_bytes() {
        let p = ParsedMessage::parse(MIXED);
        assert_eq!(p.subject, "hi");
        assert_eq!(p.attachments.len(), 1);
        let a = &p.attachments[0];
        assert_eq!(a.name, "x.bin");
        assert_eq!(a.declared_type, "application/octet-stream");
        assert_eq!(&a.data[..2], b"MZ");
        assert_eq!(p.text, vec!["hello".to_string()]);
        assert_eq!(p.shape.depth, 2);
        assert_eq!(p.shape.parts, 3);
        assert_eq!(p.shape.unclosed_boundaries, 0);
        let (from, to) = a.raw_range.unwrap_or_default();
        assert!(MIXED[from..to].starts_with(b"Content-Type: application/octet-stream"));
    }

    #[test]
    fn unclosed_boundary_is_seen() {
        let cut = &MIXED[..MIXED.len() - 8];
        assert_eq!(ParsedMessage::parse(cut).shape.unclosed_boundaries, 1);
    }

    #[test]
    fn depth_and_parts_limits() {
        let mut m = b"Subject: deep\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n".to_vec();
        for i in 1..30 {
            m.extend_from_slice(
                format!("--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n", i - 1).as_bytes(),
            );
        }
        m.extend_from_slice(b"--b29\r\nContent-Type: text/plain\r\n\r\nx\r\n");
        let p = ParsedMessage::parse(&m);
        assert!(p.shape.depth >= 30, "depth {}", p.shape.depth);
        let limits = MimeLimits { depth_max: 20, ..Default::default() };
        assert!(matches!(p.over_limits(&limits), Some(MimeLimitExceeded::Depth { .. })));
        let limits = MimeLimits { depth_max: 100, parts_max: 10, ..Default::default() };
        assert!(matches!(p.over_limits(&limits), Some(MimeLimitExceeded::Parts { .. })));
    }
}
