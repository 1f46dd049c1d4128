//! The screening actor: one per SMTP connection, a thin shell around the
//! sans-IO `Session`. It moves bytes between the socket and the session,
//! answers the session's questions (recipient policy from the local read
//! handle, storage through the delivery queue), and drives its timers.
//! Connection checks (lists, DNSBL, rates) will run here before the greeting.

use actix::io::{SinkWrite, WriteHandler};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use consensus::ReadHandle;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_util::codec::{BytesCodec, FramedRead, FramedWrite};

use crate::queue::{now_ms, DeliveryQueue, Enqueue};
use crate::recipient::resolve_recipient;
use crate::smtp::{Action, PeerInfo, Reply, Session, SessionConfig, SmtpLimits};

type Sink = FramedWrite<tokio::net::tcp::OwnedWriteHalf, BytesCodec>;

pub struct Screening {
    session: Session,
    writer: SinkWrite<Bytes, Sink>,
    read: ReadHandle,
    queue: Addr<DeliveryQueue>,
}

impl Screening {
    /// Starts the actor for an accepted connection.
    pub fn start(stream: TcpStream, peer: PeerInfo, read: ReadHandle, queue: Addr<DeliveryQueue>, limits: SmtpLimits) {
        Screening::create(move |ctx| {
            let (r, w) = stream.into_split();
            ctx.add_stream(FramedRead::new(r, BytesCodec::new()));
            let writer = SinkWrite::new(FramedWrite::new(w, BytesCodec::new()), ctx);
            let state = read.load();
            let settings = &state.state.settings;
            let config = SessionConfig {
                hostname: settings.get("smtp.hostname").unwrap_or_else(|_| "localhost".into()),
                banner: settings.get("smtp.banner").unwrap_or_default(),
                limits,
            };
            let session = Session::new(Arc::new(config), peer, now_ms());
            Screening { session, writer, read, queue }
        });
    }

    /// Carries out everything the session asked for.
    fn drain(&mut self, ctx: &mut Context<Self>) {
        while let Some(action) = self.session.poll_action() {
            match action {
                Action::Send(bytes) => {
                    let _ = self.writer.write(Bytes::from(bytes));
                }
                Action::CheckRecipient { address } => {
                    let state = self.read.load();
                    let primary = state.state.settings.get("smtp.primary_domain").unwrap_or_default();
                    let verdict = resolve_recipient(&state.state.directory, &primary, &address);
                    self.session.recipient_verdict(verdict, now_ms());
                }
                Action::Store(message) => {
                    let stored = self.queue.send(Enqueue(message));
                    ctx.spawn(stored.into_actor(self).map(|result, act, ctx| {
                        let result = result
                            .unwrap_or_else(|_| Err(Reply::new(451, "4.3.0", "Queue unavailable; try again later")));
                        act.session.stored(result, now_ms());
                        act.drain(ctx);
                    }));
                }
                Action::Close => {
                    self.writer.close();
                }
            }
        }
    }
}

impl Actor for Screening {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.drain(ctx);
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            act.session.timeout(now_ms());
            act.drain(ctx);
        });
    }
}

impl StreamHandler<Result<BytesMut, io::Error>> for Screening {
    fn handle(&mut self, item: Result<BytesMut, io::Error>, ctx: &mut Context<Self>) {
        match item {
            Ok(bytes) => {
                self.session.receive(&bytes, now_ms());
                self.drain(ctx);
            }
            Err(_) => ctx.stop(),
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        // The client hung up. A message already handed to the queue is kept;
        // the queue's answer simply finds no one to tell.
        ctx.stop();
    }
}

impl WriteHandler<io::Error> for Screening {
    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
