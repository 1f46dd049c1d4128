//! The operator's filters as symbols: the address filter (not-spam wins
//! over spam, as in MailPlus) and the keyword filter (Kerio's blacklisted
//! keywords refuse the message).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use consensus::state::settings::key;
use consensus::state::spam::{correspondent_key, AddressField, AddressVerdict, SpamState};

use super::Symbol;
use crate::content::mime::ParsedMessage;
use crate::message::InboundMessage;

/// What a sender or recipient on the address filter's spam list adds: spam
/// (over the default `spam.tag_score`), not a refusal (under `spam.reject_score`).
pub const ADDRESS_SPAM_SCORE: f64 = 10.0;
/// What a not-spam match adds: enough to outweigh anything but GTUBE.
pub const ADDRESS_NOT_SPAM_SCORE: f64 = -100.0;
/// A blacklisted keyword: over any reject threshold.
pub const KEYWORD_BLACKLIST_SCORE: f64 = 1000.0;

pub fn address_symbols(state: &SpamState, message: &InboundMessage, parsed: &ParsedMessage, out: &mut Vec<Symbol>) {
    if state.addresses.is_empty() {
        return;
    }
    let senders = [message.mail_from.as_str(), parsed.from.as_str()];
    let recipients: Vec<&str> = message.recipients.iter().map(|r| r.address.as_str()).collect();
    let mut spam = Vec::new();
    let mut not_spam = Vec::new();
    for rule in state.addresses.values() {
        let candidates: &[&str] = match rule.field {
            AddressField::Sender => &senders,
            AddressField::Recipient => &recipients,
        };
        if candidates.iter().any(|a| !a.is_empty() && rule.matches(a)) {
            match rule.verdict {
                AddressVerdict::Spam => spam.push(rule.value.clone()),
                AddressVerdict::NotSpam => not_spam.push(rule.value.clone()),
            }
        }
    }
    if !not_spam.is_empty() {
        out.push(Symbol { name: "ADDRESS_NOT_SPAM".into(), score: ADDRESS_NOT_SPAM_SCORE, options: not_spam });
    } else if !spam.is_empty() {
        out.push(Symbol { name: "ADDRESS_SPAM".into(), score: ADDRESS_SPAM_SCORE, options: spam });
    }
}

/// AUTO_WHITELIST: a recipient of this message has written to its sender.
pub fn auto_whitelist_symbol(state: &consensus::AppliedState, message: &InboundMessage, out: &mut Vec<Symbol>) {
    let spam = &state.state.spam;
    if spam.correspondents.is_empty() || message.mail_from.is_empty() {
        return;
    }
    let known = message
        .recipients
        .iter()
        .any(|r| spam.is_correspondent(correspondent_key(&r.address, &message.mail_from), message.received_ms));
    if known {
        let score = -state.state.settings.score(key::SPAM_AUTO_WHITELIST_SCORE);
        out.push(Symbol { name: "AUTO_WHITELIST".into(), score, options: vec![message.mail_from.clone()] });
    }
}

pub fn keyword_symbols(state: &SpamState, parsed: &ParsedMessage, out: &mut Vec<Symbol>) {
    if state.keywords.is_empty() {
        return;
    }
    let rules: Vec<_> = state.keywords.values().collect();
    let Ok(matcher): Result<AhoCorasick, _> = AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::Standard)
        .build(rules.iter().map(|r| r.phrase.as_str()))
    else {
        return;
    };
    let mut text = parsed.subject.to_lowercase();
    for t in &parsed.text {
        text.push('\n');
        text.push_str(&t.to_lowercase());
    }
    for h in &parsed.html {
        text.push('\n');
        text.push_str(&super::tokens::strip_html(h).to_lowercase());
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut found = vec![false; rules.len()];
    for m in matcher.find_overlapping_iter(&text) {
        let bounded = |at: Option<char>| at.is_none_or(|c| !c.is_alphanumeric());
        if bounded(text[..m.start()].chars().next_back()) && bounded(text[m.end()..].chars().next()) {
            found[m.pattern().as_usize()] = true;
        }
    }
    let (mut score, mut phrases, mut blacklisted) = (0i64, Vec::new(), Vec::new());
    for (rule, hit) in rules.iter().zip(found) {
        if !hit {
            continue;
        }
        if rule.blacklisted {
            blacklisted.push(rule.phrase.clone());
        } else {
            score += rule.score_cents;
            phrases.push(rule.phrase.clone());
        }
    }
    if !blacklisted.is_empty() {
        out.push(Symbol { name: "KEYWORD_BLACKLIST".into(), score: KEYWORD_BLACKLIST_SCORE, options: blacklisted });
    }
    if !phrases.is_empty() {
        out.push(Symbol { name: "KEYWORDS".into(), score: score as f64 / 100.0, options: phrases });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::state::spam::{AddressRule, KeywordRule};

    fn parsed(subject: &str, body: &str) -> ParsedMessage {
        let raw = format!("From: a@example.org\r\nSubject: {subject}\r\n\r\n{body}\r\n");
        ParsedMessage::parse(raw.as_bytes())
    }

    #[test]
    fn keywords_match_whole_words_and_blacklisted_ones_refuse() {
        let mut s = SpamState::default();
        let kw =
            |p: &str, c, b| KeywordRule { phrase: p.into(), score_cents: c, blacklisted: b, comment: String::new() };
        assert!(s.add_keyword(kw("cheap pills", 300, false)).is_ok());
        assert!(s.add_keyword(kw("sex", 200, false)).is_ok());
        assert!(s.add_keyword(kw("invoice", -150, false)).is_ok());
        assert!(s.add_keyword(kw("wire transfer now", 0, true)).is_ok());
        let mut out = Vec::new();
        keyword_symbols(&s, &parsed("CHEAP   Pills", "Your invoice from Sussex"), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "KEYWORDS");
        assert!((out[0].score - 1.5).abs() < 1e-9, "{out:?}");
        let mut out = Vec::new();
        keyword_symbols(&s, &parsed("hello", "please do a wire\r\ntransfer now"), &mut out);
        assert_eq!(out[0].name, "KEYWORD_BLACKLIST");
    }

    #[test]
    fn not_spam_wins_over_spam() {
        let mut s = SpamState::default();
        let rule = |f, v: &str, verdict| AddressRule { field: f, value: v.into(), verdict, comment: String::new() };
        assert!(s.add_address(rule(AddressField::Sender, "@promo.example", AddressVerdict::Spam)).is_ok());
        let mut m = InboundMessage::from_file(b"From: a@promo.example\r\n\r\nx\r\n");
        m.mail_from = "a@promo.example".into();
        let p = ParsedMessage::parse(&m.body);
        let mut out = Vec::new();
        address_symbols(&s, &m, &p, &mut out);
        assert_eq!(out[0].name, "ADDRESS_SPAM");
        assert!(s.add_address(rule(AddressField::Sender, "a@promo.example", AddressVerdict::NotSpam)).is_ok());
        let mut out = Vec::new();
        address_symbols(&s, &m, &p, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].name, "ADDRESS_NOT_SPAM");
    }
}
