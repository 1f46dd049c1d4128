//! Screening routes: rules (black, white, greylist, DNSBL), greylist
//! triplets and blocked IPs.

use actix_web::{web, HttpResponse};
use consensus::state::settings::key;
use consensus::state::ListRule;
use consensus::{Command, Outcome};
use serde::{Deserialize, Serialize};

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

#[derive(Serialize)]
struct RuleView<'a> {
    id: u64,
    #[serde(flatten)]
    rule: &'a ListRule,
}

pub async fn list(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let rules: Vec<RuleView> = applied.state.rules.lists.iter().map(|(id, rule)| RuleView { id: *id, rule }).collect();
    Ok(HttpResponse::Ok().json(rules))
}

pub async fn add(state: web::Data<AdminState>, body: web::Json<ListRule>) -> Reply {
    match state.node.proposer.propose(Command::AddListRule { rule: body.into_inner() }).await? {
        Outcome::RuleAdded { id } => Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "id": id }))),
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

pub async fn remove(state: web::Data<AdminState>, id: web::Path<u64>) -> Reply {
    state.node.proposer.propose(Command::RemoveListRule { id: id.into_inner() }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

#[derive(Deserialize)]
pub struct ImportBody {
    /// Rules as `GET /v1/rules` lists them; their ids are ignored.
    rules: Vec<ListRule>,
    #[serde(default)]
    replace: bool,
}

pub async fn import(state: web::Data<AdminState>, body: web::Json<ImportBody>) -> Reply {
    let ImportBody { rules, replace } = body.into_inner();
    match state.node.proposer.propose(Command::ImportRules { rules, replace }).await? {
        Outcome::RulesImported { added, skipped } => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "added": added, "skipped": skipped })))
        }
        other => Err(ApiError::internal(format!("unexpected outcome {other:?}"))),
    }
}

#[derive(Deserialize)]
pub struct GreylistQuery {
    #[serde(default)]
    pending: bool,
}

pub async fn greylist(state: web::Data<AdminState>, query: web::Query<GreylistQuery>) -> Reply {
    let applied = state.node.read.load();
    let now = (state.node.clock)();
    let triplets: Vec<serde_json::Value> = applied
        .state
        .counters
        .greylist
        .iter()
        .filter(|(_, t)| t.expires_ms > now && (!query.pending || t.passed_ms.is_none()))
        .map(|(key, t)| {
            let mut parts = key.splitn(3, ' ');
            serde_json::json!({
                "triplet": key,
                "network": parts.next().unwrap_or_default(),
                "sender": parts.next().unwrap_or_default(),
                "recipient": parts.next().unwrap_or_default(),
                "first_seen_ms": t.first_seen_ms,
                "passed_ms": t.passed_ms,
                "expires_ms": t.expires_ms,
                "attempts": t.attempts,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(triplets))
}

#[derive(Deserialize)]
pub struct AuthorizeBody {
    triplet: String,
}

pub async fn authorize(state: web::Data<AdminState>, body: web::Json<AuthorizeBody>) -> Reply {
    let applied = state.node.read.load();
    let pass_ttl_ms = applied.state.settings.uint(key::GREYLIST_PASS_TTL_S) * 1000;
    let triplet = body.into_inner().triplet.split_whitespace().collect::<Vec<_>>().join(" ");
    state.node.proposer.propose(Command::AuthorizeGreylist { triplet, pass_ttl_ms }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

pub async fn blocked(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let now = (state.node.clock)();
    let blocks: Vec<serde_json::Value> = applied
        .state
        .counters
        .blocked_ips
        .iter()
        .filter(|(_, b)| b.until_ms > now)
        .map(|(ip, b)| serde_json::json!({ "ip": ip, "until_ms": b.until_ms, "reason": b.reason }))
        .collect();
    Ok(HttpResponse::Ok().json(blocks))
}

#[derive(Deserialize)]
pub struct BlockBody {
    ip: String,
    seconds: Option<u64>,
    #[serde(default)]
    reason: String,
}

pub async fn block(state: web::Data<AdminState>, body: web::Json<BlockBody>) -> Reply {
    let body = body.into_inner();
    let applied = state.node.read.load();
    let seconds = body.seconds.unwrap_or_else(|| applied.state.settings.uint(key::INTRUSION_BLOCK_S));
    let until_ms = (state.node.clock)().saturating_add(seconds.saturating_mul(1000));
    state.node.proposer.propose(Command::BlockIp { ip: body.ip, until_ms, reason: body.reason }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "until_ms": until_ms })))
}

pub async fn unblock(state: web::Data<AdminState>, ip: web::Path<String>) -> Reply {
    state.node.proposer.propose(Command::UnblockIp { ip: ip.into_inner() }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}
