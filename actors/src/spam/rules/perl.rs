//! Perl patterns as the `regex` crate reads them. SpamAssassin's rules are
//! Perl matches on byte strings; most translate to `regex::bytes` with
//! Unicode off (`\w` is ASCII, `\xE9` one byte, as in Perl). What the
//! `regex` crate cannot do (look-around, back-references, atomic groups)
//! goes to PCRE2, the fallback engine, with the pattern as Perl wrote it.

/// A Perl match split into its pattern and flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PerlMatch {
    /// The pattern between the delimiters, the delimiter unescaped, each
    /// Latin-1 char (one byte of the rule file) written as `\xHH`.
    pub pattern: String,
    pub caseless: bool,
    pub multi_line: bool,
    pub dotall: bool,
    pub extended: bool,
}

impl PerlMatch {
    /// `written` is `/re/flags` or `m{re}flags`, as `parse::split_pattern` returns it.
    pub fn parse(written: &str) -> Result<Self, String> {
        let (open, inner_start) = match written.strip_prefix('m').and_then(|r| r.chars().next()) {
            Some(d) => (d, 1 + d.len_utf8()),
            None if written.starts_with('/') => ('/', 1),
            None => return Err("expected /pattern/ or m{pattern}".into()),
        };
        let close = closing_delimiter(open);
        let close_at = written.rfind(close).filter(|p| *p >= inner_start).ok_or("pattern not closed")?;
        let inner = &written[inner_start..close_at];
        let flags = &written[close_at + close.len_utf8()..];
        let mut m = Self {
            pattern: String::with_capacity(inner.len()),
            caseless: false,
            multi_line: false,
            dotall: false,
            extended: false,
        };
        for f in flags.chars() {
            match f {
                'i' => m.caseless = true,
                'm' => m.multi_line = true,
                's' => m.dotall = true,
                'x' => m.extended = true,
                // g and o change nothing for a yes/no match.
                'g' | 'o' => {}
                other => return Err(format!("unknown flag {other:?}")),
            }
        }
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    // An escaped delimiter is the delimiter itself.
                    Some(d) if (d == open || d == close) && !"{}()[]<>".contains(d) => m.pattern.push(d),
                    Some(d) => {
                        m.pattern.push('\\');
                        push_char(&mut m.pattern, d);
                    }
                    None => m.pattern.push('\\'),
                }
            } else {
                push_char(&mut m.pattern, c);
            }
        }
        Ok(m)
    }

    /// A pattern every match of this one also matches, in what the `regex`
    /// crate reads: look-arounds dropped, back-references as "anything",
    /// atomic groups and possessive quantifiers as ordinary ones. Only for
    /// finding the literals a PCRE2 rule needs.
    pub fn relaxed(&self) -> PerlMatch {
        let mut out = String::with_capacity(self.pattern.len());
        let chars: Vec<char> = self.pattern.chars().collect();
        let mut i = 0;
        let mut in_class = false;
        while i < chars.len() {
            let c = chars[i];
            match c {
                '\\' if i + 1 < chars.len() => {
                    let d = chars[i + 1];
                    if !in_class && d.is_ascii_digit() && d != '0' {
                        out.push_str("(?s:.*)");
                    } else {
                        out.push(c);
                        out.push(d);
                    }
                    i += 2;
                    continue;
                }
                '[' if !in_class => in_class = true,
                ']' if in_class => in_class = false,
                '(' if !in_class && chars.get(i + 1) == Some(&'?') => {
                    let k: String = chars[i + 2..chars.len().min(i + 4)].iter().collect();
                    if k.starts_with('=') || k.starts_with('!') || k == "<=" || k == "<!" {
                        i = group_end(&chars, i);
                        continue;
                    }
                    if k.starts_with('>') {
                        out.push_str("(?:");
                        i += 3;
                        continue;
                    }
                }
                '+' if !in_class
                    && i > 0
                    && matches!(chars[i - 1], '+' | '*' | '?' | '}')
                    && !(i > 1 && chars[i - 2] == '\\') =>
                {
                    i += 1;
                    continue;
                }
                _ => {}
            }
            out.push(c);
            i += 1;
        }
        PerlMatch { pattern: out, ..self.clone() }
    }

    /// The pattern for the `regex` crate, flags inline; `Err` names what it lacks.
    pub fn to_rust(&self, force_multi_line: bool) -> Result<String, String> {
        let mut out = String::with_capacity(self.pattern.len() + 8);
        let mut flags = String::new();
        for (on, f) in
            [(self.caseless, 'i'), (self.multi_line || force_multi_line, 'm'), (self.dotall, 's'), (self.extended, 'x')]
        {
            if on {
                flags.push(f);
            }
        }
        if !flags.is_empty() {
            out.push_str(&format!("(?{flags})"));
        }
        let mut chars = self.pattern.chars().peekable();
        let mut in_class = false;
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let Some(d) = chars.next() else { return Err("trailing backslash".into()) };
                    match d {
                        // Perl's literal angle brackets are word boundaries in the regex crate.
                        '<' | '>' => out.push(d),
                        ' ' => out.push_str("\\x20"),
                        'Z' if !in_class => out.push_str("(?:\\n?\\z)"),
                        'h' => out.push_str(if in_class { "\\t " } else { "[\\t ]" }),
                        'G' | 'K' | 'R' | 'X' | 'C' | 'Q' | 'E' | 'l' | 'u' | 'L' | 'U' | 'c' | 'g' | 'k' | 'N' => {
                            return Err(format!("\\{d} is Perl-only"));
                        }
                        '1'..='9' if !in_class => return Err("back-reference".into()),
                        _ => {
                            out.push('\\');
                            out.push(d);
                        }
                    }
                }
                '[' if !in_class => {
                    in_class = true;
                    out.push('[');
                    // A leading ] or ^] is a literal in both dialects.
                    if chars.peek() == Some(&'^') {
                        out.push('^');
                        chars.next();
                    }
                    if chars.peek() == Some(&']') {
                        out.push_str("\\]");
                        chars.next();
                    }
                }
                '[' if in_class => {
                    // POSIX classes ([:alpha:]) stay whole; a lone [ is a literal.
                    if chars.peek() == Some(&':') {
                        out.push('[');
                        for p in chars.by_ref() {
                            out.push(p);
                            if out.ends_with(":]") {
                                break;
                            }
                        }
                    } else {
                        out.push_str("\\[");
                    }
                }
                ']' if in_class => {
                    in_class = false;
                    out.push(']');
                }
                '(' if !in_class && chars.peek() == Some(&'?') => {
                    out.push('(');
                    let mut look = chars.clone();
                    look.next();
                    if let Some(k) = look.next() {
                        if matches!(k, '=' | '!' | '>' | '<' | '#' | '|' | '^' | '&' | 'R' | '+' | '0'..='9') {
                            let after = look.next();
                            // (?<name>…) is a named group, which the regex crate has.
                            let named = k == '<' && after.is_some_and(|a| a.is_ascii_alphabetic());
                            if !named {
                                return Err(format!("(?{k} group is Perl-only"));
                            }
                        }
                    }
                }
                '+' | '*' | '?' | '}' if !in_class && chars.peek() == Some(&'+') => {
                    return Err("possessive quantifier".into());
                }
                _ => out.push(c),
            }
        }
        Ok(out)
    }
}

