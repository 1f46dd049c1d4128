//! Cost of `apply` on the hot-path commands (no IO: the state machine alone).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use gatehouse_consensus::command::{ClusterRequest, Command};
use gatehouse_consensus::state::ClusterState;

fn greylist_batch(n: usize, offset: usize) -> ClusterRequest {
    let commands = (0..n)
        .map(|i| Command::RecordGreylistAttempt {
            triplet: format!("192.0.{}.0/24|s{}@example.org|r@example.com", (i + offset) % 250, i + offset),
            delay_ms: 300_000,
            retry_window_ms: 86_400_000,
            pass_ttl_ms: 3_110_400_000,
        })
        .collect();
    ClusterRequest { at_ms: 1_000_000, commands }
}

fn bench_apply(c: &mut Criterion) {
    // A state already holding 10,000 triplets, as a busy MX would.
    let mut base = ClusterState::default();
    base.apply_request(&greylist_batch(10_000, 1_000_000));
    let batch = greylist_batch(512, 0);
    c.bench_function("apply 512 greylist attempts on 10k triplets", |b| {
        b.iter_batched(|| base.clone(), |mut s| s.apply_request(&batch), BatchSize::LargeInput)
    });
    c.bench_function("clone state with 10k triplets (read-handle publish)", |b| b.iter(|| base.clone()));
}

criterion_group!(benches, bench_apply);
criterion_main!(benches);
