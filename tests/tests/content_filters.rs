//! The attachment filter and the dangerous-content checks end to end: real
//! messages over SMTP to the real binary, the verdict read from the reply to
//! the end of DATA and from the bytes in the Maildir.

mod common;

use common::mime::{encrypted_zip, html, pe_program, plain, with_attachments, zip};
use common::{maildir_files, send_raw, smtp_node, wait_for, Node};
use std::time::Duration;

const FROM: &str = "sender@example.org";
const TO: [&str; 1] = ["alice@example.com"];

/// Sends and expects a refusal starting with `code` that names `names`.
fn refused(port: u16, message: &[u8], code: &str, names: &str) {
    let reply = send_raw(port, FROM, &TO, message);
    assert!(reply.starts_with(code), "expected {code}: {reply}");
    assert!(reply.contains(names), "the refusal should name {names:?}: {reply}");
}

/// Sends, expects 250, and returns the delivered bytes (the `n`th message, from 0).
fn delivered(node: &Node, port: u16, message: &[u8], n: usize) -> String {
    let reply = send_raw(port, FROM, &TO, message);
    assert!(reply.starts_with("250"), "{reply}");
    let files = wait_for(Duration::from_secs(10), || {
        let files = maildir_files(node, "alice");
        (files.len() > n).then_some(files)
    })
    .unwrap_or_else(|| panic!("message {n} not delivered"));
    assert_eq!(files.len(), n + 1, "exactly one more message delivered");
    String::from_utf8_lossy(&files[n]).into_owned()
}

