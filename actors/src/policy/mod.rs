//! Screening policies: pure functions of the replicated rules and what the
//! connection or message says, each answering with a decision the screening
//! actor carries out. docs/operations/screening.md gives the order they run in.

pub mod connection;
pub mod dnsbl;
pub mod forwarding;
pub mod greylist;
pub mod lists;
pub mod names;
