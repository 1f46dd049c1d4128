//! Ten-fold cross-validation of the spam stage on a labelled corpus
//! (`DIR/spam/**` and `DIR/ham/**`): for each fold, a fresh Bayes model
//! learns the other nine through the same code the cluster applies, then
//! `spam::check` scores the fold with the default settings. Prints spam
//! recall and ham false positives at the default threshold, the recall at
//! zero false positives, a ROC table, and the check throughput.
//! `bench/spam-eval` runs it beside SpamAssassin and rspamd.
//!
//!   cargo run --release -p gatehouse-actors --example spam_eval -- DIR [SCORES_OUT] [FOLDS_OUT]
//!
//! RULES="FILE.cf ..." imports SpamAssassin rule files (e.g. Debian's
//! /usr/share/spamassassin/*.cf) as `spam rules import` would; LAYOUT=1
//! prints how their patterns are run, WHY=N the symbols of the N
//! highest-scoring ham messages.
//!
//! SCORES_OUT gets `label<TAB>score<TAB>file` per message; FOLDS_OUT
//! `fold<TAB>label<TAB>file`, so other filters can be run on the same folds.

use consensus::state::settings::key;
use consensus::state::{ClusterState, SpamClass};
use consensus::AppliedState;
use gatehouse_actors::content::mime::ParsedMessage;
use gatehouse_actors::spam;
use std::io::Write;
use std::time::Instant;
use xxhash_rust::xxh3::xxh3_64;

#[path = "shared/corpus.rs"]
mod corpus;

