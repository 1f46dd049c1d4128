//! Replicated writes per second through the batching proposer: three real
//! nodes (redb with fsync, mutual TLS on loopback) in one process, with 1 and
//! 64 concurrent writers, writing through the leader and through a follower.
//! Run: `cargo bench -p gatehouse-consensus --bench replication`.
//! Prints writes/s and the ratio between the runs; absolute figures depend on
//! the machine's fsync latency, the ratios much less.

#[path = "../tests/common/mod.rs"]
mod common;

use gatehouse_consensus::{ClusterNode, Command};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WRITES_PER_RUN: usize = 4_000;

async fn run(node: &Arc<ClusterNode>, writers: usize, tag: &str) -> f64 {
    let per_writer = WRITES_PER_RUN / writers;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let node = node.clone();
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_writer {
                let command = Command::RecordGreylistAttempt {
                    triplet: format!("{tag}|{w}|{i}"),
                    delay_ms: 300_000,
                    retry_window_ms: 86_400_000,
                    pass_ttl_ms: 3_110_400_000,
                };
                node.proposer.propose(command).await.expect("write");
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    (per_writer * writers) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    // `cargo test --benches` passes --bench-less flags; run only under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = common::start_cluster(dir.path(), 3).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let leader = nodes[0].clone();
        let follower = nodes[1].clone();
        let mut results = Vec::new();
        for (name, node) in [("leader", &leader), ("follower", &follower)] {
            for writers in [1usize, 64] {
                let rate = run(node, writers, &format!("{name}-{writers}")).await;
                println!("3 nodes, {writers:>2} writer(s) via {name:<8}: {rate:>9.0} replicated writes/s");
                results.push(rate);
            }
        }
        println!("ratio 64 writers / 1 writer via leader:   {:.1}x", results[1] / results[0]);
        println!("ratio 64 writers / 1 writer via follower: {:.1}x", results[3] / results[2]);
        for n in &nodes {
            let _ = n.raft.shutdown().await;
        }
    });
}
