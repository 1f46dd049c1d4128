//! Lock-free reads of the applied cluster state.
//!
//! The state machine publishes an immutable `AppliedState` after each apply
//! batch by swapping one `Arc`; readers on the SMTP path load that `Arc` and
//! never block or wait for the network. A reader may see a state a few
//! entries behind the leader, which is the documented contract: decisions on
//! the hot path are made on the locally applied state.

use arc_swap::ArcSwap;
use std::sync::Arc;

use crate::state::{ClusterState, RuleIndex};

/// One published version of the state.
#[derive(Debug, Clone, Default)]
pub struct AppliedState {
    /// Index of the last log entry this state includes (0 before any).
    pub applied_index: u64,
    pub state: ClusterState,
    /// Lookup tables over `state.rules`, rebuilt only when the rules change.
    pub rules: Arc<RuleIndex>,
}

/// A cheap, cloneable handle to the latest applied state.
#[derive(Clone, Default)]
pub struct ReadHandle {
    current: Arc<ArcSwap<AppliedState>>,
}

impl ReadHandle {
    pub fn new(initial: AppliedState) -> Self {
        Self { current: Arc::new(ArcSwap::from_pointee(initial)) }
    }

    /// The latest applied state; hold the `Arc` for a consistent view.
    pub fn load(&self) -> Arc<AppliedState> {
        self.current.load_full()
    }

    /// Publishes a new version; called only by the state machine.
    pub(crate) fn publish(&self, applied_index: u64, state: ClusterState) {
        let previous = self.current.load();
        let rules = if previous.rules.version == state.rules.version {
            previous.rules.clone()
        } else {
            Arc::new(RuleIndex::build(&state.rules))
        };
        self.current.store(Arc::new(AppliedState { applied_index, state, rules }));
    }

    /// A handle on a fixed state, for tests and benchmarks of the read path.
    pub fn fixed(state: ClusterState) -> Self {
        let rules = Arc::new(RuleIndex::build(&state.rules));
        Self::new(AppliedState { applied_index: 0, state, rules })
    }
}
