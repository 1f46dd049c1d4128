//! Attachment linking across a 3-node cluster, the real binary on every
//! node, a real smarthost (smtp-sink keeping what it gets) and a real HTTP
//! client: a user with a threshold sends a large and a small attachment
//! through node 1; the copy that leaves has a link instead of the large
//! one and keeps the small one; the link fetched through nodes 2 and 3
//! (which never had the file) returns the same bytes; an altered token, an
//! expired link and a revoked one answer 404; a user without a threshold
//! sends attachments untouched; every node lists the link with its downloads.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const BASE_URL: &str = "http://files.example.test";

/// Gives `node` a download listener (before it starts); returns its port.
fn with_download_listener(node: &Node) -> u16 {
    let port = free_port();
    let text = std::fs::read_to_string(&node.config).unwrap();
    let table = format!("\n[attachment_links]\nlisten = \"127.0.0.1:{port}\"\nsweep_interval_ms = 1000\n");
    std::fs::write(&node.config, text + &table).unwrap();
    port
}

/// Deterministic incompressible-looking bytes.
fn file_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// GET `url`: (status, Content-Disposition, body).
fn fetch(url: &str, out: &Path) -> (u16, String, Vec<u8>) {
    let script = format!(
        r#"
import urllib.request, urllib.error, sys
try:
    r = urllib.request.urlopen({url:?}, timeout=20)
    status, cd, body = r.status, r.headers.get("Content-Disposition", ""), r.read()
except urllib.error.HTTPError as e:
    status, cd, body = e.code, "", e.read()
open({out:?}, "wb").write(body)
print(status)
print(cd)
"#,
        out = out.display().to_string()
    );
    let result = python(&script);
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    let text = String::from_utf8_lossy(&result.stdout).into_owned();
    let mut lines = text.lines();
    let status = lines.next().and_then(|l| l.trim().parse().ok()).unwrap_or(0);
    let cd = lines.next().unwrap_or_default().to_string();
    (status, cd, std::fs::read(out).unwrap_or_default())
}

