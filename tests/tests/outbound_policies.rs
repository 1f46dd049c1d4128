//! Outbound policies on one node, the real binary and a real peer (an
//! smtp-sink as the smarthost, keeping what it gets): automatic forwards
//! from our own users to external addresses are refused when
//! `smtp.block_auto_forwarding` is on (and pass to local ones, and when it
//! is off); mail to postmaster@ and mailer-daemon@ of every local domain is
//! accepted from anyone and delivered to `postmaster.addresses`.

mod common;

use common::*;
use std::time::Duration;

fn mail(headers: &str, subject: &str) -> String {
    format!("From: <alice@example.com>\r\n{headers}Subject: {subject}\r\n\r\nforwarded text\r\n")
}

#[test]
fn automatic_forwards_are_refused_and_postmaster_mail_goes_out() {
    let root = tempfile::tempdir().unwrap();
    let (_sink, sink_port, dump) = keeping_sink(root.path(), "127.0.0.11");
    let (node, ports) = smtp_node(root.path());
    node.ok(&["domain", "alias-add", "example.net", "example.com"]);
    for (k, v) in [
        ("relay.smarthost", format!("127.0.0.11:{sink_port}").as_str()),
        ("smtp.block_auto_forwarding", "true"),
        ("postmaster.addresses", "it@partner.test"),
    ] {
        node.ok(&["config", "set", k, v]);
    }
    let alice = |to: &str, body: &str| {
        send_each(&[ports.submission], Some("alice@example.com"), "alice@example.com", to, 1, body).remove(0)
    };

    let forwarded = mail("Auto-Submitted: auto-forwarded\r\n", "auto 1");
    let refused = alice("bob@remote.test", &forwarded);
    assert_eq!(
        refused,
        "550 5.7.1 Automatic forwarding to external addresses is not allowed here (Auto-Submitted: auto-forwarded)"
    );
    assert!(alice("alice@example.com", &forwarded).starts_with("250"), "to a local mailbox it is fine");
    let exchange = mail("X-MS-Exchange-Inbox-Rules-Loop: alice@example.com\r\n", "auto 2");
    assert!(alice("bob@remote.test", &exchange).starts_with("550 5.7.1"), "an Outlook rule");
    let sieve = mail("Auto-Submitted: auto-generated\r\nResent-From: <alice@example.com>\r\n", "auto 3");
    assert!(alice("bob@remote.test", &sieve).starts_with("550 5.7.1"), "a Sieve redirect");
    assert!(alice("bob@remote.test", &mail("", "Fwd: by hand")).starts_with("250"), "a forward by hand");
    node.ok(&["config", "set", "smtp.block_auto_forwarding", "false"]);
    assert!(alice("bob@remote.test", &mail("Auto-Submitted: auto-forwarded\r\n", "allowed")).starts_with("250"));
    assert!(node.log_text().contains("refused: automatic forward to an external address"));

    // postmaster@ and MAILER-DAEMON@ (of a domain alias too) from a stranger on port 25.
    for to in ["postmaster@example.com", "MAILER-DAEMON@example.net"] {
        let reply = send_each(&[ports.smtp], None, "someone@outside.test", to, 1, &mail("", "to the postmaster"));
        assert!(reply[0].starts_with("250"), "{to}: {reply:?}");
    }
    let got = wait_for(Duration::from_secs(20), || {
        let files: Vec<String> = files_in(&dump).iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
        let postmaster: Vec<String> = files.into_iter().filter(|f| f.contains("Subject: to the postmaster")).collect();
        (postmaster.len() == 2).then_some(postmaster)
    })
    .unwrap_or_else(|| panic!("the sink has {} messages:\n{}", files_in(&dump).len(), node.log_text()));
    assert!(got.iter().all(|f| f.contains("it@partner.test")), "{got:#?}");
    let sent: Vec<String> = files_in(&dump).iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    assert!(!sent.iter().any(|f| f.contains("Subject: auto ")), "a refused forward went out");
    assert!(sent.iter().any(|f| f.contains("Subject: Fwd: by hand")));
}
