//! Greylisting (RFC 6647): a new (client network, sender, recipient)
//! triplet is deferred with 451 4.7.1; a retry after the delay and inside the
//! retry window passes, and the triplet then passes for the pass lifetime.
//!
//! The decision is made from the locally applied state only; the attempt is
//! recorded through the batching proposer without waiting, so a client that
//! retries through the load balancer on another node finds its triplet there,
//! and a node without quorum still decides from what it knows.

use consensus::command::Command;
use consensus::state::counters::DAY_MS;
use consensus::state::settings::key;
use consensus::state::{Counters, ListName, RuleAction, RuleIndex, RuleSets, Settings};
use std::net::IpAddr;

use crate::smtp::Reply;

/// The greylist settings, read once per decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreylistSettings {
    /// Clients no rule names are greylisted.
    pub by_default: bool,
    pub delay_ms: u64,
    pub retry_window_ms: u64,
    pub pass_ttl_ms: u64,
    /// Passed triplets after which a network is auto-whitelisted; 0: never.
    pub auto_whitelist_passes: u32,
}

impl GreylistSettings {
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            by_default: s.text(key::GREYLIST_DEFAULT_ACTION) == "greylist",
            delay_ms: s.uint(key::GREYLIST_DELAY_S) * 1000,
            retry_window_ms: s.uint(key::GREYLIST_RETRY_WINDOW_S) * 1000,
            pass_ttl_ms: s.uint(key::GREYLIST_PASS_TTL_S) * 1000,
            auto_whitelist_passes: s.uint32(key::GREYLIST_AUTO_WHITELIST_PASSES),
        }
    }
}

/// The client network a triplet names: the /24 of an IPv4 address, the /64
/// of an IPv6 one, so a sender's pool of outbound hosts counts as one client.
pub fn client_network(ip: IpAddr) -> ipnet::IpNet {
    let len = if ip.is_ipv4() { 24 } else { 64 };
    ipnet::IpNet::new(ip, len).map(|n| n.trunc()).unwrap_or_else(|_| ipnet::IpNet::from(ip))
}

/// The triplet's key: `network sender recipient`, addresses lowercased, `<>`
/// for the null sender.
pub fn triplet_key(ip: IpAddr, sender: &str, recipient: &str) -> String {
    let sender = if sender.is_empty() { "<>".to_string() } else { sender.to_lowercase() };
    format!("{} {} {}", client_network(ip), sender, recipient.to_lowercase())
}

/// What greylisting says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GreylistDecision {
    /// Not greylisted (a rule, a whitelist, the default).
    Skip,
    /// Passes; `record` refreshes or completes the triplet.
    Pass { record: Option<Command> },
    /// Deferred with this reply; `record` counts the attempt.
    Defer { reply: Reply, record: Command },
}

/// The greylist rule action for this client and sender: `never` beats
/// `always` beats `greylist`; no rule means the default.
pub fn rule_action(rules: &RuleSets, index: &RuleIndex, ip: IpAddr, sender_domain: Option<&str>) -> Option<RuleAction> {
    let mut ids = index.by_ip(ip);
    if let Some(d) = sender_domain {
        ids.extend_from_slice(index.by_sender_domain(d));
    }
    let actions = ids.iter().filter_map(|id| rules.lists.get(id)).filter(|r| r.list == ListName::Greylist);
    actions.map(|r| r.action).min_by_key(|a| match a {
        RuleAction::Never => 0,
        RuleAction::Always => 1,
        _ => 2,
    })
}

/// The facts one decision needs.
pub struct GreylistRequest<'a> {
    pub ip: IpAddr,
    pub sender: &'a str,
    pub recipient: &'a str,
    /// A black/white list whitelist matched, or the client is trusted.
    pub whitelisted: bool,
    pub now_ms: u64,
}

