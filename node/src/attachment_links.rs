//! The download side of attachment linking: `GET /a/{token}` on this
//! node's `attachment_links.listen`. Any node answers any link: the index is
//! replicated, and the bytes come from the node that stored them (read over
//! the cluster's mTLS port when that is another node). An unknown, altered
//! or expired token gets 404 and nothing else, so a guess learns nothing.
//! Every download is logged and counted in the index.

use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use consensus::{ClusterNode, Command};
use std::sync::Arc;
use std::time::Duration;

use ::actors::attachment_links::store::{read_from, LinkStore};
use ::actors::attachment_links::{token_sha256, well_formed};

/// Bytes read from the owning node per request while streaming a download.
const CHUNK_BYTES: u32 = 1024 * 1024;

/// Serves links until the process ends.
pub async fn run(node: Arc<ClusterNode>, listen: String) -> anyhow::Result<()> {
    let node = web::Data::new(node);
    HttpServer::new(move || {
        App::new()
            .app_data(node.clone())
            .route("/a/{token}", web::get().to(download))
            .route("/a/{token}/{name}", web::get().to(download))
            .default_service(web::to(not_found))
    })
    .workers(2)
    .disable_signals()
    .bind(&listen)?
    .run()
    .await?;
    Ok(())
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().content_type("text/plain; charset=utf-8").body("This link is unknown or has expired.\n")
}

async fn download(node: web::Data<Arc<ClusterNode>>, path: web::Path<Vec<String>>, req: HttpRequest) -> HttpResponse {
    let Some(token) = path.into_inner().into_iter().next() else { return not_found().await };
    if !well_formed(&token) {
        return not_found().await;
    }
    let hash = token_sha256(&token);
    let now = (node.clock)();
    let Some(link) = node.read.load().state.attachment_links.live(&hash, now).cloned() else {
        return not_found().await;
    };
    let client = req.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let first = match read_from(&node, link.node_id, &hash, 0, CHUNK_BYTES).await {
        Ok(chunk) if chunk.total == link.size => chunk,
        Ok(chunk) => {
            tracing::error!(
                id = &hash[..16],
                on_disk = chunk.total,
                indexed = link.size,
                "attachment link file damaged"
            );
            return unavailable("The file is damaged; ask the sender to send it again.");
        }
        Err(e) => {
            tracing::warn!(id = &hash[..16], owner = link.node_id, error = %e, "attachment link file unreachable");
            return unavailable("The file is not reachable right now; try again later.");
        }
    };
    tracing::info!(
        id = &hash[..16], file = %link.file_name, size = link.size, owner = link.node_id, %client, user = %link.user,
        "attachment link download"
    );
    let proposer = node.proposer.clone();
    let counted = hash.clone();
    tokio::spawn(async move {
        if let Err(e) = proposer.propose(Command::RecordAttachmentDownload { token_sha256: counted }).await {
            tracing::debug!(error = %e, "attachment download not counted");
        }
    });
    let size = link.size;
    let owner = link.node_id;
    let rest = futures::stream::unfold(
        (node.into_inner(), hash, first.bytes.len() as u64, Some(first.bytes)),
        move |(node, hash, offset, pending)| async move {
            if let Some(bytes) = pending {
                return Some((Ok(web::Bytes::from(bytes)), (node, hash, offset, None)));
            }
            if offset >= size {
                return None;
            }
            match read_from(&node, owner, &hash, offset, CHUNK_BYTES).await {
                Ok(chunk) if !chunk.bytes.is_empty() => {
                    let next = offset + chunk.bytes.len() as u64;
                    Some((Ok(web::Bytes::from(chunk.bytes)), (node, hash, next, None)))
                }
                Ok(_) => Some((Err(std::io::Error::other("file ended early")), (node, hash, size, None))),
                Err(e) => Some((Err(std::io::Error::other(e)), (node, hash, size, None))),
            }
        },
    );
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .insert_header((header::CONTENT_DISPOSITION, content_disposition(&link.file_name)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "private, no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .no_chunking(size)
        .streaming(rest)
}

fn unavailable(text: &'static str) -> HttpResponse {
    HttpResponse::ServiceUnavailable().content_type("text/plain; charset=utf-8").body(text)
}

/// `attachment; filename="plain"; filename*=UTF-8''percent-encoded` (RFC 6266):
/// always served as a download, never rendered in the browser.
fn content_disposition(name: &str) -> String {
    let name = if name.is_empty() { "attachment" } else { name };
    let plain: String =
        name.chars().map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' }).collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

/// Deletes, every `interval`, this node's files whose link is gone (expired
/// or revoked); files younger than ten minutes stay, their entry may still
/// be on its way through Raft.
pub async fn sweep(node: Arc<ClusterNode>, store: Arc<LinkStore>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let state = node.read.load();
        let now = (node.clock)();
        let store = store.clone();
        let result = tokio::task::spawn_blocking(move || {
            store.sweep(Duration::from_secs(600), |name| state.state.attachment_links.live(name, now).is_some())
        })
        .await;
        match result {
            Ok(Ok(0)) => {}
            Ok(Ok(removed)) => tracing::info!(removed, "expired attachment link files deleted"),
            Ok(Err(e)) => tracing::warn!(error = %e, "sweeping attachment link files failed"),
            Err(e) => tracing::warn!(error = %e, "sweeping attachment link files failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_disposition_is_safe_for_any_name() {
        assert_eq!(content_disposition("a b.pdf"), "attachment; filename=\"a b.pdf\"; filename*=UTF-8''a%20b.pdf");
        let odd = content_disposition("Über\"\r\n.pdf");
        assert!(!odd.contains('\r') && !odd.contains('\n'), "{odd}");
        assert!(odd.contains("filename*=UTF-8''%C3%9Cber%22%0D%0A.pdf"), "{odd}");
    }
}
