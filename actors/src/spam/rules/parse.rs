//! Reading SpamAssassin rule files (`.cf`): the rule directives (`header`,
//! `body`, `rawbody`, `uri`, `full`, `meta`), their `score`, `describe` and
//! `tflags`, ReplaceTags' `replace_*` directives and the `if`/`ifplugin`
//! blocks. Files are read in order and a later definition overrides an
//! earlier one, as SpamAssassin reads its configuration directory. What is
//! not a rule (plugin settings, welcome lists, languages) is counted by
//! directive so `spam rules import` can say what it left aside.
//!
//! Rule files are bytes (Debian's hold Latin-1 and UTF-8 literals); they
//! travel and are stored as Latin-1 text, one char per byte, so a pattern
//! compiles to the very bytes Perl would match.

use std::collections::{BTreeMap, HashMap};

/// SpamAssassin's version as `if (version >= …)` tests see it.
const CLAIMED_VERSION: f64 = 4.000001;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    Header,
    Body,
    Rawbody,
    Uri,
    Full,
    Meta,
}

impl RuleKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Header => "header",
            Self::Body => "body",
            Self::Rawbody => "rawbody",
            Self::Uri => "uri",
            Self::Full => "full",
            Self::Meta => "meta",
        }
    }
}

/// What a rule tests, before compiling.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleSpec {
    /// `header NAME Field[:mod] =~ /re/ [if-unset: X]`, or a body-side rule's `/re/`.
    Pattern { field: Option<HeaderField>, negated: bool, regex: String, if_unset: Option<String> },
    /// `header NAME exists:Field`.
    Exists(String),
    /// `meta NAME expression`.
    Meta(String),
    /// A rule this engine cannot run, and why (eval tests, MIME headers).
    Unsupported(String),
}

/// The header a `header` rule reads, with SpamAssassin's modifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeaderField {
    /// Lower case; the pseudo-headers (`ALL`, `ToCc`, `MESSAGEID`, `EnvelopeFrom`,
    /// `X-Spam-Relays-*`) by their lower-case names.
    pub name: String,
    pub modifier: HeaderModifier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HeaderModifier {
    /// Decoded value (as SpamAssassin: RFC 2047 words decoded).
    None,
    Raw,
    /// The first address in the value.
    Addr,
    /// The first display name in the value.
    Name,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleDef {
    pub name: String,
    pub kind: RuleKind,
    pub spec: RuleSpec,
    /// The file it came from.
    pub source: String,
    pub line: usize,
}

/// A line that does not parse: a rule pack with one of these is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub source: String,
    pub line: usize,
    pub message: String,
}

/// Everything read from a set of rule files.
#[derive(Debug, Default, Clone)]
pub struct RuleFiles {
    /// By name; a later definition replaces an earlier one.
    pub rules: BTreeMap<String, RuleDef>,
    pub scores: HashMap<String, Vec<f64>>,
    pub describes: HashMap<String, String>,
    pub tflags: HashMap<String, Vec<String>>,
    pub replace: ReplaceTags,
    pub errors: Vec<LineError>,
    /// Directives that define no rule, with how many times each was seen.
    pub ignored: BTreeMap<String, usize>,
}

/// ReplaceTags' definitions: `<TAG>` in a listed rule's pattern becomes
/// the tag's text.
#[derive(Debug, Default, Clone)]
pub struct ReplaceTags {
    pub tags: HashMap<String, String>,
    pub pre: HashMap<String, String>,
    pub inter: HashMap<String, String>,
    pub post: HashMap<String, String>,
    pub rules: std::collections::HashSet<String>,
}

