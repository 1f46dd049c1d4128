//! `gatehouse simulate`: the deterministic simulator for operators. One seed
//! prints its timeline; a range of seeds prints a summary and every failing
//! seed. Exits non-zero on any invariant violation, naming the seed to replay.

use anyhow::Context;
use simulation::{simulate, sweep, Faults, SimConfig, SweepSummary};

pub fn run(seed: u64, seeds: Option<&str>, nodes: usize, faults: &str, steps: u32, json: bool) -> anyhow::Result<()> {
    let faults = Faults::parse(faults).map_err(anyhow::Error::msg)?;
    let template =
        SimConfig { seed, nodes, steps, faults, broken_skip_fsync: false, broken_unrecorded_takeover: false };
    if let Some(range) = seeds {
        let (a, b) = range.split_once("..").context("seeds: expected A..B, e.g. 0..10000")?;
        let from: u64 = a.trim().parse().context("seeds: A is not a number")?;
        let to: u64 = b.trim().parse().context("seeds: B is not a number")?;
        anyhow::ensure!(from < to, "seeds: {from}..{to} is empty");
        let started = std::time::Instant::now();
        let reports = sweep(from, to, &template);
        let failing: Vec<_> = reports.iter().filter(|r| !r.violations.is_empty()).collect();
        let summary = SweepSummary::of(&reports);
        if json {
            let failed: Vec<_> =
                failing.iter().map(|r| serde_json::json!({ "seed": r.seed, "violations": r.violations })).collect();
            println!(
                "{}",
                serde_json::json!({ "seeds": summary.seeds, "failed": failed,
                    "writes_acknowledged": summary.writes_acknowledged,
                    "slowest_convergence_ms": summary.slowest_convergence_ms,
                    "snapshots_installed": summary.snapshots_installed,
                    "install_crashes": summary.install_crashes, "nodes_joined": summary.nodes_joined,
                    "nodes_removed": summary.nodes_removed, "seconds": started.elapsed().as_secs_f64() })
            );
        } else {
            for r in &failing {
                println!("seed {}: {}", r.seed, r.violations.join("; "));
            }
            println!("{summary}, {:.1} s", started.elapsed().as_secs_f64());
        }
        if let Some(first) = failing.first() {
            anyhow::bail!(
                "invariants violated; replay with: gatehouse simulate --seed {} --nodes {nodes} --steps {steps}",
                first.seed
            );
        }
        return Ok(());
    }
    let report = simulate(&template);
    if json {
        println!(
            "{}",
            serde_json::json!({ "seed": report.seed, "trace_hash": report.trace_hash, "timeline": report.timeline,
                "violations": report.violations, "writes_acknowledged": report.writes_acknowledged,
                "converged_after_ms": report.converged_after_ms })
        );
    } else {
        for line in &report.timeline {
            println!("{line}");
        }
        println!();
        println!("leaders by term: {:?}", report.leaders);
        println!("writes acknowledged: {}", report.writes_acknowledged);
        println!(
            "snapshots installed: {} ({} crashes inside an install)",
            report.snapshots_installed, report.install_crashes
        );
        println!("nodes joined: {}, removed: {}", report.nodes_joined, report.nodes_removed);
        println!(
            "quota charges: {} counted, {} refused at the limit, highest daily count {} (limit {})",
            report.quota_charged,
            report.quota_refused,
            report.quota_highest,
            simulation::run::QUOTA_MESSAGES_MAX
        );
        if report.mail_accepted > 0 {
            println!(
                "mail: {} acknowledged, {} delivered, {} delivered twice (the documented case), {} lost with every node that held them",
                report.mail_accepted, report.mail_delivered, report.mail_duplicates, report.mail_lost
            );
        }
        println!("trace hash: {}", report.trace_hash);
        if report.violations.is_empty() {
            println!("invariants: all held");
        }
        for v in &report.violations {
            println!("VIOLATION: {v}");
        }
    }
    anyhow::ensure!(report.violations.is_empty(), "invariants violated (seed {seed}; the run replays exactly)");
    Ok(())
}
