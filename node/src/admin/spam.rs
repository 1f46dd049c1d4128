//! Spam routes: check a message against the live model (rspamd's
//! `/checkv2` shape), learn one into the cluster's model, the model's status.

use ::actors::content::mime::ParsedMessage;
use ::actors::message::InboundMessage;
use ::actors::spam::{self, SpamVerdict};
use actix_web::{web, HttpResponse};
use consensus::state::settings::key;
use consensus::state::spam::{AddressRule, KeywordRule, SpamReport};
use consensus::state::SpamClass;
use consensus::{Command, Outcome};
use serde::Deserialize;

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

/// The request body as a message; an empty body is an error naming `message`.
fn message_of(raw: &[u8]) -> Result<InboundMessage, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::bad_request("message", "the request body must be the message"));
    }
    Ok(InboundMessage::from_file(raw))
}

async fn verdict_of(state: &web::Data<AdminState>, raw: web::Bytes) -> Result<SpamVerdict, ApiError> {
    let message = message_of(&raw)?;
    let applied = state.node.read.load();
    web::block(move || {
        let parsed = ParsedMessage::parse(&message.body);
        spam::check(&applied, &message, &parsed, &[], Vec::new())
    })
    .await
    .map_err(|e| ApiError::internal(format!("spam check failed: {e}")))
}

/// What learning a message needs (its digest and tokens), with its sender
/// and subject for the review list; no scoring.
struct Learnable {
    digest: u64,
    tokens: Vec<u64>,
    from: String,
    subject: String,
}

async fn learnable(raw: web::Bytes) -> Result<Learnable, ApiError> {
    let message = message_of(&raw)?;
    web::block(move || {
        let parsed = ParsedMessage::parse(&message.body);
        Learnable {
            digest: spam::digest(&message.body),
            tokens: spam::tokens::tokenize(&message.body, &parsed),
            from: parsed.from,
            subject: parsed.subject,
        }
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the message failed: {e}")))
}

pub async fn check(state: web::Data<AdminState>, raw: web::Bytes) -> Reply {
    let v = verdict_of(&state, raw).await?;
    let symbols: serde_json::Map<String, serde_json::Value> = v
        .symbols
        .iter()
        .map(|s| (s.name.to_string(), serde_json::json!({ "name": s.name, "score": s.score, "options": s.options })))
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "is_skipped": false,
        "score": v.score,
        "required_score": v.required_score,
        "reject_score": v.reject_score,
        "action": v.action.name(),
        "symbols": symbols,
        "bayes_probability": v.bayes,
    })))
}

fn class_of(word: &str) -> Result<SpamClass, ApiError> {
    match word {
        "spam" => Ok(SpamClass::Spam),
        "ham" => Ok(SpamClass::Ham),
        other => Err(ApiError::bad_request("class", format!("{other:?}: spam or ham"))),
    }
}

#[derive(Deserialize)]
pub struct LearnQuery {
    class: String,
}

pub async fn learn(state: web::Data<AdminState>, query: web::Query<LearnQuery>, raw: web::Bytes) -> Reply {
    let class = class_of(&query.class)?;
    let m = learnable(raw).await?;
    let command = Command::LearnSpam { digest: m.digest, class, tokens: m.tokens };
    match state.node.proposer.propose(command).await? {
        Outcome::Learned { effect } => {
            Ok(HttpResponse::Ok()
                .json(serde_json::json!({ "ok": true, "effect": format!("{effect:?}").to_lowercase() })))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn status(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let b = &applied.state.spam.bayes;
    let min = applied.state.settings.uint(key::SPAM_BAYES_MIN_LEARNS);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "spam_learned": b.spam_learned,
        "ham_learned": b.ham_learned,
        "tokens": b.tokens.len(),
        "tokens_max": applied.state.settings.uint(key::SPAM_BAYES_TOKENS_MAX),
        "expired": b.expired,
        "bayes_min_learns": min,
        "bayes_ready": b.spam_learned >= min && b.ham_learned >= min,
        "rule_files": applied.state.spam.rule_files.keys().collect::<Vec<_>>(),
        "rule_pack": applied.state.spam.rule_pack.as_ref().map(|p| serde_json::json!({
            "version": p.version, "url": p.url, "installed_ms": p.installed_ms
        })),
        "applied_index": applied.applied_index,
    })))
}

#[derive(serde::Serialize)]
struct RuleView<'a, T> {
    id: u64,
    #[serde(flatten)]
    rule: &'a T,
}

pub async fn list_addresses(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let rules: Vec<_> = applied.state.spam.addresses.iter().map(|(id, rule)| RuleView { id: *id, rule }).collect();
    Ok(HttpResponse::Ok().json(rules))
}

pub async fn add_address(state: web::Data<AdminState>, body: web::Json<AddressRule>) -> Reply {
    added(state.node.proposer.propose(Command::AddSpamAddress { rule: body.into_inner() }).await?)
}

