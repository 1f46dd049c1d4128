//! HAProxy (the Debian package) in front of two nodes with send-proxy-v2:
//! screening sees the real client behind the load balancer. A blacklisted
//! client is refused though the TCP peer is HAProxy; a clean client's mail
//! is delivered with its own address in the Received header.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

fn haproxy(root: &std::path::Path, port: u16, backends: &[u16]) -> Daemon {
    let servers: String = backends
        .iter()
        .enumerate()
        .map(|(i, p)| format!("  server n{} 127.0.0.1:{p} send-proxy-v2\n", i + 1))
        .collect();
    let config = format!(
        "global\n  maxconn 200\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n\
         frontend smtp\n  bind 127.0.0.1:{port}\n  default_backend nodes\n\
         backend nodes\n  balance roundrobin\n{servers}"
    );
    let path = root.join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let mut command = Command::new("haproxy");
    command.arg("-db").arg("-f").arg(&path);
    Daemon::start(&mut command, port, "haproxy (scripts/test installs it)").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn haproxy_send_proxy_v2_shows_the_real_client() {
    let root = tempfile::tempdir().unwrap();
    let nodes = three_nodes(root.path(), "");
    let (n1, n2) = (&nodes[0], &nodes[1]);
    n1.ok(&["domain", "add", "example.com"]);
    n1.ok(&["user", "add", "alice@example.com", "--password", "correct horse"]);
    n1.ok(&["config", "set", "smtp.proxy_peers", "127.0.0.1"]);
    n1.ok(&["rules", "add", "--list", "black", "--kind", "ip", "127.0.0.66"]);
    let lb_port = free_port();
    let _lb = haproxy(root.path(), lb_port, &[n1.smtp_ports.smtp, n2.smtp_ports.smtp]);
    assert!(
        wait_for(Duration::from_secs(3), || (n2.ok(&["rules", "list"]).as_array()?.len() == 1).then_some(())).is_some()
    );

    // Round robin: two tries each reach both nodes.
    for _ in 0..2 {
        let out = converse(lb_port, "127.0.0.66", "x@remote.example", &["alice@example.com"]);
        assert!(out.contains("GREETING 554") && out.contains("[127.0.0.66]"), "{out}");
    }
    for _ in 0..2 {
        let out = converse(lb_port, "127.0.0.67", "x@remote.example", &["alice@example.com"]);
        assert!(out.contains("GREETING 220") && out.contains("DATA 250"), "{out}");
    }
    for n in [n1, n2] {
        assert!(n.log_text().contains("client=127.0.0.66"), "{} never saw the real client", n.name);
    }
    let delivered = wait_for(Duration::from_secs(5), || {
        let all: Vec<Vec<u8>> = [n1, n2].iter().flat_map(|n| maildir_files(n, "alice")).collect();
        (all.len() == 2).then_some(all)
    })
    .expect("both clean messages delivered");
    for message in delivered {
        let text = String::from_utf8_lossy(&message);
        assert!(text.contains("[127.0.0.67]"), "Received names the client, not HAProxy: {text}");
    }

    // PROXY v1 straight from a peer works too; a peer that skips the header is dropped.
    let script = format!(
        r#"
import socket
s = socket.create_connection(("127.0.0.1", {port}), timeout=10)
s.sendall(b"PROXY TCP4 127.0.0.66 127.0.0.1 40000 25\r\n")
print(s.makefile("rb").readline().decode().strip())
t = socket.create_connection(("127.0.0.1", {port}), timeout=10)
t.sendall(b"EHLO no-header.example\r\n")
print("EOF" if t.recv(100) == b"" else "ANSWERED")
"#,
        port = n2.smtp_ports.smtp
    );
    let out = String::from_utf8_lossy(&python(&script).stdout).into_owned();
    assert!(out.contains("554 5.7.1 Client host [127.0.0.66]"), "{out}");
    assert!(out.contains("EOF"), "{out}");
}
