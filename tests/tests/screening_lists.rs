//! Black and white lists across a 3-node cluster: a rule added on one node
//! is in force on the others (refused at connect with 554 5.7.1), the
//! whitelist wins over the blacklist, and the discard action accepts and
//! drops.

mod common;

use common::*;
use std::time::Duration;

/// The first line the server sends to a new connection.
fn greeting(port: u16) -> String {
    let script = format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
print(s.makefile("rb").readline().decode().strip())
"#
    );
    String::from_utf8_lossy(&python(&script).stdout).trim().to_string()
}

fn send(port: u16, subject: &str) -> String {
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=10)
print(s.sendmail("a@b.org", ["alice@example.com"], b"Subject: {subject}\r\n\r\nx\r\n"))
s.quit()
"#
    );
    let out = python(&script);
    assert!(out.status.success(), "send failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn inbox(n: &Node) -> usize {
    std::fs::read_dir(n.dir.join("data/mail/example.com/alice/new")).map(|d| d.count()).unwrap_or(0)
}

fn rule_count(n: &Node) -> usize {
    n.ok(&["rules", "list"]).as_array().map_or(0, Vec::len)
}

#[test]
fn lists_replicate_and_decide_on_every_node() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), "");
    let (n1, n2, n3) = (&nodes[0], &nodes[1], &nodes[2]);
    n1.ok(&["domain", "add", "example.com"]);
    n1.ok(&["user", "add", "alice@example.com", "--password", "correct horse"]);

    let black = n1.ok(&["rules", "add", "--list", "black", "--kind", "subnet", "127.0.0.0/255.0.0.0"]);
    let black_id = black["id"].as_u64().unwrap().to_string();
    assert!(wait_for(Duration::from_secs(2), || (rule_count(n2) == 1).then_some(())).is_some());
    let refused = greeting(n2.smtp_ports.smtp);
    assert!(refused.starts_with("554 5.7.1 Client host [127.0.0.1] blocked by blacklist rule"), "{refused}");
    assert_eq!(n2.ok(&["rules", "list"])[0]["value"], "127.0.0.0/8", "stored in CIDR form");

    // The whitelist wins: added on node 3, mail passes on node 2.
    n3.ok(&["rules", "add", "--list", "white", "--kind", "ip", "127.0.0.1", "--comment", "monitoring"]);
    assert!(wait_for(Duration::from_secs(2), || (rule_count(n2) == 2).then_some(())).is_some());
    assert!(greeting(n2.smtp_ports.smtp).starts_with("220 "));
    send(n2.smtp_ports.smtp, "whitelisted");
    assert!(wait_for(Duration::from_secs(5), || (inbox(n2) == 1).then_some(())).is_some(), "{}", n2.log_text());

    // Discard: a 250 for the client, nothing in the mailbox.
    let white_id = n1.ok(&["rules", "list"])[1]["id"].as_u64().unwrap().to_string();
    n1.ok(&["rules", "remove", &white_id]);
    n1.ok(&["rules", "remove", &black_id]);
    n1.ok(&["rules", "add", "--list", "black", "--kind", "ip", "127.0.0.1", "--action", "discard"]);
    assert!(wait_for(Duration::from_secs(2), || (rule_count(n3) == 1).then_some(())).is_some());
    assert_eq!(send(n3.smtp_ports.smtp, "discarded").trim(), "{}", "the client saw an acceptance");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inbox(n3), 0, "a discarded message was delivered");
    assert!(n3.log_text().contains("message discarded by blacklist"));

    // Sender and recipient rules, decided at RCPT on another node.
    let ip_discard = n1.ok(&["rules", "list"])[0]["id"].as_u64().unwrap().to_string();
    n1.ok(&["rules", "remove", &ip_discard]);
    n1.ok(&["rules", "add", "--list", "black", "--kind", "sender", "Spam@Bad.Example"]);
    n1.ok(&["rules", "add", "--list", "black", "--kind", "recipient", "alice@example.com", "--action", "discard"]);
    assert!(wait_for(Duration::from_secs(2), || (rule_count(n2) == 2).then_some(())).is_some());
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=10)
try:
    s.sendmail("spam@bad.example", ["alice@example.com"], b"Subject: spam\r\n\r\nx\r\n")
    raise SystemExit("accepted a blacklisted sender")
except smtplib.SMTPRecipientsRefused as e:
    code, text = e.recipients["alice@example.com"]
    print(code, text.decode())
print(s.sendmail("friend@good.example", ["alice@example.com"], b"Subject: to the trap\r\n\r\nx\r\n"))
s.quit()
"#,
        port = n2.smtp_ports.smtp
    );
    let out = python(&script);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("554 5.7.1 <spam@bad.example>: Sender address rejected: blacklisted"), "{stdout}");
    assert!(stdout.contains("{}"), "the discarded recipient looked refused: {stdout}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(inbox(n2), 1, "only the whitelisted message of before is in the inbox");

    // Bad rules are refused naming the field; duplicates and unknown ids too.
    let err = n2.try_ok(&["rules", "add", "--list", "black", "--kind", "sender-domain", "bad.example"]).unwrap_err();
    assert!(err.contains("kind"), "{err}");
    let err = n2.try_ok(&["rules", "add", "--list", "black", "--kind", "ip", "300.1.1.1"]).unwrap_err();
    assert!(err.contains("value"), "{err}");
    let err = n2.try_ok(&["rules", "add", "--list", "black", "--kind", "sender", "spam@bad.example"]).unwrap_err();
    assert!(err.contains("already exists"), "{err}");
    let err = n2.try_ok(&["rules", "remove", "999"]).unwrap_err();
    assert!(err.contains("no rule 999"), "{err}");
}
