//! Reading a message corpus for the examples: files under a directory, as
//! the session would hand them on (CRLF line ends).

use gatehouse_actors::message::InboundMessage;

/// A corpus file as an inbound message.
pub fn message(body: Vec<u8>) -> InboundMessage {
    InboundMessage::from_file(&body)
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
