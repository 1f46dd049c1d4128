//! The deterministic cluster simulator (see the simulator issue). For now it
//! only fixes its place in the dependency graph (`simulation → consensus`).
