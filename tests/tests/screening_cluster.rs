//! Screening across a 3-node cluster, against the real binary and a real
//! DNS server (dnsmasq) on loopback: greylisting whose triplets follow the
//! client from node to node, intrusion prevention that blocks on every node,
//! and DNSBL scoring at connect. Clients get addresses of their own on
//! 127.0.0.0/8, so each phase has its own client IP.

mod common;

use common::*;
use serde_json::Value;
use std::time::{Duration, Instant};

fn set(n: &Node, key: &str, value: &str) {
    n.ok(&["config", "set", key, value]);
}

/// Waits until `node` has applied everything `leader` had applied when asked.
fn caught_up(leader: &Node, nodes: &[&Node]) {
    let target = leader.status()["applied_index"].as_u64().unwrap();
    for n in nodes {
        let seen = wait_for(Duration::from_secs(3), || {
            (n.status()["applied_index"].as_u64().unwrap_or(0) >= target).then_some(())
        });
        assert!(seen.is_some(), "{} did not catch up to index {target}", n.name);
    }
}

fn triplets(n: &Node, pending: bool) -> Vec<Value> {
    let args: &[&str] = if pending { &["greylist", "pending"] } else { &["greylist", "list"] };
    n.ok(args).as_array().cloned().unwrap_or_default()
}

