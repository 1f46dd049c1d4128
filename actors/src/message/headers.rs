//! Reading the top-level header block of a raw message: its text and the
//! unfolded value of one field. Enough for notices and index records; the
//! content stage's full parse is mail-parser's.

/// The header block (up to the first empty line), as text.
pub fn header_block(data: &[u8]) -> String {
    let end = data.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 2).unwrap_or(data.len().min(16 * 1024));
    String::from_utf8_lossy(&data[..end.min(data.len())]).into_owned()
}

/// The fields of a header block: lower-case names with their unfolded
/// values (continuation lines joined with one space), in order.
pub fn fields(block: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let mut lines = block.split("\r\n").peekable();
    std::iter::from_fn(move || loop {
        let line = lines.next()?;
        // A continuation line here follows no field: it belongs to none.
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else { continue };
        let mut value = value.trim().to_string();
        while let Some(next) = lines.next_if(|l| l.starts_with([' ', '\t'])) {
            value.push(' ');
            value.push_str(next.trim());
        }
        return Some((name.trim().to_ascii_lowercase(), value));
    })
}

/// The unfolded value of the first header called `name` (lower case).
pub fn header_value(headers: &str, name: &str) -> Option<String> {
    fields(headers).find(|(n, _)| n == name).map(|(_, v)| v)
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
        // A folded line that looks like a field is not one.
        let folded = "Received: from x\r\n Subject: fake\r\nSubject: real\r\n";
        assert_eq!(header_value(folded, "subject").as_deref(), Some("real"));
        assert_eq!(fields(folded).count(), 2);
    }
}
