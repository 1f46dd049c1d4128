//! Scored rules in SpamAssassin's format: Gatehouse's own defaults, the
//! rule pack (`spam.rules_url`) and the operator's imported `.cf` files,
//! compiled together into one `RuleBook`. Each input a rule reads (a
//! header, the body text, the raw body, the URIs, the whole message) gets
//! one `RegexSet` of all the patterns on it, so a message is scanned once
//! per input however many rules there are; patterns the `regex` crate
//! cannot run go to PCRE2, and what neither can (eval tests, MIME-header
//! rules) is listed by name, never silently dropped.

pub mod input;
pub mod meta;
pub mod pack;
pub mod parse;
pub mod perl;
pub mod prefilter;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use regex::bytes::{RegexSet, RegexSetBuilder};
use regex_automata::meta::{Config as EngineConfig, Regex};
use regex_automata::{Anchored, Input};

pub use input::RuleInput;
use meta::MetaExpr;
use parse::{HeaderField, LineError, RuleFiles, RuleKind, RuleSpec};
use perl::PerlMatch;

/// Gatehouse's own rules, compiled before everything else (a later file can
/// rescore or redefine them).
pub const DEFAULT_RULES: &str = include_str!("default.cf");
pub const DEFAULT_SOURCE: &str = "gatehouse-default.cf";

/// Compiled size a pattern may reach (the `regex` crate's limits).
const PATTERN_SIZE_MAX: usize = 4 << 20;
const SET_SIZE_MAX: usize = 256 << 20;
const DFA_SIZE_MAX: usize = 64 << 20;
/// Patterns per `RegexSet`: one lazy DFA over hundreds of patterns keeps
/// meeting new states and spends its time building them; small sets stay
/// in their cached states (on Debian's rules and the SpamAssassin corpus,
/// 8 per set checked 522 messages/s, 1 per set 402, 32 441, 64 386).
const SET_PATTERNS_MAX: usize = 8;
/// Places a prefix-filtered rule is tried at, anchored, before one search
/// of the whole text is cheaper.
const ANCHORED_TRIES_MAX: usize = 16;
/// Matches a `tflags multiple` rule counts at most, when it names no `maxhits`.
const MULTIPLE_HITS_MAX: usize = 100;

/// A rule that did not compile, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Uncompiled {
    pub name: String,
    pub kind: &'static str,
    pub source: String,
    pub line: usize,
    pub reason: String,
    /// A mistake in the rule (a pattern neither engine compiles, a bad
    /// meta), not a feature Gatehouse lacks (eval tests, MIME headers).
    pub broken: bool,
}

/// One compiled rule, as `spam rules list` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleSummary {
    pub name: String,
    pub kind: &'static str,
    pub score: f64,
    pub description: String,
    pub source: String,
    /// `regex` or `pcre2` for patterns, `meta`, `exists`.
    pub engine: &'static str,
}

/// What a rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A header field, with the value it has when the message lacks it.
    Header(HeaderField, String),
    Body,
    Rawbody,
    Uri,
    Full,
}

struct Rule {
    name: String,
    source: String,
    line: usize,
    score: f64,
    description: String,
    /// Scored and not a sub-rule: shown as a symbol when it hits.
    published: bool,
    /// `tflags multiple`: counts matches up to this many.
    multiple: Option<(usize, Matcher)>,
}

#[derive(Clone)]
enum Matcher {
    Regex(Regex),
    Pcre(pcre2::bytes::Regex),
}

impl Matcher {
    fn is_match(&self, hay: &[u8]) -> bool {
        match self {
            Self::Regex(r) => r.is_match(hay),
            // A match that hits PCRE2's limits counts as no match.
            Self::Pcre(r) => r.is_match(hay).unwrap_or(false),
        }
    }

