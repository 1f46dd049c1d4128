//! Cluster-wide settings: a fixed table of known keys, each with a type, a
//! default and a sentence of documentation. Only values an operator set are
//! stored; reads fall back to the default, so adding a key in a later release
//! needs no migration.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::command::ApplyError;

/// The type of a setting's value, with its bounds.
#[derive(Debug, Clone, Copy)]
pub enum SettingKind {
    Bool,
    Integer {
        min: i64,
        max: i64,
    },
    Text {
        bytes_max: usize,
    },
    Hostname,
    /// A comma-separated list of networks: CIDR (`10.0.0.0/8`) or single addresses.
    Networks,
}

/// One known setting.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    pub key: &'static str,
    pub kind: SettingKind,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every setting the cluster knows. docs/configuration.md lists the same table.
pub const SETTING_SPECS: &[SettingSpec] = &[
    SettingSpec {
        key: "smtp.hostname",
        kind: SettingKind::Hostname,
        default: "mail.gatehouse.invalid",
        doc: "Fully qualified host name announced in the banner, EHLO reply and Received headers.",
    },
    SettingSpec {
        key: "smtp.banner",
        kind: SettingKind::Text { bytes_max: 200 },
        default: "ESMTP Gatehouse",
        doc: "Text after the host name in the 220 greeting.",
    },
    SettingSpec {
        key: "smtp.primary_domain",
        kind: SettingKind::Text { bytes_max: 255 },
        default: "",
        doc: "Domain used for unqualified addresses; empty means none.",
    },
    SettingSpec {
        key: "smtp.sender_must_match_login",
        kind: SettingKind::Bool,
        default: "true",
        doc: "An authenticated client may only send with its own address as envelope sender.",
    },
    SettingSpec {
        key: "smtp.trusted_networks",
        kind: SettingKind::Networks,
        default: "",
        doc: "Clients in these networks may relay without AUTH (Postfix mynetworks). Empty by default: behind a load balancer every client can look local.",
    },
    SettingSpec {
        key: "smtp.skip_auth_local_network",
        kind: SettingKind::Bool,
        default: "false",
        doc: "Clients in smtp.trusted_networks may send on the submission ports without logging in (MailPlus: skip authentication for the local network).",
    },
    SettingSpec {
        key: "queue.lifetime_s",
        kind: SettingKind::Integer { min: 60, max: 30 * 24 * 3600 },
        default: "432000",
        doc: "How long a message may stay queued before it is bounced as undeliverable (5 days, Postfix maximal_queue_lifetime).",
    },
    SettingSpec {
        key: "queue.min_backoff_s",
        kind: SettingKind::Integer { min: 1, max: 24 * 3600 },
        default: "300",
        doc: "Wait before the first retry of a deferred message; doubles per attempt.",
    },
    SettingSpec {
        key: "queue.max_backoff_s",
        kind: SettingKind::Integer { min: 1, max: 24 * 3600 },
        default: "4000",
        doc: "Longest wait between two delivery attempts.",
    },
    SettingSpec {
        key: "queue.bounce_size_limit",
        kind: SettingKind::Integer { min: 0, max: 10 * 1024 * 1024 },
        default: "50000",
        doc: "A bounce carries the whole original message up to this many bytes, else only its headers.",
    },
    SettingSpec {
        key: "relay.smarthost",
        kind: SettingKind::Text { bytes_max: 255 },
        default: "",
        doc: "Send all remote mail to this host[:port] instead of looking up MX records (Postfix relayhost); empty means MX delivery.",
    },
    SettingSpec {
        key: "relay.port",
        kind: SettingKind::Integer { min: 1, max: 65535 },
        default: "25",
        doc: "TCP port of the MX hosts remote mail is delivered to.",
    },
    SettingSpec {
        key: "relay.connect_timeout_s",
        kind: SettingKind::Integer { min: 1, max: 600 },
        default: "30",
        doc: "How long to wait for a remote server to accept the TCP connection.",
    },
    SettingSpec {
        key: "relay.command_timeout_s",
        kind: SettingKind::Integer { min: 1, max: 3600 },
        default: "300",
        doc: "How long to wait for each reply of a remote server (greeting, EHLO, MAIL, RCPT, DATA).",
    },
    SettingSpec {
        key: "cluster.join_token_ttl_s",
        kind: SettingKind::Integer { min: 60, max: 7 * 24 * 3600 },
        default: "3600",
        doc: "How long a join token printed by `cluster add-node` stays valid.",
    },
    SettingSpec {
        key: "greylist.delay_s",
        kind: SettingKind::Integer { min: 0, max: 24 * 3600 },
        default: "300",
        doc: "How long a new greylist triplet must wait before a retry passes.",
    },
    SettingSpec {
        key: "greylist.retry_window_s",
        kind: SettingKind::Integer { min: 60, max: 7 * 24 * 3600 },
        default: "86400",
        doc: "How long after the first attempt a retry may come and still pass.",
    },
    SettingSpec {
        key: "greylist.pass_ttl_s",
        kind: SettingKind::Integer { min: 3600, max: 365 * 24 * 3600 },
        default: "3110400",
        doc: "How long a passed triplet stays whitelisted (36 days).",
    },
];