pub fn decide(
    rules: &RuleSets,
    index: &RuleIndex,
    counters: &Counters,
    settings: &GreylistSettings,
    req: &GreylistRequest,
) -> GreylistDecision {
    let sender_domain = req.sender.rsplit_once('@').map(|(_, d)| d.to_lowercase());
    let action = rule_action(rules, index, req.ip, sender_domain.as_deref());
    let always = match action {
        Some(RuleAction::Never) => return GreylistDecision::Skip,
        Some(RuleAction::Always) => true,
        Some(_) => false,
        None if settings.by_default => false,
        None => return GreylistDecision::Skip,
    };
    let network = client_network(req.ip).to_string();
    let auto_whitelisted = settings.auto_whitelist_passes > 0
        && counters
            .greylist_clients
            .get(&network)
            .is_some_and(|c| c.expires_ms > req.now_ms && c.passes >= settings.auto_whitelist_passes);
    if !always && (req.whitelisted || auto_whitelisted) {
        return GreylistDecision::Skip;
    }
    let key = triplet_key(req.ip, req.sender, req.recipient);
    let record = Command::RecordGreylistAttempt {
        triplet: key.clone(),
        delay_ms: settings.delay_ms,
        retry_window_ms: settings.retry_window_ms,
        pass_ttl_ms: settings.pass_ttl_ms,
    };
    let known = counters.greylist.get(&key).filter(|t| t.expires_ms > req.now_ms);
    let retry_at = match known {
        // Refresh a passed triplet's lifetime at most once a day: one write
        // per busy triplet per day, not one per message.
        Some(t) if t.passed_ms.is_some() => {
            let stale = t.expires_ms < req.now_ms.saturating_add(settings.pass_ttl_ms).saturating_sub(DAY_MS);
            return GreylistDecision::Pass { record: stale.then_some(record) };
        }
        Some(t) if req.now_ms >= t.first_seen_ms.saturating_add(settings.delay_ms) => {
            return GreylistDecision::Pass { record: Some(record) };
        }
        Some(t) => t.first_seen_ms.saturating_add(settings.delay_ms),
        None => req.now_ms.saturating_add(settings.delay_ms),
    };
    let wait_s = retry_at.saturating_sub(req.now_ms).div_ceil(1000);
    let text = format!("<{}>: Recipient address rejected: Greylisted, try again in {wait_s} seconds", req.recipient);
    GreylistDecision::Defer { reply: Reply::new(451, "4.7.1", &text), record }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::state::{ClusterState, GreylistClient, ListRule, RuleKind};

    const MIN: u64 = 60_000;

    fn settings() -> GreylistSettings {
        GreylistSettings {
            by_default: true,
            delay_ms: 5 * MIN,
            retry_window_ms: 24 * 60 * MIN,
            pass_ttl_ms: 36 * DAY_MS,
            auto_whitelist_passes: 5,
        }
    }

    fn request(ip: &str, now_ms: u64) -> GreylistRequest<'static> {
        GreylistRequest {
            ip: ip.parse().unwrap(),
            sender: "a@sender.example",
            recipient: "b@example.com",
            whitelisted: false,
            now_ms,
        }
    }

    /// Applies a decision's record the way the cluster would.
    fn commit(state: &mut ClusterState, decision: &GreylistDecision, at_ms: u64) {
        let record = match decision {
            GreylistDecision::Pass { record: Some(r) } | GreylistDecision::Defer { record: r, .. } => r,
            _ => return,
        };
        state.apply(record, at_ms).unwrap();
    }

    fn is_defer(d: &GreylistDecision) -> bool {
        matches!(d, GreylistDecision::Defer { reply, .. } if reply.code == 451 && reply.enhanced == "4.7.1")
    }

    #[test]
    fn first_defer_early_retry_defer_late_retry_pass_then_pass() {
        let mut s = ClusterState::default();
        let index = RuleIndex::build(&s.rules);
        let cfg = settings();
        let t0 = 1_000 * DAY_MS;
        let timeline: &[(u64, bool)] = &[
            (t0, false),              // first attempt: 451
            (t0 + MIN, false),        // too early: 451
            (t0 + 5 * MIN, true),     // after the delay: passes
            (t0 + 10 * MIN, true),    // passed triplet
            (t0 + 30 * DAY_MS, true), // still inside 36 days
        ];
        for (now, passes) in timeline {
            let d = decide(&s.rules, &index, &s.counters, &cfg, &request("192.0.2.7", *now));
            assert_eq!(!is_defer(&d), *passes, "at +{} ms: {d:?}", now - t0);
            commit(&mut s, &d, *now);
        }
        // Another host of the same /24 shares the triplet.
        let d = decide(&s.rules, &index, &s.counters, &cfg, &request("192.0.2.200", t0 + 31 * DAY_MS));
        assert!(matches!(d, GreylistDecision::Pass { .. }));
        // After the pass lifetime (counted from the last refresh) it starts over.
        let d = decide(&s.rules, &index, &s.counters, &cfg, &request("192.0.2.7", t0 + 80 * DAY_MS));
        assert!(is_defer(&d));
    }

    #[test]
    fn retry_after_the_window_starts_over() {
        let mut s = ClusterState::default();
        let index = RuleIndex::build(&s.rules);
        let cfg = settings();
        let d = decide(&s.rules, &index, &s.counters, &cfg, &request("192.0.2.7", 0));
        commit(&mut s, &d, 0);
        let late = cfg.retry_window_ms + 1;
        let d = decide(&s.rules, &index, &s.counters, &cfg, &request("192.0.2.7", late));
        assert!(is_defer(&d), "{d:?}");
    }

    #[test]
    fn rules_defaults_whitelists_and_auto_whitelist() {
        let mut s = ClusterState::default();
        for (kind, value, action) in [
            (RuleKind::Subnet, "10.0.0.0/8", RuleAction::Never),
            (RuleKind::SenderDomain, "sender.example", RuleAction::Always),
            (RuleKind::Ip, "10.9.9.9", RuleAction::Greylist),
            (RuleKind::Subnet, "172.16.0.0/12", RuleAction::Greylist),
        ] {
            let rule = ListRule { action, ..ListRule::new(ListName::Greylist, kind, value) };
            s.apply(&Command::AddListRule { rule }, 0).unwrap();
        }
        s.counters
            .greylist_clients
            .insert("198.51.100.0/24".into(), GreylistClient { passes: 5, expires_ms: u64::MAX });
        s.counters.greylist_clients.insert("203.0.113.0/24".into(), GreylistClient { passes: 4, expires_ms: u64::MAX });
        let index = RuleIndex::build(&s.rules);
        let off = GreylistSettings { by_default: false, ..settings() };
        // (ip, sender, whitelisted, default on?, deferred?)
        let table: &[(&str, &str, bool, bool, bool)] = &[
            ("10.9.9.9", "x@sender.example", false, true, false), // never beats always and greylist
            ("192.0.2.1", "x@sender.example", true, false, true), // always: even whitelisted, default off
            ("192.0.2.1", "x@other.example", false, true, true),  // default greylist
            ("192.0.2.1", "x@other.example", false, false, false), // default never
            ("192.0.2.1", "x@other.example", true, true, false),  // whitelisted
            ("172.16.5.5", "x@other.example", false, false, true), // rule greylist, default off
            ("198.51.100.9", "x@other.example", false, true, false), // auto-whitelisted network
            ("203.0.113.9", "x@other.example", false, true, true), // one pass short
            ("198.51.100.9", "x@sender.example", false, true, true), // always beats auto-whitelist
        ];
        for (ip, sender, whitelisted, on, deferred) in table {
            let cfg = if *on { settings() } else { off };
            let req = GreylistRequest {
                ip: ip.parse().unwrap(),
                sender,
                recipient: "b@example.com",
                whitelisted: *whitelisted,
                now_ms: 0,
            };
            let d = decide(&s.rules, &index, &s.counters, &cfg, &req);
            assert_eq!(is_defer(&d), *deferred, "{ip} {sender} whitelisted={whitelisted} default={on}: {d:?}");
        }
    }

    #[test]
    fn passes_feed_the_auto_whitelist() {
        let mut s = ClusterState::default();
        let index = RuleIndex::build(&s.rules);
        let cfg = settings();
        for n in 0..5 {
            let req = GreylistRequest {
                recipient: ["r0@x.example", "r1@x.example", "r2@x.example", "r3@x.example", "r4@x.example"][n],
                ..request("192.0.2.7", 0)
            };
            let d = decide(&s.rules, &index, &s.counters, &cfg, &req);
            commit(&mut s, &d, 0);
            let d = decide(&s.rules, &index, &s.counters, &cfg, &GreylistRequest { now_ms: 6 * MIN, ..req });
            commit(&mut s, &d, 6 * MIN);
        }
        assert_eq!(s.counters.greylist_clients["192.0.2.0/24"].passes, 5);
        let fresh = GreylistRequest { recipient: "new@x.example", ..request("192.0.2.8", 7 * MIN) };
        assert_eq!(decide(&s.rules, &index, &s.counters, &cfg, &fresh), GreylistDecision::Skip);
    }

    #[test]
    fn keys() {
        assert_eq!(
            triplet_key("192.0.2.7".parse().unwrap(), "A@B.example", "C@d.example"),
            "192.0.2.0/24 a@b.example c@d.example"
        );
        assert_eq!(triplet_key("2001:db8::1".parse().unwrap(), "", "c@d.example"), "2001:db8::/64 <> c@d.example");
    }
}
