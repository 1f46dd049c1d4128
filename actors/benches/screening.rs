//! The screening decision path with 10,000 list entries: what one connection
//! (client lists) and one RCPT (envelope lists plus greylisting against
//! 10,000 triplets) cost, through the rule index, against the same state with
//! 10 rules, and against a linear scan of the rules (what the index replaced).
//!
//! cargo bench -p gatehouse-actors --bench screening

use consensus::command::Command;
use consensus::state::{ClusterState, GreylistTriplet, ListName, ListRule, RuleAction, RuleIndex, RuleKind};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use gatehouse_actors::policy::greylist::{self, GreylistRequest, GreylistSettings};
use gatehouse_actors::policy::lists::{check_client, check_envelope};
use std::net::{IpAddr, Ipv4Addr};

/// `n` rules: 40 % blacklisted IPs, 30 % subnets of /24 to /30, 20 % senders,
/// 9 % recipients, and a few whitelist, greylist and DNSBL entries.
fn state_with_rules(n: u32) -> ClusterState {
    let mut s = ClusterState::default();
    let mut rules = Vec::new();
    for i in 0..n {
        let (b, c) = ((i >> 8) as u8, i as u8); // i < 65,536
        let rule = match i % 100 {
            0..=39 => ListRule::new(ListName::Black, RuleKind::Ip, &format!("10.0.{b}.{c}")),
            40..=69 => {
                let (hi, lo) = (64 + (i >> 8), i & 255);
                ListRule::new(ListName::Black, RuleKind::Subnet, &format!("100.{hi}.{lo}.0/{}", 24 + i % 7))
            }
            70..=89 => ListRule::new(ListName::Black, RuleKind::Sender, &format!("spammer{i}@bad{b}.example")),
            90..=98 => ListRule::new(ListName::Black, RuleKind::Recipient, &format!("trap{i}@example.com")),
            _ => match (i / 100) % 3 {
                0 => ListRule::new(ListName::White, RuleKind::Ip, &format!("192.168.{b}.{c}")),
                1 => ListRule {
                    action: RuleAction::Never,
                    ..ListRule::new(ListName::Greylist, RuleKind::SenderDomain, &format!("partner{i}.example"))
                },
                _ => ListRule::new(ListName::Dnsbl, RuleKind::Zone, &format!("bl{i}.example")),
            },
        };
        rules.push(rule);
    }
    s.apply(&Command::ImportRules { rules, replace: true }, 0).expect("rules");
    assert_eq!(s.rules.lists.len(), n as usize, "every rule distinct");
    for i in 0..10_000u32 {
        let key = format!("198.51.{}.0/24 sender{i}@remote.example user{}@example.com", i % 250, i % 97);
        let t = GreylistTriplet { first_seen_ms: 0, passed_ms: Some(1), expires_ms: u64::MAX, attempts: 2 };
        s.counters.greylist.insert(key, t);
    }
    s
}

/// The client check as it was before the index: every rule, parsed per check.
fn scan_client(s: &ClusterState, ip: IpAddr) -> Option<u64> {
    let mut black = None;
    for (id, rule) in &s.rules.lists {
        if rule.matches_ip(ip) {
            if rule.list == ListName::White {
                return Some(*id);
            }
            black = black.or(Some(*id));
        }
    }
    black
}

fn bench(c: &mut Criterion) {
    let greylist = GreylistSettings {
        by_default: true,
        delay_ms: 300_000,
        retry_window_ms: 86_400_000,
        pass_ttl_ms: 36 * 86_400_000,
        auto_whitelist_passes: 5,
    };
    // Addresses that miss every rule: the common case, and the one a scan pays most for.
    let clients: Vec<IpAddr> =
        (0..256u32).map(|i| IpAddr::V4(Ipv4Addr::new(203, 0, (i >> 8) as u8, i as u8))).collect();
    for n in [10u32, 10_000] {
        let state = state_with_rules(n);
        let index = RuleIndex::build(&state.rules);
        println!("{n} rules requested, {} stored, {} triplets", state.rules.lists.len(), state.counters.greylist.len());
        let mut i = 0usize;
        c.bench_function(&format!("connect: client lists, {n} rules"), |b| {
            b.iter(|| {
                i = (i + 1) % clients.len();
                black_box(check_client(&state.rules, &index, clients[i]))
            })
        });
        c.bench_function(&format!("rcpt: envelope lists + greylist, {n} rules, 10k triplets"), |b| {
            b.iter(|| {
                i = (i + 1) % clients.len();
                let lists =
                    check_envelope(&state.rules, &index, clients[i], "someone@remote.example", "user5@example.com");
                let req = GreylistRequest {
                    ip: clients[i],
                    sender: "someone@remote.example",
                    recipient: "user5@example.com",
                    whitelisted: false,
                    now_ms: 1_000_000,
                };
                let verdict = greylist::decide(&state.rules, &index, &state.counters, &greylist, &req);
                black_box((lists, verdict))
            })
        });
        c.bench_function(&format!("connect: linear scan (before the index), {n} rules"), |b| {
            b.iter(|| {
                i = (i + 1) % clients.len();
                black_box(scan_client(&state, clients[i]))
            })
        });
        c.bench_function(&format!("index rebuild, {n} rules"), |b| {
            b.iter(|| black_box(RuleIndex::build(&state.rules)))
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
