//! Screening policies: pure functions of the replicated rules and what the
//! connection or message says, each answering with a decision the screening
//! actor carries out.

pub mod lists;
