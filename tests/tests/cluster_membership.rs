//! Membership changes on real processes: nodes removed and added (the leader
//! among them) during a steady stream of writes lose no acknowledged write;
//! a node added after log compaction catches up by installing a snapshot.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Config paths of the nodes the writer may use, changed as members come and go.
type Targets = Arc<Mutex<Vec<std::path::PathBuf>>>;

fn write_stream(targets: Targets, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(BTreeSet<String>, usize)> {
    std::thread::spawn(move || {
        let mut acked = BTreeSet::new();
        let mut failed = 0;
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let config = {
                let t = targets.lock().unwrap();
                t[i % t.len()].clone()
            };
            let name = format!("w{i:05}.example");
            let out = std::process::Command::new(binary())
                .arg("-c")
                .arg(&config)
                .args(["domain", "add", &name])
                .output()
                .expect("cli");
            if out.status.success() {
                acked.insert(name);
            } else {
                failed += 1;
            }
            i += 1;
        }
        (acked, failed)
    })
}

#[test]
fn remove_and_add_nodes_during_writes_lose_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(root.path(), "");
    let targets: Targets = Arc::new(Mutex::new(nodes.iter().map(|n| n.config.clone()).collect()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = write_stream(targets.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(800));

    // Remove a follower, live.
    let leader = leader_id(&nodes[0]).unwrap();
    let follower_idx = nodes.iter().position(|n| node_id(n) != leader).unwrap();
    let follower_id = node_id(&nodes[follower_idx]);
    targets.lock().unwrap().retain(|c| *c != nodes[follower_idx].config);
    let remover = nodes.iter().position(|n| node_id(n) == leader).unwrap();
    nodes[remover].ok(&["cluster", "remove-node", &follower_id.to_string()]);
    let mut removed = nodes.remove(follower_idx);
    removed.kill9();
    std::thread::sleep(Duration::from_millis(500));

    // Add a fourth node, live.
    let token = nodes[0].token();
    let mut n4 = Node::new(root.path(), "n4", "");
    n4.join(&token, &nodes[0].raft.clone());
    targets.lock().unwrap().push(n4.config.clone());
    nodes.push(n4);
    std::thread::sleep(Duration::from_millis(500));

    // Remove the leader itself: it commits its removal and steps down.
    let leader = leader_id(&nodes[0]).unwrap();
    let leader_idx = nodes.iter().position(|n| node_id(n) == leader).unwrap();
    targets.lock().unwrap().retain(|c| *c != nodes[leader_idx].config);
    let other = (leader_idx + 1) % nodes.len();
    nodes[other].ok(&["cluster", "remove-node", &leader.to_string()]);
    let mut old_leader = nodes.remove(leader_idx);
    let new_leader = wait_for(Duration::from_secs(5), || leader_id(&nodes[0]).filter(|l| *l != leader));
    assert!(new_leader.is_some(), "no new leader after removing the leader");
    old_leader.kill9();
    std::thread::sleep(Duration::from_millis(800));

    stop.store(true, Ordering::Relaxed);
    let (acked, failed) = writer.join().unwrap();
    eprintln!("writes acknowledged: {}, failed (retryable): {failed}", acked.len());
    assert!(acked.len() >= 20, "too few writes to prove anything: {}", acked.len());

    // Two members remain; both hold every acknowledged write, and the same set.
    let status = nodes[0].status();
    assert_eq!(status["members"].as_array().unwrap().len(), 2, "{status}");
    let sets: Vec<BTreeSet<String>> = nodes
        .iter()
        .map(|n| {
            wait_for(Duration::from_secs(5), || {
                let d: BTreeSet<String> = n.domains().into_iter().collect();
                acked.is_subset(&d).then_some(d)
            })
            .unwrap_or_else(|| panic!("{} is missing acknowledged writes", n.name))
        })
        .collect();
    assert_eq!(sets[0], sets[1], "members disagree");
    eprintln!("each remaining member holds {} domains", sets[0].len());
}

#[test]
fn node_added_after_compaction_installs_a_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let extra = "snapshot_logs_since_last = 20\nlogs_kept_after_snapshot = 0";
    let nodes = three_nodes(root.path(), extra);
    for i in 0..60 {
        nodes[i % 3].ok(&["domain", "add", &format!("s{i:03}.example")]);
    }
    let leader = leader_id(&nodes[0]).unwrap();
    let leader_node = nodes.iter().find(|n| node_id(n) == leader).unwrap();
    let purged = wait_for(Duration::from_secs(5), || leader_node.status()["purged_index"].as_u64().filter(|p| *p > 20));
    assert!(purged.is_some(), "leader never purged its log: {}", leader_node.status());

    let token = nodes[0].token();
    let mut n4 = Node::new(root.path(), "n4", extra);
    n4.join(&token, &nodes[0].raft.clone());
    let status = n4.status();
    assert!(status["snapshots_installed"].as_u64().unwrap() >= 1, "node 4 did not install a snapshot: {status}");
    assert_eq!(n4.domains().len(), 60);
    eprintln!("node 4 installed {} snapshot(s); leader purged up to {:?}", status["snapshots_installed"], purged);
}

#[test]
fn a_dead_node_is_removed_and_replaced() {
    let root = tempfile::tempdir().unwrap();
    let mut nodes = three_nodes(root.path(), "");
    let leader = leader_id(&nodes[0]).unwrap();
    let dead_idx = nodes.iter().position(|n| node_id(n) != leader).unwrap();
    let dead_id = node_id(&nodes[dead_idx]);
    let mut dead = nodes.remove(dead_idx);
    dead.kill9();

    // The survivors still have a majority: write, remove the dead node, add a replacement.
    nodes[0].ok(&["domain", "add", "while-degraded.example"]);
    nodes[1].ok(&["cluster", "remove-node", &dead_id.to_string()]);
    let token = nodes[0].token();
    let mut replacement = Node::new(root.path(), "n4", "");
    replacement.join(&token, &nodes[1].raft.clone());
    let new_id = node_id(&replacement);
    assert!(new_id > 3, "ids are never reused: got {new_id}");
    nodes.push(replacement);

    nodes[2].ok(&["domain", "add", "after-replacement.example"]);
    let status = nodes[0].status();
    let ids: Vec<u64> = status["members"].as_array().unwrap().iter().map(|m| m["node_id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), 3, "{status}");
    assert!(!ids.contains(&dead_id) && ids.contains(&new_id), "{status}");
    for n in &nodes {
        let got = wait_for(Duration::from_secs(5), || {
            let d = n.domains();
            (d.len() == 2).then_some(d)
        });
        assert_eq!(got, Some(vec!["after-replacement.example".into(), "while-degraded.example".into()]), "{}", n.name);
    }
}
