//! Sender authentication end to end: a real DNS server (dnsmasq) publishes
//! SPF, DKIM and DMARC records; dkimpy (python3-dkim, an independent
//! implementation) signs what Gatehouse verifies and verifies what Gatehouse
//! signs; the verdicts are read from the SMTP replies and the Maildir.

mod common;

use common::*;
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// Debian's Python, where python3-dkim lives (the PATH one may be another build).
fn debian_python(script: &str) -> String {
    let out = Command::new("/usr/bin/python3").arg("-c").arg(script).output().expect("/usr/bin/python3");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Key pairs for the test zones: RSA 2048, RSA 512, Ed25519 (dkimpy's raw form).
fn keys() -> Value {
    let script = r#"
import base64, json, subprocess, nacl.signing
def rsa(bits):
    pem = subprocess.run(["openssl", "genrsa", "-traditional", str(bits)], capture_output=True, check=True).stdout
    der = subprocess.run(["openssl", "rsa", "-pubout", "-outform", "DER"], input=pem, capture_output=True, check=True).stdout
    return pem.decode(), base64.b64encode(der).decode()
big, big_pub = rsa(2048)
small, small_pub = rsa(512)
ed = nacl.signing.SigningKey.generate()
print(json.dumps({"rsa": big, "rsa_pub": big_pub, "short": small, "short_pub": small_pub,
    "ed": base64.b64encode(bytes(ed)).decode(), "ed_pub": base64.b64encode(bytes(ed.verify_key)).decode()}))
"#;
    serde_json::from_str(&debian_python(script)).expect("keys")
}

/// A TXT record for dnsmasq, split into strings of at most 200 bytes.
fn txt(name: &str, text: &str) -> String {
    let parts: Vec<String> = text.as_bytes().chunks(200).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    format!("--txt-record={name},{}", parts.join(","))
}

/// Signs `message` with dkimpy (or ARC-seals it when `arc` is set) and sends
/// it from 127.0.0.`host` with MAIL FROM `sender`. Prints `RCPT code`,
/// `DATA code text`.
fn send(port: u16, host: u8, sender: &str, message: &str, signing: &str) -> String {
    let script = format!(
        r#"
import dkim, smtplib
msg = {message:?}.encode()
{signing}
s = smtplib.SMTP(timeout=20, source_address=("127.0.0.{host}", 0))
s.connect("127.0.0.1", {port})
s.ehlo("client.pass.test")
s.mail("{sender}")
code, text = s.rcpt("alice@example.com")
print("RCPT", code, text.decode())
if code == 250:
    code, text = s.data(msg)
    print("DATA", code, text.decode())
s.quit()
"#
    );
    debian_python(&script)
}

fn message(from: &str, subject: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <alice@example.com>\r\nSubject: {subject}\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{subject}@test>\r\n\r\nHello.\r\n"
    )
}

/// The delivered message with `Subject: subject`, and whether it is in Junk.
fn delivered(n: &Node, subject: &str) -> (String, bool) {
    let base = n.dir.join("data/mail/example.com/alice");
    let found = wait_for(Duration::from_secs(5), || {
        for (dir, junk) in [(base.join("new"), false), (base.join(".Junk/new"), true)] {
            for f in files_in(&dir) {
                let text = String::from_utf8_lossy(&f).into_owned();
                if text.contains(&format!("Subject: {subject}\r\n")) {
                    return Some((text, junk));
                }
            }
        }
        None
    });
    found.unwrap_or_else(|| panic!("{subject} was not delivered: {}", n.log_text()))
}

#[test]
fn spf_dkim_dmarc_and_arc_verdicts_and_dkim_signing() {
    let root = tempfile::tempdir().unwrap();
    let k = keys();
    let s = |key: &str| k[key].as_str().unwrap().to_string();
    let dns_port = free_port();
    let records = vec![
        txt("pass.test", "v=spf1 ip4:127.0.0.0/8 -all"),
        txt("fail.test", "v=spf1 -all"),
        txt("softfail.test", "v=spf1 ~all"),
        txt("rsa._domainkey.signed.test", &format!("v=DKIM1; k=rsa; p={}", s("rsa_pub"))),
        txt("ed._domainkey.signed.test", &format!("v=DKIM1; k=ed25519; p={}", s("ed_pub"))),
        txt("revoked._domainkey.signed.test", "v=DKIM1; k=rsa; p="),
        txt("short._domainkey.signed.test", &format!("v=DKIM1; k=rsa; p={}", s("short_pub"))),
        txt("arc._domainkey.lists.test", &format!("v=DKIM1; k=rsa; p={}", s("rsa_pub"))),
        txt("_dmarc.signed.test", "v=DMARC1; p=reject"),
        txt("_dmarc.reject.test", "v=DMARC1; p=reject"),
        txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine"),
        txt("_dmarc.monitor.test", "v=DMARC1; p=none"),
        "--local=/test/".to_string(),
    ];
    let _dns = dns_server(dns_port, &records);
    let mut n = Node::new(root.path(), "n1", &format!("[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\n"));
    n.serve();
    n.ok(&["domain", "add", "example.com"]);
    n.ok(&["user", "add", "alice@example.com", "--password", "correct horse"]);
    n.ok(&["user", "add", "bob@example.com", "--password", "correct horse"]);
    n.ok(&["config", "set", "smtp.hostname", "mx.example.com"]);
    let port = n.smtp_ports.smtp;
    let rsa = format!("msg = dkim.sign(msg, b'rsa', b'signed.test', {:?}.encode()) + msg", s("rsa"));

    // SPF at RCPT.
    let out = send(port, 11, "a@fail.test", &message("a@fail.test", "spf-fail"), "");
    assert!(out.contains("RCPT 550 5.7.23") && out.contains("fail.test"), "{out}");
    let out = send(port, 11, "a@softfail.test", &message("a@softfail.test", "spf-softfail"), "");
    assert!(out.contains("RCPT 250") && out.contains("DATA 250"), "softfail is accepted by default: {out}");
    assert!(delivered(&n, "spf-softfail").0.contains("spf=softfail"));
    n.ok(&["config", "set", "spf.reject_softfail", "true"]);
    let out = send(port, 11, "a@softfail.test", &message("a@softfail.test", "spf-softfail-2"), "");
    assert!(out.contains("RCPT 550 5.7.23"), "{out}");
    let out = send(port, 11, "a@none.test", &message("a@none.test", "spf-none"), "");
    assert!(out.contains("DATA 250"), "{out}");
    assert!(delivered(&n, "spf-none").0.contains("spf=none"));
    // The whitelist skip matrix: a whitelisted sender skips SPF.
    n.ok(&["rules", "add", "--list", "white", "--kind", "sender", "a@fail.test"]);
    let out = send(port, 11, "a@fail.test", &message("a@fail.test", "spf-whitelisted"), "");
    assert!(out.contains("RCPT 250") && out.contains("DATA 250"), "{out}");
    assert!(!delivered(&n, "spf-whitelisted").0.contains("spf=fail"));

    // DKIM from dkimpy, RSA and Ed25519, with DMARC p=reject passing on alignment.
    let out = send(port, 12, "a@pass.test", &message("a@signed.test", "dkim-rsa"), &rsa);
    assert!(out.contains("DATA 250"), "{out}");
    let (text, junk) = delivered(&n, "dkim-rsa");
    assert!(!junk, "{text}");
    let results = text.split("Authentication-Results: ").nth(1).unwrap_or_default();
    assert!(results.starts_with("mx.example.com;"), "{text}");
    for want in ["dkim=pass", "header.i=@signed.test", "spf=pass", "dmarc=pass"] {
        assert!(text.contains(want), "{want} missing: {text}");
    }
    let ed = format!(
        "msg = dkim.sign(msg, b'ed', b'signed.test', {:?}.encode(), signature_algorithm=b'ed25519-sha256') + msg",
        s("ed")
    );
    send(port, 12, "a@pass.test", &message("a@signed.test", "dkim-ed25519"), &ed);
    let (text, junk) = delivered(&n, "dkim-ed25519");
    assert!(!junk && text.contains("dkim=pass") && text.contains("dmarc=pass"), "{text}");

    // Failing signatures go to Junk with a warning (DMARC is p=none for monitor.test).
    let revoked = format!("msg = dkim.sign(msg, b'revoked', b'monitor.test', {:?}.encode()) + msg", s("rsa"));
    send(port, 12, "a@pass.test", &message("a@monitor.test", "dkim-revoked"), &revoked);
    let (text, junk) = delivered(&n, "dkim-revoked");
    assert!(
        junk && text.contains("X-Gatehouse-Warning: DKIM signature verification failed for monitor.test"),
        "{text}"
    );
    let short = format!("msg = dkim.sign(msg, b'short', b'signed.test', {:?}.encode()) + msg", s("short"));
    let out = send(port, 12, "a@pass.test", &message("a@monitor.test", "dkim-512"), &short);
    assert!(out.contains("DATA 250"), "{out}");
    let (text, junk) = delivered(&n, "dkim-512");
    assert!(junk && text.contains("dkim=fail"), "a 512-bit key must fail: {text}");
    // The minimum is a setting: with 4096 required, the 2048-bit key fails too.
    n.ok(&["config", "set", "dkim.min_key_bits", "4096"]);
    send(port, 12, "a@pass.test", &message("a@monitor.test", "dkim-under-minimum"), &rsa);
    let (text, junk) = delivered(&n, "dkim-under-minimum");
    assert!(
        junk && text.contains("(a 2048-bit key, under the minimum of 4096)") && text.contains("dkim=fail"),
        "{text}"
    );
    n.ok(&["config", "set", "dkim.min_key_bits", "1024"]);

    // DMARC policies: reject → 550 at end of DATA; quarantine → Junk; none → inbox.
    let out = send(port, 13, "a@pass.test", &message("x@reject.test", "dmarc-reject"), "");
    assert!(out.contains("DATA 550 5.7.1 Email rejected per DMARC policy for reject.test"), "{out}");
    send(port, 13, "a@pass.test", &message("x@quarantine.test", "dmarc-quarantine"), "");
    let (text, junk) = delivered(&n, "dmarc-quarantine");
    assert!(junk && text.contains("X-Gatehouse-Warning: DMARC policy of quarantine.test not met"), "{text}");
    assert!(text.contains("dmarc=fail") && text.contains("policy.dmarc=quarantine"), "{text}");
    send(port, 13, "a@pass.test", &message("x@monitor.test", "dmarc-none"), "");
    let (text, junk) = delivered(&n, "dmarc-none");
    assert!(!junk && !text.contains("X-Gatehouse-Warning"), "{text}");

    // A forged Authentication-Results claiming our name is removed; others stay.
    let forged = "msg = b'Authentication-Results: mx.example.com; dkim=pass header.d=bank.test\\r\\nAuthentication-Results: elsewhere.test; spf=pass\\r\\n' + msg";
    send(port, 14, "a@pass.test", &message("x@monitor.test", "forged-results"), forged);
    let (text, _) = delivered(&n, "forged-results");
    assert!(!text.contains("header.d=bank.test"), "{text}");
    assert!(text.contains("Authentication-Results: elsewhere.test; spf=pass"), "{text}");
    assert_eq!(text.matches("Authentication-Results: mx.example.com").count(), 1, "{text}");

    // ARC: a list (lists.test) re-sends x@reject.test's mail; its seal is
    // recorded, and only a trusted sealer overrides the DMARC reject.
    let arc = format!(
        "msg = b'Authentication-Results: lists.test; spf=pass smtp.mailfrom=reject.test\\r\\n' + msg\n\
         msg = b''.join(dkim.arc_sign(msg, b'arc', b'lists.test', {:?}.encode(), b'lists.test')) + msg",
        s("rsa")
    );
    let out = send(port, 15, "list@pass.test", &message("x@reject.test", "arc-untrusted"), &arc);
    assert!(out.contains("DATA 550 5.7.1"), "an untrusted seal must not help: {out}");
    n.ok(&["config", "set", "arc.trusted_sealers", "lists.test"]);
    let out = send(port, 15, "list@pass.test", &message("x@reject.test", "arc-trusted"), &arc);
    assert!(out.contains("DATA 250"), "{out}");
    let (text, junk) = delivered(&n, "arc-trusted");
    assert!(!junk && text.contains("arc=pass") && text.contains("accepted on a trusted ARC seal"), "{text}");

    // Signing: keys in the replicated state, the record to publish, and
    // dkimpy verifies what authenticated users send (RSA, then Ed25519 after rotation).
    let generated = n.ok(&["dkim", "generate", "example.com"]);
    assert_eq!(generated["selector"], "gh1");
    assert_eq!(generated["active"], true);
    assert_eq!(generated["record_name"], "gh1._domainkey.example.com.");
    let err = n.try_ok(&["dkim", "generate", "nowhere.example"]).unwrap_err();
    assert!(err.contains("domain"), "{err}");
    let submit_and_verify = |subject: &str| -> String {
        let records: Value = n.ok(&["dkim", "list"]);
        let table: Vec<(String, String)> = records
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["record_name"].as_str().unwrap().to_string(), r["record"].as_str().unwrap().to_string()))
            .collect();
        let script = format!(
            r#"
import dkim, smtplib, ssl
records = dict({table:?})
s = smtplib.SMTP("127.0.0.1", {port}, timeout=20)
s.ehlo("laptop.example.com")
s.starttls()
s.ehlo("laptop.example.com")
s.login("alice@example.com", "correct horse")
s.sendmail("alice@example.com", ["bob@example.com"], {body:?}.encode())
s.quit()
"#,
            port = n.smtp_ports.submission,
            body = format!(
                "From: Alice <alice@example.com>\r\nTo: <bob@example.com>\r\nSubject: {subject}\r\n\
                 Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.com>\r\n\r\nSigned.\r\n"
            ),
        );
        debian_python(&script);
        let base = n.dir.join("data/mail/example.com/bob/new");
        let file = wait_for(Duration::from_secs(5), || {
            files_in(&base).into_iter().find(|f| String::from_utf8_lossy(f).contains(&format!("Subject: {subject}")))
        })
        .expect("delivered to bob");
        let path = root.path().join(format!("{subject}.eml"));
        std::fs::write(&path, &file).unwrap();
        debian_python(&format!(
            r#"
import dkim
records = dict({table:?})
def dnsfunc(name, timeout=5):
    return records.get(name.decode()).encode()
msg = open({path:?}, "rb").read()
print("verified" if dkim.verify(msg, dnsfunc=dnsfunc) else "FAILED")
print([l for l in msg.split(b"\r\n") if l.startswith(b"DKIM-Signature")][0].decode())
"#,
            path = path.display().to_string()
        ))
    };
    let out = submit_and_verify("signed-rsa");
    assert!(out.starts_with("verified") && out.contains("a=rsa-sha256") && out.contains("s=gh1"), "{out}");
    n.ok(&["dkim", "generate", "example.com", "--selector", "ed", "--algorithm", "ed25519"]);
    let out = submit_and_verify("still-rsa");
    assert!(out.contains("s=gh1"), "a new key signs only once activated: {out}");
    n.ok(&["dkim", "activate", "example.com", "ed"]);
    let out = submit_and_verify("signed-ed25519");
    assert!(out.starts_with("verified") && out.contains("a=ed25519-sha256") && out.contains("s=ed"), "{out}");
    // The DKIM whitelist: a trusted host that does not log in is signed too.
    n.ok(&["config", "set", "smtp.trusted_networks", "127.0.0.16"]);
    n.ok(&["config", "set", "dkim.sign_networks", "127.0.0.16"]);
    let script = format!(
        r#"
import smtplib
s = smtplib.SMTP(timeout=20, source_address=("127.0.0.16", 0))
s.connect("127.0.0.1", {port})
s.sendmail("alice@example.com", ["bob@example.com"], b"From: <alice@example.com>\r\nSubject: from-printer\r\n\r\nscan\r\n")
s.quit()
"#
    );
    debian_python(&script);
    let bob = n.dir.join("data/mail/example.com/bob/new");
    let printed = wait_for(Duration::from_secs(5), || {
        files_in(&bob)
            .into_iter()
            .map(|f| String::from_utf8_lossy(&f).into_owned())
            .find(|t| t.contains("from-printer"))
    })
    .expect("delivered");
    assert!(printed.contains("DKIM-Signature:") && printed.contains("s=ed;"), "{printed}");
    assert!(!printed.contains("Authentication-Results"), "our own mail is not verified: {printed}");

    n.ok(&["dkim", "remove", "example.com", "gh1"]);
    let listed = n.ok(&["dkim", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // The suggested DMARC record.
    let record = n.ok(&["dmarc", "record", "example.com", "--policy", "quarantine", "--pct", "50"]);
    assert_eq!(record["record_name"], "_dmarc.example.com.");
    assert_eq!(
        record["record"],
        "v=DMARC1; p=quarantine; rua=mailto:dmarc-reports@example.com; adkim=r; aspf=r; pct=50"
    );
}
