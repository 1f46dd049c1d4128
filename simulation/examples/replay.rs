//! Prints one run's timeline: `cargo run -p gatehouse-simulation --example replay -- SEED [NODES] [STEPS]`.
fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let config = gatehouse_simulation::SimConfig {
        seed: args.first().copied().unwrap_or(0),
        nodes: args.get(1).copied().unwrap_or(5) as usize,
        steps: args.get(2).copied().unwrap_or(200) as u32,
        faults: gatehouse_simulation::Faults::all(),
        broken_skip_fsync: false,
        broken_unrecorded_takeover: false,
    };
    let report = gatehouse_simulation::simulate(&config);
    for line in &report.timeline {
        println!("{line}");
    }
    println!("violations: {:?}", report.violations);
}