/// The tokens of the links in `message`, in order.
fn tokens_in(message: &str) -> Vec<String> {
    let prefix = format!("{BASE_URL}/a/");
    message
        .match_indices(&prefix)
        .map(|(at, _)| {
            message[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect()
        })
        .collect()
}

/// The sink's copy of the message with this subject, once it arrived.
fn delivered(dump: &Path, subject: &str, sender: &Node) -> String {
    let needles = [format!("Subject: {subject}\r\n"), format!("Subject: {subject}\n")];
    wait_for(Duration::from_secs(30), || {
        files_in(dump)
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            // The sink writes as it receives: only a copy with its closing boundary is whole.
            .find(|f| needles.iter().any(|n| f.contains(n.as_str())) && f.contains("--b1--"))
    })
    .unwrap_or_else(|| panic!("{subject:?} never reached the smarthost:\n{}", sender.log_text()))
}

fn send(port: u16, user: &str, subject: &str, files: &[(&str, &[u8])]) -> String {
    let body = String::from_utf8(mime::with_attachments(subject, files)).unwrap();
    send_each(&[port], Some(user), user, "bob@remote.test", 1, &body).remove(0)
}

#[test]
fn large_attachments_become_links_that_work_through_every_node() {
    let root = tempfile::tempdir().unwrap();
    let (_sink, sink_port, dump) = keeping_sink(root.path(), "127.0.0.14");
    let mut nodes = Vec::new();
    let mut download_ports = Vec::new();
    for name in ["n1", "n2", "n3"] {
        let mut node = Node::new(root.path(), name, "");
        download_ports.push(with_download_listener(&node));
        match nodes.first() {
            None => node.serve(),
            Some(first) => {
                let first: &Node = first;
                let token = first.token();
                node.join(&token, &first.raft.clone());
            }
        }
        nodes.push(node);
    }
    let n1 = &nodes[0];
    n1.ok(&["domain", "add", "example.com"]);
    for user in ["alice", "carol"] {
        n1.ok(&["user", "add", &format!("{user}@example.com"), "--password", "correct horse"]);
    }
    for (k, v) in [
        ("smtp.hostname", "mx.example.com"),
        ("relay.smarthost", &format!("127.0.0.14:{sink_port}")),
        ("attachment_links.base_url", BASE_URL),
    ] {
        n1.ok(&["config", "set", k, v]);
    }
    n1.ok(&["user", "limits", "alice@example.com", "--attachment-link-bytes-min", "100000"]);
    for n in &nodes {
        let seen = wait_for(Duration::from_secs(10), || {
            (n.ok(&["config", "get", "attachment_links.base_url"])["value"] == BASE_URL).then_some(())
        });
        assert!(seen.is_some(), "{} never saw the setting", n.name);
    }

    // 1. Through node 1: the 300 kB and 150 kB files become links, the 2 kB one stays.
    let big = file_bytes(300_000, 1);
    let small = file_bytes(2_000, 2);
    let photo = file_bytes(150_000, 3);
    let files: [(&str, &[u8]); 3] = [("plan.pdf", &big), ("note.txt", &small), ("photo.jpg", &photo)];
    let reply = send(n1.smtp_ports.submission, "alice@example.com", "linked", &files);
    assert!(reply.starts_with("250"), "{reply}\n{}", n1.log_text());
    let sent = delivered(&dump, "linked", n1);
    assert!(sent.contains("The attachment \"plan.pdf\" (300.0 kB) was sent as a link."), "{sent}");
    assert!(!sent.contains("filename=\"plan.pdf\""), "the large file still rides along");
    assert!(sent.contains("filename=\"note.txt\""), "the small file was taken out");
    assert!(sent.len() < 20_000, "the message that left is {} bytes", sent.len());
    assert!(sent.contains("The attachment \"photo.jpg\" (150.0 kB) was sent as a link."), "{sent}");
    let tokens = tokens_in(&sent);
    assert_eq!(tokens.len(), 2, "{sent}");
    let token = &tokens[0];
    let (status, _, body) =
        fetch(&format!("http://127.0.0.1:{}/a/{}", download_ports[2], tokens[1]), &root.path().join("p"));
    assert!(status == 200 && body == photo, "the second link: {status}, {} bytes", body.len());

    // 2. Fetched through every node, the owner (node 1) and two that never had the file.
    for (n, port) in nodes.iter().zip(&download_ports).rev() {
        let (status, cd, body) = fetch(&format!("http://127.0.0.1:{port}/a/{token}"), &root.path().join("got"));
        assert_eq!(status, 200, "{}: {}", n.name, String::from_utf8_lossy(&body));
        assert!(body == big, "{}: {} bytes, not the file sent", n.name, body.len());
        assert!(cd.starts_with("attachment; filename=\"plan.pdf\""), "{cd}");
    }

    // 3. An altered token, a made-up path: 404 and nothing else.
    let mut altered = token.clone().into_bytes();
    altered[10] = if altered[10] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    for path in [format!("/a/{altered}"), format!("/a/{}", &token[1..]), "/a/../../etc/passwd".into(), "/".into()] {
        let (status, _, body) = fetch(&format!("http://127.0.0.1:{}{path}", download_ports[1]), &root.path().join("x"));
        assert_eq!(status, 404, "{path}: {}", String::from_utf8_lossy(&body));
    }

    // 4. Every node lists both links, owned by node 1, the plan with its three downloads.
    let plan_of = |list: &serde_json::Value| {
        list.as_array().and_then(|l| l.iter().find(|e| e["file_name"] == "plan.pdf")).cloned().unwrap_or_default()
    };
    for n in &nodes {
        let listed = wait_for(Duration::from_secs(10), || {
            let list = n.ok(&["attachment-link", "list"]);
            (plan_of(&list)["downloads"] == 3).then_some(list)
        })
        .unwrap_or_else(|| panic!("{}: {}", n.name, n.ok(&["attachment-link", "list"])));
        assert_eq!(listed.as_array().map(Vec::len), Some(2));
        let plan = plan_of(&listed);
        assert_eq!(plan["user"], "alice@example.com");
        assert_eq!(plan["size"], 300_000);
        assert_eq!(plan["node_id"], node_id(n1));
    }
    assert!(nodes[1].log_text().contains("attachment link download"), "downloads are logged");

    // 5. A user with no threshold sends the same file untouched.
    let reply = send(nodes[1].smtp_ports.submission, "carol@example.com", "not linked", &[("plan.pdf", &big)]);
    assert!(reply.starts_with("250"), "{reply}");
    let plain = delivered(&dump, "not linked", &nodes[1]);
    assert!(plain.contains("filename=\"plan.pdf\"") && tokens_in(&plain).is_empty());

    // 6. Revoked: 404 at once on every node.
    let id = plan_of(&nodes[2].ok(&["attachment-link", "list"]))["id"].as_str().unwrap().to_string();
    nodes[2].ok(&["attachment-link", "revoke", &id]);
    for port in &download_ports {
        let gone = wait_for(Duration::from_secs(5), || {
            (fetch(&format!("http://127.0.0.1:{port}/a/{token}"), &root.path().join("r")).0 == 404).then_some(())
        });
        assert!(gone.is_some(), "a revoked link still works on port {port}");
    }
    let unknown = nodes[0].cli(&["attachment-link", "revoke", &id]);
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("no such attachment link"));

    // 7. Expired: a two-second link, made on node 3, works, then answers 404.
    n1.ok(&["config", "set", "attachment_links.ttl_s", "2"]);
    wait_for(Duration::from_secs(5), || {
        (nodes[2].ok(&["config", "get", "attachment_links.ttl_s"])["value"] == "2").then_some(())
    });
    let reply = send(nodes[2].smtp_ports.submission, "alice@example.com", "short", &[("short.bin", &big)]);
    assert!(reply.starts_with("250"), "{reply}");
    let short = tokens_in(&delivered(&dump, "short", &nodes[2])).remove(0);
    let url = format!("http://127.0.0.1:{}/a/{short}", download_ports[0]);
    let (status, _, body) = fetch(&url, &root.path().join("s"));
    assert!(status == 200 && body == big, "{status} before expiry");
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(fetch(&url, &root.path().join("s")).0, 404, "an expired link still works");
}
