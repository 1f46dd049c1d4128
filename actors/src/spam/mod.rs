//! The spam stage: symbols (rspamd's model) summed against the thresholds of
//! the `spam.*` settings. Symbols come from the earlier stages (SPF),
//! GTUBE, the content stage's warnings and the cluster's Bayes model. Pure
//! apart from reading the applied state; runs on the spam stage's threads.

pub mod bayes;
pub mod dnslists;
pub mod encapsulate;
pub mod filters;
pub mod rules;
pub mod tokens;

use consensus::state::settings::key;
use consensus::AppliedState;
use serde::Serialize;
use xxhash_rust::xxh3::xxh3_64;

use crate::content::mime::ParsedMessage;
use crate::message::headers::{header_block, header_value};
use crate::message::InboundMessage;

/// The standard anti-spam test string (SpamAssassin's GTUBE).
pub const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

/// One named finding and what it adds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Symbol {
    /// A fixed name, or a rule's name from a rule file.
    pub name: std::borrow::Cow<'static, str>,
    pub score: f64,
    pub options: Vec<String>,
}

/// What the stage decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpamAction {
    NoAction,
    /// Spam: headers, and the subject prefix.
    RewriteSubject,
    /// Spam: headers only.
    AddHeader,
    /// Spam: to the recipients' Junk folder.
    Junk,
    /// Spam: a new message explaining the verdict, the original attached.
    Encapsulate,
    Quarantine,
    Reject,
}

