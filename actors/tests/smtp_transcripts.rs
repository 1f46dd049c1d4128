//! Golden SMTP transcripts: client bytes in, server bytes out, driven through
//! the sans-IO session core with a table resolver and a fake store.

use gatehouse_actors::smtp::{
    Action, InboundMessage, PeerInfo, RecipientVerdict, Reply, Session, SessionConfig, SmtpLimits,
};
use proptest::prelude::*;
use std::sync::Arc;

struct Run {
    tls_requests: usize,
    server: String,
    stored: Vec<InboundMessage>,
    closed: bool,
    pauses: usize,
}

fn config(limits: SmtpLimits) -> Arc<SessionConfig> {
    Arc::new(SessionConfig::plain("mx.example.com", "ESMTP Gatehouse", limits))
}

fn resolve(address: &str) -> RecipientVerdict {
    match address {
        "alice@example.com" | "bob@example.com" => RecipientVerdict::Accept { deliver_to: vec![address.to_string()] },
        _ => RecipientVerdict::Reject(Reply::new(550, "5.1.1", "Recipient address rejected: user unknown")),
    }
}

fn pump(session: &mut Session, run: &mut Run, now: u64) {
    while let Some(action) = session.poll_action() {
        match action {
            Action::Send(bytes) => {
                run.server.push_str(&String::from_utf8(bytes.clone()).unwrap());
                session.written(bytes.len(), now);
            }
            Action::CheckRecipient { address, .. } => session.recipient_verdict(resolve(&address), now),
            Action::StartTls => {
                run.tls_requests += 1;
                session.tls_started(now);
            }
            Action::Authenticate { username, password } => {
                let ok = username == "alice@example.com" && password == "secret";
                let result =
                    if ok { Ok(username) } else { Err(Reply::new(535, "5.7.8", "Authentication credentials invalid")) };
                session.auth_result(result, now);
            }
            Action::Store(message) => {
                run.stored.push(*message);
                let id = format!("Q{}", run.stored.len());
                session.stored(Ok(id), now);
            }
            Action::Close => run.closed = true,
            Action::Pause { ms } => {
                assert_eq!(ms, 1000);
                run.pauses += 1;
                session.resume(now);
            }
        }
    }
}

fn drive_with(limits: SmtpLimits, chunks: &[&[u8]]) -> Run {
    drive_config(config(limits), chunks)
}

fn drive_config(config: Arc<SessionConfig>, chunks: &[&[u8]]) -> Run {
    let peer = PeerInfo { ip: "192.0.2.1".parse().unwrap(), port: 40000 };
    let mut session = Session::new(config, peer, 1000);
    let mut run = Run { tls_requests: 0, server: String::new(), stored: Vec::new(), closed: false, pauses: 0 };
    pump(&mut session, &mut run, 1000);
    for chunk in chunks {
        session.receive(chunk, 1001);
        pump(&mut session, &mut run, 1001);
    }
    run
}

fn drive(chunks: &[&[u8]]) -> Run {
    drive_with(SmtpLimits::default(), chunks)
}

#[test]
fn golden_transcript() {
    let run = drive(&[
        b"EHLO client.example.org\r\n",
        b"MAIL FROM:<sender@example.org> SIZE=100\r\n",
        b"RCPT TO:<alice@example.com>\r\n",
        b"RCPT TO:<nobody@example.com>\r\n",
        b"DATA\r\n",
        b"Subject: hi\r\n\r\n..dotted\r\nbody\r\n.\r\n",
        b"VRFY alice\r\n",
        b"QUIT\r\n",
    ]);
    let want = "220 mx.example.com ESMTP Gatehouse\r\n\
                250-mx.example.com\r\n250-PIPELINING\r\n250-SIZE 26214400\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n\
                250 2.1.0 Ok\r\n\
                250 2.1.5 Ok\r\n\
                550 5.1.1 Recipient address rejected: user unknown\r\n\
                354 End data with <CR><LF>.<CR><LF>\r\n\
                250 2.0.0 Ok: queued as Q1\r\n\
                252 2.5.0 Cannot VRFY user, but will accept message and attempt delivery\r\n\
                221 2.0.0 Bye\r\n";
    assert_eq!(run.server, want);
    assert!(run.closed);
    assert_eq!(run.stored.len(), 1);
    let m = &run.stored[0];
    assert_eq!(m.mail_from, "sender@example.org");
    assert_eq!(m.helo, "client.example.org");
    assert_eq!(m.recipients.len(), 1);
    assert_eq!(m.body, b"Subject: hi\r\n\r\n.dotted\r\nbody\r\n");
}