    /// Whether a match starts exactly at `at` (what came before still
    /// counts for `\b` and `^`).
    fn is_match_starting_at(&self, hay: &[u8], at: usize) -> bool {
        match self {
            Self::Regex(r) => r.is_match(Input::new(hay).range(at..).anchored(Anchored::Yes)),
            Self::Pcre(_) => self.is_match(hay),
        }
    }

    /// Whether a match lies within `range` (the text around it still
    /// counts for `\b` and `^`).
    fn is_match_within(&self, hay: &[u8], range: std::ops::Range<usize>) -> bool {
        match self {
            Self::Regex(r) => r.is_match(Input::new(hay).range(range)),
            Self::Pcre(_) => self.is_match(hay),
        }
    }

    fn count(&self, hay: &[u8], max: usize) -> usize {
        match self {
            Self::Regex(r) => r.find_iter(hay).take(max).count(),
            Self::Pcre(r) => r.find_iter(hay).take(max).take_while(Result::is_ok).count(),
        }
    }
}

/// The rules on one input.
struct TargetRules {
    target: Target,
    /// Sets of at most `SET_PATTERNS_MAX` patterns, each with, per pattern,
    /// its rule and whether it is negated (`!~`).
    sets: Vec<PatternSet>,
    /// PCRE2 patterns with no literal to filter on: run on every message.
    fallback: Vec<(usize, bool, Matcher)>,
    filtered: Prefiltered,
    guarded: Guarded,
    /// The `tflags multiple` rules among them.
    multiples: Vec<usize>,
}

/// A rule by index, and whether it is negated (`!~`).
type RuleRef = (usize, bool);
/// A `RegexSet` with, per pattern, its rule.
type PatternSet = (RegexSet, Vec<RuleRef>);
/// The strings one of which a rule's every match contains.
type Literals = Vec<Vec<u8>>;

/// Rules run only when one of their literals is in the text.
struct Prefiltered {
    literals: Option<aho_corasick::AhoCorasick>,
    /// Per literal, the indexes in `rules` of the rules that need it.
    owners: Vec<Vec<usize>>,
    rules: Vec<FilteredRule>,
}

struct FilteredRule {
    rule: usize,
    negated: bool,
    matcher: Matcher,
    /// Every match starts at one of the literals: try only there.
    anchored: bool,
    /// Otherwise, the longest a match can be: search only around them.
    max_len: Option<usize>,
}

