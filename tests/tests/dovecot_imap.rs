//! A real Dovecot reads what Gatehouse delivered: the message sent with
//! smtplib is fetched over IMAP byte for byte from our Maildir, and the Junk
//! folder Gatehouse creates shows up as a mailbox.

mod common;

use common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Dovecot(Child);

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Dovecot refuses to access mail as root, so as root the Maildir is handed to `nobody`.
fn start_dovecot(dir: &std::path::Path, mail_root: &std::path::Path, port: u16) -> Dovecot {
    let (uid, gid) = if id("-u") == "0" {
        let status = Command::new("chown").args(["-R", "nobody:nogroup"]).arg(mail_root).status().unwrap();
        assert!(status.success());
        ("nobody".to_string(), "nogroup".to_string())
    } else {
        (id("-u"), id("-g"))
    };
    for sub in ["run", "state"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let conf = format!(
        "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\nprotocols = imap\n\
         listen = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain\n\
         mail_location = maildir:{m}/%d/%n\nfirst_valid_uid = 1\n\
         passdb {{\n  driver = static\n  args = password=imap-secret\n}}\n\
         userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={m}/%d/%n\n}}\n\
         service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service anvil {{\n  chroot =\n}}\n",
        d = dir.display(),
        m = mail_root.display(),
    );
    let conf_path = dir.join("dovecot.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new("dovecot")
        .arg("-F")
        .arg("-c")
        .arg(&conf_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dovecot (scripts/test installs dovecot-imapd)");
    let up = wait_for(Duration::from_secs(10), || std::net::TcpStream::connect(("127.0.0.1", port)).ok());
    assert!(
        up.is_some(),
        "dovecot did not listen: {}",
        std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()
    );
    Dovecot(child)
}

#[test]
fn dovecot_reads_the_delivered_message_over_imap() {
    let root = tempfile::tempdir().unwrap();
    let (n, p) = smtp_node(root.path());
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
s.sendmail("a@b.org", ["alice@example.com"], b"From: a@b.org\r\nSubject: for dovecot\r\n\r\nread me over IMAP\r\n")
s.quit()
"#,
        port = p.smtp
    );
    assert!(python(&script).status.success());
    let delivered = wait_for(Duration::from_secs(5), || maildir_files(&n, "alice").pop()).expect("delivered");

    let mail_root = n.dir.join("data/mail");
    let imap_port = free_port();
    let _dovecot = start_dovecot(&root.path().join("dovecot"), &mail_root, imap_port);
    let script = format!(
        r#"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", {imap_port})
m.login("alice@example.com", "imap-secret")
typ, boxes = m.list()
print("LIST", [b.decode() for b in boxes])
assert any(b.endswith(b'"Junk"') or b.endswith(b" Junk") for b in boxes), boxes
typ, count = m.select("INBOX")
assert count == [b"1"], count
typ, data = m.fetch("1", "(BODY.PEEK[])")
sys.stdout.buffer.write(data[0][1])
m.logout()
"#
    );
    let out = python(&script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = out.stdout;
    let list_end = stdout.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(&stdout[list_end..], &delivered[..], "IMAP returned different bytes than the Maildir holds");
}
