//! Replicated spam state: the cluster's Bayes model, and the operator's
//! address filter (MailPlus: spam / not spam by sender or recipient) and
//! keyword filter (MailPlus, Kerio: scored words and phrases; a
//! blacklisted one refuses the message).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use super::bayes::{BayesModel, LearnEffect, SpamClass, TokenCounts};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SpamState {
    pub bayes: BayesModel,
    #[serde(default)]
    pub addresses: BTreeMap<u64, AddressRule>,
    #[serde(default)]
    pub keywords: BTreeMap<u64, KeywordRule>,
    /// The id the next address or keyword rule gets.
    #[serde(default)]
    pub next_id: u64,
    /// The auto-whitelist: (local user, external address) pairs, hashed,
    /// with when each expires; a user's mail to an address puts it here.
    #[serde(default)]
    pub correspondents: imbl::HashMap<u64, u64>,
    /// The same pairs by expiry, so expiring costs what it removes.
    #[serde(default)]
    pub correspondents_by_expiry: imbl::OrdSet<(u64, u64)>,
    /// Users' reports waiting for review (MailPlus "Reported Spam").
    #[serde(default)]
    pub reports: BTreeMap<u64, SpamReport>,
    /// The last day (since the epoch, UTC) pending reports were learned by the schedule.
    #[serde(default)]
    pub reports_learned_day: u64,
    /// The operator's SpamAssassin rule files (`spam rules import`), by file
    /// name, as Latin-1 text (one char per byte of the file).
    #[serde(default)]
    pub rule_files: BTreeMap<String, RuleFile>,
    /// The rule pack from `spam.rules_url`.
    #[serde(default)]
    pub rule_pack: Option<RulePack>,
    /// Bumped by every change to the rules: the key of each node's compiled rule set.
    #[serde(default)]
    pub rules_version: u64,
    /// The last day (since the epoch, UTC) a scheduled rule update was proposed.
    #[serde(default)]
    pub rules_update_day: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleFile {
    pub text: String,
    pub imported_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RulePack {
    /// The pack's `# version:` line, else a digest of its bytes.
    pub version: String,
    pub url: String,
    pub text: String,
    pub installed_ms: u64,
}

/// A user's report that a message is spam (or is not): what learning it
/// would teach, and enough to show it in the review list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpamReport {
    pub user: String,
    pub class: SpamClass,
    pub digest: u64,
    pub tokens: Vec<u64>,
    pub from: String,
    pub subject: String,
    pub reported_ms: u64,
}

/// Which envelope address an address rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressField {
    Sender,
    Recipient,
}

/// Whether matching mail is spam or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AddressVerdict {
    Spam,
    #[serde(rename = "not-spam")]
    NotSpam,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRule {
    pub field: AddressField,
    /// An address (`user@example.org`) or a whole domain (`@example.org`), lower case.
    pub value: String,
    pub verdict: AddressVerdict,
    #[serde(default)]
    pub comment: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeywordRule {
    /// A word or phrase, matched case-insensitively on word boundaries in the
    /// subject and the body text.
    pub phrase: String,
    /// What one match adds (negative lowers the score), in hundredths so the
    /// state stays exactly comparable.
    pub score_cents: i64,
    /// Kerio's "blacklisted" keyword: the message is refused outright.
    #[serde(default)]
    pub blacklisted: bool,
    #[serde(default)]
    pub comment: String,
}

impl Eq for KeywordRule {}

/// Why a filter rule was refused: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpamRuleError {
    pub field: &'static str,
    pub reason: String,
}

/// Bytes the operator's rule files and the pack may hold together: a
/// bound on the replicated state (Debian's whole rule set is under 2 MB).
pub const RULE_BYTES_MAX: usize = 16 << 20;
/// Length of a rule file's name.
const RULE_FILE_NAME_MAX: usize = 200;