pub async fn remove_address(state: web::Data<AdminState>, id: web::Path<u64>) -> Reply {
    state.node.proposer.propose(Command::RemoveSpamAddress { id: id.into_inner() }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

/// A keyword rule as the API takes it: the score as a decimal.
#[derive(Deserialize)]
pub struct KeywordBody {
    phrase: String,
    score: f64,
    #[serde(default)]
    blacklisted: bool,
    #[serde(default)]
    comment: String,
}

/// A keyword rule as the API shows it: the score as a decimal.
fn keyword_view(r: &KeywordRule) -> serde_json::Value {
    serde_json::json!({
        "phrase": r.phrase, "score": r.score_cents as f64 / 100.0, "blacklisted": r.blacklisted, "comment": r.comment,
    })
}

pub async fn list_keywords(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let rules: Vec<serde_json::Value> = applied
        .state
        .spam
        .keywords
        .iter()
        .map(|(id, r)| {
            let mut view = keyword_view(r);
            view["id"] = serde_json::json!(id);
            view
        })
        .collect();
    Ok(HttpResponse::Ok().json(rules))
}

/// A keyword rule from the API's form (a decimal score) to the stored one (hundredths).
fn keyword_rule(b: KeywordBody) -> Result<KeywordRule, &'static str> {
    if !b.score.is_finite() {
        return Err("a number");
    }
    Ok(KeywordRule {
        phrase: b.phrase,
        score_cents: (b.score * 100.0).round() as i64,
        blacklisted: b.blacklisted,
        comment: b.comment,
    })
}

pub async fn add_keyword(state: web::Data<AdminState>, body: web::Json<KeywordBody>) -> Reply {
    let rule = keyword_rule(body.into_inner()).map_err(|e| ApiError::bad_request("score", e))?;
    added(state.node.proposer.propose(Command::AddSpamKeyword { rule }).await?)
}

pub async fn remove_keyword(state: web::Data<AdminState>, id: web::Path<u64>) -> Reply {
    state.node.proposer.propose(Command::RemoveSpamKeyword { id: id.into_inner() }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

fn added(outcome: Outcome) -> Reply {
    match outcome {
        Outcome::RuleAdded { id } => Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "id": id }))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

#[derive(Deserialize)]
pub struct ReportQuery {
    class: String,
    user: String,
}

/// A user's report: the message's tokens wait in the review list.
pub async fn report(state: web::Data<AdminState>, query: web::Query<ReportQuery>, raw: web::Bytes) -> Reply {
    let class = class_of(&query.class)?;
    let user = query.user.trim().to_lowercase();
    if !state.node.read.load().state.directory.users.contains_key(&user) {
        return Err(ApiError::bad_request("user", format!("{user:?} is not a local user")));
    }
    let m = learnable(raw).await?;
    let report = SpamReport {
        user,
        class,
        digest: m.digest,
        tokens: m.tokens,
        from: m.from,
        subject: m.subject,
        reported_ms: (state.node.clock)(),
    };
    added(state.node.proposer.propose(Command::ReportSpam { report }).await?)
}

pub async fn list_reports(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let reports: Vec<serde_json::Value> = applied
        .state
        .spam
        .reports
        .iter()
        .map(|(id, r)| {
            serde_json::json!({
                "id": id, "user": r.user, "class": r.class, "from": r.from, "subject": r.subject,
                "reported_ms": r.reported_ms,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(reports))
}

#[derive(Deserialize)]
pub struct ApproveBody {
    #[serde(default)]
    ids: Vec<u64>,
    #[serde(default)]
    all: bool,
}

pub async fn approve_reports(state: web::Data<AdminState>, body: web::Json<ApproveBody>) -> Reply {
    let body = body.into_inner();
    let ids = if body.all { state.node.read.load().state.spam.reports.keys().copied().collect() } else { body.ids };
    match state.node.proposer.propose(Command::ApproveSpamReports { ids }).await? {
        Outcome::ReportsLearned { learned } => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "learned": learned })))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn discard_report(state: web::Data<AdminState>, id: web::Path<u64>) -> Reply {
    state.node.proposer.propose(Command::DiscardSpamReport { id: id.into_inner() }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

/// Both filters as one document, the format `spam filters import` reads.
pub async fn export_filters(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let spam = &applied.state.spam;
    let keywords: Vec<serde_json::Value> = spam.keywords.values().map(keyword_view).collect();
    let addresses: Vec<&AddressRule> = spam.addresses.values().collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "addresses": addresses, "keywords": keywords })))
}

#[derive(Deserialize)]
pub struct ImportFiltersBody {
    #[serde(default)]
    addresses: Vec<AddressRule>,
    #[serde(default)]
    keywords: Vec<KeywordBody>,
    #[serde(default)]
    replace: bool,
}

pub async fn import_filters(state: web::Data<AdminState>, body: web::Json<ImportFiltersBody>) -> Reply {
    let b = body.into_inner();
    let mut keywords = Vec::with_capacity(b.keywords.len());
    for (i, k) in b.keywords.into_iter().enumerate() {
        keywords
            .push(keyword_rule(k).map_err(|e| ApiError::bad_request(&format!("keywords[{i}].score"), e.to_string()))?);
    }
    let command = Command::ImportSpamFilters { addresses: b.addresses, keywords, replace: b.replace };
    match state.node.proposer.propose(command).await? {
        Outcome::RulesImported { added, skipped } => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "added": added, "skipped": skipped })))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}
