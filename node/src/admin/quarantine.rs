//! Quarantine routes: the cluster-wide index (any node answers), the
//! message itself from the node that holds it, release and delete from any
//! node (the holding node carries them out).

use ::actors::queue::control::ShowMessage;
use actix_web::{web, HttpResponse};
use consensus::state::{QuarantineEntry, QuarantineReason};
use consensus::Command;
use serde::{Deserialize, Serialize};

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

#[derive(Serialize)]
struct EntryView<'a> {
    id: &'a str,
    #[serde(flatten)]
    entry: &'a QuarantineEntry,
}

#[derive(Deserialize)]
pub struct ListQuery {
    recipient: Option<String>,
    reason: Option<String>,
}

pub async fn list(state: web::Data<AdminState>, query: web::Query<ListQuery>) -> Reply {
    let reason = match query.reason.as_deref() {
        None | Some("") => None,
        Some(word) => Some(QuarantineReason::parse(word).ok_or_else(|| {
            ApiError::bad_request("reason", format!("{word:?}: one of virus, attachment, content, spam"))
        })?),
    };
    let recipient = query.recipient.as_deref().map(str::to_ascii_lowercase);
    let applied = state.node.read.load();
    let entries: Vec<EntryView> = applied
        .state
        .quarantine
        .entries
        .iter()
        .filter(|(_, e)| reason.is_none_or(|r| e.reason == r))
        .filter(|(_, e)| recipient.as_ref().is_none_or(|r| e.recipients.iter().any(|x| x.eq_ignore_ascii_case(r))))
        .map(|(id, entry)| EntryView { id, entry })
        .collect();
    Ok(HttpResponse::Ok().json(entries))
}

pub async fn show(state: web::Data<AdminState>, id: web::Path<String>) -> Reply {
    let id = id.into_inner();
    let applied = state.node.read.load();
    let Some(entry) = applied.state.quarantine.entries.get(&id) else {
        return Err(ApiError::not_found("id", format!("no quarantined message {id}")));
    };
    // The body is only on the node that holds it; elsewhere the headers stand in.
    let message = if entry.node_id == state.node.id {
        match state.queue.addr().send(ShowMessage(id.clone())).await {
            Ok(Ok(Some((_, data)))) => Some(String::from_utf8_lossy(&data).into_owned()),
            _ => None,
        }
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "id": id,
        "entry": entry,
        "message": message,
    })))
}

pub async fn control(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> Reply {
    let (id, action) = path.into_inner();
    let command = match action.as_str() {
        "release" => Command::QuarantineRelease { id },
        "delete" => Command::QuarantineDelete { id },
        other => return Err(ApiError::bad_request("action", format!("{other:?}: release or delete"))),
    };
    state.node.proposer.propose(command).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}
