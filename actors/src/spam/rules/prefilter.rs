//! Literal prefilters: most rules cannot match unless some fixed string
//! (`viagra`, `click here`, `=?utf-8?`) is in the text. Those strings,
//! taken from each pattern's syntax, go into one case-insensitive
//! Aho-Corasick automaton per input; a rule's own regex runs only when one
//! of its strings is present. Rules with no such string run in `RegexSet`s.

use regex_syntax::hir::literal::{ExtractKind, Extractor};

/// Shorter strings would be present in nearly every message.
const LITERAL_LEN_MIN: usize = 3;
/// More alternatives than this and the prefilter no longer filters.
const LITERALS_PER_RULE_MAX: usize = 64;

/// Lower-case strings one of which is in every match of `pattern` (the
/// `regex` crate's syntax, flags inline); `None` when there is no useful set.
/// For a case-insensitive rule, pass the pattern without its `i` flag: the
/// automaton ignores ASCII case, and the literals are then whole words
/// rather than the first letters of every case variant.
pub fn required_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new().unicode(false).utf8(false).build().parse(pattern).ok()?;
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let seq = Extractor::new().kind(kind).extract(&hir);
        let Some(literals) = seq.literals() else { continue };
        let mut out: Vec<Vec<u8>> = literals.iter().map(|l| l.as_bytes().to_ascii_lowercase()).collect();
        out.sort();
        out.dedup();
        if !out.is_empty() && out.len() <= LITERALS_PER_RULE_MAX && out.iter().all(|l| l.len() >= LITERAL_LEN_MIN) {
            return Some(out);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_every_match_contains() {
        let lits = |p: &str| {
            required_literals(p).map(|v| v.into_iter().map(|l| String::from_utf8(l).unwrap()).collect::<Vec<_>>())
        };
        assert_eq!(
            lits("(?i)\\bfree (?:gift|trial)\\b"),
            Some(vec!["free ".into()]),
            "case variants cut short, still required"
        );
        assert_eq!(lits("(?m)^Subject: hello$"), Some(vec!["subject: hello".into()]));
        let dollars = lits("\\d+ dollars").unwrap();
        assert_eq!(dollars.len(), 10, "a digit, then the words: {dollars:?}");
        assert!(dollars.iter().all(|l| l.ends_with(" dollars")));
        assert_eq!(lits("^\\s*$"), None);
        assert_eq!(lits("(?i)ab"), None, "too short to filter");
    }
}