#[test]
fn pipelined_commands_in_one_write_get_replies_in_order() {
    let one = drive(&[b"EHLO c\r\nMAIL FROM:<s@x.org>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nhello\r\n.\r\nQUIT\r\n"]);
    let split = drive(&[
        b"EHLO c\r\n",
        b"MAIL FROM:<s@x.org>\r\n",
        b"RCPT TO:<nobody@example.com>\r\n",
        b"RCPT TO:<bob@example.com>\r\n",
        b"DATA\r\n",
        b"hello\r\n.\r\n",
        b"QUIT\r\n",
    ]);
    assert_eq!(one.server, split.server);
    assert_eq!(one.stored, split.stored);
    assert_eq!(one.stored.len(), 1);
}

/// RFC 5321 end-of-data lookalikes, each followed by a complete second
/// transaction: never two messages accepted.
#[test]
fn smuggling_battery() {
    for marker in [&b"\n.\n"[..], b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r"] {
        let mut input =
            b"EHLO c\r\nMAIL FROM:<s@x.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nSubject: one\r\n\r\nfirst"
                .to_vec();
        input.extend_from_slice(marker);
        input.extend_from_slice(b"MAIL FROM:<evil@x.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nSubject: two\r\n\r\nsmuggled\r\n.\r\nQUIT\r\n");
        let whole = drive(&[&input]);
        let bytewise: Vec<&[u8]> = input.chunks(1).collect();
        let trickled = drive(&bytewise);
        for run in [&whole, &trickled] {
            assert_eq!(run.stored.len(), 0, "marker {marker:?}: {}", run.server);
            assert!(run.server.contains("550 5.5.2"), "marker {marker:?}: {}", run.server);
            assert_eq!(run.server.matches("354 ").count(), 1, "marker {marker:?}: second DATA must not start");
        }
        assert_eq!(whole.server, trickled.server);
    }
}