impl SpamState {
    pub fn import_rule_files(
        &mut self,
        files: &[(String, String)],
        replace: bool,
        at_ms: u64,
    ) -> Result<(), SpamRuleError> {
        for (name, _) in files {
            let ok = !name.is_empty()
                && name.len() <= RULE_FILE_NAME_MAX
                && name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return Err(SpamRuleError {
                    field: "name",
                    reason: format!("{name:?}: letters, digits, '.', '_' and '-' only, at most 200"),
                });
            }
        }
        let kept: usize = if replace {
            0
        } else {
            self.rule_files.iter().filter(|(n, _)| !files.iter().any(|(f, _)| f == *n)).map(|(_, f)| f.text.len()).sum()
        };
        let pack = self.rule_pack.as_ref().map_or(0, |p| p.text.len());
        let total = kept + pack + files.iter().map(|(_, t)| t.len()).sum::<usize>();
        if total > RULE_BYTES_MAX {
            return Err(SpamRuleError {
                field: "files",
                reason: format!("{total} bytes of rules; at most {RULE_BYTES_MAX}"),
            });
        }
        if replace {
            self.rule_files.clear();
        }
        for (name, text) in files {
            self.rule_files.insert(name.clone(), RuleFile { text: text.clone(), imported_ms: at_ms });
        }
        self.rules_version += 1;
        Ok(())
    }

    pub fn install_rule_pack(&mut self, pack: &RulePack, at_ms: u64) -> Result<(), SpamRuleError> {
        if self.rule_pack.as_ref().is_some_and(|p| p.version == pack.version && p.text == pack.text) {
            return Ok(());
        }
        let files: usize = self.rule_files.values().map(|f| f.text.len()).sum();
        if files + pack.text.len() > RULE_BYTES_MAX || pack.version.len() > 200 || pack.url.len() > 2000 {
            return Err(SpamRuleError {
                field: "pack",
                reason: format!("too large (at most {RULE_BYTES_MAX} bytes of rules)"),
            });
        }
        self.rule_pack = Some(RulePack { installed_ms: at_ms, ..pack.clone() });
        self.rules_version += 1;
        Ok(())
    }
}

impl AddressRule {
    pub fn normalised(mut self) -> Result<Self, SpamRuleError> {
        let value = self.value.trim().to_lowercase();
        let (local, domain) = value.rsplit_once('@').unwrap_or(("", ""));
        let domain_ok = !domain.is_empty() && domain.contains('.') && !domain.contains(char::is_whitespace);
        if !domain_ok || local.contains(char::is_whitespace) || value.len() > 254 {
            return Err(SpamRuleError {
                field: "value",
                reason: format!("{:?}: an address (user@example.org) or a domain (@example.org)", self.value),
            });
        }
        if self.comment.len() > 200 {
            return Err(SpamRuleError { field: "comment", reason: "at most 200 bytes".into() });
        }
        self.value = value;
        Ok(self)
    }

    pub fn matches(&self, address: &str) -> bool {
        let address = address.to_lowercase();
        if self.value.starts_with('@') {
            address.ends_with(&self.value)
        } else {
            address == self.value
        }
    }
}

impl KeywordRule {
    pub fn normalised(mut self) -> Result<Self, SpamRuleError> {
        let phrase = self.phrase.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        if phrase.is_empty() || phrase.len() > 200 || phrase.chars().any(char::is_control) {
            return Err(SpamRuleError { field: "phrase", reason: "a word or phrase of 1 to 200 bytes".into() });
        }
        if !(-100_000..=100_000).contains(&self.score_cents) {
            return Err(SpamRuleError { field: "score", reason: "between -1000 and 1000".into() });
        }
        if self.comment.len() > 200 {
            return Err(SpamRuleError { field: "comment", reason: "at most 200 bytes".into() });
        }
        self.phrase = phrase;
        Ok(self)
    }
}

/// Most pairs one command may record (a message's recipients are fewer).
pub const CORRESPONDENTS_PER_COMMAND_MAX: usize = 10_000;

/// The key of a correspondence: a local user and an external address, both
/// lower case (xxh3 of `user NUL external`).
pub fn correspondent_key(local: &str, external: &str) -> u64 {
    let text = format!("{}\0{}", local.to_lowercase(), external.to_lowercase());
    xxhash_rust::xxh3::xxh3_64(text.as_bytes())
}

impl SpamState {
    /// Files a report; refused when the user already has `per_user_max`
    /// pending (one user cannot flood the review list) or reported this
    /// message the same way already.
    pub fn add_report(&mut self, mut report: SpamReport, per_user_max: usize) -> Result<u64, SpamRuleError> {
        let user = report.user.to_lowercase();
        // The same user reporting the same message the other way changed their
        // mind (moved it out of Junk again): the pending report flips.
        if let Some((id, r)) = self.reports.iter_mut().find(|(_, r)| r.user == user && r.digest == report.digest) {
            if r.class == report.class {
                return Err(SpamRuleError { field: "message", reason: "already reported by this user".into() });
            }
            r.class = report.class;
            r.reported_ms = report.reported_ms;
            return Ok(*id);
        }
        let pending = self.reports.values().filter(|r| r.user == user).count();
        if pending >= per_user_max {
            return Err(SpamRuleError {
                field: "user",
                reason: format!("{user} has {pending} reports waiting for review (spam.reports_per_user_max)"),
            });
        }
        report.user = user;
        report.from.truncate(report.from.floor_char_boundary(300));
        report.subject.truncate(report.subject.floor_char_boundary(300));
        self.next_id += 1;
        self.reports.insert(self.next_id, report);
        Ok(self.next_id)
    }

