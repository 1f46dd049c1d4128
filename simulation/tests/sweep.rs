//! The sweep scripts/test runs: 200 seeds with every fault (the mail path's
//! takeovers and lost disks included), all invariants holding; and the
//! broken variants (fsync skipped; spool takeovers not recorded through
//! Raft) caught within a sweep, which proves the invariants can fail.

use gatehouse_simulation::{sweep, Faults, SimConfig, SweepSummary};
use std::time::Instant;

fn template(broken: bool) -> SimConfig {
    SimConfig {
        seed: 0,
        nodes: 3,
        steps: 200,
        faults: Faults::all(),
        broken_skip_fsync: broken,
        broken_unrecorded_takeover: false,
    }
}

#[test]
fn two_hundred_seeds_hold_every_invariant() {
    let started = Instant::now();
    let reports = sweep(0, 200, &SimConfig { nodes: 5, ..template(false) });
    let failing: Vec<String> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .map(|r| format!("seed {}: {}", r.seed, r.violations.join("; ")))
        .collect();
    let summary = SweepSummary::of(&reports);
    println!("{summary}, in {:.1} s", started.elapsed().as_secs_f64());
    assert!(failing.is_empty(), "replay with `gatehouse simulate --seed N`:\n{}", failing.join("\n"));
    assert!(summary.install_crashes > 0, "no crash landed inside a snapshot install: the fault is not exercised");
    let (joined, removed) = (summary.nodes_joined, summary.nodes_removed);
    assert!(joined > 0 && removed > 0, "membership never changed: {joined} joined, {removed} removed");
    assert!(summary.mail_accepted > 1000 && summary.mail_delivered > 1000, "the mail path did not run: {summary}");
    assert!(summary.mail_duplicates > 0, "no owner was ever taken over mid-delivery: the takeover is not exercised");
}

#[test]
fn unrecorded_takeovers_are_caught() {
    let broken = SimConfig { broken_unrecorded_takeover: true, ..template(false) };
    let reports = sweep(0, 40, &broken);
    let caught: Vec<&gatehouse_simulation::SimReport> = reports.iter().filter(|r| !r.violations.is_empty()).collect();
    for r in caught.iter().take(3) {
        println!("seed {}: {}", r.seed, r.violations.join("; "));
    }
    println!("broken variant: {} of {} seeds caught", caught.len(), reports.len());
    assert!(!caught.is_empty(), "no seed noticed a holder delivering beside the owner");
    assert!(caught.iter().any(|r| r.violations.iter().any(|v| v.contains("delivered by two nodes"))));
}

#[test]
fn skipping_fsync_is_caught() {
    let reports = sweep(0, 40, &template(true));
    let caught: Vec<&gatehouse_simulation::SimReport> = reports.iter().filter(|r| !r.violations.is_empty()).collect();
    for r in caught.iter().take(3) {
        println!("seed {}: {}", r.seed, r.violations.join("; "));
    }
    println!("broken variant: {} of {} seeds caught", caught.len(), reports.len());
    assert!(!caught.is_empty(), "no seed noticed that fsync does nothing");
}