#[test]
fn attachment_filter_by_extension_by_content_inside_archives_and_by_size() {
    let root = tempfile::tempdir().unwrap();
    let (n, ports) = smtp_node(root.path());
    let port = ports.smtp;

    // Bad rules are refused naming the field.
    let err = n.try_ok(&["content", "filter", "add", "--match", "extension", "a b"]).unwrap_err();
    assert!(err.contains("value"), "{err}");
    let exe = n.ok(&["content", "filter", "add", "--match", "extension", "EXE", "--comment", "programs"]);
    let err = n.try_ok(&["content", "filter", "add", "--match", "extension", ".exe"]).unwrap_err();
    assert!(err.contains("exists") || err.contains("already"), "{err}");
    n.ok(&["content", "filter", "add", "--match", "type", "executable"]);
    n.ok(&["content", "filter", "add", "--match", "extension", "bat", "--action", "remove"]);
    let list = n.ok(&["content", "filter", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 3, "{list}");
    assert_eq!(list[0]["value"], "exe", "normalised: {list}");

    // By extension, by content under a harmless name, inside a zip.
    refused(port, &with_attachments("x", &[("run.exe", b"not really")]), "554 5.7.1", "run.exe");
    refused(port, &with_attachments("x", &[("invoice.pdf", &pe_program())]), "554 5.7.1", "invoice.pdf");
    let archive = zip(&[("readme.txt", b"hi"), ("tools/setup.exe", b"data")]);
    refused(port, &with_attachments("x", &[("bundle.zip", &archive)]), "554 5.7.1", "bundle.zip/tools/setup.exe");

    // Remove: delivered without the file, a note in its place, the rest intact.
    let text = delivered(&n, port, &with_attachments("cleanup", &[("start.bat", b"@echo off\r\ndel *.*")]), 0);
    assert!(text.contains("The attachment \"start.bat\" was removed"), "{text}");
    assert!(text.contains("see attached"), "{text}");
    assert!(!text.contains("QGVjaG8gb2Zm"), "the attachment's base64 is gone: {text}");
    assert!(text.contains("X-Gatehouse-Content-Warning: attachment-filter"), "{text}");

    // Over the size limit: 552 5.3.4 naming the attachment.
    n.ok(&["config", "set", "content.attachment_size_max", "1000"]);
    refused(port, &with_attachments("big", &[("photo.jpg", &[7u8; 2000])]), "552 5.3.4", "photo.jpg");
    delivered(&n, port, &with_attachments("small", &[("photo.jpg", &[7u8; 900])]), 1);

    // Export, then import with --replace of an empty list clears the rules; the export restores them.
    let file = root.path().join("filters.json");
    n.ok(&["content", "filter", "export", "-o", file.to_str().unwrap()]);
    let empty = root.path().join("empty.json");
    std::fs::write(&empty, "[]").unwrap();
    n.ok(&["content", "filter", "import", empty.to_str().unwrap(), "--replace"]);
    delivered(&n, port, &with_attachments("allowed now", &[("run.exe", b"not really")]), 2);
    let imported = n.ok(&["content", "filter", "import", file.to_str().unwrap()]);
    assert_eq!(imported["added"], 3, "{imported}");
    refused(port, &with_attachments("x", &[("run.exe", b"not really")]), "554 5.7.1", "run.exe");
    std::fs::write(&empty, "{\"not\": \"a list\"}").unwrap();
    let err = n.try_ok(&["content", "filter", "import", empty.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("not a JSON array"), "{err}");
    // The import gave the rules new ids; the old one is gone.
    let err = n.try_ok(&["content", "filter", "remove", &exe["id"].to_string()]).unwrap_err();
    assert!(err.contains("404") || err.contains("no "), "{err}");

    // Mail from a trusted network is the organisation's own: filtered too,
    // unless content.scan_outbound is off.
    n.ok(&["config", "set", "smtp.trusted_networks", "127.0.0.0/8"]);
    refused(port, &with_attachments("outbound", &[("run.exe", b"not really")]), "554 5.7.1", "run.exe");
    n.ok(&["config", "set", "content.scan_outbound", "false"]);
    delivered(&n, port, &with_attachments("outbound", &[("run.exe", b"not really")]), 3);
}

#[test]
fn dangerous_content_checks_each_refuse_or_tag_as_set() {
    let root = tempfile::tempdir().unwrap();
    let (n, ports) = smtp_node(root.path());
    let port = ports.smtp;

    // Refused by default.
    refused(port, &with_attachments("x", &[("report.pdf.exe", b"data")]), "554 5.7.1", "report.pdf.exe");
    let partial = b"From: <a@example.org>\r\nSubject: part 1\r\nMIME-Version: 1.0\r\n\
        Content-Type: message/partial; id=\"abc@example.org\"; number=1; total=2\r\n\r\nhalf a message\r\n";
    refused(port, partial, "554 5.7.1", "message/partial");
    let unclosed = b"From: <a@example.org>\r\nSubject: broken\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain\r\n\r\nno end\r\n";
    let long_header = format!("From: <a@example.org>\r\nSubject: {}\r\n\r\nbody\r\n", "y".repeat(1200));

    // Tagged by default: delivered with a warning header naming the check.
    let cases: [(&str, Vec<u8>); 4] = [
        ("extension-mismatch", with_attachments("x", &[("invoice.pdf", &pe_program())])),
        ("encrypted-archive", with_attachments("x", &[("secret.zip", &encrypted_zip(&[("a.txt", b"hi")]))])),
        ("html-active", html("x", "<p>Log in</p><form action=\"https://evil.example/\"><input name=p></form>")),
        ("phishing-link", html("x", "<a href=\"https://evil.example/login\">https://www.bank.example/login</a>")),
    ];
    for (i, (check, message)) in cases.iter().enumerate() {
        let text = delivered(&n, port, message, i);
        assert!(text.contains(&format!("X-Gatehouse-Content-Warning: {check}: ")), "{check}: {text}");
    }
    // A plain message has no warning.
    let text = delivered(&n, port, &plain("ordinary", b"hello"), 4);
    assert!(!text.contains("X-Gatehouse-Content-Warning"), "{text}");
    // Malformed MIME is tagged by default, refused when set so.
    let text = delivered(&n, port, unclosed, 5);
    assert!(text.contains("X-Gatehouse-Content-Warning: malformed-mime: "), "{text}");
    let text = delivered(&n, port, long_header.as_bytes(), 6);
    assert!(text.contains("X-Gatehouse-Content-Warning: malformed-mime: "), "{text}");
    n.ok(&["config", "set", "content.malformed_mime", "reject"]);
    refused(port, unclosed, "554 5.6.0", "boundary");
    refused(port, long_header.as_bytes(), "554 5.6.0", "998");

    // Each switch changes its check's action: reject, off, quarantine.
    n.ok(&["config", "set", "content.html_active", "reject"]);
    refused(port, &cases[2].1, "554 5.7.1", "form");
    n.ok(&["config", "set", "content.double_extension", "off"]);
    let text = delivered(&n, port, &with_attachments("x", &[("report.pdf.exe", b"data")]), 7);
    assert!(!text.contains("double-extension"), "{text}");
    n.ok(&["config", "set", "content.phishing_links", "quarantine"]);
    let reply = send_raw(port, FROM, &TO, &cases[3].1);
    assert!(reply.starts_with("250"), "{reply}");
    let queue = n.ok(&["queue", "list"]);
    assert!(queue.as_array().unwrap().iter().any(|e| e["held"] == true), "held: {queue}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(maildir_files(&n, "alice").len(), 8, "the quarantined message was not delivered");
}

#[test]
fn message_size_recipients_and_hops_are_cluster_settings() {
    let root = tempfile::tempdir().unwrap();
    let (n, ports) = smtp_node(root.path());
    n.ok(&["user", "add", "bob@example.com", "--password", "correct horse"]);
    n.ok(&["user", "add", "carol@example.com", "--password", "correct horse"]);
    n.ok(&["config", "set", "smtp.message_bytes_max", "4000"]);
    n.ok(&["config", "set", "smtp.recipients_max", "2"]);
    n.ok(&["config", "set", "smtp.hops_max", "3"]);
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port}, timeout=20)
s.ehlo("client.example.org")
print("SIZE", s.esmtp_features.get("size"))
s.mail("a@example.org")
for r in ["alice@example.com", "bob@example.com", "carol@example.com"]:
    print("RCPT", *s.rcpt(r))
s.rset()
s.mail("a@example.org")
s.rcpt("alice@example.com")
print("BIG", *s.data(b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n" * 1 + (b"y" * 70 + b"\r\n") * 60))
s.mail("a@example.org")
s.rcpt("alice@example.com")
print("LOOP", *s.data(b"Received: a\r\nReceived: b\r\nReceived: c\r\nReceived: d\r\nSubject: loop\r\n\r\nx\r\n"))
s.quit()
"#,
        port = ports.smtp
    );
    let out = common::python(&script);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("SIZE 4000"), "{text}");
    assert!(text.contains("RCPT 452 b'4.5.3"), "the third recipient: {text}");
    assert!(text.contains("BIG 552 b'5.3.4"), "{text}");
    assert!(text.contains("LOOP 554 b'5.4.6"), "{text}");

    // The old node-file keys are refused at start, with directions.
    let n2 = Node::new(root.path(), "old", "");
    n2.set_smtp_limits("message_bytes_max = 1000");
    let out = std::process::Command::new(common::binary())
        .args(["-c", n2.config.to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("smtp.limits.message_bytes_max is now the cluster setting smtp.message_bytes_max"), "{err}");
}
