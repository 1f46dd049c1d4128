//! The content stage: the message parsed once (`mime`), the named MIME
//! limits, the attachment filter and dangerous-content checks (`checks`,
//! pure), and the antivirus scan through clamd (`clamd`). It runs on its own
//! worker pool (`crate::pipeline`), never on the session threads.

pub mod checks;
pub mod clamd;
pub mod files;
pub mod html;
pub mod mime;
pub mod updater;

use consensus::state::settings::key;
use consensus::AppliedState;

use crate::message::{InboundMessage, Reply};
use checks::{evaluate, ContentPolicy, ContentVerdict};
use clamd::{Clamd, ClamdError, ScanResult};
use mime::ParsedMessage;

/// What the content stage decided beyond accept/refuse.
#[derive(Debug, Default)]
pub struct ContentFindings {
    pub verdict: ContentVerdict,
    /// A virus clamd named.
    pub virus: Option<String>,
    /// Headers to add (scan results, warnings).
    pub headers: Vec<String>,
    /// Put before the subject.
    pub subject_prefix: Option<String>,
    /// Accept and drop (antivirus.action = delete).
    pub delete: bool,
    /// Accept and hold: (reason, detail).
    pub quarantine: Option<(&'static str, String)>,
}

/// Runs every content check on `message`. `Err` is the reply that refuses it.
pub async fn run(
    state: &AppliedState,
    clamd: Option<&Clamd>,
    message: &InboundMessage,
) -> Result<(ParsedMessage, ContentFindings), Reply> {
    let settings = &state.state.settings;
    let parsed = ParsedMessage::parse(&message.body);
    let policy = ContentPolicy::from_state(settings, &state.state.content);
    let verdict = evaluate(&parsed, &policy);
    if let Some(reply) = &verdict.reject {
        tracing::info!(client = %message.peer.ip, from = %message.mail_from, reply = %reply.text, "refused by content checks");
        return Err(reply.clone());
    }
    let mut found = ContentFindings::default();
    for f in verdict.tags() {
        found.headers.push(format!("X-Gatehouse-Content-Warning: {}: {}", f.check, checks::printable(&f.detail)));
    }
    if let Some(f) = verdict.quarantine() {
        let reason = if f.check == "attachment-filter" { "attachment" } else { "content" };
        found.quarantine = Some((reason, format!("{}: {}", f.check, f.detail)));
    }
    found.verdict = verdict;
    if settings.flag(key::ANTIVIRUS_ENABLED) && !message.skip.antivirus {
        antivirus(state, clamd, message, &parsed, &mut found).await?;
    }
    Ok((parsed, found))
}

async fn antivirus(
    state: &AppliedState,
    clamd: Option<&Clamd>,
    message: &InboundMessage,
    parsed: &ParsedMessage,
    found: &mut ContentFindings,
) -> Result<(), Reply> {
    let settings = &state.state.settings;
    let result = match clamd {
        None => Err(ClamdError::Refused("no clamd configured on this node (antivirus.clamd)".into())),
        // One bound for the whole message, however many pieces it is sent in.
        Some(c) => tokio::time::timeout(c.timeout(), scan(c, message, parsed))
            .await
            .unwrap_or(Err(ClamdError::Timeout(c.timeout().as_millis()))),
    };
    match result {
        Ok(ScanResult::Clean) => {
            found.headers.push("X-Gatehouse-Virus-Scan: clean (clamd)".into());
            Ok(())
        }
        Ok(ScanResult::Infected(name)) => {
            let name = checks::printable(&name);
            tracing::info!(client = %message.peer.ip, from = %message.mail_from, virus = %name, "virus found");
            match settings.text(key::ANTIVIRUS_ACTION).as_str() {
                "delete" => found.delete = true,
                "quarantine" => found.quarantine = Some(("virus", format!("virus {name}"))),
                "tag" => {
                    found.subject_prefix = Some(settings.text(key::ANTIVIRUS_SUBJECT_PREFIX));
                    found.headers.push(format!("X-Gatehouse-Virus: {name}"));
                }
                _ => return Err(Reply::new(554, "5.7.1", &format!("Message refused: virus {name} found"))),
            }
            found.virus = Some(name);
            Ok(())
        }
        Err(e) => {
            tracing::warn!(client = %message.peer.ip, error = %e, "virus scan failed");
            if settings.text(key::ANTIVIRUS_ON_ERROR) == "accept" {
                found
                    .headers
                    .push(format!("X-Gatehouse-Virus-Scan: unscanned ({})", checks::printable(&e.to_string())));
                Ok(())
            } else {
                Err(Reply::new(451, "4.7.0", "Virus scan unavailable; try again later"))
            }
        }
    }
}

/// The whole message when clamd takes it (clamd decodes MIME itself);
/// otherwise each decoded attachment and text body, which must then fit one by one.
async fn scan(clamd: &Clamd, message: &InboundMessage, parsed: &ParsedMessage) -> Result<ScanResult, ClamdError> {
    match clamd.scan(&message.body).await {
        Err(ClamdError::TooLong { .. }) => {
            let texts = parsed.text.iter().chain(&parsed.html).map(|t| t.as_bytes());
            for piece in parsed.attachments.iter().map(|a| a.data.as_slice()).chain(texts) {
                if let ScanResult::Infected(name) = clamd.scan(piece).await? {
                    return Ok(ScanResult::Infected(name));
                }
            }
            Ok(ScanResult::Clean)
        }
        other => other,
    }
}
