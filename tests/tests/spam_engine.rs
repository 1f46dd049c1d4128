//! The spam stage end to end: GTUBE refused at DATA, the X-Spam headers and
//! each action, and the cluster's Bayes model: learned on node 1 through
//! `gatehouse spam learn`, the same `spam check` score on node 3.

mod common;

use common::mime::plain;
use common::{maildir_files, send_raw, smtp_node, wait_for};
use std::time::Duration;

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";

fn text(m: &[u8]) -> String {
    String::from_utf8_lossy(m).into_owned()
}

/// Spammy and hammy corpora of the test's own (no outside data needed).
fn corpus(root: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (spam, ham) = (root.join("spam"), root.join("ham"));
    std::fs::create_dir_all(&spam).unwrap();
    std::fs::create_dir_all(&ham).unwrap();
    for i in 0..12 {
        let s = format!(
            "From: deals{i}@promo.example\nSubject: cheap pills offer {i}\nMessage-ID: <s{i}@promo.example>\n\n\
             Buy cheap pills now, limited offer, click http://pills.example/{i} viagra discount winner\n"
        );
        std::fs::write(spam.join(format!("{i}.eml")), s).unwrap();
        let h = format!(
            "From: colleague{i}@partner.example\nSubject: project meeting notes {i}\nMessage-ID: <h{i}@partner.example>\n\n\
             Hello team, the minutes of the project meeting and the schedule for the release review are attached\n"
        );
        std::fs::write(ham.join(format!("{i}.eml")), h).unwrap();
    }
    (spam, ham)
}

#[test]
fn gtube_is_refused_and_each_action_does_what_it_says() {
    let root = tempfile::tempdir().unwrap();
    let (n, ports) = smtp_node(root.path());
    let to = ["alice@example.com"];
    let from = "sender@example.org";

    let reply = send_raw(ports.smtp, from, &to, &plain("test", GTUBE.as_bytes()));
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert!(reply.contains("spam"), "{reply}");

    // Under the thresholds: delivered with the verdict headers; a sender's own
    // X-Spam-Flag is removed.
    // Date and Message-ID as every mail client writes them (their absence scores: GH_MISSING_*).
    let mut ham =
        b"X-Spam-Flag: NO\r\nDate: Tue, 1 Dec 2026 10:00:00 +0000\r\nMessage-ID: <hello@example.org>\r\n".to_vec();
    ham.extend(plain("hello", b"nothing to see"));
    assert!(send_raw(ports.smtp, from, &to, &ham).starts_with("250"));
    let first = wait_for(Duration::from_secs(10), || maildir_files(&n, "alice").first().cloned()).expect("delivered");
    let first = text(&first);
    assert!(
        first.contains("X-Spam-Flag: NO\r\nX-Spam-Score: 0.00\r\nX-Spam-Status: No, score=0.00 required=5.00"),
        "{first}"
    );
    assert_eq!(first.matches("X-Spam-Flag").count(), 1, "{first}");

    // A score between the thresholds (tag at 5, reject at 15): GTUBE's 1000 is
    // over both, so lower the tag threshold under 0 to make ordinary mail spam.
    n.ok(&["config", "set", "spam.tag_score", "-1"]);
    n.ok(&["config", "set", "spam.action", "subject"]);
    assert!(send_raw(ports.smtp, from, &to, &plain("quarterly figures", b"x")).starts_with("250"));
    let tagged = wait_for(Duration::from_secs(10), || maildir_files(&n, "alice").get(1).cloned()).expect("tagged");
    let tagged = text(&tagged);
    assert!(tagged.contains("Subject: [SPAM] quarterly figures"), "{tagged}");
    assert!(tagged.contains("X-Spam-Flag: YES"), "{tagged}");

    n.ok(&["config", "set", "spam.action", "junk"]);
    assert!(send_raw(ports.smtp, from, &to, &plain("to junk", b"x")).starts_with("250"));
    let junk = n.dir.join("data/mail/example.com/alice/.Junk/new");
    let moved = wait_for(Duration::from_secs(10), || common::files_in(&junk).first().cloned()).expect("in Junk");
    assert!(text(&moved).contains("Subject: to junk"));

    n.ok(&["config", "set", "spam.action", "quarantine"]);
    assert!(send_raw(ports.smtp, from, &to, &plain("held as spam", b"x")).starts_with("250"));
    let held = wait_for(Duration::from_secs(10), || {
        let list = n.ok(&["quarantine", "list", "--reason", "spam"]);
        list.as_array().and_then(|a| a.first().cloned())
    })
    .expect("quarantined for spam");
    assert_eq!(held["subject"], "held as spam");
    n.ok(&["quarantine", "release", held["id"].as_str().unwrap()]);
    wait_for(Duration::from_secs(10), || (maildir_files(&n, "alice").len() == 3).then_some(())).expect("released");

    n.ok(&["config", "set", "spam.action", "encapsulate"]);
    let original = plain("wrapped", b"<b>buy</b>");
    assert!(send_raw(ports.smtp, from, &to, &original).starts_with("250"));
    let wrapped = wait_for(Duration::from_secs(10), || maildir_files(&n, "alice").get(3).cloned()).expect("wrapped");
    let wrapped_text = text(&wrapped);
    assert!(wrapped_text.contains("Content-Type: message/rfc822"), "{wrapped_text}");
    assert!(wrapped_text.contains("identified this message as spam"), "{wrapped_text}");
    assert!(wrapped.windows(original.len()).any(|w| w == original.as_slice()), "the original, byte for byte");
    n.ok(&["config", "set", "spam.encapsulate_plain_text", "true"]);
    assert!(send_raw(ports.smtp, from, &to, &plain("wrapped as text", b"x")).starts_with("250"));
    let plain_wrapped =
        wait_for(Duration::from_secs(10), || maildir_files(&n, "alice").get(4).cloned()).expect("wrapped");
    assert!(text(&plain_wrapped).contains("Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: inline"));

    n.ok(&["config", "set", "spam.enabled", "false"]);
    assert!(send_raw(ports.smtp, from, &to, &plain("unscored", b"x")).starts_with("250"));
    let last = wait_for(Duration::from_secs(10), || maildir_files(&n, "alice").get(5).cloned()).expect("delivered");
    assert!(!text(&last).contains("X-Spam-"), "{}", text(&last));
}

