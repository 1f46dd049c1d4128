//! Linked attachments of the whole cluster: list them (with their download
//! counts) and revoke one. A link is named by the first characters of its
//! token's SHA-256, never by the token: the API cannot hand out working links.

use actix_web::{web, HttpResponse};
use consensus::Command;
use serde::{Deserialize, Serialize};

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

/// Characters of the hash that name a link in lists and `revoke`.
const ID_CHARS: usize = 16;

#[derive(Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    user: Option<String>,
}

#[derive(Serialize)]
struct LinkRow<'a> {
    id: &'a str,
    user: &'a str,
    file_name: &'a str,
    size: u64,
    node_id: u64,
    created_ms: u64,
    expires_ms: u64,
    downloads: u64,
    last_download_ms: Option<u64>,
}

/// Live links, newest first.
pub async fn list(state: web::Data<AdminState>, query: web::Query<ListQuery>) -> Reply {
    let applied = state.node.read.load();
    let now = ::actors::queue::now_ms();
    let user = query.user.as_deref().map(str::to_ascii_lowercase);
    let mut rows: Vec<LinkRow> = applied
        .state
        .attachment_links
        .links
        .iter()
        .filter(|(_, l)| l.expires_ms > now && user.as_ref().is_none_or(|u| *u == l.user))
        .map(|(hash, l)| LinkRow {
            id: &hash[..ID_CHARS.min(hash.len())],
            user: &l.user,
            file_name: &l.file_name,
            size: l.size,
            node_id: l.node_id,
            created_ms: l.created_ms,
            expires_ms: l.expires_ms,
            downloads: l.downloads,
            last_download_ms: l.last_download_ms,
        })
        .collect();
    rows.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then_with(|| a.id.cmp(b.id)));
    Ok(HttpResponse::Ok().json(rows))
}

/// Withdraws the link whose hash starts with `id` (at least 8 characters,
/// and only one link may match); its file goes at the owner's next sweep.
pub async fn revoke(state: web::Data<AdminState>, path: web::Path<String>) -> Reply {
    let id = path.into_inner().to_ascii_lowercase();
    if id.len() < 8 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_request("id", "a link id is at least 8 hex characters (see `attachment-link list`)"));
    }
    let applied = state.node.read.load();
    let matching: Vec<&String> = applied.state.attachment_links.links.keys().filter(|k| k.starts_with(&id)).collect();
    let hash = match matching.as_slice() {
        [one] => (*one).clone(),
        [] => return Err(ApiError::not_found("id", format!("{id}: no such attachment link"))),
        _ => return Err(ApiError::bad_request("id", format!("{id}: matches {} links; give more", matching.len()))),
    };
    state.node.proposer.propose(Command::RemoveAttachmentLink { token_sha256: hash }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}
