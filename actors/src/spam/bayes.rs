//! Bayes classification over the cluster's model: Robinson's per-token
//! probabilities combined with Fisher's chi-square method (the combining
//! SpamAssassin and rspamd use). Pure: the model and the tokens in, the
//! probability that the message is spam out.

use consensus::state::bayes::BayesModel;

/// Robinson's strength of the prior and its value for unknown tokens.
const S: f64 = 1.0;
const X: f64 = 0.5;
/// Tokens nearer than this to 0.5 carry no evidence and are left out.
const MIN_STRENGTH: f64 = 0.1;
/// The most telling tokens used per message.
const TOKENS_USED: usize = 150;

/// Spam probability in 0..=1, or `None` while the model has learned fewer
/// than `min_learns` spam or ham messages or the message has no known token.
pub fn classify(model: &BayesModel, tokens: &[u64], min_learns: u64) -> Option<f64> {
    let (ns, nh) = (model.spam_learned, model.ham_learned);
    if ns < min_learns || nh < min_learns {
        return None;
    }
    let (ns, nh) = (ns as f64, nh as f64);
    let mut probs: Vec<f64> = tokens
        .iter()
        .filter_map(|t| model.get(*t))
        .filter_map(|c| {
            let (s, h) = (f64::from(c.spam), f64::from(c.ham));
            let n = s + h;
            if n == 0.0 {
                return None;
            }
            let ps = (s / ns).min(1.0);
            let ph = (h / nh).min(1.0);
            let p = ps / (ps + ph);
            let f = (S * X + n * p) / (S + n);
            ((f - 0.5).abs() >= MIN_STRENGTH).then_some(f.clamp(0.0001, 0.9999))
        })
        .collect();
    if probs.is_empty() {
        return None;
    }
    probs.sort_by(|a, b| (b - 0.5).abs().total_cmp(&(a - 0.5).abs()));
    probs.truncate(TOKENS_USED);
    let n = probs.len();
    let ln_ham: f64 = probs.iter().map(|f| (1.0 - f).ln()).sum();
    let ln_spam: f64 = probs.iter().map(|f| f.ln()).sum();
    let h = chi2q(-2.0 * ln_spam, 2 * n);
    let s = chi2q(-2.0 * ln_ham, 2 * n);
    Some((1.0 + h - s) / 2.0)
}

/// The chi-square survival function for an even number of degrees of freedom.
fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..v / 2 {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::state::bayes::SpamClass;

    #[test]
    fn learned_words_decide_and_unknown_ones_abstain() {
        let mut m = BayesModel::default();
        for i in 0..20u64 {
            m.learn(i, SpamClass::Spam, &[1, 2, 3, 100 + i], 1_000_000);
            m.learn(1000 + i, SpamClass::Ham, &[4, 5, 6, 200 + i], 1_000_000);
        }
        assert_eq!(classify(&m, &[1, 2], 50), None, "too few learns");
        let spam = classify(&m, &[1, 2, 3], 10).unwrap();
        let ham = classify(&m, &[4, 5, 6], 10).unwrap();
        assert!(spam > 0.99 && ham < 0.01, "{spam} {ham}");
        let mixed = classify(&m, &[1, 4], 10).unwrap();
        assert!((0.3..0.7).contains(&mixed), "{mixed}");
        assert_eq!(classify(&m, &[999], 10), None);
    }

    #[test]
    fn chi2q_matches_known_values() {
        assert!((chi2q(0.0, 2) - 1.0).abs() < 1e-12);
        assert!((chi2q(2.0, 2) - (-1.0f64).exp()).abs() < 1e-12);
        assert!(chi2q(1000.0, 4) < 1e-100);
    }
}