/// A settings value after validation.
pub type SettingValue = String;

/// The settings an operator changed from their defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// Only keys listed in `SETTING_SPECS`, each validated against its kind.
    pub values: BTreeMap<String, SettingValue>,
}

impl Settings {
    pub fn spec(key: &str) -> Result<&'static SettingSpec, ApplyError> {
        SETTING_SPECS.iter().find(|s| s.key == key).ok_or_else(|| ApplyError::UnknownSetting(key.to_string()))
    }

    /// The effective value: the one set, else the default.
    pub fn get(&self, key: &str) -> Result<String, ApplyError> {
        let spec = Self::spec(key)?;
        Ok(self.values.get(key).cloned().unwrap_or_else(|| spec.default.to_string()))
    }

    /// An integer setting; the spec guarantees the stored text parses.
    pub fn get_i64(&self, key: &str) -> Result<i64, ApplyError> {
        let text = self.get(key)?;
        text.parse().map_err(|_| ApplyError::InvalidSetting { key: key.to_string(), reason: "not an integer".into() })
    }

    /// Checks a value against its key's kind and returns it in canonical form.
    pub fn validate(key: &str, value: &str) -> Result<String, ApplyError> {
        let spec = Self::spec(key)?;
        let bad = |reason: String| ApplyError::InvalidSetting { key: key.to_string(), reason };
        match spec.kind {
            SettingKind::Bool => match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Ok("true".into()),
                "false" | "no" | "off" | "0" => Ok("false".into()),
                _ => Err(bad(format!("{value:?} is not a boolean (true/false)"))),
            },
            SettingKind::Integer { min, max } => {
                let n: i64 = value.trim().parse().map_err(|_| bad(format!("{value:?} is not an integer")))?;
                if n < min || n > max {
                    return Err(bad(format!("{n} is outside {min}..={max}")));
                }
                Ok(n.to_string())
            }
            SettingKind::Text { bytes_max } => {
                if value.len() > bytes_max || value.chars().any(|c| c.is_control()) {
                    return Err(bad(format!("must be at most {bytes_max} bytes with no control characters")));
                }
                Ok(value.to_string())
            }
            SettingKind::Hostname => {
                crate::address::DomainName::parse(value).map(|d| d.to_string()).map_err(|e| bad(e.to_string()))
            }
            SettingKind::Networks => parse_networks(value).map(|nets| join_networks(&nets)).map_err(bad),
        }
    }

    /// A `Networks` setting as parsed networks.
    pub fn get_networks(&self, key: &str) -> Result<Vec<ipnet::IpNet>, ApplyError> {
        let text = self.get(key)?;
        parse_networks(&text).map_err(|reason| ApplyError::InvalidSetting { key: key.to_string(), reason })
    }
}

/// Parses `10.0.0.0/8, 192.168.1.7, ::1/128`; a bare address is a host network.
pub fn parse_networks(text: &str) -> Result<Vec<ipnet::IpNet>, String> {
    let mut out = Vec::new();
    for item in text.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        let net = if item.contains('/') {
            item.parse::<ipnet::IpNet>().map_err(|_| format!("{item:?} is not a network (CIDR like 10.0.0.0/8)"))?
        } else {
            let ip: std::net::IpAddr =
                item.parse().map_err(|_| format!("{item:?} is not an IP address or CIDR network"))?;
            ipnet::IpNet::from(ip)
        };
        if net.trunc() != net {
            return Err(format!("{item:?} has host bits set; did you mean {}?", net.trunc()));
        }
        out.push(net);
    }
    Ok(out)
}

fn join_networks(nets: &[ipnet::IpNet]) -> String {
    nets.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod network_tests {
    use super::*;

    #[test]
    fn networks_table() {
        let ok = |v: &str| Settings::validate("smtp.trusted_networks", v);
        assert_eq!(ok("").unwrap(), "");
        assert_eq!(ok("10.0.0.0/8,192.168.1.7 ::1").unwrap(), "10.0.0.0/8, 192.168.1.7/32, ::1/128");
        assert_eq!(ok(" 2001:db8::/32 , 127.0.0.0/8 ").unwrap(), "2001:db8::/32, 127.0.0.0/8");
        for (bad, says) in [
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("10.0.0.0/33", "not a network"),
            ("example.com", "not an IP address"),
        ] {
            let e = ok(bad).unwrap_err();
            assert_eq!(e.field(), "smtp.trusted_networks");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }
}
