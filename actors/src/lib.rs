//! Mail processing: the sans-IO SMTP session core, the policies and the
//! actors that wrap them. The SMTP issue builds this crate; for now it only
//! fixes its place in the dependency graph (`node → actors → consensus`).
