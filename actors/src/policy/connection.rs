//! Connection policy: blocked IPs (intrusion prevention, replicated), and
//! per-client limits on this node (simultaneous connections, new connections
//! and messages per minute), as Postfix's anvil keeps them. The counts are
//! per node on purpose: they bound what one client costs one node, need no
//! write per connection, and a load balancer spreads a client evenly anyway.

use consensus::state::Counters;
use std::collections::HashMap;
use std::net::IpAddr;

use crate::smtp::Reply;

/// Is this IP blocked (by intrusion prevention or `gatehouse block`)?
pub fn blocked(counters: &Counters, ip: IpAddr, now_ms: u64) -> Option<Reply> {
    let block = counters.blocked_ips.get(&ip.to_string()).filter(|b| b.until_ms > now_ms)?;
    let text = format!("Client host [{ip}] blocked: {}", block.reason);
    Some(Reply::new(554, "5.7.1", &text))
}

/// The per-client limits, 0 meaning none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientLimits {
    pub connections_max: u32,
    pub connections_per_minute_max: u32,
    pub messages_per_minute_max: u32,
}

#[derive(Debug, Default, Clone)]
struct ClientCounts {
    open: u32,
    minute: u64,
    connections_this_minute: u32,
    messages_this_minute: u32,
}

/// The per-client counters of one node. Pure: the shell keeps it behind a
/// lock and passes the time in.
#[derive(Debug, Default)]
pub struct Anvil {
    clients: HashMap<IpAddr, ClientCounts>,
}

impl Anvil {
    fn counts(&mut self, ip: IpAddr, now_ms: u64) -> &mut ClientCounts {
        let minute = now_ms / 60_000;
        let c = self.clients.entry(ip).or_default();
        if c.minute != minute {
            c.minute = minute;
            c.connections_this_minute = 0;
            c.messages_this_minute = 0;
        }
        c
    }

    /// A new connection: counted and allowed, or refused (and not counted as open).
    pub fn connect(&mut self, ip: IpAddr, now_ms: u64, limits: &ClientLimits) -> Result<(), Reply> {
        let c = self.counts(ip, now_ms);
        c.connections_this_minute = c.connections_this_minute.saturating_add(1);
        if limits.connections_per_minute_max > 0 && c.connections_this_minute > limits.connections_per_minute_max {
            let text = format!("Error: too many connections from [{ip}]; try again next minute");
            return Err(Reply::new(421, "4.7.0", &text));
        }
        if limits.connections_max > 0 && c.open >= limits.connections_max {
            return Err(Reply::new(421, "4.7.0", &format!("Error: too many connections from [{ip}]")));
        }
        c.open += 1;
        Ok(())
    }

    /// A connection that `connect` allowed has closed.
    pub fn disconnect(&mut self, ip: IpAddr) {
        if let Some(c) = self.clients.get_mut(&ip) {
            c.open = c.open.saturating_sub(1);
        }
    }

    /// A new message (its first recipient) from this client.
    pub fn message(&mut self, ip: IpAddr, now_ms: u64, limits: &ClientLimits) -> Result<(), Reply> {
        let c = self.counts(ip, now_ms);
        c.messages_this_minute = c.messages_this_minute.saturating_add(1);
        if limits.messages_per_minute_max > 0 && c.messages_this_minute > limits.messages_per_minute_max {
            let text = format!("Error: too many messages from [{ip}]; try again next minute");
            return Err(Reply::new(452, "4.7.1", &text));
        }
        Ok(())
    }

    /// Forgets idle clients from past minutes, so the map stays small.
    pub fn sweep(&mut self, now_ms: u64) {
        let minute = now_ms / 60_000;
        self.clients.retain(|_, c| c.open > 0 || c.minute == minute);
    }

    pub fn open(&self, ip: IpAddr) -> u32 {
        self.clients.get(&ip).map_or(0, |c| c.open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use consensus::state::BlockedIp;

    #[test]
    fn blocked_until_the_time_given() {
        let mut c = Counters::default();
        c.blocked_ips.insert("192.0.2.7".into(), BlockedIp { until_ms: 1000, reason: "20 unknown recipients".into() });
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let r = blocked(&c, ip, 999).unwrap();
        assert_eq!((r.code, r.enhanced), (554, "5.7.1"));
        assert!(r.text.contains("20 unknown recipients"));
        assert!(blocked(&c, ip, 1000).is_none());
        assert!(blocked(&c, "192.0.2.8".parse().unwrap(), 0).is_none());
    }

    #[test]
    fn concurrency_limit() {
        let limits = ClientLimits { connections_max: 2, ..Default::default() };
        let mut a = Anvil::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(a.connect(ip, 0, &limits).is_ok());
        assert!(a.connect(ip, 0, &limits).is_ok());
        assert_eq!(a.connect(ip, 0, &limits).unwrap_err().code, 421);
        assert!(a.connect("192.0.2.8".parse().unwrap(), 0, &limits).is_ok());
        a.disconnect(ip);
        assert!(a.connect(ip, 0, &limits).is_ok());
        assert_eq!(a.open(ip), 2);
    }

    #[test]
    fn connection_rate_blocks_until_the_next_minute() {
        let limits = ClientLimits { connections_per_minute_max: 3, ..Default::default() };
        let mut a = Anvil::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let results: Vec<bool> = (0..5).map(|i| a.connect(ip, 1_000 + i, &limits).is_ok()).collect();
        assert_eq!(results, [true, true, true, false, false]);
        assert!(a.connect(ip, 59_999, &limits).is_err(), "same minute");
        assert!(a.connect(ip, 60_000, &limits).is_ok(), "next minute");
    }

    #[test]
    fn message_rate() {
        let limits = ClientLimits { messages_per_minute_max: 2, ..Default::default() };
        let mut a = Anvil::default();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        assert!(a.message(ip, 0, &limits).is_ok());
        assert!(a.message(ip, 0, &limits).is_ok());
        let r = a.message(ip, 0, &limits).unwrap_err();
        assert_eq!((r.code, r.enhanced), (452, "4.7.1"));
        assert!(a.message(ip, 60_000, &limits).is_ok());
        assert!(a.message(ip, 0, &ClientLimits::default()).is_ok(), "0 means no limit");
    }

    #[test]
    fn sweep_keeps_open_and_current() {
        let limits = ClientLimits::default();
        let mut a = Anvil::default();
        let (x, y): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        a.connect(x, 0, &limits).unwrap();
        a.connect(y, 0, &limits).unwrap();
        a.disconnect(y);
        a.sweep(120_000);
        assert_eq!(a.clients.len(), 1);
        assert_eq!(a.open(x), 1);
    }
}
