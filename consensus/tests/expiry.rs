//! The leader expires counters by proposing a command stamped with its clock.

mod common;

use gatehouse_consensus::{wall_clock, ClusterNode, Command};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_proposes_counter_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::fast_config(dir.path(), "n1");
    config.expire_interval_ms = 100;
    let node = ClusterNode::init(config, wall_clock()).await.unwrap();
    let now = (node.clock)();
    node.proposer
        .propose(Command::BlockIp { ip: "192.0.2.7".into(), until_ms: now + 300, reason: "test".into() })
        .await
        .unwrap();
    node.proposer
        .propose(Command::BlockIp { ip: "192.0.2.8".into(), until_ms: now + 3_600_000, reason: "test".into() })
        .await
        .unwrap();
    assert_eq!(node.read.load().state.counters.blocked_ips.len(), 2);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let blocked = node.read.load().state.counters.blocked_ips.clone();
    assert_eq!(blocked.keys().collect::<Vec<_>>(), vec!["192.0.2.8"], "the expired block is gone, the other stays");
}