/// Perl's closing delimiter for an opening one: brackets pair, anything else closes itself.
pub fn closing_delimiter(open: char) -> char {
    match open {
        '{' => '}',
        '(' => ')',
        '[' => ']',
        '<' => '>',
        c => c,
    }
}

/// The index just past the group opening at `open`.
fn group_end(chars: &[char], open: usize) -> usize {
    let mut depth = 0;
    let mut i = open;
    let mut in_class = false;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            '(' if !in_class => depth += 1,
            ')' if !in_class => {
                depth -= 1;
                if depth == 0 {
                    return i + 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
}

/// Bytes above ASCII (Latin-1 chars of the rule file) as `\xHH`, which
/// with Unicode off is that byte in both engines.
fn push_char(out: &mut String, c: char) {
    let code = c as u32;
    if (0x80..=0xff).contains(&code) {
        out.push_str(&format!("\\x{code:02x}"));
    } else {
        out.push(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rust(written: &str) -> Result<String, String> {
        PerlMatch::parse(written)?.to_rust(false)
    }

    #[test]
    fn translates_what_differs() {
        assert_eq!(rust("/\\<b\\>/i").unwrap(), "(?i)<b>");
        assert_eq!(rust("m{a\\/b}").unwrap(), "a\\/b");
        assert_eq!(rust("/a\\/b/").unwrap(), "a/b");
        assert_eq!(rust("/caf\u{e9}/").unwrap(), "caf\\xe9");
        assert_eq!(rust("/end\\Z/m").unwrap(), "(?m)end(?:\\n?\\z)");
        assert_eq!(rust("/[]a]/").unwrap(), "[\\]a]");
        assert_eq!(rust("/[[:alpha:][]/").unwrap(), "[[:alpha:]\\[]");
        assert_eq!(rust("/(?<word>x)/").unwrap(), "(?<word>x)");
    }

    #[test]
    fn perl_only_features_are_named() {
        for p in ["/a(?=b)/", "/a(?!b)/", "/(?<=a)b/", "/(a)\\1/", "/a++/", "/(?>a)/", "/\\Gx/"] {
            assert!(rust(p).is_err(), "{p}");
        }
        assert!(PerlMatch::parse("/a/q").is_err());
        assert!(PerlMatch::parse("m\u{a7}a\u{a7}").is_ok(), "a non-ASCII delimiter does not split a char");
        assert!(PerlMatch::parse("m").is_err() && PerlMatch::parse("/").is_err());
    }

    #[test]
    fn relaxed_patterns_match_a_superset() {
        let relaxed = |p: &str| PerlMatch::parse(p).unwrap().relaxed().to_rust(false).unwrap();
        assert_eq!(relaxed("/prize(?= now)/"), "prize");
        assert_eq!(relaxed("/(?<!no )prize(?!s)/"), "prize");
        assert_eq!(relaxed("/(\\w+)-\\1 deal/"), "(\\w+)-(?s:.*) deal");
        assert_eq!(relaxed("/(?>a+)b++/"), "(?:a+)b+");
    }

    #[test]
    fn translated_patterns_compile_and_match_bytes() {
        for (p, hay, want) in [
            ("/\\bfree\\b/i", &b"totally FREE now"[..], true),
            ("/caf\u{e9}/", b"caf\xe9", true),
            ("/\\<html\\>/", b"<html>", true),
            ("/^subject$/m", b"x\nsubject\ny", true),
        ] {
            let re = regex::bytes::RegexBuilder::new(&rust(p).unwrap()).unicode(false).build().unwrap();
            assert_eq!(re.is_match(hay), want, "{p}");
        }
    }
}
