//! In-process clusters for tests and benchmarks: real nodes (redb on disk,
//! TLS on loopback) in one tokio runtime.
#![allow(dead_code)]

use gatehouse_consensus::{wall_clock, ClusterConfig, ClusterNode};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

pub fn fast_config(dir: &Path, name: &str) -> ClusterConfig {
    ClusterConfig {
        data_dir: dir.join(name),
        raft_listen: free_addr(),
        admin_advertise: free_addr(),
        heartbeat_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        ..Default::default()
    }
}

/// Starts node 1 as a new cluster and joins `n - 1` more through it.
pub async fn start_cluster(dir: &Path, n: usize) -> Vec<Arc<ClusterNode>> {
    let first = ClusterNode::init(fast_config(dir, "n1"), wall_clock()).await.expect("init");
    first.raft.wait(Some(Duration::from_secs(10))).current_leader(first.id, "first node leads").await.expect("leader");
    let seed = first.config.raft_listen.clone();
    let mut nodes = vec![first];
    for i in 2..=n {
        let token = nodes[0].issue_join_token().await.expect("token");
        let node =
            ClusterNode::join(fast_config(dir, &format!("n{i}")), wall_clock(), &token, &seed).await.expect("join");
        nodes.push(node);
    }
    nodes
}
