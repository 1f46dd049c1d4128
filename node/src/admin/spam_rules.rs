//! Spam rule routes: the compiled rule set (`spam rules list`), importing
//! and exporting SpamAssassin `.cf` files (MailPlus' "SpamAssassin Rules"),
//! and fetching the rule pack now (`spam update`). Files are checked here,
//! compiled together with what is installed, before anything is proposed.

use ::actors::spam::rules;
use ::actors::spam::rules::pack::{self, PackError};
use actix_web::{web, HttpResponse};
use consensus::{Command, Outcome};
use serde::Deserialize;

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

/// Rule files one import may carry (Debian's package has 61).
const FILES_PER_IMPORT_MAX: usize = 500;

#[derive(Deserialize)]
pub struct ListQuery {
    /// Also the `__` sub-rules, which score nothing themselves.
    #[serde(default)]
    all: bool,
}

pub async fn list(state: web::Data<AdminState>, query: web::Query<ListQuery>) -> Reply {
    let applied = state.node.read.load();
    let spam = applied.state.spam.clone();
    let book = web::block(move || rules::cache().get(&spam)).await.map_err(|e| ApiError::internal(e.to_string()))?;
    let rules: Vec<_> = book.summaries().iter().filter(|r| query.all || !r.name.starts_with("__")).collect();
    let files: Vec<_> = applied
        .state
        .spam
        .rule_files
        .iter()
        .map(|(name, f)| serde_json::json!({ "name": name, "bytes": f.text.len(), "imported_ms": f.imported_ms }))
        .collect();
    let pack = applied.state.spam.rule_pack.as_ref().map(|p| {
        serde_json::json!({ "version": p.version, "url": p.url, "bytes": p.text.len(), "installed_ms": p.installed_ms })
    });
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "rules": rules,
        "compiled": book.len(),
        "not_compiled": book.uncompiled,
        "ignored_directives": book.ignored,
        "files": files,
        "pack": pack,
    })))
}

#[derive(Deserialize)]
pub struct ImportedFile {
    name: String,
    /// The file's bytes as Latin-1 text (one char per byte).
    text: String,
}

#[derive(Deserialize)]
pub struct ImportBody {
    files: Vec<ImportedFile>,
    #[serde(default)]
    replace: bool,
}

/// Checks the files with what is installed (a line that does not parse
/// refuses the import, naming file and line), then proposes them. The
/// reply lists every rule that did not compile, by name, with why.
pub async fn import(state: web::Data<AdminState>, body: web::Json<ImportBody>) -> Reply {
    let body = body.into_inner();
    if body.files.is_empty() || body.files.len() > FILES_PER_IMPORT_MAX {
        return Err(ApiError::bad_request("files", format!("1 to {FILES_PER_IMPORT_MAX} rule files")));
    }
    if let Some(f) = body.files.iter().find(|f| f.text.chars().any(|c| u32::from(c) > 0xff)) {
        return Err(ApiError::bad_request(
            "files",
            format!("{}: text must be Latin-1 (one char per byte of the file)", f.name),
        ));
    }
    let applied = state.node.read.load();
    // The rules as they will be once imported, compiled as every node will.
    let mut after = consensus::state::spam::SpamState {
        rule_files: if body.replace { Default::default() } else { applied.state.spam.rule_files.clone() },
        rule_pack: applied.state.spam.rule_pack.clone(),
        ..Default::default()
    };
    for f in &body.files {
        after
            .rule_files
            .insert(f.name.clone(), consensus::state::spam::RuleFile { text: f.text.clone(), imported_ms: 0 });
    }
    let names: Vec<String> = body.files.iter().map(|f| f.name.clone()).collect();
    let book = web::block(move || rules::RuleBookCache::compile_state(&after))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if let Some(e) = book.errors.iter().find(|e| names.contains(&e.source)) {
        return Err(ApiError::bad_request("files", format!("{} line {}: {}", e.source, e.line, e.message)));
    }
    let files: Vec<(String, String)> = body.files.into_iter().map(|f| (f.name, f.text)).collect();
    match state.node.proposer.propose(Command::ImportSpamRules { files, replace: body.replace }).await? {
        Outcome::RulesImported { added, .. } => {
            let imported: Vec<_> = book.summaries().iter().filter(|r| names.contains(&r.source)).collect();
            let not_compiled: Vec<_> = book.uncompiled.iter().filter(|u| names.contains(&u.source)).collect();
            Ok(HttpResponse::Ok().json(serde_json::json!({
                "ok": true,
                "files": added,
                "rules": imported.len(),
                "scored": imported.iter().filter(|r| r.score != 0.0 && !r.name.starts_with("__")).count(),
                "by_pcre2": imported.iter().filter(|r| r.engine == "pcre2").count(),
                "not_compiled": not_compiled,
                "ignored_directives": book.ignored,
            })))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

#[derive(Deserialize)]
pub struct ExportQuery {
    name: Option<String>,
}

/// The imported files as they were imported (bytes), one named file or all
/// of them, each after a `# file: NAME` line.
pub async fn export(state: web::Data<AdminState>, query: web::Query<ExportQuery>) -> Reply {
    let applied = state.node.read.load();
    let files = &applied.state.spam.rule_files;
    let mut out = Vec::new();
    match &query.name {
        Some(name) => {
            let f = files
                .get(name)
                .ok_or_else(|| ApiError::not_found("name", format!("no imported rule file {name:?}")))?;
            out = pack::latin1_bytes(&f.text);
        }
        None => {
            for (name, f) in files {
                out.extend_from_slice(format!("# file: {name}\n").as_bytes());
                out.extend_from_slice(&pack::latin1_bytes(&f.text));
                if !out.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
        }
    }
    Ok(HttpResponse::Ok().content_type("text/plain; charset=iso-8859-1").body(out))
}

pub async fn remove(state: web::Data<AdminState>, name: web::Path<String>) -> Reply {
    state.node.proposer.propose(Command::RemoveSpamRules { name: name.into_inner() }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

/// `spam update`: fetch `spam.rules_url` now, from this node.
pub async fn update(state: web::Data<AdminState>) -> Reply {
    match pack::update(&state.node.read, &state.node.proposer).await {
        Ok(installed) => Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "pack": installed }))),
        Err(e @ PackError::NoUrl) => Err(ApiError::bad_request("spam.rules_url", e.to_string())),
        Err(e @ PackError::Broken(_)) => Err(ApiError::bad_request("pack", e.to_string())),
        Err(e @ PackError::Fetch { .. }) => Err(ApiError::bad_gateway("spam.rules_url", e.to_string())),
        Err(e) => Err(ApiError::internal(e.to_string())),
    }
}
