//! Failed logins (MDaemon "know who is accessing your system"): each one is
//! logged with the client IP, listener and account (the log line's time
//! stamp is the date and time; the password never appears), counted per
//! client IP through Raft toward a block on every node
//! (`intrusion.failed_logins_max`), and gathered per account on this node
//! for the administrators' digest (`notify.failed_logins`): at most one
//! notice per account per `notify.failed_logins_interval_s`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use consensus::state::settings::key;
use consensus::{AppliedState, Command, Outcome, Proposer};
use mail_builder::headers::date::Date;

use crate::notice::{admin_addresses, Notice};
use crate::screening::ScreeningServices;

/// Accounts one digest round keeps; failures for more are only counted.
const ACCOUNTS_MAX: usize = 1000;
/// Failures listed per account in one notice; the rest are counted.
const LINES_MAX: usize = 50;
/// How often the notifier looks at the clock and the settings.
const TICK: Duration = Duration::from_secs(5);

/// One failed AUTH.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedLogin {
    pub at_ms: u64,
    pub ip: IpAddr,
    pub listener: &'static str,
}

/// The failures of one account since the last digest.
#[derive(Debug, Default, PartialEq)]
pub struct AccountFailures {
    pub total: u32,
    pub listed: Vec<FailedLogin>,
}

/// Failures gathered on this node since the last digest, per account.
#[derive(Debug, Default)]
pub struct FailedLoginDigest {
    accounts: BTreeMap<String, AccountFailures>,
    /// Failures of accounts past `ACCOUNTS_MAX`.
    pub dropped: u32,
}

