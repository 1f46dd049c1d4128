//! The daily outbound quota across a 3-node cluster, the real binary on
//! every node: one authenticated user's messages spread round-robin over
//! the nodes (as a load balancer would) are counted through Raft, so the
//! limit holds exactly; the accepted ones go out through the smarthost (an
//! smtp-sink that keeps what it gets), the others get the reset time.
//! Killing the leader in the middle never lets one more through; with no
//! quorum the client is told to retry (451), or the message goes uncounted
//! when `quota.on_unavailable = accept`.

mod common;

use common::*;
use serde_json::Value;
use std::time::Duration;

/// A message body of `size` bytes of text after a short header.
fn quota_body(size: usize) -> String {
    format!("Subject: quota\r\n\r\n{}\r\n", "x".repeat(size))
}

fn accepted(replies: &[String]) -> usize {
    replies.iter().filter(|r| r.starts_with("250")).count()
}

fn usage(node: &Node, user: &str) -> Value {
    node.ok(&["quota", "usage", user])[0].clone()
}

#[test]
fn the_daily_limit_holds_exactly_across_nodes_and_a_leader_kill() {
    let root = tempfile::tempdir().unwrap();
    let (_sink, sink_port, dump) = keeping_sink(root.path(), "127.0.0.9");

    let mut nodes = three_nodes(root.path(), "");
    nodes[0].ok(&["domain", "add", "example.com"]);
    for user in ["alice", "carol", "dave"] {
        nodes[0].ok(&["user", "add", &format!("{user}@example.com"), "--password", "correct horse"]);
    }
    for (k, v) in [
        ("smtp.hostname", "mx.example.com"),
        ("relay.smarthost", &format!("127.0.0.9:{sink_port}")),
        ("quota.daily_messages_max", "10"),
    ] {
        nodes[0].ok(&["config", "set", k, v]);
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.smtp_ports.submission).collect();
    for n in &nodes {
        let seen = wait_for(Duration::from_secs(10), || {
            (n.ok(&["config", "get", "quota.daily_messages_max"])["value"] == "10").then_some(())
        });
        assert!(seen.is_some(), "{} never saw the limit", n.name);
    }

    // 1. Thirty messages over three nodes, a limit of ten: exactly ten pass.
    let replies =
        send_each(&ports, Some("alice@example.com"), "alice@example.com", "bob@remote.test", 30, &quota_body(100));
    assert_eq!(accepted(&replies), 10, "{replies:#?}");
    let refused: Vec<&String> = replies.iter().filter(|r| !r.starts_with("250")).collect();
    assert!(
        refused.iter().all(|r| r.starts_with("452 4.7.1 Daily sending limit reached (10 messages per day)")
            && r.contains("resets at")
            && r.contains("00:00:00 +0000")),
        "{refused:#?}"
    );
    for n in &nodes {
        let seen = wait_for(Duration::from_secs(5), || (usage(n, "alice@example.com")["messages"] == 10).then_some(()));
        assert!(seen.is_some(), "{}: {}", n.name, usage(n, "alice@example.com"));
    }
    let listed = nodes[0].ok(&["quota", "usage"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["messages_max"], 10, "{listed}");
    let delivered = wait_for(Duration::from_secs(20), || {
        let got = files_in(&dump).iter().filter(|f| String::from_utf8_lossy(f).contains("Subject: quota")).count();
        (got == 10).then_some(got)
    });
    assert!(delivered.is_some(), "the sink got {} messages", files_in(&dump).len());

    // 2. A user's own bytes limit: 2,500 bytes of 1,000-byte messages is two.
    nodes[0].ok(&["user", "limits", "carol@example.com", "--daily-messages-max", "0", "--daily-bytes-max", "2500"]);
    let replies =
        send_each(&ports, Some("carol@example.com"), "carol@example.com", "bob@remote.test", 5, &quota_body(900));
    assert_eq!(accepted(&replies), 2, "{replies:#?}");
    assert!(replies.iter().any(|r| r.starts_with("452 4.7.1") && r.contains("2500 bytes")), "{replies:#?}");
    let carol = usage(&nodes[0], "carol@example.com");
    assert_eq!((carol["messages"].as_u64(), carol["messages_max"].as_u64()), (Some(2), Some(0)), "{carol}");
    // A message bigger than the whole day's bytes can never go: 550, not 452.
    nodes[0].ok(&["user", "limits", "carol@example.com", "--daily-bytes-max", "500"]);
    let replies =
        send_each(&ports[..1], Some("carol@example.com"), "carol@example.com", "bob@remote.test", 1, &quota_body(900));
    assert!(replies[0].starts_with("550 5.7.1"), "{replies:?}");

    // 3. The leader is killed while dave sends: never more than ten.
    nodes[0].ok(&["user", "limits", "dave@example.com", "--daily-messages-max", "10"]);
    let leader = leader_id(&nodes[0]).expect("a leader");
    let victim = nodes.iter().position(|n| node_id(n) == leader).unwrap();
    let mut replies =
        send_each(&ports, Some("dave@example.com"), "dave@example.com", "bob@remote.test", 6, &quota_body(100));
    assert_eq!(accepted(&replies), 6, "{replies:#?}");
    nodes[victim].kill9();
    replies.extend(send_each(
        &ports,
        Some("dave@example.com"),
        "dave@example.com",
        "bob@remote.test",
        24,
        &quota_body(100),
    ));
    let ok = accepted(&replies);
    let failed = replies.iter().filter(|r| r.starts_with("ERR")).count();
    eprintln!(
        "leader killed mid-way: {ok} accepted, {failed} sessions to the dead node failed, {} refused",
        30 - ok - failed
    );
    assert!(ok <= 10, "{ok} accepted past a limit of 10: {replies:#?}");
    assert!(ok >= 5, "the surviving nodes should have taken some: {replies:#?}");
    let survivor = nodes.iter().find(|n| n.is_running()).unwrap();
    let counted = usage(survivor, "dave@example.com")["messages"].as_u64().unwrap();
    assert!(counted >= ok as u64 && counted <= 10, "counted {counted}, accepted {ok}");

    // 4. No quorum: the client is told to retry, nothing goes out uncounted;
    // local mail is not counted (hijack.on_unavailable = accept) and still flows.
    let running: Vec<usize> = (0..3).filter(|i| nodes[*i].is_running()).collect();
    let (stay, stop) = (running[0], running[1]);
    nodes[stop].kill9();
    let port = [nodes[stay].smtp_ports.submission];
    let replies = send_each(&port, Some("carol@example.com"), "carol@example.com", "x@remote.test", 1, &quota_body(10));
    assert!(replies[0].starts_with("451 4.7.1 Cannot count"), "{replies:?}");
    let local =
        send_each(&port, Some("carol@example.com"), "carol@example.com", "alice@example.com", 1, &quota_body(10));
    assert!(local[0].starts_with("250"), "{local:?}");

    // With quota.on_unavailable = accept, the same message goes out uncounted.
    nodes[stop].serve();
    nodes[stay].ok(&["config", "set", "quota.on_unavailable", "accept"]);
    let seen = wait_for(Duration::from_secs(10), || {
        (nodes[stop].ok(&["config", "get", "quota.on_unavailable"])["value"] == "accept").then_some(())
    });
    assert!(seen.is_some());
    nodes[stop].kill9();
    let replies = send_each(&port, Some("carol@example.com"), "carol@example.com", "x@remote.test", 1, &quota_body(10));
    assert!(replies[0].starts_with("250"), "{replies:?}");
    assert!(nodes[stay].log_text().contains("daily quota could not be charged"), "{}", nodes[stay].log_text());
}
