//! Account hijack detection (MDaemon): an authenticated account may send at
//! most `hijack.messages_max` messages in `hijack.window_s`, counted through
//! Raft so the limit holds however the load balancer spreads a thief's
//! sessions. Past it the message is refused and, with `hijack.freeze`, the
//! account is frozen on every node; the administrators get a notice naming
//! the account, the count, the window and the clients, with a single-use
//! token: their reply, sent logged in as one of them to the notice's
//! Reply-To (`gatehouse-unfreeze@` the account's domain), unfreezes it.

use consensus::address::MailAddress;
use consensus::state::settings::key;
use consensus::{AppliedState, Command, Outcome, ProposeError, Proposer};
use sha2::{Digest, Sha256};

use crate::message::{InboundMessage, Reply};
use crate::notice::{admin_addresses, Notice};

/// The local part, at any local domain, that takes administrators'
/// replies to hijack notices instead of a mailbox.
pub const UNFREEZE_LOCAL_PART: &str = "gatehouse-unfreeze";
/// Where the token sits in the notice's subject and text.
const TOKEN_MARK: &str = "unfreeze:";
const TOKEN_HEX_LEN: usize = 32;

/// What the detection decided about one message.
#[derive(Debug, PartialEq)]
pub enum HijackVerdict {
    Send,
    /// Refuse with this reply; `notice` when this node tells the admins.
    Refuse {
        reply: Reply,
        notice: Option<NoticeFacts>,
    },
}

/// What the administrators' notice says.
#[derive(Debug, Clone, PartialEq)]
pub struct NoticeFacts {
    pub user: String,
    pub count: u32,
    pub window_ms: u64,
    pub frozen: bool,
    pub clients: Vec<String>,
}

/// The decision for a counted message (pure: the outcome of its
/// `IncrementHijack`).
pub fn verdict(user: &str, outcome: &Outcome) -> HijackVerdict {
    let Outcome::HijackDetected { count, window_ms, frozen, first, clients } = outcome else {
        return HijackVerdict::Send;
    };
    let text = if *frozen {
        format!("Account frozen: more than {count} messages in {} s; ask your administrator", window_ms / 1000)
    } else {
        format!("Sending suspended: more than {count} messages in {} s; try again later", window_ms / 1000)
    };
    let reply = Reply::new(550, "5.7.1", &text);
    let notice = first.then(|| NoticeFacts {
        user: user.to_string(),
        count: *count,
        window_ms: *window_ms,
        frozen: *frozen,
        clients: clients.clone(),
    });
    HijackVerdict::Refuse { reply, notice }
}

/// Counts an authenticated message before it is queued; an error is the
/// reply that refuses it. A first detection queues the admins' notice.
pub async fn count(
    proposer: &Proposer,
    queue: &actix::Addr<crate::queue::DeliveryQueue>,
    state: &AppliedState,
    message: &InboundMessage,
    listener: &str,
) -> Result<(), Reply> {
    let Some(user) = message.authenticated.clone() else { return Ok(()) };
    let client = format!("{} {listener}", message.peer.ip);
    let outcome = match proposer.propose(Command::IncrementHijack { user: user.clone(), client }).await {
        Ok(outcome) => outcome,
        Err(e @ (ProposeError::Unavailable(_) | ProposeError::Overloaded(_)))
            if state.state.settings.text(key::HIJACK_ON_UNAVAILABLE) == "accept" =>
        {
            tracing::warn!(%user, error = %e, "hijack count not committed; accepted uncounted");
            return Ok(());
        }
        Err(e) => {
            tracing::warn!(%user, error = %e, "hijack count not committed");
            return Err(Reply::new(451, "4.7.1", "Cannot count messages for this account now; try again later"));
        }
    };
    match verdict(&user, &outcome) {
        HijackVerdict::Send => Ok(()),
        HijackVerdict::Refuse { reply, notice } => {
            tracing::warn!(%user, client = %message.peer.ip, listener, ?outcome, "refused: hijack detection");
            if let Some(facts) = notice {
                send_notice(proposer, queue, state, &facts).await;
            }
            Err(reply)
        }
    }
}

