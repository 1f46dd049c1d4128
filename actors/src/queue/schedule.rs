//! What one delivery attempt means for a queued message: a pure function of
//! the message, the outcomes, the time and the retry policy (Postfix's qmgr
//! rules: exponential backoff between a minimum and a maximum, a maximal
//! queue lifetime after which what is still pending fails).

use super::spool::{RecipientState, SpooledMessage};
use crate::message::{DeliveryOutcome, Failure};

/// The retry policy, from the replicated settings `queue.*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub lifetime_ms: u64,
    pub min_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { lifetime_ms: 432_000_000, min_backoff_ms: 300_000, max_backoff_ms: 4_000_000 }
    }
}

/// Wait after the `attempts`-th failed attempt: the minimum, doubled per
/// further attempt, never more than the maximum.
pub fn backoff_ms(attempts: u32, policy: &RetryPolicy) -> u64 {
    let doublings = attempts.saturating_sub(1).min(32);
    policy.min_backoff_ms.saturating_mul(1u64 << doublings).min(policy.max_backoff_ms.max(policy.min_backoff_ms))
}

/// Applies one attempt's outcomes (by recipient index) to the message and
/// schedules the next attempt. Returns the indexes of recipients that failed
/// for good in this attempt (they need a bounce).
pub fn settle_attempt(
    message: &mut SpooledMessage,
    outcomes: &[(usize, DeliveryOutcome)],
    now_ms: u64,
    policy: &RetryPolicy,
) -> Vec<usize> {
    let mut failed = Vec::new();
    message.attempts = message.attempts.saturating_add(1);
    for (index, outcome) in outcomes {
        let Some(r) = message.recipients.get_mut(*index) else { continue };
        if r.state != RecipientState::Pending {
            continue;
        }
        match outcome {
            DeliveryOutcome::Delivered => {
                r.state = RecipientState::Delivered;
                r.last_failure = None;
            }
            DeliveryOutcome::Deferred(f) => r.last_failure = Some(f.clone()),
            DeliveryOutcome::Failed(f) => {
                r.state = RecipientState::Failed;
                r.last_failure = Some(f.clone());
                failed.push(*index);
            }
        }
    }
    let expired = now_ms.saturating_sub(message.received_ms) >= policy.lifetime_ms;
    for (index, r) in message.recipients.iter_mut().enumerate() {
        if r.state == RecipientState::Pending && expired {
            let why = r.last_failure.as_ref().map_or("no attempt succeeded".to_string(), |f| f.diagnostic.clone());
            r.state = RecipientState::Failed;
            let remote_mta = r.last_failure.as_ref().and_then(|f| f.remote_mta.clone());
            let expired = Failure::local("4.4.7", format!("delivery time expired; last error: {why}"));
            r.last_failure = Some(Failure { remote_mta, ..expired });
            failed.push(index);
        }
    }
    message.next_attempt_ms = now_ms.saturating_add(backoff_ms(message.attempts, policy));
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::spool::SpooledRecipient;
    use proptest::prelude::*;

    fn failure(status: &str) -> Failure {
        Failure { status: status.into(), diagnostic: format!("smtp; {status}"), remote_mta: Some("mx.b.org".into()) }
    }

    fn message(n: usize) -> SpooledMessage {
        let recipients =
            (0..n).map(|i| SpooledRecipient::new(&format!("r{i}@b.org"), &format!("r{i}@b.org"))).collect();
        SpooledMessage::new("Q".into(), "s@a.org".into(), recipients, b"x\r\n".to_vec(), 1_000)
    }

    const POLICY: RetryPolicy = RetryPolicy { lifetime_ms: 10_000, min_backoff_ms: 100, max_backoff_ms: 1_000 };

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let got: Vec<u64> = (1..=7).map(|a| backoff_ms(a, &POLICY)).collect();
        assert_eq!(got, [100, 200, 400, 800, 1_000, 1_000, 1_000]);
        assert_eq!(backoff_ms(u32::MAX, &POLICY), 1_000);
    }

    #[test]
    fn outcome_table() {
        let mut m = message(3);
        let failed = settle_attempt(
            &mut m,
            &[
                (0, DeliveryOutcome::Delivered),
                (1, DeliveryOutcome::Deferred(failure("4.2.0"))),
                (2, DeliveryOutcome::Failed(failure("5.1.1"))),
            ],
            2_000,
            &POLICY,
        );
        assert_eq!(failed, [2]);
        let states: Vec<_> = m.recipients.iter().map(|r| r.state).collect();
        assert_eq!(states, [RecipientState::Delivered, RecipientState::Pending, RecipientState::Failed]);
        assert_eq!(m.attempts, 1);
        assert_eq!(m.next_attempt_ms, 2_100);
        assert!(!m.finished());

        // A later outcome for a settled recipient changes nothing.
        let failed = settle_attempt(&mut m, &[(0, DeliveryOutcome::Failed(failure("5.0.0")))], 3_000, &POLICY);
        assert!(failed.is_empty());
        assert_eq!(m.recipients[0].state, RecipientState::Delivered);
        assert_eq!(m.next_attempt_ms, 3_200);

        // Past the lifetime, what is still pending fails with 4.4.7 and the last error.
        let failed = settle_attempt(&mut m, &[(1, DeliveryOutcome::Deferred(failure("4.2.0")))], 11_000, &POLICY);
        assert_eq!(failed, [1]);
        let f = m.recipients[1].last_failure.clone().unwrap();
        assert_eq!(f.status, "4.4.7");
        assert!(f.diagnostic.contains("smtp; 4.2.0"), "{}", f.diagnostic);
        assert!(m.finished());
    }

    proptest! {
        /// Whatever happens, every recipient ends in exactly one state, each
        /// failure is reported once, and nothing stays pending past the lifetime.
        #[test]
        fn every_failure_is_reported_once(
            rounds in prop::collection::vec(prop::collection::vec((0usize..4, 0u8..3), 0..6), 1..8),
            step in 1u64..5_000,
        ) {
            let mut m = message(4);
            let mut reported = Vec::new();
            let mut now = 1_000;
            for round in rounds {
                now += step;
                let outcomes: Vec<_> = round.into_iter().map(|(i, k)| (i, match k {
                    0 => DeliveryOutcome::Delivered,
                    1 => DeliveryOutcome::Deferred(failure("4.0.0")),
                    _ => DeliveryOutcome::Failed(failure("5.0.0")),
                })).collect();
                reported.extend(settle_attempt(&mut m, &outcomes, now, &POLICY));
                prop_assert!(m.next_attempt_ms > now);
                if now - m.received_ms >= POLICY.lifetime_ms {
                    prop_assert!(m.finished());
                }
            }
            let mut sorted = reported.clone();
            sorted.sort();
            sorted.dedup();
            prop_assert_eq!(sorted.len(), reported.len());
            let failed = m.recipients.iter().filter(|r| r.state == RecipientState::Failed).count();
            prop_assert_eq!(failed, reported.len());
        }
    }
}
