//! TLS, AUTH, STARTTLS injection and open-relay tricks against the real
//! binary, with swaks and Python's smtplib as clients.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn swaks(args: &[&str]) -> std::process::Output {
    Command::new("swaks").args(args).output().expect("swaks (scripts/test installs it)")
}

fn received_protocols(n: &Node) -> Vec<String> {
    maildir_files(n, "alice")
        .iter()
        .map(|f| {
            let text = String::from_utf8_lossy(f).into_owned();
            let with = text.split(" with ").nth(1).unwrap().split(' ').next().unwrap().to_string();
            with
        })
        .collect()
}

#[test]
fn swaks_and_smtplib_over_plain_starttls_smtps_and_auth() {
    let root = tempfile::tempdir().unwrap();
    let (n, p) = smtp_node(root.path());
    let server = |port: u16| format!("127.0.0.1:{port}");
    let base = ["--to", "alice@example.com", "--helo", "client.example.org", "--timeout", "10"];
    let auth = ["--auth", "PLAIN", "--auth-user", "alice@example.com", "--auth-password", "correct horse"];
    let runs: Vec<(&str, Vec<String>)> = vec![
        ("plain", vec!["--server".into(), server(p.smtp), "--from".into(), "x@elsewhere.org".into()]),
        ("starttls", vec!["--server".into(), server(p.smtp), "--from".into(), "x@elsewhere.org".into(), "-tls".into()]),
        (
            "smtps+auth",
            [
                vec!["--server".into(), server(p.smtps), "--from".into(), "alice@example.com".into(), "--tlsc".into()],
                auth.iter().map(|s| s.to_string()).collect(),
            ]
            .concat(),
        ),
        (
            "submission+auth login",
            vec![
                "--server".into(),
                server(p.submission),
                "--from".into(),
                "alice@example.com".into(),
                "-tls".into(),
                "--auth".into(),
                "LOGIN".into(),
                "--auth-user".into(),
                "alice@example.com".into(),
                "--auth-password".into(),
                "correct horse".into(),
            ],
        ),
    ];
    for (name, extra) in &runs {
        let args: Vec<&str> = base.iter().copied().chain(extra.iter().map(String::as_str)).collect();
        let out = swaks(&args);
        assert!(out.status.success(), "swaks {name} failed:\n{}", String::from_utf8_lossy(&out.stdout));
    }
    // Submission without AUTH, and AUTH before TLS, are refused.
    let out = swaks(&[&base[..], &["--server", &server(p.submission), "--from", "alice@example.com", "-tls"]].concat());
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout).contains("530 5.7.0"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out =
        swaks(&[&base[..], &["--server", &server(p.submission), "--from", "alice@example.com"], &auth[..]].concat());
    assert!(!out.status.success(), "AUTH without TLS must fail: {}", String::from_utf8_lossy(&out.stdout));

    let script = format!(
        r#"
import smtplib, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
msg = b"Subject: smtplib\r\n\r\nhi\r\n"
s = smtplib.SMTP_SSL("127.0.0.1", {smtps}, context=ctx); s.login("alice@example.com", "correct horse")
assert s.sendmail("alice@example.com", ["alice@example.com"], msg) == {{}}; s.quit()
s = smtplib.SMTP("127.0.0.1", {submission}); s.starttls(context=ctx); s.login("alice@example.com", "correct horse")
try:
    s.sendmail("bob@example.com", ["alice@example.com"], msg); raise SystemExit("spoofed sender accepted")
except smtplib.SMTPSenderRefused as e:
    assert e.smtp_code == 553, e
s.quit()
"#,
        smtps = p.smtps,
        submission = p.submission
    );
    let out = python(&script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let protocols = wait_for(Duration::from_secs(5), || Some(received_protocols(&n)).filter(|v| v.len() == 5))
        .unwrap_or_else(|| received_protocols(&n));
    let mut sorted = protocols.clone();
    sorted.sort();
    assert_eq!(sorted, vec!["ESMTP", "ESMTPS", "ESMTPSA", "ESMTPSA", "ESMTPSA"], "{protocols:?}");
}

/// "STARTTLS\r\nRSET\r\n" in one write: after the handshake, the first reply
/// is the one to our EHLO, never one to the injected RSET.
#[test]
fn starttls_injection_gets_no_reply() {
    let root = tempfile::tempdir().unwrap();
    let (n, p) = smtp_node(root.path());
    let script = format!(
        r#"
import socket, ssl
s = socket.create_connection(("127.0.0.1", {port}))
f = s.makefile("rb")
def reply():
    lines = []
    while True:
        line = f.readline()
        lines.append(line)
        if line[3:4] == b" ":
            return lines
reply()
s.sendall(b"EHLO client.example.org\r\n"); reply()
s.sendall(b"STARTTLS\r\nRSET\r\n")
r = reply(); assert r[0].startswith(b"220 "), r
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
t = ctx.wrap_socket(s, server_hostname="mx.example.com")
t.sendall(b"EHLO again.example.org\r\n")
g = t.makefile("rb")
first = g.readline()
print(first)
assert first.startswith(b"250-mx.example.com"), first
t.sendall(b"QUIT\r\n")
"#,
        port = p.smtp
    );
    let out = python(&script);
    assert!(out.status.success(), "{}\n{}", String::from_utf8_lossy(&out.stderr), n.log_text());
}

/// No relaying for an unauthenticated client, whatever the address trick.
#[test]
fn no_open_relay() {
    let root = tempfile::tempdir().unwrap();
    let (n, p) = smtp_node(root.path());
    let script = format!(
        r#"
import smtplib
tricks = [
    "victim@elsewhere.org",
    "victim%elsewhere.org@example.com",
    "@example.com:victim@elsewhere.org",
    '"victim@elsewhere.org"@example.com',
    "elsewhere.org!victim@example.com",
    "victim@[192.0.2.1]",
    "victim@elsewhere.org.",
    "victim@example.com@elsewhere.org",
]
s = smtplib.SMTP("127.0.0.1", {port}); s.ehlo("client.example.org")
for rcpt in tricks:
    s.mail("spammer@elsewhere.org")
    code, text = s.rcpt("<" + rcpt + ">") if not rcpt.startswith("@") else s.docmd("RCPT TO:<" + rcpt + ">")
    print(code, rcpt, text.decode())
    assert code >= 500, (rcpt, code, text)
    s.rset()
s.quit()
"#,
        port = p.smtp
    );
    let out = python(&script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("{stdout}");
    assert_eq!(stdout.lines().count(), 8);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!n.dir.join("data/mail/elsewhere.org").exists());
}
