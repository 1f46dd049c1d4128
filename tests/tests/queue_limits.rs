//! The queue's in-flight cap (`queue.active_messages_max`) and the relay's
//! per-destination concurrency (`relay.destination_concurrency_max`),
//! measured at a peer MTA that answers each message a second late and
//! records how many messages it was taking at once.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A slow SMTP peer on 127.0.0.1:`port`: holds each message's final reply a
/// second and writes to `dir/peak` the most messages it had in transfer at
/// once and how many it took.
fn slow_peer(port: u16, dir: &Path) -> Daemon {
    let script = format!(
        r#"
import socketserver, threading, time
lock = threading.Lock()
state = {{"open": 0, "peak": 0, "messages": 0}}
def record():
    with open({peak:?}, "w") as f:
        f.write("%d %d" % (state["peak"], state["messages"]))
class Session(socketserver.StreamRequestHandler):
    def handle(self):
        if True:
            w = self.wfile.write
            w(b"220 peer ESMTP\r\n")
            while True:
                line = self.rfile.readline()
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    w(b"250 peer\r\n")
                elif verb == b"DATA":
                    with lock:
                        state["open"] += 1
                        state["peak"] = max(state["peak"], state["open"])
                        record()
                    w(b"354 go\r\n")
                    while self.rfile.readline() not in (b".\r\n", b""):
                        pass
                    time.sleep(1)
                    with lock:
                        state["open"] -= 1
                        state["messages"] += 1
                        record()
                    w(b"250 2.0.0 taken\r\n")
                elif verb == b"QUIT":
                    w(b"221 bye\r\n")
                    return
                else:
                    w(b"250 ok\r\n")
class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
Server(("127.0.0.1", {port}), Session).serve_forever()
"#,
        peak = dir.join("peak").display().to_string(),
    );
    let mut command = Command::new("python3");
    command.arg("-c").arg(script);
    Daemon::start(&mut command, port, "python3 peer MTA").unwrap()
}

fn peak_and_messages(dir: &Path) -> (u32, u32) {
    let text = std::fs::read_to_string(dir.join("peak")).unwrap_or_default();
    let mut it = text.split_whitespace().map(|n| n.parse().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[test]
fn the_queue_and_each_destination_have_their_concurrency_caps() {
    let root = tempfile::tempdir().unwrap();
    let (n, p) = smtp_node(root.path());
    let peer_port = free_port();
    let first = root.path().join("first");
    std::fs::create_dir(&first).unwrap();
    let _peer = slow_peer(peer_port, &first);
    n.ok(&["config", "set", "smtp.trusted_networks", "127.0.0.0/8"]);
    n.ok(&["config", "set", "relay.smarthost", "127.0.0.1"]);
    n.ok(&["config", "set", "relay.port", &peer_port.to_string()]);

    // Destination cap 2: six messages, never more than two sessions at the peer.
    n.ok(&["config", "set", "relay.destination_concurrency_max", "2"]);
    for i in 0..6 {
        submit(p.smtp, "alice@example.com", None, &["bob@remote.test"], &format!("{i}"));
    }
    let done = wait_for(Duration::from_secs(30), || (peak_and_messages(&first).1 == 6).then_some(()));
    assert!(done.is_some(), "peer got {:?}\n{}", peak_and_messages(&first), n.log_text());
    assert_eq!(peak_and_messages(&first).0, 2, "most messages at once at the peer");

    // Queue cap 1 (destination cap back to 20): one attempt at a time.
    let second = root.path().join("second");
    std::fs::create_dir(&second).unwrap();
    let second_port = free_port();
    let _second_peer = slow_peer(second_port, &second);
    n.ok(&["config", "set", "relay.port", &second_port.to_string()]);
    n.ok(&["config", "reset", "relay.destination_concurrency_max"]);
    n.ok(&["config", "set", "queue.active_messages_max", "1"]);
    for i in 0..4 {
        submit(p.smtp, "alice@example.com", None, &["bob@remote.test"], &format!("{i}"));
    }
    let done = wait_for(Duration::from_secs(30), || (peak_and_messages(&second).1 == 4).then_some(()));
    assert!(done.is_some(), "peer got {:?}", peak_and_messages(&second));
    assert_eq!(peak_and_messages(&second).0, 1, "one message in flight at a time");
}
