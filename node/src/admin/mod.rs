//! The admin API: JSON over HTTP on loopback (by default), every request
//! authorised by the bearer token kept in `<data_dir>/admin.token`.
//!
//! Handlers turn a request into one `Command`, propose it through the
//! batching proposer, and answer with the outcome; reads come from the local
//! applied state. Errors are `{"error": "...", "field": "..."}` with 400
//! (bad input), 404 (no such thing), 409 (conflict), 503 (no quorum).

mod attachment_links;
mod content;
mod dkim;
mod login_check;
mod quarantine;
mod queue;
mod quota;
mod routes;
mod rules;
mod spam;
mod spam_rules;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use consensus::{ClusterNode, ProposeError};
use serde::Serialize;
use std::sync::Arc;

/// What every handler can reach.
pub struct AdminState {
    pub node: Arc<ClusterNode>,
    /// This node's delivery queue (each node queues what it accepted).
    pub queue: ::actors::supervise::SupervisedAddr<::actors::queue::DeliveryQueue>,
    /// This node's clamd, when `antivirus.clamd` names one.
    pub clamd: Option<::actors::content::clamd::Clamd>,
    /// Failed logins since the last digest (shared with the SMTP listeners).
    pub failed_logins: ::actors::login_failures::SharedDigest,
}

/// An API error with the field at fault when there is one.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    status: u16,
    error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    pub fn bad_request(field: &str, error: impl Into<String>) -> Self {
        Self { status: 400, error: error.into(), field: Some(field.to_string()) }
    }

    pub fn not_found(field: &str, error: impl Into<String>) -> Self {
        Self { status: 404, error: error.into(), field: Some(field.to_string()) }
    }

    pub fn bad_gateway(field: &str, error: impl Into<String>) -> Self {
        Self { status: 502, error: error.into(), field: Some(field.to_string()) }
    }

    pub fn internal(error: impl Into<String>) -> Self {
        Self { status: 500, error: error.into(), field: None }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.error)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self)
    }
}

impl From<ProposeError> for ApiError {
    fn from(e: ProposeError) -> Self {
        match &e {
            ProposeError::Rejected(apply) => {
                let status = if apply.is_not_found() {
                    404
                } else if apply.is_conflict() {
                    409
                } else {
                    400
                };
                Self { status, error: e.to_string(), field: Some(apply.field()) }
            }
            ProposeError::Unavailable(_) => Self { status: 503, error: e.to_string(), field: None },
            ProposeError::Overloaded(_) => Self { status: 429, error: e.to_string(), field: None },
        }
    }
}

/// Compares in time independent of where the strings differ.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len() && given.iter().zip(expected).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

async fn require_token(
    token: web::Data<String>,
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let given = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !token_matches(given.as_bytes(), token.as_bytes()) {
        let error = ApiError { status: 401, error: "missing or wrong bearer token".into(), field: None };
        return Err(error.into());
    }
    next.call(req).await
}

/// Runs the admin API until the process ends.
pub async fn run(state: AdminState, listen: &str, token: String, body_bytes_max: usize) -> anyhow::Result<()> {
    let state = web::Data::new(state);
    let token = web::Data::new(token);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(token.clone())
            .app_data(web::PayloadConfig::new(body_bytes_max))
            .app_data(
                web::JsonConfig::default()
                    .limit(body_bytes_max)
                    .error_handler(|err, _| ApiError::bad_request("body", format!("invalid JSON body: {err}")).into()),
            )
            .wrap(actix_web::middleware::from_fn(require_token))
            .configure(routes::configure)
    })
    .workers(2)
    .disable_signals()
    .bind(listen)?;
    server.run().await?;
    Ok(())
}