#[test]
fn sequencing_and_syntax_errors() {
    let table: Vec<(&[u8], &str)> = vec![
        (b"MAIL FROM:<a@b.org>\r\n", "503 5.5.1 Send EHLO or HELO first"),
        (b"EHLO c\r\nRCPT TO:<alice@example.com>\r\n", "503 5.5.1 Need MAIL before RCPT"),
        (b"EHLO c\r\nDATA\r\n", "503 5.5.1 Need MAIL command"),
        (b"EHLO c\r\nMAIL FROM:<a@b.org>\r\nDATA\r\n", "554 5.5.1 No valid recipients"),
        (b"EHLO c\r\nMAIL FROM:<a@b.org>\r\nMAIL FROM:<a@b.org>\r\n", "503 5.5.1 Nested MAIL command"),
        (b"EHLO c\r\nMAIL FROM:<a@b.org> SIZE=999999999\r\n", "552 5.3.4"),
        (b"HELO c\r\nMAIL FROM:<a@b.org> SIZE=10\r\n", "555 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:<a@b.org> BODY=BINARYMIME\r\n", "555 5.5.4"),
        (b"EHLO c\r\nMAIL FROM:<r\xc3\xa9@b.org>\r\n", "553 5.6.7"),
        (b"NOOP\nQUIT\r\n", "500 5.5.2 Syntax error: bare <CR> or <LF> received"),
        (b"FOO\r\n", "500 5.5.2 Command not recognized"),
        (b"EXPN staff\r\n", "502 5.5.1"),
        (b"STARTTLS\r\n", "502 5.5.1"),
        (b"EHLO c\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==\r\n", "502 5.5.1"),
        (b"HELP\r\n", "214 2.0.0"),
        (b"RSET\r\n", "250 2.0.0 Ok"),
        (b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nx\r\n.\r\n", "250 2.0.0 Ok: queued as Q1"),
    ];
    for (input, want) in table {
        let run = drive(&[input]);
        assert!(run.server.contains(want), "{:?}: want {want:?} in\n{}", String::from_utf8_lossy(input), run.server);
    }
}

#[test]
fn limits_have_named_replies() {
    let limits = SmtpLimits { recipients_max: 2, errors_max: 3, command_line_bytes_max: 64, ..Default::default() };
    let run = drive_with(
        limits.clone(),
        &[b"EHLO c\r\nMAIL FROM:<a@b.org>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nRCPT TO:<alice@example.com>\r\n"],
    );
    assert!(run.server.ends_with("452 4.5.3 Too many recipients (limit 2)\r\n"), "{}", run.server);
    let long = [b"NOOP ".to_vec(), vec![b'x'; 100], b"\r\n".to_vec()].concat();
    let run = drive_with(limits.clone(), &[&long]);
    assert!(run.server.contains("500 5.5.6 Command line too long"), "{}", run.server);
    let run = drive_with(limits, &[b"FOO\r\nBAR\r\nBAZ\r\nNOOP\r\n"]);
    assert!(run.server.ends_with("421 4.7.0 Too many errors; closing connection\r\n"), "{}", run.server);
    assert!(run.closed && !run.server.contains("250 2.0.0 Ok"), "nothing is answered after closing");
}

#[test]
fn idle_and_session_timeouts_close_with_421() {
    let limits =
        SmtpLimits { command_timeout_ms: 100, data_timeout_ms: 50, session_ms_max: 1000, ..Default::default() };
    let peer = PeerInfo { ip: "192.0.2.1".parse().unwrap(), port: 1 };
    let mut s = Session::new(config(limits), peer, 0);
    assert_eq!(s.deadline_ms(), Some(100));
    s.timeout(99);
    assert!(!s.is_closed());
    s.receive(b"EHLO c\r\n", 90);
    assert_eq!(s.deadline_ms(), Some(190));
    s.timeout(190);
    assert!(s.is_closed());
    let sent: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
    assert!(sent.contains(&Action::Send(b"421 4.4.2 Timeout exceeded; closing connection\r\n".to_vec())));
    assert_eq!(sent.last(), Some(&Action::Close));
}

proptest! {
    /// Any bytes, cut anywhere: no panic, replies are well-formed lines, and
    /// the same bytes cut differently give the same transcript.
    #[test]
    fn arbitrary_input_is_handled_the_same_however_it_is_cut(
        parts in prop::collection::vec(prop_oneof![
            Just(b"EHLO c\r\n".to_vec()), Just(b"MAIL FROM:<a@b.org>\r\n".to_vec()),
            Just(b"RCPT TO:<alice@example.com>\r\n".to_vec()), Just(b"DATA\r\n".to_vec()),
            Just(b"\r\n.\r\n".to_vec()), Just(b"BDAT 5\r\n".to_vec()), Just(b"BDAT 3 LAST\r\n".to_vec()), Just(b"\n".to_vec()), Just(b"\r".to_vec()), Just(b".".to_vec()),
            prop::collection::vec(any::<u8>(), 0..20),
        ], 0..30),
        cut in 1usize..17,
    ) {
        let input: Vec<u8> = parts.concat();
        let whole = drive(&[&input]);
        let pieces: Vec<&[u8]> = input.chunks(cut).collect();
        let cut_run = drive(&pieces);
        prop_assert_eq!(&whole.server, &cut_run.server);
        prop_assert_eq!(whole.stored.len(), cut_run.stored.len());
        for line in whole.server.split_terminator("\r\n") {
            let code: u16 = line[..3].parse().unwrap();
            prop_assert!((200..600).contains(&code), "bad reply line {:?}", line);
        }
        for m in &whole.stored {
            prop_assert!(!m.body.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "bare LF stored");
        }
    }
}

fn submission() -> Arc<SessionConfig> {
    let mut c = SessionConfig::plain("mx.example.com", "ESMTP Gatehouse", SmtpLimits::default());
    c.tls_available = true;
    c.auth_available = true;
    c.require_auth = true;
    c.sender_must_match_login = true;
    Arc::new(c)
}

/// "STARTTLS\r\nRSET\r\n" in one write: the RSET sent before the handshake
/// is never answered, and the session starts over after it.
#[test]
fn starttls_discards_injected_commands() {
    let run = drive_config(submission(), &[b"EHLO c\r\n", b"STARTTLS\r\nRSET\r\n", b"EHLO c\r\n"]);
    assert_eq!(run.tls_requests, 1);
    let after_tls = run.server.split("220 2.0.0 Ready to start TLS\r\n").nth(1).unwrap();
    assert!(after_tls.starts_with("250-mx.example.com\r\n"), "the injected RSET got an answer: {after_tls}");
    assert!(!after_tls.contains("250 2.0.0 Ok"), "{after_tls}");
    assert!(!after_tls.contains("STARTTLS"), "STARTTLS is not offered twice");
    assert!(after_tls.contains("AUTH PLAIN LOGIN"), "AUTH is offered once TLS is on");
    assert!(!run.server.split("220 2.0.0").next().unwrap().contains("AUTH"), "no AUTH before TLS");
}

#[test]
fn auth_only_under_tls_and_required_for_submission() {
    let plain_auth = b"AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHNlY3JldA==\r\n";
    let run = drive_config(submission(), &[b"EHLO c\r\n", plain_auth]);
    assert!(
        run.server.ends_with("538 5.7.11 Encryption required for requested authentication mechanism\r\n"),
        "{}",
        run.server
    );

    let run = drive_config(submission(), &[b"EHLO c\r\nSTARTTLS\r\n", b"EHLO c\r\nMAIL FROM:<alice@example.com>\r\n"]);
    assert!(run.server.ends_with("530 5.7.0 Authentication required\r\n"), "{}", run.server);

    let run = drive_config(
        submission(),
        &[b"EHLO c\r\nSTARTTLS\r\n", b"EHLO c\r\n", plain_auth, b"MAIL FROM:<bob@example.com>\r\nMAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\nhi\r\n.\r\n"],
    );
    assert!(run.server.contains("235 2.7.0 Authentication successful\r\n"), "{}", run.server);
    assert!(
        run.server.contains("553 5.7.1 Sender address rejected: not owned by user alice@example.com\r\n"),
        "{}",
        run.server
    );
    assert_eq!(run.stored.len(), 1);
    assert_eq!(run.stored[0].authenticated.as_deref(), Some("alice@example.com"));
    assert!(run.stored[0].tls);

    // AUTH LOGIN with a wrong password, then a cancelled dialog.
    let run = drive_config(
        submission(),
        &[
            b"EHLO c\r\nSTARTTLS\r\n",
            b"EHLO c\r\nAUTH LOGIN\r\n",
            b"YWxpY2VAZXhhbXBsZS5jb20=\r\n",
            b"d3Jvbmc=\r\n",
            b"AUTH LOGIN\r\n*\r\n",
        ],
    );
    assert!(run.server.contains("334 VXNlcm5hbWU6\r\n334 UGFzc3dvcmQ6\r\n535 5.7.8"), "{}", run.server);
    assert!(run.server.ends_with("501 5.0.0 Authentication cancelled\r\n"), "{}", run.server);
}

#[test]
fn bdat_chunks_build_one_message() {
    let run = drive(&[
        b"EHLO c\r\nMAIL FROM:<s@x.org>\r\nRCPT TO:<alice@example.com>\r\nBDAT 12\r\nSubject: a\r\n",
        b"BDAT 16 LAST\r\n\r\n.no stuffing\r\nQUIT\r\n",
    ]);
    assert!(run.server.contains("250 2.0.0 12 octets received\r\n"), "{}", run.server);
    assert!(run.server.contains("250 2.0.0 Ok: queued as Q1\r\n221 2.0.0 Bye\r\n"), "{}", run.server);
    assert_eq!(run.stored[0].body, b"Subject: a\r\n\r\n.no stuffing\r\n");

    // Chunk bytes that look like commands are data, however they are cut.
    let input: &[u8] = b"EHLO c\r\nMAIL FROM:<s@x.org>\r\nRCPT TO:<alice@example.com>\r\nBDAT 20 LAST\r\nRSET\r\nQUIT\r\nNOOP\r\n\r\nQUIT\r\n";
    let whole = drive(&[input]);
    let trickled = drive(&input.chunks(3).collect::<Vec<_>>());
    assert_eq!(whole.server, trickled.server);
    assert_eq!(whole.stored.len(), 1);
    assert_eq!(whole.stored[0].body, b"RSET\r\nQUIT\r\nNOOP\r\n\r\n");
}

#[test]
fn bdat_refusals_still_consume_the_chunk() {
    let run = drive(&[b"EHLO c\r\nBDAT 6\r\nRSET\r\nNOOP\r\n"]);
    assert!(run.server.ends_with("503 5.5.1 Need MAIL command\r\n250 2.0.0 Ok\r\n"), "{}", run.server);
    let run =
        drive(&[b"EHLO c\r\nMAIL FROM:<s@x.org>\r\nRCPT TO:<alice@example.com>\r\nBDAT 5 LAST\r\na\nb\r\nNOOP\r\n"]);
    assert!(
        run.server.ends_with(
            "550 5.5.2 Message refused: bare <CR> or <LF> in data (lines must end in CRLF)\r\n250 2.0.0 Ok\r\n"
        ),
        "{}",
        run.server
    );
    assert!(run.stored.is_empty());
    let run = drive(&[b"EHLO c\r\nMAIL FROM:<s@x.org>\r\nRCPT TO:<alice@example.com>\r\nBDAT 3\r\nab\n", b"DATA\r\n"]);
    assert!(run.server.ends_with("503 5.5.1 DATA not allowed after BDAT\r\n"), "{}", run.server);
}

fn codes(server: &str) -> Vec<&str> {
    server.lines().filter(|l| l.as_bytes().get(3) == Some(&b' ')).map(|l| &l[..3]).collect()
}

#[test]
fn junk_commands_are_tarpitted_then_cut_off() {
    let cfg =
        SessionConfig { junk_commands_max: 25, ..SessionConfig::plain("mx.example.com", "x", SmtpLimits::default()) };
    let noops = b"NOOP\r\n".repeat(30);
    let run = drive_config(Arc::new(cfg.clone()), &[b"EHLO c.example\r\n", &noops]);
    let replies = codes(&run.server);
    assert_eq!(replies.iter().filter(|c| **c == "250").count(), 1 + 25, "{}", run.server);
    assert_eq!(run.pauses, 2, "a second's pause at the 10th and 20th");
    assert!(run.server.ends_with("421 4.7.0 Too many junk commands; closing connection\r\n"), "{}", run.server);
    assert!(run.closed);
    // A completed message resets the count.
    let mut chunks: Vec<Vec<u8>> = vec![b"EHLO c.example\r\n".to_vec(), b"RSET\r\n".repeat(20)];
    chunks.push(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n".to_vec());
    chunks.push(b"Subject: x\r\n\r\nx\r\n.\r\n".to_vec());
    chunks.push(b"VRFY alice\r\n".repeat(20));
    let refs: Vec<&[u8]> = chunks.iter().map(|c| c.as_slice()).collect();
    let run = drive_config(Arc::new(cfg.clone()), &refs);
    assert!(!run.closed, "{}", run.server);
    assert_eq!(run.stored.len(), 1);
    // No limit when 0.
    let run = drive(&[b"EHLO c.example\r\n", &b"NOOP\r\n".repeat(150)]);
    assert!(!run.closed);
    assert_eq!(run.pauses, 0);
}

#[test]
fn pregreet_table() {
    let peer = PeerInfo { ip: "192.0.2.1".parse().unwrap(), port: 40000 };
    // (reject_pregreet, client talks first, expected first reply code)
    for (reject, early, want) in [(true, true, "554"), (true, false, "220"), (false, true, "220")] {
        let cfg = SessionConfig {
            reject_pregreet: reject,
            ..SessionConfig::plain("mx.example.com", "x", SmtpLimits::default())
        };
        let mut session = Session::before_greeting(Arc::new(cfg), peer.clone(), 0);
        let mut run = Run { tls_requests: 0, server: String::new(), stored: Vec::new(), closed: false, pauses: 0 };
        if early {
            session.receive(b"EHLO early.example\r\n", 1);
            pump(&mut session, &mut run, 1);
            assert!(run.server.is_empty(), "nothing before the greeting");
            assert!(session.pregreeted());
        }
        session.greet(2);
        pump(&mut session, &mut run, 2);
        assert_eq!(codes(&run.server)[0], want, "reject={reject} early={early}: {}", run.server);
        if want == "554" {
            assert!(run.server.contains("5.5.1"));
            assert!(run.closed);
        } else if early {
            assert_eq!(codes(&run.server), ["220", "250"], "early EHLO answered after the greeting");
        }
    }
}

#[test]
fn unauthorised_pipelining_table() {
    let on = SessionConfig {
        reject_unauth_pipelining: true,
        ..SessionConfig::plain("mx.example.com", "x", SmtpLimits::default())
    };
    let off = SessionConfig::plain("mx.example.com", "x", SmtpLimits::default());
    let body: &[u8] = b"Subject: x\r\n\r\nx\r\n.\r\n";
    // (config, chunks, refused?)
    let table: Vec<(&SessionConfig, Vec<&[u8]>, bool)> = vec![
        (&on, vec![b"HELO c.example\r\nMAIL FROM:<a@example.org>\r\n"], true),
        (
            &on,
            vec![b"EHLO c.example\r\n", b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n", body],
            false,
        ),
        (
            &on,
            vec![
                b"EHLO c.example\r\n",
                b"MAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\nSubject: x\r\n",
            ],
            true,
        ),
        (
            &on,
            vec![
                b"HELO c.example\r\n",
                b"MAIL FROM:<a@example.org>\r\n",
                b"RCPT TO:<alice@example.com>\r\n",
                b"DATA\r\n",
                body,
            ],
            false,
        ),
        (
            &off,
            vec![b"HELO c.example\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n", body],
            false,
        ),
    ];
    for (i, (cfg, chunks, refused)) in table.into_iter().enumerate() {
        let run = drive_config(Arc::new(cfg.clone()), &chunks);
        let said = run.server.contains("554 5.5.1 Error: improper use of SMTP command pipelining");
        assert_eq!(said, refused, "case {i}: {}", run.server);
        assert_eq!(run.closed, refused, "case {i}");
        assert_eq!(run.stored.len(), usize::from(!refused), "case {i}");
    }
}

/// Drives a session with each write at its own time (ms).
fn drive_at(writes: &[(u64, &[u8])]) -> Run {
    let peer = PeerInfo { ip: "192.0.2.1".parse().unwrap(), port: 40000 };
    let mut session = Session::new(config(SmtpLimits::default()), peer, 1_000);
    let mut run = Run { tls_requests: 0, server: String::new(), stored: Vec::new(), closed: false, pauses: 0 };
    pump(&mut session, &mut run, 1_000);
    for (now, bytes) in writes {
        session.receive(bytes, *now);
        pump(&mut session, &mut run, *now);
    }
    run
}

const ENVELOPE: &[u8] = b"EHLO c\r\nMAIL FROM:<s@x.org>\r\nRCPT TO:<alice@example.com>\r\n";

/// Every CHUNKING edge (RFC 3030): the message's arrival time is when its
/// LAST chunk came, whatever that chunk's size — never zero.
#[test]
fn chunking_edges() {
    // BDAT 0 LAST alone: an empty message, stamped when it arrived.
    let run = drive_at(&[(5_000, ENVELOPE), (7_000, b"BDAT 0 LAST\r\n")]);
    assert!(run.server.ends_with("250 2.0.0 Ok: queued as Q1\r\n"), "{}", run.server);
    assert_eq!(run.stored[0].body, b"");
    assert_eq!(run.stored[0].received_ms, 7_000);

    // Chunks, then BDAT 0 LAST: the body is the chunks, the time the last one's.
    let run = drive_at(&[(5_000, ENVELOPE), (6_000, b"BDAT 4\r\nab\r\n"), (9_000, b"BDAT 0 LAST\r\n")]);
    assert!(run.server.contains("250 2.0.0 4 octets received\r\n"), "{}", run.server);
    assert_eq!(run.stored[0].body, b"ab\r\n");
    assert_eq!(run.stored[0].received_ms, 9_000);

    // BDAT 0 without LAST is an empty chunk, acknowledged.
    let run = drive_at(&[(5_000, ENVELOPE), (6_000, b"BDAT 0\r\nBDAT 4 LAST\r\nab\r\n")]);
    assert!(run.server.contains("250 2.0.0 0 octets received\r\n"), "{}", run.server);
    assert_eq!(run.stored[0].body, b"ab\r\n");

    // A chunk after LAST belongs to no transaction: refused, and its bytes
    // are read as data, not as commands.
    let run = drive_at(&[(5_000, ENVELOPE), (6_000, b"BDAT 4 LAST\r\nab\r\nBDAT 6\r\nQUIT\r\nNOOP\r\n")]);
    assert_eq!(run.stored.len(), 1);
    assert!(run.server.ends_with("503 5.5.1 Need MAIL command\r\n250 2.0.0 Ok\r\n"), "{}", run.server);
    assert!(!run.closed);

    // DATA after BDAT is refused; the BDAT transaction goes on.
    let run = drive_at(&[(5_000, ENVELOPE), (6_000, b"BDAT 4\r\nab\r\nDATA\r\nBDAT 4 LAST\r\ncd\r\n")]);
    assert!(run.server.contains("503 5.5.1 DATA not allowed after BDAT\r\n"), "{}", run.server);
    assert_eq!(run.stored[0].body, b"ab\r\ncd\r\n");

    // BDAT inside DATA is message text; after the message, a BDAT needs a new MAIL.
    let run = drive_at(&[(5_000, ENVELOPE), (6_000, b"DATA\r\nBDAT 3 LAST\r\n.\r\nBDAT 2 LAST\r\nhi")]);
    assert_eq!(run.stored.len(), 1);
    assert_eq!(run.stored[0].body, b"BDAT 3 LAST\r\n");
    assert!(run.server.ends_with("503 5.5.1 Need MAIL command\r\n"), "{}", run.server);

    // RSET between chunks drops the chunks; the LAST chunk then has no transaction.
    let run = drive_at(&[(5_000, ENVELOPE), (6_000, b"BDAT 4\r\nab\r\nRSET\r\nBDAT 4 LAST\r\ncd\r\n")]);
    assert!(run.stored.is_empty());
    assert!(run.server.ends_with("250 2.0.0 Ok\r\n503 5.5.1 Need MAIL command\r\n"), "{}", run.server);

    // A size that is not a number is a syntax error, not a chunk.
    let run = drive_at(&[(5_000, ENVELOPE), (6_000, b"BDAT x\r\nNOOP\r\n")]);
    assert!(run.server.contains("501 5.5.4"), "{}", run.server);
    assert!(run.server.ends_with("250 2.0.0 Ok\r\n"), "{}", run.server);
}

/// The input buffer is consumed in place: a long pipelined flood is answered
/// in full and in order (the cost per command is benchmarked in bench/).
#[test]
fn a_pipelined_flood_is_answered_in_order_and_capped() {
    let flood = b"NOOP\r\n".repeat(5_000);
    let run = drive_with(SmtpLimits { commands_max: 0, ..Default::default() }, &[b"EHLO c\r\n", &flood]);
    assert_eq!(run.server.matches("250 2.0.0 Ok\r\n").count(), 5_000);
    assert!(!run.closed);
    let capped = drive_with(SmtpLimits { commands_max: 100, ..Default::default() }, &[b"EHLO c\r\n", &flood]);
    assert_eq!(capped.server.matches("250 2.0.0 Ok\r\n").count(), 99);
    assert!(capped.server.ends_with("421 4.7.0 Too many commands; closing connection\r\n"), "{}", capped.server);
    assert!(capped.closed);
}

/// Replies the client has not taken hold the input back: with nothing
/// reported written, the session stops at `output_bytes_max` and asks for no
/// more input; each write it hears of lets it go on.
#[test]
fn unsent_replies_stop_the_reading() {
    let limits = SmtpLimits { output_bytes_max: 100, ..Default::default() };
    let peer = PeerInfo { ip: "192.0.2.1".parse().unwrap(), port: 1 };
    let mut s = Session::new(config(limits), peer, 0);
    let greeting = s.poll_action();
    assert!(matches!(greeting, Some(Action::Send(_))));
    s.receive(&b"HELO c\r\n".repeat(20), 1);
    let mut sent = 0;
    let mut replies = 0;
    while let Some(Action::Send(bytes)) = s.poll_action() {
        sent += bytes.len();
        replies += 1;
    }
    assert!(replies < 20, "{replies} replies went out unread");
    assert_eq!(s.input_room(), 0, "no more input while replies are unread");
    while sent > 0 {
        s.written(std::mem::take(&mut sent), 2);
        while let Some(Action::Send(bytes)) = s.poll_action() {
            sent += bytes.len();
            replies += 1;
        }
    }
    assert_eq!(replies, 20);
    assert!(s.input_room() > 0);
}

/// One step of a random client.
#[derive(Debug, Clone)]
enum Step {
    Send(Vec<u8>),
    /// The shell reports this many reply bytes written.
    Written(usize),
    /// Time passes (ms).
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    let token = prop_oneof![
        Just(b"EHLO c\r\n".to_vec()),
        Just(b"HELO c\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b.org>\r\n".to_vec()),
        Just(b"MAIL FROM:<a@b.org> SIZE=99999999999\r\n".to_vec()),
        Just(b"RCPT TO:<alice@example.com>\r\n".to_vec()),
        Just(b"RCPT TO:<nobody@example.com>\r\n".to_vec()),
        Just(b"DATA\r\n".to_vec()),
        Just(b"\r\n.\r\n".to_vec()),
        Just(b"RSET\r\nNOOP\r\n".to_vec()),
        Just(b"STARTTLS\r\n".to_vec()),
        Just(b"AUTH PLAIN\r\n".to_vec()),
        Just(b"QUIT\r\n".to_vec()),
        (0usize..40, any::<bool>())
            .prop_map(|(n, last)| format!("BDAT {n}{}\r\n", if last { " LAST" } else { "" }).into_bytes()),
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'A')], 0..16),
    ];
    prop_oneof![
        6 => prop::collection::vec(token, 1..6).prop_map(|t| Step::Send(t.concat())),
        2 => (0usize..400).prop_map(Step::Written),
        1 => (0u64..400_000).prop_map(Step::Wait),
    ]
}

