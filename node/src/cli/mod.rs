//! The command-line interface: argument definitions and what each command
//! does. Every command that changes or reads cluster state goes through the
//! admin API of a running node; `serve`, `join` and `cluster init` run the
//! node itself.

pub mod args;
pub mod client;
mod commands;
pub mod dmarc;
pub mod dovecot;
mod print;
mod spam;

pub use commands::{admin_client, run_admin_command};
