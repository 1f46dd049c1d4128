//! Mail processing, in the order a message meets it:
//! - `listener`: accepts SMTP connections;
//! - `screening`: one actor per connection around the sans-IO `smtp::Session`;
//! - `recipient`: the recipient policy (pure);
//! - `queue`: durable spool with group commit, Received header, recovery,
//!   retries with backoff, bounces, operator control;
//! - `delivery`: Maildir delivery;
//! - `relay`: delivery to other domains' MX hosts over SMTP.
//!
//! Policies read cluster state through `consensus`'s read handle; this crate
//! knows nothing of how Raft replicates it.

pub mod attachment_links;
pub mod auth;
pub mod content;
pub mod delivery;
pub mod dns;
pub mod hijack;
pub mod listener;
pub mod login;
pub mod login_failures;
pub mod message;
pub mod notice;
pub mod pipeline;
pub mod policy;
pub mod quarantine;
pub mod queue;
pub mod quota;
pub mod recipient;
pub mod relay;
pub mod schedule;
pub mod screening;
pub mod smtp;
pub mod spam;
pub mod supervise;
