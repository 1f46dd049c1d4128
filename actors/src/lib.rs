//! Mail processing: the sans-IO SMTP session core (`smtp`), and — as the
//! next issues land — the policies, message storage and the actors that wrap
//! them. This crate reads cluster state through `consensus`'s read handle and
//! knows nothing of how Raft replicates it.

pub mod smtp;
