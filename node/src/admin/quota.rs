//! Outbound usage (MailPlus "Outbound Usage"): each user's count against
//! the daily quota today, with the limits in force for them.

use actix_web::{web, HttpResponse};
use consensus::address::MailAddress;
use consensus::state::counters::DAY_MS;
use consensus::ClusterState;
use serde::{Deserialize, Serialize};

use super::{AdminState, ApiError};

type Reply = Result<HttpResponse, ApiError>;

#[derive(Deserialize)]
pub struct UsageQuery {
    /// `messages` (most first, the default), `bytes` (most first) or `user`.
    #[serde(default)]
    sort: Option<String>,
}

/// One user's use today; limits of 0 mean none.
#[derive(Serialize, Debug, PartialEq)]
struct Usage {
    user: String,
    messages: u32,
    bytes: u64,
    messages_max: u32,
    bytes_max: u64,
    /// When the day's count starts again (RFC 5322 date, UTC midnight).
    resets: String,
}

fn usage_of(state: &ClusterState, user: &str, today: u64) -> Usage {
    let (messages_max, bytes_max) = state.daily_limits(user);
    let (messages, bytes) = match state.counters.daily_quota.get(user) {
        Some(q) if q.day >= today => (q.messages, q.bytes),
        _ => (0, 0),
    };
    let resets = mail_builder::headers::date::Date::new(((today + 1) * DAY_MS / 1000) as i64).to_rfc822();
    Usage { user: user.to_string(), messages, bytes, messages_max, bytes_max, resets }
}

/// Every user who sent to external recipients today.
pub async fn list(state: web::Data<AdminState>, query: web::Query<UsageQuery>) -> Reply {
    let applied = state.node.read.load();
    let today = ::actors::queue::now_ms() / DAY_MS;
    let s = &applied.state;
    let mut rows: Vec<Usage> = s
        .counters
        .daily_quota
        .iter()
        .filter(|(_, q)| q.day >= today && (q.messages > 0 || q.bytes > 0))
        .map(|(user, _)| usage_of(s, user, today))
        .collect();
    match query.sort.as_deref().unwrap_or("messages") {
        "messages" => rows.sort_by(|a, b| b.messages.cmp(&a.messages).then_with(|| a.user.cmp(&b.user))),
        "bytes" => rows.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.user.cmp(&b.user))),
        "user" => rows.sort_by(|a, b| a.user.cmp(&b.user)),
        other => return Err(ApiError::bad_request("sort", format!("{other:?}: use messages, bytes or user"))),
    }
    Ok(HttpResponse::Ok().json(rows))
}

/// One user's use today (zero when they sent nothing).
pub async fn show(state: web::Data<AdminState>, path: web::Path<String>) -> Reply {
    let raw = path.into_inner();
    let user = MailAddress::parse(&raw).map_err(|e| ApiError::bad_request("user", e.to_string()))?.key();
    let applied = state.node.read.load();
    if !applied.state.directory.users.contains_key(&user) {
        return Err(ApiError::not_found("user", format!("{user}: no such user")));
    }
    let today = ::actors::queue::now_ms() / DAY_MS;
    Ok(HttpResponse::Ok().json(vec![usage_of(&applied.state, &user, today)]))
}