proptest! {
    // 100,000 random sessions (the hardening issue's bar): run by scripts/test
    // like every other test, about half a minute in a debug build.
    #![proptest_config(ProptestConfig { cases: 100_000, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random clients under tight random limits: no panic, every reply line
    /// well formed, buffered input never past its bound, and a closed
    /// session stays closed and silent.
    #[test]
    fn random_clients_keep_the_session_core_within_its_bounds(
        steps in prop::collection::vec(step(), 0..24),
        pending in 16usize..512,
        output in 0usize..300,
        commands in 0u64..30,
        errors in 1u32..6,
    ) {
        let limits = SmtpLimits {
            pending_input_bytes_max: pending,
            output_bytes_max: output,
            commands_max: commands,
            errors_max: errors,
            command_line_bytes_max: 64,
            data_line_bytes_max: 80,
            message_bytes_max: 300,
            command_timeout_ms: 100_000,
            data_timeout_ms: 50_000,
            session_ms_max: 1_000_000,
            ..Default::default()
        };
        let mut c = SessionConfig::plain("mx.example.com", "ESMTP", limits);
        c.tls_available = true;
        c.auth_available = true;
        let peer = PeerInfo { ip: "192.0.2.1".parse().unwrap(), port: 1 };
        let mut s = Session::new(Arc::new(c), peer, 0);
        let mut now = 0u64;
        let mut out = Vec::<u8>::new();
        let mut closed_at = None;
        for step in steps {
            match step {
                Step::Send(bytes) => s.receive(&bytes, now),
                Step::Written(n) => s.written(n, now),
                Step::Wait(ms) => {
                    now += ms;
                    s.timeout(now);
                }
            }
            while let Some(action) = s.poll_action() {
                match action {
                    Action::Send(bytes) => {
                        prop_assert!(closed_at.is_none(), "a reply after Close");
                        out.extend_from_slice(&bytes);
                    }
                    Action::CheckRecipient { address, .. } => s.recipient_verdict(resolve(&address), now),
                    Action::StartTls => s.tls_started(now),
                    Action::Authenticate { .. } => {
                        s.auth_result(Err(Reply::new(535, "5.7.8", "Authentication credentials invalid")), now)
                    }
                    Action::Store(_) => s.stored(Ok("Q".into()), now),
                    Action::Pause { .. } => s.resume(now),
                    Action::Close => closed_at = Some(out.len()),
                }
            }
            prop_assert!(s.buffered_input() <= pending, "{} bytes buffered", s.buffered_input());
            prop_assert_eq!(s.is_closed(), closed_at.is_some());
        }
        let text = String::from_utf8(out).expect("replies are text");
        prop_assert!(text.is_empty() || text.ends_with("\r\n"));
        for line in text.split_terminator("\r\n") {
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            prop_assert!((200..600).contains(&code), "bad reply line {:?}", line);
            prop_assert!(matches!(line.as_bytes().get(3), None | Some(b' ') | Some(b'-')), "bad line {:?}", line);
        }
    }
}
