//! Client side of the Raft port: one TLS connection per peer, reused for
//! sequential request/response pairs and re-dialled after any error.

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::frame::{read_frame, write_frame};
use super::rpc::{RpcRequest, RpcResponse};
use super::tls::CLUSTER_SERVER_NAME;
use super::{NodeId, NodeInfo, TypeConfig};

/// How a node dials its peers.
#[derive(Clone)]
pub struct Dialer {
    pub tls: Arc<rustls::ClientConfig>,
    pub connect_timeout: Duration,
    pub frame_bytes_max: usize,
}

impl Dialer {
    pub async fn connect(&self, addr: &str) -> io::Result<TlsStream<TcpStream>> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect to {addr} timed out")))??;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from(CLUSTER_SERVER_NAME).map_err(io::Error::other)?;
        TlsConnector::from(self.tls.clone()).connect(name, tcp).await
    }

    /// One request on a fresh connection, for the rare calls (forwarding, join).
    pub async fn call_once(&self, addr: &str, request: &RpcRequest, timeout: Duration) -> io::Result<RpcResponse> {
        let exchange = async {
            let mut stream = self.connect(addr).await?;
            write_frame(&mut stream, request).await?;
            read_frame(&mut stream, self.frame_bytes_max).await
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("request to {addr} timed out")))?
    }
}

/// Keeps a few idle connections per peer for the forwarding path, where a
/// fresh TLS handshake per batch would cost more than the write itself.
pub struct ConnectionPool {
    dialer: Dialer,
    idle: tokio::sync::Mutex<Vec<(String, TlsStream<TcpStream>)>>,
    /// Idle connections kept across all peers.
    idle_max: usize,
}

impl ConnectionPool {
    pub fn new(dialer: Dialer, idle_max: usize) -> Self {
        Self { dialer, idle: tokio::sync::Mutex::new(Vec::new()), idle_max }
    }

    /// One request/response on a pooled (or new) connection. A connection
    /// that failed is dropped, never reused.
    pub async fn call(&self, addr: &str, request: &RpcRequest, timeout: Duration) -> io::Result<RpcResponse> {
        let reused = {
            let mut idle = self.idle.lock().await;
            idle.retain(|(_, s)| still_open(s));
            idle.iter().position(|(a, _)| a == addr).map(|i| idle.swap_remove(i).1)
        };
        let exchange = async {
            let mut stream = match reused {
                Some(mut s) => match write_frame(&mut s, request).await {
                    Ok(()) => s,
                    // A write refused by a pooled connection reached no one (its peer
                    // is gone: a restarted node), so a new connection may carry it.
                    Err(_) => {
                        let mut s = self.dialer.connect(addr).await?;
                        write_frame(&mut s, request).await?;
                        s
                    }
                },
                None => {
                    let mut s = self.dialer.connect(addr).await?;
                    write_frame(&mut s, request).await?;
                    s
                }
            };
            let response = read_frame(&mut stream, self.dialer.frame_bytes_max).await?;
            Ok::<_, io::Error>((stream, response))
        };
        let (stream, response) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("request to {addr} timed out")))??;
        let mut idle = self.idle.lock().await;
        if idle.len() < self.idle_max {
            idle.push((addr.to_string(), stream));
        }
        Ok(response)
    }
}

/// An idle pooled connection is usable only while nothing arrived on it:
/// end of stream, a TLS close_notify or an error mean its peer went away
/// (a restarted node), and a request written there would be lost.
fn still_open(stream: &TlsStream<TcpStream>) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.get_ref().0.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// openraft's factory: makes one `PeerClient` per replication stream.
pub struct NetworkFactory {
    pub dialer: Dialer,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> PeerClient {
        PeerClient { target, addr: node.raft_addr.clone(), dialer: self.dialer.clone(), stream: None }
    }
}

pub struct PeerClient {
    target: NodeId,
    addr: String,
    dialer: Dialer,
    stream: Option<TlsStream<TcpStream>>,
}

type RpcResult<T, E = openraft::error::Infallible> = Result<T, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>;

impl PeerClient {
    async fn exchange(&mut self, request: &RpcRequest, ttl: Duration) -> io::Result<RpcResponse> {
        let attempt = async {
            if self.stream.is_none() {
                self.stream = Some(self.dialer.connect(&self.addr).await?);
            }
            let stream = self.stream.as_mut().ok_or_else(|| io::Error::other("no stream"))?;
            write_frame(stream, request).await?;
            read_frame(stream, self.dialer.frame_bytes_max).await
        };
        let result = match tokio::time::timeout(ttl, attempt).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "rpc timed out")),
        };
        if result.is_err() {
            // A half-read frame would poison the connection: start over next time.
            self.stream = None;
        }
        result
    }

    async fn call<T, E: std::error::Error>(
        &mut self,
        request: RpcRequest,
        option: &RPCOption,
        pick: impl FnOnce(RpcResponse) -> Option<Result<T, RaftError<NodeId, E>>>,
    ) -> RpcResult<T, E> {
        let response = self.exchange(&request, option.hard_ttl()).await.map_err(|e| match e.kind() {
            io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut => RPCError::Unreachable(Unreachable::new(&e)),
            _ => RPCError::Network(NetworkError::new(&e)),
        })?;
        match pick(response) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
            None => {
                let e = io::Error::new(io::ErrorKind::InvalidData, "unexpected response type (certificate refused?)");
                Err(RPCError::Network(NetworkError::new(&e)))
            }
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.call(RpcRequest::AppendEntries(rpc), &option, |r| match r {
            RpcResponse::AppendEntries(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.call(RpcRequest::InstallSnapshot(rpc), &option, |r| match r {
            RpcResponse::InstallSnapshot(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn vote(&mut self, rpc: VoteRequest<NodeId>, option: RPCOption) -> RpcResult<VoteResponse<NodeId>> {
        self.call(RpcRequest::Vote(rpc), &option, |r| match r {
            RpcResponse::Vote(x) => Some(x),
            _ => None,
        })
        .await
    }
}
