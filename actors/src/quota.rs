//! The daily outbound quota (MailPlus "Daily Quota", Kerio's domain
//! limits): an authenticated user may send so many messages and bytes to
//! external recipients per UTC day. The charge is a Raft write committed
//! before the 250, and the state machine holds the limits, so the count is
//! exact across the nodes a load balancer spreads the sessions over.
//!
//! What is counted: each external destination of a message (after alias
//! expansion) is one message and the message's size in bytes; local
//! recipients are free. Mail from trusted networks without a login has no
//! user and is not counted.

use consensus::state::settings::key;
use consensus::{AppliedState, Command, Outcome, ProposeError, Proposer};

use crate::message::{InboundMessage, Reply};
use consensus::state::counters::DAY_MS;

/// The charge a message makes, if any: its sender's login, and its
/// external destinations and bytes.
pub fn charge_for(state: &AppliedState, message: &InboundMessage) -> Option<Command> {
    let user = message.authenticated.as_ref()?;
    let external = crate::recipient::external_destinations(&state.state.directory, message);
    if external.is_empty() {
        return None;
    }
    let messages = u32::try_from(external.len()).unwrap_or(u32::MAX);
    let bytes = (message.body.len() as u64).saturating_mul(u64::from(messages));
    Some(Command::ChargeDailyQuota { user: user.clone(), messages, bytes })
}

/// What the session answers when the charge was refused: a message that
/// would fit tomorrow is deferred (452, the client retries after the
/// reset); one larger than the whole daily allowance can never go and is
/// refused (550).
pub fn refusal(outcome: &Outcome, wanted: &Command) -> Option<Reply> {
    let Outcome::QuotaExceeded { messages_max, bytes_max, day, .. } = outcome else { return None };
    let (want_messages, want_bytes) = match wanted {
        Command::ChargeDailyQuota { messages, bytes, .. } => (*messages, *bytes),
        _ => (0, 0),
    };
    let limits = match (*messages_max, *bytes_max) {
        (0, b) => format!("{b} bytes"),
        (m, 0) => format!("{m} messages"),
        (m, b) => format!("{m} messages and {b} bytes"),
    };
    let never = (*messages_max != 0 && want_messages > *messages_max) || (*bytes_max != 0 && want_bytes > *bytes_max);
    if never {
        let text = format!(
            "Message exceeds the daily sending limit on its own ({limits} per day, each external recipient counted)"
        );
        return Some(Reply::new(550, "5.7.1", &text));
    }
    let reset = mail_builder::headers::date::Date::new(((day + 1) * DAY_MS / 1000) as i64).to_rfc822();
    let text = format!("Daily sending limit reached ({limits} per day); it resets at {reset}");
    Some(Reply::new(452, "4.7.1", &text))
}

/// Charges `message` against its sender's quota before it is queued; an
/// error is the reply that refuses it.
pub async fn charge(proposer: &Proposer, state: &AppliedState, message: &InboundMessage) -> Result<(), Reply> {
    let Some(command) = charge_for(state, message) else { return Ok(()) };
    let user = message.authenticated.clone().unwrap_or_default();
    match proposer.propose(command.clone()).await {
        Ok(outcome @ Outcome::QuotaExceeded { .. }) => {
            let reply = refusal(&outcome, &command).unwrap_or_else(unavailable);
            tracing::warn!(%user, client = %message.peer.ip, ?outcome, "refused: daily sending limit");
            Err(reply)
        }
        Ok(Outcome::QuotaCharged { messages, bytes }) => {
            tracing::debug!(%user, messages, bytes, "daily quota charged");
            Ok(())
        }
        Ok(other) => {
            tracing::error!(%user, ?other, "unexpected answer to a quota charge");
            Err(unavailable())
        }
        Err(ProposeError::Rejected(e)) => {
            tracing::warn!(%user, error = %e, "quota charge refused by the state machine");
            Err(unavailable())
        }
        Err(e) => {
            let accept = accept_uncounted(state, &user);
            tracing::warn!(%user, error = %e, accepted_uncounted = accept, "daily quota could not be charged");
            if accept {
                Ok(())
            } else {
                Err(unavailable())
            }
        }
    }
}

