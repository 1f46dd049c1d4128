//! The connection, HELO and sender policies end to end on one real node,
//! with a real DNS server (dnsmasq) on loopback and clients on addresses of
//! their own in 127.0.0.0/8: each switched on, then the client that should
//! pass and the one that should be refused, with the reply code checked.

mod common;

use common::*;
use std::time::{Duration, Instant};

/// Runs a Python snippet with `smtplib` and `socket` imported and `PORT` set;
/// returns its standard output.
fn client(port: u16, body: &str) -> String {
    let script = format!("import smtplib, socket, time\nPORT = {port}\n{body}");
    let out = python(&script);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// EHLO `helo`, MAIL FROM `sender`, RCPT alice: prints the RCPT reply code and text.
fn rcpt_reply(port: u16, source: &str, helo: &str, sender: &str) -> String {
    client(
        port,
        &format!(
            r#"
s = smtplib.SMTP(timeout=10, source_address=("{source}", 0))
s.connect("127.0.0.1", PORT)
s.ehlo("{helo}")
s.mail("{sender}")
code, text = s.rcpt("alice@example.com")
print(code, text.decode())
s.quit()
"#
        ),
    )
}

/// The first line a client from `source` gets.
fn greeting(port: u16, source: &str) -> String {
    client(
        port,
        &format!(
            r#"
s = socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=("{source}", 0))
print(s.makefile("rb").readline().decode().strip())
"#
        ),
    )
}

