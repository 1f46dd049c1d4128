//! What each admin command sends and prints.

use anyhow::Context;
use serde_json::{json, Value};
use std::io::BufRead;
use std::time::Duration;

use super::args::{
    AliasCmd, AntivirusCmd, AttachmentLinkCmd, BlockedCmd, ClusterCmd, Command, ConfigCmd, ContentCmd, DkimCmd,
    DomainCmd, ExportRules, FilterCmd, GreylistCmd, GroupCmd, ImportRules, PasswordArgs, QuarantineCmd, QueueCmd,
    QuotaCmd, RelayDomainCmd, RulesCmd, SpamAddressCmd, SpamCmd, SpamFiltersCmd, SpamKeywordCmd, SpamReportsCmd,
    SpamRulesCmd, TemplateCmd, UserCmd,
};
use super::client::AdminClient;
use super::print;
use crate::config::NodeConfig;

/// Runs a command that talks to a node's admin API.
pub fn run_admin_command(
    command: &Command,
    config: &NodeConfig,
    as_json: bool,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let client = admin_client(config, token_file)?;
    let reply = send(&client, command)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print::human(command, &reply);
    }
    Ok(())
}

/// A client of this node's admin API, with its token.
pub fn admin_client(config: &NodeConfig, token_file: Option<&std::path::Path>) -> anyhow::Result<AdminClient> {
    let token_path = token_file.map(std::path::Path::to_path_buf).unwrap_or_else(|| config.admin_token_path());
    let token = std::fs::read_to_string(&token_path)
        .with_context(|| format!("reading the admin token {} (is --data-dir right?)", token_path.display()))?;
    // Joins and removals wait for catch-up, so allow the join timeout.
    let timeout = Duration::from_millis(config.cluster.join_timeout_ms + 5000);
    Ok(AdminClient::new(&config.admin.listen, token.trim().to_string(), timeout))
}

