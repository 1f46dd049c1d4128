//! The deterministic cluster simulator: the real consensus code (openraft,
//! our log store and state machine on redb), the real state machine and
//! policies, in one process under a paused tokio clock on one thread, with a
//! simulated disk (crash semantics) and network (latency, loss, duplication,
//! partitions). Every random choice comes from the seed, so a failure
//! replays exactly. docs/operations/simulator.md explains how to use it.

pub mod disk;
pub mod net;
pub mod run;
pub mod storage;
pub mod world;

pub use run::{simulate, Faults, SimConfig, SimReport};

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
