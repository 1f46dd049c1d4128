//! Who may deliver a replicated queued message (`queue.replicas = 2`).
//!
//! Each accepted message lives in its owner's spool and, passively, in one
//! holder's. The owner delivers while it holds a fresh lease: it renews
//! `RenewSpoolLease` through Raft every few seconds, and stops delivering
//! replicated messages when its last renewal is older than half of
//! `queue.takeover_after_s`. A holder may take over an owner's replicas
//! only when the owner was removed from the cluster or its lease is older
//! than `queue.takeover_after_s` (leader time, in `apply`), so the two never
//! deliver at once. A takeover is a record (owner, holder) that stays until
//! both sides have done their part: the holder moved the replicas into its
//! own queue (`promoted`), and the owner dropped its copies of the messages
//! it had replicated there (`acked`). While it stands, the owner sends no
//! new replicas to that holder.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolOwner {
    /// The leader's time of the owner's last renewal (0: never).
    pub renewed_ms: u64,
    /// Removed from the cluster: it may not renew again, and its replicas
    /// may be taken over sooner (see `may_take_over`).
    pub removed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeover {
    pub at_ms: u64,
    /// The holder moved the owner's replicas into its own queue.
    pub promoted: bool,
    /// The owner dropped its copies of the messages replicated to the holder.
    pub acked: bool,
}

/// The most queue ids one `TakeOverSpool` claims.
pub const TAKEOVER_IDS_MAX: usize = 10_000;

/// Which holder a taken-over message went to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub owner: u64,
    pub holder: u64,
    pub at_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolOwners {
    pub owners: BTreeMap<u64, SpoolOwner>,
    /// owner → holder → the takeover in progress.
    pub takeovers: BTreeMap<u64, BTreeMap<u64, Takeover>>,
    /// Taken-over messages by queue id, kept for `queue.lifetime_s` (no
    /// copy outlives its message's lifetime).
    #[serde(default)]
    pub claims: BTreeMap<String, Claim>,
}

impl SpoolOwners {
    /// Holders that took over (part of) `owner`'s replicas and wait for it to drop its copies.
    pub fn taken_over_from(&self, owner: u64) -> Vec<u64> {
        self.takeovers.get(&owner).map(|h| h.keys().copied().collect()).unwrap_or_default()
    }

    /// The holders that took over `owner`'s replicas: those that moved them
    /// into their queues, and those that have not yet.
    pub fn takeovers_of(&self, owner: u64) -> (Vec<u64>, Vec<u64>) {
        let Some(holders) = self.takeovers.get(&owner) else { return (Vec::new(), Vec::new()) };
        let promoted = holders.iter().filter(|(_, t)| t.promoted).map(|(h, _)| *h).collect();
        let waiting = holders.iter().filter(|(_, t)| !t.promoted).map(|(h, _)| *h).collect();
        (promoted, waiting)
    }

    /// Grants `by` the messages no other holder claimed before.
    pub fn claim(&mut self, owner: u64, by: u64, queue_ids: &[String], at_ms: u64) -> Vec<String> {
        let mut granted = Vec::new();
        for id in queue_ids.iter().take(TAKEOVER_IDS_MAX) {
            let claim = self.claims.entry(id.clone()).or_insert(Claim { owner, holder: by, at_ms });
            if claim.holder == by {
                granted.push(id.clone());
            }
        }
        granted
    }

    /// Drops claims older than `lifetime_ms`; returns how many went.
    pub fn expire_claims(&mut self, now_ms: u64, lifetime_ms: u64) -> usize {
        let before = self.claims.len();
        self.claims.retain(|_, c| c.at_ms.saturating_add(lifetime_ms) > now_ms);
        before - self.claims.len()
    }

    /// The messages of `owner` that holders in a takeover under way claimed.
    pub fn claimed_from(&self, owner: u64) -> Vec<(u64, String)> {
        let Some(holders) = self.takeovers.get(&owner) else { return Vec::new() };
        self.claims
            .iter()
            .filter(|(_, c)| c.owner == owner && holders.contains_key(&c.holder))
            .map(|(id, c)| (c.holder, id.clone()))
            .collect()
    }

    /// A holder left the cluster: its takeovers end, whatever their state.
    pub fn forget_holder(&mut self, holder: u64) {
        for holders in self.takeovers.values_mut() {
            holders.remove(&holder);
        }
        self.takeovers.retain(|_, holders| !holders.is_empty());
    }

    /// Owners whose replicas `holder` took over and has not moved yet.
    pub fn to_promote(&self, holder: u64) -> Vec<u64> {
        self.takeovers
            .iter()
            .filter(|(_, holders)| holders.get(&holder).is_some_and(|t| !t.promoted))
            .map(|(owner, _)| *owner)
            .collect()
    }

    /// Whether `holder` may take over `owner`'s replicas at `now_ms`.
    /// A removed owner can no longer renew and stops delivering by itself
    /// half of `after_ms` after its last renewal: its holders wait three
    /// quarters (a margin for clocks that run at slightly different rates)
    /// instead of the whole.
    pub fn may_take_over(&self, owner: u64, now_ms: u64, after_ms: u64) -> bool {
        match self.owners.get(&owner) {
            Some(o) if o.removed => now_ms >= o.renewed_ms.saturating_add(after_ms / 4 * 3),
            Some(o) => now_ms >= o.renewed_ms.saturating_add(after_ms),
            // An owner that never renewed never replicated anything.
            None => true,
        }
    }

    /// Marks one side's part done; the record goes when both are.
    pub fn settle(&mut self, owner: u64, holder: u64, promoted: bool, acked: bool) -> bool {
        let Some(holders) = self.takeovers.get_mut(&owner) else { return false };
        let Some(t) = holders.get_mut(&holder) else { return false };
        t.promoted |= promoted;
        t.acked |= acked;
        if t.promoted && t.acked {
            holders.remove(&holder);
            if holders.is_empty() {
                self.takeovers.remove(&owner);
            }
        }
        true
    }
}