fn send(client: &AdminClient, command: &Command) -> anyhow::Result<Value> {
    let p = AdminClient::path;
    match command {
        Command::Cluster(c) => match c {
            ClusterCmd::Status => client.get("cluster/status"),
            ClusterCmd::AddNode => client.post("cluster/tokens", json!({})),
            ClusterCmd::RemoveNode { node_id } => client.delete(&p(&["cluster", "nodes", &node_id.to_string()])),
            ClusterCmd::Init => anyhow::bail!("cluster init runs locally"),
        },
        Command::Domain(c) => match c {
            DomainCmd::Add { name } => client.post("domains", json!({ "name": name })),
            DomainCmd::List => client.get("domains"),
            DomainCmd::Remove { name } => client.delete(&p(&["domains", name])),
            DomainCmd::AliasAdd { alias, target } => {
                client.post("domain-aliases", json!({ "alias": alias, "target": target }))
            }
            DomainCmd::AliasRemove { alias } => client.delete(&p(&["domain-aliases", alias])),
            DomainCmd::Limits { name, daily_messages_max, daily_bytes_max, attachment_link_bytes_min } => client.put(
                &p(&["domains", name, "limits"]),
                json!({
                    "daily_messages_max": daily_messages_max,
                    "daily_bytes_max": daily_bytes_max,
                    "attachment_link_bytes_min": attachment_link_bytes_min,
                }),
            ),
        },
        Command::User(c) => match c {
            UserCmd::Add { address, password, name } => {
                let password = read_password(password)?;
                client.post("users", json!({ "address": address, "password": password, "display_name": name }))
            }
            UserCmd::List => client.get("users"),
            UserCmd::Passwd { address, password } => {
                let password = read_password(password)?;
                client.put(&p(&["users", address, "password"]), json!({ "password": password }))
            }
            UserCmd::Disable { address } => client.put(&p(&["users", address, "enabled"]), json!({ "enabled": false })),
            UserCmd::Enable { address } => client.put(&p(&["users", address, "enabled"]), json!({ "enabled": true })),
            UserCmd::Freeze { address } => client.put(&p(&["users", address, "frozen"]), json!({ "frozen": true })),
            UserCmd::Unfreeze { address } => client.put(&p(&["users", address, "frozen"]), json!({ "frozen": false })),
            UserCmd::Limits {
                address,
                mailbox_bytes_max,
                daily_messages_max,
                daily_bytes_max,
                attachment_link_bytes_min,
            } => {
                let body = json!({
                    "mailbox_bytes_max": mailbox_bytes_max,
                    "daily_messages_max": daily_messages_max,
                    "daily_bytes_max": daily_bytes_max,
                    "attachment_link_bytes_min": attachment_link_bytes_min,
                });
                client.put(&p(&["users", address, "overrides"]), body)
            }
            UserCmd::Remove { address } => client.delete(&p(&["users", address])),
        },
        Command::Group(c) => match c {
            GroupCmd::Add { address } => client.post("groups", json!({ "address": address })),
            GroupCmd::List => client.get("groups"),
            GroupCmd::Remove { address } => client.delete(&p(&["groups", address])),
            GroupCmd::AddMember { group, member } => {
                client.post(&p(&["groups", group, "members"]), json!({ "member": member }))
            }
            GroupCmd::RemoveMember { group, member } => client.delete(&p(&["groups", group, "members", member])),
        },
        Command::Alias(c) => match c {
            AliasCmd::Add { address, targets } => {
                client.post("aliases", json!({ "address": address, "targets": targets }))
            }
            AliasCmd::List => client.get("aliases"),
            AliasCmd::Remove { address } => client.delete(&p(&["aliases", address])),
        },
        Command::Config(c) => match c {
            ConfigCmd::Get { key: None } => client.get("config"),
            ConfigCmd::Get { key: Some(key) } => client.get(&p(&["config", key])),
            ConfigCmd::Set { key, value } => client.put(&p(&["config", key]), json!({ "value": value })),
            ConfigCmd::Reset { key } => client.delete(&p(&["config", key])),
        },
        Command::Rules(c) => match c {
            RulesCmd::List => client.get("rules"),
            RulesCmd::Add { list, kind, value, action, score, reply, comment } => {
                let kind = match (kind, list.as_str()) {
                    (Some(k), _) => k.clone(),
                    (None, "dnsbl") => "zone".into(),
                    (None, _) => anyhow::bail!("kind: --kind is required for the {list} list"),
                };
                let mut rule = json!({ "list": list, "kind": kind, "value": value, "comment": comment });
                if let Some(a) = action {
                    rule["action"] = json!(a);
                }
                if let Some(s) = score {
                    rule["score"] = json!(s);
                }
                if let Some(r) = reply {
                    rule["reply"] = json!(r);
                }
                client.post("rules", rule)
            }
            RulesCmd::Remove { id } => client.delete(&p(&["rules", &id.to_string()])),
            RulesCmd::Export(ExportRules { output }) => {
                let rules = client.get("rules")?;
                write_or_return(rules, output.as_deref())
            }
            RulesCmd::Import(ImportRules { file, replace }) => {
                let rules = read_json_array(file, "rules")?;
                client.post("rules/import", json!({ "rules": rules, "replace": replace }))
            }
        },
        Command::Content(ContentCmd::Filter(c)) => match c {
            FilterCmd::List => client.get("content/filters"),
            FilterCmd::Add { matches, value, action, comment } => client.post(
                "content/filters",
                json!({ "match": matches, "value": value, "action": action, "comment": comment }),
            ),
            FilterCmd::Remove { id } => client.delete(&p(&["content", "filters", &id.to_string()])),
            FilterCmd::Export(ExportRules { output }) => {
                let rules = client.get("content/filters")?;
                write_or_return(rules, output.as_deref())
            }
            FilterCmd::Import(ImportRules { file, replace }) => {
                let rules = read_json_array(file, "attachment rules")?;
                client.post("content/filters/import", json!({ "rules": rules, "replace": replace }))
            }
        },
        Command::Antivirus(c) => match c {
            AntivirusCmd::Template(TemplateCmd::Get) => client.get("antivirus/template"),
            AntivirusCmd::Template(TemplateCmd::Set { file }) => {
                let text = if file.as_os_str() == "-" {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
                        .context("reading the template from standard input")?;
                    text
                } else {
                    std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
                };
                client.put("antivirus/template", json!({ "template": text }))
            }
            AntivirusCmd::Status => client.get("antivirus/status"),
            AntivirusCmd::Update => client.post("antivirus/update", json!({})),
        },
        Command::Greylist(c) => match c {
            GreylistCmd::Pending => client.get("greylist?pending=true"),
            GreylistCmd::List => client.get("greylist"),
            GreylistCmd::Authorize { triplet } => {
                client.post("greylist/authorize", json!({ "triplet": triplet.join(" ") }))
            }
        },
        Command::Dkim(c) => match c {
            DkimCmd::Generate { domain, selector, algorithm, activate } => client.post(
                "dkim",
                json!({ "domain": domain, "selector": selector, "algorithm": algorithm, "activate": activate }),
            ),
            DkimCmd::List => client.get("dkim"),
            DkimCmd::Activate { domain, selector } => {
                client.post(&p(&["dkim", domain, selector, "activate"]), json!({}))
            }
            DkimCmd::Remove { domain, selector } => client.delete(&p(&["dkim", domain, selector])),
        },
        Command::Dmarc(_) => anyhow::bail!("dmarc record runs locally"),
        Command::Simulate { .. } => anyhow::bail!("simulate runs locally"),
        Command::DovecotCheckpassword { .. } => anyhow::bail!("dovecot-checkpassword runs locally"),
        Command::RelayDomain(c) => match c {
            RelayDomainCmd::Add { domain, recipients } => {
                client.put(&p(&["relay-domains", domain]), json!({ "recipients": recipients }))
            }
            RelayDomainCmd::List => client.get("relay-domains"),
            RelayDomainCmd::Remove { domain } => client.delete(&p(&["relay-domains", domain])),
        },
        Command::AttachmentLink(c) => match c {
            AttachmentLinkCmd::List { user: Some(user) } => {
                client.get(&format!("attachment-links?user={}", AdminClient::query_value(user)))
            }
            AttachmentLinkCmd::List { user: None } => client.get("attachment-links"),
            AttachmentLinkCmd::Revoke { id } => client.delete(&p(&["attachment-links", id])),
        },
        Command::Quota(QuotaCmd::Usage { user, sort }) => match user {
            Some(user) => client.get(&p(&["quota", "usage", user])),
            None => client.get(&format!("quota/usage?sort={sort}")),
        },
        Command::Blocked(c) => match c {
            BlockedCmd::List => client.get("blocked"),
            BlockedCmd::Add { ip, seconds, reason } => {
                client.post("blocked", json!({ "ip": ip, "seconds": seconds, "reason": reason }))
            }
            BlockedCmd::Remove { ip } => client.delete(&p(&["blocked", ip])),
        },
        Command::Spam(c) => match c {
            SpamCmd::Check { paths } => super::spam::check(client, paths),
            SpamCmd::Learn { spam, paths, .. } => super::spam::learn(client, if *spam { "spam" } else { "ham" }, paths),
            SpamCmd::Status => client.get("spam/status"),
            SpamCmd::Report { spam, user, paths, .. } => {
                super::spam::report(client, if *spam { "spam" } else { "ham" }, user, paths)
            }
            SpamCmd::Filters(SpamFiltersCmd::Export(ExportRules { output })) => {
                let document = client.get("spam/filters")?;
                write_or_return(document, output.as_deref())
            }
            SpamCmd::Filters(SpamFiltersCmd::Import(ImportRules { file, replace })) => {
                let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
                let mut document: Value = serde_json::from_str(&text)
                    .with_context(|| format!("{}: not a JSON document from `spam filters export`", file.display()))?;
                anyhow::ensure!(
                    document.is_object(),
                    "{}: not a JSON document from `spam filters export`",
                    file.display()
                );
                document["replace"] = json!(replace);
                client.post("spam/filters/import", document)
            }
            SpamCmd::Reports(SpamReportsCmd::List) => client.get("spam/reports"),
            SpamCmd::Reports(SpamReportsCmd::Approve { ids, all }) => {
                anyhow::ensure!(*all || !ids.is_empty(), "ids: give report ids or --all");
                client.post("spam/reports/approve", json!({ "ids": ids, "all": all }))
            }
            SpamCmd::Reports(SpamReportsCmd::Discard { id }) => {
                client.delete(&p(&["spam", "reports", &id.to_string()]))
            }
            SpamCmd::Addresses(SpamAddressCmd::List) => client.get("spam/addresses"),
            SpamCmd::Addresses(SpamAddressCmd::Add { sender, recipient, spam, comment, .. }) => {
                let (field, value) = match (sender, recipient) {
                    (Some(s), _) => ("sender", s),
                    (None, Some(r)) => ("recipient", r),
                    (None, None) => anyhow::bail!("value: give --sender or --recipient"),
                };
                let verdict = if *spam { "spam" } else { "not-spam" };
                client.post(
                    "spam/addresses",
                    json!({ "field": field, "value": value, "verdict": verdict, "comment": comment }),
                )
            }
            SpamCmd::Addresses(SpamAddressCmd::Remove { id }) => {
                client.delete(&p(&["spam", "addresses", &id.to_string()]))
            }
            SpamCmd::Keywords(SpamKeywordCmd::List) => client.get("spam/keywords"),
            SpamCmd::Keywords(SpamKeywordCmd::Add { phrase, score, blacklisted, comment }) => client.post(
                "spam/keywords",
                json!({ "phrase": phrase, "score": score, "blacklisted": blacklisted, "comment": comment }),
            ),
            SpamCmd::Keywords(SpamKeywordCmd::Remove { id }) => {
                client.delete(&p(&["spam", "keywords", &id.to_string()]))
            }
            SpamCmd::Rules(SpamRulesCmd::List { all }) => client.get(&format!("spam/rules?all={all}")),
            SpamCmd::Rules(SpamRulesCmd::Import { files, replace }) => {
                let mut list = Vec::new();
                for path in files {
                    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    // One char per byte: the rule files' Latin-1 and UTF-8 bytes arrive unchanged.
                    let text = ::actors::spam::rules::pack::latin1(&bytes);
                    list.push(json!({ "name": name, "text": text }));
                }
                client.post("spam/rules/import", json!({ "files": list, "replace": replace }))
            }
            SpamCmd::Rules(SpamRulesCmd::Export { name, output }) => {
                let path = match name {
                    Some(n) => format!("spam/rules/export?name={}", AdminClient::query_value(n)),
                    None => "spam/rules/export".to_string(),
                };
                let bytes = client.get_bytes(&path)?;
                match output {
                    Some(file) => {
                        std::fs::write(file, &bytes).with_context(|| format!("writing {}", file.display()))?;
                        Ok(json!({ "ok": true, "written": file }))
                    }
                    None => {
                        std::io::Write::write_all(&mut std::io::stdout().lock(), &bytes)?;
                        Ok(Value::Null)
                    }
                }
            }
            SpamCmd::Rules(SpamRulesCmd::Remove { name }) => client.delete(&p(&["spam", "rules", "files", name])),
            SpamCmd::Update => client.post("spam/update", json!({})),
        },
        Command::Quarantine(c) => match c {
            QuarantineCmd::List { recipient, reason } => {
                let mut query = Vec::new();
                if let Some(r) = recipient {
                    query.push(format!("recipient={}", AdminClient::query_value(r)));
                }
                if let Some(r) = reason {
                    query.push(format!("reason={r}"));
                }
                client.get(&format!("quarantine?{}", query.join("&")))
            }
            QuarantineCmd::Show { id } => client.get(&p(&["quarantine", id])),
            QuarantineCmd::Release { id } => client.post(&p(&["quarantine", id, "release"]), json!({})),
            QuarantineCmd::Delete { id } => client.post(&p(&["quarantine", id, "delete"]), json!({})),
        },
        Command::Queue(c) => match c {
            QueueCmd::List => client.get("queue"),
            QueueCmd::Replicas => client.get("queue/replicas"),
            QueueCmd::Show { queue_id } => client.get(&p(&["queue", queue_id])),
            QueueCmd::Flush { queue_id } => {
                client.post(&p(&["queue", queue_id.as_deref().unwrap_or("ALL"), "flush"]), json!({}))
            }
            QueueCmd::Hold { queue_id } => client.post(&p(&["queue", queue_id, "hold"]), json!({})),
            QueueCmd::Release { queue_id } => client.post(&p(&["queue", queue_id, "release"]), json!({})),
            QueueCmd::Delete { queue_id } => client.post(&p(&["queue", queue_id, "delete"]), json!({})),
        },
        Command::Export { output, secrets } => {
            let document = client.get(if *secrets { "export?secrets=true" } else { "export" })?;
            write_or_return(document, output.as_deref())
        }
        Command::Import { file } => {
            let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
            let document: Value =
                serde_json::from_str(&text).with_context(|| format!("{}: not a JSON document", file.display()))?;
            client.post("import", document)
        }
        Command::Serve | Command::Join { .. } => anyhow::bail!("serve and join run the node"),
    }
}

/// Reads a JSON array (of rules) from a file, naming the file when it is not one.
fn read_json_array(file: &std::path::Path, what: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let array: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not a JSON array of {what}", file.display()))?;
    anyhow::ensure!(array.is_array(), "{}: not a JSON array of {what}", file.display());
    Ok(array)
}

/// Writes a document to a file (and says so), or returns it for printing.
fn write_or_return(document: Value, output: Option<&std::path::Path>) -> anyhow::Result<Value> {
    let Some(path) = output else { return Ok(document) };
    std::fs::write(path, serde_json::to_vec_pretty(&document)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(json!({ "ok": true, "written": path }))
}

fn read_password(args: &PasswordArgs) -> anyhow::Result<String> {
    if let Some(p) = &args.password {
        return Ok(p.clone());
    }
    anyhow::ensure!(args.password_stdin, "password: give --password or --password-stdin");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
