//! The one DNS resolver the mail path uses: screening (DNSBL, reverse,
//! sender domains), authentication (SPF, DKIM, DMARC, ARC) and relay (MX).
//! Each worker thread keeps its own, because hickory spawns its connection
//! tasks on the runtime that first uses them; with it goes hickory's cache,
//! which keeps every answer for its TTL.

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use std::cell::OnceCell;
use std::net::SocketAddr;
use std::rc::Rc;

/// A resolver on the given nameservers (`ip:port`), or the system's when none are given.
pub fn build_resolver(nameservers: &[SocketAddr]) -> Result<TokioResolver, String> {
    if nameservers.is_empty() {
        return TokioResolver::builder_tokio()
            .and_then(|b| b.build())
            .map_err(|e| format!("system DNS configuration: {e}"));
    }
    let servers = nameservers
        .iter()
        .map(|addr| {
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
        })
        .collect();
    Resolver::builder_with_config(ResolverConfig::from_name_servers(servers), TokioRuntimeProvider::default())
        .build()
        .map_err(|e| format!("DNS resolver: {e}"))
}

thread_local! {
    static RESOLVER: OnceCell<Result<Rc<TokioResolver>, String>> = const { OnceCell::new() };
}

/// This thread's resolver on the configured nameservers.
pub fn resolver(nameservers: &[SocketAddr]) -> Result<Rc<TokioResolver>, String> {
    RESOLVER.with(|cell| cell.get_or_init(|| build_resolver(nameservers).map(Rc::new)).clone())
}
