//! Restarting the node's long-lived actors (listeners, queue, delivery,
//! relay) when one dies, so a crash costs one actor, never the node.
//!
//! A panic in an actix handler ends the actor's task (tokio catches it; the
//! arbiter thread lives on) and leaves every `Addr` to it disconnected.
//! actix's own `Supervisor` only restarts an actor that *stops*, and dies
//! with it on a panic, so the policy here is one level up: a watchdog on the
//! supervising arbiter checks the actor every `CHECK_INTERVAL`, and when it
//! is gone starts a fresh one from the same recipe. Holders keep a
//! `SupervisedAddr<A>` and take the current address at each use, so they reach
//! the new incarnation without being told. A fresh incarnation rebuilds its
//! state from what is durable (the queue from its spool); what was in flight
//! in the dead one fails as a temporary error (451, a deferral), never as a
//! lost message.

use actix::prelude::*;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the watchdog looks.
const CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// The least time between two restarts of one actor: a recipe that dies at
/// once cannot spin.
const RESTART_SPACING: Duration = Duration::from_secs(1);

/// The current address of a supervised actor.
pub struct SupervisedAddr<A: Actor> {
    current: Arc<ArcSwap<Addr<A>>>,
    restarts: Arc<AtomicU64>,
}

impl<A: Actor> Clone for SupervisedAddr<A> {
    fn clone(&self) -> Self {
        Self { current: self.current.clone(), restarts: self.restarts.clone() }
    }
}

impl<A: Actor> SupervisedAddr<A> {
    /// Starts the actor with `start`, and again whenever it has died. The
    /// watchdog runs on the calling arbiter (which must outlive the actor);
    /// `start` decides where the actor itself runs.
    pub fn start(name: &'static str, start: impl Fn() -> Addr<A> + 'static) -> Self {
        let current = Arc::new(ArcSwap::from_pointee(start()));
        let restarts = Arc::new(AtomicU64::new(0));
        let supervised = Self { current: current.clone(), restarts: restarts.clone() };
        actix::spawn(async move {
            let mut last_restart: Option<tokio::time::Instant> = None;
            loop {
                tokio::time::sleep(CHECK_INTERVAL).await;
                if current.load().connected() {
                    continue;
                }
                if let Some(at) = last_restart {
                    tokio::time::sleep_until(at + RESTART_SPACING).await;
                }
                let count = restarts.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::error!(actor = name, restarts = count, "actor died; starting a new one");
                current.store(Arc::new(start()));
                last_restart = Some(tokio::time::Instant::now());
            }
        });
        supervised
    }

    /// The address of the live incarnation (take it at each use).
    pub fn addr(&self) -> Addr<A> {
        (**self.current.load()).clone()
    }

    /// How many times the actor was restarted.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fragile {
        served: u32,
    }

    impl Actor for Fragile {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Work {
        crash: bool,
    }

    impl Handler<Work> for Fragile {
        type Result = u32;
        fn handle(&mut self, msg: Work, _: &mut Context<Self>) -> u32 {
            assert!(!msg.crash, "a bug in a handler");
            self.served += 1;
            self.served
        }
    }

    #[actix::test]
    async fn a_panicking_actor_is_replaced_and_reachable_again() {
        let arbiter = Arbiter::new();
        let handle = arbiter.handle();
        let fragile =
            SupervisedAddr::start("fragile", move || Fragile::start_in_arbiter(&handle, |_| Fragile { served: 0 }));
        assert_eq!(fragile.addr().send(Work { crash: false }).await.unwrap(), 1);
        assert!(fragile.addr().send(Work { crash: true }).await.is_err(), "the panic ends the actor");
        let mut answered = None;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if let Ok(n) = fragile.addr().send(Work { crash: false }).await {
                answered = Some(n);
                break;
            }
        }
        assert_eq!(answered, Some(1), "a fresh incarnation answers");
        assert_eq!(fragile.restarts(), 1);
        arbiter.stop();
    }
}
