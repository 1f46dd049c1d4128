//! What the sender-authentication results mean for a message: pure
//! functions of the findings (SPF, DKIM, DMARC, ARC results, reduced to plain
//! values by `verify`) and the settings.

use consensus::state::settings::key;
use consensus::state::Settings;

use crate::message::SkipChecks;
use crate::smtp::Reply;

/// An SPF result (RFC 7208 §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spf {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl Spf {
    pub fn as_str(self) -> &'static str {
        match self {
            Spf::Pass => "pass",
            Spf::Fail => "fail",
            Spf::SoftFail => "softfail",
            Spf::Neutral => "neutral",
            Spf::None => "none",
            Spf::TempError => "temperror",
            Spf::PermError => "permerror",
        }
    }
}

/// The authentication settings, read once per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub spf_verify: bool,
    pub spf_reject_fail: bool,
    pub spf_reject_softfail: bool,
    pub spf_fail_score: i32,
    pub spf_softfail_score: i32,
    pub dkim_verify: bool,
    pub dkim_min_key_bits: usize,
    pub dkim_fail_to_junk: bool,
    pub dmarc_verify: bool,
    /// ARC sealers whose pass overrides a DMARC failure (mailing lists).
    pub arc_trusted_sealers: Vec<String>,
}

impl AuthSettings {
    pub fn from_settings(s: &Settings) -> Self {
        let sealers = s.text(key::ARC_TRUSTED_SEALERS);
        Self {
            spf_verify: s.flag(key::SPF_VERIFY),
            spf_reject_fail: s.flag(key::SPF_REJECT_FAIL),
            spf_reject_softfail: s.flag(key::SPF_REJECT_SOFTFAIL),
            spf_fail_score: s.int(key::SPF_FAIL_SCORE) as i32,
            spf_softfail_score: s.int(key::SPF_SOFTFAIL_SCORE) as i32,
            dkim_verify: s.flag(key::DKIM_VERIFY),
            dkim_min_key_bits: s.uint(key::DKIM_MIN_KEY_BITS) as usize,
            dkim_fail_to_junk: s.flag(key::DKIM_FAIL_TO_JUNK),
            dmarc_verify: s.flag(key::DMARC_VERIFY),
            arc_trusted_sealers: sealers
                .split([',', ' '])
                .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
                .filter(|d| !d.is_empty())
                .collect(),
        }
    }
}

/// What the SPF result does at RCPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpfDecision {
    Reject(Reply),
    /// Accepted; `score` is added to the message's spam score.
    Accept {
        score: i32,
    },
}

pub fn spf_decision(result: Spf, domain: &str, ip: std::net::IpAddr, s: &AuthSettings) -> SpfDecision {
    let refuse = || {
        let text = format!("SPF validation failed: {domain} does not designate {ip} as permitted sender");
        SpfDecision::Reject(Reply::new(550, "5.7.23", &text))
    };
    match result {
        Spf::Fail if s.spf_reject_fail => refuse(),
        Spf::Fail => SpfDecision::Accept { score: s.spf_fail_score },
        Spf::SoftFail if s.spf_reject_softfail => refuse(),
        Spf::SoftFail => SpfDecision::Accept { score: s.spf_softfail_score },
        _ => SpfDecision::Accept { score: 0 },
    }
}

/// One DKIM signature's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimFinding {
    /// The signing domain (`d=`).
    pub domain: String,
    pub result: DkimStatus,
    /// Bits of the key that verified, when it did.
    pub key_bits: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimStatus {
    Pass,
    Fail,
    Neutral,
    TempError,
    PermError,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

/// The DMARC evaluation of the From domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmarcFinding {
    pub domain: String,
    /// Aligned SPF or DKIM passed.
    pub pass: bool,
    pub policy: DmarcPolicy,
    /// `pct=`: the share of failing mail the policy applies to (default 100).
    pub pct: u8,
    /// DMARCbis `t=y`: apply the next weaker policy.
    pub testing: bool,
}

/// The ARC chain's outcome and who sealed it, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArcFinding {
    pub pass: bool,
    pub sealers: Vec<String>,
}

/// Everything the message decision needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFindings {
    pub dkim: Vec<DkimFinding>,
    pub dmarc: Option<DmarcFinding>,
    pub arc: ArcFinding,
    /// A number in 0..100 drawn for this message, compared with `pct`.
    pub pct_roll: u8,
}

/// What the authentication stage does with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageDecision {
    Reject(Reply),
    Deliver {
        /// To the recipients' Junk folder.
        junk: bool,
        /// A warning for the `X-Gatehouse-Warning` header.
        warning: Option<String>,
    },
}

/// A passing signature made with a key shorter than the minimum (RFC 8301
/// forbids accepting keys under 1024 bits; MailPlus lets the operator ask
/// for more).
pub fn key_too_short(f: &DkimFinding, min_key_bits: usize) -> bool {
    f.result == DkimStatus::Pass && f.key_bits.is_some_and(|bits| bits < min_key_bits)
}

