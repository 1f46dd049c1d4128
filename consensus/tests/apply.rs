//! The state machine's `apply`, table-driven and property-tested: every bad
//! command gets its typed error and leaves the state unchanged; the same
//! commands always give the same state.

use gatehouse_consensus::command::{ApplyError, Command, GreylistVerdict, Outcome};
use gatehouse_consensus::state::{
    AttachmentLink, ClusterState, DomainLimits, ListName, ListRule, RuleKind, UserOverrides,
};
use proptest::prelude::*;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";

fn seeded() -> ClusterState {
    let mut s = ClusterState::default();
    for c in [
        Command::AddDomain { name: "example.com".into() },
        Command::AddUser {
            address: "alice@example.com".into(),
            display_name: "Alice".into(),
            password_hash: HASH.into(),
        },
        Command::AddGroup { address: "staff@example.com".into() },
    ] {
        s.apply(&c, 1).unwrap();
    }
    // Rules with a gap in their ids (2 removed), so an import must keep ids, not renumber.
    s.apply(&list_rule(ListName::Black, RuleKind::Subnet, "192.0.2.0/24"), 1).unwrap();
    s.apply(&list_rule(ListName::White, RuleKind::Sender, "a@partner.example"), 1).unwrap();
    s.apply(&list_rule(ListName::White, RuleKind::Ip, "192.0.2.10"), 1).unwrap();
    s.apply(&Command::RemoveListRule { id: 2 }, 1).unwrap();
    s
}

fn user(address: &str) -> Command {
    Command::AddUser { address: address.into(), display_name: String::new(), password_hash: HASH.into() }
}

#[test]
fn bad_commands_get_typed_errors_and_change_nothing() {
    let table: Vec<(Command, &str)> = vec![
        (Command::AddDomain { name: "example.com".into() }, "domain"),
        (Command::AddDomain { name: "not a domain".into() }, "name"),
        (Command::AddDomain { name: "localhost".into() }, "name"),
        (Command::RemoveDomain { name: "example.com".into() }, "domain"),
        (Command::RemoveDomain { name: "other.org".into() }, "domain"),
        (user("alice@example.com"), "address"),
        (user("ALICE@Example.COM"), "address"),
        (user("staff@example.com"), "address"),
        (user("bob@other.org"), "domain"),
        (user("bob"), "address"),
        (user("b ob@example.com"), "address"),
        (
            Command::AddUser {
                address: "bob@example.com".into(),
                display_name: String::new(),
                password_hash: "plain".into(),
            },
            "password",
        ),
        (
            Command::AddUser {
                address: "bob@example.com".into(),
                display_name: "a\nb".into(),
                password_hash: HASH.into(),
            },
            "display_name",
        ),
        (Command::SetPassword { address: "nobody@example.com".into(), password_hash: HASH.into() }, "address"),
        (Command::RemoveUser { address: "nobody@example.com".into() }, "address"),
        (Command::AddGroupMember { group: "staff@example.com".into(), member: "nobody@example.com".into() }, "address"),
        (Command::AddGroupMember { group: "none@example.com".into(), member: "alice@example.com".into() }, "group"),
        (
            Command::RemoveGroupMember { group: "staff@example.com".into(), member: "alice@example.com".into() },
            "member",
        ),
        (Command::AddAlias { address: "sales@example.com".into(), targets: vec![] }, "targets"),
        (Command::AddAlias { address: "sales@example.com".into(), targets: vec!["bad target".into()] }, "targets"),
        (Command::AddAlias { address: "alice@example.com".into(), targets: vec!["x@y.org".into()] }, "address"),
        (Command::AddDomainAlias { alias: "example.net".into(), target: "other.org".into() }, "domain"),
        (Command::AddDomainAlias { alias: "example.com".into(), target: "example.com".into() }, "domain"),
        (Command::SetSetting { key: "no.such.key".into(), value: "1".into() }, "key"),
        (Command::SetSetting { key: "greylist.delay_s".into(), value: "-5".into() }, "greylist.delay_s"),
        (Command::SetSetting { key: "smtp.hostname".into(), value: "not_a_host".into() }, "smtp.hostname"),
        (Command::BlockIp { ip: "300.1.1.1".into(), until_ms: 5, reason: String::new() }, "ip"),
        (
            Command::RecordGreylistAttempt { triplet: String::new(), delay_ms: 1, retry_window_ms: 1, pass_ttl_ms: 1 },
            "triplet",
        ),
        (
            Command::RedeemJoinToken { token_sha256: "00".into(), raft_addr: "a".into(), admin_addr: "b".into() },
            "token",
        ),
        (Command::ForgetNode { node_id: 9 }, "node_id"),
    ];
    for (command, field) in table {
        let mut state = seeded();
        let before = state.clone();
        let err = state.apply(&command, 2).expect_err(&format!("{command:?} should fail"));
        assert_eq!(err.field(), field, "{command:?}: {err}");
        let mut after = state.clone();
        after.commands_applied = before.commands_applied;
        assert_eq!(after, before, "{command:?} changed the state");
    }
}