#[test]
fn the_model_learned_on_one_node_scores_alike_on_another() {
    let root = tempfile::tempdir().unwrap();
    // Snapshots every 20 entries, no log kept behind them: a node that joins
    // later can only get the model from a snapshot.
    let extra = "snapshot_logs_since_last = 20\nlogs_kept_after_snapshot = 0";
    let mut nodes = common::three_nodes(root.path(), extra);
    let (n1, n3) = (&nodes[0], &nodes[2]);
    n1.ok(&["config", "set", "spam.bayes_min_learns", "5"]);
    let (spam, ham) = corpus(root.path());
    let learned = n1.ok(&["spam", "learn", "--spam", spam.to_str().unwrap()]);
    assert_eq!(learned["learned"], 12, "{learned}");
    n1.ok(&["spam", "learn", "--ham", ham.to_str().unwrap()]);
    let again = n1.ok(&["spam", "learn", "--ham", ham.to_str().unwrap()]);
    assert_eq!(again["already_learned"], 12, "counted once: {again}");

    let probe = root.path().join("probe.eml");
    std::fs::write(&probe, "From: x@promo.example\nSubject: cheap pills\n\nlimited offer pills discount click now\n")
        .unwrap();
    let on_n1 = n1.ok(&["spam", "check", probe.to_str().unwrap()]);
    assert!(on_n1[0]["symbols"]["BAYES_SPAM"]["score"].as_f64().unwrap_or(0.0) > 3.0, "{on_n1}");
    let same = wait_for(Duration::from_secs(1), || {
        let on_n3 = n3.ok(&["spam", "check", probe.to_str().unwrap()]);
        (on_n3[0]["score"] == on_n1[0]["score"]).then_some(on_n3)
    });
    assert!(same.is_some(), "node 3 scores {} within 1 s", n3.ok(&["spam", "check", probe.to_str().unwrap()]));
    let status = n3.ok(&["spam", "status"]);
    assert_eq!((status["spam_learned"].as_u64(), status["ham_learned"].as_u64()), (Some(12), Some(12)), "{status}");

    // A correction moves a message from spam to ham instead of counting it twice.
    let one = spam.join("0.eml");
    let moved = n1.ok(&["spam", "learn", "--ham", one.to_str().unwrap()]);
    assert_eq!(moved["relearned"], 1, "{moved}");
    let status = wait_for(Duration::from_secs(2), || {
        let s = n3.ok(&["spam", "status"]);
        (s["spam_learned"] == 11).then_some(s)
    });
    assert!(status.is_some(), "{}", n3.ok(&["spam", "status"]));
    let score = n1.ok(&["spam", "check", probe.to_str().unwrap()])[0]["score"].clone();

    // A fourth node, joined after compaction, has the model from the snapshot.
    let token = nodes[0].token();
    let mut n4 = common::Node::new(root.path(), "n4", extra);
    n4.join(&token, &nodes[0].raft.clone());
    let caught_up = wait_for(Duration::from_secs(10), || {
        let s = n4.ok(&["spam", "status"]);
        (s["spam_learned"] == 11 && s["ham_learned"] == 13).then_some(s)
    });
    assert!(caught_up.is_some(), "{}", n4.ok(&["spam", "status"]));
    assert_eq!(n4.ok(&["spam", "check", probe.to_str().unwrap()])[0]["score"], score);

    // A restart keeps it.
    nodes[2].kill9();
    nodes[2].serve();
    let after = wait_for(Duration::from_secs(10), || {
        let s = nodes[2].ok(&["spam", "status"]);
        (s["spam_learned"] == 11).then_some(s)
    });
    assert!(after.is_some(), "{}", nodes[2].ok(&["spam", "status"]));
    assert_eq!(nodes[2].ok(&["spam", "check", probe.to_str().unwrap()])[0]["score"], score);
}

