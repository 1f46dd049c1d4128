//! The message pipeline after the end of DATA, as the design card draws it:
//! auth (verify) → content → spam → rewrite → sign → queue. Each stage is a
//! worker with its own threads (a tokio runtime the node owns) and a
//! bounded mailbox (at most `mailbox_max` messages queued or in work; the
//! next one waits, which holds its session's end-of-DATA reply: back-pressure
//! reaches the client, never memory). A stage that panics fails only that
//! message, with a 451 the sender retries. The screening actor awaits the
//! whole line and answers the end of DATA with its verdict, so a refusal is
//! an SMTP reply inside the session, never a bounce.

mod rewrite;

use consensus::state::settings::key;
use consensus::AppliedState;
use mail_auth::SpfOutput;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::sync::Semaphore;

use crate::content::clamd::Clamd;
use crate::message::{InboundMessage, Reply};

/// One stage's threads and mailbox.
#[derive(Clone)]
pub struct StageWorker {
    name: &'static str,
    handle: tokio::runtime::Handle,
    mailbox: Arc<Semaphore>,
}

impl StageWorker {
    pub fn new(name: &'static str, handle: tokio::runtime::Handle, mailbox_max: usize) -> Self {
        Self { name, handle, mailbox: Arc::new(Semaphore::new(mailbox_max.max(1))) }
    }

    /// Runs `work` on this stage's threads once its mailbox has room.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, Reply>> + Send + 'static,
    ) -> Result<T, Reply> {
        let tempfail = || Reply::new(451, "4.3.0", "Temporary failure checking the message; try again later");
        let Ok(_slot) = self.mailbox.acquire().await else { return Err(tempfail()) };
        match self.handle.spawn(work).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(stage = self.name, error = %e, "message stage failed");
                Err(tempfail())
            }
        }
    }
}

/// The stages of one node.
#[derive(Clone)]
pub struct Pipeline {
    pub auth: StageWorker,
    pub content: StageWorker,
    pub spam: StageWorker,
    pub rewrite: StageWorker,
    pub sign: StageWorker,
    /// This node's clamd, when `antivirus.clamd` names one.
    pub clamd: Option<Clamd>,
    /// For the spam stage's autolearn (a learn is proposed, never awaited)
    /// and the links of linked attachments.
    pub proposer: Option<consensus::Proposer>,
    /// Where this node keeps linked attachments; `None`: it links none.
    pub links: Option<Arc<crate::attachment_links::store::LinkStore>>,
}

/// What the stages need besides the message.
pub struct MessageContext {
    pub state: Arc<AppliedState>,
    pub nameservers: Vec<SocketAddr>,
    pub client: IpAddr,
    /// Authenticated or trusted client: its mail is not verified, may be
    /// signed, and is scanned only under `content.scan_outbound`.
    pub own_mail: bool,
    pub spf: Option<SpfOutput>,
    /// Uniform in 0..100, for DMARC `pct`.
    pub dmarc_roll: u8,
}