#[test]
fn connection_helo_and_sender_policies() {
    let root = tempfile::tempdir().unwrap();
    let dns_port = free_port();
    let records: Vec<String> = [
        "--host-record=known.test,127.0.0.50",
        "--mx-host=mx-only.test,known.test,10",
        "--host-record=88.0.0.127.bl.test,127.0.0.2",
        "--host-record=89.0.0.127.bl.test,127.0.0.2",
        "--local=/test/",
        "--local-ttl=300",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut dns = Some(dns_server(dns_port, &records));
    let mut n = Node::new(root.path(), "n1", &format!("[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\n"));
    // One session thread: one resolver, so the DNSBL cache check below is deterministic.
    n.set_smtp_option("session_threads = 1");
    n.serve();
    n.ok(&["domain", "add", "example.com"]);
    n.ok(&["user", "add", "alice@example.com", "--password", "correct horse"]);
    let port = n.smtp_ports.smtp;
    let set = |k: &str, v: &str| {
        n.ok(&["config", "set", k, v]);
    };

    // Sender policy.
    set("sender.reject_non_fqdn", "true");
    set("sender.reject_unknown_domain", "true");
    let table = [
        ("x@known.test", "250"),
        ("x@mx-only.test", "250"),
        ("x@nowhere.test", "550 5.1.8"),
        ("x@localhost", "504 5.5.2"),
        ("", "250"),
    ];
    for (sender, want) in table {
        let out = rcpt_reply(port, "127.0.0.11", "client.known.test", sender);
        assert!(out.starts_with(want), "sender {sender:?}: {out}");
    }
    set("sender.reject_non_fqdn", "false");
    set("sender.reject_unknown_domain", "false");

    // HELO policy.
    set("helo.reject_non_fqdn", "true");
    set("helo.reject_unknown", "true");
    let table =
        [("known.test", "250"), ("[127.0.0.12]", "250"), ("localhost", "504 5.5.2"), ("unknown.test", "550 5.7.1")];
    for (helo, want) in table {
        let out = rcpt_reply(port, "127.0.0.12", helo, "x@remote.example");
        assert!(out.starts_with(want), "helo {helo:?}: {out}");
    }
    set("helo.reject_non_fqdn", "false");
    set("helo.reject_unknown", "false");

    // Reverse DNS, plain and forward-confirmed. The resolver answers PTR
    // queries for 127.0.0.0/8 itself with "localhost" (RFC 6761 special use),
    // so every loopback client has a PTR, and only 127.0.0.1 is confirmed by
    // the forward lookup of that name. (The no-PTR case is in the policy's table test.)
    set("connection.reject_unknown_client", "true");
    assert!(greeting(port, "127.0.0.42").starts_with("220"), "a PTR is enough without forward confirmation");
    set("connection.require_forward_confirmed", "true");
    assert!(greeting(port, "127.0.0.1").starts_with("220"));
    let out = greeting(port, "127.0.0.42");
    assert!(out.starts_with("550 5.7.25") && out.contains("[127.0.0.42]"), "{out}");
    set("connection.reject_unknown_client", "false");
    set("connection.require_forward_confirmed", "false");

    // Simultaneous connections per client.
    set("connection.per_ip_max", "2");
    let out = client(
        port,
        r#"
held = [socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=("127.0.0.13", 0)) for _ in range(2)]
for h in held:
    print(h.makefile("rb").readline().decode().strip()[:3])
third = socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=("127.0.0.13", 0))
print(third.makefile("rb").readline().decode().strip())
other = socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=("127.0.0.14", 0))
print(other.makefile("rb").readline().decode().strip()[:3])
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["220", "220"], "{out}");
    assert!(lines[2].starts_with("421 4.7.0 Error: too many connections from [127.0.0.13]"), "{out}");
    assert_eq!(lines[3], "220", "another client is not limited: {out}");
    set("connection.per_ip_max", "50");

    // New connections and messages per minute: blocked until the next minute. Start
    // early in a minute, so the counts cannot straddle two.
    let into_minute =
        || std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() % 60).unwrap_or(0);
    if into_minute() > 45 {
        std::thread::sleep(Duration::from_secs(61 - into_minute()));
    }
    set("connection.connections_per_minute_max", "3");
    let codes: Vec<String> = (0..4).map(|_| greeting(port, "127.0.0.15")[..3].to_string()).collect();
    assert_eq!(codes, ["220", "220", "220", "421"]);
    set("connection.connections_per_minute_max", "0");
    set("connection.messages_per_minute_max", "2");
    let out = client(
        port,
        r#"
s = smtplib.SMTP(timeout=10, source_address=("127.0.0.16", 0))
s.connect("127.0.0.1", PORT)
s.ehlo("rate.example")
for i in range(3):
    s.mail("x@remote.example")
    code, text = s.rcpt("alice@example.com")
    print(code, text.decode())
    if code == 250:
        s.data(b"Subject: rate\r\n\r\nx\r\n")
    else:
        s.rset()
s.quit()
"#,
    );
    let codes: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
    assert_eq!(codes, ["250", "250", "452"], "{out}");
    assert!(out.contains("4.7.1 Error: too many messages from [127.0.0.16]"), "{out}");
    set("connection.messages_per_minute_max", "0");

    // Pregreet: talking before the (delayed) greeting.
    set("smtp.greet_wait_ms", "1500");
    let out = client(
        port,
        r#"
s = socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=("127.0.0.17", 0))
s.sendall(b"EHLO impatient.example\r\n")
print(s.makefile("rb").readline().decode().strip())
start = time.time()
t = socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=("127.0.0.18", 0))
line = t.makefile("rb").readline().decode().strip()
print(line[:3], round(time.time() - start, 1) >= 1.4)
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("554 5.5.1 Protocol error: talking before the greeting"), "{out}");
    assert_eq!(lines[1], "220 True", "the polite client waited for its greeting: {out}");
    set("smtp.greet_wait_ms", "0");

    // Unauthorised pipelining.
    set("smtp.reject_unauth_pipelining", "true");
    let out = client(
        port,
        r#"
s = socket.create_connection(("127.0.0.1", PORT), timeout=10, source_address=("127.0.0.19", 0))
f = s.makefile("rb")
f.readline()
s.sendall(b"HELO hasty.example\r\nMAIL FROM:<x@remote.example>\r\n")
print(f.readline().decode().strip())
print("EOF" if f.readline() == b"" else "OPEN")
"#,
    );
    assert!(out.starts_with("554 5.5.1 Error: improper use of SMTP command pipelining\nEOF"), "{out}");
    set("smtp.reject_unauth_pipelining", "false");

    // Junk commands: a second's pause at the 10th, cut off past the limit.
    set("smtp.junk_commands_max", "12");
    let out = client(
        port,
        r#"
s = smtplib.SMTP(timeout=10, source_address=("127.0.0.20", 0))
s.connect("127.0.0.1", PORT)
s.ehlo("junk.example")
start = time.time()
codes = [s.noop()[0] for _ in range(12)]
print(codes, time.time() - start >= 1.0)
code, text = s.docmd("NOOP")
print(code, text.decode())
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("{:?} True", [250; 12]), "{out}");
    assert!(lines[1].starts_with("421 4.7.0 Too many junk commands"), "{out}");

    // DNSBL answers are cached for their TTL: with the DNS server gone, a
    // client looked up before is still refused; one never looked up passes.
    n.ok(&["rules", "add", "--list", "dnsbl", "bl.test"]);
    assert!(greeting(port, "127.0.0.88").starts_with("554 5.7.1"));
    drop(dns.take());
    let started = Instant::now();
    assert!(greeting(port, "127.0.0.88").starts_with("554 5.7.1"), "the listing was not cached");
    assert!(greeting(port, "127.0.0.89").starts_with("220"), "an unanswered DNSBL must count as not listed");
    assert!(started.elapsed() < Duration::from_secs(8), "lookups outlived dnsbl.timeout_ms");
}
