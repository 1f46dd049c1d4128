//! `spam check` and `spam learn` in the style of rspamc and sa-learn: every
//! message of the files, directories (Maildirs) and mbox files given, or
//! standard input, sent to the node's API so the live model answers.

use anyhow::Context;
use serde_json::{json, Value};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::client::AdminClient;

/// One message and where it came from: `file`, or `file#N` inside an mbox.
pub struct Source {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// The messages of `paths` (standard input when empty).
pub fn messages(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut out = Vec::new();
    if paths.is_empty() {
        let mut bytes = Vec::new();
        std::io::stdin().lock().read_to_end(&mut bytes).context("reading the message from standard input")?;
        split_mbox("-", bytes, &mut out);
        return Ok(out);
    }
    for path in paths {
        collect(path, &mut out)?;
    }
    Ok(out)
}

fn collect(path: &Path, out: &mut Vec<Source>) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("{}: cannot read", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot list", path.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.') && p.is_file()))
            .collect();
        entries.sort();
        for e in entries {
            // Maildir's tmp/ holds messages being written, not mail.
            if e.is_dir() && e.file_name().is_some_and(|n| n == "tmp") {
                continue;
            }
            collect(&e, out)?;
        }
        return Ok(());
    }
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    split_mbox(&path.display().to_string(), bytes, out);
    Ok(())
}

/// An mbox (first line `From `) becomes its messages, `name#1`, `name#2`…;
/// anything else is one message.
fn split_mbox(name: &str, bytes: Vec<u8>, out: &mut Vec<Source>) {
    if !bytes.starts_with(b"From ") {
        out.push(Source { name: name.to_string(), bytes });
        return;
    }
    let mut starts = vec![0];
    for (i, w) in bytes.windows(6).enumerate() {
        if w == b"\nFrom " {
            starts.push(i + 1);
        }
    }
    starts.push(bytes.len());
    for (n, pair) in starts.windows(2).enumerate() {
        let chunk = &bytes[pair[0]..pair[1]];
        // Drop the envelope line, and undo mboxrd's quoting of ">From ".
        let body = chunk.splitn(2, |b| *b == b'\n').nth(1).unwrap_or_default();
        let text = unquote_from(body);
        out.push(Source { name: format!("{name}#{}", n + 1), bytes: text });
    }
}

fn unquote_from(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|b| *b == b'\n') {
        let quoted = line.iter().take_while(|b| **b == b'>').count();
        if quoted > 0 && line[quoted..].starts_with(b"From ") {
            out.extend_from_slice(&line[1..]);
        } else {
            out.extend_from_slice(line);
        }
    }
    out
}

/// `spam check`: one result per message, each with its `file`.
pub fn check(client: &AdminClient, paths: &[PathBuf]) -> anyhow::Result<Value> {
    let mut results = Vec::new();
    for m in messages(paths)? {
        let mut r = client.post_message("spam/check", &m.bytes).with_context(|| m.name.clone())?;
        r["file"] = json!(m.name);
        results.push(r);
    }
    Ok(Value::Array(results))
}

/// `spam learn --spam|--ham`: counts of what each message did to the model.
pub fn learn(client: &AdminClient, class: &str, paths: &[PathBuf]) -> anyhow::Result<Value> {
    let (mut learned, mut already, mut relearned) = (0, 0, 0);
    for m in messages(paths)? {
        let r = client.post_message(&format!("spam/learn?class={class}"), &m.bytes).with_context(|| m.name.clone())?;
        match r["effect"].as_str() {
            Some("alreadylearned") => already += 1,
            Some("relearned") => relearned += 1,
            _ => learned += 1,
        }
    }
    Ok(json!({ "ok": true, "class": class, "learned": learned, "already_learned": already, "relearned": relearned }))
}

/// `spam report`: each message filed for review as reported by `user`.
pub fn report(client: &AdminClient, class: &str, user: &str, paths: &[PathBuf]) -> anyhow::Result<Value> {
    let mut ids = Vec::new();
    for m in messages(paths)? {
        let path = format!("spam/reports?class={class}&user={}", AdminClient::query_value(user));
        let r = client.post_message(&path, &m.bytes).with_context(|| m.name.clone())?;
        ids.push(r["id"].clone());
    }
    Ok(json!({ "ok": true, "reported": ids.len(), "ids": ids }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbox_splits_and_unquotes() {
        let mbox = b"From a@b Mon Jan 1 00:00:00 2024\nSubject: one\n\n>From here\nbody\n\nFrom c@d Mon Jan 1 00:00:00 2024\nSubject: two\n\nx\n".to_vec();
        let mut out = Vec::new();
        split_mbox("box", mbox, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].name, "box#1");
        assert_eq!(out[0].bytes, b"Subject: one\n\nFrom here\nbody\n\n");
        assert_eq!(out[1].bytes, b"Subject: two\n\nx\n");
        let mut single = Vec::new();
        split_mbox("m.eml", b"Subject: x\n\ny\n".to_vec(), &mut single);
        assert_eq!(single.len(), 1);
    }
}