/// Where an accepted message goes.
#[derive(Debug)]
pub enum Disposition {
    /// To the queue for delivery.
    Deliver(Box<InboundMessage>),
    /// To the queue on hold: quarantined, with the reason (`virus`,
    /// `attachment`, `content`) and what was found.
    /// `virus` names what clamd found, when that is the reason.
    Quarantine { message: Box<InboundMessage>, reason: &'static str, detail: String, virus: Option<String> },
    /// Accepted and dropped (antivirus.action = delete), with what was found.
    Delete { message: Box<InboundMessage>, detail: String, virus: Option<String> },
}

impl Pipeline {
    /// Runs the message through every stage.
    pub async fn process(&self, ctx: MessageContext, message: Box<InboundMessage>) -> Result<Disposition, Reply> {
        let ctx = Arc::new(ctx);
        let settings = &ctx.state.state.settings;
        let signs = ctx.own_mail
            && (message.authenticated.is_some()
                || settings.networks(key::DKIM_SIGN_NETWORKS).iter().any(|n| n.contains(&ctx.client)));
        let scans = !ctx.own_mail || settings.flag(key::CONTENT_SCAN_OUTBOUND);

        let c = ctx.clone();
        let message = self.auth.run(async move { crate::auth::verify(&c, message).await }).await?;

        let (message, parsed, findings) = if scans {
            let (c, clamd) = (ctx.clone(), self.clamd.clone());
            self.content
                .run(async move {
                    let (parsed, findings) = crate::content::run(&c.state, clamd.as_ref(), &message).await?;
                    Ok((message, Some(Arc::new(parsed)), Some(findings)))
                })
                .await?
        } else {
            (message, None, None)
        };

        let scores = settings.flag(key::SPAM_ENABLED)
            && !message.skip.spam
            && (!ctx.own_mail || settings.flag(key::SPAM_SCAN_OUTBOUND));
        let (message, verdict) = if scores {
            let c = ctx.clone();
            let proposer = self.proposer.clone();
            let warnings: Vec<&'static str> = findings.iter().flat_map(|f| f.verdict.tags().map(|t| t.check)).collect();
            self.spam
                .run(async move {
                    let parsed = match parsed {
                        Some(p) => p,
                        None => Arc::new(crate::content::mime::ParsedMessage::parse(&message.body)),
                    };
                    let listed = crate::spam::dnslists::lookup(&c.state, &c.nameservers, &message.body, &parsed).await;
                    let verdict = crate::spam::check(&c.state, &message, &parsed, &warnings, listed);
                    if !c.own_mail {
                        if let (Some(proposer), Some(command)) = (&proposer, crate::spam::autolearn(&c.state, &verdict))
                        {
                            let proposer = proposer.clone();
                            tokio::spawn(async move {
                                if let Err(e) = proposer.propose(command).await {
                                    tracing::debug!(error = %e, "autolearn not committed");
                                }
                            });
                        }
                    }
                    spam_refusal(&verdict, c.own_mail, &message)?;
                    Ok((message, Some(verdict)))
                })
                .await?
        } else {
            (message, None)
        };
        let own_mail = ctx.own_mail;
        let links = match (&self.links, &self.proposer) {
            (Some(store), Some(proposer)) => crate::attachment_links::policy_for(&ctx.state, &message)
                .map(|policy| (store.clone(), proposer.clone(), policy)),
            _ => None,
        };
        let disposition = self
            .rewrite
            .run(async move {
                let disposition = rewrite::apply(message, findings, verdict, own_mail);
                Ok(match (disposition, links) {
                    (Disposition::Deliver(mut m), Some((store, proposer, policy))) => {
                        let now_ms = m.received_ms;
                        crate::attachment_links::link(&store, &proposer, &policy, &mut m, now_ms).await;
                        Disposition::Deliver(m)
                    }
                    (other, _) => other,
                })
            })
            .await?;

        if !signs {
            return Ok(disposition);
        }
        let c = ctx.clone();
        self.sign
            .run(async move {
                Ok(match disposition {
                    Disposition::Deliver(mut m) => {
                        crate::auth::sign_message(&c.state, &mut m);
                        Disposition::Deliver(m)
                    }
                    other => other,
                })
            })
            .await
    }
}

/// Spam over `spam.reject_score` is refused at DATA, so the sender's own
/// server tells its user (no backscatter). Own mail is never refused for
/// spam: it is tagged and logged, and the sender's account stays usable.
fn spam_refusal(verdict: &crate::spam::SpamVerdict, own_mail: bool, message: &InboundMessage) -> Result<(), Reply> {
    if verdict.action != crate::spam::SpamAction::Reject {
        return Ok(());
    }
    let names: Vec<&str> = verdict.symbols.iter().map(|s| s.name.as_ref()).collect();
    tracing::info!(client = %message.peer.ip, from = %message.mail_from, score = verdict.score, own_mail, symbols = %names.join(","), "spam");
    if own_mail {
        return Ok(());
    }
    let text = format!("Message refused as spam (score {:.2}, limit {:.2})", verdict.score, verdict.reject_score);
    Err(Reply::new(550, "5.7.1", &text))
}