#[test]
fn greylisting_intrusion_prevention_and_dnsbl_across_the_cluster() {
    let root = tempfile::tempdir().unwrap();
    let dns_port = free_port();
    let records: Vec<String> = [
        // one.bl.test (score 1) lists .88 and .99; two.bl.test (score 2, only
        // 127.0.0.2-127.0.0.11 count) lists .99, and answers .88 with an error code.
        "--host-record=88.0.0.127.one.bl.test,127.0.0.2",
        "--host-record=99.0.0.127.one.bl.test,127.0.0.2",
        "--host-record=99.0.0.127.two.bl.test,127.0.0.4",
        "--host-record=88.0.0.127.two.bl.test,127.255.255.254",
        "--local=/bl.test/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _dns = dns_server(dns_port, &records);
    let extra = format!("[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\n");
    let mut nodes = three_nodes(root.path(), &extra);
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    n1.ok(&["domain", "add", "example.com"]);
    n1.ok(&["user", "add", "alice@example.com", "--password", "correct horse"]);
    n1.ok(&["user", "add", "bob@example.com", "--password", "correct horse"]);

    // --- Greylisting: first try on node 1, retry on node 2 ---------------
    set(n1, "greylist.default_action", "greylist");
    set(n1, "greylist.delay_s", "2");
    caught_up(n1, &[n2, n3]);
    let first_try = Instant::now();
    let out = converse(n1.smtp_ports.smtp, "127.0.0.21", "sender@remote.example", &["alice@example.com"]);
    assert!(out.contains("RCPT 451 4.7.1 <alice@example.com>: Recipient address rejected: Greylisted"), "{out}");
    // Node 3 lists the pending triplet (the write went through the proposer, unwaited).
    let listed = wait_for(Duration::from_secs(3), || {
        triplets(n3, true).into_iter().find(|t| t["recipient"] == "alice@example.com")
    })
    .expect("node 3 never listed the triplet");
    assert_eq!(listed["network"], "127.0.0.0/24");
    assert_eq!(listed["sender"], "sender@remote.example");
    // Too early on node 2: still deferred.
    let out = converse(n2.smtp_ports.smtp, "127.0.0.21", "sender@remote.example", &["alice@example.com"]);
    assert!(out.contains("RCPT 451 4.7.1"), "{out}");
    // After the delay, through another node: accepted and delivered there.
    std::thread::sleep(Duration::from_secs(2).saturating_sub(first_try.elapsed()) + Duration::from_millis(200));
    let out = converse(n2.smtp_ports.smtp, "127.0.0.21", "sender@remote.example", &["alice@example.com"]);
    assert!(out.contains("RCPT 250") && out.contains("DATA 250"), "{out}");
    let delivered = wait_for(Duration::from_secs(5), || (maildir_files(n2, "alice").len() == 1).then_some(()));
    assert!(delivered.is_some(), "{}", n2.log_text());
    let passed = wait_for(Duration::from_secs(3), || {
        triplets(n3, false).into_iter().find(|t| t["recipient"] == "alice@example.com" && !t["passed_ms"].is_null())
    });
    assert!(passed.is_some(), "node 3 never saw the triplet pass");
    // Manual authorisation: a pending triplet passes at once, on any node.
    let out = converse(n1.smtp_ports.smtp, "127.0.0.21", "sender@remote.example", &["bob@example.com"]);
    assert!(out.contains("RCPT 451"), "{out}");
    let pending = wait_for(Duration::from_secs(3), || {
        triplets(n3, true).into_iter().find(|t| t["recipient"] == "bob@example.com")
    })
    .expect("pending triplet for bob");
    let key: Vec<String> =
        ["network", "sender", "recipient"].iter().map(|k| pending[k].as_str().unwrap().to_string()).collect();
    let key: Vec<&str> = key.iter().map(String::as_str).collect();
    n3.ok(&[&["greylist", "authorize"], key.as_slice()].concat());
    caught_up(n3, &[n1]);
    let out = converse(n1.smtp_ports.smtp, "127.0.0.21", "sender@remote.example", &["bob@example.com"]);
    assert!(out.contains("RCPT 250"), "authorised triplet still deferred: {out}");
    let err = n3.try_ok(&["greylist", "authorize", "10.0.0.0/24", "a@b.example", "c@d.example"]).unwrap_err();
    assert!(err.contains("triplet"), "{err}");
    // A never rule beats the default.
    n1.ok(&["rules", "add", "--list", "greylist", "--kind", "ip", "127.0.0.22", "--action", "never"]);
    caught_up(n1, &[n2]);
    let out = converse(n2.smtp_ports.smtp, "127.0.0.22", "other@remote.example", &["alice@example.com"]);
    assert!(out.contains("RCPT 250"), "{out}");
    set(n1, "greylist.default_action", "never");

    // --- Intrusion prevention: a dictionary attack on node 1 -------------
    set(n1, "intrusion.unknown_recipients_max", "5");
    caught_up(n1, &[n2, n3]);
    let guesses = ["a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"];
    let out = converse(n1.smtp_ports.smtp, "127.0.0.31", "x@remote.example", &guesses);
    assert_eq!(out.matches("RCPT 550 5.1.1").count(), 5, "{out}");
    let blocked = wait_for(Duration::from_secs(3), || {
        let list = n2.ok(&["blocked", "list"]);
        list.as_array()?.iter().find(|b| b["ip"] == "127.0.0.31").cloned()
    })
    .expect("node 2 never learnt the block");
    assert_eq!(blocked["reason"], "5 unknown recipients");
    let out = converse(n2.smtp_ports.smtp, "127.0.0.31", "x@remote.example", &["alice@example.com"]);
    assert!(out.contains("GREETING 554"), "node 2 let the attacker in: {out}");
    assert!(out.contains("blocked: 5 unknown recipients"), "{out}");
    let out = converse(n3.smtp_ports.smtp, "127.0.0.32", "x@remote.example", &["alice@example.com"]);
    assert!(out.contains("GREETING 220") && out.contains("RCPT 250"), "a neighbour was blocked: {out}");
    n3.ok(&["blocked", "remove", "127.0.0.31"]);
    caught_up(n3, &[n2]);
    let out = converse(n2.smtp_ports.smtp, "127.0.0.31", "x@remote.example", &["alice@example.com"]);
    assert!(out.contains("GREETING 220"), "still blocked after removal: {out}");
    let err = n3.try_ok(&["blocked", "remove", "not-an-ip"]).unwrap_err();
    assert!(err.contains("ip"), "{err}");

    // --- DNSBL: two zones with scores, threshold 3 -----------------------
    n1.ok(&["rules", "add", "--list", "dnsbl", "one.bl.test"]);
    n1.ok(&["rules", "add", "--list", "dnsbl", "two.bl.test", "--score", "2", "--reply", "127.0.0.2-127.0.0.11"]);
    set(n1, "dnsbl.threshold", "3");
    caught_up(n1, &[n2, n3]);
    let out = converse(n2.smtp_ports.smtp, "127.0.0.88", "x@remote.example", &["alice@example.com"]);
    assert!(out.contains("GREETING 220") && out.contains("DATA 250"), "score 1 is below 3: {out}");
    let out = converse(n2.smtp_ports.smtp, "127.0.0.99", "x@remote.example", &["alice@example.com"]);
    assert!(out.contains("GREETING 554 5.7.1"), "score 3 reaches the threshold: {out}");
    assert!(out.contains("one.bl.test") && out.contains("two.bl.test"), "the lists are named: {out}");
    let out = converse(n3.smtp_ports.smtp, "127.0.0.1", "x@remote.example", &["alice@example.com"]);
    assert!(out.contains("GREETING 220"), "{out}");
    // At threshold 1 the single listing refuses too; the submission port never asks DNSBLs.
    set(n1, "dnsbl.threshold", "1");
    caught_up(n1, &[n2]);
    let out = converse(n2.smtp_ports.smtp, "127.0.0.88", "x@remote.example", &["alice@example.com"]);
    assert!(out.contains("GREETING 554 5.7.1") && out.contains("one.bl.test"), "{out}");
    let out = converse(n2.smtp_ports.submission, "127.0.0.88", "x@remote.example", &[]);
    assert!(out.contains("GREETING 220"), "{out}");

    // Rules export and import round trip, naming bad fields.
    let exported = root.path().join("rules.json");
    n2.ok(&["rules", "export", "-o", exported.to_str().unwrap()]);
    let before = n2.ok(&["rules", "list"]);
    let imported = n3.ok(&["rules", "import", exported.to_str().unwrap(), "--replace"]);
    assert_eq!(imported["added"].as_u64(), before.as_array().map(|a| a.len() as u64));
    let bad = root.path().join("bad.json");
    std::fs::write(&bad, r#"[{"list": "dnsbl", "kind": "zone", "value": "x.example", "reply": "banana"}]"#).unwrap();
    let err = n3.try_ok(&["rules", "import", bad.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("rules[0].reply"), "{err}");

    // Without quorum, node 1 still decides from what it knows: the passed
    // triplet passes, a new one is deferred, and neither waits for the cluster.
    set(n1, "greylist.default_action", "greylist");
    caught_up(n1, &[n2, n3]);
    nodes[1].kill9();
    nodes[2].kill9();
    let n1 = &nodes[0];
    let started = Instant::now();
    let out = converse(n1.smtp_ports.smtp, "127.0.0.21", "sender@remote.example", &["alice@example.com"]);
    assert!(out.contains("RCPT 250") && out.contains("DATA 250"), "passed triplet refused without quorum: {out}");
    let out = converse(n1.smtp_ports.smtp, "127.0.0.23", "new@remote.example", &["alice@example.com"]);
    assert!(out.contains("RCPT 451 4.7.1"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(3), "inbound waited for a commit: {:?}", started.elapsed());
}