impl RuleFiles {
    /// Reads `files` (name, Latin-1 text) in order.
    pub fn read<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut out = Self::default();
        for (source, text) in files {
            out.read_file(source, text);
        }
        out
    }

    fn read_file(&mut self, source: &str, text: &str) {
        // Whether each enclosing block is active.
        let mut blocks: Vec<bool> = Vec::new();
        for (i, raw_line) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = strip_comment(raw_line).trim();
            if line.is_empty() {
                continue;
            }
            let (directive, rest) = split_word(line);
            let active = blocks.iter().all(|b| *b);
            let err = |message: String| LineError { source: source.to_string(), line: line_no, message };
            match directive {
                "ifplugin" => blocks.push(true),
                "if" => blocks.push(condition_holds(rest)),
                "else" => match blocks.last_mut() {
                    Some(b) => *b = !*b,
                    None => self.errors.push(err("else without if".into())),
                },
                "endif" => {
                    if blocks.pop().is_none() {
                        self.errors.push(err("endif without if".into()));
                    }
                }
                _ if !active => {}
                "header" | "body" | "rawbody" | "uri" | "full" | "meta" => match parse_rule(directive, rest) {
                    Ok((name, kind, spec)) => {
                        let def = RuleDef { name: name.clone(), kind, spec, source: source.to_string(), line: line_no };
                        self.rules.insert(name, def);
                    }
                    Err(m) => self.errors.push(err(m)),
                },
                "mimeheader" => {
                    let (name, _) = split_word(rest);
                    self.unsupported(
                        name,
                        RuleKind::Header,
                        "mimeheader (MIME part headers) is not supported",
                        source,
                        line_no,
                    );
                }
                "score" => {
                    let (name, values) = split_word(rest);
                    let scores: Result<Vec<f64>, _> =
                        values.split_whitespace().take(4).map(str::parse::<f64>).collect();
                    match scores {
                        Ok(s) if !s.is_empty() && valid_name(name) => {
                            self.scores.insert(name.to_string(), s);
                        }
                        _ => self.errors.push(err(format!("score {name}: expected 1 or 4 numbers"))),
                    }
                }
                "describe" => {
                    let (name, text) = split_word(rest);
                    self.describes.insert(name.to_string(), text.trim().to_string());
                }
                "tflags" => {
                    let (name, flags) = split_word(rest);
                    self.tflags.insert(name.to_string(), flags.split_whitespace().map(str::to_string).collect());
                }
                "replace_tag" | "replace_pre" | "replace_inter" | "replace_post" => {
                    let (tag, value) = split_word(rest);
                    let map = match directive {
                        "replace_tag" => &mut self.replace.tags,
                        "replace_pre" => &mut self.replace.pre,
                        "replace_inter" => &mut self.replace.inter,
                        _ => &mut self.replace.post,
                    };
                    map.insert(tag.to_string(), value.trim().to_string());
                }
                "replace_rules" => self.replace.rules.extend(rest.split_whitespace().map(str::to_string)),
                "lang" => *self.ignored.entry("lang".into()).or_default() += 1,
                other if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => {
                    *self.ignored.entry(other.to_string()).or_default() += 1;
                }
                other => self.errors.push(err(format!("not a directive: {other:?}"))),
            }
        }
        if !blocks.is_empty() {
            self.errors.push(LineError {
                source: source.to_string(),
                line: text.lines().count(),
                message: format!("{} if/ifplugin block(s) not closed by endif", blocks.len()),
            });
        }
    }

    fn unsupported(&mut self, name: &str, kind: RuleKind, why: &str, source: &str, line: usize) {
        let def = RuleDef {
            name: name.to_string(),
            kind,
            spec: RuleSpec::Unsupported(why.to_string()),
            source: source.to_string(),
            line,
        };
        self.rules.insert(name.to_string(), def);
    }
}

/// `#` starts a comment, except escaped (`\#`) inside a pattern.
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'#' => return &line[..i],
            _ => i += 1,
        }
    }
    line
}

fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(p) => (&s[..p], s[p..].trim_start()),
        None => (s, ""),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 100 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `if` conditions: every plugin and feature SpamAssassin 4 has is taken
