//! Antivirus definition updates, cluster-wide. An update is a replicated
//! request (a generation number): every node runs its own update command and
//! reloads its own clamd when it sees a generation it has not done, then
//! reports the engine and signature version it has, so any node can show
//! every node's. The daily schedule may be proposed by every node; the state
//! machine takes the first proposal of each day only, so one update runs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a node last reported about its clamd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AntivirusNodeStatus {
    /// clamd's `VERSION` answer (engine/signatures/date), empty when unreachable.
    pub version: String,
    /// Why clamd could not be asked, if it could not.
    pub error: String,
    /// The last update generation this node carried out.
    pub generation_done: u64,
    /// When that update finished (ms), and how it went.
    pub updated_ms: u64,
    pub update_result: String,
    /// When this report was made (ms).
    pub reported_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AntivirusState {
    /// Raised by each update request; nodes behind it update.
    pub generation: u64,
    pub requested_ms: u64,
    /// The last day (days since the epoch, UTC) a scheduled update was taken.
    pub scheduled_day: u64,
    pub nodes: BTreeMap<u64, AntivirusNodeStatus>,
}

impl AntivirusState {
    /// An operator's request: always a new generation.
    pub fn request(&mut self, at_ms: u64) -> u64 {
        self.generation += 1;
        self.requested_ms = at_ms;
        self.generation
    }

    /// The schedule's request for `day`: a new generation only for the first of that day.
    pub fn request_scheduled(&mut self, day: u64, at_ms: u64) -> Option<u64> {
        super::counters::first_of_day(&mut self.scheduled_day, day).then(|| self.request(at_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_scheduled_update_per_day_whoever_proposes() {
        let mut a = AntivirusState::default();
        assert_eq!(a.request_scheduled(20_000, 1), Some(1));
        assert_eq!(a.request_scheduled(20_000, 2), None, "a second node's proposal the same day");
        assert_eq!(a.request(3), 2, "an operator's request always counts");
        assert_eq!(a.request_scheduled(19_999, 4), None, "a late proposal for an earlier day");
        assert_eq!(a.request_scheduled(20_001, 5), Some(3));
    }
}
