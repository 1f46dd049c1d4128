//! Lock-free reads of the applied cluster state.
//!
//! The state machine publishes an immutable `AppliedState` after each apply
//! batch by swapping one `Arc`; readers on the SMTP path load that `Arc` and
//! never block or wait for the network. A reader may see a state a few
//! entries behind the leader, which is the documented contract: decisions on
//! the hot path are made on the locally applied state.

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
    current: Arc<swap::Cell<AppliedState>>,
}

impl ReadHandle {
    pub fn new(initial: AppliedState) -> Self {
        Self { current: Arc::new(swap::Cell::new(initial)) }
    }

    /// The latest applied state; hold the `Arc` for a consistent view.
    pub fn load(&self) -> Arc<AppliedState> {
        self.current.load()
    }

    /// Publishes a new version; called only by the state machine, which
    /// openraft never runs twice at once (the loom model in
    /// `loom_models.rs` checks readers against this one writer).
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

/// The swap cell: arc-swap in every build but the loom model's, where a
/// loom lock stands in so that loom can explore readers against the writer
/// (arc-swap's own atomics are invisible to loom).
#[cfg(not(feature = "loom"))]
mod swap {
    use arc_swap::ArcSwap;
    use std::sync::Arc;

    #[derive(Default)]
    pub struct Cell<T>(ArcSwap<T>);

    impl<T> Cell<T> {
        pub fn new(value: T) -> Self {
            Self(ArcSwap::from_pointee(value))
        }
        pub fn load(&self) -> Arc<T> {
            self.0.load_full()
        }
        pub fn store(&self, value: Arc<T>) {
            self.0.store(value)
        }
    }
}

#[cfg(feature = "loom")]
mod swap {
    use loom::sync::RwLock;
    use std::sync::Arc;

    #[derive(Default)]
    pub struct Cell<T>(RwLock<Arc<T>>);

    impl<T> Cell<T> {
        pub fn new(value: T) -> Self {
            Self(RwLock::new(Arc::new(value)))
        }
        pub fn load(&self) -> Arc<T> {
            match self.0.read() {
                Ok(guard) => guard.clone(),
                Err(poisoned) => poisoned.into_inner().clone(),
            }
        }
        pub fn store(&self, value: Arc<T>) {
            match self.0.write() {
                Ok(mut guard) => *guard = value,
                Err(poisoned) => *poisoned.into_inner() = value,
            }
        }
    }
}
