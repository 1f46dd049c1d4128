//! The command-line interface: argument definitions and what each command
//! does. Every command that changes or reads cluster state goes through the
//! admin API of a running node; `serve`, `join` and `cluster init` run the
//! node itself.

pub mod args;
pub mod client;
mod commands;
pub mod dmarc;
mod print;
mod spam;

pub use commands::run_admin_command;
