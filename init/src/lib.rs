//! smss: a Linux PID 1 modelled on the Windows NT Session Manager (smss.exe).
//!
//! The binary is a thin `main`; everything lives here so the per-session instance
//! (`smss-session`) and the tests can use the same engine.
// Lints (no unsafe outside sys/, no panicking shortcuts): [workspace.lints] in Cargo.toml.
// Indexing and slicing panic out of range: denied in what ships (the config crate does the same).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod bugcheck;
pub mod cli;
pub mod control;
pub mod devices;
pub mod import_reg;
pub mod logging;
pub mod mode;
pub mod os;
pub mod phases;
pub mod rename_queue;
pub mod shutdown;
pub mod supervise;
pub mod sys;
