//! Gatehouse's replicated cluster state.
//!
//! Layers, from the bottom:
//! - `address`, `state`, `command`, `apply`: the state as typed values and the
//!   deterministic function that changes it. No IO, no clock, no randomness.
//! - `raft`: openraft's type configuration, redb log and state-machine storage,
//!   the mutual-TLS network with length-prefixed bincode frames.
//! - `proposer`: the batching write path; `read_handle`: lock-free reads.
//! - `cluster`: a running member and its membership operations.
//!
//! This crate knows nothing about SMTP or actix; the `node` crate wires it.

// openraft's StorageError is large and its trait methods return it; boxing it
// only in our helpers would add conversions without saving anything.
#![allow(clippy::result_large_err)]

pub mod address;
pub mod apply;
pub mod cluster;
pub mod command;
pub mod format;
pub mod proposer;
pub mod raft;
pub mod read_handle;
pub mod state;

#[cfg(all(test, feature = "loom"))]
mod loom_models;

pub use cluster::{wall_clock, ClusterConfig, ClusterError, ClusterNode, ClusterStatus, MemberStatus, PeerService};
pub use command::{ApplyError, ClusterRequest, ClusterResponse, Command, GreylistVerdict, Outcome};
pub use proposer::{Clock, ProposeError, Proposer, ProposerLimits};
pub use read_handle::{AppliedState, ReadHandle};
pub use state::{ClusterState, ConfigDocument};
