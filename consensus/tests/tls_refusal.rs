//! A node holding another cluster's certificate can neither join nor talk
//! Raft; a client without a certificate may only send a join request.

mod common;

use gatehouse_consensus::raft::network::Dialer;
use gatehouse_consensus::raft::rpc::{RpcRequest, RpcResponse};
use gatehouse_consensus::raft::tls::join_client_config;
use gatehouse_consensus::{wall_clock, ClusterError, ClusterNode, Command};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_certificates_and_tokens_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let a = common::start_cluster(&dir.path().join("a"), 1).await.remove(0);
    let b = common::start_cluster(&dir.path().join("b"), 1).await.remove(0);
    a.proposer.propose(Command::AddDomain { name: "example.com".into() }).await.unwrap();
    let applied_before = a.read.load().state.commands_applied;

    // B's member dials A with B's certificate: the TLS handshake fails.
    let timeout = Duration::from_secs(3);
    let err = b.dialer.call_once(&a.config.raft_listen, &RpcRequest::Status, timeout).await.unwrap_err();
    eprintln!("cross-cluster RPC refused: {err}");
    let propose = RpcRequest::Propose(vec![Command::AddDomain { name: "evil.org".into() }]);
    assert!(b.dialer.call_once(&a.config.raft_listen, &propose, timeout).await.is_err());

    // A client with no certificate (pinned to A's CA) may not propose.
    let anonymous = Dialer {
        tls: join_client_config(a.ca_fingerprint().unwrap()).unwrap(),
        connect_timeout: timeout,
        frame_bytes_max: 1 << 20,
    };
    let reply = anonymous.call_once(&a.config.raft_listen, &propose, timeout).await.unwrap();
    assert!(matches!(reply, RpcResponse::Unauthenticated), "{reply:?}");

    // B's token presented to A's seed: A's certificate does not match B's pin.
    let b_token = b.issue_join_token().await.unwrap();
    let joiner = common::fast_config(dir.path(), "joiner");
    let err = ClusterNode::join(joiner.clone(), wall_clock(), &b_token, &a.config.raft_listen).await.err().unwrap();
    assert!(matches!(err, ClusterError::JoinRefused { .. }), "{err}");

    // A's token with a forged secret: refused by A.
    let a_token = a.issue_join_token().await.unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut raw = b64.decode(a_token.strip_prefix("GH1.").unwrap()).unwrap();
    raw[40] ^= 0xff; // a byte of the secret; the CA fingerprint stays right
    let forged = format!("GH1.{}", b64.encode(raw));
    let err = ClusterNode::join(joiner.clone(), wall_clock(), &forged, &a.config.raft_listen).await.err().unwrap();
    assert!(matches!(err, ClusterError::JoinRefused { .. }) && err.to_string().contains("token"), "{err}");

    assert!(!a.read.load().state.directory.domains.contains_key("evil.org"));
    assert_eq!(a.read.load().state.commands_applied, applied_before + 2, "only the two token issues were applied");
}