    /// Adds address and keyword rules, all or nothing: a bad one refuses the
    /// whole import, naming it (`addresses[2].value`); rules already present
    /// are skipped and counted. `replace` removes every other rule first.
    pub fn import_filters(
        &mut self,
        addresses: &[AddressRule],
        keywords: &[KeywordRule],
        replace: bool,
    ) -> Result<(u64, u64), SpamRuleError> {
        let mut next = self.clone();
        if replace {
            next.addresses.clear();
            next.keywords.clear();
        }
        let (mut added, mut skipped) = (0, 0);
        for (i, rule) in addresses.iter().enumerate() {
            match next.add_address(rule.clone()) {
                Ok(_) => added += 1,
                Err(Ok(_)) => skipped += 1,
                Err(Err(e)) => {
                    return Err(SpamRuleError {
                        field: "addresses",
                        reason: format!("[{i}].{}: {}", e.field, e.reason),
                    })
                }
            }
        }
        for (i, rule) in keywords.iter().enumerate() {
            match next.add_keyword(rule.clone()) {
                Ok(_) => added += 1,
                Err(Ok(_)) => skipped += 1,
                Err(Err(e)) => {
                    return Err(SpamRuleError { field: "keywords", reason: format!("[{i}].{}: {}", e.field, e.reason) })
                }
            }
        }
        *self = next;
        Ok((added, skipped))
    }

    /// Records (or extends) pairs until `expires_ms`.
    pub fn record_correspondents(&mut self, pairs: &[u64], expires_ms: u64) {
        for key in pairs {
            if let Some(old) = self.correspondents.insert(*key, expires_ms) {
                self.correspondents_by_expiry.remove(&(old, *key));
            }
            self.correspondents_by_expiry.insert((expires_ms, *key));
        }
    }

    /// Whether the pair is known and not expired at `now_ms`.
    pub fn is_correspondent(&self, key: u64, now_ms: u64) -> bool {
        self.correspondents.get(&key).is_some_and(|expires| *expires > now_ms)
    }

    /// Drops the pairs expired at `now_ms`; returns how many.
    pub fn expire_correspondents(&mut self, now_ms: u64) -> usize {
        let mut removed = 0;
        while let Some((expires, key)) = self.correspondents_by_expiry.get_min().copied() {
            if expires > now_ms {
                break;
            }
            self.correspondents_by_expiry.remove(&(expires, key));
            self.correspondents.remove(&key);
            removed += 1;
        }
        removed
    }

    /// Adds an address rule; an identical one is refused with its id.
    pub fn add_address(&mut self, rule: AddressRule) -> Result<u64, Result<u64, SpamRuleError>> {
        let rule = rule.normalised().map_err(Err)?;
        if let Some((id, _)) = self.addresses.iter().find(|(_, r)| r.field == rule.field && r.value == rule.value) {
            return Err(Ok(*id));
        }
        self.next_id += 1;
        self.addresses.insert(self.next_id, rule);
        Ok(self.next_id)
    }

    pub fn add_keyword(&mut self, rule: KeywordRule) -> Result<u64, Result<u64, SpamRuleError>> {
        let rule = rule.normalised().map_err(Err)?;
        if let Some((id, _)) = self.keywords.iter().find(|(_, r)| r.phrase == rule.phrase) {
            return Err(Ok(*id));
        }
        self.next_id += 1;
        self.keywords.insert(self.next_id, rule);
        Ok(self.next_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correspondents_are_extended_and_expire_in_order() {
        let mut s = SpamState::default();
        let (a, b) =
            (correspondent_key("U@example.com", "x@ext.example"), correspondent_key("u@example.com", "y@ext.example"));
        assert_eq!(a, correspondent_key("u@example.com", "X@EXT.example"));
        s.record_correspondents(&[a, b], 100);
        s.record_correspondents(&[a], 300);
        assert!(s.is_correspondent(a, 200) && !s.is_correspondent(b, 200));
        assert_eq!(s.expire_correspondents(150), 1);
        assert_eq!(s.correspondents.len(), 1);
        assert_eq!(s.expire_correspondents(300), 1);
        assert!(s.correspondents.is_empty() && s.correspondents_by_expiry.is_empty());
    }

    #[test]
    fn address_rules_normalise_match_and_refuse_duplicates() {
        let mut s = SpamState::default();
        let rule = |v: &str| AddressRule {
            field: AddressField::Sender,
            value: v.into(),
            verdict: AddressVerdict::Spam,
            comment: String::new(),
        };
        assert_eq!(s.add_address(rule(" @Promo.Example ")), Ok(1));
        assert_eq!(s.add_address(rule("@promo.example")), Err(Ok(1)));
        assert!(s.add_address(rule("not an address")).is_err());
        assert!(s.addresses[&1].matches("Deals@PROMO.example"));
        assert!(!s.addresses[&1].matches("a@notpromo.example.org"));
        let kw = KeywordRule {
            phrase: "  Cheap   PILLS ".into(),
            score_cents: 250,
            blacklisted: false,
            comment: String::new(),
        };
        assert_eq!(s.add_keyword(kw), Ok(2));
        assert_eq!(s.keywords[&2].phrase, "cheap pills");
    }
}
