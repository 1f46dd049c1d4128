//! DKIM key routes. The key pair is generated here, not in `apply` (which
//! draws no randomness), then replicated through the proposer.

use actix_web::{web, HttpResponse};
use consensus::state::DkimAlgorithm;
use consensus::Command;
use serde::Deserialize;

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

#[derive(Deserialize)]
pub struct GenerateBody {
    domain: String,
    selector: Option<String>,
    #[serde(default = "default_algorithm")]
    algorithm: String,
    #[serde(default)]
    activate: bool,
}

fn default_algorithm() -> String {
    "rsa-2048".into()
}

fn record_name(selector: &str, domain: &str) -> String {
    let ascii = consensus::address::DomainName::parse(domain).map(|d| d.ascii()).unwrap_or_else(|_| domain.into());
    format!("{selector}._domainkey.{ascii}.")
}

pub async fn generate(state: web::Data<AdminState>, body: web::Json<GenerateBody>) -> Reply {
    let body = body.into_inner();
    let algorithm = match body.algorithm.as_str() {
        "rsa-2048" | "rsa" => DkimAlgorithm::RsaSha256,
        "ed25519" => DkimAlgorithm::Ed25519Sha256,
        other => return Err(ApiError::bad_request("algorithm", format!("{other:?} is not rsa-2048 or ed25519"))),
    };
    let domain = consensus::address::DomainName::parse(&body.domain)
        .map_err(|e| ApiError::bad_request("domain", e.to_string()))?
        .to_string();
    let applied = state.node.read.load();
    let taken = applied.state.dkim.domains.get(&domain);
    let selector = body.selector.unwrap_or_else(|| {
        (1..).map(|n| format!("gh{n}")).find(|s| taken.is_none_or(|t| !t.contains_key(s))).unwrap_or_default()
    });
    let now = (state.node.clock)();
    let mut key = tokio::task::spawn_blocking(move || ::actors::auth::sign::generate(algorithm, now))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(ApiError::internal)?;
    key.active = body.activate;
    let command = Command::AddDkimKey { domain: domain.clone(), selector: selector.clone(), key: key.clone() };
    state.node.proposer.propose(command).await?;
    let active =
        state.node.read.load().state.dkim.domains.get(&domain).and_then(|k| k.get(&selector)).is_some_and(|k| k.active);
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "ok": true,
        "domain": domain,
        "selector": selector,
        "algorithm": body.algorithm,
        "active": active,
        "record_name": record_name(&selector, &domain),
        "record": key.dns_record(),
    })))
}

pub async fn list(state: web::Data<AdminState>) -> Reply {
    let applied = state.node.read.load();
    let keys: Vec<serde_json::Value> = applied
        .state
        .dkim
        .domains
        .iter()
        .flat_map(|(domain, keys)| {
            keys.iter().map(move |(selector, k)| {
                serde_json::json!({
                    "domain": domain,
                    "selector": selector,
                    "algorithm": k.algorithm,
                    "active": k.active,
                    "created_ms": k.created_ms,
                    "record_name": record_name(selector, domain),
                    "record": k.dns_record(),
                })
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(keys))
}

pub async fn activate(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> Reply {
    let (domain, selector) = path.into_inner();
    state.node.proposer.propose(Command::ActivateDkimKey { domain, selector }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}

pub async fn remove(state: web::Data<AdminState>, path: web::Path<(String, String)>) -> Reply {
    let (domain, selector) = path.into_inner();
    state.node.proposer.propose(Command::RemoveDkimKey { domain, selector }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true })))
}