impl SpamAction {
    /// rspamd's names, for `spam check --json`.
    pub fn name(self) -> &'static str {
        match self {
            Self::NoAction => "no action",
            Self::RewriteSubject => "rewrite subject",
            Self::AddHeader => "add header",
            Self::Junk => "junk",
            Self::Encapsulate => "encapsulate",
            Self::Quarantine => "quarantine",
            Self::Reject => "reject",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SpamVerdict {
    pub score: f64,
    /// `spam.tag_score`.
    pub required_score: f64,
    pub reject_score: f64,
    pub action: SpamAction,
    /// `spam.subject_prefix`, for `RewriteSubject`.
    #[serde(skip)]
    pub subject_prefix: String,
    /// `spam.encapsulate_plain_text` and `smtp.hostname`, for `Encapsulate`.
    #[serde(skip)]
    pub encapsulate_plain: bool,
    #[serde(skip)]
    pub hostname: String,
    pub symbols: Vec<Symbol>,
    /// Bayes' spam probability, when it voted.
    pub bayes: Option<f64>,
    #[serde(skip)]
    pub tokens: Vec<u64>,
    /// The message's learn digest (Message-ID, else the body).
    #[serde(skip)]
    pub digest: u64,
}

impl SpamVerdict {
    pub fn is_spam(&self) -> bool {
        self.score >= self.required_score
    }

    /// `X-Spam-*` headers (SpamAssassin's names, which filters and clients know).
    pub fn headers(&self) -> Vec<String> {
        let flag = if self.is_spam() { "Yes" } else { "No" };
        let names: Vec<&str> = self.symbols.iter().map(|s| s.name.as_ref()).collect();
        let mut out = vec![
            format!("X-Spam-Flag: {}", if self.is_spam() { "YES" } else { "NO" }),
            format!("X-Spam-Score: {:.2}", self.score),
            format!(
                "X-Spam-Status: {flag}, score={:.2} required={:.2} tests={}",
                self.score,
                self.required_score,
                names.join(",")
            ),
        ];
        let mut report = String::from("X-Spam-Report:");
        for s in &self.symbols {
            let options = if s.options.is_empty() { String::new() } else { format!(" ({})", s.options.join(", ")) };
            report.push_str(&format!("\r\n\t* {:>6.2} {}{}", s.score, s.name, options));
        }
        if !self.symbols.is_empty() {
            out.push(report);
        }
        out
    }
}

/// Bayes' symbols: the log-odds of its probability, scaled and bounded, so
/// a near-certain verdict (p = 1 − 10⁻⁶) weighs more than a likely one
/// (p = 0.99) and thresholds can tell them apart.
fn bayes_symbol(p: f64) -> Symbol {
    let options = vec![format!("{:.4}%", p * 100.0)];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let log_odds = (p / (1.0 - p)).log10();
    if log_odds >= 0.0 {
        Symbol {
            name: "BAYES_SPAM".into(),
            score: round((log_odds * BAYES_SPAM_PER_DECADE).min(BAYES_SPAM_MAX)),
            options,
        }
    } else {
        Symbol { name: "BAYES_HAM".into(), score: round((log_odds * BAYES_HAM_PER_DECADE).max(BAYES_HAM_MIN)), options }
    }
}

/// Score per factor of ten in the odds, and the bounds.
const BAYES_SPAM_PER_DECADE: f64 = 3.0;
const BAYES_SPAM_MAX: f64 = 9.0;
const BAYES_HAM_PER_DECADE: f64 = 0.5;
const BAYES_HAM_MIN: f64 = -4.0;

/// Two decimals; `+ 0.0` turns the -0.0 of an empty sum into 0.0.
fn round(x: f64) -> f64 {
    (x * 100.0).round() / 100.0 + 0.0
}

/// Scores a message. `parsed` is the content stage's parse; `warnings` the
/// names of the content checks that tagged it; `listed` the DNS lists'
/// symbols (`dnslists::lookup`), asked before.
pub fn check(
    state: &AppliedState,
    message: &InboundMessage,
    parsed: &ParsedMessage,
    warnings: &[&str],
    listed: Vec<Symbol>,
) -> SpamVerdict {
    let settings = &state.state.settings;
    let mut symbols: Vec<Symbol> = listed;
    let raw = &message.body;

    let gtube_in = |t: &String| t.contains(GTUBE);
    if parsed.text.iter().any(gtube_in) || parsed.html.iter().any(gtube_in) || contains(raw, GTUBE.as_bytes()) {
        symbols.push(Symbol { name: "GTUBE".into(), score: 1000.0, options: vec![] });
    }
    for (name, score) in &message.spam_symbols {
        symbols.push(Symbol { name: (*name).into(), score: f64::from(*score), options: vec![] });
    }
    for (check, name, score) in CONTENT_WARNINGS {
        if warnings.contains(check) {
            symbols.push(Symbol { name: (*name).into(), score: *score, options: vec![] });
        }
    }
    filters::address_symbols(&state.state.spam, message, parsed, &mut symbols);
    if settings.flag(key::SPAM_AUTO_WHITELIST) {
        filters::auto_whitelist_symbol(state, message, &mut symbols);
    }
    filters::keyword_symbols(&state.state.spam, parsed, &mut symbols);
    let tokens = tokens::tokenize(raw, parsed);
    let min_learns = settings.uint(key::SPAM_BAYES_MIN_LEARNS);
    let bayes = bayes::classify(&state.state.spam.bayes, &tokens, min_learns);
    if let Some(p) = bayes {
        symbols.push(bayes_symbol(p));
    }
    let book = rules::cache().get(&state.state.spam);
    let mut input = rules::RuleInput::new(raw, parsed, &message.mail_from);
    let known: Vec<&str> = symbols.iter().map(|s| s.name.as_ref()).collect();
    let hits = book.check(&mut input, &|name| known.contains(&name));
    symbols.extend(hits.into_iter().map(|h| {
        let options = if h.description.is_empty() { vec![] } else { vec![h.description] };
        Symbol { name: h.name.into(), score: h.score, options }
    }));

    let score = round(symbols.iter().map(|s| s.score).sum());
    let required_score = settings.score(key::SPAM_TAG_SCORE);
    let reject_score = settings.score(key::SPAM_REJECT_SCORE);
    let action = if score >= reject_score {
        SpamAction::Reject
    } else if score >= required_score {
        match settings.text(key::SPAM_ACTION).as_str() {
            "tag" => SpamAction::AddHeader,
            "subject" => SpamAction::RewriteSubject,
            "quarantine" => SpamAction::Quarantine,
            "encapsulate" => SpamAction::Encapsulate,
            _ => SpamAction::Junk,
        }
    } else {
        SpamAction::NoAction
    };
    let digest = digest(raw);
    let subject_prefix = settings.text(key::SPAM_SUBJECT_PREFIX);
    let encapsulate_plain = settings.flag(key::SPAM_ENCAPSULATE_PLAIN_TEXT);
    let hostname = settings.text(key::SMTP_HOSTNAME);
    SpamVerdict {
        score,
        required_score,
        reject_score,
        action,
        subject_prefix,
        encapsulate_plain,
        hostname,
        symbols,
        bayes,
        tokens,
        digest,
    }
}

/// The key a message is learned under, so it counts once: its Message-ID,
/// else its bytes.
pub fn digest(raw: &[u8]) -> u64 {
    match header_value(&header_block(raw), "message-id") {
        Some(id) if !id.is_empty() => xxh3_64(id.trim().as_bytes()),
        _ => xxh3_64(raw),
    }
}

/// SpamAssassin's autolearn: a message whose score without Bayes' own
/// symbol is at least `spam.autolearn_spam` is learned as spam, at most
/// `spam.autolearn_ham` as ham. GTUBE is a test, never learned.
pub fn autolearn(state: &AppliedState, verdict: &SpamVerdict) -> Option<consensus::Command> {
    let s = &state.state.settings;
    if !s.flag(key::SPAM_AUTOLEARN) || verdict.symbols.iter().any(|x| x.name == "GTUBE") {
        return None;
    }
    let without_bayes: f64 = verdict.symbols.iter().filter(|x| !x.name.starts_with("BAYES_")).map(|x| x.score).sum();
    let class = if without_bayes >= s.score(key::SPAM_AUTOLEARN_SPAM) {
        consensus::state::SpamClass::Spam
    } else if without_bayes <= s.score(key::SPAM_AUTOLEARN_HAM) {
        consensus::state::SpamClass::Ham
    } else {
        return None;
    };
    Some(consensus::Command::LearnSpam { digest: verdict.digest, class, tokens: verdict.tokens.clone() })
}

/// The content stage's warnings as spam symbols.
const CONTENT_WARNINGS: &[(&str, &str, f64)] = &[
    ("phishing-link", "PHISHING_LINK", 3.0),
    ("html-active", "HTML_ACTIVE_CONTENT", 1.0),
    ("malformed-mime", "MALFORMED_MIME", 1.5),
    ("extension-mismatch", "EXTENSION_MISMATCH", 3.0),
    ("encrypted-archive", "ENCRYPTED_ARCHIVE", 1.0),
    ("double-extension", "DOUBLE_EXTENSION", 4.0),
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(hay, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bayes_scores_are_monotonic_and_bounded() {
        let mut last = f64::MIN;
        for i in 0..=100 {
            let s = bayes_symbol(f64::from(i) / 100.0).score;
            assert!(s >= last, "{i}");
            assert!((BAYES_HAM_MIN..=BAYES_SPAM_MAX).contains(&s));
            last = s;
        }
        assert_eq!(bayes_symbol(0.5).score, 0.0);
    }
}
