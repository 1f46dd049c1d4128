//! Recipient policy: is this RCPT TO acceptable, and where does it go?
//!
//! A pure function of the replicated directory and the address. Local
//! domains (and domain aliases) are served here: a user, a group (its enabled
//! members) or an alias (its targets); anything else in a local domain is
//! refused with 550 5.1.1. Other domains are relayed only when the caller
//! says relaying is allowed (an authenticated client, or one in
//! `smtp.trusted_networks`); otherwise 554 5.7.1. Never an open relay.

use consensus::address::MailAddress;
use consensus::state::Directory;

use crate::smtp::{RecipientVerdict, Reply};

/// Resolves one recipient against the directory. `postmaster` receives
/// mail to postmaster@ and mailer-daemon@ of the local domains that have no
/// entry of that name (RFC 5321 §4.5.1 requires postmaster).
pub fn resolve_recipient(
    directory: &Directory,
    primary_domain: &str,
    postmaster: &[String],
    raw: &str,
    relay_allowed: bool,
) -> RecipientVerdict {
    // RFC 5321 §4.5.1: "postmaster" without a domain must be accepted.
    let raw = if raw.eq_ignore_ascii_case("postmaster") && !primary_domain.is_empty() {
        format!("postmaster@{primary_domain}")
    } else {
        raw.to_string()
    };
    let Ok(address) = MailAddress::parse(&raw) else {
        return RecipientVerdict::Reject(Reply::new(501, "5.1.3", "Bad recipient address syntax"));
    };
    let domain = address.domain().as_str();
    let Some(canonical_domain) = canonical_local_domain(directory, domain) else {
        if let Some(relay) = directory.relay_domain(domain) {
            // An inbound relay domain: for anyone, to its own MX; its recipient list, if any, decides.
            if relay.recipients.is_empty() || relay.recipients.contains(&address.key()) {
                let local = raw.trim().rsplit_once('@').map_or(address.local(), |(l, _)| l);
                return RecipientVerdict::Accept { deliver_to: vec![format!("{local}@{domain}")] };
            }
            return RecipientVerdict::Reject(Reply::new(
                550,
                "5.1.1",
                "Recipient address rejected: user unknown in relay recipient table",
            ));
        }
        if relay_allowed {
            // A remote local part is the remote's business (RFC 5321 §2.4): keep its case.
            let local = raw.trim().rsplit_once('@').map_or(address.local(), |(l, _)| l);
            return RecipientVerdict::Accept { deliver_to: vec![format!("{local}@{domain}")] };
        }
        return RecipientVerdict::Reject(Reply::new(554, "5.7.1", "Relay access denied"));
    };
    let key = format!("{}@{}", address.local(), canonical_domain);
    // Replies to hijack notices: a request the session handles, not a mailbox.
    if address.local().eq_ignore_ascii_case(crate::hijack::UNFREEZE_LOCAL_PART) && !directory.address_in_use(&key) {
        return RecipientVerdict::Accept { deliver_to: vec![key] };
    }
    let role = ["postmaster", "mailer-daemon"].iter().any(|r| address.local().eq_ignore_ascii_case(r));
    if role && !directory.address_in_use(&key) && !postmaster.is_empty() {
        return RecipientVerdict::Accept { deliver_to: postmaster.to_vec() };
    }
    match expand(directory, &key) {
        Some(deliver_to) if !deliver_to.is_empty() => RecipientVerdict::Accept { deliver_to },
        Some(_) => {
            RecipientVerdict::Reject(Reply::new(550, "5.1.1", "Recipient address rejected: mailbox unavailable"))
        }
        None => RecipientVerdict::Reject(Reply::new(550, "5.1.1", "Recipient address rejected: user unknown")),
    }
}

/// The message's final destinations outside the local domains (after
/// alias expansion), lower-cased and each once.
pub fn external_destinations(directory: &Directory, message: &crate::message::InboundMessage) -> Vec<String> {
    let mut external: Vec<String> = message
        .recipients
        .iter()
        .flat_map(|r| r.deliver_to.iter())
        .filter(|to| {
            let domain = to.rsplit_once('@').map_or("", |(_, d)| d).to_ascii_lowercase();
            !directory.is_local_domain(&domain)
        })
        .map(|to| to.to_ascii_lowercase())
        .collect();
    external.sort();
    external.dedup();
    external
}

/// Where postmaster@ and mailer-daemon@ mail goes: `postmaster.addresses`,
/// else `notify.admin_addresses`.
pub fn postmaster_targets(state: &consensus::AppliedState) -> Vec<String> {
    let own = state.state.settings.text(consensus::state::settings::key::POSTMASTER_ADDRESSES);
    let own: Vec<String> = own.split(',').map(str::trim).filter(|a| a.contains('@')).map(str::to_string).collect();
    if own.is_empty() {
        crate::notice::admin_addresses(state)
    } else {
        own
    }
}

fn canonical_local_domain<'a>(directory: &'a Directory, domain: &'a str) -> Option<&'a str> {
    if directory.domains.contains_key(domain) {
        return Some(domain);
    }
    directory.domain_aliases.get(domain).map(String::as_str)
}