#[test]
fn address_and_keyword_filters() {
    let root = tempfile::tempdir().unwrap();
    let (n, ports) = smtp_node(root.path());
    let to = ["alice@example.com"];
    let junk = n.dir.join("data/mail/example.com/alice/.Junk/new");

    n.ok(&["spam", "addresses", "add", "--sender", "@promo.example", "--spam", "--comment", "newsletters"]);
    n.ok(&["spam", "addresses", "add", "--sender", "vip@promo.example", "--not-spam"]);
    let err = n.try_ok(&["spam", "addresses", "add", "--sender", "nobody", "--spam"]).unwrap_err();
    assert!(err.contains("value"), "{err}");
    assert_eq!(n.ok(&["spam", "addresses", "list"]).as_array().unwrap().len(), 2);

    assert!(send_raw(ports.smtp, "deals@promo.example", &to, &plain("offer", b"x")).starts_with("250"));
    let moved = wait_for(Duration::from_secs(10), || common::files_in(&junk).first().cloned()).expect("in Junk");
    assert!(text(&moved).contains("ADDRESS_SPAM (@promo.example)"), "{}", text(&moved));
    assert!(send_raw(ports.smtp, "vip@promo.example", &to, &plain("hello", b"x")).starts_with("250"));
    let inbox = wait_for(Duration::from_secs(10), || maildir_files(&n, "alice").first().cloned()).expect("inbox");
    assert!(text(&inbox).contains("ADDRESS_NOT_SPAM (vip@promo.example)"), "not spam wins: {}", text(&inbox));

    n.ok(&["spam", "keywords", "add", "wire transfer now", "--blacklisted"]);
    let bonus = n.ok(&["spam", "keywords", "add", "Quarterly Bonus", "--score", "6"]);
    let reply = send_raw(ports.smtp, "a@b.example", &to, &plain("urgent", b"please make a wire\r\ntransfer now"));
    assert!(reply.starts_with("550 5.7.1"), "{reply}");
    assert!(send_raw(ports.smtp, "a@b.example", &to, &plain("your quarterly bonus", b"x")).starts_with("250"));
    let moved = wait_for(Duration::from_secs(10), || common::files_in(&junk).get(1).cloned()).expect("second in Junk");
    assert!(text(&moved).contains("KEYWORDS (quarterly bonus)"), "{}", text(&moved));
    n.ok(&["spam", "keywords", "remove", &bonus["id"].to_string()]);
    let err = n.try_ok(&["spam", "keywords", "remove", &bonus["id"].to_string()]).unwrap_err();
    assert!(err.contains("404"), "{err}");

    // Export, replace with an empty document, import back: the same rules.
    let file = root.path().join("filters.json");
    n.ok(&["spam", "filters", "export", "-o", file.to_str().unwrap()]);
    let exported: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported["addresses"].as_array().unwrap().len(), 2, "{exported}");
    assert_eq!(exported["keywords"][0]["phrase"], "wire transfer now");
    let empty = root.path().join("empty.json");
    std::fs::write(&empty, r#"{"addresses": [], "keywords": []}"#).unwrap();
    n.ok(&["spam", "filters", "import", empty.to_str().unwrap(), "--replace"]);
    assert!(n.ok(&["spam", "addresses", "list"]).as_array().unwrap().is_empty());
    let imported = n.ok(&["spam", "filters", "import", file.to_str().unwrap()]);
    assert_eq!(imported["added"], 3, "{imported}");
    // A bad rule refuses the whole document, naming it.
    std::fs::write(
        &empty,
        r#"{"addresses": [{"field": "sender", "value": "@ok.example", "verdict": "spam"},
        {"field": "sender", "value": "bad", "verdict": "spam"}]}"#,
    )
    .unwrap();
    let err = n.try_ok(&["spam", "filters", "import", empty.to_str().unwrap()]).unwrap_err();
    assert!(err.contains("addresses") && err.contains("[1].value"), "{err}");
    assert_eq!(n.ok(&["spam", "addresses", "list"]).as_array().unwrap().len(), 2, "all or nothing");
}

