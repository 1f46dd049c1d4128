//! Spool replication across 3 real nodes (`queue.replicas = 2`): with the
//! smarthost down, 1,000 messages spread over the nodes stay queued, each
//! with a copy on another member; one node is then lost — its data
//! directory deleted and the node removed, or only killed until its lease
//! runs out and restarted — and once the smarthost (an smtp-sink that keeps
//! what it gets) comes up, every message arrives, none twice (counted by
//! Message-ID at the sink).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const MESSAGES: usize = 1000;

/// Sends `count` messages over `ports` (8 threads, 25 messages a session,
/// sessions round-robin over the nodes); returns the replies that were not 250.
fn send_spread(ports: &[u16], count: usize) -> Vec<String> {
    let script = format!(
        r#"
import smtplib, threading
ports = {ports:?}
count = {count}
bad = []
lock = threading.Lock()
def worker(t):
    sessions = [list(range(s, min(s + 25, count))) for s in range(t * 25, count, 8 * 25)]
    for n, ids in enumerate(sessions):
        port = ports[(t + n) % len(ports)]
        try:
            s = smtplib.SMTP("127.0.0.1", port, timeout=30)
            for i in ids:
                body = "From: <app@example.com>\r\nTo: <bob@remote.test>\r\nSubject: replica %d\r\nMessage-ID: <r%d@test>\r\n\r\nmessage %d\r\n" % (i, i, i)
                try:
                    s.sendmail("app@example.com", ["bob@remote.test"], body)
                except Exception as e:
                    with lock: bad.append("%d %s" % (i, e))
            s.quit()
        except Exception as e:
            with lock: bad.append("session %s" % e)
threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
for t in threads: t.start()
for t in threads: t.join()
for b in bad: print(b)
"#
    );
    let out = python(&script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

/// Message-ID → how many copies the sink holds.
fn arrivals(dump: &Path) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for file in files_in(dump) {
        let text = String::from_utf8_lossy(&file);
        if let Some(at) = text.find("Message-ID: <r") {
            let id: String = text[at + 12..].chars().take_while(|c| *c != '>').collect();
            *seen.entry(id).or_insert(0) += 1;
        }
    }
    seen
}

fn replicas_held(node: &Node) -> usize {
    let rows = node.ok(&["queue", "replicas"]);
    rows.as_array().map(|r| r.iter().filter_map(|x| x["messages"].as_u64()).sum::<u64>() as usize).unwrap_or(0)
}

fn queued(node: &Node) -> usize {
    node.ok(&["queue", "list"]).as_array().map(Vec::len).unwrap_or(0)
}

/// A 3-node cluster relaying everything to a smarthost that is not up yet.
fn cluster(root: &Path, sink_port: u16) -> Vec<Node> {
    let nodes = three_nodes(root, "");
    for (k, v) in [
        ("smtp.hostname", "mx.example.com"),
        ("smtp.trusted_networks", "127.0.0.0/8"),
        ("relay.smarthost", &format!("127.0.0.16:{sink_port}")),
        ("queue.min_backoff_s", "1"),
        ("queue.max_backoff_s", "2"),
        ("queue.takeover_after_s", "10"),
        ("queue.replicas", "2"),
    ] {
        nodes[0].ok(&["config", "set", k, v]);
    }
    for n in &nodes {
        let seen = wait_for(Duration::from_secs(10), || {
            (n.ok(&["config", "get", "queue.replicas"])["value"] == "2").then_some(())
        });
        assert!(seen.is_some(), "{} never saw queue.replicas", n.name);
    }
    // Every node's first lease renewal (its copies wait for it).
    std::thread::sleep(Duration::from_secs(2));
    nodes
}

/// Sends the 1,000 and checks every node queued its share with copies elsewhere.
fn fill(nodes: &[Node]) {
    let ports: Vec<u16> = nodes.iter().map(|n| n.smtp_ports.smtp).collect();
    let refused = send_spread(&ports, MESSAGES);
    if !refused.is_empty() {
        let why: Vec<String> = nodes
            .iter()
            .flat_map(|n| n.log_text().lines().filter(|l| l.contains("WARN")).map(str::to_string).collect::<Vec<_>>())
            .take(20)
            .collect();
        panic!("{} refused: {:?}\n{}", refused.len(), &refused[..refused.len().min(3)], why.join("\n"));
    }
    let total_queued: usize = nodes.iter().map(queued).sum();
    let total_copies: usize = nodes.iter().map(replicas_held).sum();
    assert_eq!(total_queued, MESSAGES, "queued per node: {:?}", nodes.iter().map(queued).collect::<Vec<_>>());
    assert_eq!(total_copies, MESSAGES, "copies per node: {:?}", nodes.iter().map(replicas_held).collect::<Vec<_>>());
    for n in nodes {
        assert!(replicas_held(n) > MESSAGES / 10, "{} holds {} copies: not spread", n.name, replicas_held(n));
    }
}

/// Starts the sink and waits until every message arrived; then a little
/// longer, so a late duplicate would be seen.
fn drain(root: &Path, sink_port: u16, nodes: &[&Node]) -> BTreeMap<String, usize> {
    let dump = root.join("sink");
    let _sink = keeping_sink_on(root, "127.0.0.16", sink_port);
    let all = wait_for(Duration::from_secs(90), || {
        let seen = arrivals(&dump);
        (seen.len() == MESSAGES).then_some(())
    });
    let seen = arrivals(&dump);
    if all.is_none() {
        let logs: String = nodes.iter().map(|n| n.log_text()).collect::<Vec<_>>().join("\n----\n");
        let tail: String = logs.lines().rev().take(60).collect::<Vec<_>>().join("\n");
        panic!(
            "{} of {MESSAGES} arrived; queued: {:?}\n{tail}",
            seen.len(),
            nodes.iter().map(|n| queued(n)).collect::<Vec<_>>()
        );
    }
    std::thread::sleep(Duration::from_secs(4));
    arrivals(&dump)
}

fn assert_once(seen: &BTreeMap<String, usize>) {
    let twice: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(seen.len(), MESSAGES);
    assert!(twice.is_empty(), "{} delivered more than once: {:?}", twice.len(), &twice[..twice.len().min(10)]);
}

#[test]
fn a_node_lost_for_good_loses_no_message() {
    let root = tempfile::tempdir().unwrap();
    let sink_port = free_port();
    let mut nodes = cluster(root.path(), sink_port);
    fill(&nodes);
    let lost = node_id(&nodes[2]);
    nodes[2].kill9();
    std::fs::remove_dir_all(nodes[2].dir.join("data")).unwrap();
    nodes[0].ok(&["cluster", "remove-node", &lost.to_string()]);
    // The survivors take over the lost node's copies and hold none of its any more.
    let taken = wait_for(Duration::from_secs(30), || {
        let on_survivors: usize = nodes[..2].iter().map(queued).sum();
        (on_survivors == MESSAGES).then_some(())
    });
    assert!(taken.is_some(), "queued on the survivors: {:?}", nodes[..2].iter().map(queued).collect::<Vec<_>>());
    let seen = drain(root.path(), sink_port, &[&nodes[0], &nodes[1]]);
    assert_once(&seen);
    assert!(
        nodes[0].log_text().contains("took over queued messages")
            || nodes[1].log_text().contains("took over queued messages")
    );
}

#[test]
fn a_node_back_after_its_takeover_delivers_nothing_twice() {
    let root = tempfile::tempdir().unwrap();
    let sink_port = free_port();
    let mut nodes = cluster(root.path(), sink_port);
    fill(&nodes);
    let own = queued(&nodes[2]);
    nodes[2].kill9();
    // Its lease runs out (queue.takeover_after_s = 10): the others take over its copies.
    let taken = wait_for(Duration::from_secs(40), || {
        let survivors: usize = nodes[..2].iter().map(queued).sum();
        (survivors == MESSAGES).then_some(())
    });
    assert!(
        taken.is_some(),
        "survivors queue {:?}, the dead node had {own}",
        nodes[..2].iter().map(queued).collect::<Vec<_>>()
    );
    nodes[2].serve();
    // Back, it learns of the takeover and drops its copies before delivering any.
    let dropped = wait_for(Duration::from_secs(20), || (queued(&nodes[2]) == 0).then_some(()));
    assert!(dropped.is_some(), "the returning node still queues {}", queued(&nodes[2]));
    let seen = drain(root.path(), sink_port, &[&nodes[0], &nodes[1], &nodes[2]]);
    assert_once(&seen);
    assert!(nodes[2].log_text().contains("copies dropped"));
}
