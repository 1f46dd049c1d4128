//! Mail processing, in the order a message meets it:
//! - `listener`: accepts SMTP connections;
//! - `screening`: one actor per connection around the sans-IO `smtp::Session`;
//! - `recipient`: the recipient policy (pure);
//! - `queue`: durable spool with group commit, Received header, recovery;
//! - `delivery`: Maildir delivery.
//!
//! Policies read cluster state through `consensus`'s read handle; this crate
//! knows nothing of how Raft replicates it.

pub mod delivery;
pub mod listener;
pub mod login;
pub mod queue;
pub mod recipient;
pub mod screening;
pub mod smtp;
