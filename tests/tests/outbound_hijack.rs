//! Account hijack detection across a 3-node cluster, the real binary on
//! every node: a burst from one account spread round-robin over the nodes
//! is counted through Raft; past `hijack.messages_max` the account is
//! frozen on every node and the administrator's notice lands in their
//! Maildir, naming the account, the count, the window and the clients. A
//! reply with the notice's token unfreezes only when the administrator is
//! logged in; a forged one (no login, or another user's) changes nothing,
//! and the token works once.

mod common;

use common::*;
use std::time::Duration;

fn frozen_everywhere(nodes: &[Node], user: &str, frozen: bool) -> bool {
    nodes.iter().all(|n| {
        n.ok(&["user", "list"])
            .as_array()
            .is_some_and(|users| users.iter().any(|u| u["address"] == user && u["frozen"] == frozen))
    })
}

fn body(subject: &str, text: &str) -> String {
    format!("Subject: {subject}\r\n\r\n{text}\r\n")
}

#[test]
fn a_burst_over_three_nodes_freezes_the_account_and_an_admins_reply_unfreezes_it() {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let sink_port = free_port();
    let _sink = smtp_sink("127.0.0.10", sink_port, &[], None);

    let nodes = three_nodes(root.path(), "");
    let n1 = &nodes[0];
    n1.ok(&["domain", "add", "example.com"]);
    for user in ["alice", "carol", "admin"] {
        n1.ok(&["user", "add", &format!("{user}@example.com"), "--password", "correct horse"]);
    }
    for (k, v) in [
        ("smtp.hostname", "mx.example.com"),
        ("relay.smarthost", &format!("127.0.0.10:{sink_port}")),
        ("hijack.messages_max", "5"),
        ("notify.admin_addresses", "admin@example.com"),
    ] {
        n1.ok(&["config", "set", k, v]);
    }
    let ports: Vec<u16> = nodes.iter().map(|n| n.smtp_ports.submission).collect();
    for n in &nodes {
        let seen = wait_for(Duration::from_secs(10), || {
            (n.ok(&["config", "get", "notify.admin_addresses"])["value"] == "admin@example.com").then_some(())
        });
        assert!(seen.is_some(), "{} never saw the settings", n.name);
    }

    // Eight messages round-robin: five go, the sixth freezes the account,
    // and the next sessions cannot even log in.
    let burst = body("burst", "hello");
    let replies = send_each(&ports, Some("alice@example.com"), "alice@example.com", "bob@remote.test", 8, &burst);
    assert_eq!(replies.iter().filter(|r| r.starts_with("250")).count(), 5, "{replies:#?}");
    assert!(replies[5].starts_with("550 5.7.1 Account frozen: more than 5 messages in 3600 s"), "{replies:#?}");
    assert!(replies[6..].iter().all(|r| r.starts_with("ERR") && r.contains("525")), "{replies:#?}");
    let frozen =
        wait_for(Duration::from_secs(5), || frozen_everywhere(&nodes, "alice@example.com", true).then_some(()));
    assert!(frozen.is_some(), "not frozen on every node");

    // The notice: in the admin's Maildir on one of the nodes.
    let notice = wait_for(Duration::from_secs(15), || {
        nodes
            .iter()
            .flat_map(|n| maildir_files(n, "admin"))
            .map(|f| String::from_utf8_lossy(&f).into_owned())
            .find(|f| f.contains("Subject: Account alice@example.com frozen: 5 messages in 3600 s [unfreeze:"))
    })
    .unwrap_or_else(|| {
        let logs: String = nodes.iter().map(Node::log_text).collect();
        panic!("no hijack notice for the admin:\n{logs}")
    });
    for part in [
        "Reply-To: <gatehouse-unfreeze@example.com>",
        "Auto-Submitted: auto-generated",
        "sent 5 messages within 3600 seconds",
        "127.0.0.1 submission",
        "gatehouse user unfreeze alice@example.com",
    ] {
        assert!(notice.contains(part), "{part:?} missing from the notice:\n{notice}");
    }
    let at = notice.find("[unfreeze:").unwrap() + "[unfreeze:".len();
    let token = &notice[at..at + 32];
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()), "{token}");
    let reply = body(&format!("Re: Account alice@example.com frozen [unfreeze:{token}]"), "It was me.");

    // Forged: no login on the MX port, then another user's login. Nothing changes.
    let forged =
        send_each(&[n1.smtp_ports.smtp], None, "admin@example.com", "gatehouse-unfreeze@example.com", 1, &reply);
    let as_carol = send_each(
        &[ports[1]],
        Some("carol@example.com"),
        "carol@example.com",
        "gatehouse-unfreeze@example.com",
        1,
        &reply,
    );
    assert!(as_carol[0].starts_with("250"), "a forger learns nothing: {as_carol:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert!(frozen_everywhere(&nodes, "alice@example.com", true), "a forged reply unfroze: {forged:?} {as_carol:?}");
    let logs: String = nodes.iter().map(Node::log_text).collect();
    assert!(logs.contains("unfreeze request refused: not from a logged-in administrator"), "{logs}");

    // The administrator's reply, logged in, on another node than the notice came from.
    let by_admin = send_each(
        &[ports[2]],
        Some("admin@example.com"),
        "admin@example.com",
        "gatehouse-unfreeze@example.com",
        1,
        &reply,
    );
    assert!(by_admin[0].starts_with("250 2.0.0"), "{by_admin:?}");
    assert!(nodes[2].log_text().contains("account unfrozen by an administrator's reply"), "{}", nodes[2].log_text());
    let thawed =
        wait_for(Duration::from_secs(5), || frozen_everywhere(&nodes, "alice@example.com", false).then_some(()));
    assert!(thawed.is_some(), "still frozen somewhere");
    let again = send_each(&ports, Some("alice@example.com"), "alice@example.com", "bob@remote.test", 1, &burst);
    assert!(again[0].starts_with("250"), "{again:?}");

    // The token works once.
    let reused = send_each(
        &[ports[0]],
        Some("admin@example.com"),
        "admin@example.com",
        "gatehouse-unfreeze@example.com",
        1,
        &reply,
    );
    assert!(reused[0].starts_with("550 5.7.1 Unfreeze token unknown, used or expired"), "{reused:?}");
}