/// Issues the unfreeze token (when frozen) and queues the notice to every
/// admin address. Failures are logged: the account stays stopped anyway.
async fn send_notice(
    proposer: &Proposer,
    queue: &actix::Addr<crate::queue::DeliveryQueue>,
    state: &AppliedState,
    facts: &NoticeFacts,
) {
    let now = crate::queue::now_ms();
    let ttl_ms = state.state.settings.uint(key::HIJACK_UNFREEZE_TOKEN_TTL_S).saturating_mul(1000);
    let token = facts.frozen.then(|| hex::encode(rand::random::<[u8; TOKEN_HEX_LEN / 2]>()));
    if let Some(token) = &token {
        let command = Command::IssueUnfreezeToken {
            user: facts.user.clone(),
            token_sha256: token_hash(token),
            expires_ms: now.saturating_add(ttl_ms),
        };
        if let Err(e) = proposer.propose(command).await {
            tracing::warn!(user = %facts.user, error = %e, "unfreeze token not recorded; the notice goes without one");
        }
    }
    let admins = admin_addresses(state);
    if admins.is_empty() {
        tracing::warn!(user = %facts.user, "hijack detected and notify.admin_addresses is empty: nobody is told");
        return;
    }
    let hostname = state.state.settings.text(key::SMTP_HOSTNAME);
    let domain = facts.user.rsplit_once('@').map_or(hostname.as_str(), |(_, d)| d);
    let reply_to = format!("{UNFREEZE_LOCAL_PART}@{domain}");
    let (subject, text) = notice_text(facts, token.as_deref(), now.saturating_add(ttl_ms));
    let notice = Notice { hostname: &hostname, subject: &subject, text: &text, reply_to: Some(&reply_to) };
    for admin in admins {
        let message = notice.to(admin.clone(), vec![admin], &format!("{now}.hijack-notice"), now);
        crate::notice::queue_notice(queue, message, "hijack", &facts.user).await;
    }
}

/// The notice's subject and text.
pub fn notice_text(facts: &NoticeFacts, token: Option<&str>, token_expires_ms: u64) -> (String, String) {
    let window_s = facts.window_ms / 1000;
    let state = if facts.frozen { "frozen" } else { "stopped" };
    let subject = match token {
        Some(t) => {
            format!("Account {} {state}: {} messages in {window_s} s [{TOKEN_MARK}{t}]", facts.user, facts.count)
        }
        None => format!("Account {} {state}: {} messages in {window_s} s", facts.user, facts.count),
    };
    let mut text = format!(
        "Hijack detection stopped the account {user}: it sent {count} messages within {window_s} seconds \
         (hijack.messages_max, hijack.window_s), counted on all nodes together, and tried to send more.\n\n",
        user = facts.user,
        count = facts.count
    );
    text.push_str("Sessions it sent from (client IP and protocol):\n");
    for c in &facts.clients {
        text.push_str(&format!("  {c}\n"));
    }
    text.push('\n');
    match token {
        Some(t) => {
            let expires = mail_builder::headers::date::Date::new((token_expires_ms / 1000) as i64).to_rfc822();
            text.push_str(&format!(
                "The account is frozen on every node: it may not log in or send; it still receives mail.\n\n\
                 If this was legitimate, reply to this message while logged in as an administrator \
                 (an address in notify.admin_addresses), keeping this line:\n\n  {TOKEN_MARK}{t}\n\n\
                 The token works once, until {expires}. Or run: gatehouse user unfreeze {user}\n",
                user = facts.user
            ));
        }
        None => text.push_str(
            "hijack.freeze is off: the account is not frozen; its messages are refused until the window ends.\n",
        ),
    }
    (subject, text)
}

/// Whether `address` is the unfreeze address of a local domain (and no
/// user, group or alias has taken that name).
pub fn is_unfreeze_address(state: &AppliedState, address: &str) -> bool {
    let directory = &state.state.directory;
    MailAddress::parse(address).is_ok_and(|a| {
        a.local().eq_ignore_ascii_case(UNFREEZE_LOCAL_PART)
            && directory.is_local_domain(a.domain().as_str())
            && !directory.address_in_use(&a.key())
    })
}

