//! A real Dovecot reads what Gatehouse delivered: the message sent with
//! smtplib is fetched over IMAP byte for byte from our Maildir, and the Junk
//! folder Gatehouse creates shows up as a mailbox. With Gatehouse's
//! checkpassword program as its passdb, Dovecot logs in our accounts only:
//! a frozen account cannot read mail, and failed IMAP logins count like
//! failed SMTP AUTH. In LMTP mode Gatehouse
//! hands local mail to Dovecot's LMTP server instead, and a recipient
//! Dovecot refuses comes back to the sender as a bounce.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn id(flag: &str) -> String {
    let out = Command::new("id").arg(flag).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Dovecot refuses to access mail as root, so as root the Maildir is handed to `nobody`
/// (and `nobody` may pass through the data directory above it).
/// With `lmtp`, Dovecot also runs an LMTP listener on that port and knows only
/// the users listed (password "imap-secret"); otherwise any user logs in,
/// unless `extra` brings a passdb of its own.
fn start_dovecot(
    dir: &std::path::Path,
    mail_root: &std::path::Path,
    port: u16,
    lmtp: Option<(u16, &[&str])>,
    extra: &str,
) -> Daemon {
    let (uid, gid) = if id("-u") == "0" {
        let status = Command::new("chown").args(["-R", "nobody:nogroup"]).arg(mail_root).status().unwrap();
        assert!(status.success());
        // The node keeps its data directory 0700 (the mail root sits in it);
        // in production Dovecot runs as the node's user. Here nobody needs to
        // pass through it: search permission only, no listing.
        if let Some(data_dir) = mail_root.parent() {
            let status = Command::new("chmod").arg("o+x").arg(data_dir).status().unwrap();
            assert!(status.success());
        }
        let of = |flag: &str| {
            let out = Command::new("id").args([flag, "nobody"]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        (of("-u"), of("-g"))
    } else {
        (id("-u"), id("-g"))
    };
    for sub in ["run", "state"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let (protocols, users_conf, lmtp_conf) = match lmtp {
        // A passdb of the caller's own in `extra` (Gatehouse's checkpassword) replaces the static one.
        None if extra.contains("passdb {") => ("imap", String::new(), String::new()),
        None => ("imap", "passdb {\n  driver = static\n  args = password=imap-secret\n}\n".to_string(), String::new()),
        Some((lmtp_port, users)) => {
            let file = dir.join("users");
            let lines: String = users
                .iter()
                .map(|u| {
                    let (local, domain) = u.split_once('@').unwrap();
                    format!("{u}:{{PLAIN}}imap-secret:{uid}:{gid}::{}/{domain}/{local}\n", mail_root.display())
                })
                .collect();
            std::fs::write(&file, lines).unwrap();
            let passdb = format!(
                "passdb {{\n  driver = passwd-file\n  args = {f}\n}}\nuserdb {{\n  driver = passwd-file\n  args = {f}\n}}\n",
                f = file.display()
            );
            let service = format!(
                "postmaster_address = postmaster@example.com\nservice lmtp {{\n  inet_listener lmtp {{\n    address = 127.0.0.1\n    port = {lmtp_port}\n  }}\n}}\n"
            );
            ("imap lmtp", passdb, service)
        }
    };
    let uid_gid = format!("uid={uid} gid={gid}");
    let static_userdb = if lmtp.is_none() {
        format!("userdb {{\n  driver = static\n  args = {uid_gid} home={}/%d/%n\n}}\n", mail_root.display())
    } else {
        String::new()
    };
    let conf = format!(
        "base_dir = {d}/run\nstate_dir = {d}/state\nlog_path = {d}/dovecot.log\nprotocols = {protocols}\n\
         listen = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\nauth_mechanisms = plain\n\
         mail_location = maildir:{m}/%d/%n\nfirst_valid_uid = 1\n\
         {users_conf}{static_userdb}{lmtp_conf}\
         service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
         service anvil {{\n  chroot =\n}}\n{extra}",
        d = dir.display(),
        m = mail_root.display(),
    );
    let conf_path = dir.join("dovecot.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let mut command = Command::new("dovecot");
    command.arg("-F").arg("-c").arg(&conf_path);
    Daemon::start(&mut command, port, "dovecot (scripts/test installs dovecot-imapd)")
        .unwrap_or_else(|e| panic!("{e}: {}", std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default()))
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
    let _dovecot = start_dovecot(&root.path().join("dovecot"), &mail_root, imap_port, None, "");
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

#[test]
fn lmtp_delivery_to_dovecot_and_bounce_for_a_refused_recipient() {
    let root = tempfile::tempdir().unwrap();
    let lmtp_port = free_port();
    let imap_port = free_port();
    let dovecot_mail = root.path().join("dovecot-mail");
    std::fs::create_dir_all(&dovecot_mail).unwrap();
    // Dovecot knows alice and carol, not bob: Gatehouse has all three.
    let _dovecot = start_dovecot(
        &root.path().join("dovecot"),
        &dovecot_mail,
        imap_port,
        Some((lmtp_port, &["alice@example.com", "carol@example.com"])),
        "",
    );

    let mut n = Node::new(root.path(), "n1", "");
    n.set_smtp_option(&format!("lmtp_server = \"127.0.0.1:{lmtp_port}\""));
    n.serve();
    n.ok(&["domain", "add", "example.com"]);
    n.ok(&["config", "set", "smtp.hostname", "mx.example.com"]);
    for u in ["alice", "bob", "carol"] {
        n.ok(&["user", "add", &format!("{u}@example.com"), "--password", "correct horse"]);
    }
    let body = b"From: carol@example.com\r\nSubject: over lmtp\r\n\r\nhanded to dovecot\r\n.dot line\r\n";
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
refused = s.sendmail("carol@example.com", ["alice@example.com", "bob@example.com"], {body:?}.encode())
assert refused == {{}}, refused
s.quit()
"#,
        port = n.smtp_ports.smtp,
        body = String::from_utf8_lossy(body),
    );
    let out = python(&script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let fetch = |user: &str| {
        let script = format!(
            r#"
import imaplib, sys
m = imaplib.IMAP4("127.0.0.1", {imap_port})
m.login("{user}", "imap-secret")
typ, count = m.select("INBOX")
if count != [b"1"]:
    sys.exit(3)
typ, data = m.fetch("1", "(BODY.PEEK[])")
sys.stdout.buffer.write(data[0][1])
m.logout()
"#
        );
        let out = python(&script);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let alice = wait_for(Duration::from_secs(15), || fetch("alice@example.com"))
        .unwrap_or_else(|| panic!("alice has nothing over IMAP\n{}", n.log_text()));
    assert!(alice.contains("by mx.example.com (Gatehouse) with ESMTP id"), "{alice}");
    assert!(alice.ends_with(std::str::from_utf8(body).unwrap()), "body changed: {alice}");
    assert!(!n.dir.join("data/mail/example.com/alice").exists(), "Gatehouse wrote a Maildir in LMTP mode");

    let carol = wait_for(Duration::from_secs(15), || fetch("carol@example.com"))
        .unwrap_or_else(|| panic!("no bounce for carol\n{}", n.log_text()));
    for needle in ["Final-Recipient: rfc822; bob@example.com", "Status: 5.1.1", "Subject: over lmtp"] {
        assert!(carol.contains(needle), "bounce lacks {needle:?}:\n{carol}");
    }
    assert!(!carol.contains("Final-Recipient: rfc822; alice@example.com"), "{carol}");
}

/// The spam-reporting recipe of docs/operations/spam.md with a real Dovecot:
/// IMAPSieve runs a pipe script when a user moves a message into Junk (a
/// spam report) or out of it (a ham report); the script calls
/// `gatehouse spam report`. Approving the reports teaches the model.
#[test]
fn moving_mail_into_and_out_of_junk_files_reports() {
    let root = tempfile::tempdir().unwrap();
    let (n, p) = smtp_node(root.path());
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP("127.0.0.1", {port})
s.sendmail("a@promo.example", ["alice@example.com"], b"From: a@promo.example\r\nSubject: cheap pills\r\nMessage-ID: <p1@promo.example>\r\n\r\nbuy now\r\n")
s.quit()
"#,
        port = p.smtp
    );
    assert!(python(&script).status.success());
    wait_for(Duration::from_secs(5), || maildir_files(&n, "alice").pop()).expect("delivered");

    // The recipe: two sieve scripts and the pipe program, which may read the
    // node's config and a copy of the admin token.
    let dir = root.path().join("dovecot");
    let bin = dir.join("sieve-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let token = dir.join("admin.token");
    std::fs::copy(n.dir.join("data/admin.token"), &token).unwrap();
    let report = bin.join("gatehouse-report");
    std::fs::write(
        &report,
        format!(
            "#!/bin/sh\nexec {} -c {} --token-file {} spam report \"--$1\" --user \"$2\"\n",
            binary().display(),
            n.config.display(),
            token.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("report-spam.sieve"),
        "require [\"vnd.dovecot.pipe\", \"copy\", \"imapsieve\", \"environment\", \"variables\"];\n\
         if environment :matches \"imap.user\" \"*\" { set \"username\" \"${1}\"; }\n\
         pipe :copy \"gatehouse-report\" [ \"spam\", \"${username}\" ];\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("report-ham.sieve"),
        "require [\"vnd.dovecot.pipe\", \"copy\", \"imapsieve\", \"environment\", \"variables\"];\n\
         if environment :matches \"imap.mailbox\" \"*\" { set \"mailbox\" \"${1}\"; }\n\
         if string \"${mailbox}\" \"Trash\" { stop; }\n\
         if environment :matches \"imap.user\" \"*\" { set \"username\" \"${1}\"; }\n\
         pipe :copy \"gatehouse-report\" [ \"ham\", \"${username}\" ];\n",
    )
    .unwrap();
    for (path, mode) in [(&report, "755"), (&token, "644"), (&dir, "755"), (&bin, "755")] {
        assert!(Command::new("chmod").arg(mode).arg(path).status().unwrap().success());
    }
    for p in [root.path(), n.dir.as_path()] {
        assert!(Command::new("chmod").arg("o+x").arg(p).status().unwrap().success());
    }
    let extra = format!(
        "protocol imap {{\n  mail_plugins = $mail_plugins imap_sieve\n}}\n\
         plugin {{\n  sieve_plugins = sieve_imapsieve sieve_extprograms\n\
           sieve_global_extensions = +vnd.dovecot.pipe +vnd.dovecot.environment\n\
           sieve_pipe_bin_dir = {bin}\n\
           imapsieve_mailbox1_name = Junk\n  imapsieve_mailbox1_causes = COPY APPEND\n\
           imapsieve_mailbox1_before = file:{d}/report-spam.sieve\n\
           imapsieve_mailbox2_name = *\n  imapsieve_mailbox2_from = Junk\n  imapsieve_mailbox2_causes = COPY\n\
           imapsieve_mailbox2_before = file:{d}/report-ham.sieve\n}}\n",
        bin = bin.display(),
        d = dir.display()
    );
    let mail_root = n.dir.join("data/mail");
    let imap_port = free_port();
    let _dovecot = start_dovecot(&dir, &mail_root, imap_port, None, &extra);
    let imap = |from: &str, to: &str| {
        let script = format!(
            r#"
import imaplib
m = imaplib.IMAP4("127.0.0.1", {imap_port})
m.login("alice@example.com", "imap-secret")
typ, count = m.select("{from}")
assert count == [b"1"], count
typ, data = m.uid("SEARCH", "ALL")
typ, moved = m.uid("MOVE", data[0].split()[0], "{to}")
assert typ == "OK", (typ, moved)
m.logout()
"#
        );
        let out = python(&script);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let reports = |n: &Node| n.ok(&["spam", "reports", "list"]).as_array().cloned().unwrap_or_default();
    let log = || std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default();

    imap("INBOX", "Junk");
    let filed = wait_for(Duration::from_secs(10), || reports(&n).first().cloned());
    let filed = filed.unwrap_or_else(|| panic!("no spam report: {}", log()));
    assert_eq!(filed["user"], "alice@example.com");
    assert_eq!(filed["class"], "spam");
    assert_eq!(filed["subject"], "cheap pills");

    imap("Junk", "INBOX");
    // Moved back: the same user's pending report now says ham.
    let flipped = wait_for(Duration::from_secs(10), || {
        let all = reports(&n);
        (all.len() == 1 && all[0]["class"] == "ham").then_some(all)
    });
    assert!(flipped.is_some(), "no ham report: {}", log());

    n.ok(&["spam", "reports", "approve", "--all"]);
    let status = n.ok(&["spam", "status"]);
    assert_eq!((status["spam_learned"].as_u64(), status["ham_learned"].as_u64()), (Some(0), Some(1)), "{status}");
}

/// IMAP LOGIN from `source` (an address on 127.0.0.0/8: Dovecot delays a
/// client's logins after each failure) as `user`; `OK` or `NO ...`.
fn imap_login(port: u16, source: &str, user: &str, password: &str) -> String {
    let script = format!(
        r#"
import imaplib, socket
class From(imaplib.IMAP4):
    def _create_socket(self, timeout):
        return socket.create_connection((self.host, self.port), timeout, source_address=("{source}", 0))
m = From("127.0.0.1", {port}, timeout=30)
try:
    m.login("{user}", "{password}")
    print("OK")
    m.logout()
except imaplib.IMAP4.error as e:
    print("NO", e)
"#
    );
    let out = python(&script);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn dovecot_logs_in_our_accounts_only_and_failures_count() {
    let root = tempfile::tempdir().unwrap();
    let (n, _) = smtp_node(root.path());
    for (k, v) in [
        ("intrusion.failed_logins_max", "2"),
        ("notify.failed_logins", "true"),
        ("notify.failed_logins_interval_s", "10"),
        ("notify.admin_addresses", "alice@example.com"),
    ] {
        n.ok(&["config", "set", k, v]);
    }
    let dir = root.path().join("dovecot");
    std::fs::create_dir_all(&dir).unwrap();
    // Dovecot's auth process (user dovecot) runs the checkpassword program with
    // its reply program as argument; it needs the config and a token it can read.
    std::fs::set_permissions(root.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let token = dir.join("admin.token");
    std::fs::copy(n.dir.join("data/admin.token"), &token).unwrap();
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let wrapper = dir.join("gatehouse-checkpassword");
    let command = format!(
        "#!/bin/sh\nexec {} -c {} --token-file {} dovecot-checkpassword \"$@\"\n",
        binary().display(),
        n.config.display(),
        token.display()
    );
    std::fs::write(&wrapper, command).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let extra =
        format!("auth_failure_delay = 0\npassdb {{\n  driver = checkpassword\n  args = {}\n}}\n", wrapper.display());
    let mail_root = n.dir.join("data/mail");
    std::fs::create_dir_all(mail_root.join("example.com/alice")).unwrap();
    let imap_port = free_port();
    let _dovecot = start_dovecot(&dir, &mail_root, imap_port, None, &extra);

    let first = imap_login(imap_port, "127.0.0.20", "alice@example.com", "correct horse");
    assert_eq!(first, "OK", "{}", std::fs::read_to_string(dir.join("dovecot.log")).unwrap_or_default());
    assert!(imap_login(imap_port, "127.0.0.21", "alice@example.com", "wrong").starts_with("NO"));
    assert!(imap_login(imap_port, "127.0.0.21", "nobody@example.com", "correct horse").starts_with("NO"));
    n.ok(&["user", "freeze", "alice@example.com"]);
    let frozen = imap_login(imap_port, "127.0.0.22", "alice@example.com", "correct horse");
    assert!(frozen.starts_with("NO"), "a frozen account read mail: {frozen}");
    n.ok(&["user", "unfreeze", "alice@example.com"]);
    assert_eq!(imap_login(imap_port, "127.0.0.23", "alice@example.com", "correct horse"), "OK");

    // The two failures are logged like SMTP's, with the IMAP client's address,
    // and (intrusion.failed_logins_max = 2) block it on the cluster.
    let log = n.log_text();
    let failed: Vec<&str> = log.lines().filter(|l| l.contains(": failed login ")).collect();
    assert_eq!(failed.len(), 2, "{log}");
    let from_imap = |l: &&str| l.contains("client=127.0.0.21") && l.contains("listener=\"dovecot-imap\"");
    assert!(failed.iter().all(from_imap), "{failed:#?}");
    assert!(!log.contains("wrong"), "a password reached the log");
    let blocked = wait_for(Duration::from_secs(5), || {
        n.ok(&["blocked", "list"]).as_array().and_then(|b| b.iter().find(|e| e["ip"] == "127.0.0.21").cloned())
    });
    assert!(blocked.is_some(), "127.0.0.21 not blocked after 2 failed IMAP logins");
    // And the administrator's digest lists them, as for SMTP.
    let digest = wait_for(Duration::from_secs(30), || {
        maildir_files(&n, "alice")
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .find(|f| f.contains("Subject: Failed logins for alice@example.com: 1"))
    });
    let digest = digest.unwrap_or_else(|| panic!("no digest:\n{}", n.log_text()));
    assert!(digest.contains("127.0.0.21  dovecot-imap"), "{digest}");
}
