//! Black and white list routes.

use actix_web::{web, HttpResponse};
use consensus::state::ListRule;
use consensus::{Command, Outcome};
use serde::Serialize;

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

#[derive(Serialize)]
struct RuleView<'a> {
    id: u64,
    #[serde(flatten)]
    rule: &'a ListRule,
}

pub async fn list(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let rules: Vec<RuleView> = applied.state.rules.lists.iter().map(|(id, rule)| RuleView { id: *id, rule }).collect();
    Ok(HttpResponse::Ok().json(rules))
}

pub async fn add(state: web::Data<AdminState>, body: web::Json<ListRule>) -> Reply {
    match state.node.proposer.propose(Command::AddListRule { rule: body.into_inner() }).await? {
        Outcome::RuleAdded { id } => Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "id": id }))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn remove(state: web::Data<AdminState>, id: web::Path<u64>) -> Reply {
    state.node.proposer.propose(Command::RemoveListRule { id: id.into_inner() }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}
