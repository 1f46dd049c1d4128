//! Literal prefilters: most rules cannot match unless some fixed string
//! (`viagra`, `click here`, `=?utf-8?`) is in the text. Those strings,
//! taken from each pattern's syntax, go into one case-insensitive
//! Aho-Corasick automaton per input; a rule's own regex runs only when one
//! of its strings is present. Rules with no such string run in `RegexSet`s.
//!
//! The strings need not start the match: in `\bthe\s+best\s+price` the
//! word `price` is as required as `the`, and far rarer. Every factor of a
//! concatenation is a candidate (as in RE2's FilteredRE2); the longest
//! shortest-string wins, a set that starts the match winning ties since
//! the rule's regex can then be tried only where the string was found.

use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Hir, HirKind};

/// Shorter strings would be present in nearly every message.
const LITERAL_LEN_MIN: usize = 3;
/// More alternatives than this and the prefilter no longer filters.
const LITERALS_PER_RULE_MAX: usize = 64;
/// Beyond this length a string is rare enough; longer does not rank higher.
const RARE_ENOUGH_LEN: usize = 7;
/// How deep in nested groups factors are looked for.
const DEPTH_MAX: usize = 16;

/// The strings one of which every match of a pattern contains.
#[derive(Debug, Clone, PartialEq)]
pub struct RequiredLiterals {
    /// Lower-case, deduplicated.
    pub literals: Vec<Vec<u8>>,
    /// Every match starts with one of them (a prefix set), so the rule's
    /// regex need only be tried, anchored, where one was found.
    pub starts_match: bool,
    /// The longest a match can be, when bounded: a match holding a string
    /// found at `s..e` lies within `e - max_len .. s + max_len`.
    pub max_len: Option<usize>,
}

impl RequiredLiterals {
    fn shortest(&self) -> usize {
        self.literals.iter().map(Vec::len).min().unwrap_or(0)
    }

    /// Higher filters better: the shortest string's length (up to
    /// `RARE_ENOUGH_LEN`), then anchoring, then fewer strings.
    fn rank(&self) -> (usize, bool, std::cmp::Reverse<usize>) {
        (self.shortest().min(RARE_ENOUGH_LEN), self.starts_match, std::cmp::Reverse(self.literals.len()))
    }
}

/// Lower-case strings one of which is in every match of `pattern` (the
/// `regex` crate's syntax, flags inline); `None` when there is no useful set.
/// For a case-insensitive rule, pass the pattern without its `i` flag: the
/// automaton ignores ASCII case, and the literals are then whole words
/// rather than the first letters of every case variant.
pub fn required_literals(pattern: &str) -> Option<RequiredLiterals> {
    let hir = regex_syntax::ParserBuilder::new().unicode(false).utf8(false).build().parse(pattern).ok()?;
    let max_len = hir.properties().maximum_len();
    let mut best =
        extract(&hir, ExtractKind::Prefix).map(|literals| RequiredLiterals { literals, starts_match: true, max_len });
    let mut consider = |found: Option<Vec<Vec<u8>>>| {
        if let Some(literals) = found {
            let candidate = RequiredLiterals { literals, starts_match: false, max_len };
            if best.as_ref().is_none_or(|b| candidate.rank() > b.rank()) {
                best = Some(candidate);
            }
        }
    };
    consider(extract(&hir, ExtractKind::Suffix));
    consider(factor(&hir, 0));
    best
}

/// A usable literal set from the regex crate's extractor.
fn extract(hir: &Hir, kind: ExtractKind) -> Option<Vec<Vec<u8>>> {
    let seq = Extractor::new().kind(kind.clone()).extract(hir);
    let starts_match = matches!(kind, ExtractKind::Prefix);
    usable(seq.literals()?.iter().map(|l| l.as_bytes().to_ascii_lowercase()).collect(), starts_match)
}

/// `out` deduplicated and minimised, if it filters. `starts_match`: the
/// strings start the match, so one may only be dropped for its own prefix
/// (tries happen where the kept string starts).
fn usable(mut out: Vec<Vec<u8>>, starts_match: bool) -> Option<Vec<Vec<u8>>> {
    out.sort();
    out.dedup();
    if out.is_empty() || out.iter().any(|l| l.len() < LITERAL_LEN_MIN) {
        return None;
    }
    // A text with "codeine_" has "codeine": the longer string adds nothing.
    let all = out.clone();
    let covers = |o: &Vec<u8>, l: &Vec<u8>| {
        o.len() < l.len() && if starts_match { l.starts_with(o) } else { l.windows(o.len()).any(|w| w == o.as_slice()) }
    };
    out.retain(|l| !all.iter().any(|o| covers(o, l)));
    (out.len() <= LITERALS_PER_RULE_MAX).then_some(out)
}

fn shortest(set: &[Vec<u8>]) -> usize {
    set.iter().map(Vec::len).min().unwrap_or(0)
}

