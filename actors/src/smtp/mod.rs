//! SMTP, sans-IO: framing, the DATA reader, replies, limits and the session
//! state machine. Nothing here touches a socket or a clock; the screening
//! actor wraps `Session` and the tests drive it with byte strings.

pub mod auth;
pub mod bdat;
pub mod data;
pub mod input;
pub mod limits;
pub mod line;
pub mod session;

pub use crate::message::{AcceptedRecipient, InboundMessage, PeerInfo, Reply};
pub use limits::SmtpLimits;
pub use session::{Action, RecipientVerdict, Session, SessionConfig};
