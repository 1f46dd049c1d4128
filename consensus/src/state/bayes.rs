//! The cluster's Bayes model: token counts learned from spam and ham.
//! Learn events arrive through Raft and every node applies them, so every
//! node scores alike. The maps are persistent (imbl): publishing the state
//! after an apply clones them in O(1), and a learn costs O(tokens of that
//! message), never O(model). The model is bounded: when it holds more than
//! `spam.bayes_tokens_max` tokens, the tokens learned longest ago are
//! dropped (SpamAssassin's `bayes_expiry_max_db_size`), a block of
//! `LEARNS_PER_BLOCK` learned messages at a time, so the cost stays
//! proportional to what is removed.

use imbl::{HashMap, HashSet, OrdMap};
use serde::{Deserialize, Serialize};

/// Learned messages per expiry block: tokens are dropped by the block they
/// were last learned in, oldest first.
pub const LEARNS_PER_BLOCK: u64 = 100;

/// What a message was learned as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpamClass {
    Spam,
    Ham,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TokenCounts {
    pub spam: u32,
    pub ham: u32,
    /// The expiry block of the last learn that saw this token.
    pub block: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BayesModel {
    pub tokens: HashMap<u64, TokenCounts>,
    /// Tokens by the block they were last learned in, for expiry.
    pub by_block: OrdMap<u32, HashSet<u64>>,
    /// Learns so far (corrections included): the clock of the blocks.
    pub learns: u64,
    pub spam_learned: u64,
    pub ham_learned: u64,
    /// Messages learned (digest → class), so a message is counted once and
    /// a correction (spam → ham) moves it instead of counting it twice.
    pub messages: HashMap<u64, SpamClass>,
    pub messages_by_block: OrdMap<u32, HashSet<u64>>,
    /// Tokens dropped by expiry so far.
    pub expired: u64,
}

/// What a learn changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LearnEffect {
    Learned,
    /// Already learned as this class.
    AlreadyLearned,
    /// Was learned as the other class; moved.
    Relearned,
}

impl BayesModel {
    /// Learns one message: its digest, class and distinct token hashes.
    pub fn learn(&mut self, digest: u64, class: SpamClass, tokens: &[u64], tokens_max: usize) -> LearnEffect {
        let block = (self.learns / LEARNS_PER_BLOCK) as u32;
        let effect = match self.messages.get(&digest).copied() {
            Some(c) if c == class => return LearnEffect::AlreadyLearned,
            Some(old) => {
                self.count(old, tokens, block, -1);
                LearnEffect::Relearned
            }
            None => LearnEffect::Learned,
        };
        self.count(class, tokens, block, 1);
        self.learns += 1;
        self.messages.insert(digest, class);
        self.messages_by_block.entry(block).or_default().insert(digest);
        self.expire(tokens_max);
        effect
    }

    fn count(&mut self, class: SpamClass, tokens: &[u64], block: u32, delta: i64) {
        let learned = match class {
            SpamClass::Spam => &mut self.spam_learned,
            SpamClass::Ham => &mut self.ham_learned,
        };
        *learned = learned.saturating_add_signed(delta);
        for t in tokens {
            let entry = self.tokens.entry(*t).or_default();
            let n = match class {
                SpamClass::Spam => &mut entry.spam,
                SpamClass::Ham => &mut entry.ham,
            };
            *n = if delta > 0 { n.saturating_add(1) } else { n.saturating_sub(1) };
            let old_block = entry.block;
            let empty = entry.spam == 0 && entry.ham == 0;
            if empty {
                self.tokens.remove(t);
                if let Some(bucket) = self.by_block.get_mut(&old_block) {
                    bucket.remove(t);
                }
                continue;
            }
            if delta > 0 && old_block != block {
                entry.block = block;
                if let Some(bucket) = self.by_block.get_mut(&old_block) {
                    bucket.remove(t);
                }
            }
            if delta > 0 {
                self.by_block.entry(block).or_default().insert(*t);
            }
        }
    }

    /// Drops the least recently learned tokens (whole blocks) past `tokens_max`;
    /// message digests older than the oldest kept token go with them.
    fn expire(&mut self, tokens_max: usize) {
        while self.tokens.len() > tokens_max {
            let Some((day, bucket)) = self.by_block.get_min().cloned() else { break };
            self.by_block.remove(&day);
            for t in bucket.iter() {
                if self.tokens.get(t).is_some_and(|c| c.block == day) {
                    self.tokens.remove(t);
                    self.expired += 1;
                }
            }
            while let Some((d, digests)) = self.messages_by_block.get_min().cloned() {
                if d > day {
                    break;
                }
                self.messages_by_block.remove(&d);
                for m in digests.iter() {
                    self.messages.remove(m);
                }
            }
        }
    }

    pub fn get(&self, token: u64) -> Option<TokenCounts> {
        self.tokens.get(&token).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learn_counts_once_moves_on_correction_and_expires_oldest_days() {
        let mut m = BayesModel::default();
        assert_eq!(m.learn(1, SpamClass::Spam, &[10, 11], 100), LearnEffect::Learned);
        assert_eq!(m.learn(1, SpamClass::Spam, &[10, 11], 100), LearnEffect::AlreadyLearned);
        assert_eq!(m.get(10).map(|c| (c.spam, c.ham)), Some((1, 0)));
        assert_eq!(m.learn(1, SpamClass::Ham, &[10, 11], 100), LearnEffect::Relearned);
        assert_eq!(m.get(10).map(|c| (c.spam, c.ham)), Some((0, 1)));
        assert_eq!((m.spam_learned, m.ham_learned), (0, 1));
        // Fill block 0, then learn in blocks 1 and 2; a cap of 3 drops block 0's tokens.
        for i in 0..LEARNS_PER_BLOCK {
            m.learn(1000 + i, SpamClass::Ham, &[500], 100);
        }
        m.learn(2, SpamClass::Spam, &[20, 21], 100);
        for i in 0..LEARNS_PER_BLOCK {
            m.learn(2000 + i, SpamClass::Ham, &[21], 100);
        }
        m.learn(3, SpamClass::Spam, &[30, 10], 3);
        assert!(m.get(11).is_none() && m.get(500).is_none(), "block 0 expired");
        assert!(m.get(10).is_some(), "learned again in block 2, kept");
        assert!(m.tokens.len() <= 3, "{:?}", m.tokens);
        assert!(!m.messages.contains_key(&1), "its digest went with its block");
    }

    #[test]
    fn a_clone_shares_structure_and_is_independent() {
        let mut m = BayesModel::default();
        let tokens: Vec<u64> = (0..10_000).collect();
        m.learn(1, SpamClass::Spam, &tokens, 1_000_000);
        let published = m.clone();
        m.learn(2, SpamClass::Ham, &[5], 1_000_000);
        assert_eq!(published.get(5).map(|c| c.ham), Some(0));
        assert_eq!(m.get(5).map(|c| c.ham), Some(1));
    }
}