#[test]
fn directory_commands_take_effect() {
    let mut s = seeded();
    s.apply(&Command::AddGroupMember { group: "Staff@example.com".into(), member: "alice@EXAMPLE.com".into() }, 2)
        .unwrap();
    assert!(s.directory.groups["staff@example.com"].members.contains("alice@example.com"));
    s.apply(&Command::AddDomainAlias { alias: "example.net".into(), target: "example.com".into() }, 2).unwrap();
    assert!(s.directory.is_local_domain("example.net"));
    s.apply(
        &Command::SetUserOverrides {
            address: "alice@example.com".into(),
            overrides: UserOverrides { daily_messages_max: Some(5), ..Default::default() },
        },
        2,
    )
    .unwrap();
    s.apply(&Command::RemoveUser { address: "alice@example.com".into() }, 3).unwrap();
    assert!(s.directory.groups["staff@example.com"].members.is_empty(), "removing a user removes its memberships");
    assert_eq!(s.apply(&Command::RemoveDomain { name: "example.com".into() }, 3).unwrap_err().field(), "domain");
}

#[test]
fn greylist_triplet_passes_after_delay_inside_window() {
    let mut s = ClusterState::default();
    let attempt = |s: &mut ClusterState, at| {
        let c = Command::RecordGreylistAttempt {
            triplet: "192.0.2.0/24|a@x.org|b@y.org".into(),
            delay_ms: 300_000,
            retry_window_ms: 86_400_000,
            pass_ttl_ms: 1_000_000_000,
        };
        match s.apply(&c, at).unwrap() {
            Outcome::Greylist(v) => v,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(attempt(&mut s, 1_000), GreylistVerdict::Deferred { retry_after_ms: 301_000 });
    assert_eq!(attempt(&mut s, 100_000), GreylistVerdict::Deferred { retry_after_ms: 301_000 });
    assert_eq!(attempt(&mut s, 301_000), GreylistVerdict::Passed);
    assert_eq!(attempt(&mut s, 5_000_000), GreylistVerdict::Passed);
    // After the pass lifetime the triplet is new again.
    assert!(matches!(attempt(&mut s, 2_000_000_000), GreylistVerdict::Deferred { .. }));
    s.apply(&Command::ExpireCounters, 4_000_000_000).unwrap();
    assert!(s.counters.greylist.is_empty());
}

#[test]
fn daily_quota_is_never_exceeded_and_resets_daily() {
    let mut s = ClusterState::default();
    s.apply(&Command::SetSetting { key: "quota.daily_messages_max".into(), value: "6".into() }, 1).unwrap();
    let charge = |s: &mut ClusterState, at| {
        s.apply(&Command::ChargeDailyQuota { user: "A@x.org".into(), messages: 2, bytes: 2_000 }, at).unwrap()
    };
    for _ in 0..3 {
        assert!(matches!(charge(&mut s, 10), Outcome::QuotaCharged { .. }));
    }
    let refused = Outcome::QuotaExceeded { messages: 6, bytes: 6_000, messages_max: 6, bytes_max: 0, day: 0 };
    assert_eq!(charge(&mut s, 10), refused);
    assert_eq!(s.counters.daily_quota["a@x.org"].messages, 6, "one count per address, whatever its case");
    assert_eq!(charge(&mut s, 86_400_000 + 1), Outcome::QuotaCharged { messages: 2, bytes: 2_000 });
}

#[test]
fn the_users_limit_beats_the_domains_which_beats_the_clusters() {
    let mut s = seeded();
    let set = |s: &mut ClusterState, key: &str, value: &str| {
        s.apply(&Command::SetSetting { key: key.into(), value: value.into() }, 1).unwrap();
    };
    set(&mut s, "quota.daily_messages_max", "100");
    set(&mut s, "quota.daily_bytes_max", "1000");
    assert_eq!(s.daily_limits("alice@example.com"), (100, 1000));
    let limits = DomainLimits { daily_messages_max: Some(10), ..Default::default() };
    s.apply(&Command::SetDomainLimits { domain: "Example.com".into(), limits }, 2).unwrap();
    assert_eq!(s.daily_limits("alice@example.com"), (10, 1000), "the domain's messages, the cluster's bytes");
    let overrides = UserOverrides { daily_bytes_max: Some(0), ..Default::default() };
    s.apply(&Command::SetUserOverrides { address: "alice@example.com".into(), overrides }, 3).unwrap();
    assert_eq!(s.daily_limits("alice@example.com"), (10, 0), "the user's 0: no bytes limit");
    assert_eq!(s.daily_limits("nobody@elsewhere.org"), (100, 1000));
    let unknown = Command::SetDomainLimits { domain: "nowhere.test".into(), limits: DomainLimits::default() };
    assert_eq!(s.apply(&unknown, 4).unwrap_err().field(), "domain");
    // A charge over the bytes limit alone is refused too.
    set(&mut s, "quota.daily_bytes_max", "500");
    let big = Command::ChargeDailyQuota { user: "bob@example.com".into(), messages: 1, bytes: 501 };
    assert!(matches!(s.apply(&big, 5).unwrap(), Outcome::QuotaExceeded { bytes: 0, bytes_max: 500, .. }));
}

fn link(user: &str, name: &str, expires_ms: u64) -> Command {
    let link = AttachmentLink {
        node_id: 2,
        user: user.into(),
        file_name: name.into(),
        content_type: "application/pdf".into(),
        size: 300,
        created_ms: 0,
        expires_ms,
        downloads: 7,
        last_download_ms: Some(1),
    };
    Command::AddAttachmentLink { token_sha256: format!("{:064x}", expires_ms), link }
}

#[test]
fn attachment_links_are_indexed_counted_revoked_and_expire() {
    let mut s = seeded();
    s.apply(&link("Alice@Example.com", &format!("a\r\n{}", "é".repeat(300)), 100), 10).unwrap();
    let key = format!("{:064x}", 100);
    let entry = s.attachment_links.live(&key, 10).cloned().unwrap();
    assert_eq!(entry.user, "alice@example.com");
    assert!(entry.file_name.len() <= 255 && !entry.file_name.contains('\r'), "{:?}", entry.file_name);
    assert_eq!(
        (entry.created_ms, entry.downloads, entry.last_download_ms),
        (10, 0, None),
        "the proposer's counts are not trusted"
    );
    s.apply(&Command::RecordAttachmentDownload { token_sha256: key.clone() }, 20).unwrap();
    let entry = s.attachment_links.live(&key, 20).cloned().unwrap();
    assert_eq!((entry.downloads, entry.last_download_ms), (1, Some(20)));
    assert!(s.attachment_links.live(&key, 100).is_none(), "dead at its expiry");
    assert_eq!(s.apply(&link("not an address", "x", 200), 30).unwrap_err().field(), "user");
    // A later add drops the expired ones; so does ExpireCounters.
    s.apply(&link("alice@example.com", "b", 300), 150).unwrap();
    assert_eq!(s.attachment_links.links.len(), 1);
    s.apply(&Command::ExpireCounters, 400).unwrap();
    assert!(s.attachment_links.links.is_empty());
    s.apply(&link("alice@example.com", "c", 900), 500).unwrap();
    let revoke = Command::RemoveAttachmentLink { token_sha256: format!("{:064x}", 900) };
    s.apply(&revoke, 501).unwrap();
    assert_eq!(s.apply(&revoke, 502).unwrap_err().field(), "id");
    let count = Command::RecordAttachmentDownload { token_sha256: format!("{:064x}", 900) };
    assert_eq!(s.apply(&count, 503).unwrap_err().field(), "id");
}

#[test]
fn the_attachment_link_threshold_resolves_user_then_domain_then_cluster() {
    let mut s = seeded();
    assert_eq!(s.attachment_link_threshold("alice@example.com"), 0, "off by default");
    s.apply(&Command::SetSetting { key: "attachment_links.bytes_min".into(), value: "5000000".into() }, 1).unwrap();
    assert_eq!(s.attachment_link_threshold("alice@example.com"), 5_000_000);
    let limits = DomainLimits { attachment_link_bytes_min: Some(1000), ..Default::default() };
    s.apply(&Command::SetDomainLimits { domain: "example.com".into(), limits }, 2).unwrap();
    assert_eq!(s.attachment_link_threshold("alice@example.com"), 1000);
    let overrides = UserOverrides { attachment_link_bytes_min: Some(0), ..Default::default() };
    s.apply(&Command::SetUserOverrides { address: "alice@example.com".into(), overrides }, 3).unwrap();
    assert_eq!(s.attachment_link_threshold("alice@example.com"), 0, "the user's own 0 turns it off");
    assert_eq!(s.attachment_link_threshold("bob@other.org"), 5_000_000);
}

#[test]
fn a_spool_takeover_waits_for_the_lease_and_ends_when_both_sides_settled() {
    let mut s = seeded();
    s.apply(&Command::SetSetting { key: "queue.takeover_after_s".into(), value: "60".into() }, 0).unwrap();
    let renew = |s: &mut ClusterState, at| s.apply(&Command::RenewSpoolLease { node_id: 3 }, at);
    let take = |s: &mut ClusterState, by, at| {
        let queue_ids = vec!["A".to_string(), format!("B{by}")];
        s.apply(&Command::TakeOverSpool { owner: 3, by, queue_ids }, at)
    };
    assert_eq!(
        renew(&mut s, 1_000).unwrap(),
        Outcome::SpoolLease { taken_over_by: vec![], waiting_for: vec![], claimed: vec![] }
    );
    assert_eq!(take(&mut s, 1, 60_999).unwrap_err().field(), "owner", "the lease still runs");
    assert_eq!(take(&mut s, 3, 100_000).unwrap_err().field(), "owner", "never by itself");
    let granted = |ids: &[&str]| Outcome::SpoolClaims { granted: ids.iter().map(|i| i.to_string()).collect() };
    assert_eq!(take(&mut s, 1, 61_000).unwrap(), granted(&["A", "B1"]));
    assert_eq!(take(&mut s, 2, 61_500).unwrap(), granted(&["B2"]), "A is holder 1's: never two holders");
    assert_eq!(take(&mut s, 1, 62_000).unwrap(), granted(&["A", "B1"]), "claiming again is granted again");
    assert_eq!(s.spool_owners.to_promote(1), [3]);
    // Back, the owner hears who took over; its renewal counts again.
    let claimed = vec![(1, "A".to_string()), (1, "B1".to_string()), (2, "B2".to_string())];
    let waiting = Outcome::SpoolLease { taken_over_by: vec![], waiting_for: vec![1, 2], claimed: claimed.clone() };
    assert_eq!(renew(&mut s, 70_000).unwrap(), waiting, "nothing moved yet: the owner keeps its copies");
    assert!(take(&mut s, 2, 100_000).is_ok(), "a takeover under way may claim again, lease or not");
    let fresh = Command::TakeOverSpool { owner: 3, by: 7, queue_ids: vec![] };
    assert_eq!(s.apply(&fresh, 100_000).unwrap_err().field(), "owner", "no new takeover under a fresh lease");
    assert_eq!(s.spool_owners.taken_over_from(3), [1, 2], "the ones in progress stand");
    let settle = |s: &mut ClusterState, holder, promoted, acked| {
        s.apply(&Command::SettleSpoolTakeover { owner: 3, holder, promoted, acked }, 80_000)
    };
    settle(&mut s, 1, true, false).unwrap();
    assert!(s.spool_owners.to_promote(1).is_empty());
    let moved = Outcome::SpoolLease { taken_over_by: vec![1], waiting_for: vec![2], claimed };
    assert_eq!(renew(&mut s, 75_000).unwrap(), moved);
    assert_eq!(s.spool_owners.taken_over_from(3), [1, 2], "until the owner dropped its copies");
    settle(&mut s, 1, false, true).unwrap();
    assert_eq!(s.spool_owners.taken_over_from(3), [2]);
    settle(&mut s, 2, true, true).unwrap();
    assert!(s.spool_owners.takeovers.is_empty());
    assert_eq!(settle(&mut s, 2, true, true).unwrap_err().field(), "owner");
    // A holder removed before it moved them: the owner keeps and delivers its copies.
    renew(&mut s, 300).unwrap_or(Outcome::Done);
    s.apply(&Command::TakeOverSpool { owner: 5, by: 6, queue_ids: vec![] }, 100_000).unwrap();
    s.apply(&Command::SpoolOwnerRemoved { node_id: 6 }, 100_001).unwrap();
    assert!(s.spool_owners.taken_over_from(5).is_empty());
    // A removed node's copies may be taken over at once, and it may not renew.
    renew(&mut s, 200_000).unwrap();
    s.apply(&Command::SpoolOwnerRemoved { node_id: 3 }, 200_001).unwrap();
    let fresh = Command::TakeOverSpool { owner: 3, by: 8, queue_ids: vec![] };
    assert!(s.apply(&fresh, 244_999).is_err(), "it may still deliver for half the lease");
    s.apply(&fresh, 245_000).unwrap();
    assert_eq!(renew(&mut s, 200_003).unwrap_err().field(), "node_id");
    // An owner that never renewed never made a copy: nothing to protect.
    s.apply(&Command::TakeOverSpool { owner: 9, by: 1, queue_ids: vec![] }, 5).unwrap();
}

#[test]
fn hijack_counter_freezes_the_account_past_the_threshold() {
    let mut s = seeded();
    for (k, v) in [("hijack.messages_max", "2"), ("hijack.window_s", "60")] {
        s.apply(&Command::SetSetting { key: k.into(), value: v.into() }, 0).unwrap();
    }
    let bump = |s: &mut ClusterState, client: &str, at| {
        s.apply(&Command::IncrementHijack { user: "Alice@example.com".into(), client: client.into() }, at).unwrap()
    };
    assert_eq!(bump(&mut s, "192.0.2.1 submission", 0), Outcome::HijackCount { count: 1 });
    assert_eq!(bump(&mut s, "192.0.2.1 submission", 10), Outcome::HijackCount { count: 2 });
    assert_eq!(bump(&mut s, "192.0.2.1 submission", 60_000), Outcome::HijackCount { count: 1 }, "a new window");
    bump(&mut s, "198.51.100.7 smtps", 60_001);
    let detected = bump(&mut s, "203.0.113.9 smtps", 60_002);
    let clients: Vec<String> =
        ["192.0.2.1 submission", "198.51.100.7 smtps", "203.0.113.9 smtps"].map(String::from).to_vec();
    assert_eq!(detected, Outcome::HijackDetected { count: 2, window_ms: 60_000, frozen: true, first: true, clients });
    assert!(s.directory.users["alice@example.com"].frozen);
    assert!(
        matches!(bump(&mut s, "203.0.113.9 smtps", 60_003), Outcome::HijackDetected { first: false, .. }),
        "one notice per window"
    );

    // The notice's token unfreezes once, and not after it expires.
    let issue = |s: &mut ClusterState, t: &str| {
        let c = Command::IssueUnfreezeToken {
            user: "alice@example.com".into(),
            token_sha256: t.into(),
            expires_ms: 90_000,
        };
        s.apply(&c, 60_004).unwrap();
    };
    let redeem =
        |s: &mut ClusterState, t: &str, at| s.apply(&Command::RedeemUnfreezeToken { token_sha256: t.into() }, at);
    issue(&mut s, "t1");
    assert_eq!(redeem(&mut s, "t1", 70_000), Ok(Outcome::Unfrozen { user: "alice@example.com".into() }));
    assert!(!s.directory.users["alice@example.com"].frozen);
    assert_eq!(bump(&mut s, "192.0.2.1 submission", 70_001), Outcome::HijackCount { count: 1 }, "a fresh window");
    assert_eq!(redeem(&mut s, "t1", 70_002).unwrap_err().field(), "token", "single use");
    issue(&mut s, "t2");
    assert!(redeem(&mut s, "t2", 90_000).is_err(), "expired");

    // Off: nothing is counted.
    s.apply(&Command::SetSetting { key: "hijack.messages_max".into(), value: "0".into() }, 0).unwrap();
    assert_eq!(bump(&mut s, "192.0.2.1 submission", 70_003), Outcome::HijackCount { count: 0 });
}

#[test]
fn without_freeze_the_account_is_only_refused_for_the_window() {
    let mut s = seeded();
    for (k, v) in [("hijack.messages_max", "1"), ("hijack.freeze", "false")] {
        s.apply(&Command::SetSetting { key: k.into(), value: v.into() }, 0).unwrap();
    }
    let bump = |s: &mut ClusterState, at| {
        s.apply(&Command::IncrementHijack { user: "alice@example.com".into(), client: "c".into() }, at).unwrap()
    };
    bump(&mut s, 0);
    assert!(matches!(bump(&mut s, 1), Outcome::HijackDetected { frozen: false, first: true, .. }));
    assert!(!s.directory.users["alice@example.com"].frozen);
    assert_eq!(bump(&mut s, 3_600_000), Outcome::HijackCount { count: 1 });
}

#[test]
fn join_tokens_are_single_use_and_expire() {
    let mut s = ClusterState::default();
    s.apply(&Command::IssueJoinToken { token_sha256: "t1".into(), expires_ms: 100 }, 0).unwrap();
    s.apply(&Command::IssueJoinToken { token_sha256: "t2".into(), expires_ms: 100 }, 0).unwrap();
    let redeem = |s: &mut ClusterState, t: &str, at| {
        s.apply(&Command::RedeemJoinToken { token_sha256: t.into(), raft_addr: "r".into(), admin_addr: "a".into() }, at)
    };
    assert_eq!(redeem(&mut s, "t1", 50), Ok(Outcome::NodeAdmitted { node_id: 2 }));
    assert_eq!(redeem(&mut s, "t1", 50), Err(ApplyError::BadJoinToken));
    assert_eq!(redeem(&mut s, "t2", 100), Err(ApplyError::BadJoinToken));
}

#[test]
fn import_replaces_everything_or_nothing() {
    let source = seeded();
    let document = source.export();
    let mut target = ClusterState::default();
    target.apply(&Command::AddDomain { name: "old.org".into() }, 1).unwrap();
    target.apply(&Command::ImportConfig { document: Box::new(document.clone()) }, 5).unwrap();
    assert_eq!(target.directory, source.directory);
    assert_eq!(target.rules.lists, source.rules.lists, "rules and their ids survive export/import");
    assert_eq!(target.rules.next_rule_id, source.rules.next_rule_id);
    let mut empty = ClusterState::default();
    empty.apply(&Command::ImportConfig { document: Box::new(ClusterState::default().export()) }, 5).unwrap();
    assert_eq!(empty.export(), ClusterState::default().export(), "an empty document round-trips exactly");

    let mut bad_rule = document.clone();
    bad_rule.rules.lists.get_mut(&3).unwrap().value = "not an ip".into();
    let err = target.apply(&Command::ImportConfig { document: Box::new(bad_rule) }, 6).unwrap_err();
    assert_eq!(err.field(), "value");

    let mut broken = document;
    broken.directory.users.get_mut("alice@example.com").unwrap().password_hash = "plain".into();
    let before = target.clone();
    let err = target.apply(&Command::ImportConfig { document: Box::new(broken) }, 6).unwrap_err();
    assert_eq!(err.field(), "password");
    assert_eq!(target.directory, before.directory);
}

fn list_rule(list: ListName, kind: RuleKind, value: &str) -> Command {
    Command::AddListRule { rule: ListRule::new(list, kind, value) }
}

#[test]
fn list_rules_get_ids_and_refusals_name_the_field() {
    let mut s = ClusterState::default();
    assert_eq!(s.apply(&list_rule(ListName::Black, RuleKind::Ip, "192.0.2.1"), 1), Ok(Outcome::RuleAdded { id: 1 }));
    assert_eq!(s.apply(&list_rule(ListName::White, RuleKind::Ip, "192.0.2.1"), 1), Ok(Outcome::RuleAdded { id: 2 }));
    assert_eq!(s.apply(&list_rule(ListName::Black, RuleKind::Ip, " 192.0.2.1 "), 1), Err(ApplyError::RuleExists(1)));
    assert_eq!(s.apply(&Command::RemoveListRule { id: 1 }, 1), Ok(Outcome::Done));
    assert_eq!(s.apply(&Command::RemoveListRule { id: 1 }, 1), Err(ApplyError::UnknownRule(1)));
    // Ids are never reused.
    assert_eq!(s.apply(&list_rule(ListName::Black, RuleKind::Ip, "192.0.2.1"), 1), Ok(Outcome::RuleAdded { id: 3 }));
    let err = s.apply(&list_rule(ListName::Black, RuleKind::SenderDomain, "x.example"), 1).unwrap_err();
    assert_eq!(err.field(), "kind");
}

fn arb_command() -> impl Strategy<Value = Command> {
    let name = prop::sample::select(vec!["a", "b", "c", "alice", "staff"]);
    let dom = prop::sample::select(vec!["example.com", "example.net", "other.org", "bad domain"]);
    prop_oneof![
        dom.clone().prop_map(|d| Command::AddDomain { name: d.into() }),
        dom.clone().prop_map(|d| Command::RemoveDomain { name: d.into() }),
        (name.clone(), dom.clone()).prop_map(|(n, d)| user(&format!("{n}@{d}"))),
        (name.clone(), dom.clone()).prop_map(|(n, d)| Command::RemoveUser { address: format!("{n}@{d}") }),
        (name.clone(), dom.clone()).prop_map(|(n, d)| Command::AddGroup { address: format!("{n}@{d}") }),
        (name.clone(), name.clone()).prop_map(|(g, m)| Command::AddGroupMember {
            group: format!("{g}@example.com"),
            member: format!("{m}@example.com")
        }),
        (name.clone(), dom.clone())
            .prop_map(|(n, d)| Command::AddAlias { address: format!("{n}@{d}"), targets: vec!["x@y.org".into()] }),
        (dom.clone(), dom).prop_map(|(a, t)| Command::AddDomainAlias { alias: a.into(), target: t.into() }),
        (0u64..10).prop_map(|d| Command::SetSetting { key: "greylist.delay_s".into(), value: d.to_string() }),
        name.prop_map(|n| Command::RecordGreylistAttempt {
            triplet: n.into(),
            delay_ms: 5,
            retry_window_ms: 50,
            pass_ttl_ms: 500
        }),
        Just(Command::ExpireCounters),
    ]
}

proptest! {
    #[test]
    fn apply_is_deterministic_and_refusals_change_nothing(commands in prop::collection::vec((arb_command(), 0u64..1000), 0..60)) {
        let mut a = ClusterState::default();
        let mut b = ClusterState::default();
        for (command, at) in &commands {
            let before = a.clone();
            let ra = a.apply(command, *at);
            let rb = b.apply(command, *at);
            prop_assert_eq!(&ra, &rb);
            if ra.is_err() {
                let mut after = a.clone();
                after.commands_applied = before.commands_applied;
                prop_assert_eq!(after, before);
            }
        }
        prop_assert_eq!(a, b);
    }
}

#[test]
fn unknown_recipients_block_the_ip_at_the_threshold() {
    let mut s = ClusterState::default();
    let count = |s: &mut ClusterState, at| {
        s.apply(
            &Command::RecordUnknownRecipient { ip: "192.0.2.7".into(), threshold: 3, window_ms: 1000, block_ms: 5000 },
            at,
        )
    };
    assert_eq!(count(&mut s, 10), Ok(Outcome::UnknownRecipientCounted { count: 1, blocked: false }));
    assert_eq!(count(&mut s, 20), Ok(Outcome::UnknownRecipientCounted { count: 2, blocked: false }));
    // The window ran out: counting starts over.
    assert_eq!(count(&mut s, 1010), Ok(Outcome::UnknownRecipientCounted { count: 1, blocked: false }));
    count(&mut s, 1020).unwrap();
    assert_eq!(count(&mut s, 1030), Ok(Outcome::UnknownRecipientCounted { count: 3, blocked: true }));
    assert_eq!(s.counters.blocked_ips["192.0.2.7"].until_ms, 6030);
    assert!(s.counters.unknown_recipients.is_empty());
    s.apply(&Command::ExpireCounters, 6030).unwrap();
    assert!(s.counters.blocked_ips.is_empty());
    let bad = Command::RecordUnknownRecipient { ip: "x".into(), threshold: 3, window_ms: 1, block_ms: 1 };
    assert_eq!(s.apply(&bad, 0).unwrap_err().field(), "ip");
}

#[test]
fn greylist_authorisation_passes_a_pending_triplet() {
    let mut s = ClusterState::default();
    let key = "192.0.2.0/24 a@b.example c@d.example";
    let attempt = Command::RecordGreylistAttempt {
        triplet: key.into(),
        delay_ms: 300_000,
        retry_window_ms: 1_000_000,
        pass_ttl_ms: 9_000_000,
    };
    s.apply(&attempt, 0).unwrap();
    s.apply(&Command::AuthorizeGreylist { triplet: key.into(), pass_ttl_ms: 9_000_000 }, 10).unwrap();
    assert_eq!(s.counters.greylist[key].passed_ms, Some(10));
    assert_eq!(s.counters.greylist_clients["192.0.2.0/24"].passes, 1);
    assert_eq!(s.apply(&attempt, 20), Ok(Outcome::Greylist(GreylistVerdict::Passed)));
    let unknown = Command::AuthorizeGreylist { triplet: "nope".into(), pass_ttl_ms: 1 };
    assert_eq!(s.apply(&unknown, 20).unwrap_err().field(), "triplet");
}

#[test]
fn rules_import_merges_or_replaces_all_or_nothing() {
    let mut s = ClusterState::default();
    s.apply(&list_rule(ListName::Black, RuleKind::Ip, "192.0.2.1"), 1).unwrap();
    let zone = ListRule {
        score: 2,
        reply: "127.0.0.2-127.0.0.11".into(),
        ..ListRule::new(ListName::Dnsbl, RuleKind::Zone, "bl.example")
    };
    let rules = vec![ListRule::new(ListName::Black, RuleKind::Ip, "192.0.2.1"), zone.clone()];
    assert_eq!(
        s.apply(&Command::ImportRules { rules: rules.clone(), replace: false }, 1),
        Ok(Outcome::RulesImported { added: 1, skipped: 1 })
    );
    assert_eq!(s.rules.lists.len(), 2);
    let mut bad = rules.clone();
    bad.push(ListRule::new(ListName::Greylist, RuleKind::Sender, "a@b.example"));
    let before = s.clone();
    let err = s.apply(&Command::ImportRules { rules: bad, replace: true }, 1).unwrap_err();
    assert_eq!(err.field(), "rules[2].kind");
    assert_eq!(s.rules, before.rules);
    let only = vec![zone];
    assert_eq!(
        s.apply(&Command::ImportRules { rules: only, replace: true }, 1),
        Ok(Outcome::RulesImported { added: 1, skipped: 0 })
    );
    assert_eq!(s.rules.lists.len(), 1);
    assert!(s.rules.lists.keys().all(|id| *id > 2), "ids are never reused");
}

#[test]
fn a_lagging_clock_never_moves_the_quota_day_back() {
    let mut s = ClusterState::default();
    let charge = |s: &mut ClusterState, at| {
        s.apply(&Command::ChargeDailyQuota { user: "u@example.com".into(), messages: 1, bytes: 100 }, at)
    };
    s.apply(&Command::SetSetting { key: "quota.daily_messages_max".into(), value: "2".into() }, 0).unwrap();
    let midnight = 20_000 * gatehouse_consensus::state::counters::DAY_MS;
    assert!(matches!(charge(&mut s, midnight + 1_000), Ok(Outcome::QuotaCharged { messages: 1, .. })));
    // A proposer 3 s behind still sees yesterday: it must not reset today's count.
    assert!(matches!(charge(&mut s, midnight - 2_000), Ok(Outcome::QuotaCharged { messages: 2, .. })));
    assert!(matches!(charge(&mut s, midnight - 1_000), Ok(Outcome::QuotaExceeded { .. })));
}