/// The token a reply carries, if any.
pub fn token_in(body: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(body);
    text.match_indices(TOKEN_MARK).find_map(|(at, _)| {
        let rest = &text[at + TOKEN_MARK.len()..];
        let token: String = rest.chars().take(TOKEN_HEX_LEN).collect();
        (token.len() == TOKEN_HEX_LEN && token.chars().all(|c| c.is_ascii_hexdigit()))
            .then(|| token.to_ascii_lowercase())
    })
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Handles a message to the unfreeze address: only a logged-in
/// administrator's message with a live token unfreezes; anything else is
/// logged and changes nothing. Anyone but an administrator gets the same
/// 250 (`Ok`) whatever happened, so a forger learns nothing; an
/// administrator learns why a request failed.
pub async fn unfreeze_request(
    proposer: &Proposer,
    state: &AppliedState,
    message: &InboundMessage,
) -> Result<(), Reply> {
    let admins: Vec<String> =
        admin_addresses(state).iter().filter_map(|a| MailAddress::parse(a).ok().map(|a| a.key())).collect();
    let login = message.authenticated.as_ref().and_then(|l| MailAddress::parse(l).ok()).map(|a| a.key());
    let Some(login) = login.filter(|l| admins.contains(l)) else {
        tracing::warn!(client = %message.peer.ip, from = %message.mail_from, login = ?message.authenticated,
            "unfreeze request refused: not from a logged-in administrator");
        return Ok(());
    };
    let Some(token) = token_in(&message.body) else {
        tracing::warn!(%login, "unfreeze request without a token");
        return Err(Reply::new(550, "5.7.1", "No unfreeze token in the message"));
    };
    match proposer.propose(Command::RedeemUnfreezeToken { token_sha256: token_hash(&token) }).await {
        Ok(Outcome::Unfrozen { user }) => {
            tracing::info!(%login, %user, "account unfrozen by an administrator's reply");
            Ok(())
        }
        Ok(other) => {
            tracing::error!(%login, ?other, "unexpected answer to an unfreeze request");
            Err(Reply::new(451, "4.3.0", "Try again later"))
        }
        Err(ProposeError::Rejected(e)) => {
            tracing::warn!(%login, error = %e, "unfreeze request refused");
            Err(Reply::new(550, "5.7.1", "Unfreeze token unknown, used or expired"))
        }
        Err(e) => {
            tracing::warn!(%login, error = %e, "unfreeze request not committed");
            Err(Reply::new(451, "4.7.1", "Cannot unfreeze now; try again later"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(frozen: bool) -> NoticeFacts {
        NoticeFacts {
            user: "alice@example.com".into(),
            count: 5,
            window_ms: 3_600_000,
            frozen,
            clients: vec!["192.0.2.1 submission".into(), "198.51.100.7 smtps".into()],
        }
    }

    #[test]
    fn detection_refuses_and_only_the_first_tells_the_admins() {
        assert_eq!(verdict("a@example.com", &Outcome::HijackCount { count: 3 }), HijackVerdict::Send);
        let detected = |first| Outcome::HijackDetected {
            count: 5,
            window_ms: 3_600_000,
            frozen: true,
            first,
            clients: vec!["192.0.2.1 submission".into(), "198.51.100.7 smtps".into()],
        };
        let HijackVerdict::Refuse { reply, notice } = verdict("alice@example.com", &detected(true)) else {
            panic!("not refused")
        };
        assert_eq!((reply.code, reply.enhanced), (550, "5.7.1"));
        assert!(reply.text.starts_with("Account frozen: more than 5 messages in 3600 s"), "{}", reply.text);
        assert_eq!(notice, Some(facts(true)));
        assert!(matches!(verdict("alice@example.com", &detected(false)), HijackVerdict::Refuse { notice: None, .. }));
    }

    #[test]
    fn the_notice_names_everything_and_its_token_comes_back_out_of_a_reply() {
        let token = "0123456789abcdef0123456789ABCDEF";
        let (subject, text) = notice_text(&facts(true), Some(token), 1_800_000_000_000);
        assert_eq!(subject, format!("Account alice@example.com frozen: 5 messages in 3600 s [unfreeze:{token}]"));
        for part in
            ["alice@example.com", "5 messages within 3600 seconds", "192.0.2.1 submission", "198.51.100.7 smtps"]
        {
            assert!(text.contains(part), "{part}: {text}");
        }
        let reply = format!("Subject: Re: {subject}\r\n\r\nYes, that was me.\r\n> {text}");
        assert_eq!(token_in(reply.as_bytes()), Some(token.to_ascii_lowercase()));
        assert_eq!(token_in(b"unfreeze: 0123"), None);
        assert_eq!(token_in(b"unfreeze:0123456789abcdef0123456789abcdeZ"), None, "not hex");
        let (_, unfrozen_text) = notice_text(&facts(false), None, 0);
        assert!(!unfrozen_text.contains(TOKEN_MARK) && unfrozen_text.contains("not frozen"), "{unfrozen_text}");
    }

    #[test]
    fn the_unfreeze_address_is_at_local_domains_only() {
        let mut s = consensus::ClusterState::default();
        s.apply(&Command::AddDomain { name: "example.com".into() }, 0).unwrap();
        let state = AppliedState { applied_index: 1, state: s, rules: Default::default() };
        assert!(is_unfreeze_address(&state, "Gatehouse-Unfreeze@Example.com"));
        assert!(!is_unfreeze_address(&state, "gatehouse-unfreeze@elsewhere.test"));
        assert!(!is_unfreeze_address(&state, "alice@example.com"));
    }
}
