//! Server side of the Raft port: accepts TLS connections and answers frames
//! until the peer hangs up. Requests other than `Join` need a client
//! certificate from the cluster CA (rustls has verified it when present).

use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::frame::{read_frame, write_frame};
use super::rpc::{RpcRequest, RpcResponse};
use crate::cluster::ClusterNode;

/// Accepts connections forever; each runs in its own task.
pub async fn serve(node: Arc<ClusterNode>, listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "raft accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let node = node.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let mut stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    warn!(%peer, error = %e, "raft TLS handshake refused");
                    return;
                }
            };
            let authenticated = stream.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty());
            let frame_bytes_max = node.config.frame_bytes_max;
            loop {
                let request: RpcRequest = match read_frame(&mut stream, frame_bytes_max).await {
                    Ok(r) => r,
                    Err(e) => {
                        debug!(%peer, error = %e, "raft connection closed");
                        return;
                    }
                };
                let response = dispatch(&node, request, authenticated).await;
                if write_frame(&mut stream, &response).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn dispatch(node: &Arc<ClusterNode>, request: RpcRequest, authenticated: bool) -> RpcResponse {
    if !authenticated && !matches!(request, RpcRequest::Join(_)) {
        return RpcResponse::Unauthenticated;
    }
    match request {
        RpcRequest::AppendEntries(rpc) => RpcResponse::AppendEntries(node.raft.append_entries(rpc).await),
        RpcRequest::Vote(rpc) => RpcResponse::Vote(node.raft.vote(rpc).await),
        RpcRequest::InstallSnapshot(rpc) => RpcResponse::InstallSnapshot(node.raft.install_snapshot(rpc).await),
        RpcRequest::Propose(commands) => {
            RpcResponse::Propose(crate::proposer::submit_as_leader(&node.raft, &node.clock, commands).await)
        }
        RpcRequest::AddMember { node_id, info } => RpcResponse::Membership(node.add_member(node_id, info).await),
        RpcRequest::RemoveMember { node_id } => RpcResponse::Membership(node.remove_member(node_id).await),
        RpcRequest::Join(join) => RpcResponse::Join(node.admit(join).await),
        RpcRequest::Status => RpcResponse::Status(Box::new(node.local_status())),
        RpcRequest::Peer { service, body } => RpcResponse::Peer(node.call_local(&service, body).await),
    }
}
