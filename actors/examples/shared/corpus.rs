//! Reading a message corpus for the examples: files under a directory, as
//! the session would hand them on (CRLF line ends).

use gatehouse_actors::message::{InboundMessage, PeerInfo};

/// A corpus file as an inbound message.
pub fn message(body: Vec<u8>) -> InboundMessage {
    // Corpus files end lines with LF; the stage sees CRLF as the session hands it on.
    let mut crlf = Vec::with_capacity(body.len() + body.len() / 40);
    for (i, b) in body.iter().enumerate() {
        if *b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            crlf.push(b'\r');
        }
        crlf.push(*b);
    }
    InboundMessage {
        peer: PeerInfo { ip: std::net::Ipv4Addr::new(192, 0, 2, 1).into(), port: 25 },
        helo: "client.example.org".into(),
        esmtp: true,
        mail_from: "sender@example.org".into(),
        recipients: vec![],
        body: crlf,
        smtputf8: false,
        authenticated: None,
        tls: false,
        received_ms: 0,
        skip: Default::default(),
        junk: false,
        spam_symbols: Vec::new(),
    }
}

pub fn walk(dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(walk(&path)?);
        } else {
            out.push(path);
        }
    }
    Ok(out)
}