#[test]
fn a_users_correspondents_are_auto_whitelisted() {
    let root = tempfile::tempdir().unwrap();
    let (n, ports) = smtp_node(root.path());
    let to = ["alice@example.com"];
    // Before alice writes to partner@ext.example, its mail has no AUTO_WHITELIST.
    assert!(send_raw(ports.smtp, "partner@ext.example", &to, &plain("first", b"x")).starts_with("250"));
    let first = wait_for(Duration::from_secs(10), || maildir_files(&n, "alice").first().cloned()).expect("delivered");
    assert!(!text(&first).contains("AUTO_WHITELIST"), "{}", text(&first));

    common::submit(ports.submission, "alice@example.com", Some("alice@example.com"), &["partner@ext.example"], "hi");
    let reply = wait_for(Duration::from_secs(5), || {
        assert!(send_raw(ports.smtp, "partner@ext.example", &to, &plain("reply", b"x")).starts_with("250"));
        let files = maildir_files(&n, "alice");
        let last = text(files.last().unwrap());
        last.contains("AUTO_WHITELIST").then_some(last)
    })
    .expect("the reply is auto-whitelisted");
    assert!(reply.contains("-4.00 AUTO_WHITELIST (partner@ext.example)"), "{reply}");
    // Another sender is not.
    let before = maildir_files(&n, "alice").len();
    assert!(send_raw(ports.smtp, "stranger@ext.example", &to, &plain("cold", b"x")).starts_with("250"));
    let cold = wait_for(Duration::from_secs(10), || {
        let now = maildir_files(&n, "alice");
        (now.len() == before + 1).then(|| now.last().cloned()).flatten()
    })
    .expect("delivered");
    assert!(text(&cold).contains("Subject: cold"), "{}", text(&cold));
    assert!(!text(&cold).contains("AUTO_WHITELIST"), "{}", text(&cold));
}

#[test]
fn old_spam_is_deleted_from_junk_folders() {
    let root = tempfile::tempdir().unwrap();
    let (n, ports) = common::smtp_node_with(root.path(), |n| n.set_smtp_option("junk_cleanup_interval_ms = 1000"));
    let to = ["alice@example.com"];
    let junk = n.dir.join("data/mail/example.com/alice/.Junk/new");
    let inbox = n.dir.join("data/mail/example.com/alice/new");
    assert!(send_raw(ports.smtp, "a@b.example", &to, &plain("kept in the inbox", b"x")).starts_with("250"));
    n.ok(&["config", "set", "spam.tag_score", "-1"]);
    for subject in ["old spam", "new spam"] {
        assert!(send_raw(ports.smtp, "a@b.example", &to, &plain(subject, b"x")).starts_with("250"));
    }
    let names = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
    };
    wait_for(Duration::from_secs(10), || (names(&junk).len() == 2).then_some(())).expect("two in Junk");
    // Time injected: the first Junk message and the inbox one are made 40 days old.
    let old =
        names(&junk).into_iter().find(|p| text(&std::fs::read(p).unwrap()).contains("Subject: old spam")).unwrap();
    let old_inbox = names(&inbox).pop().unwrap();
    for p in [&old, &old_inbox] {
        let status = std::process::Command::new("touch").arg("-d").arg("40 days ago").arg(p).status().unwrap();
        assert!(status.success());
    }
    wait_for(Duration::from_secs(5), || (!old.exists()).then_some(())).expect("old spam deleted (30 days by default)");
    assert_eq!(names(&junk).len(), 1, "the new spam stays");
    assert!(old_inbox.exists(), "the inbox is never cleaned");
}

