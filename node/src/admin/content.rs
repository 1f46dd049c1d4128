//! Content routes: the attachment filter's rules, the virus notice
//! template, and this node's clamd status.

use actix_web::{web, HttpResponse};
use consensus::state::settings::key;
use consensus::state::AttachmentRule;
use consensus::{Command, Outcome};
use serde::{Deserialize, Serialize};

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

#[derive(Serialize)]
struct FilterView<'a> {
    id: u64,
    #[serde(flatten)]
    rule: &'a AttachmentRule,
}

pub async fn list(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let rules: Vec<FilterView> =
        applied.state.content.attachments.iter().map(|(id, rule)| FilterView { id: *id, rule }).collect();
    Ok(HttpResponse::Ok().json(rules))
}

pub async fn add(state: web::Data<AdminState>, body: web::Json<AttachmentRule>) -> Reply {
    match state.node.proposer.propose(Command::AddAttachmentRule { rule: body.into_inner() }).await? {
        Outcome::RuleAdded { id } => Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "id": id }))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn remove(state: web::Data<AdminState>, id: web::Path<u64>) -> Reply {
    state.node.proposer.propose(Command::RemoveAttachmentRule { id: id.into_inner() }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

#[derive(Deserialize)]
pub struct ImportBody {
    /// Rules as `GET /v1/content/filters` lists them; their ids are ignored.
    rules: Vec<AttachmentRule>,
    #[serde(default)]
    replace: bool,
}

pub async fn import(state: web::Data<AdminState>, body: web::Json<ImportBody>) -> Reply {
    let ImportBody { rules, replace } = body.into_inner();
    match state.node.proposer.propose(Command::ImportAttachmentRules { rules, replace }).await? {
        Outcome::RulesImported { added, skipped } => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "added": added, "skipped": skipped })))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn template(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let text = applied.state.settings.text(key::ANTIVIRUS_NOTIFY_TEMPLATE);
    Ok(HttpResponse::Ok().json(serde_json::json!({ "template": text })))
}

#[derive(Deserialize)]
pub struct TemplateBody {
    template: String,
}

pub async fn set_template(state: web::Data<AdminState>, body: web::Json<TemplateBody>) -> Reply {
    let value = body.into_inner().template;
    let command = Command::SetSetting { key: "antivirus.notify_template".into(), value };
    state.node.proposer.propose(command).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

/// Every node's clamd as last reported, and this node's asked now.
pub async fn status(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let av = &applied.state.antivirus;
    let nodes: Vec<serde_json::Value> = av
        .nodes
        .iter()
        .map(|(id, s)| {
            serde_json::json!({
                "node_id": id, "version": s.version, "error": s.error, "generation_done": s.generation_done,
                "updated_ms": s.updated_ms, "update_result": s.update_result, "reported_ms": s.reported_ms,
            })
        })
        .collect();
    let (reachable, version, error) = match state.clamd.as_ref() {
        None => (false, String::new(), "no clamd configured on this node (antivirus.clamd is empty)".to_string()),
        Some(clamd) => match clamd.version().await {
            Ok(v) => (true, v, String::new()),
            Err(e) => (false, String::new(), e.to_string()),
        },
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "enabled": applied.state.settings.flag(key::ANTIVIRUS_ENABLED),
        "generation": av.generation,
        "requested_ms": av.requested_ms,
        "node_id": state.node.id,
        "clamd": state.clamd.as_ref().map(|c| c.address().to_string()).unwrap_or_default(),
        "reachable": reachable,
        "version": version,
        "error": error,
        "nodes": nodes,
    })))
}

/// Asks every node to update its definitions and reload clamd.
pub async fn update(state: web::Data<AdminState>) -> Reply {
    match state.node.proposer.propose(Command::RequestAntivirusUpdate).await? {
        Outcome::AntivirusUpdate { generation } => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "generation": generation })))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
