//! Queue routes: this node's delivery queue, like postqueue/postsuper.

use ::actors::queue::control::{ControlQueue, ListQueue, QueueAction, ShowMessage};
use actix_web::{web, HttpResponse};

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

fn unavailable(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("delivery queue unavailable: {e}"))
}

pub async fn list(state: web::Data<AdminState>) -> Reply {
    let entries = state.queue.addr().send(ListQueue).await.map_err(unavailable)?.map_err(ApiError::internal)?;
    Ok(HttpResponse::Ok().json(entries))
}

/// The copies this node keeps for other members (`queue.replicas = 2`).
pub async fn replicas(state: web::Data<AdminState>) -> Reply {
    let counts = state
        .queue
        .addr()
        .send(::actors::queue::CountReplicas)
        .await
        .map_err(unavailable)?
        .map_err(ApiError::internal)?;
    let rows: Vec<serde_json::Value> = counts
        .into_iter()
        .map(|(owner, messages)| serde_json::json!({ "owner": owner, "messages": messages }))
        .collect();
    Ok(HttpResponse::Ok().json(rows))
}

pub async fn show(state: web::Data<AdminState>, id: web::Path<String>) -> Reply {
    let id = id.into_inner();
    match state.queue.addr().send(ShowMessage(id.clone())).await.map_err(unavailable)?.map_err(ApiError::internal)? {
        Some((entry, data)) => Ok(HttpResponse::Ok().json(serde_json::json!({
            "entry": entry,
            "message": String::from_utf8_lossy(&data),
        }))),
        None => Err(ApiError::not_found("queue_id", format!("no message {id:?} in the queue"))),
    }
}

pub async fn control(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> Reply {
    let (target, action) = path.into_inner();
    let action = match action.as_str() {
        "flush" => QueueAction::Flush,
        "hold" => QueueAction::Hold,
        "release" => QueueAction::Release,
        "delete" => QueueAction::Delete,
        other => {
            return Err(ApiError::bad_request("action", format!("{other:?} is not flush, hold, release or delete")))
        }
    };
    let affected =
        state.queue.addr().send(ControlQueue { action, target }).await.map_err(unavailable)?.map_err(|e| {
            match e.strip_prefix("queue_id: ") {
                Some(rest) => ApiError::not_found("queue_id", rest.to_string()),
                None => ApiError::internal(e),
            }
        })?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "messages": affected })))
}
