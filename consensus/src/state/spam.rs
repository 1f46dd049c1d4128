//! Replicated spam state: the cluster's Bayes model (more to come: keyword
//! and address filters, imported rules, reports).

use serde::{Deserialize, Serialize};

pub use super::bayes::{BayesModel, LearnEffect, SpamClass, TokenCounts};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SpamState {
    pub bayes: BayesModel,
}