#[test]
fn autolearn_learns_clear_spam_and_clear_ham_only() {
    let root = tempfile::tempdir().unwrap();
    let (n, ports) = smtp_node(root.path());
    let to = ["alice@example.com"];
    let learned = |n: &common::Node| {
        let s = n.ok(&["spam", "status"]);
        (s["spam_learned"].as_u64().unwrap_or(0), s["ham_learned"].as_u64().unwrap_or(0))
    };
    // Nothing clear: nothing learned.
    assert!(send_raw(ports.smtp, "a@b.example", &to, &plain("hello", b"x")).starts_with("250"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(learned(&n), (0, 0));
    // Address filter (10) + keyword (3) = 13 >= spam.autolearn_spam (12): learned as spam.
    n.ok(&["spam", "addresses", "add", "--sender", "@promo.example", "--spam"]);
    n.ok(&["spam", "keywords", "add", "cheap pills", "--score", "3"]);
    assert!(send_raw(ports.smtp, "deals@promo.example", &to, &plain("cheap pills", b"x")).starts_with("250"));
    wait_for(Duration::from_secs(5), || (learned(&n) == (1, 0)).then_some(())).expect("learned as spam");
    // Not-spam list (-100) <= spam.autolearn_ham (-3): learned as ham.
    n.ok(&["spam", "addresses", "add", "--sender", "boss@partner.example", "--not-spam"]);
    assert!(send_raw(ports.smtp, "boss@partner.example", &to, &plain("plans", b"x")).starts_with("250"));
    wait_for(Duration::from_secs(5), || (learned(&n) == (1, 1)).then_some(())).expect("learned as ham");
    // Switched off: nothing more.
    n.ok(&["config", "set", "spam.autolearn", "false"]);
    assert!(send_raw(ports.smtp, "boss@partner.example", &to, &plain("more plans", b"y")).starts_with("250"));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(learned(&n), (1, 1));
}

#[test]
fn user_reports_wait_for_review_and_approval_teaches_the_model() {
    let root = tempfile::tempdir().unwrap();
    let (n, _) = smtp_node(root.path());
    let (spam, _) = corpus(root.path());
    let file = |i: usize| spam.join(format!("{i}.eml")).to_str().unwrap().to_string();
    n.ok(&["config", "set", "spam.reports_per_user_max", "3"]);
    let filed = n.ok(&["spam", "report", "--spam", "--user", "Alice@example.com", &file(0), &file(1), &file(2)]);
    assert_eq!(filed["reported"], 3, "{filed}");
    let err = n.try_ok(&["spam", "report", "--spam", "--user", "alice@example.com", &file(3)]).unwrap_err();
    assert!(err.contains("user") && err.contains("reports waiting"), "one user cannot flood the list: {err}");
    let err = n.try_ok(&["spam", "report", "--spam", "--user", "nobody@example.com", &file(3)]).unwrap_err();
    assert!(err.contains("user") && err.contains("not a local user"), "{err}");

    let list = n.ok(&["spam", "reports", "list"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[0]["user"], "alice@example.com");
    assert_eq!(list[0]["subject"], "cheap pills offer 0");
    assert_eq!(n.ok(&["spam", "status"])["spam_learned"], 0, "nothing learned before review");

    n.ok(&["spam", "reports", "approve", &list[0]["id"].to_string()]);
    n.ok(&["spam", "reports", "discard", &list[1]["id"].to_string()]);
    assert_eq!(n.ok(&["spam", "status"])["spam_learned"], 1);
    let approved = n.ok(&["spam", "reports", "approve", "--all"]);
    assert_eq!(approved["learned"], 1, "{approved}");
    assert_eq!(n.ok(&["spam", "status"])["spam_learned"], 2);
    assert!(n.ok(&["spam", "reports", "list"]).as_array().unwrap().is_empty());

    // The daily schedule learns what is still waiting: 00:00 UTC has passed today.
    n.ok(&["spam", "report", "--spam", "--user", "alice@example.com", &file(4), &file(5)]);
    n.ok(&["config", "set", "spam.learn_reports_at", "00:00"]);
    let learned = wait_for(Duration::from_secs(5), || {
        let s = n.ok(&["spam", "status"]);
        (s["spam_learned"] == 4).then_some(s)
    });
    assert!(learned.is_some(), "{}", n.ok(&["spam", "status"]));
    assert!(n.ok(&["spam", "reports", "list"]).as_array().unwrap().is_empty());
    // Once a day: a report filed now waits until tomorrow (or an approval).
    n.ok(&["spam", "report", "--spam", "--user", "alice@example.com", &file(6)]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(n.ok(&["spam", "reports", "list"]).as_array().unwrap().len(), 1);
}
