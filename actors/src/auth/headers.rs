//! Header surgery for the authentication stage: removing
//! Authentication-Results headers that claim to be ours (RFC 8601 §5), and
//! finding the From domain.

/// The end of the header section (the offset of the blank line's CRLF), or
/// the whole message when there is no body.
fn header_end(raw: &[u8]) -> usize {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map_or(raw.len(), |p| p + 2)
}

/// Splits the header section into fields (each with its folded lines and CRLF).
fn fields(raw: &[u8]) -> Vec<(usize, usize)> {
    let end = header_end(raw);
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < end {
        let line_end = raw[pos..end].windows(2).position(|w| w == b"\r\n").map_or(end, |p| pos + p + 2);
        let continuation = matches!(raw[pos], b' ' | b'\t');
        match out.last_mut() {
            Some(last) if continuation => last.1 = line_end,
            _ => out.push((pos, line_end)),
        }
        pos = line_end;
    }
    out
}

/// Removes every `Authentication-Results` field whose authserv-id is
/// `hostname`: a sender could otherwise forge our verdicts.
pub fn strip_forged_results(raw: &[u8], hostname: &str) -> Vec<u8> {
    const NAME: &[u8] = b"authentication-results:";
    let mut out = Vec::with_capacity(raw.len());
    let mut last = 0;
    for (start, end) in fields(raw) {
        let field = &raw[start..end];
        let forged = field.len() > NAME.len() && field[..NAME.len()].eq_ignore_ascii_case(NAME) && {
            let value = String::from_utf8_lossy(&field[NAME.len()..]);
            let id = value.split(';').next().unwrap_or_default();
            // The authserv-id may be followed by a version number.
            id.split_whitespace().next().is_some_and(|id| id.eq_ignore_ascii_case(hostname))
        };
        if forged {
            out.extend_from_slice(&raw[last..start]);
            last = end;
        }
    }
    out.extend_from_slice(&raw[last..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_results_are_removed_others_kept() {
        let raw = b"Authentication-Results: mx.example.com;\r\n\tspf=pass smtp.mailfrom=a@b\r\n\
Authentication-Results: other.example; dkim=pass\r\n\
authentication-results: MX.EXAMPLE.COM 1; dmarc=pass\r\n\
Subject: hi\r\n\r\nAuthentication-Results: mx.example.com; in the body\r\n";
        let out = String::from_utf8(strip_forged_results(raw, "mx.example.com")).unwrap();
        assert_eq!(
            out,
            "Authentication-Results: other.example; dkim=pass\r\nSubject: hi\r\n\r\nAuthentication-Results: mx.example.com; in the body\r\n"
        );
        let clean = b"Subject: x\r\n\r\nbody\r\n";
        assert_eq!(strip_forged_results(clean, "mx.example.com"), clean);
    }
}
