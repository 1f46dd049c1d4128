//! SPF evaluation against a subset of RFC 7208's rules, one scenario per
//! rule, in the spirit of the suite pyspf runs (rfc7208-tests.yml): each
//! scenario publishes records on a real DNS server (dnsmasq) and checks the
//! result Gatehouse's SPF check (mail-auth) gives for a client address,
//! MAIL FROM and HELO. The scenarios are written here from the RFC's
//! sections, not copied from that file; the count of those that pass is
//! printed, and every one must.

mod common;

use actors::auth::policy::Spf;
use actors::auth::verify::{authenticator, check_spf, spf_of};
use common::*;
use std::net::SocketAddr;
use std::time::Duration;

/// (RFC section, records for dnsmasq, client IP, MAIL FROM, HELO, expected).
type Scenario = (&'static str, &'static [&'static str], &'static str, &'static str, &'static str, Spf);

const SCENARIOS: &[Scenario] = &[
    // §4.5 / §4.6: record selection.
    ("4.5 no record", &[], "192.0.2.10", "a@norecord.test", "h.test", Spf::None),
    ("4.3 no such domain", &[], "192.0.2.10", "a@nxdomain.test", "h.test", Spf::None),
    (
        "4.5 two records",
        &["--txt-record=two.test,v=spf1 -all", "--txt-record=two.test,v=spf1 +all"],
        "192.0.2.10",
        "a@two.test",
        "h.test",
        Spf::PermError,
    ),
    (
        "4.5 v=spf10 is not a record",
        &["--txt-record=spf10.test,v=spf10 -all"],
        "192.0.2.10",
        "a@spf10.test",
        "h.test",
        Spf::None,
    ),
    (
        "4.5 version case-insensitive",
        &["--txt-record=upper.test,V=SPF1 -ALL"],
        "192.0.2.10",
        "a@upper.test",
        "h.test",
        Spf::Fail,
    ),
    (
        "3.3 strings of one TXT are joined",
        &["--txt-record=split.test,v=spf1 ip4:192.0.2.0/24,  -all"],
        "192.0.2.10",
        "a@split.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "4.5 other TXT records ignored",
        &["--txt-record=mixed.test,google-site-verification=x", "--txt-record=mixed.test,v=spf1 -all"],
        "192.0.2.10",
        "a@mixed.test",
        "h.test",
        Spf::Fail,
    ),
    // §4.6.2 / §5.1: qualifiers on all.
    ("5.1 -all", &["--txt-record=minus.test,v=spf1 -all"], "192.0.2.10", "a@minus.test", "h.test", Spf::Fail),
    ("5.1 ~all", &["--txt-record=tilde.test,v=spf1 ~all"], "192.0.2.10", "a@tilde.test", "h.test", Spf::SoftFail),
    ("5.1 ?all", &["--txt-record=query.test,v=spf1 ?all"], "192.0.2.10", "a@query.test", "h.test", Spf::Neutral),
    ("5.1 +all", &["--txt-record=plus.test,v=spf1 +all"], "192.0.2.10", "a@plus.test", "h.test", Spf::Pass),
    (
        "4.6.2 default qualifier is +",
        &["--txt-record=bare.test,v=spf1 ip4:192.0.2.10"],
        "192.0.2.10",
        "a@bare.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "4.7 no match and no all: neutral",
        &["--txt-record=nomatch.test,v=spf1 ip4:198.51.100.1"],
        "192.0.2.10",
        "a@nomatch.test",
        "h.test",
        Spf::Neutral,
    ),
    // §5.6: ip4 / ip6.
    (
        "5.6 ip4 exact",
        &["--txt-record=ip4.test,v=spf1 ip4:192.0.2.10 -all"],
        "192.0.2.10",
        "a@ip4.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "5.6 ip4 miss",
        &["--txt-record=ip4miss.test,v=spf1 ip4:192.0.2.11 -all"],
        "192.0.2.10",
        "a@ip4miss.test",
        "h.test",
        Spf::Fail,
    ),
    (
        "5.6 ip4 cidr",
        &["--txt-record=cidr.test,v=spf1 ip4:192.0.2.0/28 -all"],
        "192.0.2.10",
        "a@cidr.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "5.6 ip6 for an IPv6 client",
        &["--txt-record=ip6.test,v=spf1 ip6:2001:db8::/32 -all"],
        "2001:db8::25",
        "a@ip6.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "5.6 ip6 does not match IPv4",
        &["--txt-record=ip6v4.test,v=spf1 ip6:::/0 -all"],
        "192.0.2.10",
        "a@ip6v4.test",
        "h.test",
        Spf::Fail,
    ),
    (
        "5.6 bad ip4 is a syntax error",
        &["--txt-record=badip.test,v=spf1 ip4:300.1.1.1 -all"],
        "192.0.2.10",
        "a@badip.test",
        "h.test",
        Spf::PermError,
    ),
    // §5.3 a, §5.4 mx.
    (
        "5.3 a of the domain",
        &["--txt-record=amech.test,v=spf1 a -all", "--host-record=amech.test,192.0.2.10"],
        "192.0.2.10",
        "a@amech.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "5.3 a:other with cidr",
        &["--txt-record=acidr.test,v=spf1 a:host.acidr.test/24 -all", "--host-record=host.acidr.test,192.0.2.200"],
        "192.0.2.10",
        "a@acidr.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "5.3 a without address",
        &["--txt-record=anone.test,v=spf1 a -all"],
        "192.0.2.10",
        "a@anone.test",
        "h.test",
        Spf::Fail,
    ),
    (
        "5.4 mx",
        &[
            "--txt-record=mxmech.test,v=spf1 mx -all",
            "--mx-host=mxmech.test,mail.mxmech.test,10",
            "--host-record=mail.mxmech.test,192.0.2.10",
        ],
        "192.0.2.10",
        "a@mxmech.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "5.4 mx miss",
        &[
            "--txt-record=mxmiss.test,v=spf1 mx -all",
            "--mx-host=mxmiss.test,mail.mxmiss.test,10",
            "--host-record=mail.mxmiss.test,198.51.100.1",
        ],
        "192.0.2.10",
        "a@mxmiss.test",
        "h.test",
        Spf::Fail,
    ),
    // §5.2 include.
    (
        "5.2 include pass",
        &[
            "--txt-record=inc.test,v=spf1 include:inner.inc.test -all",
            "--txt-record=inner.inc.test,v=spf1 ip4:192.0.2.10 -all",
        ],
        "192.0.2.10",
        "a@inc.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "5.2 include fail is no match",
        &[
            "--txt-record=incfail.test,v=spf1 include:inner.incfail.test ~all",
            "--txt-record=inner.incfail.test,v=spf1 -all",
        ],
        "192.0.2.10",
        "a@incfail.test",
        "h.test",
        Spf::SoftFail,
    ),
    (
        "5.2 include of no record",
        &["--txt-record=incnone.test,v=spf1 include:nothing.incnone.test -all"],
        "192.0.2.10",
        "a@incnone.test",
        "h.test",
        Spf::PermError,
    ),
    // §6.1 redirect, §6.2 exp.
    (
        "6.1 redirect",
        &[
            "--txt-record=redir.test,v=spf1 redirect=target.redir.test",
            "--txt-record=target.redir.test,v=spf1 ip4:192.0.2.10 -all",
        ],
        "192.0.2.10",
        "a@redir.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "6.1 redirect to no record",
        &["--txt-record=redirnone.test,v=spf1 redirect=nothing.redirnone.test"],
        "192.0.2.10",
        "a@redirnone.test",
        "h.test",
        Spf::PermError,
    ),
    (
        "6.1 all wins over redirect",
        &["--txt-record=redirall.test,v=spf1 -all redirect=target.redir.test"],
        "192.0.2.10",
        "a@redirall.test",
        "h.test",
        Spf::Fail,
    ),
    (
        "6.2 exp does not change the result",
        &["--txt-record=exp.test,v=spf1 -all exp=why.exp.test", "--txt-record=why.exp.test,not you"],
        "192.0.2.10",
        "a@exp.test",
        "h.test",
        Spf::Fail,
    ),
    (
        "6 unknown modifiers ignored",
        &["--txt-record=modifier.test,v=spf1 moo=cow -all"],
        "192.0.2.10",
        "a@modifier.test",
        "h.test",
        Spf::Fail,
    ),
    (
        "4.6.1 unknown mechanism",
        &["--txt-record=unknownmech.test,v=spf1 foo -all"],
        "192.0.2.10",
        "a@unknownmech.test",
        "h.test",
        Spf::PermError,
    ),
    // §5.7 exists, §7 macros.
    (
        "5.7 exists with %{i}",
        &[
            "--txt-record=exists.test,v=spf1 exists:%{i}.ok.exists.test -all",
            "--host-record=192.0.2.10.ok.exists.test,127.0.0.2",
        ],
        "192.0.2.10",
        "a@exists.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "7.3 %{ir} reverses",
        &[
            "--txt-record=rev.test,v=spf1 exists:%{ir}.ok.rev.test -all",
            "--host-record=10.2.0.192.ok.rev.test,127.0.0.2",
        ],
        "192.0.2.10",
        "a@rev.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "7.3 %{l} local part",
        &[
            "--txt-record=local.test,v=spf1 exists:%{l}.ok.local.test -all",
            "--host-record=alice.ok.local.test,127.0.0.2",
        ],
        "192.0.2.10",
        "alice@local.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "7.3 %{d} domain",
        &["--txt-record=dmacro.test,v=spf1 exists:x.%{d} -all", "--host-record=x.dmacro.test,127.0.0.2"],
        "192.0.2.10",
        "a@dmacro.test",
        "h.test",
        Spf::Pass,
    ),
    (
        "7.3 %{l} of another local part misses",
        &[
            "--txt-record=local2.test,v=spf1 exists:%{l}.ok.local2.test -all",
            "--host-record=alice.ok.local2.test,127.0.0.2",
        ],
        "192.0.2.10",
        "bob@local2.test",
        "h.test",
        Spf::Fail,
    ),
    // §4.6.4 limits.
    (
        "4.6.4 more than 10 lookups",
        &[
            "--txt-record=loop0.test,v=spf1 include:loop1.test -all",
            "--txt-record=loop1.test,v=spf1 include:loop2.test -all",
            "--txt-record=loop2.test,v=spf1 include:loop3.test -all",
            "--txt-record=loop3.test,v=spf1 include:loop4.test -all",
            "--txt-record=loop4.test,v=spf1 include:loop5.test -all",
            "--txt-record=loop5.test,v=spf1 include:loop6.test -all",
            "--txt-record=loop6.test,v=spf1 include:loop7.test -all",
            "--txt-record=loop7.test,v=spf1 include:loop8.test -all",
            "--txt-record=loop8.test,v=spf1 include:loop9.test -all",
            "--txt-record=loop9.test,v=spf1 include:loop10.test -all",
            "--txt-record=loop10.test,v=spf1 include:loop11.test -all",
            "--txt-record=loop11.test,v=spf1 +all",
        ],
        "192.0.2.10",
        "a@loop0.test",
        "h.test",
        Spf::PermError,
    ),
    (
        "4.6.4 more than 2 void lookups",
        &["--txt-record=void.test,v=spf1 a:nx1.void.test a:nx2.void.test a:nx3.void.test -all"],
        "192.0.2.10",
        "a@void.test",
        "h.test",
        Spf::PermError,
    ),
    // §2.3 / §2.4: the HELO identity for the null sender.
    (
        "2.4 null sender uses HELO",
        &["--txt-record=helo.test,v=spf1 ip4:192.0.2.10 -all"],
        "192.0.2.10",
        "",
        "helo.test",
        Spf::Pass,
    ),
    (
        "2.4 null sender, HELO fails",
        &["--txt-record=helofail.test,v=spf1 -all"],
        "192.0.2.10",
        "",
        "helofail.test",
        Spf::Fail,
    ),
];

/// Where mail-auth 0.13 answers otherwise and we have not worked around it:
/// (scenario, what it gives, why). The test fails if one of these starts
/// to agree with the RFC, so this list and docs/operations/authentication.md
/// stay true.
const KNOWN_DEVIATIONS: &[(&str, Spf, &str)] = &[
    (
        "5.6 ip6 does not match IPv4",
        Spf::Pass,
        "mail-auth compares an IPv4 client as IPv4-mapped IPv6, so ip6:::/0 matches it",
    ),
    ("4.6.4 more than 2 void lookups", Spf::Fail, "mail-auth does not count void lookups (a SHOULD in RFC 7208)"),
];

#[test]
fn rfc7208_scenarios() {
    let records: Vec<String> = SCENARIOS
        .iter()
        .flat_map(|s| s.1.iter().map(|r| r.to_string()))
        .chain(["--local=/test/".to_string()])
        .collect();
    let port = free_port();
    let _dns = dns_server(port, &records);
    let nameservers: Vec<SocketAddr> = vec![format!("127.0.0.1:{port}").parse().unwrap()];
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let results: Vec<(&str, Spf, Spf)> = runtime.block_on(async {
        let auth = authenticator(&nameservers).expect("resolver");
        let mut out = Vec::new();
        for (name, _, ip, sender, helo, want) in SCENARIOS {
            let got =
                check_spf(&auth, ip.parse().unwrap(), helo, sender, "mx.example.com", Duration::from_secs(5)).await;
            out.push((*name, spf_of(got.result()), *want));
        }
        out
    });
    let mut unexpected = Vec::new();
    let mut passing = 0;
    for (name, got, want) in &results {
        let known = KNOWN_DEVIATIONS.iter().find(|(n, _, _)| n == name);
        match known {
            None if got == want => passing += 1,
            Some((_, gives, why)) if got == gives => println!("known deviation, {name}: {} ({why})", got.as_str()),
            _ => unexpected.push(format!("{name}: got {}, want {}", got.as_str(), want.as_str())),
        }
    }
    println!("RFC 7208 scenarios: {passing} of {} pass, {} known deviations", results.len(), KNOWN_DEVIATIONS.len());
    assert!(unexpected.is_empty(), "{}", unexpected.join("\n"));
}