impl FailedLoginDigest {
    pub fn record(&mut self, account: &str, failure: FailedLogin) {
        let account = printable_account(account);
        if !self.accounts.contains_key(&account) && self.accounts.len() >= ACCOUNTS_MAX {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        let entry = self.accounts.entry(account).or_default();
        entry.total = entry.total.saturating_add(1);
        if entry.listed.len() < LINES_MAX {
            entry.listed.push(failure);
        }
    }

    /// Everything gathered, emptying the digest.
    pub fn take(&mut self) -> BTreeMap<String, AccountFailures> {
        self.dropped = 0;
        std::mem::take(&mut self.accounts)
    }
}

/// The node's digest, shared by the SMTP listeners and the admin API's
/// login check (Dovecot's).
pub type SharedDigest = Arc<Mutex<FailedLoginDigest>>;

/// Records one failed login: logged, gathered for the digest, and counted
/// toward blocking `ip` on every node unless the client is `exempt`
/// (trusted network, whitelisted).
pub fn record(
    digest: &SharedDigest,
    proposer: &Proposer,
    state: &AppliedState,
    ip: IpAddr,
    listener: &'static str,
    account: &str,
    exempt: bool,
) {
    let account = printable_account(account);
    tracing::warn!(client = %ip, listener, %account, "failed login");
    if let Ok(mut d) = digest.lock() {
        d.record(&account, FailedLogin { at_ms: crate::queue::now_ms(), ip, listener });
    }
    let settings = &state.state.settings;
    let threshold = settings.uint32(key::INTRUSION_FAILED_LOGINS_MAX);
    if threshold == 0 || exempt {
        return;
    }
    let (window_ms, block_ms) = crate::screening::intrusion_window(settings);
    let command = Command::RecordFailedLogin { ip: ip.to_string(), threshold, window_ms, block_ms };
    let proposer = proposer.clone();
    tokio::spawn(async move {
        match proposer.propose(command).await {
            Ok(Outcome::FailedLoginCounted { count, blocked: true }) => {
                tracing::warn!(client = %ip, count, "client blocked on every node: too many failed logins");
            }
            Ok(_) => {}
            Err(e) => tracing::debug!(client = %ip, error = %e, "failed-login count not committed"),
        }
    });
}

/// An account name as a client typed it, made safe to log and mail:
/// control characters out, at most 100 characters.
pub fn printable_account(raw: &str) -> String {
    raw.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// The digest notice for one account.
pub fn notice_text(account: &str, failures: &AccountFailures) -> (String, String) {
    let subject = format!("Failed logins for {account}: {}", failures.total);
    let mut text = format!(
        "{} failed login(s) for the account {account} on this node since the last notice.\n\
         Time (UTC), client IP, listener:\n\n",
        failures.total
    );
    for f in &failures.listed {
        let when = Date::new((f.at_ms / 1000) as i64).to_rfc822();
        text.push_str(&format!("  {when}  {}  {}\n", f.ip, f.listener));
    }
    if failures.total as usize > failures.listed.len() {
        text.push_str(&format!("  ... and {} more\n", failures.total as usize - failures.listed.len()));
    }
    text.push_str(
        "\nRepeated failures from one address block it on every node when intrusion.failed_logins_max is set.\n",
    );
    (subject, text)
}

/// Sends the digests every `notify.failed_logins_interval_s`, for as long
/// as the node runs; with `notify.failed_logins` off the digest is only
/// emptied, so it never grows.
pub async fn run_notifier(services: Arc<ScreeningServices>) {
    let mut last_sent = crate::queue::now_ms();
    loop {
        tokio::time::sleep(TICK).await;
        let state = services.read.load();
        let settings = &state.state.settings;
        let interval_ms = settings.uint(key::NOTIFY_FAILED_LOGINS_INTERVAL_S).saturating_mul(1000);
        let now = crate::queue::now_ms();
        if now.saturating_sub(last_sent) < interval_ms {
            continue;
        }
        last_sent = now;
        let gathered = match services.failed_logins.lock() {
            Ok(mut digest) => digest.take(),
            Err(_) => continue,
        };
        if gathered.is_empty() || !settings.flag(key::NOTIFY_FAILED_LOGINS) {
            continue;
        }
        send_digests(&services, &state, gathered, now).await;
    }
}

async fn send_digests(
    services: &ScreeningServices,
    state: &AppliedState,
    gathered: BTreeMap<String, AccountFailures>,
    now: u64,
) {
    let admins = admin_addresses(state);
    if admins.is_empty() {
        tracing::warn!(accounts = gathered.len(), "failed-login digest: notify.admin_addresses is empty");
        return;
    }
    let hostname = state.state.settings.text(key::SMTP_HOSTNAME);
    let queue = services.queue.addr();
    for (account, failures) in gathered {
        let (subject, text) = notice_text(&account, &failures);
        let notice = Notice { hostname: &hostname, subject: &subject, text: &text, reply_to: None };
        for admin in &admins {
            let id = format!("{now}.{}.failed-logins", services.node_id);
            let message = notice.to(admin.clone(), vec![admin.clone()], &id, now);
            crate::notice::queue_notice(&queue, message, "failed-login", &account).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(i: u64) -> FailedLogin {
        FailedLogin { at_ms: 1_796_000_000_000 + i * 1000, ip: "192.0.2.7".parse().unwrap(), listener: "submission" }
    }

    #[test]
    fn the_digest_is_bounded_per_account_and_in_accounts() {
        let mut d = FailedLoginDigest::default();
        for i in 0..(LINES_MAX as u64 + 5) {
            d.record("alice@example.com", failure(i));
        }
        d.record("evil\r\nBcc: x@example.com", failure(0));
        let taken = d.take();
        let alice = &taken["alice@example.com"];
        assert_eq!((alice.total as usize, alice.listed.len()), (LINES_MAX + 5, LINES_MAX));
        assert!(taken.contains_key("evilBcc: x@example.com"), "control characters are dropped: {:?}", taken.keys());
        assert!(d.take().is_empty(), "taking empties it");
        for i in 0..ACCOUNTS_MAX + 3 {
            d.record(&format!("u{i}@example.com"), failure(0));
        }
        assert_eq!(d.dropped, 3);
        assert_eq!(d.take().len(), ACCOUNTS_MAX);
    }

    #[test]
    fn the_notice_lists_time_ip_and_listener_and_counts_the_rest() {
        let failures = AccountFailures { total: 3, listed: vec![failure(0), failure(1)] };
        let (subject, text) = notice_text("alice@example.com", &failures);
        assert_eq!(subject, "Failed logins for alice@example.com: 3");
        assert!(text.contains("192.0.2.7  submission") && text.contains("... and 1 more"), "{text}");
        assert!(text.contains("+0000"), "{text}");
    }
}