/// The best required set of any factor inside `hir`.
fn factor(hir: &Hir, depth: usize) -> Option<Vec<Vec<u8>>> {
    if depth > DEPTH_MAX {
        return None;
    }
    let better = |a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>| match (a, b) {
        (Some(a), Some(b)) => {
            Some(if shortest(&b).min(RARE_ENOUGH_LEN) > shortest(&a).min(RARE_ENOUGH_LEN) { b } else { a })
        }
        (a, b) => a.or(b),
    };
    match hir.kind() {
        HirKind::Concat(children) => {
            let mut best = None;
            for i in 0..children.len() {
                // Whatever matches children[i..] starts with one of these.
                let tail = Hir::concat(children[i..].to_vec());
                best = better(best, extract(&tail, ExtractKind::Prefix));
                best = better(best, factor(&children[i], depth + 1));
            }
            best
        }
        HirKind::Alternation(branches) => {
            let mut union = Vec::new();
            for b in branches {
                let set = better(extract(b, ExtractKind::Prefix), factor(b, depth + 1))?;
                union.extend(set);
            }
            usable(union, false)
        }
        HirKind::Capture(c) => better(extract(&c.sub, ExtractKind::Prefix), factor(&c.sub, depth + 1)),
        HirKind::Repetition(r) if r.min >= 1 => better(extract(&r.sub, ExtractKind::Prefix), factor(&r.sub, depth + 1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<(Vec<String>, bool)> {
        required_literals(p).map(|r| {
            (r.literals.into_iter().map(|l| String::from_utf8(l).unwrap()).collect::<Vec<_>>(), r.starts_match)
        })
    }

    #[test]
    fn literals_every_match_contains() {
        let (free, _) = lits("(?i)\\bfree (?:gift|trial)\\b").unwrap();
        assert!(free.iter().all(|l| "free gift".contains(l.as_str()) || "free trial".contains(l.as_str())), "{free:?}");
        assert_eq!(lits("(?m)^Subject: hello$"), Some((vec!["subject: hello".into()], true)));
        assert_eq!(lits("\\d+ dollars"), Some((vec![" dollars".into()], false)), "a factor, not ten digit variants");
        assert_eq!(lits("^\\s*$"), None);
        assert_eq!(lits("(?i)ab"), None, "too short to filter");
    }

    #[test]
    fn a_rare_inner_word_beats_a_common_first_one() {
        let (price, anchored) = lits("\\bthe\\s+best\\s+price\\b").unwrap();
        assert!(!anchored && price.iter().all(|l| l.ends_with("price")), "{price:?}");
        let (click, anchored) = lits("\\bclick here\\s+to\\b").unwrap();
        assert!(anchored && click.iter().all(|l| l.starts_with("click here")), "the prefix is rare enough: {click:?}");
        assert_eq!(
            lits("\\b_{0,3}c[o0]deine_{0,3}\\b"),
            Some((vec!["c0deine".into(), "codeine".into()], false)),
            "a set that contains another's string is dropped"
        );
        let (either, anchored) = lits("(?:\\d+ dollars|\\w+ euros)").unwrap();
        assert_eq!((either, anchored), (vec![" dollars".into(), " euros".into()], false));
        assert_eq!(lits("(?:\\d+ dollars|\\w+)"), None, "one branch with no string spoils the set");
        let (xyz, anchored) = lits("(?:abcdef)?xyz").unwrap();
        assert!(anchored && xyz.contains(&"abcdefxyz".to_string()), "a match may start before xyz: {xyz:?}");
    }

    proptest::proptest! {
        /// Whatever the pattern, a text it matches contains one of the
        /// strings, and for a prefix set a match starts where one does.
        #[test]
        fn every_match_contains_a_required_string(
            parts in proptest::collection::vec(0usize..10, 1..7),
            text in "[abcdexyz 01ABC]{0,40}",
        ) {
            const PARTS: [&str; 10] =
                ["abc", "cde", "x", "\\s+", "(?:abd|cdee)", "[a-c]", "\\d?", "(?:xyz)?", "(?:ab|b)+", "\\b"];
            let pattern: String = parts.iter().map(|i| PARTS[*i]).collect();
            let Some(req) = required_literals(&pattern) else { return Ok(()) };
            let re = regex_automata::meta::Regex::new(&format!("(?i){pattern}")).unwrap();
            let lower = text.to_ascii_lowercase();
            let at: Vec<usize> = (0..=lower.len())
                .filter(|p| req.literals.iter().any(|l| lower.as_bytes()[*p..].starts_with(l)))
                .collect();
            if re.is_match(text.as_str()) {
                proptest::prop_assert!(!at.is_empty(), "{pattern} matched {text:?} with none of {:?}", req.literals);
                if let Some(max) = req.max_len {
                    let within = at.iter().any(|p| req.literals.iter().any(|l| {
                        let (s, e) = (*p, *p + l.len());
                        e <= text.len() && lower.as_bytes()[s..e] == l[..]
                            && re.is_match(regex_automata::Input::new(&text).range(e.saturating_sub(max)..(s + max).min(text.len())))
                    }));
                    proptest::prop_assert!(within, "{pattern} on {text:?}: no match within {max} of a string");
                }
                if req.starts_match {
                    let anchored = at.iter().any(|p| {
                        re.is_match(regex_automata::Input::new(&text).range(*p..).anchored(regex_automata::Anchored::Yes))
                    });
                    proptest::prop_assert!(anchored, "{pattern} on {text:?}: no match starts at {at:?}");
                }
            }
        }
    }
}