/// The final destinations of a local address: `None` if nothing has that
/// address; disabled users are left out. Aliases expand one level (their
/// targets are delivered as given: a local user, or a remote address).
fn expand(directory: &Directory, key: &str) -> Option<Vec<String>> {
    if let Some(user) = directory.users.get(key) {
        return Some(if user.enabled { vec![user.address.clone()] } else { vec![] });
    }
    if let Some(group) = directory.groups.get(key) {
        let members = group.members.iter().filter(|m| directory.users.get(*m).is_some_and(|u| u.enabled));
        return Some(members.cloned().collect());
    }
    directory.aliases.get(key).map(|alias| alias.targets.iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::command::Command;
    use consensus::state::ClusterState;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";

    fn state() -> ClusterState {
        let mut s = ClusterState::default();
        let user =
            |a: &str| Command::AddUser { address: a.into(), display_name: String::new(), password_hash: HASH.into() };
        for c in [
            Command::AddDomain { name: "example.com".into() },
            Command::AddDomainAlias { alias: "example.net".into(), target: "example.com".into() },
            user("alice@example.com"),
            user("bob@example.com"),
            user("postmaster@example.com"),
            Command::SetUserEnabled { address: "bob@example.com".into(), enabled: false },
            Command::AddGroup { address: "staff@example.com".into() },
            Command::AddGroupMember { group: "staff@example.com".into(), member: "alice@example.com".into() },
            Command::AddGroupMember { group: "staff@example.com".into(), member: "bob@example.com".into() },
            Command::AddAlias {
                address: "sales@example.com".into(),
                targets: vec!["alice@example.com".into(), "x@partner.org".into()],
            },
            Command::SetRelayDomain { domain: "branch.example".into(), recipients: vec![] },
            Command::SetRelayDomain { domain: "listed.example".into(), recipients: vec!["Ann@listed.example".into()] },
        ] {
            s.apply(&c, 0).unwrap();
        }
        s
    }

    enum Want {
        Accept(&'static [&'static str]),
        Reject(u16, &'static str),
    }

    fn check(s: &ClusterState, table: &[(&str, Want)], relay_allowed: bool) {
        for (raw, want) in table {
            let postmaster = ["it@partner.org".to_string()];
            let got = resolve_recipient(&s.directory, "example.com", &postmaster, raw, relay_allowed);
            let ok = match (want, &got) {
                (Want::Accept(list), RecipientVerdict::Accept { deliver_to }) => deliver_to == list,
                (Want::Reject(code, enhanced), RecipientVerdict::Reject(r)) => {
                    r.code == *code && r.enhanced == *enhanced
                }
                _ => false,
            };
            assert!(ok, "{raw}: {got:?}");
        }
    }

    #[test]
    fn recipient_table() {
        use Want::*;
        let s = state();
        let table: &[(&str, Want)] = &[
            ("alice@example.com", Accept(&["alice@example.com"])),
            ("ALICE@Example.COM", Accept(&["alice@example.com"])),
            ("alice@example.net", Accept(&["alice@example.com"])),
            ("alice@example.com.", Accept(&["alice@example.com"])),
            ("postmaster", Accept(&["postmaster@example.com"])),
            ("Mailer-Daemon@example.net", Accept(&["it@partner.org"])),
            ("MAILER-DAEMON@example.com", Accept(&["it@partner.org"])),
            ("staff@example.com", Accept(&["alice@example.com"])),
            ("sales@example.com", Accept(&["alice@example.com", "x@partner.org"])),
            ("bob@example.com", Reject(550, "5.1.1")),
            ("nobody@example.com", Reject(550, "5.1.1")),
            ("someone@elsewhere.org", Reject(554, "5.7.1")),
            ("Anyone@branch.example", Accept(&["Anyone@branch.example"])),
            ("ann@LISTED.example", Accept(&["ann@listed.example"])),
            ("bob@listed.example", Reject(550, "5.1.1")),
            ("alice%example.com@elsewhere.org", Reject(554, "5.7.1")),
            ("alice%elsewhere.org@example.com", Reject(550, "5.1.1")),
            ("alice@example.com@elsewhere.org", Reject(501, "5.1.3")),
            ("@relay.org:alice@elsewhere.org", Reject(501, "5.1.3")),
            ("elsewhere.org!alice", Reject(501, "5.1.3")),
            ("alice@[127.0.0.1]", Reject(501, "5.1.3")),
            ("\"alice@elsewhere.org\"@example.com", Reject(501, "5.1.3")),
        ];
        check(&s, table, false);
    }

    /// With relaying allowed, remote domains are accepted as given; local
    /// rules and address syntax still apply.
    #[test]
    fn relay_table() {
        use Want::*;
        let s = state();
        let table: &[(&str, Want)] = &[
            ("someone@elsewhere.org", Accept(&["someone@elsewhere.org"])),
            ("Someone@Elsewhere.ORG.", Accept(&["Someone@elsewhere.org"])),
            ("alice@example.com", Accept(&["alice@example.com"])),
            ("nobody@example.com", Reject(550, "5.1.1")),
            ("@relay.org:alice@elsewhere.org", Reject(501, "5.1.3")),
            ("alice@[127.0.0.1]", Reject(501, "5.1.3")),
        ];
        check(&s, table, true);
    }
}
