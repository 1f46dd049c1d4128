//! The PROXY protocol (v1 text and v2 binary, as HAProxy's send-proxy and
//! send-proxy-v2 write it), read before anything else from connections whose
//! TCP peer is in `smtp.proxy_peers`, so every check sees the real client.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::smtp::PeerInfo;

/// The longest header we wait for: a v1 line is at most 107 bytes; v2 with
/// TLVs can be longer, but HAProxy's stay well under this.
pub const PROXY_HEADER_BYTES_MAX: usize = 1024;

/// What a buffer's first bytes say.
#[derive(Debug, PartialEq, Eq)]
pub enum ProxyParse {
    /// More bytes needed.
    Incomplete,
    /// A header of `used` bytes naming this client; `None` for a LOCAL or
    /// UNKNOWN header (a health check), which keeps the TCP peer.
    Done {
        client: Option<PeerInfo>,
        used: usize,
    },
    Invalid(String),
}

pub fn parse_header(buf: &[u8]) -> ProxyParse {
    use ppp::{v1, v2, HeaderResult, PartialResult};
    let result = HeaderResult::parse(buf);
    if result.is_incomplete() {
        return if buf.len() >= PROXY_HEADER_BYTES_MAX {
            ProxyParse::Invalid("header too long".into())
        } else {
            ProxyParse::Incomplete
        };
    }
    let peer = |addr: SocketAddr| Some(PeerInfo { ip: addr.ip(), port: addr.port() });
    match result {
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                v1::Addresses::Tcp4(a) => peer(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port)),
                v1::Addresses::Tcp6(a) => peer(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port)),
                v1::Addresses::Unknown => None,
            };
            ProxyParse::Done { client, used: h.header.len() }
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    peer(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    peer(SocketAddr::new(IpAddr::V6(a.source_address), a.source_port))
                }
                _ => None,
            };
            ProxyParse::Done { client, used: h.len() }
        }
        HeaderResult::V1(Err(e)) => ProxyParse::Invalid(format!("{e:?}")),
        HeaderResult::V2(Err(e)) => ProxyParse::Invalid(format!("{e:?}")),
    }
}

/// Reads the header off the socket. Returns the client it names and any
/// bytes that came after it (a client talking early), or why it failed.
pub async fn read_header(stream: &mut TcpStream, timeout: Duration) -> Result<(Option<PeerInfo>, Vec<u8>), String> {
    let mut buf = Vec::with_capacity(256);
    let read = async {
        let mut chunk = [0u8; 512];
        loop {
            match parse_header(&buf) {
                ProxyParse::Done { client, used } => return Ok((client, buf[used..].to_vec())),
                ProxyParse::Invalid(e) => return Err(format!("bad PROXY header: {e}")),
                ProxyParse::Incomplete => {}
            }
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("closed before the PROXY header".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(timeout, read).await.map_err(|_| "no PROXY header in time".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_headers() {
        let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 25\r\nEHLO x\r\n";
        let ProxyParse::Done { client, used } = parse_header(line) else { panic!() };
        assert_eq!(client, Some(PeerInfo { ip: "192.0.2.7".parse().unwrap(), port: 40000 }));
        assert_eq!(&line[used..], b"EHLO x\r\n");
        let v6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 25\r\n";
        assert!(matches!(parse_header(v6), ProxyParse::Done { client: Some(p), .. } if p.ip.is_ipv6()));
        assert_eq!(parse_header(b"PROXY UNKNOWN\r\n"), ProxyParse::Done { client: None, used: 15 });
        assert_eq!(parse_header(b"PROXY TCP4 192.0.2.7"), ProxyParse::Incomplete);
        assert!(matches!(parse_header(b"EHLO mail.example\r\n"), ProxyParse::Invalid(_)));
        assert!(matches!(parse_header(b"PROXY TCP4 1.2.3 4.5.6.7 1 2\r\n"), ProxyParse::Invalid(_)));
    }

    #[test]
    fn v2_headers() {
        let src: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let dst: SocketAddr = "198.51.100.1:25".parse().unwrap();
        let header = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (src, dst),
        )
        .build()
        .unwrap();
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"QUIT\r\n");
        let ProxyParse::Done { client, used } = parse_header(&bytes) else { panic!() };
        assert_eq!(client, Some(PeerInfo { ip: src.ip(), port: 40000 }));
        assert_eq!(used, header.len());
        assert_eq!(parse_header(&header[..10]), ProxyParse::Incomplete);
        let local = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Local,
            ppp::v2::Protocol::Unspecified,
            ppp::v2::Addresses::Unspecified,
        )
        .build()
        .unwrap();
        assert!(matches!(parse_header(&local), ProxyParse::Done { client: None, .. }));
    }
}
