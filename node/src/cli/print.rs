//! Human-readable output: aligned columns like `postqueue -p` or `doveadm`.

use serde_json::Value;

use super::args::{
    AliasCmd, AntivirusCmd, AttachmentLinkCmd, BlockedCmd, ClusterCmd, Command, ContentCmd, DkimCmd, DomainCmd,
    ExportRules, FilterCmd, GreylistCmd, GroupCmd, QuarantineCmd, QueueCmd, QuotaCmd, RelayDomainCmd, RulesCmd,
    SpamAddressCmd, SpamCmd, SpamFiltersCmd, SpamKeywordCmd, SpamReportsCmd, SpamRulesCmd, TemplateCmd, UserCmd,
};

fn s(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(x)) => x.clone(),
        Some(Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{:<w$}", c, w = widths[i])).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn items(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

fn join_list(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

pub fn human(command: &Command, reply: &Value) {
    match command {
        Command::Cluster(ClusterCmd::Status) => cluster_status(reply),
        Command::Cluster(ClusterCmd::AddNode) => {
            println!("join token (valid once): {}", s(reply, "token"));
            println!("on the new node: gatehouse join --token {} --seed {}", s(reply, "token"), s(reply, "seed"));
        }
        Command::Domain(DomainCmd::List) => table(
            &["DOMAIN", "ALIASES", "LIMITS"],
            items(reply)
                .iter()
                .map(|d| {
                    let limits = d.get("limits").map(limits_text).unwrap_or_default();
                    vec![s(d, "name"), join_list(d, "aliases"), limits]
                })
                .collect(),
        ),
        Command::RelayDomain(RelayDomainCmd::List) => table(
            &["RELAY DOMAIN", "RECIPIENTS"],
            items(reply)
                .iter()
                .map(|d| {
                    let list = join_list(d, "recipients");
                    vec![s(d, "domain"), if list.is_empty() { "any".into() } else { list }]
                })
                .collect(),
        ),
        Command::AttachmentLink(AttachmentLinkCmd::List { .. }) => table(
            &["ID", "USER", "FILE", "BYTES", "NODE", "EXPIRES", "DOWNLOADS", "LAST DOWNLOAD"],
            items(reply)
                .iter()
                .map(|l| {
                    vec![
                        s(l, "id"),
                        s(l, "user"),
                        s(l, "file_name"),
                        s(l, "size"),
                        s(l, "node_id"),
                        time_text(l, "expires_ms"),
                        s(l, "downloads"),
                        time_text(l, "last_download_ms"),
                    ]
                })
                .collect(),
        ),
        Command::Quota(QuotaCmd::Usage { .. }) => table(
            &["USER", "MESSAGES", "LIMIT", "BYTES", "LIMIT", "RESETS"],
            items(reply)
                .iter()
                .map(|u| {
                    let limit = |k: &str| if u[k].as_u64() == Some(0) { "none".to_string() } else { s(u, k) };
                    vec![
                        s(u, "user"),
                        s(u, "messages"),
                        limit("messages_max"),
                        s(u, "bytes"),
                        limit("bytes_max"),
                        s(u, "resets"),
                    ]
                })
                .collect(),
        ),
        Command::User(UserCmd::List) => table(
            &["ADDRESS", "NAME", "ENABLED", "FROZEN", "LIMITS"],
            items(reply)
                .iter()
                .map(|u| {
                    let limits = u.get("overrides").map(limits_text).unwrap_or_default();
                    vec![s(u, "address"), s(u, "display_name"), s(u, "enabled"), s(u, "frozen"), limits]
                })
                .collect(),
        ),
        Command::Group(GroupCmd::List) => table(
            &["GROUP", "MEMBERS"],
            items(reply).iter().map(|g| vec![s(g, "address"), join_list(g, "members")]).collect(),
        ),
        Command::Alias(AliasCmd::List) => table(
            &["ALIAS", "TARGETS"],
            items(reply).iter().map(|a| vec![s(a, "address"), join_list(a, "targets")]).collect(),
        ),
        Command::Config(_) if reply.is_array() => table(
            &["KEY", "VALUE", "DEFAULT"],
            items(reply).iter().map(|c| vec![s(c, "key"), s(c, "value"), s(c, "default")]).collect(),
        ),
        Command::Config(_) if reply.get("key").is_some() => {
            println!("{} = {}", s(reply, "key"), s(reply, "value"))
        }
        Command::Rules(RulesCmd::List) => table(
            &["ID", "LIST", "KIND", "VALUE", "ACTION", "COMMENT"],
            items(reply)
                .iter()
                .map(|r| {
                    let action = match s(r, "list").as_str() {
                        "white" => "-".to_string(),
                        "dnsbl" if s(r, "reply").is_empty() => format!("score {}", s(r, "score")),
                        "dnsbl" => format!("score {} if {}", s(r, "score"), s(r, "reply")),
                        _ => s(r, "action"),
                    };
                    vec![s(r, "id"), s(r, "list"), s(r, "kind"), s(r, "value"), action, s(r, "comment")]
                })
                .collect(),
        ),
        Command::Rules(RulesCmd::Add { .. }) => println!("ok: rule {}", s(reply, "id")),
        Command::Rules(RulesCmd::Export(ExportRules { output: None })) => {
            println!("{}", serde_json::to_string_pretty(reply).unwrap_or_default())
        }
        Command::Rules(RulesCmd::Import(_)) => {
            println!("ok: {} rule(s) added, {} already present", s(reply, "added"), s(reply, "skipped"))
        }
        Command::Greylist(GreylistCmd::Pending | GreylistCmd::List) => table(
            &["NETWORK", "SENDER", "RECIPIENT", "STATE", "ATTEMPTS", "FIRST SEEN", "EXPIRES"],
            items(reply)
                .iter()
                .map(|t| {
                    let state = if t.get("passed_ms").is_some_and(|v| !v.is_null()) { "passed" } else { "pending" };
                    vec![
                        s(t, "network"),
                        s(t, "sender"),
                        s(t, "recipient"),
                        state.to_string(),
                        s(t, "attempts"),
                        time_text(t, "first_seen_ms"),
                        time_text(t, "expires_ms"),
                    ]
                })
                .collect(),
        ),
        Command::Dkim(DkimCmd::Generate { .. }) => {
            let state = if reply["active"].as_bool() == Some(true) { "active" } else { "not active yet" };
            println!("key {} for {} ({}, {state})", s(reply, "selector"), s(reply, "domain"), s(reply, "algorithm"));
            println!("publish this TXT record:\n");
            println!("{} IN TXT {}", s(reply, "record_name"), zone_text(&s(reply, "record")));
        }
        Command::Dkim(DkimCmd::List) => table(
            &["DOMAIN", "SELECTOR", "ALGORITHM", "ACTIVE", "RECORD NAME"],
            items(reply)
                .iter()
                .map(|k| vec![s(k, "domain"), s(k, "selector"), s(k, "algorithm"), s(k, "active"), s(k, "record_name")])
                .collect(),
        ),
        Command::Blocked(BlockedCmd::List) => table(
            &["IP", "UNTIL", "REASON"],
            items(reply).iter().map(|b| vec![s(b, "ip"), time_text(b, "until_ms"), s(b, "reason")]).collect(),
        ),
        Command::Content(ContentCmd::Filter(FilterCmd::List)) => table(
            &["ID", "MATCH", "VALUE", "ACTION", "COMMENT"],
            items(reply)
                .iter()
                .map(|r| vec![s(r, "id"), s(r, "match"), s(r, "value"), s(r, "action"), s(r, "comment")])
                .collect(),
        ),
        Command::Content(ContentCmd::Filter(FilterCmd::Add { .. })) => println!("ok: rule {}", s(reply, "id")),
        Command::Content(ContentCmd::Filter(FilterCmd::Export(ExportRules { output: None }))) => {
            println!("{}", serde_json::to_string_pretty(reply).unwrap_or_default())
        }
        Command::Content(ContentCmd::Filter(FilterCmd::Import(_))) => {
            println!("ok: {} rule(s) added, {} already present", s(reply, "added"), s(reply, "skipped"))
        }
        Command::Antivirus(AntivirusCmd::Template(TemplateCmd::Get)) => print!("{}", s(reply, "template")),
        Command::Antivirus(AntivirusCmd::Status) => {
            let state = if reply["enabled"].as_bool() == Some(true) { "on" } else { "off" };
            println!("scanning (antivirus.enabled): {state}; update generation {}", s(reply, "generation"));
            if reply["reachable"].as_bool() == Some(true) {
                println!(
                    "this node ({}): clamd {} answers: {}",
                    s(reply, "node_id"),
                    s(reply, "clamd"),
                    s(reply, "version")
                );
            } else {
                println!(
                    "this node ({}): clamd {} unreachable: {}",
                    s(reply, "node_id"),
                    s(reply, "clamd"),
                    s(reply, "error")
                );
            }
            println!();
            table(
                &["NODE", "CLAMD VERSION", "UPDATE", "UPDATED", "RESULT"],
                items(&reply["nodes"])
                    .iter()
                    .map(|n| {
                        let version = if s(n, "version").is_empty() {
                            format!("unreachable: {}", s(n, "error"))
                        } else {
                            s(n, "version")
                        };
                        vec![
                            s(n, "node_id"),
                            version,
                            s(n, "generation_done"),
                            time_text(n, "updated_ms"),
                            s(n, "update_result"),
                        ]
                    })
                    .collect(),
            );
        }
        Command::Antivirus(AntivirusCmd::Update) => {
            println!(
                "ok: update {} requested; every node runs its update command and reloads clamd",
                s(reply, "generation")
            )
        }
        Command::Spam(SpamCmd::Check { .. }) => {
            for r in items(reply) {
                println!(
                    "{}: score {} / {}, action: {}",
                    s(&r, "file"),
                    s(&r, "score"),
                    s(&r, "required_score"),
                    s(&r, "action")
                );
                if let Some(symbols) = r["symbols"].as_object() {
                    for sym in symbols.values() {
                        let options = join_list(sym, "options");
                        let options = if options.is_empty() { String::new() } else { format!(" ({options})") };
                        println!("  {:>7.2} {}{}", sym["score"].as_f64().unwrap_or(0.0), s(sym, "name"), options);
                    }
                }
            }
        }
        Command::Spam(SpamCmd::Learn { .. }) => println!(
            "ok: {} learned as {}, {} already learned, {} moved from the other class",
            s(reply, "learned"),
            s(reply, "class"),
            s(reply, "already_learned"),
            s(reply, "relearned")
        ),
        Command::Spam(SpamCmd::Addresses(SpamAddressCmd::List)) => table(
            &["ID", "FIELD", "ADDRESS", "VERDICT", "COMMENT"],
            items(reply)
                .iter()
                .map(|r| vec![s(r, "id"), s(r, "field"), s(r, "value"), s(r, "verdict"), s(r, "comment")])
                .collect(),
        ),
        Command::Spam(SpamCmd::Keywords(SpamKeywordCmd::List)) => table(
            &["ID", "PHRASE", "SCORE", "BLACKLISTED", "COMMENT"],
            items(reply)
                .iter()
                .map(|r| vec![s(r, "id"), s(r, "phrase"), s(r, "score"), s(r, "blacklisted"), s(r, "comment")])
                .collect(),
        ),
        Command::Spam(
            SpamCmd::Addresses(SpamAddressCmd::Add { .. }) | SpamCmd::Keywords(SpamKeywordCmd::Add { .. }),
        ) => {
            println!("ok: rule {}", s(reply, "id"))
        }
        Command::Spam(SpamCmd::Report { .. }) => println!("ok: {} report(s) filed for review", s(reply, "reported")),
        Command::Spam(SpamCmd::Reports(SpamReportsCmd::List)) => table(
            &["ID", "USER", "REPORTED AS", "FROM", "SUBJECT", "WHEN"],
            items(reply)
                .iter()
                .map(|r| {
                    vec![
                        s(r, "id"),
                        s(r, "user"),
                        s(r, "class"),
                        s(r, "from"),
                        s(r, "subject"),
                        time_text(r, "reported_ms"),
                    ]
                })
                .collect(),
        ),
        Command::Spam(SpamCmd::Reports(SpamReportsCmd::Approve { .. })) => {
            println!("ok: {} report(s) learned", s(reply, "learned"))
        }
        Command::Spam(SpamCmd::Filters(SpamFiltersCmd::Export(ExportRules { output: None }))) => {
            println!("{}", serde_json::to_string_pretty(reply).unwrap_or_default())
        }
        Command::Spam(SpamCmd::Filters(SpamFiltersCmd::Import(_))) => {
            println!("ok: {} rule(s) added, {} already present", s(reply, "added"), s(reply, "skipped"))
        }
        Command::Spam(SpamCmd::Status) => {
            println!("learned: {} spam, {} ham", s(reply, "spam_learned"), s(reply, "ham_learned"));
            println!("tokens:  {} of {} ({} expired)", s(reply, "tokens"), s(reply, "tokens_max"), s(reply, "expired"));
            let ready = if reply["bayes_ready"].as_bool() == Some(true) { "yes" } else { "no" };
            println!("Bayes votes: {ready} (needs {} of each)", s(reply, "bayes_min_learns"));
            let files: Vec<String> =
                items(&reply["rule_files"]).iter().map(|f| f.as_str().unwrap_or_default().to_string()).collect();
            println!("rule files: {}", if files.is_empty() { "none".to_string() } else { files.join(", ") });
            match reply["rule_pack"].as_object() {
                Some(p) => println!(
                    "rule pack: version {} from {}, installed {}",
                    p.get("version").and_then(|v| v.as_str()).unwrap_or_default(),
                    p.get("url").and_then(|v| v.as_str()).unwrap_or_default(),
                    time_text(&reply["rule_pack"], "installed_ms")
                ),
                None => println!("rule pack: none"),
            }
        }
        Command::Spam(SpamCmd::Rules(SpamRulesCmd::List { .. })) => {
            table(
                &["NAME", "KIND", "SCORE", "FILE", "DESCRIPTION"],
                items(&reply["rules"])
                    .iter()
                    .map(|r| vec![s(r, "name"), s(r, "kind"), s(r, "score"), s(r, "source"), s(r, "description")])
                    .collect(),
            );
            print_not_compiled(reply);
        }
        Command::Spam(SpamCmd::Rules(SpamRulesCmd::Import { .. })) => {
            println!(
                "ok: {} file(s), {} rules compiled ({} scored, {} by PCRE2)",
                s(reply, "files"),
                s(reply, "rules"),
                s(reply, "scored"),
                s(reply, "by_pcre2")
            );
            print_not_compiled(reply);
        }
        Command::Spam(SpamCmd::Rules(SpamRulesCmd::Export { .. })) if reply.is_null() => {}
        Command::Spam(SpamCmd::Update) => {
            let p = &reply["pack"];
            let changed = if p["changed"].as_bool() == Some(true) { "installed" } else { "already installed" };
            println!("ok: rule pack version {} {changed}: {} rules", s(p, "version"), s(p, "rules"));
            let names = join_list(p, "not_compiled");
            if !names.is_empty() {
                println!("not compiled (eval tests, MIME headers): {names}");
            }
        }
        Command::Quarantine(QuarantineCmd::List { .. }) => table(
            &["ID", "NODE", "RECEIVED", "REASON", "SENDER", "RECIPIENTS", "SUBJECT", "STATE"],
            items(reply)
                .iter()
                .map(|e| {
                    vec![
                        s(e, "id"),
                        s(e, "node_id"),
                        time_text(e, "received_ms"),
                        format!("{}: {}", s(e, "reason"), s(e, "detail")),
                        s(e, "sender"),
                        join_list(e, "recipients"),
                        s(e, "subject"),
                        s(e, "state"),
                    ]
                })
                .collect(),
        ),
        Command::Quarantine(QuarantineCmd::Show { .. }) => {
            let e = &reply["entry"];
            println!("id:         {}", s(reply, "id"));
            println!("held on:    node {}", s(e, "node_id"));
            println!("received:   {}", time_text(e, "received_ms"));
            println!("reason:     {}: {}", s(e, "reason"), s(e, "detail"));
            println!("sender:     {}", s(e, "sender"));
            println!("recipients: {}", join_list(e, "recipients"));
            println!("state:      {}", s(e, "state"));
            println!();
            match reply.get("message").and_then(Value::as_str) {
                Some(text) => print!("{text}"),
                None => {
                    print!("{}", s(e, "headers"));
                    println!("\n(headers only: the body is on node {})", s(e, "node_id"));
                }
            }
        }
        Command::Queue(QueueCmd::List) => queue_list(reply),
        Command::Queue(QueueCmd::Replicas) => table(
            &["OWNER NODE", "MESSAGES"],
            items(reply).iter().map(|r| vec![s(r, "owner"), s(r, "messages")]).collect(),
        ),
        Command::Queue(QueueCmd::Show { .. }) => {
            if let Some(entry) = reply.get("entry") {
                queue_entry(entry);
            }
            println!();
            print!("{}", s(reply, "message"));
        }
        Command::Queue(_) => println!("ok: {} message(s)", s(reply, "messages")),
        Command::Export { output: None, .. } => println!("{}", serde_json::to_string_pretty(reply).unwrap_or_default()),
        _ => println!("ok"),
    }
}

/// The limits a user has set, as `key=value` pairs; "-" when all are defaults.
fn limits_text(overrides: &Value) -> String {
    let set: Vec<String> = overrides
        .as_object()
        .map(|o| o.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    if set.is_empty() {
        "-".into()
    } else {
        set.join(",")
    }
}

fn cluster_status(v: &Value) {
    println!(
        "cluster {}  node {} ({})  leader {}  term {}",
        s(v, "cluster_id"),
        s(v, "node_id"),
        s(v, "state"),
        s(v, "leader"),
        s(v, "term")
    );
    println!(
        "log: last {}  applied {}  snapshot {}  purged {}  snapshots built {} installed {}",
        s(v, "last_log_index"),
        s(v, "applied_index"),
        s(v, "snapshot_index"),
        s(v, "purged_index"),
        s(v, "snapshots_built"),
        s(v, "snapshots_installed")
    );
    let leader = v.get("leader").and_then(Value::as_u64);
    let rows = items(v.get("members").unwrap_or(&Value::Null))
        .iter()
        .map(|m| {
            let id = m.get("node_id").and_then(Value::as_u64);
            let role = if id == leader {
                "leader"
            } else if m.get("voter").and_then(Value::as_bool) == Some(true) {
                "voter"
            } else {
                "learner"
            };
            let state = m.get("state").and_then(Value::as_str).unwrap_or("unreachable");
            vec![
                s(m, "node_id"),
                role.to_string(),
                state.to_string(),
                s(m, "raft_addr"),
                s(m, "admin_addr"),
                s(m, "applied_index"),
                s(m, "matched_index"),
                s(m, "lag"),
            ]
        })
        .collect();
    table(&["ID", "ROLE", "STATE", "RAFT", "ADMIN", "APPLIED", "MATCHED", "LAG"], rows);
}

/// Like `postqueue -p`: id (with `*` while an attempt runs, `!` when held),
/// size, arrival, sender, then each recipient not yet delivered with its last error.
fn queue_list(v: &Value) {
    let entries = items(v);
    if entries.is_empty() {
        println!("Mail queue is empty");
        return;
    }
    println!("{:<22} {:>9}  {:<31}  SENDER/RECIPIENT", "QUEUE ID", "SIZE", "ARRIVAL");
    for e in &entries {
        queue_entry(e);
    }
    let bytes: u64 = entries.iter().filter_map(|e| e.get("size").and_then(Value::as_u64)).sum();
    println!("-- {} Kbytes in {} Request(s).", bytes.div_ceil(1024), entries.len());
}

fn queue_entry(e: &Value) {
    let flag = if e.get("held").and_then(Value::as_bool) == Some(true) {
        "!"
    } else if e.get("active").and_then(Value::as_bool) == Some(true) {
        "*"
    } else {
        ""
    };
    let arrival = e.get("received_ms").and_then(Value::as_u64).map(utc).unwrap_or_default();
    let sender = match s(e, "sender").as_str() {
        "" => "MAILER-DAEMON".to_string(),
        other => other.to_string(),
    };
    println!("{:<22} {:>9}  {:<31}  {}", format!("{}{flag}", s(e, "queue_id")), s(e, "size"), arrival, sender);
    for r in items(e.get("recipients").unwrap_or(&Value::Null)) {
        if s(&r, "state") == "delivered" {
            continue;
        }
        if r.get("diagnostic").is_some_and(|d| !d.is_null()) {
            println!("{:<67}({} {}: {})", "", s(&r, "state"), s(&r, "status"), s(&r, "diagnostic"));
        }
        println!("{:<67}{}", "", s(&r, "address"));
    }
    println!();
}

/// RFC 5322 date (the same form as the Received header).
fn utc(ms: u64) -> String {
    mail_builder::headers::date::Date::new((ms / 1000) as i64).to_rfc822()
}

/// A `*_ms` field as a date, or "-".
fn time_text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_u64).map(utc).unwrap_or_else(|| "-".into())
}

/// A TXT value as a zone file writes it: quoted strings of at most 255 bytes.
pub fn zone_text(value: &str) -> String {
    let chunks: Vec<String> =
        value.as_bytes().chunks(255).map(|c| format!("\"{}\"", String::from_utf8_lossy(c))).collect();
    if chunks.len() == 1 {
        chunks.concat()
    } else {
        format!("( {} )", chunks.join(" "))
    }
}

/// The rules that did not compile, each with its file, line and reason.
fn print_not_compiled(reply: &Value) {
    let list = items(&reply["not_compiled"]);
    if list.is_empty() {
        return;
    }
    println!("{} rule(s) not compiled:", list.len());
    for u in list {
        println!("  {} ({}:{}): {}", s(&u, "name"), s(&u, "source"), s(&u, "line"), s(&u, "reason"));
    }
}
