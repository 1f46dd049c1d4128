//! Spam routes: check a message against the live model (rspamd's
//! `/checkv2` shape), learn one into the cluster's model, the model's status.

use ::actors::content::mime::ParsedMessage;
use ::actors::message::InboundMessage;
use ::actors::spam::{self, SpamVerdict};
use actix_web::{web, HttpResponse};
use consensus::state::settings::key;
use consensus::state::SpamClass;
use consensus::{Command, Outcome};
use serde::Deserialize;

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

async fn verdict_of(state: &web::Data<AdminState>, raw: web::Bytes) -> Result<SpamVerdict, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::bad_request("message", "the request body must be the message"));
    }
    let applied = state.node.read.load();
    web::block(move || {
        let message = InboundMessage::from_file(&raw);
        let parsed = ParsedMessage::parse(&message.body);
        spam::check(&applied, &message, &parsed, &[])
    })
    .await
    .map_err(|e| ApiError::internal(format!("spam check failed: {e}")))
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

#[derive(Deserialize)]
pub struct LearnQuery {
    class: String,
}

pub async fn learn(state: web::Data<AdminState>, query: web::Query<LearnQuery>, raw: web::Bytes) -> Reply {
    let class = match query.class.as_str() {
        "spam" => SpamClass::Spam,
        "ham" => SpamClass::Ham,
        other => return Err(ApiError::bad_request("class", format!("{other:?}: spam or ham"))),
    };
    let v = verdict_of(&state, raw).await?;
    let command = Command::LearnSpam { digest: v.digest, class, tokens: v.tokens };
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
        "applied_index": applied.applied_index,
    })))
}
