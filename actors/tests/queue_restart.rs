//! The delivery queue under supervision: when its thread dies (the fault a
//! panic causes, here by stopping the arbiter it runs on), a new queue starts
//! from the same recipe, rebuilds its schedule from the spool, and answers
//! through the same `SupervisedAddr` its holders already have.

use actix::prelude::*;
use consensus::ReadHandle;
use gatehouse_actors::delivery::LocalDelivery;
use gatehouse_actors::queue::control::ListQueue;
use gatehouse_actors::queue::spool::{Spool, SpooledMessage, SpooledRecipient};
use gatehouse_actors::queue::{DeliveryQueue, LocalRoute};
use gatehouse_actors::relay::{Relay, RelayConfig};
use gatehouse_actors::supervise::SupervisedAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[actix::test]
async fn a_dead_queue_is_restarted_with_its_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(&dir.path().join("queue.redb")).unwrap());
    let mut waiting = SpooledMessage::new(
        "00000000001".into(),
        "a@b.org".into(),
        vec![SpooledRecipient::new("x@remote.example", "x@remote.example")],
        b"Subject: waits\r\n\r\nhi\r\n".to_vec(),
        1,
    );
    waiting.next_attempt_ms = u64::MAX / 2;
    spool.put_batch(&[waiting], None).unwrap();

    let read = ReadHandle::default();
    let mail_root = dir.path().join("mail");
    let local = LocalRoute::Maildir(SupervisedAddr::start("delivery", move || {
        let mail_root = mail_root.clone();
        SyncArbiter::start(1, move || LocalDelivery { mail_root: mail_root.clone(), hostname: "mx".into() })
    }));
    let relay_read = read.clone();
    let tls = Relay::tls_connector().unwrap();
    let relay = SupervisedAddr::start("relay", move || {
        let config = RelayConfig { nameservers: vec!["127.0.0.1:9".parse().unwrap()], connections_max: 1 };
        let relay = Relay::new(relay_read.clone(), config, tls.clone());
        Relay::start(relay)
    });
    // Each incarnation on a thread of its own, so the test can end one.
    let threads: Arc<Mutex<Vec<Arbiter>>> = Arc::default();
    let recipe_threads = threads.clone();
    let queue = SupervisedAddr::start("queue", move || {
        let arbiter = Arbiter::new();
        let (spool, read, local, relay) = (spool.clone(), read.clone(), local.clone(), relay.clone());
        let addr = DeliveryQueue::start_in_arbiter(&arbiter.handle(), move |_| {
            DeliveryQueue::new(spool, read, local, relay, 1)
        });
        recipe_threads.lock().unwrap().push(arbiter);
        addr
    });

    let listed = queue.addr().send(ListQueue).await.unwrap().unwrap();
    assert_eq!(listed.len(), 1);
    let first = threads.lock().unwrap().remove(0);
    first.stop();
    first.join().unwrap();
    assert!(!queue.addr().connected(), "the first queue is gone");

    let mut relisted = None;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(Ok(entries)) = queue.addr().send(ListQueue).await {
            relisted = Some(entries);
            break;
        }
    }
    let relisted = relisted.expect("a new queue answers through the same handle");
    assert_eq!(relisted.len(), 1, "the new queue found the spooled message");
    assert_eq!(relisted[0].queue_id, "00000000001");
    assert_eq!(queue.restarts(), 1);
    for arbiter in threads.lock().unwrap().drain(..) {
        arbiter.stop();
    }
}
