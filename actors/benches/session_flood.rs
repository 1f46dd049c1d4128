//! What a flood of pipelined commands costs the session core per command,
//! at 1 KiB and at 1 MiB of input waiting at once (a client that wrote
//! ahead while the session waited on a recipient check). The input buffer is
//! consumed in place, so the two should cost the same per command; when the
//! buffer was shifted down after every line, the 1 MiB flood cost ~1,000×
//! more per command.
//!
//! cargo bench -p gatehouse-actors --bench session_flood

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gatehouse_actors::smtp::{Action, PeerInfo, Session, SessionConfig, SmtpLimits};
use std::sync::Arc;

fn run_flood(config: &Arc<SessionConfig>, input: &[u8]) -> usize {
    let peer = PeerInfo { ip: "192.0.2.1".parse().expect("ip"), port: 1 };
    let mut session = Session::new(config.clone(), peer, 0);
    session.receive(input, 1);
    let mut replies = 0;
    // The shell's part: take each reply, report it written.
    while let Some(action) = session.poll_action() {
        if let Action::Send(bytes) = action {
            replies += 1;
            session.written(bytes.len(), 1);
        }
    }
    replies
}

fn flood(c: &mut Criterion) {
    let limits = SmtpLimits { commands_max: 0, pending_input_bytes_max: 2 << 20, ..Default::default() };
    let config = Arc::new(SessionConfig::plain("mx.example.com", "ESMTP", limits));
    let mut group = c.benchmark_group("pipelined EHLO flood");
    group.sample_size(10);
    for bytes in [1024usize, 1024 * 1024] {
        let input = b"EHLO a\r\n".repeat(bytes / 8);
        group.throughput(Throughput::Elements((bytes / 8) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(bytes), &input, |b, input| {
            b.iter(|| assert_eq!(run_flood(&config, input), bytes / 8 + 1));
        });
    }
    group.finish();
}

criterion_group!(benches, flood);
criterion_main!(benches);
