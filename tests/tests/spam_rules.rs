//! SpamAssassin rule files end to end: Debian's own `.cf` files imported
//! with `gatehouse spam rules import`, their rules firing by name in
//! X-Spam-Report, what could not be compiled listed, export giving the
//! bytes back; and the rule pack from `spam.rules_url`, served by a local
//! HTTP server, installed on every node, a broken one refused.

mod common;

use common::mime::plain;
use common::{free_port, maildir_files, send_raw, smtp_node, wait_for, Daemon};
use std::process::Command;
use std::time::Duration;

const DEBIAN_RULES: &str = "/usr/share/spamassassin";

fn debian_rule_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(DEBIAN_RULES)
        .unwrap_or_else(|e| panic!("{DEBIAN_RULES}: {e} (Debian package spamassassin; ./scripts/test installs it)"))
        .flatten()
        .map(|e| e.path().display().to_string())
        .filter(|p| p.ends_with(".cf"))
        .collect();
    files.sort();
    assert!(files.len() > 20, "{files:?}");
    files
}

#[test]
fn debian_rule_files_import_fire_by_name_and_export_unchanged() {
    let root = tempfile::tempdir().unwrap();
    let (n, ports) = smtp_node(root.path());
    let files = debian_rule_files();
    let mut args = vec!["spam", "rules", "import"];
    args.extend(files.iter().map(String::as_str));
    let imported = n.ok(&args);
    assert_eq!(imported["files"].as_u64(), Some(files.len() as u64), "{imported}");
    assert!(imported["rules"].as_u64().unwrap_or(0) > 1500, "{}", imported["rules"]);
    assert!(imported["by_pcre2"].as_u64().unwrap_or(0) > 0, "{}", imported["by_pcre2"]);
    // Eval rules cannot be compiled: listed by name, file and reason.
    let not_compiled = imported["not_compiled"].as_array().cloned().unwrap_or_default();
    let bayes = not_compiled.iter().find(|u| u["name"] == "BAYES_99").unwrap_or_else(|| panic!("{not_compiled:?}"));
    assert_eq!(bayes["source"], "23_bayes.cf");
    assert!(bayes["reason"].as_str().unwrap_or_default().contains("check_bayes"), "{bayes}");

    // The text output names them too.
    let out = Command::new(common::binary())
        .args(["-c", n.config.to_str().unwrap(), "spam", "rules", "import", &format!("{DEBIAN_RULES}/23_bayes.cf")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("not compiled:") && text.contains("BAYES_99 (23_bayes.cf:"),
        "{text}"
    );

    // Their rules fire by name, with Debian's scores (the Bayes-on, network-off set).
    let listed = n.ok(&["spam", "rules", "list"]);
    let rule = |name: &str| listed["rules"].as_array().and_then(|r| r.iter().find(|x| x["name"] == name).cloned());
    assert_eq!(rule("GUARANTEED_100_PERCENT").map(|r| r["score"].clone()), Some(serde_json::json!(2.48)));
    assert_eq!(rule("DEAR_FRIEND").map(|r| r["source"].clone()), Some(serde_json::json!("20_phrases.cf")));
    n.ok(&["config", "set", "spam.action", "tag"]);
    let body = b"Dear Friend,\r\n\r\nThis offer is 100% GUARANTEED. Buy viagra online today.\r\n";
    let reply = send_raw(ports.smtp, "sender@example.org", &["alice@example.com"], &plain("an offer", body));
    assert!(reply.starts_with("250"), "{reply}");
    let got = wait_for(Duration::from_secs(10), || maildir_files(&n, "alice").first().cloned()).expect("delivered");
    let got = String::from_utf8_lossy(&got);
    for name in ["GUARANTEED_100_PERCENT", "DEAR_FRIEND", "DRUG_ED_ONLINE"] {
        assert!(got.contains(&format!(" {name} (")), "{name} not in the report:\n{got}");
    }
    assert!(got.contains("*   2.48 GUARANTEED_100_PERCENT ("), "{got}");

    // Export gives the file's bytes back, Latin-1 and all.
    let out_file = root.path().join("advance.cf");
    n.ok(&["spam", "rules", "export", "--name", "20_advance_fee.cf", "-o", out_file.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out_file).unwrap(), std::fs::read(format!("{DEBIAN_RULES}/20_advance_fee.cf")).unwrap());

    // Removing a file removes its rules.
    n.ok(&["spam", "rules", "remove", "20_phrases.cf"]);
    let listed = n.ok(&["spam", "rules", "list"]);
    assert!(!listed["rules"].as_array().unwrap().iter().any(|r| r["name"] == "DEAR_FRIEND"));
    let status = n.ok(&["spam", "status"]);
    assert!(!status["rule_files"].as_array().unwrap().iter().any(|f| f == "20_phrases.cf"), "{status}");
}

#[test]
fn operator_rules_score_and_broken_files_are_refused_by_line() {
    let root = tempfile::tempdir().unwrap();
    let (n, ports) = smtp_node(root.path());
    let own = root.path().join("local.cf");
    std::fs::write(
        &own,
        "header   LOCAL_SUBJ  Subject =~ /\\bquarterly bonanza\\b/i\ndescribe LOCAL_SUBJ  Our own test\nscore    LOCAL_SUBJ  7.5\n\
         body     LOCAL_LOOK  /prize(?= now)/\nscore    LOCAL_LOOK  0.5\nheader   LOCAL_EVAL  eval:check_for_fake()\n",
    )
    .unwrap();
    let imported = n.ok(&["spam", "rules", "import", own.to_str().unwrap()]);
    assert_eq!(imported["rules"].as_u64(), Some(2), "{imported}");
    assert_eq!(imported["by_pcre2"].as_u64(), Some(1), "{imported}");
    assert_eq!(imported["not_compiled"][0]["name"], "LOCAL_EVAL", "{imported}");

    // 7.5 + 0.5 is over the tag threshold (5): the default action files it in Junk.
    let reply =
        send_raw(ports.smtp, "s@example.org", &["alice@example.com"], &plain("Quarterly Bonanza", b"win a prize now"));
    assert!(reply.starts_with("250"), "{reply}");
    let junk = n.dir.join("data/mail/example.com/alice/.Junk/new");
    let moved = wait_for(Duration::from_secs(10), || common::files_in(&junk).first().cloned()).expect("in Junk");
    let moved = String::from_utf8_lossy(&moved);
    assert!(moved.contains("7.50 LOCAL_SUBJ (Our own test)") && moved.contains("LOCAL_LOOK"), "{moved}");

    let broken = root.path().join("broken.cf");
    std::fs::write(&broken, "body OK_ONE /fine/\nbody BAD_ONE /never closed\n").unwrap();
    let err = n.try_ok(&["spam", "rules", "import", broken.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("broken.cf line 2") && err.contains("BAD_ONE"), "{err}");
    let listed = n.ok(&["spam", "rules", "list"]);
    assert!(!listed["rules"].as_array().unwrap().iter().any(|r| r["name"] == "OK_ONE"), "nothing of a refused file");
}

/// A static HTTP server for `dir` on loopback.
fn http_server(dir: &std::path::Path) -> (Daemon, u16) {
    let port = free_port();
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory", dir.to_str().unwrap()]);
    (Daemon::start(&mut cmd, port, "python3 http.server").expect("http server"), port)
}

#[test]
fn rule_pack_from_a_local_server_reaches_every_node_and_a_broken_one_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let nodes = common::three_nodes(root.path(), "");
    let served = root.path().join("www");
    std::fs::create_dir_all(&served).unwrap();
    let pack_v1 = "# version: 2026120101\nbody PACK_WIDGETS /\\bmiracle widgets?\\b/i\ndescribe PACK_WIDGETS Miracle widgets\nscore PACK_WIDGETS 3.5\n";
    std::fs::write(served.join("pack.cf"), pack_v1).unwrap();
    let (_server, port) = http_server(&served);
    let probe = root.path().join("probe.eml");
    std::fs::write(&probe, "From: a@b.example\nSubject: hi\n\nBuy miracle widgets today\n").unwrap();

    let err = nodes[0].try_ok(&["spam", "update"]).unwrap_err();
    assert!(err.contains("spam.rules_url"), "{err}");
    nodes[0].ok(&["config", "set", "spam.rules_url", &format!("http://127.0.0.1:{port}/pack.cf")]);
    let updated = nodes[1].ok(&["spam", "update"]);
    assert_eq!(updated["pack"]["version"], "2026120101", "{updated}");
    for n in &nodes {
        let on = wait_for(Duration::from_secs(5), || {
            let r = n.ok(&["spam", "check", probe.to_str().unwrap()]);
            r[0]["symbols"]["PACK_WIDGETS"]["score"].as_f64().map(|_| r)
        });
        assert!(on.is_some(), "pack rule on every node");
        let status = n.ok(&["spam", "status"]);
        assert_eq!(status["rule_pack"]["version"], "2026120101", "{status}");
    }

    // A pack with one broken rule is refused whole; the installed one stays.
    std::fs::write(
        served.join("pack.cf"),
        "# version: 2026120202\nbody PACK_GOOD /fine/\nbody PACK_BAD /a{3,1}(?<=x+)[/\n",
    )
    .unwrap();
    let err = nodes[2].try_ok(&["spam", "update"]).unwrap_err();
    assert!(err.contains("refused") && err.contains("PACK_BAD"), "{err}");
    assert_eq!(nodes[0].ok(&["spam", "status"])["rule_pack"]["version"], "2026120101");

    // The daily schedule: one node fetches, every node gets it.
    std::fs::write(served.join("pack.cf"), pack_v1.replace("2026120101", "2026120303").replace("3.5", "4.5")).unwrap();
    nodes[0].ok(&["config", "set", "spam.update_at", "00:00"]);
    let scheduled = wait_for(Duration::from_secs(15), || {
        let s = nodes[2].ok(&["spam", "status"]);
        (s["rule_pack"]["version"] == "2026120303").then_some(s)
    });
    assert!(scheduled.is_some(), "{}", nodes[2].ok(&["spam", "status"]));
    let r = nodes[1].ok(&["spam", "check", probe.to_str().unwrap()]);
    assert_eq!(r[0]["symbols"]["PACK_WIDGETS"]["score"].as_f64(), Some(4.5), "{r}");
}

#[test]
fn blocklists_score_received_ips_and_link_domains() {
    let root = tempfile::tempdir().unwrap();
    let dns_port = free_port();
    let records: Vec<String> = [
        "--host-record=7.100.51.198.rbl.test,127.0.0.2",
        "--host-record=bad.example.uribl.test,127.0.0.2",
        "--local=/rbl.test/",
        "--local=/uribl.test/",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let _dns = common::dns_server(dns_port, &records);
    let mut n = common::Node::new(root.path(), "n1", &format!("[dns]\nnameservers = [\"127.0.0.1:{dns_port}\"]\n"));
    n.serve();
    n.ok(&["domain", "add", "example.com"]);
    n.ok(&["user", "add", "alice@example.com", "--password", "correct horse"]);
    n.ok(&["config", "set", "spam.action", "tag"]);
    let err = n.try_ok(&["config", "set", "spam.uribl_zones", "uribl.test=lots"]).unwrap_err();
    assert!(err.contains("spam.uribl_zones") && err.contains("number"), "{err}");
    n.ok(&["config", "set", "spam.received_rbl_zones", "rbl.test=2.5"]);
    n.ok(&["config", "set", "spam.uribl_zones", "uribl.test=4"]);

    let message = |ip: &str, link: &str| {
        let mut m =
            format!("Received: from relay.example (relay.example [{ip}]) by mx.sender.example\r\n").into_bytes();
        m.extend(plain("links", format!("see {link} today").as_bytes()));
        m
    };
    let to = ["alice@example.com"];
    assert!(send_raw(n.smtp_ports.smtp, "s@example.org", &to, &message("198.51.100.7", "http://click.bad.example/x"))
        .starts_with("250"));
    assert!(send_raw(n.smtp_ports.smtp, "s@example.org", &to, &message("198.51.100.8", "http://good.example/x"))
        .starts_with("250"));
    let got = wait_for(Duration::from_secs(10), || {
        let files = maildir_files(&n, "alice");
        (files.len() == 2).then_some(files)
    })
    .expect("both delivered");
    let texts: Vec<String> = got.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
    let listed = texts.iter().find(|t| t.contains("198.51.100.7")).unwrap();
    assert!(
        listed.contains("RBL_RECEIVED (198.51.100.7 in rbl.test)") && listed.contains("2.50 RBL_RECEIVED"),
        "{listed}"
    );
    assert!(listed.contains("4.00 URIBL (bad.example in uribl.test)"), "{listed}");
    let clean = texts.iter().find(|t| t.contains("198.51.100.8")).unwrap();
    assert!(!clean.contains("RBL_RECEIVED") && !clean.contains("URIBL"), "{clean}");
}
