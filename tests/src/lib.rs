//! Harness for the black-box tiers: locate the real binaries, run them with hard timeouts.
pub mod vm;