/// as present (rules that need one we lack are then reported as such), and
/// `version` comparisons are made against 4.0.
fn condition_holds(expr: &str) -> bool {
    let mut e = expr.replace(' ', "");
    for f in ["plugin(", "can(", "has("] {
        while let Some(p) = e.find(f) {
            let end = e[p..].find(')').map_or(e.len(), |q| p + q + 1);
            e.replace_range(p..end, "1");
        }
    }
    while let Some(p) = e.find("version") {
        let rest = &e[p + 7..];
        let op_len = rest.chars().take_while(|c| "<>=!".contains(*c)).count();
        let num_len = rest[op_len..].chars().take_while(|c| c.is_ascii_digit() || *c == '.').count();
        let n: f64 = rest[op_len..op_len + num_len].parse().unwrap_or(0.0);
        let holds = match &rest[..op_len] {
            ">=" => CLAIMED_VERSION >= n,
            ">" => CLAIMED_VERSION > n,
            "<=" => CLAIMED_VERSION <= n,
            "<" => CLAIMED_VERSION < n,
            "==" => CLAIMED_VERSION == n,
            "!=" => CLAIMED_VERSION != n,
            _ => true,
        };
        e.replace_range(p..p + 7 + op_len + num_len, if holds { "1" } else { "0" });
    }
    super::meta::MetaExpr::parse(&e).map(|m| m.eval(&|_| 0.0) != 0.0).unwrap_or(true)
}

fn parse_rule(directive: &str, rest: &str) -> Result<(String, RuleKind, RuleSpec), String> {
    let (name, body) = split_word(rest);
    if !valid_name(name) {
        return Err(format!("{directive}: bad rule name {name:?}"));
    }
    let kind = match directive {
        "header" => RuleKind::Header,
        "body" => RuleKind::Body,
        "rawbody" => RuleKind::Rawbody,
        "uri" => RuleKind::Uri,
        "full" => RuleKind::Full,
        _ => RuleKind::Meta,
    };
    let body = body.trim();
    if body.is_empty() {
        return Err(format!("{directive} {name}: no test"));
    }
    let spec = if kind == RuleKind::Meta {
        RuleSpec::Meta(body.to_string())
    } else if body.starts_with("eval:") {
        let call = body.trim_start_matches("eval:");
        RuleSpec::Unsupported(format!("eval test {}", call.split('(').next().unwrap_or(call)))
    } else if kind == RuleKind::Header {
        parse_header_test(body).map_err(|m| format!("header {name}: {m}"))?
    } else {
        let (regex, tail) = split_pattern(body).map_err(|m| format!("{directive} {name}: {m}"))?;
        if !tail.trim().is_empty() {
            return Err(format!("{directive} {name}: unexpected {:?} after the pattern", tail.trim()));
        }
        RuleSpec::Pattern { field: None, negated: false, regex, if_unset: None }
    };
    Ok((name.to_string(), kind, spec))
}

fn parse_header_test(body: &str) -> Result<RuleSpec, String> {
    if let Some(field) = body.strip_prefix("exists:") {
        return Ok(RuleSpec::Exists(field.trim().to_ascii_lowercase()));
    }
    let (op_at, negated) = match (body.find("=~"), body.find("!~")) {
        (Some(a), Some(b)) if b < a => (b, true),
        (Some(a), _) => (a, false),
        (None, Some(b)) => (b, true),
        (None, None) => return Err("expected Field =~ /pattern/ or exists:Field".into()),
    };
    let field_spec = body[..op_at].trim();
    let (field_name, modifier) = match field_spec.rsplit_once(':') {
        Some((f, "raw")) => (f, HeaderModifier::Raw),
        Some((f, "addr")) => (f, HeaderModifier::Addr),
        Some((f, "name")) => (f, HeaderModifier::Name),
        Some((_, m)) => return Err(format!("unknown header modifier :{m}")),
        None => (field_spec, HeaderModifier::None),
    };
    if field_name.is_empty() || field_name.contains(char::is_whitespace) || field_name.contains('|') {
        return Err(format!("bad header name {field_spec:?}"));
    }
    let (regex, tail) = split_pattern(body[op_at + 2..].trim())?;
    let tail = tail.trim();
    let if_unset = if tail.is_empty() {
        None
    } else if let Some(v) = tail.strip_prefix("[if-unset:").and_then(|v| v.strip_suffix(']')) {
        Some(v.trim().to_string())
    } else {
        return Err(format!("unexpected {tail:?} after the pattern"));
    };
    let field = HeaderField { name: field_name.to_ascii_lowercase(), modifier };
    Ok(RuleSpec::Pattern { field: Some(field), negated, regex, if_unset })
}

