//! The rule pack (MailPlus "automatically update anti-spam rules"): one
//! SpamAssassin `.cf` file at `spam.rules_url`, fetched by one node,
//! validated whole — a line that does not parse or a pattern that neither
//! engine compiles refuses the pack, and the installed one stays — then
//! replicated, so every node compiles the same rules.

use consensus::state::settings::key;
use consensus::state::spam::{RuleFile, RulePack, SpamState, RULE_BYTES_MAX};
use consensus::{Command, Outcome, Proposer, ReadHandle};
use std::collections::BTreeMap;
use std::io::Read;
use std::time::Duration;
use xxhash_rust::xxh3::xxh3_64;

use super::RuleBook;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("spam.rules_url is empty: no rule pack to fetch")]
    NoUrl,
    #[error("fetching {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("the rule pack is refused, the installed one stays: {0}")]
    Broken(String),
    #[error("installing the rule pack: {0}")]
    Install(String),
}

/// What an update did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PackInstalled {
    pub version: String,
    pub rules: usize,
    /// Rules the engine cannot run (eval tests, MIME headers), by name.
    pub not_compiled: Vec<String>,
    /// False when the same version was installed already.
    pub changed: bool,
}

/// The pack's bytes: over http(s) or from a local file, at most `RULE_BYTES_MAX`.
pub fn fetch(url: &str) -> Result<Vec<u8>, PackError> {
    let fail = |reason: String| PackError::Fetch { url: url.to_string(), reason };
    let mut bytes = Vec::new();
    let limit = RULE_BYTES_MAX as u64 + 1;
    if let Some(path) = url.strip_prefix("file://") {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .map_err(|e| fail(e.to_string()))?;
    } else {
        let agent = ureq::AgentBuilder::new().timeout(FETCH_TIMEOUT).build();
        let response = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
        response.into_reader().take(limit).read_to_end(&mut bytes).map_err(|e| fail(e.to_string()))?;
    }
    if bytes.len() > RULE_BYTES_MAX {
        return Err(fail(format!("larger than {RULE_BYTES_MAX} bytes")));
    }
    Ok(bytes)
}

/// Checks a pack whole (it compiles with the defaults and the operator's
/// files, as every node will compile it) and names it: its `# version:`
/// line, else a digest of its bytes.
pub fn validate(
    bytes: &[u8],
    url: &str,
    operator_files: &BTreeMap<String, RuleFile>,
) -> Result<(RulePack, RuleBook), PackError> {
    let text = latin1(bytes);
    if !text.lines().any(|l| l.split_whitespace().next().is_some_and(|d| !d.starts_with('#'))) {
        return Err(PackError::Broken("no rules in it".into()));
    }
    let version = text
        .lines()
        .take(20)
        .find_map(|l| {
            let l = l.trim_start_matches('#').trim();
            l.strip_prefix("version:").or_else(|| l.strip_prefix("Version:")).map(|v| v.trim().to_string())
        })
        .filter(|v| !v.is_empty() && v.len() <= 100)
        .unwrap_or_else(|| format!("xxh3:{:016x}", xxh3_64(bytes)));
    let mut after = SpamState {
        rule_pack: Some(RulePack { version, url: url.to_string(), text, installed_ms: 0 }),
        rule_files: operator_files.clone(),
        ..Default::default()
    };
    let book = super::RuleBookCache::compile_state(&after);
    if let Some(e) = book.errors.iter().find(|e| e.source == PACK_SOURCE) {
        return Err(PackError::Broken(format!("line {}: {}", e.line, e.message)));
    }
    if let Some(u) = book.uncompiled.iter().find(|u| u.broken && u.source == PACK_SOURCE) {
        return Err(PackError::Broken(format!("rule {} (line {}): {}", u.name, u.line, u.reason)));
    }
    let pack = after.rule_pack.take().ok_or_else(|| PackError::Install("no pack".into()))?;
    Ok((pack, book))
}

/// The name the pack's rules carry as their source.
pub const PACK_SOURCE: &str = "rule-pack.cf";

/// A rule file's bytes as the text rules travel in: one char per byte.
pub fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|b| char::from(*b)).collect()
}

/// Back to the file's bytes (`spam rules export`).
pub fn latin1_bytes(text: &str) -> Vec<u8> {
    text.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect()
}

/// Fetches `spam.rules_url`, validates and installs it through Raft.
pub async fn update(read: &ReadHandle, proposer: &Proposer) -> Result<PackInstalled, PackError> {
    let applied = read.load();
    let url = applied.state.settings.text(key::SPAM_RULES_URL);
    if url.is_empty() {
        return Err(PackError::NoUrl);
    }
    let operator = applied.state.spam.rule_files.clone();
    let (pack, book) = tokio::task::spawn_blocking(move || {
        let bytes = fetch(&url)?;
        validate(&bytes, &url, &operator)
    })
    .await
    .map_err(|e| PackError::Install(e.to_string()))??;
    let changed =
        applied.state.spam.rule_pack.as_ref().is_none_or(|p| p.version != pack.version || p.text != pack.text);
    let not_compiled = book.uncompiled.iter().filter(|u| u.source == PACK_SOURCE).map(|u| u.name.clone()).collect();
    let rules = book.summaries().iter().filter(|r| r.source == PACK_SOURCE).count();
    let version = pack.version.clone();
    match proposer.propose(Command::InstallSpamRulePack { pack }).await {
        Ok(Outcome::Done) => Ok(PackInstalled { version, rules, not_compiled, changed }),
        Ok(other) => Err(PackError::Install(format!("unexpected outcome {other:?}"))),
        Err(e) => Err(PackError::Install(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pack_is_checked_whole_and_named_by_its_version_line() {
        let good = b"# version: 2026120201\nbody PACK_ONE /one/\nscore PACK_ONE 2\nbody PACK_EVAL eval:x()\n";
        let (pack, book) = validate(good, "file:///p.cf", &BTreeMap::new()).unwrap();
        assert_eq!(pack.version, "2026120201");
        assert_eq!(book.uncompiled.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(), ["PACK_EVAL"]);
        let unnamed = validate(b"body PACK_TWO /two/\n", "u", &BTreeMap::new()).unwrap().0;
        assert!(unnamed.version.starts_with("xxh3:"));
        for broken in [
            &b"body PACK_BAD /unclosed\n"[..],
            b"body PACK_BAD /a{3,1}(?<=x+)[/\n",
            b"# only comments\n",
            b"meta PACK_M (A &&\n",
        ] {
            assert!(
                matches!(validate(broken, "u", &BTreeMap::new()), Err(PackError::Broken(_))),
                "{}",
                String::from_utf8_lossy(broken)
            );
        }
    }

    #[test]
    fn latin1_round_trips_every_byte() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(latin1_bytes(&latin1(&bytes)), bytes);
    }
}
