//! Failed logins across a 3-node cluster, the real binary on every node:
//! each failed AUTH is logged with the client, listener and account (never
//! the password); `intrusion.failed_logins_max` failures from one IP block
//! it on every node; the node that saw them mails the administrator a
//! digest per account.

mod common;

use common::*;
use std::time::Duration;

/// `count` sessions from `source` to `port`, each trying AUTH PLAIN once as
/// `user` with a wrong password; prints each AUTH (or greeting) reply code.
fn guess_passwords(source: &str, port: u16, user: &str, count: usize) -> Vec<String> {
    let script = format!(
        r#"
import smtplib
for i in range({count}):
    try:
        s = smtplib.SMTP("127.0.0.1", {port}, timeout=10, source_address=("{source}", 0))
        s.ehlo("guesser.example.org"); s.starttls(); s.ehlo("guesser.example.org")
        s.user, s.password = "{user}", "hunter2-guess-%d" % i
        s.auth("PLAIN", s.auth_plain)
        print("AUTH 235")
    except smtplib.SMTPConnectError as e:
        print("GREETING", e.smtp_code)
    except smtplib.SMTPAuthenticationError as e:
        print("AUTH", e.smtp_code)
    except Exception as e:
        print("ERR", type(e).__name__, str(e).replace("\n", " "))
"#
    );
    let out = python(&script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn failed_logins_are_logged_block_the_ip_everywhere_and_reach_the_admin() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), "");
    let n1 = &nodes[0];
    n1.ok(&["domain", "add", "example.com"]);
    for user in ["alice", "admin"] {
        n1.ok(&["user", "add", &format!("{user}@example.com"), "--password", "correct horse"]);
    }
    for (k, v) in [
        ("smtp.hostname", "mx.example.com"),
        ("intrusion.failed_logins_max", "4"),
        ("notify.failed_logins", "true"),
        ("notify.failed_logins_interval_s", "10"),
        ("notify.admin_addresses", "admin@example.com"),
    ] {
        n1.ok(&["config", "set", k, v]);
    }
    for n in &nodes {
        let seen = wait_for(Duration::from_secs(10), || {
            (n.ok(&["config", "get", "intrusion.failed_logins_max"])["value"] == "4").then_some(())
        });
        assert!(seen.is_some(), "{} never saw the settings", n.name);
    }

    // Four wrong passwords on node 2's submission port from 127.0.0.77.
    let guesses = guess_passwords("127.0.0.77", nodes[1].smtp_ports.submission, "alice@example.com", 4);
    assert_eq!(guesses, vec!["AUTH 535"; 4], "{guesses:?}");
    let log = nodes[1].log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(": failed login ")).collect();
    assert_eq!(lines.len(), 4, "{log}");
    assert!(
        lines.iter().all(|l| l.contains("client=127.0.0.77")
            && l.contains("listener=\"submission\"")
            && l.contains("account=alice@example.com")),
        "{lines:#?}"
    );
    assert!(!log.contains("hunter2"), "a password reached the log");

    // The IP is blocked on every node; other clients are not.
    for n in &nodes {
        let blocked = wait_for(Duration::from_secs(5), || {
            n.ok(&["blocked", "list"]).as_array().and_then(|b| b.iter().find(|e| e["ip"] == "127.0.0.77").cloned())
        });
        let entry = blocked.unwrap_or_else(|| panic!("{}: 127.0.0.77 not blocked", n.name));
        assert_eq!(entry["reason"], "4 failed logins", "{entry}");
    }
    let refused = converse(nodes[2].smtp_ports.submission, "127.0.0.77", "x@example.org", &[]);
    assert!(refused.contains("GREETING 554"), "{refused}");
    let other = guess_passwords("127.0.0.78", nodes[2].smtp_ports.submission, "alice@example.com", 1);
    assert_eq!(other, vec!["AUTH 535"], "another address is not blocked");

    // The digest: one notice for alice, from node 2, within its interval.
    let notice = wait_for(Duration::from_secs(30), || {
        maildir_files(&nodes[1], "admin")
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .find(|f| f.contains("Subject: Failed logins for alice@example.com: 4"))
    })
    .unwrap_or_else(|| panic!("no digest for the admin:\n{}", nodes[1].log_text()));
    assert_eq!(notice.matches("127.0.0.77  submission").count(), 4, "{notice}");
    assert!(!notice.contains("hunter2"), "{notice}");
}