struct Sample {
    name: String,
    spam: bool,
    fold: u64,
    message: gatehouse_actors::message::InboundMessage,
    tokens: Vec<u64>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).ok_or("usage: spam_eval DIR [SCORES_OUT]")?);
    let mut samples = Vec::new();
    for (sub, spam) in [("spam", true), ("ham", false)] {
        let mut files = corpus::walk(&dir.join(sub))?;
        files.sort();
        for f in files {
            let name = f.strip_prefix(&dir).unwrap_or(&f).display().to_string();
            let message = corpus::message(std::fs::read(&f)?);
            let parsed = ParsedMessage::parse(&message.body);
            let tokens = spam::tokens::tokenize(&message.body, &parsed);
            let fold = xxh3_64(name.as_bytes()) % 10;
            samples.push(Sample { name, spam, fold, message, tokens });
        }
    }
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by_key(|i| xxh3_64(samples[*i].name.as_bytes()).rotate_left(17));
    let defaults = ClusterState::default();
    let tokens_max = std::env::var("TOKENS_MAX")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(defaults.settings.uint(key::SPAM_BAYES_TOKENS_MAX) as usize);
    let tag = defaults.settings.score(key::SPAM_TAG_SCORE);
    let mut rule_files = std::collections::BTreeMap::new();
    for path in std::env::var("RULES").unwrap_or_default().split_whitespace() {
        let text = spam::rules::pack::latin1(&std::fs::read(path)?);
        let name = std::path::Path::new(path).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        rule_files.insert(name, consensus::state::spam::RuleFile { text, imported_ms: 0 });
    }
    if !rule_files.is_empty() {
        let started = Instant::now();
        let book = spam::rules::RuleBook::compile(rule_files.iter().map(|(n, f)| (n.as_str(), f.text.as_str())));
        println!(
            "gatehouse: {} rule files: {} rules compiled ({} by PCRE2), {} not compiled, {} broken lines, in {:.2} s",
            rule_files.len(),
            book.len(),
            book.summaries().iter().filter(|r| r.engine == "pcre2").count(),
            book.uncompiled.len(),
            book.errors.len(),
            started.elapsed().as_secs_f64()
        );
        if std::env::var("LAYOUT").is_ok() {
            for (t, sets, filtered, fallback) in book.layout() {
                println!("  input {t}: {sets} in sets, {filtered} prefiltered, {fallback} PCRE2 always");
            }
        }
        for e in book.errors.iter().take(10) {
            println!("  broken: {}:{}: {}", e.source, e.line, e.message);
        }
        let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
        for u in &book.uncompiled {
            let class: String = u.reason.split([' ', ':', '(']).take(2).collect::<Vec<_>>().join(" ");
            *reasons.entry(class).or_default() += 1;
        }
        let mut reasons: Vec<_> = reasons.into_iter().collect();
        reasons.sort_by_key(|r| std::cmp::Reverse(r.1));
        for (r, n) in reasons.iter().take(12) {
            println!("  not compiled: {n} × {r}");
        }
    }
    let mut why: Vec<(f64, String)> = Vec::new();
    let mut results: Vec<(f64, bool, &str)> = Vec::new();
    let mut check_secs = 0.0;
    for fold in 0..10 {
        let mut state = ClusterState::default();
        state.spam.rule_files = rule_files.clone();
        state.spam.rules_version = u64::from(!rule_files.is_empty());
        // Learned in an order that mixes spam and ham, as mail arrives.
        for (i, s) in order.iter().map(|i| (*i, &samples[*i])).filter(|(_, s)| s.fold != fold) {
            let class = if s.spam { SpamClass::Spam } else { SpamClass::Ham };
            state.spam.bayes.learn(i as u64, class, &s.tokens, tokens_max);
        }
        if fold == 0 {
            let b = &state.spam.bayes;
            println!("gatehouse: model after 9 folds: {} tokens, {} expired", b.tokens.len(), b.expired);
        }
        let applied = AppliedState { applied_index: 1, state, rules: Default::default() };
        // Rules compile once per change, before mail needs them: not part of the check time.
        spam::rules::cache().get(&applied.state.spam);
        let started = Instant::now();
        for s in samples.iter().filter(|s| s.fold == fold) {
            let parsed = ParsedMessage::parse(&s.message.body);
            let verdict = spam::check(&applied, &s.message, &parsed, &[], Vec::new());
            results.push((verdict.score, s.spam, &s.name));
            if std::env::var("HITS").is_ok() {
                for x in verdict.symbols.iter().filter(|x| !x.name.starts_with("BAYES_")) {
                    println!("hit\t{}\t{}", if s.spam { "spam" } else { "ham" }, x.name);
                }
            }
            if std::env::var("PROBS").is_ok() {
                let others: f64 =
                    verdict.symbols.iter().filter(|x| !x.name.starts_with("BAYES_")).map(|x| x.score).sum();
                println!("prob\t{}\t{}\t{others}", if s.spam { "spam" } else { "ham" }, verdict.bayes.unwrap_or(0.5));
            }
            if std::env::var("MISSED").is_ok() && s.spam && verdict.score < tag {
                let names: Vec<String> = verdict.symbols.iter().map(|x| format!("{}={}", x.name, x.score)).collect();
                println!("  missed spam {:.2} p={:?}: {} {}", verdict.score, verdict.bayes, s.name, names.join(" "));
            }
            if !s.spam && verdict.score >= tag - 2.0 {
                let names: Vec<String> = verdict.symbols.iter().map(|x| format!("{}={}", x.name, x.score)).collect();
                why.push((verdict.score, format!("{} {}", s.name, names.join(" "))));
            }
        }
        check_secs += started.elapsed().as_secs_f64();
    }
    if let Some(out) = args.get(2) {
        let mut f = std::fs::File::create(out)?;
        for (score, spam, name) in &results {
            writeln!(f, "{}\t{score}\t{name}", if *spam { "spam" } else { "ham" })?;
        }
    }
    if let Some(out) = args.get(3) {
        let mut f = std::fs::File::create(out)?;
        for s in &samples {
            writeln!(f, "{}\t{}\t{}", s.fold, if s.spam { "spam" } else { "ham" }, s.name)?;
        }
    }
    report("gatehouse", &results, tag);
    why.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (score, line) in why.iter().take(std::env::var("WHY").ok().and_then(|v| v.parse().ok()).unwrap_or(0)) {
        println!("  high ham {score:.2}: {line}");
    }
    println!(
        "gatehouse: checked {} messages in {:.2} s: {:.0} msg/s on one core",
        results.len(),
        check_secs,
        results.len() as f64 / check_secs
    );
    Ok(())
}

fn report(name: &str, results: &[(f64, bool, &str)], threshold: f64) {
    let spam: Vec<f64> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
    let ham: Vec<f64> = results.iter().filter(|r| !r.1).map(|r| r.0).collect();
    let caught = |t: f64| spam.iter().filter(|s| **s >= t).count();
    let fps = |t: f64| ham.iter().filter(|s| **s >= t).count();
    let pct = |n: usize, of: usize| 100.0 * n as f64 / of.max(1) as f64;
    println!(
        "{name}: {} spam, {} ham; at the default threshold {threshold}: spam recall {:.2}% ({} caught), ham false positives {} ({:.3}%)",
        spam.len(),
        ham.len(),
        pct(caught(threshold), spam.len()),
        caught(threshold),
        fps(threshold),
        pct(fps(threshold), ham.len())
    );
    let max_ham = ham.iter().cloned().fold(f64::MIN, f64::max);
    let zero_fp = spam.iter().filter(|s| **s > max_ham).count();
    println!("{name}: recall at zero false positives (threshold above {max_ham:.2}): {:.2}%", pct(zero_fp, spam.len()));
    println!("{name}: ROC  threshold  recall%  false-positive%");
    for t in [-2.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0] {
        println!("{name}: ROC  {t:>9.1}  {:>7.2}  {:>15.3}", pct(caught(t), spam.len()), pct(fps(t), ham.len()));
    }
}
