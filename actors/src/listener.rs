//! The SMTP listener actor: accepts connections and starts one screening
//! actor per connection, spread over the worker arbiters so sessions use
//! every core. The bound socket outlives the actor: a restarted listener
//! (`crate::supervise`) accepts on a clone of it.

use actix::prelude::*;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

use crate::screening::{ListenerRole, Screening, ScreeningServices};
use crate::smtp::PeerInfo;

pub struct SmtpListener {
    socket: Arc<std::net::TcpListener>,
    services: Arc<ScreeningServices>,
    role: ListenerRole,
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
}

impl SmtpListener {
    /// `socket` is bound and non-blocking.
    pub fn new(
        socket: Arc<std::net::TcpListener>,
        services: Arc<ScreeningServices>,
        role: ListenerRole,
        workers: Vec<ArbiterHandle>,
    ) -> Self {
        Self { socket, services, role, workers, next_worker: 0 }
    }
}

impl Actor for SmtpListener {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let listener = match self.socket.try_clone().and_then(TcpListener::from_std) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(listener = self.role.name, error = %e, "cannot accept on the listening socket");
                return ctx.stop();
            }
        };
        let accepts = futures::stream::unfold(listener, |l| async move {
            let accepted = l.accept().await;
            if accepted.is_err() {
                // Out of file descriptors (EMFILE) fails every accept at
                // once: pause rather than spin on the error.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Some((accepted, l))
        });
        ctx.add_stream(accepts);
    }
}

impl StreamHandler<io::Result<(TcpStream, SocketAddr)>> for SmtpListener {
    fn handle(&mut self, item: io::Result<(TcpStream, SocketAddr)>, _: &mut Context<Self>) {
        let (stream, addr) = match item {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "smtp accept failed");
                return;
            }
        };
        let _ = stream.set_nodelay(true);
        let peer = PeerInfo { ip: addr.ip(), port: addr.port() };
        let (services, role) = (self.services.clone(), self.role.clone());
        let start = move || Screening::accept(stream, peer, services, role);
        if self.workers.is_empty() {
            start();
        } else {
            let worker = &self.workers[self.next_worker % self.workers.len()];
            self.next_worker = self.next_worker.wrapping_add(1);
            worker.spawn_fn(start);
        }
    }
}
