//! The deterministic cluster simulator: the real consensus code (openraft,
//! our log store and state machine on redb), the real state machine and
//! policies, in one process under a paused tokio clock on one thread, with a
//! simulated disk (crash semantics) and network (latency, loss, duplication,
//! partitions). Every random choice comes from the seed, so a failure
//! replays exactly. docs/operations/simulator.md explains how to use it.

pub mod disk;
pub mod mail;
pub mod net;
pub mod run;
pub mod storage;
pub mod world;

pub use run::{simulate, Faults, SimConfig, SimReport};

/// What a sweep adds up to; `gatehouse simulate --seeds` and the sweep test
/// both print it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepSummary {
    pub seeds: usize,
    pub failing: usize,
    pub writes_acknowledged: usize,
    pub slowest_convergence_ms: u64,
    pub snapshots_installed: u64,
    pub install_crashes: u32,
    pub nodes_joined: u32,
    pub nodes_removed: u32,
    pub quota_charged: usize,
    pub quota_refused: usize,
    pub quota_highest: u32,
    pub mail_accepted: usize,
    pub mail_delivered: usize,
    pub mail_duplicates: usize,
    pub mail_lost: usize,
}

impl SweepSummary {
    pub fn of(reports: &[SimReport]) -> Self {
        Self {
            seeds: reports.len(),
            failing: reports.iter().filter(|r| !r.violations.is_empty()).count(),
            writes_acknowledged: reports.iter().map(|r| r.writes_acknowledged).sum(),
            slowest_convergence_ms: reports.iter().filter_map(|r| r.converged_after_ms).max().unwrap_or(0),
            snapshots_installed: reports.iter().map(|r| r.snapshots_installed).sum(),
            install_crashes: reports.iter().map(|r| r.install_crashes).sum(),
            nodes_joined: reports.iter().map(|r| r.nodes_joined).sum(),
            nodes_removed: reports.iter().map(|r| r.nodes_removed).sum(),
            quota_charged: reports.iter().map(|r| r.quota_charged).sum(),
            quota_refused: reports.iter().map(|r| r.quota_refused).sum(),
            quota_highest: reports.iter().map(|r| r.quota_highest).max().unwrap_or(0),
            mail_accepted: reports.iter().map(|r| r.mail_accepted).sum(),
            mail_delivered: reports.iter().map(|r| r.mail_delivered).sum(),
            mail_duplicates: reports.iter().map(|r| r.mail_duplicates).sum(),
            mail_lost: reports.iter().map(|r| r.mail_lost).sum(),
        }
    }
}

impl std::fmt::Display for SweepSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} seeds, {} failed, {} writes acknowledged, slowest convergence {} ms, {} snapshots installed, \
             {} crashes inside an install, {} nodes joined, {} removed; quota charges: {} counted, {} refused at \
             the limit, highest daily count {} (limit {})",
            self.seeds,
            self.failing,
            self.writes_acknowledged,
            self.slowest_convergence_ms,
            self.snapshots_installed,
            self.install_crashes,
            self.nodes_joined,
            self.nodes_removed,
            self.quota_charged,
            self.quota_refused,
            self.quota_highest,
            run::QUOTA_MESSAGES_MAX
        )?;
        if self.mail_accepted > 0 {
            write!(
                f,
                "; mail: {} acknowledged, {} delivered, {} delivered twice (documented case), {} lost with every holder",
                self.mail_accepted, self.mail_delivered, self.mail_duplicates, self.mail_lost
            )?;
        }
        Ok(())
    }
}

/// Runs seeds `from..to` on all cores (each run on its own thread and
/// runtime, so each is as deterministic as alone); reports in seed order.
pub fn sweep(from: u64, to: u64, template: &SimConfig) -> Vec<SimReport> {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).max(1);
    let next = std::sync::atomic::AtomicU64::new(from);
    let reports = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let seed = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if seed >= to {
                    break;
                }
                let report = simulate(&SimConfig { seed, ..template.clone() });
                reports.lock().unwrap_or_else(|p| p.into_inner()).push(report);
            });
        }
    });
    let mut reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by_key(|r| r.seed);
    reports
}