/// Whether a message whose charge cannot be committed goes out anyway:
/// under `quota.on_unavailable = accept`, or when the user has no limit at
/// all (the count is only statistics then, never a reason to refuse).
fn accept_uncounted(state: &AppliedState, user: &str) -> bool {
    let key = consensus::address::MailAddress::parse(user).map(|a| a.key()).unwrap_or_default();
    state.state.daily_limits(&key) == (0, 0) || state.state.settings.text(key::QUOTA_ON_UNAVAILABLE) == "accept"
}

fn unavailable() -> Reply {
    Reply::new(451, "4.7.1", "Cannot count the daily sending limit now; try again later")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::AcceptedRecipient;
    use consensus::ClusterState;

    fn state() -> AppliedState {
        let mut s = ClusterState::default();
        s.apply(&Command::AddDomain { name: "example.com".into() }, 0).unwrap();
        s.apply(&Command::AddDomainAlias { alias: "example.net".into(), target: "example.com".into() }, 0).unwrap();
        AppliedState { applied_index: 1, state: s, rules: Default::default() }
    }

    fn message(login: Option<&str>, to: &[&[&str]]) -> InboundMessage {
        let mut m = InboundMessage::from_file(b"Subject: x\r\n\r\n0123456789\r\n");
        m.authenticated = login.map(str::to_string);
        m.recipients = to
            .iter()
            .map(|d| AcceptedRecipient { address: d[0].into(), deliver_to: d.iter().map(|s| s.to_string()).collect() })
            .collect();
        m
    }

    #[test]
    fn each_external_destination_counts_once_and_local_ones_are_free() {
        let s = state();
        let size = message(None, &[]).body.len() as u64;
        let m = message(
            Some("alice@example.com"),
            &[&["bob@remote.test"], &["list@example.com", "BOB@remote.test", "carol@other.test"], &["ann@example.net"]],
        );
        let expected = Command::ChargeDailyQuota { user: "alice@example.com".into(), messages: 2, bytes: 2 * size };
        assert_eq!(charge_for(&s, &m), Some(expected));
        assert_eq!(charge_for(&s, &message(Some("alice@example.com"), &[&["ann@example.com"]])), None, "all local");
        assert_eq!(charge_for(&s, &message(None, &[&["bob@remote.test"]])), None, "no login, no user");
    }

    #[test]
    fn without_quorum_only_a_limited_user_waits() {
        let mut s = state();
        assert!(accept_uncounted(&s, "Alice@example.com"), "no limit anywhere: statistics only");
        s.state.apply(&Command::SetSetting { key: "quota.daily_bytes_max".into(), value: "1000".into() }, 0).unwrap();
        assert!(!accept_uncounted(&s, "alice@example.com"), "a limit: 451 until it can be counted");
        s.state.apply(&Command::SetSetting { key: "quota.on_unavailable".into(), value: "accept".into() }, 0).unwrap();
        assert!(accept_uncounted(&s, "alice@example.com"));
    }

    #[test]
    fn over_the_limit_defers_until_the_reset_and_too_big_alone_is_refused() {
        let day = 20_424;
        let wanted = Command::ChargeDailyQuota { user: "a@example.com".into(), messages: 1, bytes: 10 };
        let outcome = Outcome::QuotaExceeded { messages: 10, bytes: 100, messages_max: 10, bytes_max: 0, day };
        let reply = refusal(&outcome, &wanted).unwrap();
        assert_eq!((reply.code, reply.enhanced), (452, "4.7.1"));
        assert!(reply.text.contains("10 messages per day") && reply.text.contains("00:00:00"), "{}", reply.text);
        let huge = Command::ChargeDailyQuota { user: "a@example.com".into(), messages: 11, bytes: 10 };
        let reply = refusal(&outcome, &huge).unwrap();
        assert_eq!((reply.code, reply.enhanced), (550, "5.7.1"), "{}", reply.text);
        let bytes = Outcome::QuotaExceeded { messages: 0, bytes: 0, messages_max: 0, bytes_max: 5, day };
        assert_eq!(refusal(&bytes, &wanted).unwrap().code, 550, "10 bytes never fit in 5");
        assert_eq!(refusal(&Outcome::Done, &wanted), None);
    }
}
