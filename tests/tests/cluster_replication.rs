//! Three real `gatehouse` processes: replication within 1 s, failover
//! within 3 s after kill -9 of the leader, catch-up of the restarted node.

mod common;

use common::*;
use std::time::{Duration, Instant};

#[test]
fn replicates_fails_over_and_catches_up() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(root.path(), "");
    nodes[0].ok(&["domain", "add", "example.com"]);

    // A user added on node 1 is visible on nodes 2 and 3 within 1 s.
    let started = Instant::now();
    nodes[0].ok(&["user", "add", "alice@example.com", "--password", "correct horse", "--name", "Alice"]);
    for n in &nodes[1..] {
        let seen = wait_for(Duration::from_secs(1), || {
            let users = n.ok(&["user", "list"]);
            users.as_array().unwrap().iter().any(|u| u["address"] == "alice@example.com").then_some(())
        });
        assert!(seen.is_some(), "{} did not see the user within 1 s", n.name);
    }
    eprintln!("user visible on all nodes {:?} after the add was sent", started.elapsed());

    // Status lists three members with roles and lag, and one leader.
    let status = nodes[1].status();
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{status}");
    assert!(members.iter().all(|m| m["voter"] == true && m["lag"].is_u64()), "{status}");
    assert!(members.iter().all(|m| m["applied_index"].is_u64() && m["state"].is_string()), "{status}");
    let leader = status["leader"].as_u64().unwrap();

    // kill -9 the leader: a new leader accepts writes within 3 s.
    let leader_idx = nodes.iter().position(|n| node_id(n) == leader).unwrap();
    nodes[leader_idx].kill9();
    let killed_at = Instant::now();
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader_idx).collect();
    let mut attempt = 0;
    let accepted = wait_for(Duration::from_secs(3), || {
        attempt += 1;
        let n = &nodes[survivors[attempt % 2]];
        n.try_ok(&["domain", "add", "after-failover.example"]).ok()
    });
    let failover = killed_at.elapsed();
    assert!(accepted.is_some(), "no write accepted within 3 s of killing the leader");
    eprintln!("write accepted {failover:?} after kill -9 of leader {leader}");
    let new_leader = leader_id(&nodes[survivors[0]]).unwrap();
    assert_ne!(new_leader, leader);
    let status = nodes[survivors[0]].status();
    let dead = status["members"].as_array().unwrap().iter().find(|m| m["node_id"] == leader).unwrap().clone();
    assert!(dead["state"].is_null() && dead["applied_index"].is_null(), "killed node should be unreachable: {dead}");

    // The killed node restarts and catches up.
    nodes[leader_idx].serve();
    let caught_up = wait_for(Duration::from_secs(10), || {
        nodes[leader_idx].domains().contains(&"after-failover.example".to_string()).then_some(())
    });
    assert!(caught_up.is_some(), "restarted node did not catch up");
    for n in &nodes {
        assert_eq!(n.domains(), vec!["after-failover.example", "example.com"], "{}", n.name);
    }
}

#[test]
fn every_committed_write_survives_a_full_restart() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(root.path(), "");
    let mut written = Vec::new();
    for i in 0..40 {
        let name = format!("d{i:03}.example");
        nodes[i % 3].ok(&["domain", "add", &name]);
        written.push(name);
    }
    // Worst case: every process killed at once, none shuts down cleanly.
    for n in nodes.iter_mut() {
        n.kill9();
    }
    for n in nodes.iter_mut() {
        n.serve();
    }
    assert!(wait_for(Duration::from_secs(10), || leader_id(&nodes[0])).is_some(), "no leader after restart");
    for n in &nodes {
        let got = wait_for(Duration::from_secs(10), || {
            let d = n.domains();
            (d.len() == written.len()).then_some(d)
        })
        .unwrap_or_else(|| n.domains());
        assert_eq!(got, written, "{} lost committed writes", n.name);
    }
}
