//! loom models of the two concurrent pieces the simulator cannot reach: it
//! runs one thread, so it never interleaves a reader with the state
//! machine's publish, nor two proposer batches finishing in either order.
//!
//! Run with `cargo test -p gatehouse-consensus --features loom --lib loom_models`
//! (scripts/test does). The feature swaps the read handle's arc-swap cell
//! for a loom lock, so loom sees every point where threads can meet.

use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;
use std::collections::VecDeque;

use crate::command::{ClusterRequest, Command, Outcome};
use crate::proposer::{deliver, ProposeError, ReplySlot};
use crate::read_handle::{AppliedState, ReadHandle};
use crate::state::rules::{ListName, ListRule, RuleKind};
use crate::state::ClusterState;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

/// Three versions as the state machine would publish them: a rule added,
/// a counter changed under the same rules, a second rule added.
fn versions() -> Vec<ClusterState> {
    let mut state = ClusterState::default();
    let mut out = Vec::new();
    let steps = [
        Command::AddListRule { rule: ListRule::new(ListName::Black, RuleKind::Ip, "192.0.2.1") },
        Command::IncrementHijack { user: "a@example.com".into(), client: "192.0.2.1 smtp".into() },
        Command::AddListRule { rule: ListRule::new(ListName::Black, RuleKind::Ip, "192.0.2.2") },
    ];
    for (i, command) in steps.into_iter().enumerate() {
        state.apply_request(&ClusterRequest { at_ms: 1_000 * i as u64, commands: vec![command] });
        out.push(state.clone());
    }
    out
}

/// What a reader may rely on: the lookup tables belong to the state they
/// ride with, and a later load never goes back to an older version.
fn check_view(view: &AppliedState, last_seen: &mut u64) {
    assert!(view.applied_index >= *last_seen, "went back from {} to {}", last_seen, view.applied_index);
    *last_seen = view.applied_index;
    assert_eq!(view.rules.version, view.state.rules.version, "index of other rules at {}", view.applied_index);
    let listed =
        |last: u8| !view.rules.by_ip(format!("192.0.2.{last}").parse().unwrap_or([0, 0, 0, 0].into())).is_empty();
    assert_eq!(listed(1), view.applied_index >= 1);
    assert_eq!(listed(2), view.applied_index >= 3);
}

