//! Password checks for Dovecot (`gatehouse dovecot-checkpassword`): IMAP
//! and POP logins are verified against the cluster's accounts, so a
//! disabled or frozen account cannot read mail either, and a failed IMAP
//! login counts like a failed SMTP AUTH (log, digest, IP block).

use actix_web::{web, HttpResponse};
use consensus::state::settings::key;
use serde::Deserialize;

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

#[derive(Deserialize)]
pub struct LoginCheck {
    username: String,
    password: String,
    /// Dovecot's service name (`imap`, `pop3`), for the log.
    #[serde(default)]
    service: String,
    /// The mail client's address as Dovecot saw it.
    #[serde(default)]
    remote_ip: String,
}

/// `{"ok": true, "user": ...}`, or `{"ok": false, "reason": "invalid" | "frozen"}`.
pub async fn check(state: web::Data<AdminState>, body: web::Json<LoginCheck>) -> Reply {
    let LoginCheck { username, password, service, remote_ip } = body.into_inner();
    if username.len() > 1024 || password.len() > 1024 {
        return Err(ApiError::bad_request("username", "username and password are at most 1024 bytes"));
    }
    let applied = state.node.read.load();
    let directory = applied.state.directory.clone();
    let user = username.clone();
    let result = web::block(move || ::actors::login::verify_login(&directory, &user, &password))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match result {
        Ok(user) => Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": true, "user": user }))),
        Err(reply) if reply.code == 525 => {
            Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": false, "reason": "frozen" })))
        }
        Err(_) => {
            let ip = remote_ip.parse().unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]));
            let listener = if service == "pop3" { "dovecot-pop3" } else { "dovecot-imap" };
            // No address from Dovecot, or a trusted network: logged, never blocked.
            let trusted = applied.state.settings.networks(key::SMTP_TRUSTED_NETWORKS).iter().any(|n| n.contains(&ip));
            let exempt = ip.is_unspecified() || trusted;
            ::actors::login_failures::record(
                &state.failed_logins,
                &state.node.proposer,
                &applied,
                ip,
                listener,
                &username,
                exempt,
            );
            Ok(HttpResponse::Ok().json(serde_json::json!({ "ok": false, "reason": "invalid" })))
        }
    }
}
