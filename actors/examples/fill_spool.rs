//! Fills a spool with N queued messages for the start-up benchmark
//! (bench/queue-startup): each to one remote recipient, due in a day so no
//! attempt runs while start-up is measured, with a body of SIZE bytes.
//!
//! cargo run --release -p gatehouse-actors --example fill_spool -- QUEUE.REDB N SIZE

use gatehouse_actors::queue::spool::{Spool, SpooledMessage, SpooledRecipient};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, count, size] = &args[..] else {
        return Err("usage: fill_spool QUEUE.REDB COUNT BODY_BYTES".into());
    };
    let (count, size): (usize, usize) = (count.parse()?, size.parse()?);
    let spool = Spool::open(std::path::Path::new(path))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    let mut body = b"From: <bench@example.com>\r\nSubject: queued\r\n\r\n".to_vec();
    while body.len() < size {
        body.extend_from_slice(line);
    }
    for batch in (0..count).collect::<Vec<_>>().chunks(1000) {
        let messages: Vec<SpooledMessage> = batch
            .iter()
            .map(|i| {
                let recipient = SpooledRecipient::new("user@remote.example", "user@remote.example");
                let mut m = SpooledMessage::new(
                    format!("{now:011X}01{i:06X}"),
                    "bench@example.com".into(),
                    vec![recipient],
                    body.clone(),
                    now,
                );
                m.next_attempt_ms = now + 86_400_000;
                m
            })
            .collect();
        spool.put_batch(&messages, None)?;
    }
    println!("{count} messages of {} bytes in {path}", body.len());
    Ok(())
}
