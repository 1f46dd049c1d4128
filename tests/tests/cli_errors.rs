//! Bad input gets an error that names the field, and changes nothing.

mod common;

use common::*;

#[test]
fn cli_errors_name_the_bad_field() {
    let root = tempfile::tempdir().unwrap();
    let mut n = Node::new(root.path(), "n1", "");
    n.serve();
    n.ok(&["domain", "add", "example.com"]);
    let cases: &[(&[&str], &str)] = &[
        (&["domain", "add", "bad domain"], "name"),
        (&["domain", "add", "example.com"], "already exists"),
        (&["user", "add", "nobody", "--password", "12345678"], "address"),
        (&["user", "add", "a@other.org", "--password", "12345678"], "not a local domain"),
        (&["user", "add", "a@example.com", "--password", "short"], "password"),
        (&["user", "remove", "ghost@example.com"], "no user"),
        (&["config", "set", "greylist.delay_s", "soon"], "greylist.delay_s"),
        (&["config", "set", "no.such", "1"], "unknown setting"),
        (&["group", "add-member", "g@example.com", "a@example.com"], "no user"),
        (&["group", "remove", "g@example.com"], "group"),
        (&["alias", "add", "x@example.com", "not an address"], "targets"),
        (&["cluster", "remove-node", "abc"], "invalid digit"),
    ];
    for (args, needle) in cases {
        let err = n.try_ok(args).expect_err(&format!("{args:?} should fail"));
        assert!(err.contains(needle), "{args:?}: {err:?} should mention {needle:?}");
    }
    assert_eq!(n.domains(), vec!["example.com"]);
    n.ok(&["user", "add", "ann@example.com", "--password", "12345678"]);
    n.ok(&["user", "limits", "ann@example.com", "--daily-messages-max", "100"]);
    n.ok(&["user", "freeze", "ann@example.com"]);
    let users = n.ok(&["user", "list"]);
    assert_eq!(users[0]["frozen"], true, "{users}");
    assert_eq!(users[0]["overrides"]["daily_messages_max"], 100, "{users}");
    assert!(users[0].get("password_hash").is_none(), "the hash must never be listed: {users}");
    n.ok(&["user", "remove", "ann@example.com"]);
    assert_eq!(n.ok(&["user", "list"]).as_array().unwrap().len(), 0);

    // A malformed join token is refused before anything is written.
    let mut j = Node::new(root.path(), "j", "");
    let out = std::process::Command::new(binary())
        .arg("-c")
        .arg(&j.config)
        .args(["join", "--token", "nonsense", "--seed", &n.raft])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("token"), "{:?}", out);
    j.kill9();

    // A bad config key is named.
    let bad = root.path().join("bad.toml");
    std::fs::write(&bad, "[cluster]\nheartbeat = 5\n").unwrap();
    let out = std::process::Command::new(binary()).arg("-c").arg(&bad).arg("serve").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("heartbeat"), "{:?}", out);
}

#[test]
fn export_then_import_restores_the_configuration() {
    let root = tempfile::tempdir().unwrap();
    let mut a = Node::new(root.path(), "a", "");
    a.serve();
    a.ok(&["domain", "add", "example.com"]);
    a.ok(&["domain", "alias-add", "example.net", "example.com"]);
    a.ok(&["user", "add", "alice@example.com", "--password", "12345678"]);
    a.ok(&["group", "add", "staff@example.com"]);
    a.ok(&["group", "add-member", "staff@example.com", "alice@example.com"]);
    a.ok(&["alias", "add", "sales@example.com", "alice@example.com", "bob@partner.org"]);
    a.ok(&["config", "set", "smtp.hostname", "mx1.example.com"]);
    let file = root.path().join("export.json");
    a.ok(&["export", "-o", file.to_str().unwrap()]);

    let mut b = Node::new(root.path(), "b", "");
    b.serve();
    b.ok(&["domain", "add", "stale.org"]);
    b.ok(&["import", file.to_str().unwrap()]);
    assert_eq!(b.ok(&["export"]), a.ok(&["export"]));
    assert_eq!(b.domains(), vec!["example.com"]);
}

/// `gatehouse … | head`: a reader that goes away ends the command without a
/// panic or a message (it panicked in println! before).
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let mut child = std::process::Command::new(binary())
        .args(["dmarc", "record", "example.com"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the first line
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "a panic's exit code");
}
