//! Reading the top-level header block of a raw message: its text and the
//! unfolded value of one field. Enough for notices and index records; the
//! content stage's full parse is mail-parser's.

/// The header block (up to the first empty line), as text.
pub fn header_block(data: &[u8]) -> String {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 2).unwrap_or(data.len().min(16 * 1024));
    String::from_utf8_lossy(&data[..end.min(data.len())]).into_owned()
}

/// The unfolded value of the first header called `name` (lower case).
pub fn header_value(headers: &str, name: &str) -> Option<String> {
    let mut lines = headers.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        let Some((field, value)) = line.split_once(':') else { continue };
        if field.trim().eq_ignore_ascii_case(name) {
            let mut value = value.trim().to_string();
            while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            }
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_unfold_and_match_case_insensitively() {
        let h = "Received: x\r\nSUBJECT: hello\r\n  world\r\nX-Gatehouse-Quarantine: virus: Eicar\r\n";
        assert_eq!(header_value(h, "subject").as_deref(), Some("hello world"));
        assert_eq!(header_value(h, "x-gatehouse-quarantine").as_deref(), Some("virus: Eicar"));
        assert_eq!(header_value(h, "from"), None);
        assert_eq!(header_block(b"A: b\r\n\r\nbody"), "A: b\r\n");
    }
}
