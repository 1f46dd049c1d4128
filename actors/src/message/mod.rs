//! The vocabulary every stage of the mail path shares: the message as the
//! session hands it on, the checks it skips, the SMTP reply that answers it,
//! and how a delivery attempt ended. Everything else imports from here, so
//! the stages (session → pipeline → queue → delivery/relay) form a line with
//! no module reaching back into another's.

mod envelope;
pub mod headers;
mod outcome;
mod reply;
mod skip;

pub use envelope::{AcceptedRecipient, InboundMessage, PeerInfo};
pub use outcome::{failure_from, for_all, outcome_of, DeliveryOutcome, Failure};
pub use reply::Reply;
pub use skip::SkipChecks;