impl Prefiltered {
    fn check(&self, hay: &[u8], value: &mut [f64]) {
        // (rule, where one of its literals was found); a whole-text search
        // for rules whose matches are unbounded.
        let mut found: Vec<(usize, usize, usize)> = Vec::new();
        let mut whole = vec![false; self.rules.len()];
        if let Some(ac) = &self.literals {
            for m in ac.find_overlapping_iter(hay) {
                for i in &self.owners[m.pattern().as_usize()] {
                    let r = &self.rules[*i];
                    if r.anchored || r.max_len.is_some() {
                        found.push((*i, m.start(), m.end()));
                    } else {
                        whole[*i] = true;
                    }
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        let mut hit = vec![false; self.rules.len()];
        for tries in found.chunk_by(|a, b| a.0 == b.0) {
            let i = tries[0].0;
            let r = &self.rules[i];
            hit[i] = if tries.len() > ANCHORED_TRIES_MAX {
                r.matcher.is_match(hay)
            } else if r.anchored {
                tries.iter().any(|(_, at, _)| r.matcher.is_match_starting_at(hay, *at))
            } else {
                let max = r.max_len.unwrap_or(usize::MAX);
                tries.iter().any(|(_, s, e)| {
                    r.matcher.is_match_within(hay, e.saturating_sub(max)..s.saturating_add(max).min(hay.len()))
                })
            };
        }
        for (i, r) in self.rules.iter().enumerate() {
            if (hit[i] || (whole[i] && r.matcher.is_match(hay))) != r.negated {
                value[r.rule] = 1.0;
            }
        }
    }
}

/// PCRE2 rules behind a `RegexSet` of their relaxed patterns (which match
/// whenever they do): PCRE2 runs only when its guard matched.
struct Guarded {
    sets: Vec<PatternSet>,
    rules: Vec<(usize, bool, Matcher)>,
}

impl Guarded {
    fn check(&self, hay: &[u8], value: &mut [f64]) {
        let mut candidate = vec![false; self.rules.len()];
        for (set, ids) in &self.sets {
            for i in set.matches(hay).iter() {
                candidate[ids[i].0] = true;
            }
        }
        for ((rule, negated, matcher), candidate) in self.rules.iter().zip(candidate) {
            if (candidate && matcher.is_match(hay)) != *negated {
                value[*rule] = 1.0;
            }
        }
    }
}

/// A compiled rule set.
pub struct RuleBook {
    rules: Vec<Rule>,
    by_name: HashMap<String, usize>,
    targets: Vec<TargetRules>,
    exists: Vec<(usize, String)>,
    /// In dependency order: a meta comes after every meta it reads.
    metas: Vec<(usize, MetaExpr)>,
    summaries: Vec<RuleSummary>,
    pub uncompiled: Vec<Uncompiled>,
    pub ignored: BTreeMap<String, usize>,
    pub errors: Vec<LineError>,
}

/// One rule that hit: its name, score and description.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    pub name: String,
    pub score: f64,
    pub description: String,
}

impl RuleBook {
    /// Compiles `files` (name, Latin-1 text), in order, after the defaults.
    pub fn compile<'a>(files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let all = std::iter::once((DEFAULT_SOURCE, DEFAULT_RULES)).chain(files);
        Self::from_files(RuleFiles::read(all))
    }

    fn from_files(mut files: RuleFiles) -> Self {
        let mut book = RuleBook {
            rules: Vec::new(),
            by_name: HashMap::new(),
            targets: Vec::new(),
            exists: Vec::new(),
            metas: Vec::new(),
            summaries: Vec::new(),
            uncompiled: Vec::new(),
            ignored: std::mem::take(&mut files.ignored),
            errors: std::mem::take(&mut files.errors),
        };
        let mut patterns: BTreeMap<Target, Vec<(usize, bool, String)>> = BTreeMap::new();
        let mut fallback: BTreeMap<Target, Vec<(usize, bool, Matcher)>> = BTreeMap::new();
        let mut filtered: BTreeMap<Target, Vec<(FilteredRule, Literals)>> = BTreeMap::new();
        let mut guarded: BTreeMap<Target, Vec<(usize, bool, Matcher, String)>> = BTreeMap::new();
        let mut metas: Vec<(usize, MetaExpr)> = Vec::new();
        for def in files.rules.values() {
            let fail = |reason: String| Uncompiled {
                name: def.name.clone(),
                kind: def.kind.name(),
                source: def.source.clone(),
                line: def.line,
                reason,
                broken: true,
            };
            let flags = files.tflags.get(&def.name).map(Vec::as_slice).unwrap_or_default();
            let score = rule_score(&def.name, files.scores.get(&def.name), flags);
            let engine;
            match &def.spec {
                RuleSpec::Unsupported(why) => {
                    book.uncompiled.push(Uncompiled { broken: false, ..fail(why.clone()) });
                    continue;
                }
                RuleSpec::Meta(text) => match MetaExpr::parse(text) {
                    Ok(expr) => {
                        engine = "meta";
                        metas.push((book.rules.len(), expr));
                    }
                    Err(e) => {
                        book.uncompiled.push(fail(format!("meta: {e}")));
                        continue;
                    }
                },
                RuleSpec::Exists(field) => {
                    engine = "exists";
                    book.exists.push((book.rules.len(), field.clone()));
                }
                RuleSpec::Pattern { field, negated, regex, if_unset } => {
                    let written = if files.replace.rules.contains(&def.name) {
                        replace_tags(regex, &files.replace)
                    } else {
                        regex.clone()
                    };
                    let target = match (def.kind, field) {
                        (RuleKind::Header, Some(f)) => Target::Header(f.clone(), if_unset.clone().unwrap_or_default()),
                        (RuleKind::Rawbody, _) => Target::Rawbody,
                        (RuleKind::Uri, _) => Target::Uri,
                        (RuleKind::Full, _) => Target::Full,
                        _ => Target::Body,
                    };
                    let perl = match PerlMatch::parse(&written) {
                        Ok(p) => p,
                        Err(e) => {
                            book.uncompiled.push(fail(e));
                            continue;
                        }
                    };
                    // Body text is one line per paragraph, headers one line per
                    // field: ^ and $ meet those edges, as in SpamAssassin.
                    let force_m = target != Target::Full;
                    let rust = perl.to_rust(force_m).and_then(|p| compile_one(&p).map(|r| (p, r)));
                    let multiple = flags.iter().any(|f| f == "multiple").then(|| {
                        flags.iter().find_map(|f| f.strip_prefix("maxhits=")?.parse().ok()).unwrap_or(MULTIPLE_HITS_MAX)
                    });
                    let counter;
                    match rust {
                        Ok((pattern, regex)) => {
                            engine = "regex";
                            let cased = PerlMatch { caseless: false, ..perl.clone() };
                            let literals = cased
                                .to_rust(force_m)
                                .ok()
                                .and_then(|p| prefilter::required_literals(&p))
                                .or_else(|| prefilter::required_literals(&pattern));
                            match literals {
                                Some(lits) => filtered.entry(target).or_default().push((
                                    FilteredRule {
                                        rule: book.rules.len(),
                                        negated: *negated,
                                        matcher: Matcher::Regex(regex.clone()),
                                        anchored: lits.starts_match,
                                        max_len: lits.max_len,
                                    },
                                    lits.literals,
                                )),
                                None => patterns.entry(target).or_default().push((book.rules.len(), *negated, pattern)),
                            }
                            counter = multiple.map(|m| (m.min(MULTIPLE_HITS_MAX), Matcher::Regex(regex)));
                        }
                        Err(rust_err) => match compile_pcre(&perl, force_m) {
                            Ok(re) => {
                                engine = "pcre2";
                                let counted = multiple.map(|m| (m.min(MULTIPLE_HITS_MAX), Matcher::Pcre(re.clone())));
                                let relaxed = perl.relaxed();
                                let lits = PerlMatch { caseless: false, ..relaxed.clone() }
                                    .to_rust(force_m)
                                    .ok()
                                    .and_then(|p| prefilter::required_literals(&p));
                                let guard = relaxed.to_rust(force_m).ok().filter(|p| compile_one(p).is_ok());
                                match (lits, guard) {
                                    (Some(lits), _) => filtered.entry(target).or_default().push((
                                        FilteredRule {
                                            rule: book.rules.len(),
                                            negated: *negated,
                                            matcher: Matcher::Pcre(re),
                                            anchored: false,
                                            max_len: None,
                                        },
                                        lits.literals,
                                    )),
                                    (None, Some(guard)) => guarded.entry(target).or_default().push((
                                        book.rules.len(),
                                        *negated,
                                        Matcher::Pcre(re),
                                        guard,
                                    )),
                                    (None, None) => fallback.entry(target).or_default().push((
                                        book.rules.len(),
                                        *negated,
                                        Matcher::Pcre(re),
                                    )),
                                }
                                counter = counted;
                            }
                            Err(pcre_err) => {
                                book.uncompiled.push(fail(format!("{rust_err}; PCRE2: {pcre_err}")));
                                continue;
                            }
                        },
                    }
                    book.push_rule(def, score, &files, engine, counter);
                    continue;
                }
            }
            book.push_rule(def, score, &files, engine, None);
        }
        book.metas = book.order_metas(metas);
        // A rule nothing scores and no scored meta reads cannot change a
        // verdict: it is listed, not run (SpamAssassin's `score X 0`).
        let live = book.live_rules();
        book.metas.retain(|(rule, _)| live[*rule]);
        book.exists.retain(|(rule, _)| live[*rule]);
        for list in patterns.values_mut() {
            list.retain(|(rule, _, _)| live[*rule]);
        }
        for list in fallback.values_mut() {
            list.retain(|(rule, _, _)| live[*rule]);
        }
        for list in filtered.values_mut() {
            list.retain(|(f, _)| live[f.rule]);
        }
        for list in guarded.values_mut() {
            list.retain(|(rule, _, _, _)| live[*rule]);
        }
        let targets: std::collections::BTreeSet<Target> =
            patterns.keys().chain(fallback.keys()).chain(filtered.keys()).chain(guarded.keys()).cloned().collect();
        for target in targets {
            let list = patterns.remove(&target).unwrap_or_default();
            let (sets, failed) = Self::chunked_sets(list.iter().map(|(r, n, p)| ((*r, *n), p.as_str())));
            for (rule, _) in failed {
                let r = &mut book.rules[rule];
                r.published = false;
                let reason = "too large together with the rules beside it".to_string();
                let (source, line) = (r.source.clone(), r.line);
                book.uncompiled.push(Uncompiled {
                    name: r.name.clone(),
                    kind: "pattern",
                    source,
                    line,
                    reason,
                    broken: true,
                });
            }
            let guards = guarded.remove(&target).unwrap_or_default();
            let (mut guard_sets, failed) =
                Self::chunked_sets(guards.iter().enumerate().map(|(i, (_, _, _, p))| ((i, false), p.as_str())));
            let mut fallback = fallback.remove(&target).unwrap_or_default();
            let mut guarded: Vec<(usize, bool, Matcher)> = guards.into_iter().map(|(r, n, m, _)| (r, n, m)).collect();
            // Guards too large to build: their rules run on every message.
            if !failed.is_empty() {
                guard_sets.clear();
                fallback.append(&mut guarded);
            }
            let set_rules: Vec<(usize, bool)> = sets.iter().flat_map(|(_, r)| r.iter().copied()).collect();
            let guarded = Guarded { sets: guard_sets, rules: guarded };
            let mut literal_ids: HashMap<Vec<u8>, usize> = HashMap::new();
            let mut owners: Vec<Vec<usize>> = Vec::new();
            let mut checked = Vec::new();
            for (i, (rule, lits)) in filtered.remove(&target).unwrap_or_default().into_iter().enumerate() {
                for lit in lits {
                    let next = literal_ids.len();
                    let id = *literal_ids.entry(lit).or_insert(next);
                    if id == owners.len() {
                        owners.push(Vec::new());
                    }
                    owners[id].push(i);
                }
                checked.push(rule);
            }
            let mut literal_list: Vec<(Vec<u8>, usize)> = literal_ids.into_iter().collect();
            literal_list.sort_by_key(|(_, id)| *id);
            let literals = (!literal_list.is_empty())
                .then(|| {
                    aho_corasick::AhoCorasick::builder()
                        .ascii_case_insensitive(true)
                        .kind(Some(aho_corasick::AhoCorasickKind::DFA))
                        .build(literal_list.iter().map(|(l, _)| l))
                        .ok()
                })
                .flatten();
            let multiples = set_rules
                .iter()
                .map(|(r, _)| *r)
                .chain(fallback.iter().map(|(r, _, _)| *r))
                .chain(checked.iter().map(|r| r.rule))
                .chain(guarded.rules.iter().map(|(r, _, _)| *r))
                .filter(|r| book.rules[*r].multiple.is_some())
                .collect();
            let filtered = Prefiltered { literals, owners, rules: checked };
            book.targets.push(TargetRules { target, sets, filtered, guarded, fallback, multiples });
        }
        book.uncompiled.sort_by(|a, b| a.name.cmp(&b.name));
        book
    }

    /// `RegexSet`s of at most `SET_PATTERNS_MAX` patterns, each with its
    /// patterns' tags; and the tags of a chunk too large to build.
    fn chunked_sets<'p>(patterns: impl Iterator<Item = ((usize, bool), &'p str)>) -> (Vec<PatternSet>, Vec<RuleRef>) {
        let all: Vec<((usize, bool), &str)> = patterns.collect();
        let mut sets = Vec::new();
        let mut failed = Vec::new();
        for chunk in all.chunks(SET_PATTERNS_MAX) {
            let built = RegexSetBuilder::new(chunk.iter().map(|(_, p)| p))
                .unicode(false)
                .size_limit(SET_SIZE_MAX)
                .dfa_size_limit(DFA_SIZE_MAX)
                .build();
            match built {
                Ok(set) => sets.push((set, chunk.iter().map(|(tag, _)| *tag).collect())),
                Err(_) => failed.extend(chunk.iter().map(|(tag, _)| *tag)),
            }
        }
        (sets, failed)
    }

    fn push_rule(
        &mut self,
        def: &parse::RuleDef,
        score: f64,
        files: &RuleFiles,
        engine: &'static str,
        multiple: Option<(usize, Matcher)>,
    ) {
        let description = files.describes.get(&def.name).cloned().unwrap_or_default();
        let published = score != 0.0 && !def.name.starts_with("__");
        self.by_name.insert(def.name.clone(), self.rules.len());
        self.summaries.push(RuleSummary {
            name: def.name.clone(),
            kind: def.kind.name(),
            score,
            description: description.clone(),
            source: def.source.clone(),
            engine,
        });
        self.rules.push(Rule {
            name: def.name.clone(),
            source: def.source.clone(),
            line: def.line,
            score,
            description,
            published,
            multiple,
        });
    }

    /// Per rule, whether a verdict can depend on it: it is scored, or a
    /// scored meta reads it (directly or through other metas).
    fn live_rules(&self) -> Vec<bool> {
        let mut live: Vec<bool> = self.rules.iter().map(|r| r.published).collect();
        // Metas follow the metas they read: backwards, readers come first.
        let mut read = Vec::new();
        for (rule, expr) in self.metas.iter().rev() {
            if live[*rule] {
                read.clear();
                expr.indexes(&mut read);
                for i in &read {
                    live[*i] = true;
                }
            }
        }
        live
    }

    /// Metas in an order where each follows the metas it reads; a meta in
    /// a cycle is reported and left out.
    fn order_metas(&mut self, metas: Vec<(usize, MetaExpr)>) -> Vec<(usize, MetaExpr)> {
        let index: HashMap<usize, usize> = metas.iter().enumerate().map(|(i, (r, _))| (*r, i)).collect();
        let deps: Vec<Vec<usize>> = metas
            .iter()
            .map(|(_, e)| {
                let mut names = Vec::new();
                e.rules(&mut names);
                names.iter().filter_map(|n| self.by_name.get(n)).filter_map(|r| index.get(r).copied()).collect()
            })
            .collect();
        // 0 unvisited, 1 in progress, 2 done, 3 in a cycle.
        let mut state = vec![0u8; metas.len()];
        let mut order = Vec::with_capacity(metas.len());
        for start in 0..metas.len() {
            let mut stack = vec![(start, 0usize)];
            while let Some((node, next)) = stack.pop() {
                if next == 0 {
                    if state[node] != 0 {
                        continue;
                    }
                    state[node] = 1;
                }
                if let Some(&dep) = deps[node].get(next) {
                    stack.push((node, next + 1));
                    match state[dep] {
                        0 => stack.push((dep, 0)),
                        1 => {
                            for (n, _) in &stack {
                                state[*n] = 3;
                            }
                        }
                        _ => {}
                    }
                } else {
                    if state[node] == 1 {
                        state[node] = 2;
                    }
                    order.push(node);
                }
            }
        }
        let mut slots: Vec<Option<(usize, MetaExpr)>> = metas.into_iter().map(Some).collect();
        let mut out = Vec::with_capacity(slots.len());
        for i in order {
            let Some((rule, expr)) = slots[i].take() else { continue };
            if state[i] == 3 {
                let r = &mut self.rules[rule];
                r.published = false;
                self.uncompiled.push(Uncompiled {
                    name: r.name.clone(),
                    kind: "meta",
                    source: r.source.clone(),
                    line: r.line,
                    reason: "meta rules that depend on each other in a cycle".into(),
                    broken: true,
                });
                continue;
            }
            let by_name = &self.by_name;
            out.push((rule, expr.resolve(&|n| by_name.get(n).copied())));
        }
        out
    }

    /// The rules that hit on `input`. `known` says whether a symbol from
    /// outside the book (SPF_PASS, BAYES_SPAM…) is present, for metas.
    pub fn check(&self, input: &mut RuleInput, known: &dyn Fn(&str) -> bool) -> Vec<RuleHit> {
        let mut value = vec![0.0f64; self.rules.len()];
        for t in &self.targets {
            let hay = input.text(&t.target);
            for (set, rules) in &t.sets {
                let matched = set.matches(hay);
                for (i, (rule, negated)) in rules.iter().enumerate() {
                    if matched.matched(i) != *negated {
                        value[*rule] = 1.0;
                    }
                }
            }
            t.filtered.check(hay, &mut value);
            t.guarded.check(hay, &mut value);
            for (rule, negated, m) in &t.fallback {
                if m.is_match(hay) != *negated {
                    value[*rule] = 1.0;
                }
            }
            for rule in &t.multiples {
                if let (Some((max, counter)), true) = (&self.rules[*rule].multiple, value[*rule] > 0.0) {
                    value[*rule] = counter.count(hay, *max).max(1) as f64;
                }
            }
        }
        for (rule, field) in &self.exists {
            if input.has_header(field) {
                value[*rule] = 1.0;
            }
        }
        for (rule, expr) in &self.metas {
            let v = expr.eval_with(&|i| value[i], &|name: &str| f64::from(u8::from(known(name))));
            value[*rule] = f64::from(u8::from(v != 0.0));
        }
        self.rules
            .iter()
            .zip(&value)
            .filter(|(r, v)| r.published && **v > 0.0)
            .map(|(r, v)| RuleHit {
                name: r.name.clone(),
                score: r.score * v.max(1.0),
                description: r.description.clone(),
            })
            .collect()
    }

    /// Per input: patterns run on every message in `RegexSet`s, behind a
    /// literal prefilter, and by PCRE2 on every message.
    pub fn layout(&self) -> Vec<(String, usize, usize, usize)> {
        self.targets
            .iter()
            .map(|t| {
                let sets = t.sets.iter().map(|(_, r)| r.len()).sum();
                (format!("{:?}", t.target), sets, t.filtered.rules.len() + t.guarded.rules.len(), t.fallback.len())
            })
            .collect()
    }

    pub fn summaries(&self) -> &[RuleSummary] {
        &self.summaries
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// SpamAssassin's score choice: one score as written; of four (the score
/// sets), the third — Bayes on, network tests off — as Gatehouse runs
/// them. A rule with no score line scores 1 (−1 if `nice`), `T_` test
/// rules 0.01, `__` sub-rules nothing.
fn rule_score(name: &str, scores: Option<&Vec<f64>>, flags: &[String]) -> f64 {
    match scores {
        Some(s) if s.len() >= 3 => s[2],
        Some(s) => s[0],
        None if name.starts_with("__") => 0.0,
        None if name.starts_with("T_") => 0.01,
        None if flags.iter().any(|f| f == "nice") => -1.0,
        None => 1.0,
    }
}

fn compile_one(pattern: &str) -> Result<Regex, String> {
    Regex::builder()
        .syntax(regex_automata::util::syntax::Config::new().unicode(false).utf8(false))
        .configure(EngineConfig::new().utf8_empty(false).nfa_size_limit(Some(PATTERN_SIZE_MAX)))
        .build(pattern)
        .map_err(|e| match e.syntax_error() {
            Some(syntax) => syntax.to_string().lines().last().unwrap_or("does not compile").trim().to_string(),
            None => e.to_string(),
        })
}

fn compile_pcre(m: &PerlMatch, force_multi_line: bool) -> Result<pcre2::bytes::Regex, String> {
    pcre2::bytes::RegexBuilder::new()
        .caseless(m.caseless)
        .multi_line(m.multi_line || force_multi_line)
        .dotall(m.dotall)
        .extended(m.extended)
        .jit_if_available(true)
        .build(&m.pattern)
        .map_err(|e| e.to_string())
}

/// ReplaceTags: `<TAG>` becomes the tag's text; `<inter X>` goes between
/// consecutive tags, `<pre X>` before and `<post X>` after each.
fn replace_tags(written: &str, tags: &parse::ReplaceTags) -> String {
    let mut out = String::with_capacity(written.len() * 4);
    let (mut pre, mut inter, mut post) = (String::new(), String::new(), String::new());
    let mut last_was_tag = false;
    let mut rest = written;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>').map(|c| open + c) else { break };
        let inside = &rest[open + 1..close];
        let (kind, name) = inside.split_once(' ').unwrap_or(("", inside));
        let set = |map: &HashMap<String, String>| map.get(name).cloned();
        let replaced = match kind {
            "pre" => set(&tags.pre).map(|v| pre = v),
            "inter" => set(&tags.inter).map(|v| inter = v),
            "post" => set(&tags.post).map(|v| post = v),
            _ => None,
        };
        out.push_str(&rest[..open]);
        if open > 0 {
            last_was_tag = false;
        }
        if replaced.is_some() {
            rest = &rest[close + 1..];
            continue;
        }
        match tags.tags.get(inside) {
            Some(value) => {
                if last_was_tag && open == 0 {
                    out.push_str(&inter);
                }
                out.push_str(&pre);
                out.push_str(value);
                out.push_str(&post);
                last_was_tag = true;
            }
            None => {
                out.push_str(&rest[open..=close]);
                last_was_tag = false;
            }
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The compiled book for a given rule-state version, shared by the threads
/// of the spam stage and the admin routes; compiled once per change.
#[derive(Default)]
pub struct RuleBookCache {
    slot: std::sync::Mutex<Option<(u64, Arc<RuleBook>)>>,
}

impl RuleBookCache {
    pub fn get(&self, state: &consensus::state::spam::SpamState) -> Arc<RuleBook> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((version, book)) = slot.as_ref() {
            if *version == state.rules_version {
                return book.clone();
            }
        }
        let book = Arc::new(Self::compile_state(state));
        *slot = Some((state.rules_version, book.clone()));
        book
    }

    /// Defaults, then the rule pack, then the operator's files by name.
    pub fn compile_state(state: &consensus::state::spam::SpamState) -> RuleBook {
        let pack = state.rule_pack.as_ref().map(|p| (pack::PACK_SOURCE, p.text.as_str()));
        let files = state.rule_files.iter().map(|(n, f)| (n.as_str(), f.text.as_str()));
        RuleBook::compile(pack.into_iter().chain(files))
    }
}

/// The node's cache.
pub fn cache() -> &'static RuleBookCache {
    static CACHE: std::sync::OnceLock<RuleBookCache> = std::sync::OnceLock::new();
    CACHE.get_or_init(RuleBookCache::default)
}

#[cfg(test)]
mod tests;