/// Splits a Perl match (`/re/flags`, `m{re}flags`, `m!re!flags`) off the
/// front of `s`: returns the match as written (delimiters and flags kept,
/// for the compiler) and what follows.
pub fn split_pattern(s: &str) -> Result<(String, &str), String> {
    let (open, start) = if let Some(r) = s.strip_prefix('m') {
        let c = r.chars().next().ok_or("m without a delimiter")?;
        if c.is_alphanumeric() || c.is_whitespace() {
            return Err(format!("bad delimiter {c:?} after m"));
        }
        (c, 2)
    } else if s.starts_with('/') {
        ('/', 1)
    } else {
        return Err(format!("expected a /pattern/, found {:?}", s.chars().take(20).collect::<String>()));
    };
    let close = super::perl::closing_delimiter(open);
    let bytes = s.as_bytes();
    let mut depth = 0usize;
    let mut i = start;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c == '\\' {
            i += 2;
            continue;
        }
        if open != close && c == open {
            depth += 1;
        } else if c == close {
            if depth == 0 {
                let flags_end = s[i + 1..].find(|c: char| !c.is_ascii_alphabetic()).map_or(s.len(), |p| i + 1 + p);
                return Ok((s[..flags_end].to_string(), &s[flags_end..]));
            }
            depth -= 1;
        }
        i += 1;
    }
    Err("pattern not closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rules_scores_and_blocks() {
        let cf = "\
# a comment
header   SUBJ_FREE  Subject =~ /\\bfree\\b/i   # trailing comment
header   __HAS_X    exists:X-Mailer
header   NO_DATE    Date !~ /\\d/ [if-unset: none]
header   FROM_NUM   From:addr =~ m{^\\d+\\@}
body     MONEY      /\\$\\d+ million/i
describe MONEY      Talks about millions
score    MONEY      1.5 2.0 2.5 3.0
tflags   MONEY      multiple maxhits=3
meta     COMBO      (SUBJ_FREE && MONEY) || __HAS_X
header   EVALED     eval:check_for_stuff('x')
if !plugin(Mail::SpamAssassin::Plugin::ReplaceTags)
body     FALLBACK   /x/
endif
ifplugin Mail::SpamAssassin::Plugin::Foo
if (version >= 3.004000)
uri      LINK       /example\\.test/
endif
endif
freemail_domains a.example b.example
";
        let f = RuleFiles::read([("t.cf", cf)]);
        assert!(f.errors.is_empty(), "{:?}", f.errors);
        assert_eq!(f.rules.len(), 8, "{:?}", f.rules.keys().collect::<Vec<_>>());
        assert!(!f.rules.contains_key("FALLBACK"));
        match &f.rules["NO_DATE"].spec {
            RuleSpec::Pattern { field, negated, if_unset, .. } => {
                assert_eq!(field.as_ref().map(|f| f.name.as_str()), Some("date"));
                assert!(negated);
                assert_eq!(if_unset.as_deref(), Some("none"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            f.rules["FROM_NUM"].spec,
            RuleSpec::Pattern {
                field: Some(HeaderField { name: "from".into(), modifier: HeaderModifier::Addr }),
                negated: false,
                regex: "m{^\\d+\\@}".into(),
                if_unset: None
            }
        );
        assert!(matches!(f.rules["EVALED"].spec, RuleSpec::Unsupported(_)));
        assert_eq!(f.scores["MONEY"], [1.5, 2.0, 2.5, 3.0]);
        assert_eq!(f.describes["MONEY"], "Talks about millions");
        assert_eq!(f.ignored["freemail_domains"], 1);
    }

    #[test]
    fn broken_lines_are_errors_with_their_line() {
        let f = RuleFiles::read([("b.cf", "body OK /x/\nbody BAD /unclosed\nscore OK many\nendif\n")]);
        let lines: Vec<usize> = f.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 3, 4], "{:?}", f.errors);
    }

    #[test]
    fn patterns_split_at_their_delimiter() {
        assert_eq!(split_pattern("/a\\/b/i rest").unwrap(), ("/a\\/b/i".into(), " rest"));
        assert_eq!(split_pattern("m{a{1,2}}x [if-unset: y]").unwrap(), ("m{a{1,2}}x".into(), " [if-unset: y]"));
        assert!(split_pattern("abc").is_err());
    }
}