/// The findings as judged: signatures whose key is too short count as failed.
pub fn effective_dkim(findings: &[DkimFinding], min_key_bits: usize) -> Vec<DkimFinding> {
    findings
        .iter()
        .map(|f| match key_too_short(f, min_key_bits) {
            true => DkimFinding { result: DkimStatus::Fail, ..f.clone() },
            false => f.clone(),
        })
        .collect()
}

pub fn message_decision(f: &MessageFindings, skip: &SkipChecks, s: &AuthSettings) -> MessageDecision {
    let mut junk = false;
    let mut warnings = Vec::new();

    let dkim_checked = s.dkim_verify && !skip.dkim;
    let dkim = effective_dkim(&f.dkim, s.dkim_min_key_bits);
    let any_pass = dkim.iter().any(|d| d.result == DkimStatus::Pass);
    let failed: Vec<String> = dkim
        .iter()
        .filter(|d| matches!(d.result, DkimStatus::Fail | DkimStatus::PermError))
        .map(|d| match d.key_bits {
            Some(bits) if bits < s.dkim_min_key_bits => {
                format!("{} (a {bits}-bit key, under the minimum of {})", d.domain, s.dkim_min_key_bits)
            }
            _ => d.domain.clone(),
        })
        .collect();
    if dkim_checked && !any_pass && !failed.is_empty() {
        warnings.push(format!("DKIM signature verification failed for {}", failed.join(", ")));
        junk |= s.dkim_fail_to_junk;
    }

    if let Some(d) = f.dmarc.as_ref().filter(|d| s.dmarc_verify && !skip.dmarc && !d.pass) {
        let trusted_arc = f.arc.pass && f.arc.sealers.last().is_some_and(|last| s.arc_trusted_sealers.contains(last));
        let applies = f.pct_roll < d.pct.min(100);
        let policy = match (d.policy, d.testing) {
            (DmarcPolicy::Reject, true) => DmarcPolicy::Quarantine,
            (DmarcPolicy::Quarantine, true) => DmarcPolicy::None,
            (p, _) => p,
        };
        match policy {
            _ if trusted_arc => {
                warnings.push(format!("DMARC failed for {}, accepted on a trusted ARC seal", d.domain));
            }
            DmarcPolicy::Reject if applies => {
                let text = format!("Email rejected per DMARC policy for {}", d.domain);
                return MessageDecision::Reject(Reply::new(550, "5.7.1", &text));
            }
            DmarcPolicy::Reject | DmarcPolicy::Quarantine if applies || policy == DmarcPolicy::Reject => {
                // A reject policy outside pct is treated as quarantine (RFC 7489 §6.6.4).
                warnings.push(format!("DMARC policy of {} not met: quarantined", d.domain));
                junk = true;
            }
            _ => {}
        }
    }
    let warning = (!warnings.is_empty()).then(|| warnings.join("; "));
    MessageDecision::Deliver { junk, warning }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AuthSettings {
        AuthSettings {
            spf_verify: true,
            spf_reject_fail: true,
            spf_reject_softfail: false,
            spf_fail_score: 5,
            spf_softfail_score: 2,
            dkim_verify: true,
            dkim_min_key_bits: 1024,
            dkim_fail_to_junk: true,
            dmarc_verify: true,
            arc_trusted_sealers: vec!["lists.example".into()],
        }
    }

    #[test]
    fn spf_table() {
        let ip = "192.0.2.7".parse().unwrap();
        let s = settings();
        let soft = AuthSettings { spf_reject_softfail: true, ..settings() };
        let lenient = AuthSettings { spf_reject_fail: false, ..settings() };
        let table: &[(Spf, &AuthSettings, Option<u16>, i32)] = &[
            (Spf::Pass, &s, None, 0),
            (Spf::Fail, &s, Some(550), 0),
            (Spf::Fail, &lenient, None, 5),
            (Spf::SoftFail, &s, None, 2),
            (Spf::SoftFail, &soft, Some(550), 0),
            (Spf::Neutral, &s, None, 0),
            (Spf::None, &s, None, 0),
            (Spf::TempError, &s, None, 0),
            (Spf::PermError, &s, None, 0),
        ];
        for (result, cfg, code, score) in table {
            match spf_decision(*result, "example.org", ip, cfg) {
                SpfDecision::Reject(r) => {
                    assert_eq!(Some(r.code), *code, "{result:?}");
                    assert_eq!(r.enhanced, "5.7.23");
                    assert!(r.text.contains("example.org") && r.text.contains("192.0.2.7"));
                }
                SpfDecision::Accept { score: got } => {
                    assert_eq!(*code, None, "{result:?}");
                    assert_eq!(got, *score, "{result:?}");
                }
            }
        }
    }

    fn dkim(domain: &str, result: DkimStatus, bits: Option<usize>) -> DkimFinding {
        DkimFinding { domain: domain.into(), result, key_bits: bits }
    }

    fn dmarc(policy: DmarcPolicy, pass: bool, pct: u8) -> Option<DmarcFinding> {
        Some(DmarcFinding { domain: "example.org".into(), pass, policy, pct, testing: false })
    }

    #[derive(Debug, PartialEq)]
    enum Want {
        Inbox,
        InboxWarned,
        Junk,
        Reject,
    }

    #[test]
    fn message_table() {
        use DkimStatus::*;
        use DmarcPolicy as P;
        let pass = vec![dkim("example.org", Pass, Some(2048))];
        let fail = vec![dkim("example.org", Fail, None)];
        let short = vec![dkim("example.org", Pass, Some(512))];
        let mixed = vec![dkim("list.example", Fail, None), dkim("example.org", Pass, Some(1024))];
        let trusted = ArcFinding { pass: true, sealers: vec!["relay.example".into(), "lists.example".into()] };
        let untrusted = ArcFinding { pass: true, sealers: vec!["other.example".into()] };
        let none = ArcFinding::default();
        let unsigned = vec![];
        // (dkim, dmarc, arc, roll, expected)
        type Case<'a> = (&'a Vec<DkimFinding>, Option<DmarcFinding>, &'a ArcFinding, u8, Want);
        let table: Vec<Case> = vec![
            (&pass, dmarc(P::Reject, true, 100), &none, 0, Want::Inbox),
            (&unsigned, None, &none, 0, Want::Inbox),
            (&fail, None, &none, 0, Want::Junk),
            (&short, None, &none, 0, Want::Junk),
            (&mixed, None, &none, 0, Want::Inbox),
            (&pass, dmarc(P::None, false, 100), &none, 0, Want::Inbox),
            (&pass, dmarc(P::Quarantine, false, 100), &none, 0, Want::Junk),
            (&pass, dmarc(P::Reject, false, 100), &none, 99, Want::Reject),
            (&pass, dmarc(P::Reject, false, 30), &none, 29, Want::Reject),
            (&pass, dmarc(P::Reject, false, 30), &none, 30, Want::Junk),
            (&pass, dmarc(P::Quarantine, false, 30), &none, 30, Want::Inbox),
            (&pass, dmarc(P::Reject, false, 0), &none, 0, Want::Junk),
            (&pass, dmarc(P::Reject, false, 100), &trusted, 0, Want::InboxWarned),
            (&pass, dmarc(P::Reject, false, 100), &untrusted, 0, Want::Reject),
        ];
        for (i, (dkim, dmarc, arc, roll, want)) in table.into_iter().enumerate() {
            let f = MessageFindings { dkim: dkim.clone(), dmarc, arc: arc.clone(), pct_roll: roll };
            let got = match message_decision(&f, &SkipChecks::default(), &settings()) {
                MessageDecision::Reject(r) => {
                    assert_eq!((r.code, r.enhanced), (550, "5.7.1"), "case {i}");
                    Want::Reject
                }
                MessageDecision::Deliver { junk: true, warning } => {
                    assert!(warning.is_some(), "case {i}: junk without a warning");
                    Want::Junk
                }
                MessageDecision::Deliver { junk: false, warning: Some(_) } => Want::InboxWarned,
                MessageDecision::Deliver { junk: false, warning: None } => Want::Inbox,
            };
            assert_eq!(got, want, "case {i}");
        }
    }

    #[test]
    fn skips_settings_and_testing_mode() {
        let f = MessageFindings {
            dkim: vec![dkim("example.org", DkimStatus::Fail, None)],
            dmarc: dmarc(DmarcPolicy::Reject, false, 100),
            arc: ArcFinding::default(),
            pct_roll: 0,
        };
        let skip_all = SkipChecks { dkim: true, dmarc: true, ..Default::default() };
        assert_eq!(
            message_decision(&f, &skip_all, &settings()),
            MessageDecision::Deliver { junk: false, warning: None }
        );
        let off = AuthSettings { dkim_fail_to_junk: false, dmarc_verify: false, ..settings() };
        assert!(matches!(
            message_decision(&f, &SkipChecks::default(), &off),
            MessageDecision::Deliver { junk: false, warning: Some(_) }
        ));
        let testing = MessageFindings {
            dmarc: Some(DmarcFinding { testing: true, ..dmarc(DmarcPolicy::Reject, false, 100).unwrap() }),
            ..f
        };
        assert!(
            matches!(
                message_decision(&testing, &SkipChecks::default(), &settings()),
                MessageDecision::Deliver { junk: true, .. }
            ),
            "t=y: reject acts as quarantine"
        );
        let short = [dkim("a.example", DkimStatus::Pass, Some(1024))];
        assert_eq!(effective_dkim(&short, 2048)[0].result, DkimStatus::Fail);
        assert_eq!(effective_dkim(&short, 1024)[0].result, DkimStatus::Pass);
    }
}