#[test]
fn readers_see_whole_versions_in_order_while_the_state_machine_publishes() {
    // Applied outside the model: `apply`'s frames are too deep for loom's
    // coroutine stacks in a debug build.
    let states = versions();
    model(move || {
        let handle = ReadHandle::new(AppliedState::default());
        let writer = {
            let handle = handle.clone();
            let states = states.clone();
            thread::spawn(move || {
                for (i, state) in states.into_iter().enumerate() {
                    handle.publish(i as u64 + 1, state);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let handle = handle.clone();
                thread::spawn(move || {
                    let mut last_seen = 0;
                    for _ in 0..2 {
                        check_view(&handle.load(), &mut last_seen);
                    }
                })
            })
            .collect();
        writer.join().ok();
        for reader in readers {
            reader.join().ok();
        }
        let mut last_seen = 3;
        check_view(&handle.load(), &mut last_seen);
        assert_eq!(handle.load().applied_index, 3);
    });
}

type Result1 = Result<Outcome, ProposeError>;

/// The proposer's queue: waiting commands with their callers' slots.
type Queue = Arc<(Mutex<VecDeque<(Command, Slot)>>, Condvar)>;

/// A caller's wait for its outcome, as loom sees it.
#[derive(Clone)]
struct Slot(Arc<(Mutex<Option<Result1>>, Condvar)>);

impl Slot {
    fn new() -> Self {
        Self(Arc::new((Mutex::new(None), Condvar::new())))
    }

    fn wait(&self) -> Result1 {
        let (lock, ready) = &*self.0;
        let mut value = lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(result) = value.take() {
                return result;
            }
            value = ready.wait(value).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl ReplySlot for Slot {
    fn fill(self, result: Result1) {
        let (lock, ready) = &*self.0;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        ready.notify_one();
    }
}

const RECIPIENTS: [u32; 2] = [1, 2];

fn charge(recipients: u32) -> Command {
    Command::ChargeDailyQuota { user: "u@example.com".into(), messages: recipients, bytes: 1 }
}

/// Two callers queue quota charges; the batcher (the main thread, also the
/// first caller) takes up to two at a time and hands each batch to its own
/// submitter thread, so one batch of two or two batches committing in
/// either order, as with `batches_in_flight_max` > 1. Every caller must get
/// the result of its own charge: the charged total it sees minus the total
/// before it is exactly its own recipients. (Three callers exceed what loom
/// explores in minutes; two already cover both batch shapes and orders.)
#[test]
fn each_caller_gets_its_own_result_when_batches_finish_in_any_order() {
    model(|| {
        let queue: Queue = Arc::new((Mutex::new(VecDeque::new()), Condvar::new()));
        let leader = Arc::new(Mutex::new(ClusterState::default()));
        let submit = |batch: Vec<(Command, Slot)>, leader: Arc<Mutex<ClusterState>>| {
            thread::spawn(move || {
                let (commands, slots): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let response = leader
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .apply_request(&ClusterRequest { at_ms: 0, commands });
                deliver(Ok(response), slots);
            })
        };
        let callers: Vec<_> = RECIPIENTS[1..]
            .iter()
            .map(|&recipients| {
                let queue = queue.clone();
                thread::spawn(move || {
                    let slot = Slot::new();
                    let (lock, ready) = &*queue;
                    lock.lock().unwrap_or_else(|p| p.into_inner()).push_back((charge(recipients), slot.clone()));
                    ready.notify_one();
                    (recipients, slot.wait())
                })
            })
            .collect();
        // The main thread is the third caller and the batcher.
        let own = Slot::new();
        queue.0.lock().unwrap_or_else(|p| p.into_inner()).push_back((charge(RECIPIENTS[0]), own.clone()));
        let mut taken = 0;
        let mut submitters = Vec::new();
        while taken < RECIPIENTS.len() {
            let (lock, ready) = &*queue;
            let mut waiting = lock.lock().unwrap_or_else(|p| p.into_inner());
            while waiting.is_empty() {
                waiting = ready.wait(waiting).unwrap_or_else(|p| p.into_inner());
            }
            let batch: Vec<_> = (0..2).filter_map(|_| waiting.pop_front()).collect();
            drop(waiting);
            taken += batch.len();
            submitters.push(submit(batch, leader.clone()));
        }
        let mut results = vec![(RECIPIENTS[0], own.wait())];
        results.extend(callers.into_iter().filter_map(|c| c.join().ok()));
        for s in submitters {
            s.join().ok();
        }
        check_charges(&results);
    });
}

/// Orders the answers by the byte count each charge saw (one per charge)
/// and checks that each step up in the message total is the caller's own.
fn check_charges(results: &[(u32, Result1)]) {
    let mut charged: Vec<(u32, u32, u32)> = Vec::new();
    let mut refused = 0;
    for (own, result) in results {
        match result {
            Ok(Outcome::QuotaCharged { messages, bytes }) => charged.push((*bytes as u32, *messages, *own)),
            Ok(Outcome::QuotaExceeded { .. }) => refused += 1,
            other => panic!("unexpected result {other:?}"),
        }
    }
    charged.sort();
    assert_eq!(charged.len(), 2, "{charged:?}");
    assert_eq!(refused, 0);
    let mut total = 0;
    for (i, (charges, messages, own)) in charged.iter().enumerate() {
        assert_eq!(*charges as usize, i + 1, "{charged:?}");
        assert_eq!(messages - total, *own, "a caller got another's result: {charged:?}");
        total = *messages;
    }
}
