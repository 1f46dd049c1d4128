//! Remote delivery end to end: a sending Gatehouse finds MX hosts in a DNS
//! zone served by dnsmasq on loopback and relays to real peers on their own
//! loopback addresses — a second Gatehouse (over STARTTLS), smtp-sink
//! refusing with 5xx (a DSN bounce lands in the sender's Maildir) and
//! smtp-sink deferring with 4xx (retried, then delivered once the peer
//! accepts). The null sender is never bounced to. The queue CLI lists,
//! holds, releases, flushes and deletes along the way.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn new_files(dir: &Path) -> Vec<String> {
    files_in(dir).iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect()
}

fn queue(n: &Node) -> Vec<Value> {
    n.ok(&["queue", "list"]).as_array().cloned().unwrap_or_default()
}

#[test]
fn relays_by_mx_over_tls_retries_4xx_and_bounces_5xx() {
    let root = tempfile::tempdir().unwrap();
    // smtp-sink runs as nobody and must write its dumps here.
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dns_port = free_port();
    let mx_port = free_port();
    let _dns = dns_server(
        dns_port,
        &[
            "--mx-host=remote.test,mx.remote.test,10".into(),
            "--host-record=mx.remote.test,127.0.0.2".into(),
            "--mx-host=bounce.test,mx.bounce.test,10".into(),
            "--host-record=mx.bounce.test,127.0.0.3".into(),
            "--mx-host=defer.test,mx1.defer.test,10".into(),
            "--mx-host=defer.test,mx2.defer.test,20".into(),
            // mx1 has no address record at all: the relay must fall through to mx2.
            "--host-record=mx2.defer.test,127.0.0.4".into(),
            // No MX at all: the domain's own A record is the mail exchanger.
            "--host-record=nomx.test,127.0.0.2".into(),
            // Answer for nomx.test here (NOERROR, no MX) instead of refusing to recurse.
            "--local=/nomx.test/".into(),
        ],
    );

    // The receiving Gatehouse: its own single-node cluster on 127.0.0.2.
    let mut receiver = Node::new_on(root.path(), "receiver", "", "127.0.0.2", mx_port);
    receiver.serve();
    receiver.ok(&["domain", "add", "remote.test"]);
    receiver.ok(&["domain", "alias-add", "nomx.test", "remote.test"]);
    receiver.ok(&["user", "add", "bob@remote.test", "--password", "correct horse"]);
    receiver.ok(&["config", "set", "smtp.hostname", "mx.remote.test"]);
    let _bouncer = smtp_sink("127.0.0.3", mx_port, &["-f", "rcpt"], None);
    let deferrer = smtp_sink("127.0.0.4", mx_port, &["-r", "rcpt"], None);

    let extra = format!("[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\n");
    let mut sender = Node::new(root.path(), "sender", &extra);
    sender.serve();
    sender.ok(&["domain", "add", "example.com"]);
    sender.ok(&["user", "add", "alice@example.com", "--password", "correct horse"]);
    for (k, v) in [
        ("smtp.hostname", "mx.example.com"),
        ("relay.port", &mx_port.to_string()),
        ("relay.connect_timeout_s", "2"),
        ("relay.command_timeout_s", "5"),
        ("queue.min_backoff_s", "1"),
        ("queue.max_backoff_s", "1"),
    ] {
        sender.ok(&["config", "set", k, v]);
    }

    submit(
        sender.smtp_ports.submission,
        "alice@example.com",
        Some("alice@example.com"),
        &["bob@remote.test", "bob@nomx.test", "x@bounce.test", "y@defer.test"],
        "three ways",
    );

    // 1. Delivered to the second Gatehouse over STARTTLS, content intact:
    //    once through its MX record, once through nomx.test's A record.
    let bob_new = receiver.dir.join("data/mail/remote.test/bob/new");
    let both = wait_for(Duration::from_secs(15), || Some(new_files(&bob_new)).filter(|f| f.len() == 2));
    let both = both.unwrap_or_else(|| panic!("bob lacks copies; sender log:\n{}", sender.log_text()));
    assert!(both.iter().any(|f| f.contains("for <bob@nomx.test>")), "no copy via the A fallback");
    let got = both[0].clone();
    assert!(got.contains("by mx.remote.test (Gatehouse) with ESMTPS id"), "not received over TLS:\n{got}");
    assert!(got.contains("by mx.example.com (Gatehouse) with ESMTPSA id"), "sender's Received missing:\n{got}");
    assert!(got.ends_with("Subject: three ways\r\n\r\nrelay me\r\n.dot line\r\n"), "body changed:\n{got}");

    // 2. The 5xx recipient comes back to alice as an RFC 3464 bounce.
    let alice_new = sender.dir.join("data/mail/example.com/alice/new");
    let dsn = wait_for(Duration::from_secs(15), || new_files(&alice_new).into_iter().next());
    let dsn = dsn.unwrap_or_else(|| panic!("no bounce; sender log:\n{}", sender.log_text()));
    for needle in [
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Final-Recipient: rfc822; x@bounce.test\r\nAction: failed\r\nStatus: 5.3.0\r\n",
        "Remote-MTA: dns; mx.bounce.test\r\n",
        "Diagnostic-Code: smtp; 500 5.3.0 Error: command failed\r\n",
        "Subject: three ways\r\n",
    ] {
        assert!(dsn.contains(needle), "bounce lacks {needle:?}:\n{dsn}");
    }
    assert!(!dsn.contains("bob@remote.test") && !dsn.contains("y@defer.test"), "bounce names others:\n{dsn}");

    // 3. The 4xx recipient stays queued and is retried (via mx2: mx1 has no address).
    let deferred = wait_for(Duration::from_secs(15), || {
        let q = queue(&sender);
        let m = q.first()?.clone();
        (m["attempts"].as_u64()? >= 2).then_some(m)
    })
    .unwrap_or_else(|| panic!("not retried: {:?}\n{}", queue(&sender), sender.log_text()));
    let pending: Vec<&Value> =
        deferred["recipients"].as_array().unwrap().iter().filter(|r| r["state"] == "pending").collect();
    assert_eq!(pending.len(), 1, "{deferred}");
    assert_eq!(pending[0]["address"], "y@defer.test");
    assert_eq!(pending[0]["status"], "4.3.0", "{deferred}");
    let id = deferred["queue_id"].as_str().unwrap().to_string();

    // Hold stops the attempts; the human listing marks it with '!'.
    sender.ok(&["queue", "hold", &id]);
    let held_at = queue(&sender)[0]["attempts"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let q = queue(&sender);
    assert_eq!(q[0]["held"], true);
    assert_eq!(q[0]["attempts"].as_u64().unwrap(), held_at, "a held message was attempted");
    let listing = Command::new(binary()).arg("-c").arg(&sender.config).args(["queue", "list"]).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    assert!(listing.contains(&format!("{id}!")) && listing.contains("y@defer.test"), "{listing}");
    let shown = sender.ok(&["queue", "show", &id]);
    assert!(shown["message"].as_str().unwrap().contains("Subject: three ways"), "{shown}");

    // The peer starts accepting; release delivers it and the queue empties.
    drop(deferrer);
    let dump = root.path().join("dump");
    std::fs::create_dir(&dump).unwrap();
    std::fs::set_permissions(&dump, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let _accepter = smtp_sink("127.0.0.4", mx_port, &[], Some(&dump));
    sender.ok(&["queue", "release", &id]);
    let emptied = wait_for(Duration::from_secs(15), || queue(&sender).is_empty().then_some(()));
    assert!(emptied.is_some(), "still queued: {:?}\n{}", queue(&sender), sender.log_text());
    let dumped = new_files(&dump).join("\n");
    assert!(dumped.contains("Subject: three ways"), "smtp-sink got no message: {dumped:?}");

    // 4. Trusted networks relay without AUTH; the null sender's failure is never bounced.
    sender.ok(&["config", "set", "smtp.trusted_networks", "127.0.0.0/8"]);
    submit(sender.smtp_ports.smtp, "", None, &["z@bounce.test"], "from the null sender");
    let gone = wait_for(Duration::from_secs(15), || queue(&sender).is_empty().then_some(()));
    assert!(gone.is_some(), "null-sender message not settled: {:?}", queue(&sender));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(new_files(&alice_new).len(), 1, "a bounce went to the null sender");
    assert!(sender.log_text().contains("never bounce a bounce"), "{}", sender.log_text());

    // Flush and delete on a message held from the start.
    submit(sender.smtp_ports.smtp, "alice@example.com", None, &["w@nowhere-mx.test"], "to delete");
    let q = wait_for(Duration::from_secs(10), || {
        let q = queue(&sender);
        (!q.is_empty()).then_some(q)
    })
    .unwrap();
    let victim = q[0]["queue_id"].as_str().unwrap().to_string();
    assert_eq!(sender.ok(&["queue", "flush"])["ok"], true);
    assert_eq!(sender.ok(&["queue", "delete", &victim])["messages"], 1);
    let deleted = wait_for(Duration::from_secs(10), || queue(&sender).is_empty().then_some(()));
    assert!(deleted.is_some(), "delete left {:?}", queue(&sender));
    let err = sender.try_ok(&["queue", "delete", &victim]).unwrap_err();
    assert!(err.contains("queue_id"), "{err}");
}

/// The smarthost is a second Gatehouse that requires login: with
/// `relay.smarthost_tls = require` the sender checks its certificate (the
/// CA given in `relay.smarthost_ca`) and logs in over TLS, and the message
/// arrives authenticated; a smarthost that offers no STARTTLS (smtp-sink)
/// gets nothing, the message stays deferred with the reason; the password
/// never shows in `config get`, an export without `--secrets` or the log.
#[test]
fn smarthost_with_required_tls_and_login() {
    let root = tempfile::tempdir().unwrap();
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let dns_port = free_port();
    let smart_port = free_port();
    let _dns = dns_server(
        dns_port,
        &["--host-record=mx.smart.test,127.0.0.13".into(), "--host-record=plain.smart.test,127.0.0.14".into()],
    );
    let mut smart = Node::new_on(root.path(), "smart", "", "127.0.0.13", smart_port);
    smart.serve();
    smart.ok(&["domain", "add", "smart.test"]);
    smart.ok(&["user", "add", "bob@smart.test", "--password", "correct horse"]);
    smart.ok(&["user", "add", "relay@smart.test", "--password", "relay secret 1"]);
    // Its certificate names its host name: set one, and let it make a new certificate.
    smart.ok(&["config", "set", "smtp.hostname", "mx.smart.test"]);
    // A relay account sends for other people's addresses.
    smart.ok(&["config", "set", "smtp.sender_must_match_login", "false"]);
    smart.kill9();
    std::fs::remove_dir_all(smart.dir.join("data/smtp-tls")).unwrap();
    smart.serve();
    let ca = std::fs::read_to_string(smart.dir.join("data/smtp-tls/cert.pem")).unwrap();

    let extra = format!("[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\n");
    let mut sender = Node::new(root.path(), "sender", &extra);
    sender.serve();
    sender.ok(&["domain", "add", "example.com"]);
    sender.ok(&["user", "add", "alice@example.com", "--password", "correct horse"]);
    for (k, v) in [
        ("smtp.hostname", "mx.example.com"),
        ("relay.smarthost", format!("mx.smart.test:{smart_port}").as_str()),
        ("relay.smarthost_tls", "require"),
        ("relay.smarthost_ca", ca.as_str()),
        ("relay.smarthost_username", "relay@smart.test"),
        ("relay.smarthost_password", "relay secret 1"),
        ("queue.min_backoff_s", "1"),
        ("queue.max_backoff_s", "1"),
    ] {
        sender.ok(&["config", "set", k, v]);
    }
    submit(
        sender.smtp_ports.submission,
        "alice@example.com",
        Some("alice@example.com"),
        &["bob@smart.test"],
        "via smarthost",
    );
    let bob_new = smart.dir.join("data/mail/smart.test/bob/new");
    let got = wait_for(Duration::from_secs(20), || files_in(&bob_new).into_iter().next())
        .unwrap_or_else(|| panic!("nothing at the smarthost:\n{}", sender.log_text()));
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(got.contains("Subject: via smarthost"), "{got}");
    assert!(got.contains("with ESMTPSA"), "the smarthost did not see a TLS login: {got}");

    // Secrets stay secret.
    assert_eq!(sender.ok(&["config", "get", "relay.smarthost_password"])["value"], "(set)");
    let export = sender.ok(&["export"]).to_string();
    assert!(!export.contains("relay secret 1"), "{export}");
    assert!(sender.ok(&["export", "--secrets"]).to_string().contains("relay secret 1"));
    assert!(!sender.log_text().contains("relay secret 1"), "the password reached the log");

    // A smarthost without STARTTLS: deferred, never sent in plain text.
    let dump = root.path().join("plain");
    std::fs::create_dir(&dump).unwrap();
    std::fs::set_permissions(&dump, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let plain_port = free_port();
    let _plain = smtp_sink("127.0.0.14", plain_port, &[], Some(&dump));
    sender.ok(&["config", "set", "relay.smarthost", &format!("plain.smart.test:{plain_port}")]);
    submit(sender.smtp_ports.submission, "alice@example.com", Some("alice@example.com"), &["bob@smart.test"], "no tls");
    let deferred = wait_for(Duration::from_secs(20), || {
        let q = sender.ok(&["queue", "list"]);
        let diagnostic = q[0]["recipients"][0]["diagnostic"].as_str().map(str::to_string)?;
        (q[0]["attempts"].as_u64() >= Some(2)).then_some(diagnostic)
    })
    .unwrap_or_else(|| panic!("not deferred: {}", sender.ok(&["queue", "list"])));
    assert!(deferred.contains("does not offer STARTTLS and relay.smarthost_tls = require"), "{deferred}");
    assert!(files_in(&dump).is_empty(), "mail went out in plain text");

    // Back to the real smarthost, but trusting another CA: its certificate fails, nothing is sent.
    let other_ca = std::fs::read_to_string(sender.dir.join("data/smtp-tls/cert.pem")).unwrap();
    sender.ok(&["config", "set", "relay.smarthost_ca", &other_ca]);
    sender.ok(&["config", "set", "relay.smarthost", &format!("mx.smart.test:{smart_port}")]);
    sender.ok(&["queue", "flush"]);
    let refused = wait_for(Duration::from_secs(20), || {
        let q = sender.ok(&["queue", "list"]);
        let diagnostic = q[0]["recipients"][0]["diagnostic"].as_str()?.to_string();
        diagnostic.contains("failed and relay.smarthost_tls = require").then_some(diagnostic)
    });
    assert!(refused.is_some(), "{}", sender.ok(&["queue", "list"]));
    assert_eq!(files_in(&bob_new).len(), 1, "a message went to a smarthost whose certificate failed");
}

/// An inbound relay domain (MailPlus Relay Control): mail for it is taken
/// from anyone and relayed to the domain's own MX — past the smarthost —
/// and its recipient list refuses the others.
#[test]
fn inbound_relay_domain_goes_to_its_own_mx() {
    let root = tempfile::tempdir().unwrap();
    let (_sink, sink_port, dump) = keeping_sink(root.path(), "127.0.0.15");
    let dns_port = free_port();
    let _dns = dns_server(
        dns_port,
        &["--mx-host=relayed.test,mx.relayed.test,10".into(), "--host-record=mx.relayed.test,127.0.0.15".into()],
    );
    let extra = format!("[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\n");
    let mut node = Node::new(root.path(), "n1", &extra);
    node.serve();
    node.ok(&["domain", "add", "example.com"]);
    for (k, v) in [
        ("smtp.hostname", "mx.example.com"),
        ("relay.port", sink_port.to_string().as_str()),
        // Nothing listens there: relay-domain mail must not go this way.
        ("relay.smarthost", "127.0.0.16:9"),
    ] {
        node.ok(&["config", "set", k, v]);
    }
    node.ok(&["relay-domain", "add", "relayed.test", "--recipients", "ann@relayed.test,Bob@relayed.test"]);
    let listed = node.ok(&["relay-domain", "list"]);
    assert_eq!(listed[0]["recipients"], serde_json::json!(["ann@relayed.test", "bob@relayed.test"]), "{listed}");
    let bad = node.try_ok(&["relay-domain", "add", "relayed.test", "--recipients", "eve@elsewhere.test"]).unwrap_err();
    assert!(bad.contains("recipients"), "{bad}");

    let said = converse(
        node.smtp_ports.smtp,
        "127.0.0.1",
        "someone@outside.test",
        &["ann@relayed.test", "carl@relayed.test", "x@other.test"],
    );
    assert!(said.contains("RCPT 250"), "{said}");
    assert!(
        said.contains("RCPT 550 5.1.1 Recipient address rejected: user unknown in relay recipient table"),
        "{said}"
    );
    assert!(said.contains("RCPT 554 5.7.1"), "not an open relay: {said}");
    assert!(said.contains("DATA 250"), "{said}");
    // smtp-sink writes its file as the data comes: wait for the whole message.
    let got = wait_for(Duration::from_secs(20), || {
        files_in(&dump).into_iter().find(|f| String::from_utf8_lossy(f).contains("Subject: screening"))
    });
    assert!(got.is_some(), "nothing at relayed.test's MX:\n{}", node.log_text());
    node.ok(&["relay-domain", "remove", "relayed.test"]);
    let after = converse(node.smtp_ports.smtp, "127.0.0.1", "someone@outside.test", &["ann@relayed.test"]);
    assert!(after.contains("RCPT 554 5.7.1"), "{after}");
}
